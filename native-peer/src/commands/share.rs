//! `mtorrent share`: hash a file, record it, register it with the trackers and seed it.

use std::process::ExitCode;

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mtorrent_native_peer::catalog::{Entry, EntryState, FileStamp};
use mtorrent_native_peer::locks::Locks;
use mtorrent_shared::Bitfield;
use mtorrent_shared::InfoHash;

use super::create::{chosen_trackers, hash_into_metainfo};
use super::peer::open_catalog;
use super::seed;
use crate::cli::ShareArgs;
use crate::output;

pub fn run(args: ShareArgs) -> Result<ExitCode> {
    // Without any setting, the two trackers scripts/run.sh starts on this machine.
    let trackers = chosen_trackers(
        &args.trackers,
        Some(["ws://127.0.0.1:7001/ws", "ws://127.0.0.1:7002/ws"]),
    )?;
    let path = args
        .file
        .canonicalize()
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let stamp = FileStamp::of(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let metainfo = hash_into_metainfo(&path, trackers, args.hashing.workers())?;
    let document = metainfo.to_json();
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| format!("{}.mtorrent", metainfo.name()).into());
    output::write_atomically(&out, document.as_bytes(), true)?;
    let (mut catalog, locks) = open_catalog(&args.peer.catalog)?;
    catalog.add(&Entry {
        verified: Bitfield::full(metainfo.lengths().piece_count()),
        metainfo: metainfo.clone(),
        path,
        state: EntryState::Seeding,
        stamp: Some(stamp),
        error: None,
    })?;
    println!(
        "wrote {} (info hash {})",
        out.display(),
        metainfo.info_hash()
    );
    let info_hash = metainfo.info_hash();
    match locks.seed()? {
        Some(seed_lock) => seed::run_with(&args.peer, catalog, locks, seed_lock),
        None => hand_over(&locks, info_hash),
    }
}

/// A seed is already running with this catalog: it takes the new entry up; wait until it has.
fn hand_over(locks: &Locks, info_hash: InfoHash) -> Result<ExitCode> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seed = locks.seed_holder();
        if let (Some(seed), Some(holder)) = (seed, locks.entry_holder(info_hash)) {
            if seed == holder {
                println!("the running mtorrent seed (pid {seed}) is sharing it now");
                return Ok(ExitCode::SUCCESS);
            }
        }
        if seed.is_none() || Instant::now() > deadline {
            bail!("the running mtorrent seed did not take it up; run `mtorrent seed` to share it");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
