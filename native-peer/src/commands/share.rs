//! `mtorrent share`: hash a file, record it, register it with the trackers and seed it.

use std::process::ExitCode;

use anyhow::{Context, Result};
use mtorrent_native_peer::catalog::{Entry, EntryState, FileStamp};
use mtorrent_shared::Bitfield;

use super::create::{hash_into_metainfo, two_trackers};
use super::peer::open_catalog;
use super::seed;
use crate::cli::ShareArgs;
use crate::output;

pub fn run(args: ShareArgs) -> Result<ExitCode> {
    let trackers = two_trackers(&args.trackers)?;
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
    let mut catalog = open_catalog(&args.peer.catalog)?;
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
    seed::run_with(&args.peer, catalog)
}
