//! One file's swarm: the [`Scheduler`], one [`PeerSession`] per connection, the pieces we
//! have and the counters, as one sans-IO state machine shared by every driver.
//!
//! A [`Swarm`] reads no clock, draws no randomness of its own (a seed is passed in) and does
//! no I/O. The driver owns the transports, the storage and the timer: it passes the time since
//! an origin of its choice as `now`, carries messages between the swarm and the sockets, and
//! does the storage work the swarm asks for.
//!
//! # Driving it
//!
//! Like quinn-proto's `Connection`, the methods come in four kinds: getters; `handle_*` for
//! what arrives ([`handle_message`], [`handle_piece_header`], [`handle_piece_verified`],
//! [`handle_peer_closed`], [`handle_timeout`]); commands ([`add_peer`], [`send_block`],
//! [`reject_block`]); and `poll_*` for outputs. A driver:
//!
//! 1. calls [`add_peer`] for every new connection, outgoing or incoming, and feeds the
//!    connection's messages to [`handle_message`] (or, keeping a block's bytes where they
//!    arrived, [`handle_piece_header`]). An `Err` is a protocol violation: it closes the
//!    connection and calls [`handle_peer_closed`], as for a connection that ended;
//! 2. after every input or command, drains [`poll_event`] in order, carrying out each
//!    [`SwarmEvent`]: read a block and [`send_block`], write a block, verify a piece and
//!    [`handle_piece_verified`], close a connection. A written block must be on its storage
//!    before a later event is acted on;
//! 3. then drains [`poll_wakeup`]: every peer named there has new messages to send (a Have, a
//!    Cancel, an answered request, requests that became possible) and its transmit queue must
//!    be polled soon, even if nothing arrived on its connection;
//! 4. drains [`poll_transmit`] for the connection the input was about and for every woken
//!    one, sending each message. Polling also fills the peer's request window from the
//!    scheduler;
//! 5. keeps one timer armed at [`poll_timeout`]; when it fires, calls [`handle_timeout`] and
//!    goes on as in step 2. Any call may move the deadline earlier, so the driver re-reads it
//!    after each one.
//!
//! [`handle_message`]: Swarm::handle_message
//! [`handle_piece_header`]: Swarm::handle_piece_header
//! [`handle_piece_verified`]: Swarm::handle_piece_verified
//! [`handle_peer_closed`]: Swarm::handle_peer_closed
//! [`handle_timeout`]: Swarm::handle_timeout
//! [`add_peer`]: Swarm::add_peer
//! [`send_block`]: Swarm::send_block
//! [`reject_block`]: Swarm::reject_block
//! [`poll_event`]: Swarm::poll_event
//! [`poll_wakeup`]: Swarm::poll_wakeup
//! [`poll_transmit`]: Swarm::poll_transmit
//! [`poll_timeout`]: Swarm::poll_timeout

mod types;

#[cfg(test)]
mod net;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;

pub use self::types::{CloseReason, SwarmConfig, SwarmEvent, SwarmStats};
use crate::wire::{Message, PieceHeader};
use crate::{
    Bitfield, BlockOutcome, BlockRef, Event, InfoHash, Lengths, PeerId, PeerKey, PeerSession,
    Scheduler, SchedulerError, SessionError, SessionEvent, ValidPieceIndex,
};

/// One file's swarm. See the module documentation.
#[derive(Debug)]
pub struct Swarm {
    lengths: Lengths,
    info_hash: InfoHash,
    our_peer_id: PeerId,
    config: SwarmConfig,
    scheduler: Scheduler,
    stats: SwarmStats,
    peers: BTreeMap<PeerKey, Peer>,
    next_key: u64,
    /// Completed pieces handed out for verification and not yet reported.
    verifying: u32,
    events: VecDeque<SwarmEvent>,
    wakeups: VecDeque<PeerKey>,
}

#[derive(Debug)]
struct Peer {
    session: PeerSession,
    /// Its handshake and bitfield arrived and it is known to the scheduler.
    ready: bool,
    /// Why the swarm closed it, once it did; it then waits for [`Swarm::handle_peer_closed`].
    closed: Option<CloseReason>,
    /// Listed in `wakeups`.
    woken: bool,
}

impl Swarm {
    /// A swarm for the file of `lengths` and `info_hash`, where `have` holds the pieces already
    /// verified. `seed` drives the scheduler's tie-breaking. Fails only for a `have` of the
    /// wrong length or a scheduler setting of zero.
    pub fn new(
        lengths: Lengths,
        info_hash: InfoHash,
        our_peer_id: PeerId,
        have: Bitfield,
        config: SwarmConfig,
        seed: u64,
    ) -> Result<Self, SchedulerError> {
        let count = lengths.piece_count();
        let wanted = if config.downloading {
            Bitfield::full(count)
        } else {
            Bitfield::new(count)
        };
        let scheduler =
            Scheduler::with_wanted(lengths, have, &wanted, config.scheduler.clone(), seed)?;
        Ok(Self {
            lengths,
            info_hash,
            our_peer_id,
            config,
            scheduler,
            stats: SwarmStats::default(),
            peers: BTreeMap::new(),
            next_key: 1,
            verifying: 0,
            events: VecDeque::new(),
            wakeups: VecDeque::new(),
        })
    }

    // --- Getters ---

    /// The file's lengths.
    pub fn lengths(&self) -> &Lengths {
        &self.lengths
    }

    /// The file's info hash.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// Our peer id.
    pub fn our_peer_id(&self) -> PeerId {
        self.our_peer_id
    }

    /// The settings.
    pub fn config(&self) -> &SwarmConfig {
        &self.config
    }

    /// The verified pieces.
    pub fn have(&self) -> &Bitfield {
        self.scheduler.have()
    }

    /// Whether we offer our pieces now (see [`SwarmConfig::offer_incomplete`]).
    pub fn is_offering(&self) -> bool {
        self.config.offer_incomplete || self.is_complete()
    }

    /// What we offer new connections: the verified pieces, or nothing (see
    /// [`SwarmConfig::offer_incomplete`]).
    pub fn offered(&self) -> Bitfield {
        if self.is_offering() {
            self.have().clone()
        } else {
            Bitfield::new(self.lengths.piece_count())
        }
    }

    /// Whether every piece is verified.
    pub fn is_complete(&self) -> bool {
        self.have().is_complete()
    }

    /// Whether the swarm downloads: it may and it lacks pieces.
    pub fn is_downloading(&self) -> bool {
        self.config.downloading && !self.is_complete()
    }

    /// The counters.
    pub fn stats(&self) -> SwarmStats {
        SwarmStats {
            pieces: self.scheduler.pieces_have(),
            bytes: self.scheduler.bytes_have(),
            ..self.stats
        }
    }

    /// How many connected peers sent their handshake and bitfield.
    pub fn peer_count(&self) -> usize {
        self.stats.peers
    }

    /// Whether a peer with this id is connected (handshake received, not closed).
    pub fn is_connected(&self, peer_id: PeerId) -> bool {
        self.peers
            .values()
            .any(|p| p.closed.is_none() && p.session.peer_id() == Some(peer_id))
    }

    /// The id of the peer on connection `key`, once its handshake arrived.
    pub fn peer_id(&self, key: PeerKey) -> Option<PeerId> {
        self.peers.get(&key)?.session.peer_id()
    }

    /// The protocol state of connection `key`.
    pub fn session(&self, key: PeerKey) -> Option<&PeerSession> {
        self.peers.get(&key).map(|p| &p.session)
    }

    /// The download scheduler.
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// How many completed pieces await [`Swarm::handle_piece_verified`].
    pub fn pieces_verifying(&self) -> u32 {
        self.verifying
    }

    // --- Inputs ---

    /// One message from the peer on connection `key`. Ignored for a connection the swarm has
    /// closed or does not know. An `Err` is a protocol violation: close the connection and call
    /// [`Swarm::handle_peer_closed`].
    pub fn handle_message(
        &mut self,
        key: PeerKey,
        now: Duration,
        message: Message,
    ) -> Result<(), SessionError> {
        let Some(peer) = self.open_peer(key) else {
            return Ok(());
        };
        peer.session.handle_message(now, message)?;
        self.process_session(key);
        Ok(())
    }

    /// A Piece message whose bytes stay where they arrived (see
    /// [`crate::wire::peek_piece_frame`]). Returns the block if its bytes are to be kept: the
    /// driver stores them before it acts on the next [`SwarmEvent`] (a
    /// [`SwarmEvent::VerifyPiece`] of its piece may follow). `None`: drop the bytes.
    pub fn handle_piece_header(
        &mut self,
        key: PeerKey,
        now: Duration,
        header: PieceHeader,
    ) -> Result<Option<BlockRef>, SessionError> {
        let Some(peer) = self.open_peer(key) else {
            return Ok(None);
        };
        let Some(block) = peer.session.handle_piece_header(now, header)? else {
            return Ok(None);
        };
        Ok(self.block_received(key, block, None).then_some(block))
    }

    /// The driver checked a piece from [`SwarmEvent::VerifyPiece`]: `ok` if its hash matched
    /// (and, for a driver that writes after checking, it is written). A good piece is
    /// announced to every peer; a bad one is downloaded again, and the peers that sent it may
    /// be banned ([`SwarmEvent::Close`]).
    pub fn handle_piece_verified(&mut self, piece: ValidPieceIndex, ok: bool) {
        self.verifying = self.verifying.saturating_sub(1);
        if ok {
            if self.scheduler.handle_hash_ok(piece).is_err() {
                return;
            }
            self.stats.fetched_pieces += 1;
            if self.config.offer_incomplete {
                for peer in self.peers.values_mut().filter(|p| p.closed.is_none()) {
                    peer.session.have(piece);
                }
                self.wake_all();
            }
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for key in keys {
                self.update_interest(key);
            }
        } else {
            if self.scheduler.handle_hash_failed(piece).is_err() {
                return;
            }
            self.stats.failed_pieces += 1;
        }
        self.route_scheduler_events();
        // The piece's blocks, or room under `max_pieces_verifying`, may be requestable again.
        self.wake_all();
    }

    /// Connection `key` ended (closed by the peer, by the driver after an error, or after
    /// [`SwarmEvent::Close`]). Its outstanding requests go to other peers.
    pub fn handle_peer_closed(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.remove(&key) else {
            return;
        };
        if peer.ready && peer.closed.is_none() {
            self.forget(key);
        }
    }

    /// The timer armed at [`Swarm::poll_timeout`] fired: stalled requests go to other peers,
    /// keep-alives are queued, and silent peers are closed ([`SwarmEvent::Close`]).
    pub fn handle_timeout(&mut self, now: Duration) {
        self.scheduler.handle_timeout(now);
        self.route_scheduler_events();
        let mut due = Vec::new();
        let mut silent = Vec::new();
        for (&key, peer) in self.peers.iter_mut().filter(|(_, p)| p.closed.is_none()) {
            if peer.session.poll_timeout() > now {
                continue;
            }
            match peer.session.handle_timeout(now) {
                Ok(()) => due.push(key),
                Err(_) => silent.push(key),
            }
        }
        for key in due {
            self.wake(key);
        }
        for key in silent {
            self.close(key, CloseReason::TimedOut);
        }
    }

    // --- Commands ---

    /// Why the swarm closed connection `key`, if it did ([`SwarmEvent::Close`]): the driver
    /// ends the connection once it has sent what is queued.
    pub fn close_reason(&self, key: PeerKey) -> Option<CloseReason> {
        self.peers.get(&key)?.closed
    }

    /// A new connection, outgoing or incoming: its session queues our handshake and bitfield.
    pub fn add_peer(&mut self, now: Duration) -> PeerKey {
        let key = PeerKey(self.next_key);
        self.next_key += 1;
        let session = PeerSession::new(
            self.lengths,
            self.info_hash,
            self.our_peer_id,
            self.offered(),
            self.config.session,
            now,
        );
        self.peers.insert(
            key,
            Peer {
                session,
                ready: false,
                closed: None,
                woken: false,
            },
        );
        key
    }

    /// Answers a [`SwarmEvent::ReadBlock`] with the block's bytes (dropped if the peer
    /// cancelled meanwhile or is gone).
    pub fn send_block(&mut self, key: PeerKey, block: BlockRef, data: Bytes) {
        if let Some(peer) = self.open_peer(key) {
            peer.session.send_piece(block, data);
            self.wake(key);
        }
    }

    /// Refuses a [`SwarmEvent::ReadBlock`] that could not be read.
    pub fn reject_block(&mut self, key: PeerKey, block: BlockRef) {
        if let Some(peer) = self.open_peer(key) {
            peer.session.reject(block);
            self.wake(key);
        }
    }

    // --- Outputs ---

    /// The next storage task or connection change, if any. Drain it after every call.
    #[must_use = "events are removed from the queue when polled"]
    pub fn poll_event(&mut self) -> Option<SwarmEvent> {
        self.events.pop_front()
    }

    /// A peer whose transmit queue must be polled although nothing arrived on its connection,
    /// if any. Each peer is listed once until it is polled from here; a key may name a
    /// connection that has closed since, to be ignored.
    #[must_use = "wakeups are removed from the queue when polled"]
    pub fn poll_wakeup(&mut self) -> Option<PeerKey> {
        let key = self.wakeups.pop_front()?;
        if let Some(peer) = self.peers.get_mut(&key) {
            peer.woken = false;
        }
        Some(key)
    }

    /// The next message to send on connection `key`, if any; first fills its request window
    /// from the scheduler. `now` records when the message leaves.
    #[must_use = "the message is removed from the queue when polled"]
    pub fn poll_transmit(&mut self, key: PeerKey, now: Duration) -> Option<Message> {
        self.fill_requests(key, now);
        let message = self.open_peer(key)?.session.poll_transmit(now)?;
        if let Message::Piece { data, .. } = &message {
            self.stats.uploaded += data.len() as u64;
        }
        Some(message)
    }

    /// When [`Swarm::handle_timeout`] must next be called: the earliest of the scheduler's
    /// request deadlines and every session's keep-alive and idle deadlines.
    #[must_use = "arm a timer for this deadline"]
    pub fn poll_timeout(&self) -> Option<Duration> {
        let sessions = self
            .peers
            .values()
            .filter(|p| p.closed.is_none())
            .map(|p| p.session.poll_timeout());
        sessions.chain(self.scheduler.poll_timeout()).min()
    }

    // --- Internals ---

    fn open_peer(&mut self, key: PeerKey) -> Option<&mut Peer> {
        self.peers.get_mut(&key).filter(|p| p.closed.is_none())
    }

    /// Acts on what connection `key`'s session learned.
    fn process_session(&mut self, key: PeerKey) {
        while let Some(event) = self.open_peer(key).and_then(|p| p.session.poll_event()) {
            match event {
                SessionEvent::Ready { peer_id, bitfield } => {
                    let duplicate = self.peers.iter().any(|(&k, p)| {
                        k != key
                            && p.ready
                            && p.closed.is_none()
                            && p.session.peer_id() == Some(peer_id)
                    });
                    if duplicate {
                        self.close(key, CloseReason::Duplicate);
                        return;
                    }
                    // Keys are never reused, so the scheduler never refuses one.
                    let _ = self.scheduler.handle_peer_added(key, bitfield);
                    self.stats.peers += 1;
                    if let Some(peer) = self.peers.get_mut(&key) {
                        peer.ready = true;
                    }
                    self.update_interest(key);
                }
                SessionEvent::Have(piece) => {
                    self.scheduler.handle_have(key, piece);
                    self.update_interest(key);
                }
                SessionEvent::Choked => {
                    self.scheduler.handle_choked(key);
                    self.wake_all();
                }
                SessionEvent::Unchoked => self.scheduler.handle_unchoked(key),
                SessionEvent::Interested(interested) => {
                    let serve = interested && self.is_offering();
                    if let Some(peer) = self.peers.get_mut(&key) {
                        peer.session.set_choking(!serve);
                    }
                }
                SessionEvent::BlockRequested(block) => {
                    if self.is_offering() {
                        self.events
                            .push_back(SwarmEvent::ReadBlock { peer: key, block });
                    } else if let Some(peer) = self.peers.get_mut(&key) {
                        peer.session.reject(block);
                    }
                }
                SessionEvent::RequestCancelled(_) => {}
                SessionEvent::BlockReceived { block, data } => {
                    self.block_received(key, block, Some(data));
                }
                SessionEvent::RequestRejected(block) => {
                    self.scheduler.handle_request_rejected(key, block);
                    self.update_interest(key);
                    self.wake_all();
                }
            }
        }
    }

    /// Tells the scheduler about a received block; returns whether to keep its bytes. Given
    /// the bytes, queues their write; a completed piece is then queued for verification.
    fn block_received(&mut self, key: PeerKey, block: BlockRef, data: Option<Bytes>) -> bool {
        let outcome = self.scheduler.handle_block_received(key, block);
        let keep = match outcome {
            BlockOutcome::Stored | BlockOutcome::PieceComplete(_) => true,
            BlockOutcome::Duplicate => {
                self.stats.duplicate_blocks += 1;
                false
            }
            BlockOutcome::Unrequested => false,
        };
        if let (true, Some(data)) = (keep, data) {
            // Written before its piece is verified.
            self.events.push_back(SwarmEvent::WriteBlock {
                peer: key,
                block,
                data,
            });
        }
        if let BlockOutcome::PieceComplete(piece) = outcome {
            self.verifying += 1;
            self.events.push_back(SwarmEvent::VerifyPiece(piece));
        }
        self.route_scheduler_events();
        keep
    }

    /// Sends requests to `key` while its session and the scheduler allow.
    fn fill_requests(&mut self, key: PeerKey, now: Duration) {
        if !self.config.downloading || self.verifying >= self.config.max_pieces_verifying {
            return;
        }
        let Some(peer) = self
            .peers
            .get_mut(&key)
            .filter(|p| p.ready && p.closed.is_none())
        else {
            return;
        };
        while peer.session.can_request() {
            let Some(block) = self.scheduler.next_request(key, now) else {
                break;
            };
            if !peer.session.request(block) {
                // The session disagrees (the peer lacks the piece): give it back.
                self.scheduler.handle_request_rejected(key, block);
                break;
            }
        }
        self.route_scheduler_events();
    }

    /// Says Interested or Not interested to `key` as the scheduler's view of it changed.
    fn update_interest(&mut self, key: PeerKey) {
        let interested = self.config.downloading && self.scheduler.is_interesting(key);
        let Some(peer) = self
            .peers
            .get_mut(&key)
            .filter(|p| p.ready && p.closed.is_none())
        else {
            return;
        };
        if peer.session.is_interested() != interested {
            peer.session.set_interested(interested);
            self.wake(key);
        }
    }

    fn route_scheduler_events(&mut self) {
        while let Some(event) = self.scheduler.poll_event() {
            match event {
                Event::Cancel { peer, block } => {
                    if let Some(state) = self.open_peer(peer) {
                        state.session.cancel(block);
                        self.wake(peer);
                    }
                }
                Event::Ban { peer } => self.close(peer, CloseReason::Banned),
            }
        }
    }

    /// Closes connection `key` on the swarm's side and tells the driver.
    fn close(&mut self, key: PeerKey, reason: CloseReason) {
        let Some(peer) = self.open_peer(key) else {
            return;
        };
        peer.closed = Some(reason);
        if peer.ready {
            self.forget(key);
        }
        self.events
            .push_back(SwarmEvent::Close { peer: key, reason });
        self.wake(key);
    }

    /// Removes a ready peer from the scheduler and the count; its requests go to others.
    fn forget(&mut self, key: PeerKey) {
        self.stats.peers -= 1;
        self.scheduler.handle_peer_removed(key);
        self.route_scheduler_events();
        self.wake_all();
    }

    fn wake(&mut self, key: PeerKey) {
        if let Some(peer) = self.peers.get_mut(&key) {
            if !peer.woken {
                peer.woken = true;
                self.wakeups.push_back(key);
            }
        }
    }

    fn wake_all(&mut self) {
        for (&key, peer) in &mut self.peers {
            if !peer.woken && peer.closed.is_none() {
                peer.woken = true;
                self.wakeups.push_back(key);
            }
        }
    }
}
