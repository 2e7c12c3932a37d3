//! One peer-wire connection's protocol state, for one file: the sans-IO state machine between a
//! transport (a WebSocket) and the [`Scheduler`](crate::Scheduler) and the disk.
//!
//! A [`PeerSession`] checks everything the peer sends against the flow control documented in
//! [`crate::wire`]: the handshake comes first and must name our file, the bitfield comes next,
//! piece indices and blocks must be in range, a peer may not have more requests outstanding with
//! us than we announced, and a piece must answer one of our requests. It serves only pieces we
//! have, and it keeps our own requests within the limit the peer announced.
//!
//! # Driving it
//!
//! Like quinn-proto's `Connection`: getters; [`handle_message`](PeerSession::handle_message)
//! and [`handle_timeout`](PeerSession::handle_timeout) for inputs; commands ([`request`],
//! [`send_piece`], [`have`], ...); and `poll_*` for outputs. After every input or command the
//! driver drains [`poll_event`](PeerSession::poll_event) (acting on each: feed the scheduler,
//! read a requested block from disk, ...) and then [`poll_transmit`](PeerSession::poll_transmit)
//! (sending each message), and re-arms its timer at [`poll_timeout`](PeerSession::poll_timeout).
//! An `Err` from an input is a protocol violation: the driver closes the connection.
//!
//! [`request`]: PeerSession::request
//! [`send_piece`]: PeerSession::send_piece
//! [`have`]: PeerSession::have

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;

use crate::wire::{BlockRequest, Handshake, Message, PieceHeader, PROTOCOL_VERSION};
use crate::{Bitfield, BitfieldError, BlockRef, InfoHash, Lengths, PeerId, ValidPieceIndex};

/// Settings of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// How many of the peer's requests we accept outstanding at once (announced in our
    /// handshake); more are rejected. 16 blocks of 256 KiB: at most 4 MiB queued per peer.
    pub max_requests_accepted: u16,
    /// Send a keep-alive after this long without sending anything.
    pub keepalive_interval: Duration,
    /// Give up on a peer silent for this long.
    pub idle_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            max_requests_accepted: 16,
            keepalive_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// What happened on the connection, for the driver to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The peer's handshake and bitfield arrived: it is ready.
    Ready {
        /// The peer's id.
        peer_id: PeerId,
        /// What it has.
        bitfield: Bitfield,
    },
    /// The peer has verified a new piece.
    Have(ValidPieceIndex),
    /// The peer stopped serving us; our outstanding requests are void.
    Choked,
    /// The peer will serve our requests.
    Unchoked,
    /// The peer's interest in our pieces changed.
    Interested(bool),
    /// The peer asks for a block we have: read it and call [`PeerSession::send_piece`].
    BlockRequested(BlockRef),
    /// The peer withdrew a request it made.
    RequestCancelled(BlockRef),
    /// A block we asked for arrived.
    BlockReceived {
        /// Which block.
        block: BlockRef,
        /// Its bytes, exactly `block.length` of them.
        data: Bytes,
    },
    /// The peer refused one of our requests.
    RequestRejected(BlockRef),
}

/// A protocol violation: the connection should be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Something other than a handshake came first, or a second handshake came.
    #[error("expected a handshake first, and only once")]
    HandshakeOrder,
    /// The handshake names another file.
    #[error("the peer is sharing another file ({0})")]
    WrongInfoHash(InfoHash),
    /// The handshake carries our own peer id: we dialled ourselves.
    #[error("connected to ourselves")]
    SelfConnection,
    /// Something other than the bitfield came right after the handshake.
    #[error("expected the bitfield right after the handshake")]
    BitfieldMissing,
    /// The bitfield does not fit the file.
    #[error("bad bitfield: {0}")]
    BadBitfield(#[from] BitfieldError),
    /// A piece index out of range.
    #[error("piece {0} does not exist")]
    PieceOutOfRange(u32),
    /// A request, cancel, reject or piece for a block that does not exist.
    #[error("block (piece {piece}, offset {offset}, length {length}) does not exist")]
    BadBlock {
        /// The piece index.
        piece: u32,
        /// The offset.
        offset: u32,
        /// The length.
        length: u32,
    },
    /// Nothing arrived for the idle timeout.
    #[error("the peer was silent for too long")]
    TimedOut,
}

/// One connection's protocol state. See the module documentation.
#[derive(Debug)]
pub struct PeerSession {
    lengths: Lengths,
    info_hash: InfoHash,
    our_peer_id: PeerId,
    config: SessionConfig,
    ours: Bitfield,
    peer: Option<Handshake>,
    peer_bitfield: Option<Bitfield>,
    am_choking: bool,
    am_interested: bool,
    peer_choking: bool,
    peer_interested: bool,
    /// Our requests the peer has not answered.
    requested: HashSet<BlockRef>,
    /// The peer's requests we have not answered.
    serving: HashSet<BlockRef>,
    outbox: VecDeque<Message>,
    events: VecDeque<SessionEvent>,
    last_received: Duration,
    last_sent: Duration,
}

impl PeerSession {
    /// A session for the file of `lengths`/`info_hash`, where we have the pieces in `ours`.
    /// Queues our handshake and bitfield.
    pub fn new(
        lengths: Lengths,
        info_hash: InfoHash,
        our_peer_id: PeerId,
        ours: Bitfield,
        config: SessionConfig,
        now: Duration,
    ) -> Self {
        let handshake = Handshake {
            version: PROTOCOL_VERSION,
            info_hash,
            peer_id: our_peer_id,
            max_requests: config.max_requests_accepted.max(1),
        };
        let bitfield = Message::Bitfield(Bytes::from(ours.to_wire()));
        Self {
            lengths,
            info_hash,
            our_peer_id,
            config,
            ours,
            peer: None,
            peer_bitfield: None,
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            requested: HashSet::new(),
            serving: HashSet::new(),
            outbox: VecDeque::from([Message::Handshake(handshake), bitfield]),
            events: VecDeque::new(),
            last_received: now,
            last_sent: now,
        }
    }

    /// The peer's id, once its handshake arrived.
    pub fn peer_id(&self) -> Option<PeerId> {
        self.peer.map(|h| h.peer_id)
    }

    /// What the peer has, once its bitfield arrived.
    pub fn peer_bitfield(&self) -> Option<&Bitfield> {
        self.peer_bitfield.as_ref()
    }

    /// Whether we may send requests now: the peer unchoked us and has room for one more.
    pub fn can_request(&self) -> bool {
        match self.peer {
            Some(peer) => {
                !self.peer_choking && self.requested.len() < usize::from(peer.max_requests)
            }
            None => false,
        }
    }

    /// Our requests not yet answered.
    pub fn in_flight(&self) -> usize {
        self.requested.len()
    }

    /// Whether the peer wants pieces we have.
    pub fn is_peer_interested(&self) -> bool {
        self.peer_interested
    }

    /// Whether we told the peer we want its pieces.
    pub fn is_interested(&self) -> bool {
        self.am_interested
    }

    /// Whether we are refusing the peer's requests.
    pub fn is_choking(&self) -> bool {
        self.am_choking
    }

    /// Handles one message from the peer.
    pub fn handle_message(&mut self, now: Duration, message: Message) -> Result<(), SessionError> {
        if let Message::Piece {
            piece,
            offset,
            data,
        } = message
        {
            let header = PieceHeader {
                piece,
                offset,
                data_len: data.len(),
            };
            if let Some(block) = self.handle_piece_header(now, header)? {
                self.events
                    .push_back(SessionEvent::BlockReceived { block, data });
            }
            return Ok(());
        }
        self.last_received = now;
        let Some(_) = self.peer else {
            return self.handle_handshake(message);
        };
        let Some(peer_bits) = self.peer_bitfield.as_mut() else {
            let Message::Bitfield(bytes) = message else {
                return Err(SessionError::BitfieldMissing);
            };
            let bitfield = Bitfield::from_wire(&bytes, self.lengths.piece_count())?;
            self.events.push_back(SessionEvent::Ready {
                peer_id: self.peer.expect("handshake seen").peer_id,
                bitfield: bitfield.clone(),
            });
            self.peer_bitfield = Some(bitfield);
            return Ok(());
        };
        match message {
            Message::KeepAlive => {}
            Message::Handshake(_) => return Err(SessionError::HandshakeOrder),
            Message::Bitfield(_) => return Err(SessionError::HandshakeOrder),
            Message::Choke => {
                self.peer_choking = true;
                self.requested.clear();
                self.events.push_back(SessionEvent::Choked);
            }
            Message::Unchoke => {
                self.peer_choking = false;
                self.events.push_back(SessionEvent::Unchoked);
            }
            Message::Interested | Message::NotInterested => {
                self.peer_interested = message == Message::Interested;
                self.events
                    .push_back(SessionEvent::Interested(self.peer_interested));
            }
            Message::Have { piece } => {
                let piece = self
                    .lengths
                    .validate_piece_index(piece)
                    .ok_or(SessionError::PieceOutOfRange(piece))?;
                if !peer_bits.get(piece) {
                    peer_bits.set(piece);
                    self.events.push_back(SessionEvent::Have(piece));
                }
            }
            Message::Request(request) => self.handle_request(self.block(request)?),
            Message::Cancel(request) => {
                let block = self.block(request)?;
                if self.serving.remove(&block) {
                    self.events.push_back(SessionEvent::RequestCancelled(block));
                }
            }
            Message::Reject(request) => {
                let block = self.block(request)?;
                if self.requested.remove(&block) {
                    self.events.push_back(SessionEvent::RequestRejected(block));
                }
            }
            Message::Piece { .. } => unreachable!("handled by handle_piece_header"),
        }
        Ok(())
    }

    /// Handles a Piece message whose data stays where it arrived (see
    /// [`crate::wire::peek_piece_frame`]): as [`Self::handle_message`] would, except that no
    /// [`SessionEvent::BlockReceived`] is raised. The block is returned instead if we were
    /// waiting for it, and the caller takes its data; `None` if not (cancelled, or voided by a
    /// choke, it may still cross our message on the wire), and the data is dropped.
    pub fn handle_piece_header(
        &mut self,
        now: Duration,
        header: PieceHeader,
    ) -> Result<Option<BlockRef>, SessionError> {
        self.last_received = now;
        if self.peer.is_none() {
            return Err(SessionError::HandshakeOrder);
        }
        if self.peer_bitfield.is_none() {
            return Err(SessionError::BitfieldMissing);
        }
        let block = self.block(BlockRequest {
            piece: header.piece,
            offset: header.offset,
            length: header.data_len as u32,
        })?;
        Ok(self.requested.remove(&block).then_some(block))
    }

    fn handle_handshake(&mut self, message: Message) -> Result<(), SessionError> {
        let Message::Handshake(handshake) = message else {
            return Err(SessionError::HandshakeOrder);
        };
        if handshake.info_hash != self.info_hash {
            return Err(SessionError::WrongInfoHash(handshake.info_hash));
        }
        if handshake.peer_id == self.our_peer_id {
            return Err(SessionError::SelfConnection);
        }
        self.peer = Some(handshake);
        Ok(())
    }

    fn block(&self, r: BlockRequest) -> Result<BlockRef, SessionError> {
        self.lengths
            .validate_block(r.piece, r.offset, r.length)
            .ok_or(SessionError::BadBlock {
                piece: r.piece,
                offset: r.offset,
                length: r.length,
            })
    }

    fn handle_request(&mut self, block: BlockRef) {
        let refuse = self.am_choking
            || !self.ours.get(block.piece)
            || self.serving.len() >= usize::from(self.config.max_requests_accepted.max(1));
        if refuse {
            self.outbox.push_back(Message::Reject(block.into()));
        } else if self.serving.insert(block) {
            self.events.push_back(SessionEvent::BlockRequested(block));
        }
    }

    /// Checks the idle timeout and queues a keep-alive when one is due.
    pub fn handle_timeout(&mut self, now: Duration) -> Result<(), SessionError> {
        if now.saturating_sub(self.last_received) >= self.config.idle_timeout {
            return Err(SessionError::TimedOut);
        }
        if now.saturating_sub(self.last_sent) >= self.config.keepalive_interval
            && self.outbox.is_empty()
        {
            self.outbox.push_back(Message::KeepAlive);
        }
        Ok(())
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Duration {
        let idle = self.last_received + self.config.idle_timeout;
        // Something waits to be sent (a keep-alive, perhaps): nothing more to time until the
        // driver sends it, or a deadline already past would wake the driver again and again.
        if !self.outbox.is_empty() {
            return idle;
        }
        (self.last_sent + self.config.keepalive_interval).min(idle)
    }

    /// The next message to send, if any. `now` records when we last sent something.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Duration) -> Option<Message> {
        let message = self.outbox.pop_front()?;
        self.last_sent = now;
        Some(message)
    }

    /// The next event to act on, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// Asks the peer for a block. Returns false, sending nothing, if the peer chokes us, has no
    /// room for another request, lacks the piece, or it is already requested.
    pub fn request(&mut self, block: BlockRef) -> bool {
        let has_it = self
            .peer_bitfield
            .as_ref()
            .is_some_and(|b| b.get(block.piece));
        if !self.can_request() || !has_it || !self.requested.insert(block) {
            return false;
        }
        self.outbox.push_back(Message::Request(block.into()));
        true
    }

    /// Withdraws one of our requests (another peer delivered it first).
    pub fn cancel(&mut self, block: BlockRef) {
        if self.requested.remove(&block) {
            self.outbox.push_back(Message::Cancel(block.into()));
        }
    }

    /// Answers a [`SessionEvent::BlockRequested`] with the block's bytes, unless the peer
    /// cancelled it or we choked it meanwhile. The driver must pass verified bytes.
    pub fn send_piece(&mut self, block: BlockRef, data: Bytes) {
        debug_assert_eq!(data.len(), block.length as usize);
        if self.serving.remove(&block) {
            self.outbox.push_back(Message::Piece {
                piece: block.piece.get(),
                offset: block.offset,
                data,
            });
        }
    }

    /// Refuses a request we cannot serve after all (for example, the disk read failed).
    pub fn reject(&mut self, block: BlockRef) {
        if self.serving.remove(&block) {
            self.outbox.push_back(Message::Reject(block.into()));
        }
    }

    /// Tells the peer we verified a new piece; we can serve it from now on.
    pub fn have(&mut self, piece: ValidPieceIndex) {
        if !self.ours.get(piece) {
            self.ours.set(piece);
            self.outbox.push_back(Message::Have { piece: piece.get() });
        }
    }

    /// Tells the peer whether we want its pieces.
    pub fn set_interested(&mut self, interested: bool) {
        if interested != self.am_interested {
            self.am_interested = interested;
            self.outbox.push_back(if interested {
                Message::Interested
            } else {
                Message::NotInterested
            });
        }
    }

    /// Starts or stops serving the peer. Choking drops its outstanding requests.
    pub fn set_choking(&mut self, choking: bool) {
        if choking != self.am_choking {
            self.am_choking = choking;
            if choking {
                self.serving.clear();
            }
            self.outbox.push_back(if choking {
                Message::Choke
            } else {
                Message::Unchoke
            });
        }
    }
}

#[cfg(test)]
mod tests;
