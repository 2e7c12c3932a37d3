//! Piece state changes and request bookkeeping, each keeping the invariants of `STATE.md`.

use std::time::Duration;

use super::{is_needed, Block, BlockKey, Download, Event, PeerKey, PieceState, Scheduler};
use super::{SchedulerError, ValidPieceIndex};
use crate::piece::BlockRef;

impl Scheduler {
    /// Records a piece as verified. Callers adjust `missing` and the peers' counters.
    pub(super) fn mark_have(&mut self, piece: u32) {
        self.states[piece as usize] = PieceState::Have;
        self.have.set_bit(piece);
        self.have_count += 1;
        let index = self.valid(piece);
        self.have_bytes += u64::from(self.lengths.piece_length(index));
    }

    /// Queued → in flight: the piece leaves the rarest-first queue and gets per-block state.
    pub(super) fn start_download(&mut self, piece: u32) {
        debug_assert_eq!(self.states[piece as usize], PieceState::Queued);
        self.queue.remove(piece);
        self.states[piece as usize] = PieceState::InFlight;
        let blocks = self.lengths.block_count(self.valid(piece));
        self.downloads.insert(piece, Download::new(blocks));
        self.update_open(piece);
        for state in self.peers.values_mut() {
            state.queued -= u32::from(state.has.bit(piece));
        }
    }

    /// In flight (untouched) or awaiting hash (failed) → queued. The download must already be
    /// removed.
    pub(super) fn enqueue(&mut self, piece: u32) {
        debug_assert!(!self.downloads.contains_key(&piece));
        self.states[piece as usize] = PieceState::Queued;
        self.queue.insert(piece, &mut self.rng);
        for state in self.peers.values_mut() {
            state.queued += u32::from(state.has.bit(piece));
        }
    }

    /// Ends the hash check of a piece, whatever its result.
    pub(super) fn take_awaiting_hash(
        &mut self,
        piece: ValidPieceIndex,
    ) -> Result<u32, SchedulerError> {
        let index = piece.get();
        if self.states[index as usize] != PieceState::AwaitingHash {
            return Err(SchedulerError::PieceNotAwaitingHash(index));
        }
        let download = self.downloads.remove(&index).expect("awaiting hash");
        debug_assert!(download.open_seq.is_none());
        Ok(index)
    }

    /// Records that `key` was just requested from `peer`.
    pub(super) fn record_request(&mut self, peer: PeerKey, key: BlockKey, now: Duration) {
        let on_parole = self.peers[&peer].on_parole;
        let download = self.downloads.get_mut(&key.piece).expect("in flight");
        let Block::Missing { requesters } = &mut download.blocks[key.block as usize] else {
            unreachable!("a received block is never picked");
        };
        requesters.push(peer);
        if requesters.len() == 1 {
            download.unrequested -= 1;
        }
        if on_parole {
            download.owner = Some(peer);
        }
        self.update_open(key.piece);
        let deadline = now
            .checked_add(self.config.request_timeout)
            .unwrap_or(Duration::MAX);
        let state = self.peers.get_mut(&peer).expect("picked for a known peer");
        state.in_flight.insert(key, deadline);
        self.deadlines.insert((deadline, peer, key));
    }

    /// Withdraws an outstanding request: the peer side and the block side. A block left with no
    /// requester can be picked again; a piece left untouched goes back to the queue.
    pub(super) fn release(&mut self, peer: PeerKey, key: BlockKey) {
        if !self.forget_request(peer, key) {
            return;
        }
        let download = self.downloads.get_mut(&key.piece).expect("in flight");
        let Block::Missing { requesters } = &mut download.blocks[key.block as usize] else {
            unreachable!("a received block has no outstanding request");
        };
        requesters.retain(|&r| r != peer);
        if requesters.is_empty() {
            download.unrequested += 1;
        }
        if download.is_untouched() {
            let download = self.downloads.remove(&key.piece).expect("in flight");
            self.close(download.open_seq);
            self.enqueue(key.piece);
        } else {
            self.update_open(key.piece);
        }
    }

    /// Releases every outstanding request of `peer`, and the pieces it owns on parole, which
    /// other peers may then finish.
    pub(super) fn release_all(&mut self, peer: PeerKey) {
        self.disown(peer);
        let Some(state) = self.peers.get(&peer) else {
            return;
        };
        let keys: Vec<BlockKey> = state.in_flight.keys().copied().collect();
        for key in keys {
            self.release(peer, key);
        }
    }

    /// Removes the peer side of a request (its slot and deadline). Returns whether it was
    /// outstanding.
    pub(super) fn forget_request(&mut self, peer: PeerKey, key: BlockKey) -> bool {
        let Some(state) = self.peers.get_mut(&peer) else {
            return false;
        };
        let Some(deadline) = state.in_flight.remove(&key) else {
            return false;
        };
        self.deadlines.remove(&(deadline, peer, key));
        true
    }

    /// The peer no longer counts as having `piece`.
    pub(super) fn forget_piece_of_peer(&mut self, peer: PeerKey, piece: u32) {
        let state = self.peers.get_mut(&peer).expect("known peer");
        if !state.has.bit(piece) {
            return;
        }
        state.has.clear_bit(piece);
        let piece_state = self.states[piece as usize];
        state.queued -= u32::from(piece_state == PieceState::Queued);
        state.needed -= u32::from(is_needed(piece_state));
        self.queue.decrement(piece, &mut self.rng);
    }

    /// Opens the pieces `peer` owns on parole to every peer (it stalled, choked or left).
    pub(super) fn disown(&mut self, peer: PeerKey) {
        for download in self.downloads.values_mut() {
            if download.owner == Some(peer) {
                download.owner = None;
            }
        }
    }

    /// Ends `peer`'s parole: a piece it sent alone passed.
    pub(super) fn end_parole(&mut self, peer: PeerKey) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.on_parole = false;
            self.disown(peer);
        }
    }

    /// The peers that sent a block of `piece`, if it is awaiting its hash check.
    pub(super) fn contributors_awaiting_hash(&self, piece: u32) -> Vec<PeerKey> {
        self.downloads
            .get(&piece)
            .filter(|_| self.states[piece as usize] == PieceState::AwaitingHash)
            .map(Download::contributors)
            .unwrap_or_default()
    }

    /// Forgets a peer for good and tells the driver to disconnect it.
    pub(super) fn ban(&mut self, peer: PeerKey) {
        self.handle_peer_removed(peer);
        self.banned.insert(peer);
        self.events.push_back(Event::Ban { peer });
    }

    /// Puts an in-flight piece into the open list, or takes it out, according to whether it
    /// has a block requested from nobody.
    pub(super) fn update_open(&mut self, piece: u32) {
        let download = self.downloads.get_mut(&piece).expect("in flight");
        match (download.unrequested > 0, download.open_seq) {
            (true, None) => {
                let seq = self.next_open_seq;
                self.next_open_seq += 1;
                download.open_seq = Some(seq);
                self.open.insert(seq, piece);
            }
            (false, Some(seq)) => {
                download.open_seq = None;
                self.open.remove(&seq);
            }
            _ => {}
        }
    }

    fn close(&mut self, open_seq: Option<u64>) {
        if let Some(seq) = open_seq {
            self.open.remove(&seq);
        }
    }

    pub(super) fn block_ref(&self, key: BlockKey) -> BlockRef {
        self.lengths
            .block(self.valid(key.piece), key.block)
            .expect("block keys are made from valid blocks")
    }

    pub(super) fn valid(&self, piece: u32) -> ValidPieceIndex {
        self.lengths
            .validate_piece_index(piece)
            .expect("piece indices inside the scheduler are valid")
    }
}
