//! A swarm under test: two twin trackers and `mtorrent` peers, each with its own directory and
//! catalog under a test's [`Dir`].

use std::path::Path;

use crate::command::{Dir, Finished};
use crate::launcher::Launcher;
use crate::process::Process;

const TWIN_SECRET: &str = "peer-tests-twin-secret-0123";

/// Two twin trackers.
#[derive(Debug)]
pub struct Trackers {
    /// Tracker 1.
    pub one: Process,
    /// Tracker 2, twin of tracker 1.
    pub two: Process,
}

impl Trackers {
    /// Starts tracker 1, then tracker 2 as its twin; both serve the page.
    pub fn start(dir: &Dir) -> Self {
        Self::start_logging_in(dir.path())
    }

    /// [`Trackers::start`], their logs in `logs`.
    pub fn start_logging_in(logs: &Path) -> Self {
        let www = crate::www_dir().to_string_lossy().into_owned();
        let one = Process::start(
            "mtorrent-tracker",
            [
                "--listen",
                "127.0.0.1:0",
                "--twin-secret",
                TWIN_SECRET,
                "--www",
                &www,
            ],
            &logs.join("tracker-1.log"),
        );
        let twin = one.ws_url();
        let two = Process::start(
            "mtorrent-tracker",
            [
                "--listen",
                "127.0.0.1:0",
                "--twin-secret",
                TWIN_SECRET,
                "--twin",
                &twin,
                "--www",
                &www,
            ],
            &logs.join("tracker-2.log"),
        );
        Self { one, two }
    }

    /// The page, served by tracker 1.
    pub fn page_url(&self) -> String {
        format!("http://{}/", self.one.addr())
    }

    /// `--tracker URL1 --tracker URL2`.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--tracker".into(),
            self.one.ws_url(),
            "--tracker".into(),
            self.two.ws_url(),
        ]
    }
}

/// A seeding `mtorrent share` of `file` (in `dir/name/`), with its own catalog.
pub fn share(dir: &Dir, name: &str, file: &str, data: &[u8], trackers: &Trackers) -> Process {
    share_with(dir, name, file, data, trackers, &[])
}

/// [`share`] of `data.bin`, uploading at most `bytes_per_second`: a slow seeder, so that a
/// test can act while a download is under way, or make sure other peers are asked too.
pub fn share_slowly(
    dir: &Dir,
    name: &str,
    data: &[u8],
    trackers: &Trackers,
    bytes_per_second: u64,
) -> Process {
    let rate = bytes_per_second.to_string();
    share_with(
        dir,
        name,
        "data.bin",
        data,
        trackers,
        &["--max-upload-rate", &rate],
    )
}

/// [`share`] with extra arguments.
fn share_with(
    dir: &Dir,
    name: &str,
    file: &str,
    data: &[u8],
    trackers: &Trackers,
    extra: &[&str],
) -> Process {
    let mut args: Vec<String> = trackers.args();
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    share_through(&Launcher::local(), dir, name, file, data, &args)
}

/// `mtorrent share` of `data`, written to `dir/name/file`, into `dir/file.mtorrent`, with its
/// own catalog in `dir/name/` and `args` (the trackers among them), started by `launcher`.
pub fn share_through(
    launcher: &Launcher,
    dir: &Dir,
    name: &str,
    file: &str,
    data: &[u8],
    extra_args: &[String],
) -> Process {
    let home = dir.join(name);
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join(file), data).unwrap();
    let mut args = vec![
        "share".to_owned(),
        home.join(file).to_string_lossy().into_owned(),
        "-o".into(),
        dir.join(format!("{file}.mtorrent"))
            .to_string_lossy()
            .into_owned(),
        "--catalog".into(),
        home.join("catalog.sqlite").to_string_lossy().into_owned(),
    ];
    args.extend_from_slice(extra_args);
    Process::start_with(launcher, "mtorrent", args, &dir.join(format!("{name}.log")))
}

/// `mtorrent get --seed` into `dir/name/`, kept running as a seeder once complete.
pub fn get_and_seed(dir: &Dir, name: &str, mtorrent: &Path) -> Process {
    let home = dir.join(name);
    std::fs::create_dir_all(&home).unwrap();
    Process::start(
        "mtorrent",
        [
            "get".to_owned(),
            mtorrent.to_string_lossy().into_owned(),
            home.to_string_lossy().into_owned(),
            "--seed".into(),
            "--catalog".into(),
            home.join("catalog.sqlite").to_string_lossy().into_owned(),
        ],
        &dir.join(format!("{name}.log")),
    )
}

/// `mtorrent get` into `dir/name/` with its own catalog, run to the end.
pub fn get(dir: &Dir, name: &str, mtorrent: &Path) -> Finished {
    let home = dir.join(name);
    std::fs::create_dir_all(&home).unwrap();
    dir.command("mtorrent")
        .args(["get".as_ref(), mtorrent.as_os_str(), home.as_os_str()])
        .args([
            "--catalog".as_ref(),
            home.join("catalog.sqlite").as_os_str(),
        ])
        .run()
}

/// Waits up to a minute until the file at `path` holds exactly `data`.
pub fn wait_until_file_equals(path: &Path, data: &[u8]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::read(path).ok().as_deref() != Some(data) {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never completed",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The number after `before` in `text`.
pub fn number_after(text: &str, before: &str) -> u32 {
    let start = text
        .find(before)
        .unwrap_or_else(|| panic!("{before:?} not in {text}"))
        + before.len();
    text[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}
