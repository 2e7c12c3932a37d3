//! One file the node downloads or seeds: a thin driver around the shared [`Swarm`] core. It
//! keeps the core behind one lock, held only for bookkeeping and for writing a received block,
//! never across network waits; it reads and writes the file's [`Storage`], hashes completed
//! pieces, keeps time, and wakes the connection tasks the core names.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use mtorrent_shared::wire::Message;
use mtorrent_shared::{
    Bitfield, BlockRef, CloseReason, Metainfo, PeerId, PeerKey, PieceHash, SessionError, Swarm,
    SwarmConfig, SwarmEvent, SwarmStats, ValidPieceIndex,
};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

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

impl From<SwarmStats> for Progress {
    fn from(stats: SwarmStats) -> Self {
        Self {
            pieces: stats.pieces,
            bytes: stats.bytes,
            peers: stats.peers,
            fetched_pieces: stats.fetched_pieces,
            failed_pieces: stats.failed_pieces,
            duplicate_blocks: stats.duplicate_blocks,
        }
    }
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
    /// Wakes [`Torrent::run_timers`] when the core's deadline moved earlier.
    timer: Notify,
}

#[derive(Debug)]
struct Inner {
    swarm: Swarm,
    /// Every connection task's waker.
    connections: HashMap<PeerKey, Arc<Notify>>,
    /// The deadline [`Torrent::run_timers`] sleeps until.
    armed: Option<Duration>,
}

/// One connection's registration with its torrent, from [`Torrent::connect`].
#[derive(Debug)]
pub struct Registration {
    /// The connection's key in the core.
    pub key: PeerKey,
    /// Notified whenever the connection has something to send or must close.
    pub wake: Arc<Notify>,
}

/// What a connection task sends next, from [`Torrent::transmit`].
#[derive(Debug, Default)]
pub struct Transmit {
    /// The messages, in order.
    pub messages: Vec<Message>,
    /// Set once the core closed the connection: end it after sending the messages.
    pub close: Option<CloseReason>,
}

/// Storage work done without the lock, whose results go back into the core.
enum Done {
    Read(PeerKey, BlockRef, Result<Bytes, UploadError>),
    Verified(ValidPieceIndex, std::io::Result<bool>),
}

impl Torrent {
    /// A torrent with `have` already verified on disk. Without every piece it downloads, if
    /// its storage is writable; read-only storage is served as it is, and every upload first
    /// checks that the file has not changed since it was opened.
    pub fn new(
        metainfo: Metainfo,
        storage: Storage,
        have: Bitfield,
        our_peer_id: PeerId,
        seed: u64,
    ) -> Arc<Self> {
        let verified_stamp = if storage.is_writable() {
            None
        } else {
            // An unreadable stamp never matches, so nothing is served.
            Some(storage.stamp().unwrap_or(FileStamp {
                size: u64::MAX,
                mtime_ns: i64::MIN,
            }))
        };
        let config = SwarmConfig {
            downloading: storage.is_writable(),
            ..SwarmConfig::default()
        };
        let swarm = Swarm::new(
            metainfo.lengths(),
            metainfo.info_hash(),
            our_peer_id,
            have,
            config,
            seed,
        )
        .expect("a bitfield of the right size and a valid default config");
        let progress = Progress::from(swarm.stats());
        Arc::new(Self {
            metainfo,
            storage,
            started: Instant::now(),
            inner: Mutex::new(Inner {
                swarm,
                connections: HashMap::new(),
                armed: None,
            }),
            progress: watch::channel(progress).0,
            verified_stamp,
            changed: AtomicBool::new(false),
            stopped: watch::channel(false).0,
            timer: Notify::new(),
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

    /// Bytes of piece data sent to peers since the torrent started.
    pub fn uploaded(&self) -> u64 {
        self.lock().swarm.stats().uploaded
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
        self.lock().swarm.is_downloading()
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

    /// Time since the torrent started, the core's clock.
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// The pieces verified on disk.
    pub fn have(&self) -> Bitfield {
        self.lock().swarm.have().clone()
    }

    /// Whether every piece is verified.
    pub fn is_complete(&self) -> bool {
        self.lock().swarm.is_complete()
    }

    /// Progress updates.
    pub fn watch_progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Whether a peer with this id is already connected (to avoid duplicate connections).
    pub fn is_connected(&self, peer_id: PeerId) -> bool {
        self.lock().swarm.is_connected(peer_id)
    }

    /// Registers a new connection, outgoing or incoming.
    pub fn connect(&self) -> Registration {
        let mut inner = self.lock();
        let key = inner.swarm.add_peer(self.now());
        let wake = Arc::new(Notify::new());
        inner.connections.insert(key, wake.clone());
        self.settle(inner);
        Registration { key, wake }
    }

    /// Forgets a connection that ended; its outstanding requests go to other peers.
    pub fn disconnect(&self, key: PeerKey) {
        let mut inner = self.lock();
        inner.connections.remove(&key);
        inner.swarm.handle_peer_closed(key);
        // Only storage work queued for other peers may fail here; theirs to report.
        let _ = self.dispatch(inner);
    }

    /// Hands one message from connection `key` to the core and does the storage work that
    /// follows. An error is a protocol violation or a disk failure: the connection ends.
    pub fn handle_message(&self, key: PeerKey, message: Message) -> anyhow::Result<()> {
        let mut inner = self.lock();
        inner
            .swarm
            .handle_message(key, self.now(), message)
            .map_err(|e: SessionError| anyhow::anyhow!(e))?;
        self.dispatch(inner)?;
        Ok(())
    }

    /// What connection `key` sends next.
    pub fn transmit(&self, key: PeerKey) -> Transmit {
        let mut inner = self.lock();
        let now = self.now();
        let messages = std::iter::from_fn(|| inner.swarm.poll_transmit(key, now)).collect();
        let close = inner.swarm.close_reason(key);
        self.settle(inner);
        Transmit { messages, close }
    }

    /// Re-assigns stalled requests, sends keep-alives and closes silent connections, if their
    /// time has come; [`Torrent::run_timers`] calls it when the core's deadline passes.
    pub fn tick(&self) {
        let mut inner = self.lock();
        inner.swarm.handle_timeout(self.now());
        if let Err(e) = self.dispatch(inner) {
            tracing::warn!("storage failure after a timeout: {e:#}");
        }
    }

    /// Runs the core's timers until the torrent stops: sleeps until the core's next deadline
    /// (re-read whenever it moves earlier), then calls [`Torrent::tick`].
    pub async fn run_timers(self: &Arc<Self>) {
        let mut stop = self.stop_signal();
        loop {
            let deadline = {
                let mut inner = self.lock();
                inner.armed = inner.swarm.poll_timeout();
                inner.armed
            };
            let sleep = async {
                match deadline {
                    Some(deadline) => {
                        tokio::time::sleep_until(self.started + deadline).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = sleep => self.tick(),
                () = self.timer.notified() => {}
                () = stop.wait() => return,
            }
        }
    }

    /// Carries out the core's storage work and wakeups until none is left. A block is written
    /// while the lock is held: otherwise another connection could report the piece's last
    /// block, and hash the piece, before this block reached the disk. Reads and hashing happen
    /// without the lock.
    fn dispatch<'a>(&'a self, mut inner: MutexGuard<'a, Inner>) -> anyhow::Result<()> {
        let mut failure = None;
        loop {
            let mut work = Vec::new();
            while let Some(event) = inner.swarm.poll_event() {
                match event {
                    SwarmEvent::WriteBlock { block, data, .. } => {
                        if let Err(e) = self.storage.write_block(block, &data) {
                            // The piece then fails its check and is fetched again.
                            failure.get_or_insert(
                                anyhow::Error::new(e).context("cannot write a received block"),
                            );
                        }
                    }
                    SwarmEvent::ReadBlock { peer, block } => work.push(Work::Read(peer, block)),
                    SwarmEvent::VerifyPiece(piece) => work.push(Work::Verify(piece)),
                    // The connection's task learns why from the core when it wakes.
                    SwarmEvent::Close { peer, .. } => {
                        if let Some(wake) = inner.connections.get(&peer) {
                            wake.notify_one();
                        }
                    }
                }
            }
            if work.is_empty() {
                self.settle(inner);
                return failure.map_or(Ok(()), Err);
            }
            drop(inner);
            let done: Vec<Done> = work.into_iter().map(|w| self.work(w)).collect();
            inner = self.lock();
            for done in done {
                match done {
                    Done::Read(peer, block, Ok(data)) => inner.swarm.send_block(peer, block, data),
                    Done::Read(peer, block, Err(e)) => {
                        // A changed file is re-verified by its owner: expected, not alarming.
                        if !matches!(e, UploadError::Changed) {
                            tracing::warn!("not serving a requested block: {e}");
                        }
                        inner.swarm.reject_block(peer, block);
                    }
                    Done::Verified(piece, Ok(good)) => {
                        inner.swarm.handle_piece_verified(piece, good)
                    }
                    Done::Verified(piece, Err(e)) => {
                        inner.swarm.handle_piece_verified(piece, false);
                        failure.get_or_insert(
                            anyhow::Error::new(e).context("cannot read back a received piece"),
                        );
                    }
                }
            }
        }
    }

    fn work(&self, work: Work) -> Done {
        match work {
            Work::Read(peer, block) => {
                let mut data = vec![0; block.length as usize];
                let result = self.read_for_upload(block, &mut data);
                Done::Read(peer, block, result.map(|()| Bytes::from(data)))
            }
            Work::Verify(piece) => {
                let mut buffer = vec![0; self.metainfo.lengths().piece_length(piece) as usize];
                let good = self.storage.read_piece(piece, &mut buffer).map(|data| {
                    PieceHash::of(data) == self.metainfo.piece_hashes()[piece.get() as usize]
                });
                Done::Verified(piece, good)
            }
        }
    }

    /// Wakes the connections the core named, re-arms the timer if the deadline moved earlier,
    /// and publishes progress if it changed; then releases the lock.
    fn settle(&self, mut inner: MutexGuard<'_, Inner>) {
        while let Some(key) = inner.swarm.poll_wakeup() {
            if let Some(wake) = inner.connections.get(&key) {
                wake.notify_one();
            }
        }
        let deadline = inner.swarm.poll_timeout();
        if deadline.is_some_and(|d| inner.armed.is_none_or(|armed| d < armed)) {
            inner.armed = deadline;
            self.timer.notify_one();
        }
        let progress = Progress::from(inner.swarm.stats());
        drop(inner);
        self.progress.send_if_modified(|current| {
            let changed = *current != progress;
            *current = progress;
            changed
        });
    }
}

/// Storage work the core asked for.
enum Work {
    Read(PeerKey, BlockRef),
    Verify(ValidPieceIndex),
}

#[cfg(test)]
mod tests;
