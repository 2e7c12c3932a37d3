//! One file the node downloads or seeds: its storage, the pieces it has, the scheduler that
//! picks what to request, and a handle on every connected peer. Connection tasks call in here;
//! the state is behind one lock held only for bookkeeping, never across I/O waits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mtorrent_shared::{
    Bitfield, BlockOutcome, BlockRef, Event, Metainfo, PeerId, PeerKey, PieceHash, Scheduler,
    SchedulerConfig, ValidPieceIndex,
};
use tokio::sync::{mpsc, watch};

use crate::catalog::FileStamp;
use crate::storage::Storage;

/// Why a block cannot be uploaded.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Reading the file failed.
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    /// The file changed on disk since its pieces were verified: nothing is served from it
    /// until it is verified again.
    #[error("the file changed on disk since it was verified")]
    Changed,
}

/// What a torrent tells one connection task to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerCommand {
    /// Announce a newly verified piece.
    Have(ValidPieceIndex),
    /// Withdraw a request another peer answered first.
    Cancel(BlockRef),
    /// Close the connection (the peer sent bad data too often).
    Close,
    /// New blocks may be requestable: ask the scheduler again.
    Wake,
}

/// Download progress, published to whoever watches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Verified pieces.
    pub pieces: u32,
    /// Verified bytes.
    pub bytes: u64,
    /// Connected peers.
    pub peers: usize,
    /// Pieces received and verified since this torrent started (not those already on disk).
    pub fetched_pieces: u32,
    /// Pieces that failed their hash.
    pub failed_pieces: u64,
    /// Blocks received that were already there (endgame duplicates).
    pub duplicate_blocks: u64,
}

/// Whether a torrent was stopped (see [`Torrent::stop_signal`]).
#[derive(Debug)]
pub struct StopSignal(watch::Receiver<bool>);

impl StopSignal {
    /// Resolves once the torrent is stopped (at once if it already is).
    pub async fn wait(&mut self) {
        // An error means the torrent is gone: stopped for good.
        let _ = self.0.wait_for(|&stopped| stopped).await;
    }
}

/// One downloaded or seeded file.
#[derive(Debug)]
pub struct Torrent {
    /// Its `.mtorrent`.
    pub metainfo: Metainfo,
    /// Its bytes on disk.
    pub storage: Storage,
    started: Instant,
    inner: Mutex<Inner>,
    progress: watch::Sender<Progress>,
    /// For a file served as it is: its stamp when its pieces were verified.
    verified_stamp: Option<FileStamp>,
    changed: AtomicBool,
    stopped: watch::Sender<bool>,
    uploaded: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    have: Bitfield,
    scheduler: Option<Scheduler>,
    peers: HashMap<PeerKey, Peer>,
    next_key: u64,
    bytes_have: u64,
    fetched_pieces: u32,
    failed_pieces: u64,
    duplicate_blocks: u64,
}

#[derive(Debug)]
struct Peer {
    peer_id: PeerId,
    commands: mpsc::UnboundedSender<PeerCommand>,
}

impl Torrent {
    /// A torrent with `have` already verified on disk. Without every piece it downloads, if
    /// its storage is writable; read-only storage is served as it is, and every upload first
    /// checks that the file has not changed since it was opened.
    pub fn new(metainfo: Metainfo, storage: Storage, have: Bitfield, seed: u64) -> Arc<Self> {
        let verified_stamp = if storage.is_writable() {
            None
        } else {
            // An unreadable stamp never matches, so nothing is served.
            Some(storage.stamp().unwrap_or(FileStamp {
                size: u64::MAX,
                mtime_ns: i64::MIN,
            }))
        };
        let scheduler = (!have.is_complete() && storage.is_writable()).then(|| {
            Scheduler::new(
                metainfo.lengths(),
                have.clone(),
                SchedulerConfig::default(),
                seed,
            )
            .expect("a bitfield of the right size and a valid default config")
        });
        let progress = Progress {
            pieces: have.count_ones(),
            bytes: bytes_of(&metainfo, &have),
            peers: 0,
            fetched_pieces: 0,
            failed_pieces: 0,
            duplicate_blocks: 0,
        };
        Arc::new(Self {
            metainfo,
            storage,
            started: Instant::now(),
            inner: Mutex::new(Inner {
                have,
                scheduler,
                peers: HashMap::new(),
                next_key: 1,
                bytes_have: progress.bytes,
                fetched_pieces: 0,
                failed_pieces: 0,
                duplicate_blocks: 0,
            }),
            progress: watch::channel(progress).0,
            verified_stamp,
            changed: AtomicBool::new(false),
            stopped: watch::channel(false).0,
            uploaded: AtomicU64::new(0),
        })
    }

    /// Reads a block a peer asked for. A file served as it is must not have changed since it
    /// was verified; if it has, nothing more is served and [`Torrent::has_changed`] says so.
    pub fn read_for_upload(&self, block: BlockRef, buffer: &mut [u8]) -> Result<(), UploadError> {
        if self.changed.load(Ordering::Relaxed) {
            return Err(UploadError::Changed);
        }
        self.storage.read_block(block, buffer)?;
        // Checked after the read: a change before or during it shows in the stamp.
        if let Some(verified) = self.verified_stamp {
            if self.storage.stamp()? != verified {
                self.changed.store(true, Ordering::Relaxed);
                return Err(UploadError::Changed);
            }
        }
        Ok(())
    }

    /// Counts bytes of piece data sent to peers.
    pub fn add_uploaded(&self, bytes: usize) {
        self.uploaded.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Bytes of piece data sent to peers since the torrent started.
    pub fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }

    /// Whether the file, served as it is, changed on disk: it must be verified again.
    pub fn has_changed(&self) -> bool {
        self.changed.load(Ordering::Relaxed)
            || self
                .verified_stamp
                .is_some_and(|verified| self.storage.stamp().ok() != Some(verified))
    }

    /// Whether this torrent downloads (it lacks pieces and may write them).
    pub fn is_downloading(&self) -> bool {
        self.lock().scheduler.is_some()
    }

    /// Stops the torrent: its connections close and its announcer leaves the swarm.
    pub fn stop(&self) {
        self.stopped.send_replace(true);
    }

    /// A signal that [`Torrent::stop`] was called; a loop keeps one and waits on it each turn.
    pub fn stop_signal(&self) -> StopSignal {
        StopSignal(self.stopped.subscribe())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Time since the torrent started, the scheduler's clock.
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// The pieces verified on disk.
    pub fn have(&self) -> Bitfield {
        self.lock().have.clone()
    }

    /// Whether every piece is verified.
    pub fn is_complete(&self) -> bool {
        self.lock().have.is_complete()
    }

    /// Progress updates.
    pub fn watch_progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Whether a peer with this id is already connected (to avoid duplicate connections).
    pub fn is_connected(&self, peer_id: PeerId) -> bool {
        self.lock().peers.values().any(|p| p.peer_id == peer_id)
    }

    /// Registers a connected peer whose bitfield arrived; returns its key and command channel.
    pub fn add_peer(
        &self,
        peer_id: PeerId,
        bitfield: Bitfield,
    ) -> (PeerKey, mpsc::UnboundedReceiver<PeerCommand>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut inner = self.lock();
        let key = PeerKey(inner.next_key);
        inner.next_key += 1;
        if let Some(scheduler) = inner.scheduler.as_mut() {
            // Only a banned key could be refused, and keys are never reused.
            let _ = scheduler.handle_peer_added(key, bitfield);
            // The wire protocol's choke state is tracked by the session; the scheduler only
            // hears requests for unchoked peers.
            scheduler.handle_unchoked(key);
        }
        inner.peers.insert(
            key,
            Peer {
                peer_id,
                commands: tx,
            },
        );
        drop(inner);
        self.publish();
        (key, rx)
    }

    /// Forgets a disconnected peer; its outstanding requests go to others.
    pub fn remove_peer(&self, key: PeerKey) {
        let mut inner = self.lock();
        inner.peers.remove(&key);
        if let Some(scheduler) = inner.scheduler.as_mut() {
            scheduler.handle_peer_removed(key);
        }
        Self::route_events(&mut inner);
        Self::wake_all(&inner);
        drop(inner);
        self.publish();
    }

    /// A peer announced a piece.
    pub fn peer_has(&self, key: PeerKey, piece: ValidPieceIndex) {
        let mut inner = self.lock();
        if let Some(scheduler) = inner.scheduler.as_mut() {
            scheduler.handle_have(key, piece);
        }
    }

    /// Up to `room` blocks to request from `key` now.
    pub fn next_requests(&self, key: PeerKey, room: usize) -> Vec<BlockRef> {
        let mut inner = self.lock();
        let now = self.now();
        let Some(scheduler) = inner.scheduler.as_mut() else {
            return Vec::new();
        };
        std::iter::from_fn(|| scheduler.next_request(key, now))
            .take(room)
            .collect()
    }

    /// A peer refused one of our requests.
    pub fn request_rejected(&self, key: PeerKey, block: BlockRef) {
        let mut inner = self.lock();
        if let Some(scheduler) = inner.scheduler.as_mut() {
            scheduler.handle_request_rejected(key, block);
        }
        Self::route_events(&mut inner);
    }

    /// The peer choked us: its requests are void.
    pub fn peer_choked(&self, key: PeerKey) {
        let mut inner = self.lock();
        if let Some(scheduler) = inner.scheduler.as_mut() {
            scheduler.handle_choked(key);
        }
        Self::wake_all(&inner);
    }

    /// The peer unchoked us.
    pub fn peer_unchoked(&self, key: PeerKey) {
        let mut inner = self.lock();
        if let Some(scheduler) = inner.scheduler.as_mut() {
            scheduler.handle_unchoked(key);
        }
    }

    /// Stores a received block; when it completes a piece, verifies the piece and, if it is
    /// good, announces it to every peer. Returns an error only for disk failures.
    ///
    /// The block is written while the lock is held: otherwise another connection could report
    /// the piece's last block, and hash the piece, before this block reached the disk.
    pub fn block_received(
        &self,
        key: PeerKey,
        block: BlockRef,
        data: &Bytes,
    ) -> std::io::Result<()> {
        let outcome = {
            let mut inner = self.lock();
            let Some(scheduler) = inner.scheduler.as_mut() else {
                return Ok(());
            };
            let outcome = scheduler.handle_block_received(key, block);
            match outcome {
                BlockOutcome::Stored | BlockOutcome::PieceComplete(_) => {
                    self.storage.write_block(block, data)?;
                }
                BlockOutcome::Duplicate => inner.duplicate_blocks += 1,
                BlockOutcome::Unrequested => {}
            }
            Self::route_events(&mut inner);
            outcome
        };
        match outcome {
            BlockOutcome::PieceComplete(piece) => self.verify_piece(piece),
            _ => Ok(()),
        }
    }

    fn verify_piece(&self, piece: ValidPieceIndex) -> std::io::Result<()> {
        let mut buffer = vec![0; self.metainfo.lengths().piece_length(piece) as usize];
        let data = self.storage.read_piece(piece, &mut buffer)?;
        let good = PieceHash::of(data) == self.metainfo.piece_hashes()[piece.get() as usize];
        let mut inner = self.lock();
        let Some(scheduler) = inner.scheduler.as_mut() else {
            return Ok(());
        };
        if good {
            let _ = scheduler.handle_hash_ok(piece);
            inner.have.set(piece);
            inner.bytes_have += u64::from(self.metainfo.lengths().piece_length(piece));
            inner.fetched_pieces += 1;
            for peer in inner.peers.values() {
                let _ = peer.commands.send(PeerCommand::Have(piece));
            }
            if inner.have.is_complete() {
                inner.scheduler = None;
            }
        } else {
            let _ = scheduler.handle_hash_failed(piece);
            inner.failed_pieces += 1;
        }
        Self::route_events(&mut inner);
        Self::wake_all(&inner);
        drop(inner);
        self.publish();
        Ok(())
    }

    /// Re-assigns stalled requests; call about once a second.
    pub fn tick(&self) {
        let mut inner = self.lock();
        let now = self.now();
        if let Some(scheduler) = inner.scheduler.as_mut() {
            scheduler.handle_timeout(now);
        }
        Self::route_events(&mut inner);
        Self::wake_all(&inner);
    }

    fn route_events(inner: &mut Inner) {
        let Some(scheduler) = inner.scheduler.as_mut() else {
            return;
        };
        while let Some(event) = scheduler.poll_event() {
            let (peer, command) = match event {
                Event::Cancel { peer, block } => (peer, PeerCommand::Cancel(block)),
                Event::Ban { peer } => (peer, PeerCommand::Close),
            };
            if let Some(handle) = inner.peers.get(&peer) {
                let _ = handle.commands.send(command);
            }
        }
    }

    fn wake_all(inner: &Inner) {
        for peer in inner.peers.values() {
            let _ = peer.commands.send(PeerCommand::Wake);
        }
    }

    fn publish(&self) {
        let inner = self.lock();
        let progress = Progress {
            pieces: inner.have.count_ones(),
            bytes: inner.bytes_have,
            peers: inner.peers.len(),
            fetched_pieces: inner.fetched_pieces,
            failed_pieces: inner.failed_pieces,
            duplicate_blocks: inner.duplicate_blocks,
        };
        drop(inner);
        self.progress.send_replace(progress);
    }
}

fn bytes_of(metainfo: &Metainfo, have: &Bitfield) -> u64 {
    let lengths = metainfo.lengths();
    have.iter_ones()
        .filter_map(|i| lengths.validate_piece_index(i))
        .map(|p| u64::from(lengths.piece_length(p)))
        .sum()
}
