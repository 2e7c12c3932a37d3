//! What `share`, `get` and `seed` have in common: the catalog, checking what is on disk, and
//! running the node while its progress is saved.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::{Context, Result};
use mtorrent_native_peer::catalog::{Catalog, Entry, EntryState, FileStamp};
use mtorrent_native_peer::config::Config;
use mtorrent_native_peer::hashing::{self, PieceResult};
use mtorrent_native_peer::locks::Locks;
use mtorrent_native_peer::node::{Node, Torrent};
use mtorrent_native_peer::storage::Storage;
use mtorrent_shared::{Bitfield, Metainfo, PeerId};
use mtorrent_tls::ServerTls;

use crate::cli::{CatalogArgs, PeerArgs};

/// Opens the catalog the arguments name, with its locks.
pub fn open_catalog(args: &CatalogArgs) -> Result<(Catalog, Locks)> {
    let path = args.catalog.clone().unwrap_or_else(Catalog::default_path);
    let catalog = Catalog::open(&path)
        .with_context(|| format!("cannot open the catalog {}", path.display()))?;
    Ok((catalog, Locks::for_catalog(&path)))
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

/// Prepares a catalog entry for the node. A download's pieces are all checked on disk before
/// they are trusted (pieces verified after the last save are found again, never fetched
/// twice), unless the download is `fresh`: its file was just created, empty. A file served as it is is checked again if its size or modification time changed:
/// only the pieces that still match are served, and it is never written to.
pub fn prepare_torrent(
    catalog: &Catalog,
    entry: &Entry,
    fresh: bool,
    our_peer_id: PeerId,
) -> Result<Arc<Torrent>> {
    // A file its user is still writing can change while it is checked: check it again, a few
    // times, before giving up on it.
    let mut attempt = 1;
    loop {
        match prepare_once(catalog, entry, fresh, our_peer_id) {
            Err(Prepare::ChangedMeanwhile) if attempt < PREPARE_ATTEMPTS => attempt += 1,
            Err(Prepare::ChangedMeanwhile) => anyhow::bail!(
                "{} kept changing while it was verified ({PREPARE_ATTEMPTS} times)",
                entry.path.display()
            ),
            Err(Prepare::Failed(e)) => return Err(e),
            Ok(torrent) => return Ok(torrent),
        }
    }
}

/// How many times [`prepare_torrent`] checks a file that changes while it is checked.
const PREPARE_ATTEMPTS: u32 = 3;

/// Why one try of [`prepare_torrent`] gave no torrent.
enum Prepare {
    /// The file changed while it was checked.
    ChangedMeanwhile,
    /// Anything else.
    Failed(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Prepare {
    fn from(e: E) -> Self {
        Prepare::Failed(e.into())
    }
}

fn prepare_once(
    catalog: &Catalog,
    entry: &Entry,
    fresh: bool,
    our_peer_id: PeerId,
) -> Result<Arc<Torrent>, Prepare> {
    let lengths = entry.metainfo.lengths();
    let info_hash = entry.metainfo.info_hash();
    let downloading = entry.state == EntryState::Downloading;
    let stamp = FileStamp::of(&entry.path).ok();
    let trusted = !downloading && stamp.is_some() && stamp == entry.stamp;
    let have = if trusted && entry.verified.is_complete() || fresh && downloading {
        entry.verified.clone()
    } else {
        let have = reverify(
            &entry.path,
            &entry.metainfo,
            &Bitfield::full(lengths.piece_count()),
        )?;
        catalog.save_progress(info_hash, &have, stamp)?;
        if !downloading && !have.is_complete() {
            let message = format!(
                "the file changed on disk: {} of {} pieces no longer match; the others are still served",
                lengths.piece_count() - have.count_ones(),
                lengths.piece_count()
            );
            eprintln!("warning: {}: {message}", entry.path.display());
            catalog.set_state(info_hash, EntryState::Failed, Some(&message))?;
        } else if !downloading && entry.state != EntryState::Seeding {
            catalog.set_state(info_hash, EntryState::Seeding, None)?;
        }
        have
    };
    let writable = downloading && !have.is_complete();
    let storage = Storage::open_existing(&entry.path, lengths, writable)
        .with_context(|| format!("cannot open {}", entry.path.display()))?;
    if !writable && storage.stamp().ok() != stamp {
        return Err(Prepare::ChangedMeanwhile);
    }
    Ok(Torrent::new(
        entry.metainfo.clone(),
        storage,
        have,
        our_peer_id,
        rand::random(),
    ))
}

/// Starts a node on the arguments' address and says where it listens, on stdout.
pub async fn start_node(args: &PeerArgs) -> Result<Arc<Node>> {
    use std::io::Write;
    let tls = server_tls(args)?;
    let node = Node::start(
        args.listen,
        args.advertise.clone(),
        args.max_upload_rate,
        tls,
    )
    .await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {}", node.listen_addr)?;
    stdout.flush()?;
    Ok(node)
}

/// The node's TLS, from `--tls-cert`/`--tls-key`, else from `tls_cert`/`tls_key` in the
/// settings file; `None` if neither says. Read before anything listens, so that a bad
/// certificate or key is an error at once.
fn server_tls(args: &PeerArgs) -> Result<Option<ServerTls>> {
    let paths = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        _ => match Config::default_path() {
            Some(path) => Config::load(&path)?
                .tls_paths()
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            None => None,
        },
    };
    let Some((cert, key)) = paths else {
        return Ok(None);
    };
    Ok(Some(ServerTls::from_pem_files(&cert, &key)?))
}
