//! `mtorrent get`: download a file from its peers, resuming if it was interrupted.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mtorrent_native_peer::catalog::{Entry, EntryState};
use mtorrent_native_peer::node::Torrent;
use mtorrent_native_peer::storage::Storage;
use mtorrent_shared::Bitfield;

use super::human_bytes;
use super::peer::{open_catalog, save_progress_until_complete, start_node, torrent_for};
use crate::cli::GetArgs;
use crate::output::read_metainfo;

pub fn run(args: GetArgs) -> Result<ExitCode> {
    let metainfo = read_metainfo(&args.mtorrent)?;
    let path = destination(&args, metainfo.name())?;
    let mut catalog = open_catalog(&args.peer.catalog)?;
    let info_hash = metainfo.info_hash();
    let torrent = match catalog.get(info_hash)? {
        Some(entry) if entry.path == path => {
            let torrent = torrent_for(&catalog, &entry)?;
            eprintln!(
                "resuming {}: {} of {} pieces already verified on disk",
                path.display(),
                torrent.have().count_ones(),
                metainfo.lengths().piece_count()
            );
            torrent
        }
        Some(entry) => bail!(
            "{} is already in the catalog at {} (use `mtorrent remove` first)",
            metainfo.name(),
            entry.path.display()
        ),
        None => {
            let lengths = metainfo.lengths();
            let storage = Storage::create_new(&path, lengths).with_context(|| {
                format!(
                    "cannot create {} (an existing file is never overwritten)",
                    path.display()
                )
            })?;
            let entry = Entry {
                metainfo: metainfo.clone(),
                path: path.clone(),
                state: EntryState::Downloading,
                verified: Bitfield::new(lengths.piece_count()),
                stamp: None,
                error: None,
            };
            catalog.add(&entry)?;
            Torrent::new(metainfo.clone(), storage, entry.verified, rand::random())
        }
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let node = start_node(&args.peer).await?;
        node.add(torrent.clone(), None);
        let started = Instant::now();
        let reporter = tokio::spawn(report(torrent.clone()));
        save_progress_until_complete(&catalog, &torrent, &path).await?;
        reporter.abort();
        let seconds = started.elapsed().as_secs_f64();
        let progress = *torrent.watch_progress().borrow();
        println!(
            "downloaded {} to {} in {seconds:.1} s ({:.1} MB/s); {} pieces fetched, {} failed their hash",
            human_bytes(metainfo.size()),
            path.display(),
            metainfo.size() as f64 / seconds.max(1e-9) / 1e6,
            progress.fetched_pieces,
            progress.failed_pieces,
        );
        if args.seed {
            eprintln!("seeding; press Ctrl-C to stop");
            tokio::signal::ctrl_c().await?;
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
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
    loop {
        let progress = *torrent.watch_progress().borrow();
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
