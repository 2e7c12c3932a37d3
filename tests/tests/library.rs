//! One node, many files: a single `mtorrent seed` serves a whole library to concurrent
//! downloads of different files, over one connection per tracker, and keeps doing so when
//! tracker 1 dies.

use std::path::{Path, PathBuf};

use mtorrent_e2e::command::Dir;
use mtorrent_e2e::process::Process;
use mtorrent_e2e::swarm::{get, Trackers};
use mtorrent_e2e::{random_bytes, wait_for_tracker_stats};

/// Files in the library: enough that a node with one connection per file would show.
const FILES: usize = 8;

fn catalog(dir: &Dir) -> PathBuf {
    dir.join("library").join("catalog.sqlite")
}

/// `mtorrent share` of `file_<i>.bin`, handed to the running seed; returns its `.mtorrent`.
fn share_into_seed(dir: &Dir, trackers: &Trackers, i: usize) -> (PathBuf, Vec<u8>) {
    let data = random_bytes((1 << 20) + 4_099 * i, 100 + i as u64);
    let file = dir.join("library").join(format!("file_{i}.bin"));
    std::fs::write(&file, &data).unwrap();
    let mtorrent = dir.join(format!("file_{i}.bin.mtorrent"));
    dir.command("mtorrent")
        .args(["share".as_ref(), file.as_os_str(), "-o".as_ref()])
        .args([mtorrent.as_os_str(), "--catalog".as_ref()])
        .args([catalog(dir).as_os_str()])
        .args(trackers.args())
        .run()
        .success();
    (mtorrent, data)
}

/// Runs one `mtorrent get` per `.mtorrent` at once, each into its own directory, and checks
/// every file.
fn get_all_at_once(dir: &Dir, round: &str, files: &[(PathBuf, Vec<u8>)]) {
    std::thread::scope(|scope| {
        for (i, (mtorrent, data)) in files.iter().enumerate() {
            scope.spawn(move || {
                let name = format!("{round}_{}", file_stem(mtorrent));
                get(dir, &name, mtorrent).success();
                let got = dir
                    .join(&name)
                    .join(format!("file_{}.bin", file_index(mtorrent)));
                assert!(
                    std::fs::read(&got).unwrap() == *data,
                    "download {i} ({}) differs",
                    got.display()
                );
            });
        }
    });
}

fn file_stem(mtorrent: &Path) -> String {
    mtorrent
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace('.', "_")
}

fn file_index(mtorrent: &Path) -> String {
    let name = mtorrent.file_name().unwrap().to_string_lossy();
    name.trim_start_matches("file_")
        .split('.')
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn one_seed_serves_many_files_to_concurrent_gets_over_one_connection_per_tracker() {
    let dir = Dir::new();
    let mut trackers = Trackers::start(&dir);
    std::fs::create_dir_all(dir.join("library")).unwrap();
    let seed = Process::start(
        "mtorrent",
        [
            "seed".as_ref(),
            "--catalog".as_ref(),
            catalog(&dir).as_os_str(),
        ],
        &dir.join("seed.log"),
    );
    let files: Vec<_> = (0..FILES)
        .map(|i| share_into_seed(&dir, &trackers, i))
        .collect();
    // Every file is announced, all over the seed's one connection to tracker 1.
    wait_for_tracker_stats(
        trackers.one.addr(),
        "every file announced by one node",
        |s| s["swarms"] == FILES && s["peers"] == FILES && s["peer_connections"] == 1,
    );
    get_all_at_once(&dir, "first", &files);
    let log = seed.log();
    assert!(!log.contains("PeerIdTaken"), "the seed was refused: {log}");
    wait_for_tracker_stats(trackers.one.addr(), "back to the seed alone", |s| {
        s["peer_connections"] == 1 && s["peers"] == FILES
    });

    // Tracker 1 dies: the node moves its one connection to tracker 2, with every file, and a
    // file shared afterwards is fetched through tracker 2.
    trackers.one.kill();
    let late = share_into_seed(&dir, &trackers, FILES);
    wait_for_tracker_stats(
        trackers.two.addr(),
        "every file announced again on tracker 2",
        |s| s["swarms"] == FILES + 1 && s["peer_connections"] == 1,
    );
    get_all_at_once(&dir, "late", &[late]);
    get_all_at_once(&dir, "again", &files[..2]);
    let log = seed.log();
    assert!(!log.contains("PeerIdTaken"), "the seed was refused: {log}");
}
