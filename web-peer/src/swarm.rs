//! One file the browser downloads or seeds: the `shared` scheduler that picks what to ask
//! whom, the pieces being assembled, and a handle on every connected peer. Single-threaded,
//! like everything in a page: connection tasks borrow the state briefly, never across an await.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use futures::channel::{mpsc, oneshot};
use js_sys::Uint8Array;
use mtorrent_shared::{
    Bitfield, BlockOutcome, BlockRef, Event, Metainfo, PeerId, PeerKey, Scheduler, SchedulerConfig,
    ValidPieceIndex,
};

use crate::clock;
use crate::events::{EventSink, PeerEvent};
use crate::piece_buffer::{self, PieceBuffer};
use crate::store::PieceStore;

/// Completed pieces being checked and written at most: beyond, no more blocks are requested
/// until the store catches up, so a slow disk never makes the page hold the file in memory.
const MAX_PENDING_PIECES: u32 = 16;

/// What a swarm tells one connection task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerCommand {
    /// Withdraw a request another peer answered first.
    Cancel(BlockRef),
    /// Close the connection (bad data too often, or the swarm stopped).
    Close,
    /// New blocks may be requestable: ask the scheduler again.
    Wake,
}

/// One downloaded or seeded file.
pub struct Swarm {
    /// Its `.mtorrent`.
    pub metainfo: Metainfo,
    /// Our peer id.
    pub peer_id: PeerId,
    /// Where its bytes are.
    pub store: PieceStore,
    events: EventSink,
    state: RefCell<State>,
    stopped: Cell<bool>,
    last_published: Cell<f64>,
    finished: RefCell<Option<oneshot::Sender<Result<(), String>>>>,
}

struct State {
    have: Bitfield,
    scheduler: Option<Scheduler>,
    /// Pieces being received, each in its own buffer until it is verified and written.
    assembling: HashMap<u32, PieceBuffer>,
    peers: HashMap<PeerKey, Peer>,
    next_key: u64,
    bytes_have: u64,
    uploaded: u64,
    failed_pieces: u64,
    pieces_pending: u32,
}

struct Peer {
    peer_id: PeerId,
    commands: mpsc::UnboundedSender<PeerCommand>,
}

impl Swarm {
    /// A swarm to seed `store`, which holds every piece (already hashed by the page).
    pub fn seeding(
        metainfo: Metainfo,
        peer_id: PeerId,
        store: PieceStore,
        events: EventSink,
    ) -> Rc<Self> {
        let count = metainfo.lengths().piece_count();
        Self::new(
            metainfo,
            peer_id,
            store,
            events,
            Bitfield::full(count),
            None,
        )
    }

    /// A swarm to download into `store`; `finished` hears when every piece is verified and
    /// written, or why the download stopped.
    pub fn downloading(
        metainfo: Metainfo,
        peer_id: PeerId,
        store: PieceStore,
        events: EventSink,
        finished: oneshot::Sender<Result<(), String>>,
    ) -> Rc<Self> {
        let count = metainfo.lengths().piece_count();
        let swarm = Self::new(
            metainfo,
            peer_id,
            store,
            events,
            Bitfield::new(count),
            Some(finished),
        );
        // An empty file is complete at once.
        swarm.finish_if_done();
        swarm
    }

    fn new(
        metainfo: Metainfo,
        peer_id: PeerId,
        store: PieceStore,
        events: EventSink,
        have: Bitfield,
        finished: Option<oneshot::Sender<Result<(), String>>>,
    ) -> Rc<Self> {
        let scheduler = (!have.is_complete()).then(|| {
            Scheduler::new(
                metainfo.lengths(),
                have.clone(),
                SchedulerConfig::default(),
                (js_sys::Math::random() * 2f64.powi(53)) as u64,
            )
            .expect("a bitfield of the right size and a valid default config")
        });
        let bytes_have = if have.is_complete() {
            metainfo.size()
        } else {
            0
        };
        Rc::new(Self {
            metainfo,
            peer_id,
            store,
            events,
            state: RefCell::new(State {
                have,
                scheduler,
                assembling: HashMap::new(),
                peers: HashMap::new(),
                next_key: 1,
                bytes_have,
                uploaded: 0,
                failed_pieces: 0,
                pieces_pending: 0,
            }),
            stopped: Cell::new(false),
            last_published: Cell::new(0.0),
            finished: RefCell::new(finished),
        })
    }

    /// Whether every piece is verified (and, downloading, written).
    pub fn is_complete(&self) -> bool {
        let state = self.state.borrow();
        state.have.is_complete() && state.pieces_pending == 0
    }

    /// Whether this swarm serves pieces (it seeds a complete file).
    pub fn is_seeding(&self) -> bool {
        self.finished.borrow().is_none() && self.state.borrow().scheduler.is_none()
    }

    /// The bitfield to send peers: a download in the private file system cannot be read back
    /// before it is complete, so a downloading browser offers nothing.
    pub fn offered(&self) -> Bitfield {
        let count = self.metainfo.lengths().piece_count();
        if self.is_seeding() {
            Bitfield::full(count)
        } else {
            Bitfield::new(count)
        }
    }

    /// Bytes still missing, for the tracker.
    pub fn left(&self) -> u64 {
        self.metainfo.size() - self.state.borrow().bytes_have
    }

    /// Whether the swarm was stopped.
    pub fn is_stopped(&self) -> bool {
        self.stopped.get()
    }

    /// Whether a peer with this id is connected.
    pub fn is_connected(&self, peer_id: PeerId) -> bool {
        self.state
            .borrow()
            .peers
            .values()
            .any(|p| p.peer_id == peer_id)
    }

    /// How many peers are connected.
    pub fn peer_count(&self) -> usize {
        self.state.borrow().peers.len()
    }

    /// Registers a peer whose bitfield arrived.
    pub fn add_peer(
        &self,
        peer_id: PeerId,
        bitfield: Bitfield,
    ) -> (PeerKey, mpsc::UnboundedReceiver<PeerCommand>) {
        let (tx, rx) = mpsc::unbounded();
        let key = {
            let mut state = self.state.borrow_mut();
            let key = PeerKey(state.next_key);
            state.next_key += 1;
            if let Some(scheduler) = state.scheduler.as_mut() {
                let _ = scheduler.handle_peer_added(key, bitfield);
                scheduler.handle_unchoked(key);
            }
            state.peers.insert(
                key,
                Peer {
                    peer_id,
                    commands: tx,
                },
            );
            key
        };
        self.publish();
        (key, rx)
    }

    /// Forgets a disconnected peer; its requests go to others.
    pub fn remove_peer(&self, key: PeerKey) {
        {
            let mut state = self.state.borrow_mut();
            state.peers.remove(&key);
            if let Some(scheduler) = state.scheduler.as_mut() {
                scheduler.handle_peer_removed(key);
            }
            route_events(&mut state);
            wake_all(&state);
        }
        self.publish();
    }

    /// A peer announced a piece.
    pub fn peer_has(&self, key: PeerKey, piece: ValidPieceIndex) {
        if let Some(scheduler) = self.state.borrow_mut().scheduler.as_mut() {
            scheduler.handle_have(key, piece);
        }
    }

    /// Whether the peer has something we still need.
    pub fn is_interesting(&self, key: PeerKey) -> bool {
        self.state
            .borrow()
            .scheduler
            .as_ref()
            .is_some_and(|s| s.is_interesting(key))
    }

    /// The peer choked or unchoked us.
    pub fn peer_choked(&self, key: PeerKey, choked: bool) {
        let mut state = self.state.borrow_mut();
        if let Some(scheduler) = state.scheduler.as_mut() {
            if choked {
                scheduler.handle_choked(key);
            } else {
                scheduler.handle_unchoked(key);
            }
        }
        wake_all(&state);
    }

    /// The next block to request from `key`, if any (none while too many completed pieces are
    /// being checked and written).
    pub fn next_request(&self, key: PeerKey) -> Option<BlockRef> {
        let now = clock::now();
        let mut state = self.state.borrow_mut();
        if state.pieces_pending >= MAX_PENDING_PIECES {
            return None;
        }
        state.scheduler.as_mut()?.next_request(key, now)
    }

    /// A peer refused a request.
    pub fn request_rejected(&self, key: PeerKey, block: BlockRef) {
        let mut state = self.state.borrow_mut();
        if let Some(scheduler) = state.scheduler.as_mut() {
            scheduler.handle_request_rejected(key, block);
        }
        route_events(&mut state);
    }

    /// Counts uploaded piece bytes, and tells the page now and then.
    pub fn add_uploaded(&self, bytes: usize) {
        self.state.borrow_mut().uploaded += bytes as u64;
        self.publish_now_and_then();
    }

    /// Publishes progress at most every 100 ms: the page need not redraw for every piece.
    fn publish_now_and_then(&self) {
        let now = js_sys::Date::now();
        if now - self.last_published.get() >= 100.0 {
            self.last_published.set(now);
            self.publish();
        }
    }

    /// Takes a received block; a completed piece is verified, and if good written to the
    /// store (in the background) and counted.
    pub fn block_received(self: &Rc<Self>, key: PeerKey, block: BlockRef, bytes: Uint8Array) {
        let lengths = self.metainfo.lengths();
        let complete = {
            let mut state = self.state.borrow_mut();
            let Some(scheduler) = state.scheduler.as_mut() else {
                return;
            };
            let outcome = scheduler.handle_block_received(key, block);
            if matches!(
                outcome,
                BlockOutcome::Stored | BlockOutcome::PieceComplete(_)
            ) {
                let store = &self.store;
                state
                    .assembling
                    .entry(block.piece.get())
                    .or_insert_with(|| {
                        if store.checks_pieces() {
                            let blocks = lengths.block_count(block.piece) as usize;
                            PieceBuffer::Blocks(Vec::with_capacity(blocks))
                        } else {
                            PieceBuffer::Here(vec![0; lengths.piece_length(block.piece) as usize])
                        }
                    })
                    .put(block.offset as usize, bytes);
            }
            route_events(&mut state);
            match outcome {
                BlockOutcome::PieceComplete(piece) => state
                    .assembling
                    .remove(&piece.get())
                    .map(|buffer| (piece, buffer)),
                _ => None,
            }
        };
        if let Some((piece, buffer)) = complete {
            self.verify_and_write(piece, buffer);
        }
    }

    /// Checks a completed piece and, if it is good, writes it to the store, in the background;
    /// then records the outcome. A store that checks pieces itself (off this thread) is given
    /// the piece and its expected hash; otherwise the piece is hashed here (WebCrypto when the
    /// browser has it) and written if it matches.
    fn verify_and_write(self: &Rc<Self>, piece: ValidPieceIndex, buffer: PieceBuffer) {
        // Counted from now: requests pause while too many pieces are being checked or written.
        self.state.borrow_mut().pieces_pending += 1;
        let swarm = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let expected = swarm.metainfo.piece_hashes()[piece.get() as usize];
            let offset = swarm.metainfo.lengths().piece_offset(piece);
            let saved = match buffer {
                PieceBuffer::Blocks(blocks) => {
                    let blocks = piece_buffer::in_order(blocks);
                    swarm
                        .store
                        .write_if_hash_is(offset, blocks, &expected)
                        .await
                }
                PieceBuffer::Here(mut data) => {
                    if crate::digest::sha1(&mut data).await == expected {
                        swarm.store.write(offset, &data).await.map(|()| true)
                    } else {
                        Ok(false)
                    }
                }
            };
            swarm.piece_checked(piece, saved);
        });
    }

    /// Records what became of a completed piece: `Ok(true)` verified and written, `Ok(false)`
    /// failed its hash (it is fetched again), `Err` not saved (the download fails).
    fn piece_checked(&self, piece: ValidPieceIndex, saved: Result<bool, String>) {
        self.state.borrow_mut().pieces_pending -= 1;
        let good = match saved {
            Ok(good) => good,
            Err(e) => {
                self.fail(format!("cannot save the file: {e}"));
                return;
            }
        };
        {
            let mut state = self.state.borrow_mut();
            let Some(scheduler) = state.scheduler.as_mut() else {
                return;
            };
            if good {
                let _ = scheduler.handle_hash_ok(piece);
                state.have.set(piece);
                state.bytes_have += u64::from(self.metainfo.lengths().piece_length(piece));
                if state.have.is_complete() {
                    state.scheduler = None;
                }
            } else {
                let _ = scheduler.handle_hash_failed(piece);
                state.failed_pieces += 1;
            }
            route_events(&mut state);
            // Requests paused for the store, or for this piece, may resume.
            wake_all(&state);
        }
        if good {
            self.publish_now_and_then();
            self.finish_if_done();
        } else {
            self.events.emit(&PeerEvent::Warning {
                info_hash: Some(self.metainfo.info_hash().to_hex()),
                message: format!(
                    "piece {} failed its check and is fetched again",
                    piece.get()
                ),
            });
            self.publish();
        }
    }

    fn finish_if_done(&self) {
        if self.is_complete() {
            self.publish();
            if let Some(finished) = self.finished.borrow_mut().take() {
                let _ = finished.send(Ok(()));
            }
        }
    }

    /// Ends a download with an error.
    pub fn fail(&self, message: String) {
        if let Some(finished) = self.finished.borrow_mut().take() {
            let _ = finished.send(Err(message));
        }
        self.stop();
    }

    /// Re-assigns stalled requests; called about once a second.
    pub fn tick(&self) {
        let mut state = self.state.borrow_mut();
        if let Some(scheduler) = state.scheduler.as_mut() {
            scheduler.handle_timeout(clock::now());
        }
        route_events(&mut state);
        wake_all(&state);
    }

    /// Stops the swarm: every connection closes, and a pending download ends.
    pub fn stop(&self) {
        self.stopped.set(true);
        if let Some(finished) = self.finished.borrow_mut().take() {
            let _ = finished.send(Err("the download was stopped".into()));
        }
        for peer in self.state.borrow().peers.values() {
            let _ = peer.commands.unbounded_send(PeerCommand::Close);
        }
    }

    /// Tells the page where the swarm stands.
    pub fn publish(&self) {
        let state = self.state.borrow();
        let event = PeerEvent::Progress {
            info_hash: self.metainfo.info_hash().to_hex(),
            pieces: state.have.count_ones(),
            piece_count: self.metainfo.lengths().piece_count(),
            bytes: state.bytes_have,
            peers: state.peers.len(),
            uploaded: state.uploaded,
            failed_pieces: state.failed_pieces,
        };
        drop(state);
        self.events.emit(&event);
    }

    /// The page's event sink.
    pub fn events(&self) -> &EventSink {
        &self.events
    }
}

fn route_events(state: &mut State) {
    let Some(scheduler) = state.scheduler.as_mut() else {
        return;
    };
    while let Some(event) = scheduler.poll_event() {
        let (peer, command) = match event {
            Event::Cancel { peer, block } => (peer, PeerCommand::Cancel(block)),
            Event::Ban { peer } => (peer, PeerCommand::Close),
        };
        if let Some(handle) = state.peers.get(&peer) {
            let _ = handle.commands.unbounded_send(command);
        }
    }
}

fn wake_all(state: &State) {
    for peer in state.peers.values() {
        let _ = peer.commands.unbounded_send(PeerCommand::Wake);
    }
}
