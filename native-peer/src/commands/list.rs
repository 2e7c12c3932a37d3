//! `mtorrent list`: every file in the catalog, what is verified of it, and what is true of it
//! right now: whether a running process serves or downloads it, or nobody does.

use std::process::ExitCode;

use anyhow::Result;
use mtorrent_native_peer::catalog::{Entry, EntryState};
use mtorrent_native_peer::locks::Locks;

use super::peer::open_catalog;
use crate::cli::CatalogArgs;

pub fn run(args: CatalogArgs) -> Result<ExitCode> {
    let (catalog, locks) = open_catalog(&args)?;
    let entries = catalog.list()?;
    if entries.is_empty() {
        println!("the catalog is empty");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<10} {:>7}  {:<40}  path", "state", "done", "info hash");
    for entry in entries {
        let pieces = entry.metainfo.lengths().piece_count();
        let done = if pieces == 0 {
            100.0
        } else {
            f64::from(entry.verified.count_ones()) * 100.0 / f64::from(pieces)
        };
        println!(
            "{:<10} {:>6.1}%  {}  {}",
            state(&entry),
            done,
            entry.metainfo.info_hash(),
            entry.path.display()
        );
        println!("{:<10} {}", "", activity(&entry, &locks));
        if let Some(error) = entry.error {
            println!("{:<10} {error}", "");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What the catalog knows of the file: whether it is all there.
fn state(entry: &Entry) -> &'static str {
    match entry.state {
        EntryState::Seeding => "complete",
        EntryState::Downloading => "incomplete",
        EntryState::Paused => "paused",
        EntryState::Failed => "failed",
    }
}

/// What is happening to the file now: the process that holds its lock serves or downloads
/// it; without one, nobody does.
fn activity(entry: &Entry, locks: &Locks) -> String {
    if std::fs::symlink_metadata(&entry.path)
        .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
    {
        return "the file is gone from this path (`mtorrent get` fetches it again, `mtorrent remove` forgets it)".into();
    }
    match (locks.entry_holder(entry.metainfo.info_hash()), entry.state) {
        (Some(pid), EntryState::Downloading) => format!("downloading now, in process {pid}"),
        (Some(pid), _) => format!("seeding now, in process {pid}"),
        (None, EntryState::Paused) => "not served while paused".into(),
        (None, EntryState::Downloading) if locks.seed_holder().is_none() => {
            "not downloading: no mtorrent process works on it (`mtorrent seed` resumes it)".into()
        }
        (None, EntryState::Downloading) => "waiting for the running seed to resume it".into(),
        (None, _) if locks.seed_holder().is_none() => {
            "not served: no mtorrent process serves it (`mtorrent seed` serves it)".into()
        }
        (None, _) => "waiting for the running seed to serve it".into(),
    }
}
