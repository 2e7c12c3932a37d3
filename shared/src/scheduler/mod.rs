//! The sans-IO download scheduler: which block to request from which peer.
//!
#![doc = include_str!("GUIDE.md")]

mod download;
mod peer;
mod picking;
mod rarity;
mod rng;
mod transitions;
mod types;

#[cfg(test)]
mod invariants;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use self::download::{Block, Download};
use self::peer::{BlockKey, Peer};
use self::rarity::Rarity;
use self::rng::SplitMix64;
pub use self::types::{BlockOutcome, Event, PeerKey, PieceState, SchedulerConfig, SchedulerError};
use crate::bitfield::Bitfield;
use crate::piece::{BlockRef, Lengths, ValidPieceIndex};

/// Decides which block to request from which peer, for one download.
///
#[doc = include_str!("GUIDE.md")]
#[derive(Debug, Clone)]
pub struct Scheduler {
    lengths: Lengths,
    config: SchedulerConfig,
    /// Per piece.
    states: Vec<PieceState>,
    /// The pieces in state [`PieceState::Have`].
    have: Bitfield,
    have_count: u32,
    have_bytes: u64,
    /// Pieces queued, in flight or awaiting hash.
    missing: u32,
    /// Availability of every piece; the queued pieces, rarest first.
    queue: Rarity,
    /// The pieces in flight or awaiting hash.
    downloads: BTreeMap<u32, Download>,
    /// The pieces in flight that have a missing block requested from nobody, oldest first.
    open: BTreeMap<u64, u32>,
    next_open_seq: u64,
    peers: BTreeMap<PeerKey, Peer>,
    banned: BTreeSet<PeerKey>,
    /// Every outstanding request, by deadline.
    deadlines: BTreeSet<(Duration, PeerKey, BlockKey)>,
    events: VecDeque<Event>,
    rng: SplitMix64,
}

impl Scheduler {
    /// A scheduler for a file of `lengths` that wants every piece, `have` holding the pieces
    /// already verified (all clear for a new download). `seed` drives tie-breaking.
    pub fn new(
        lengths: Lengths,
        have: Bitfield,
        config: SchedulerConfig,
        seed: u64,
    ) -> Result<Self, SchedulerError> {
        let wanted = Bitfield::full(lengths.piece_count());
        Self::with_wanted(lengths, have, &wanted, config, seed)
    }

    /// Like [`Scheduler::new`], but only the pieces set in `wanted` are downloaded; the others
    /// are [`PieceState::NotNeeded`] unless `have` has them.
    pub fn with_wanted(
        lengths: Lengths,
        have: Bitfield,
        wanted: &Bitfield,
        config: SchedulerConfig,
        seed: u64,
    ) -> Result<Self, SchedulerError> {
        check_config(&config)?;
        check_length(&lengths, &have)?;
        check_length(&lengths, wanted)?;
        let piece_count = lengths.piece_count();
        let mut scheduler = Self {
            lengths,
            config,
            states: vec![PieceState::NotNeeded; piece_count as usize],
            have: Bitfield::new(piece_count),
            have_count: 0,
            have_bytes: 0,
            missing: 0,
            queue: Rarity::new(piece_count),
            downloads: BTreeMap::new(),
            open: BTreeMap::new(),
            next_open_seq: 0,
            peers: BTreeMap::new(),
            banned: BTreeSet::new(),
            deadlines: BTreeSet::new(),
            events: VecDeque::new(),
            rng: SplitMix64::new(seed),
        };
        for piece in 0..piece_count {
            if have.bit(piece) {
                scheduler.mark_have(piece);
            } else if wanted.bit(piece) {
                scheduler.states[piece as usize] = PieceState::Queued;
                scheduler.missing += 1;
                scheduler.queue.insert(piece, &mut scheduler.rng);
            }
        }
        Ok(scheduler)
    }

    // --- Getters ---

    /// The file's lengths.
    pub fn lengths(&self) -> &Lengths {
        &self.lengths
    }

    /// The configuration.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// The verified pieces: what to persist for a resume and to send as our bitfield.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// How many pieces are verified.
    pub fn pieces_have(&self) -> u32 {
        self.have_count
    }

    /// How many bytes the verified pieces hold.
    pub fn bytes_have(&self) -> u64 {
        self.have_bytes
    }

    /// Whether every wanted piece is verified.
    pub fn is_complete(&self) -> bool {
        self.missing == 0
    }

    /// Where `piece` stands.
    pub fn piece_state(&self, piece: ValidPieceIndex) -> PieceState {
        self.states[piece.get() as usize]
    }

    /// How many connected peers have `piece`.
    pub fn availability(&self, piece: ValidPieceIndex) -> u32 {
        self.queue.availability(piece.get())
    }

    /// How many requests are outstanding at `peer` (0 for an unknown peer).
    pub fn in_flight(&self, peer: PeerKey) -> usize {
        self.peers.get(&peer).map_or(0, |p| p.in_flight.len())
    }

    /// Whether `peer` has a piece we still need: whether to tell it we are interested.
    pub fn is_interesting(&self, peer: PeerKey) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.needed > 0)
    }

    /// How many pieces that `peer` alone sent failed their hash check.
    pub fn strikes(&self, peer: PeerKey) -> u32 {
        self.peers.get(&peer).map_or(0, |p| p.strikes)
    }

    /// Whether `peer` is on parole: it shared a piece that failed its hash check, and until a
    /// piece it downloads alone passes, it only downloads whole pieces by itself.
    pub fn is_on_parole(&self, peer: PeerKey) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.on_parole)
    }

    /// How many of `peer`'s requests timed out.
    pub fn timeouts(&self, peer: PeerKey) -> u32 {
        self.peers.get(&peer).map_or(0, |p| p.timeouts)
    }

    /// Whether `peer` was banned from this download.
    pub fn is_banned(&self, peer: PeerKey) -> bool {
        self.banned.contains(&peer)
    }

    /// Whether endgame is on: no block is left that was never requested and that a connected
    /// peer could serve, yet pieces are missing.
    pub fn in_endgame(&self) -> bool {
        self.missing > 0
            && !self.queue.has_available()
            && self
                .open
                .values()
                .all(|&piece| self.queue.availability(piece) == 0)
    }

    // --- Inputs ---

    /// A peer connected and sent its bitfield (an empty one if it sent none). It starts
    /// choking us.
    pub fn handle_peer_added(
        &mut self,
        peer: PeerKey,
        has: Bitfield,
    ) -> Result<(), SchedulerError> {
        if self.banned.contains(&peer) {
            return Err(SchedulerError::PeerBanned(peer));
        }
        if self.peers.contains_key(&peer) {
            return Err(SchedulerError::PeerAlreadyAdded(peer));
        }
        check_length(&self.lengths, &has)?;
        let mut state = Peer::new(has);
        for piece in state.has.iter_ones() {
            self.queue.increment(piece, &mut self.rng);
            state.queued += u32::from(self.states[piece as usize] == PieceState::Queued);
            state.needed += u32::from(is_needed(self.states[piece as usize]));
        }
        self.peers.insert(peer, state);
        Ok(())
    }

    /// The peer announced a piece. Ignored for an unknown peer.
    pub fn handle_have(&mut self, peer: PeerKey, piece: ValidPieceIndex) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        let piece = piece.get();
        if state.has.bit(piece) {
            return;
        }
        state.has.set_bit(piece);
        state.queued += u32::from(self.states[piece as usize] == PieceState::Queued);
        state.needed += u32::from(is_needed(self.states[piece as usize]));
        self.queue.increment(piece, &mut self.rng);
        self.queue.announced(&mut state.floor, piece);
    }

    /// The peer choked us: it drops our outstanding requests, so they are released for other
    /// peers, and it gets no new ones until [`Scheduler::handle_unchoked`].
    pub fn handle_choked(&mut self, peer: PeerKey) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.choked = true;
            self.release_all(peer);
        }
    }

    /// The peer unchoked us: it may be sent requests.
    pub fn handle_unchoked(&mut self, peer: PeerKey) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.choked = false;
        }
    }

    /// The peer disconnected: its requests are released and its pieces no longer count.
    pub fn handle_peer_removed(&mut self, peer: PeerKey) {
        self.release_all(peer);
        if let Some(state) = self.peers.remove(&peer) {
            for piece in state.has.iter_ones() {
                self.queue.decrement(piece, &mut self.rng);
            }
        }
    }

    /// The peer sent a block (already checked against the file's lengths with
    /// [`Lengths::validate_block`]). Says whether to keep the bytes and whether a piece is now
    /// complete and must be hashed. In endgame, the same block's requests at other peers are
    /// cancelled ([`Event::Cancel`]).
    pub fn handle_block_received(&mut self, peer: PeerKey, block: BlockRef) -> BlockOutcome {
        let key = block_key(block);
        match self.states[key.piece as usize] {
            PieceState::Have | PieceState::AwaitingHash => return BlockOutcome::Duplicate,
            PieceState::NotNeeded | PieceState::Queued => return BlockOutcome::Unrequested,
            PieceState::InFlight => {}
        }
        let download = self.downloads.get_mut(&key.piece).expect("in flight");
        let requesters = match &mut download.blocks[key.block as usize] {
            Block::Received(_) => return BlockOutcome::Duplicate,
            Block::Missing { requesters } if !requesters.contains(&peer) => {
                return BlockOutcome::Unrequested
            }
            Block::Missing { requesters } => std::mem::take(requesters),
        };
        download.blocks[key.block as usize] = Block::Received(peer);
        download.received += 1;
        let complete = download.is_complete();
        for requester in requesters {
            self.forget_request(requester, key);
            if requester != peer {
                self.events.push_back(Event::Cancel {
                    peer: requester,
                    block,
                });
            }
        }
        if let Some(state) = self.peers.get_mut(&peer) {
            state.snubbed = false;
        }
        if complete {
            self.states[key.piece as usize] = PieceState::AwaitingHash;
            BlockOutcome::PieceComplete(block.piece)
        } else {
            BlockOutcome::Stored
        }
    }

    /// The driver verified a completed piece: it becomes [`PieceState::Have`]. The driver then
    /// announces it to its peers. A peer on parole that sent the whole piece is cleared.
    pub fn handle_hash_ok(&mut self, piece: ValidPieceIndex) -> Result<(), SchedulerError> {
        let contributors = self.contributors_awaiting_hash(piece.get());
        let piece = self.take_awaiting_hash(piece)?;
        self.missing -= 1;
        self.mark_have(piece);
        for state in self.peers.values_mut() {
            state.needed -= u32::from(state.has.bit(piece));
        }
        if let [peer] = contributors[..] {
            self.end_parole(peer);
        }
        Ok(())
    }

    /// A completed piece failed its hash check: it is queued again. A peer that sent the whole
    /// piece gets a strike, and is banned at the limit ([`Event::Ban`]); when several peers
    /// sent blocks of it, the culprit is unknown, so none is struck but each is put on parole:
    /// it then downloads whole pieces alone until one passes.
    pub fn handle_hash_failed(&mut self, piece: ValidPieceIndex) -> Result<(), SchedulerError> {
        let index = piece.get();
        let contributors = self.contributors_awaiting_hash(index);
        self.take_awaiting_hash(piece)?;
        self.enqueue(index);
        let single = contributors.len() == 1;
        for peer in contributors {
            let Some(state) = self.peers.get_mut(&peer) else {
                continue;
            };
            state.on_parole = true;
            if single {
                state.strikes += 1;
                if state.strikes >= self.config.max_hash_failures {
                    self.ban(peer);
                }
            }
        }
        Ok(())
    }

    /// The peer refused a request. It is taken not to have that piece until it announces it
    /// again, so that it is not asked for it in a loop. Ignored unless the request is
    /// outstanding.
    pub fn handle_request_rejected(&mut self, peer: PeerKey, block: BlockRef) {
        let key = block_key(block);
        let outstanding = self
            .peers
            .get(&peer)
            .is_some_and(|state| state.in_flight.contains_key(&key));
        if outstanding {
            self.release(peer, key);
            self.forget_piece_of_peer(peer, key.piece);
        }
    }

    /// Cancels every request whose deadline is at or before `now` ([`Event::Cancel`]), puts its
    /// block back to be requested from anyone, and snubs the slow peer. Call it when the timer
    /// set from [`Scheduler::poll_timeout`] fires.
    pub fn handle_timeout(&mut self, now: Duration) {
        while let Some(&(deadline, peer, key)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.release(peer, key);
            let state = self.peers.get_mut(&peer).expect("requests belong to peers");
            state.timeouts += 1;
            state.snubbed = true;
            self.disown(peer);
            let block = self.block_ref(key);
            self.events.push_back(Event::Cancel { peer, block });
        }
    }

    // --- Commands and outputs ---

    /// The next block to request from `peer`, if it may be sent one now; the request is then
    /// recorded as outstanding from `now`. Call it repeatedly until `None` to fill the peer's
    /// pipeline. `None` when the peer is unknown, chokes us, has no room, or has nothing we
    /// can ask it for.
    #[must_use = "the returned block is recorded as requested; send the request"]
    pub fn next_request(&mut self, peer: PeerKey, now: Duration) -> Option<BlockRef> {
        if !self.peers.get(&peer)?.can_request(&self.config) {
            return None;
        }
        let key = self
            .pick_partial(peer)
            .or_else(|| self.pick_queued(peer))
            .or_else(|| self.pick_endgame(peer))?;
        self.record_request(peer, key, now);
        Some(self.block_ref(key))
    }

    /// The next thing the driver must do, if any. Drain it after every input.
    #[must_use = "events are removed from the queue when polled"]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Scheduler::handle_timeout`] must next be called: the earliest request deadline.
    #[must_use = "arm a timer for this deadline"]
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.deadlines.first().map(|&(deadline, _, _)| deadline)
    }
}

fn check_config(config: &SchedulerConfig) -> Result<(), SchedulerError> {
    for (value, name) in [
        (config.max_in_flight_per_peer, "max_in_flight_per_peer"),
        (
            config.endgame_max_requests_per_block,
            "endgame_max_requests_per_block",
        ),
        (config.max_hash_failures, "max_hash_failures"),
    ] {
        if value == 0 {
            return Err(SchedulerError::ZeroLimit(name));
        }
    }
    Ok(())
}

fn check_length(lengths: &Lengths, bitfield: &Bitfield) -> Result<(), SchedulerError> {
    if bitfield.len() == lengths.piece_count() {
        Ok(())
    } else {
        Err(SchedulerError::BitfieldLength {
            expected: lengths.piece_count(),
            actual: bitfield.len(),
        })
    }
}

/// Whether a piece in this state is still to be downloaded.
fn is_needed(state: PieceState) -> bool {
    matches!(
        state,
        PieceState::Queued | PieceState::InFlight | PieceState::AwaitingHash
    )
}

fn block_key(block: BlockRef) -> BlockKey {
    BlockKey {
        piece: block.piece.get(),
        block: block.offset / crate::piece::BLOCK_SIZE,
    }
}
