//! `mtorrent seed`: serve everything in the catalog and finish unfinished downloads.

use std::process::ExitCode;

use anyhow::Result;
use mtorrent_native_peer::catalog::{Catalog, EntryState};

use super::peer::{open_catalog, save_progress_until_complete, start_node, torrent_for};
use crate::cli::PeerArgs;

pub fn run(args: PeerArgs) -> Result<ExitCode> {
    let catalog = open_catalog(&args.catalog)?;
    run_with(&args, catalog)
}

/// Seeds with an open catalog until Ctrl-C or SIGTERM.
pub fn run_with(args: &PeerArgs, catalog: Catalog) -> Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let node = start_node(args).await?;
        let mut downloads = Vec::new();
        for entry in catalog.list()? {
            if matches!(entry.state, EntryState::Paused) {
                continue;
            }
            let torrent = match torrent_for(&catalog, &entry) {
                Ok(torrent) => torrent,
                Err(e) => {
                    eprintln!("error: {}: {e:#}", entry.path.display());
                    catalog.set_state(
                        entry.metainfo.info_hash(),
                        EntryState::Failed,
                        Some(&format!("{e:#}")),
                    )?;
                    continue;
                }
            };
            let register = torrent.is_complete().then(|| entry.metainfo.to_json());
            node.add(torrent.clone(), register);
            if !torrent.is_complete() {
                downloads.push((torrent, entry.path.clone()));
            }
            eprintln!(
                "sharing {} ({})",
                entry.metainfo.name(),
                entry.path.display()
            );
        }
        for (torrent, path) in &downloads {
            save_progress_until_complete(&catalog, torrent, path).await?;
        }
        shutdown_signal().await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
