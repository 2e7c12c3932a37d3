//! Helpers for the end-to-end tests: finding the project's binaries, running commands, and
//! supervising long-running processes.

use std::path::PathBuf;

/// The path of one of the workspace's binaries (`mtorrent`, `mtorrent-tracker`, ...), built in
/// the same profile as the running test.
///
/// `CARGO_BIN_EXE_*` only exists inside the package that owns a binary, so this looks next to
/// the test executable instead: tests run from `target/<profile>/deps/`, binaries live in
/// `target/<profile>/`.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("tests run from target/<profile>/deps");
    let path = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first (`cargo test --workspace` builds it)",
        path.display()
    );
    path
}

pub mod command;
pub mod process;
pub mod tracker_client;
