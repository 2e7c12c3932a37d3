//! `mtorrent seed`: serve everything in the catalog and finish unfinished downloads, taking up
//! what other `mtorrent` commands add to the catalog while it runs.

use std::process::ExitCode;

use anyhow::{bail, Result};
use mtorrent_native_peer::catalog::Catalog;
use mtorrent_native_peer::locks::{Lock, Locks};

use super::peer::{open_catalog, start_node};
use super::supervisor::Supervisor;
use crate::cli::PeerArgs;

pub fn run(args: PeerArgs) -> Result<ExitCode> {
    let (catalog, locks) = open_catalog(&args.catalog)?;
    let Some(seed_lock) = locks.seed()? else {
        match locks.seed_holder() {
            Some(pid) => bail!("mtorrent seed is already running with this catalog (pid {pid})"),
            None => bail!("mtorrent seed is already running with this catalog"),
        }
    };
    run_with(&args, catalog, locks, seed_lock)
}

/// Seeds with an open catalog, holding its seed lock, until Ctrl-C or SIGTERM.
pub fn run_with(
    args: &PeerArgs,
    catalog: Catalog,
    locks: Locks,
    _seed_lock: Lock,
) -> Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let node = start_node(args).await?;
        let mut supervisor = Supervisor::new(catalog, locks, node, true);
        supervisor.run_until_signal().await
    })?;
    Ok(ExitCode::SUCCESS)
}
