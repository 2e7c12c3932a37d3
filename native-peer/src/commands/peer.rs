//! What `share`, `get` and `seed` have in common: the catalog, checking what is on disk, and
//! running the node while its progress is saved.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use mtorrent_native_peer::catalog::{Catalog, Entry, EntryState, FileStamp};
use mtorrent_native_peer::hashing::{self, PieceResult};
use mtorrent_native_peer::node::{Node, Torrent};
use mtorrent_native_peer::storage::Storage;
use mtorrent_shared::{Bitfield, Metainfo};

use crate::cli::{CatalogArgs, PeerArgs};

/// Opens the catalog the arguments name.
pub fn open_catalog(args: &CatalogArgs) -> Result<Catalog> {
    let path = args.catalog.clone().unwrap_or_else(Catalog::default_path);
    Catalog::open(&path).with_context(|| format!("cannot open the catalog {}", path.display()))
}

/// Which of `claimed` pieces really match on disk: only those are trusted.
pub fn reverify(path: &Path, metainfo: &Metainfo, claimed: &Bitfield) -> Result<Bitfield> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let size = file.metadata()?.len();
    let lengths = metainfo.lengths();
    let good = std::sync::Mutex::new(Bitfield::new(lengths.piece_count()));
    hashing::hash_pieces(
        &file,
        lengths,
        size,
        hashing::default_workers(),
        &AtomicU64::new(0),
        &|piece, result| {
            if claimed.get(piece)
                && result == PieceResult::Hashed(metainfo.piece_hashes()[piece.get() as usize])
            {
                good.lock().expect("no worker panicked").set(piece);
            }
        },
    )
    .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(good.into_inner().expect("no worker panicked"))
}

/// Prepares a catalog entry for the node: a seeded file whose stamp changed is verified again,
/// and a download's verified pieces are checked before they are trusted.
pub fn torrent_for(catalog: &Catalog, entry: &Entry) -> Result<Arc<Torrent>> {
    let lengths = entry.metainfo.lengths();
    let stamp = FileStamp::of(&entry.path).ok();
    let have = if entry.state == EntryState::Seeding && stamp.is_some() && stamp == entry.stamp {
        entry.verified.clone()
    } else {
        let have = reverify(
            &entry.path,
            &entry.metainfo,
            &Bitfield::full(lengths.piece_count()),
        )?;
        catalog.save_progress(
            entry.metainfo.info_hash(),
            &have,
            FileStamp::of(&entry.path).ok(),
        )?;
        have
    };
    let writable = !have.is_complete();
    let storage = Storage::open_existing(&entry.path, lengths, writable)
        .with_context(|| format!("cannot open {}", entry.path.display()))?;
    Ok(Torrent::new(
        entry.metainfo.clone(),
        storage,
        have,
        rand::random(),
    ))
}

/// Starts a node on the arguments' address and says where it listens, on stdout.
pub async fn start_node(args: &PeerArgs) -> Result<Arc<Node>> {
    use std::io::Write;
    let node = Node::start(args.listen, args.advertise.clone(), args.max_upload_rate).await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {}", node.listen_addr)?;
    stdout.flush()?;
    Ok(node)
}

/// Saves a torrent's verified pieces to the catalog whenever they change, after making the
/// written data durable; marks it seeding once complete. Returns when it is complete.
pub async fn save_progress_until_complete(
    catalog: &Catalog,
    torrent: &Torrent,
    path: &Path,
) -> Result<()> {
    let info_hash = torrent.metainfo.info_hash();
    let mut progress = torrent.watch_progress();
    let mut saved = u32::MAX;
    loop {
        let pieces = progress.borrow_and_update().pieces;
        if pieces != saved {
            torrent.storage.sync().context("cannot write to disk")?;
            catalog.save_progress(info_hash, &torrent.have(), FileStamp::of(path).ok())?;
            saved = pieces;
        }
        if torrent.is_complete() {
            torrent.storage.sync().context("cannot write to disk")?;
            catalog.save_progress(info_hash, &torrent.have(), FileStamp::of(path).ok())?;
            catalog.set_state(info_hash, EntryState::Seeding, None)?;
            return Ok(());
        }
        tokio::select! {
            changed = progress.changed() => changed.context("the torrent stopped")?,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}
