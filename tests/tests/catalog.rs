//! The catalog across runs and processes: restarts (also after `kill -9`), files that change
//! on disk, and a running `seed` that one-shot commands hand work to.

use std::path::PathBuf;

use mtorrent_e2e::command::Dir;
use mtorrent_e2e::process::Process;
use mtorrent_e2e::random_bytes;
use mtorrent_e2e::swarm::{get, number_after, share, wait_until_file_equals, Trackers};

/// `mtorrent seed` with the catalog in `dir/name/`.
fn seed(dir: &Dir, name: &str) -> Process {
    Process::start(
        "mtorrent",
        [
            "seed".as_ref(),
            "--catalog".as_ref(),
            catalog(dir, name).as_os_str(),
        ],
        &dir.join(format!("{name}.log")),
    )
}

fn catalog(dir: &Dir, name: &str) -> PathBuf {
    dir.join(name).join("catalog.sqlite")
}

fn list(dir: &Dir, name: &str) -> String {
    dir.command("mtorrent")
        .args([
            "list".as_ref(),
            "--catalog".as_ref(),
            catalog(dir, name).as_os_str(),
        ])
        .stdout()
}

/// Waits until `process` wrote `needle` on stderr.
fn wait_for_log(process: &Process, needle: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !process.log().contains(needle) {
        assert!(
            std::time::Instant::now() < deadline,
            "{needle:?} never logged: {}",
            process.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_seeder_killed_and_restarted_seeds_what_it_seeded() {
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    let data = random_bytes(3 << 20 | 777, 20);
    let mut sharing = share(&dir, "seeder", "data.bin", &data, &trackers);
    sharing.kill();
    let listed = list(&dir, "seeder");
    assert!(
        listed.contains("complete") && listed.contains("100.0%") && listed.contains("not served"),
        "{listed}"
    );
    // A new process on the same catalog, after a crash, serves the file again.
    let restarted = seed(&dir, "seeder");
    // (Its log is the killed process's: wait for what `list` says, not for a log line.)
    let serving = format!("seeding now, in process {}", restarted.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let listed = list(&dir, "seeder");
        if listed.contains(&serving) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{listed}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    get(&dir, "leecher", &dir.join("data.bin.mtorrent")).success();
    assert_eq!(std::fs::read(dir.join("leecher/data.bin")).unwrap(), data);
}

#[test]
fn a_downloaded_file_deleted_by_its_user_is_said_to_be_gone_and_fetched_again() {
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    let data = random_bytes(2 << 20 | 99, 21);
    let _sharing = share(&dir, "seeder", "data.bin", &data, &trackers);
    let mtorrent = dir.join("data.bin.mtorrent");
    get(&dir, "leecher", &mtorrent).success();
    let downloaded = dir.join("leecher/data.bin");
    std::fs::remove_file(&downloaded).unwrap();
    let listed = list(&dir, "leecher");
    assert!(listed.contains("gone from this path"), "{listed}");
    get(&dir, "leecher", &mtorrent).success();
    assert_eq!(std::fs::read(&downloaded).unwrap(), data);
}

#[test]
fn a_shared_file_changed_on_disk_is_verified_again_and_its_bad_pieces_never_served() {
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    let data = random_bytes(4 << 20, 21);
    let changed = share(&dir, "changed", "data.bin", &data, &trackers);
    let mtorrent = dir.join("data.bin.mtorrent");
    // The user edits one piece of the shared file while it is seeded.
    let mut edited = data.clone();
    edited[3 * 524_288 + 10] ^= 0xff;
    // In place, one byte: a rewrite of the whole file could be seen half done.
    std::os::unix::fs::FileExt::write_all_at(
        &std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("changed/data.bin"))
            .unwrap(),
        &edited[3 * 524_288 + 10..][..1],
        3 * 524_288 + 10,
    )
    .unwrap();
    // An honest seeder has the original; the leecher must never receive the edited piece.
    let _honest = share(&dir, "honest", "data.bin", &data, &trackers);
    let finished = get(&dir, "leecher", &mtorrent).success();
    assert_eq!(std::fs::read(dir.join("leecher/data.bin")).unwrap(), data);
    assert_eq!(number_after(&finished.stdout(), "pieces fetched, "), 0);
    wait_for_log(&changed, "pieces no longer match");
    let listed = list(&dir, "changed");
    assert!(
        listed.contains("failed") && listed.contains("1 of 8 pieces no longer match"),
        "{listed}\n{}",
        changed.log()
    );
    assert_eq!(
        std::fs::read(dir.join("changed/data.bin")).unwrap(),
        edited,
        "never written"
    );
}

#[test]
fn a_running_seed_takes_up_what_other_commands_add_and_remove() {
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let running = seed(&dir, "home");
    // `share` hands the file to the running seed and returns.
    let data = random_bytes(2 << 20 | 5, 22);
    std::fs::write(home.join("shared.bin"), &data).unwrap();
    let mtorrent = dir.join("shared.bin.mtorrent");
    let mut sharing = dir.command("mtorrent");
    sharing
        .args(["share".as_ref(), home.join("shared.bin").as_os_str()])
        .args(["-o".as_ref(), mtorrent.as_os_str()])
        .args(["--catalog".as_ref(), catalog(&dir, "home").as_os_str()])
        .args(trackers.args());
    sharing.run().success().stdout_contains("is sharing it now");
    get(&dir, "leecher", &mtorrent).success();
    assert_eq!(std::fs::read(dir.join("leecher/shared.bin")).unwrap(), data);

    // `get` with the same catalog downloads by itself; the seed takes it up afterwards.
    let other = random_bytes(1 << 20, 23);
    let _source = share(&dir, "source", "other.bin", &other, &trackers);
    let other_mtorrent = dir.join("other.bin.mtorrent");
    dir.command("mtorrent")
        .args(["get".as_ref(), other_mtorrent.as_os_str(), home.as_os_str()])
        .args(["--catalog".as_ref(), catalog(&dir, "home").as_os_str()])
        .run()
        .success();
    assert_eq!(std::fs::read(home.join("other.bin")).unwrap(), other);
    wait_for_log(&running, "sharing other.bin");

    // `remove` stops the running seed's sharing, and keeps the file.
    dir.command("mtorrent")
        .args(["remove".as_ref(), mtorrent.as_os_str()])
        .args(["--catalog".as_ref(), catalog(&dir, "home").as_os_str()])
        .run()
        .success();
    wait_for_log(&running, "stopped shared.bin");
    assert_eq!(std::fs::read(home.join("shared.bin")).unwrap(), data);
    let listed = list(&dir, "home");
    assert!(
        !listed.contains("shared.bin") && listed.contains("other.bin"),
        "{listed}"
    );
    // A second seed on the same catalog is refused.
    dir.command("mtorrent")
        .args([
            "seed".as_ref(),
            "--catalog".as_ref(),
            catalog(&dir, "home").as_os_str(),
        ])
        .run()
        .code(2)
        .stderr_contains("already running");
}

#[test]
fn a_running_seed_finishes_a_download_whose_get_was_killed() {
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    let data = random_bytes(12 << 20, 24);
    let _source = mtorrent_e2e::swarm::share_slowly(&dir, "source", &data, &trackers, 4_000_000);
    let mtorrent = dir.join("data.bin.mtorrent");
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut getting = Process::start(
        "mtorrent",
        [
            "get".as_ref(),
            mtorrent.as_os_str(),
            home.as_os_str(),
            "--catalog".as_ref(),
            catalog(&dir, "home").as_os_str(),
        ],
        &dir.join("get.log"),
    );
    let running = seed(&dir, "home");
    std::thread::sleep(std::time::Duration::from_millis(1000));
    assert!(
        !running.log().contains("data.bin"),
        "the seed leaves a running get alone"
    );
    getting.kill();
    wait_for_log(&running, "downloading data.bin");
    wait_until_file_equals(&home.join("data.bin"), &data);
}
