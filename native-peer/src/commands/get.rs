//! `mtorrent get`: download a file from its peers, resuming if it was interrupted.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mtorrent_native_peer::catalog::{Catalog, Entry, EntryState};
use mtorrent_native_peer::locks::{Lock, Locks};
use mtorrent_native_peer::node::Torrent;
use mtorrent_native_peer::storage::Storage;
use mtorrent_shared::{Bitfield, InfoHash};

use super::human_bytes;
use super::peer::{open_catalog, start_node};
use super::supervisor::Supervisor;
use crate::cli::GetArgs;
use crate::output::read_metainfo;

pub fn run(args: GetArgs) -> Result<ExitCode> {
    let metainfo = read_metainfo(&args.mtorrent)?;
    let path = destination(&args, metainfo.name())?;
    let (mut catalog, locks) = open_catalog(&args.peer.catalog)?;
    let info_hash = metainfo.info_hash();
    let lock = match locks.entry(info_hash)? {
        Some(lock) => lock,
        None => match follow(&catalog, &locks, info_hash, &path)? {
            Some(lock) => lock,
            None => return Ok(ExitCode::SUCCESS),
        },
    };
    let mut known = catalog.get(info_hash)?;
    if known
        .as_ref()
        .is_some_and(|entry| entry.path == path && is_gone(&path))
    {
        // The file was deleted since: nothing on disk to keep, so it is fetched anew.
        eprintln!("{} is gone from disk: downloading it again", path.display());
        catalog.remove(info_hash)?;
        known = None;
    }
    let (entry, fresh) = match known {
        Some(entry) if entry.path == path => (entry, false),
        Some(entry) => bail!(
            "{} is already in the catalog at {} (use `mtorrent remove` first)",
            metainfo.name(),
            entry.path.display()
        ),
        None => {
            let lengths = metainfo.lengths();
            drop(Storage::create_new(&path, lengths).with_context(|| {
                format!(
                    "cannot create {} (an existing file is never overwritten)",
                    path.display()
                )
            })?);
            let entry = Entry {
                metainfo: metainfo.clone(),
                path: path.clone(),
                state: EntryState::Downloading,
                verified: Bitfield::new(lengths.piece_count()),
                stamp: None,
                error: None,
            };
            catalog.add(&entry)?;
            (entry, true)
        }
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let node = start_node(&args.peer).await?;
        let mut supervisor = Supervisor::new(catalog, locks, node, false);
        let torrent = supervisor.start(&entry, lock, fresh)?;
        if !torrent.is_complete() && !torrent.is_downloading() {
            bail!(
                "{} changed on disk and no longer matches its .mtorrent (see `mtorrent list`)",
                path.display()
            );
        }
        let have = torrent.have().count_ones();
        if have > 0 {
            eprintln!(
                "resuming {}: {have} of {} pieces already verified on disk",
                path.display(),
                metainfo.lengths().piece_count()
            );
        }
        let started = Instant::now();
        let reporter = tokio::spawn(report(torrent.clone()));
        supervisor.run_until_complete(info_hash).await?;
        reporter.abort();
        let seconds = started.elapsed().as_secs_f64();
        let progress = *torrent.watch_progress().borrow();
        println!(
            "downloaded {} to {} in {seconds:.1} s ({:.1} MB/s); {} pieces fetched, {} failed their hash; uploaded {} bytes meanwhile",
            human_bytes(metainfo.size()),
            path.display(),
            metainfo.size() as f64 / seconds.max(1e-9) / 1e6,
            progress.fetched_pieces,
            progress.failed_pieces,
            torrent.uploaded(),
        );
        if args.seed {
            eprintln!("seeding; press Ctrl-C to stop");
            supervisor.run_until_signal().await?;
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Whether nothing at all is at `path` any more (not even a broken link).
fn is_gone(path: &std::path::Path) -> bool {
    matches!(std::fs::symlink_metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// Another process (a running `mtorrent seed`, or another `get`) is downloading this file:
/// follows its progress in the catalog until it is complete (`None`), or returns the lock if
/// that process ends first, to finish the download here.
fn follow(
    catalog: &Catalog,
    locks: &Locks,
    info_hash: InfoHash,
    path: &Path,
) -> Result<Option<Lock>> {
    let holder = locks.entry_holder(info_hash).map_or_else(
        || "another process".to_owned(),
        |pid| format!("process {pid}"),
    );
    eprintln!("{holder} is already downloading it; following its progress");
    let mut last_line = Instant::now();
    let mut seen = None;
    let mut percent_verified = 0.0;
    loop {
        // The entry is read again only when some process changed the catalog.
        let version = catalog.data_version()?;
        if seen != Some(version) {
            seen = Some(version);
            let Some(entry) = catalog.get(info_hash)? else {
                bail!("it was removed from the catalog while {holder} downloaded it");
            };
            if entry.path != path {
                bail!(
                    "it is already in the catalog at {} (use `mtorrent remove` first)",
                    entry.path.display()
                );
            }
            if entry.verified.is_complete() {
                println!("{holder} downloaded it to {}", path.display());
                return Ok(None);
            }
            let pieces = entry.metainfo.lengths().piece_count();
            percent_verified =
                f64::from(entry.verified.count_ones()) * 100.0 / f64::from(pieces.max(1));
        }
        if let Some(lock) = locks.entry(info_hash)? {
            return Ok(Some(lock));
        }
        if last_line.elapsed() >= Duration::from_secs(5) {
            eprintln!("{percent_verified:.1}% verified");
            last_line = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn destination(args: &GetArgs, name: &str) -> Result<PathBuf> {
    let target = args
        .destination
        .clone()
        .unwrap_or_else(|| PathBuf::from("."));
    let path = if target.is_dir() {
        target.join(name)
    } else {
        target
    };
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let parent = parent
        .canonicalize()
        .with_context(|| format!("cannot use {}", parent.display()))?;
    Ok(parent.join(path.file_name().context("the destination names no file")?))
}

/// How long `get` waits without any peer before it says so.
const NO_PEERS_NOTICE: Duration = Duration::from_secs(10);

/// Progress on stderr: a bar on a terminal, a line every few seconds otherwise.
async fn report(torrent: std::sync::Arc<Torrent>) {
    let total = torrent.metainfo.size();
    let terminal = std::io::stderr().is_terminal();
    let bar = terminal.then(|| {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {percent:>3}% {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar
    });
    let mut last_line = Instant::now();
    let started = Instant::now();
    let mut told_no_peers = false;
    loop {
        let progress = *torrent.watch_progress().borrow();
        if progress.peers == 0 && !told_no_peers && started.elapsed() >= NO_PEERS_NOTICE {
            let message = "no peer with this file is reachable yet; waiting for one \
                           (the trackers are asked again regularly)";
            match &bar {
                Some(bar) => bar.println(message),
                None => eprintln!("{message}"),
            }
            told_no_peers = true;
        }
        if progress.peers > 0 {
            told_no_peers = false;
        }
        match &bar {
            Some(bar) => {
                bar.set_position(progress.bytes);
                bar.set_message(format!("{} peers", progress.peers));
            }
            None if last_line.elapsed() >= Duration::from_secs(5) => {
                eprintln!(
                    "{:.1}% of {} from {} peers",
                    progress.bytes as f64 * 100.0 / total.max(1) as f64,
                    human_bytes(total),
                    progress.peers
                );
                last_line = Instant::now();
            }
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
