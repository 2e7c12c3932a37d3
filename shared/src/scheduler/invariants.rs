//! A checker for the invariants of `STATE.md`, recomputing every derived count from scratch.

use std::collections::BTreeSet;

use super::{is_needed, Block, BlockKey, PeerKey, PieceState, Scheduler};

impl Scheduler {
    /// Panics with the broken invariant's number from `STATE.md`.
    pub(super) fn check_invariants(&self) {
        self.queue.check();
        self.check_pieces();
        self.check_downloads();
        self.check_requests();
        self.check_peers();
    }

    fn check_pieces(&self) {
        let (mut have, mut bytes, mut missing) = (0, 0, 0);
        for (piece, &state) in self.states.iter().enumerate() {
            let p = piece as u32;
            assert_eq!(self.have.bit(p), state == PieceState::Have, "1: piece {p}");
            assert_eq!(
                self.queue.contains(p),
                state == PieceState::Queued,
                "2: {p}"
            );
            let downloading = matches!(state, PieceState::InFlight | PieceState::AwaitingHash);
            assert_eq!(self.downloads.contains_key(&p), downloading, "3: {p}");
            if state == PieceState::Have {
                have += 1;
                bytes += u64::from(self.lengths.piece_length(self.valid(p)));
            }
            missing += u32::from(is_needed(state));
            let holders = self.peers.values().filter(|peer| peer.has.bit(p)).count();
            assert_eq!(self.queue.availability(p) as usize, holders, "9: {p}");
        }
        assert_eq!(
            (self.have_count, self.have_bytes, self.missing),
            (have, bytes, missing),
            "10"
        );
    }

    fn check_downloads(&self) {
        let mut open = BTreeSet::new();
        for (&piece, download) in &self.downloads {
            let blocks = self.lengths.block_count(self.valid(piece)) as usize;
            assert_eq!(download.blocks.len(), blocks, "4: {piece}");
            let received = download
                .blocks
                .iter()
                .filter(|b| matches!(b, Block::Received(_)))
                .count();
            let unrequested = download
                .blocks
                .iter()
                .filter(|b| matches!(b, Block::Missing { requesters } if requesters.is_empty()))
                .count();
            assert_eq!(download.received as usize, received, "4: {piece}");
            assert_eq!(download.unrequested as usize, unrequested, "4: {piece}");
            if let Some(owner) = download.owner {
                assert!(self.is_on_parole(owner), "15: {piece} owned by {owner}");
            }
            let awaiting = self.states[piece as usize] == PieceState::AwaitingHash;
            assert_eq!(awaiting, received == blocks, "4: {piece}");
            assert!(awaiting || unrequested < blocks, "5: {piece} is untouched");
            let should_be_open = !awaiting && unrequested > 0;
            assert_eq!(download.open_seq.is_some(), should_be_open, "6: {piece}");
            if let Some(seq) = download.open_seq {
                assert_eq!(self.open.get(&seq), Some(&piece), "6: {piece}");
                open.insert(seq);
            }
        }
        assert_eq!(open.len(), self.open.len(), "6: stale open entries");
    }

    fn check_requests(&self) {
        let mut from_blocks = BTreeSet::new();
        let limit = self.config.endgame_max_requests_per_block.max(1) as usize;
        for (&piece, download) in &self.downloads {
            for (block, state) in download.blocks.iter().enumerate() {
                if let Block::Missing { requesters } = state {
                    assert!(requesters.len() <= limit, "8: {piece}/{block}");
                    if let Some(owner) = download.owner {
                        assert!(requesters.iter().all(|&r| r == owner), "15: {piece}");
                    }
                    let unique: BTreeSet<&PeerKey> = requesters.iter().collect();
                    assert_eq!(unique.len(), requesters.len(), "8: {piece}/{block}");
                    for &peer in requesters {
                        let block = block as u32;
                        from_blocks.insert((peer, BlockKey { piece, block }));
                    }
                }
            }
        }
        let mut from_peers = BTreeSet::new();
        let mut deadlines = BTreeSet::new();
        for (&peer, state) in &self.peers {
            for (&key, &deadline) in &state.in_flight {
                from_peers.insert((peer, key));
                deadlines.insert((deadline, peer, key));
            }
        }
        assert_eq!(from_blocks, from_peers, "7");
        assert_eq!(deadlines, self.deadlines, "7: deadlines");
    }

    fn check_peers(&self) {
        for (&peer, state) in &self.peers {
            assert!(!self.banned.contains(&peer), "11: {peer}");
            let max = self.config.max_in_flight_per_peer as usize;
            assert!(state.in_flight.len() <= max, "12: {peer}");
            if state.choked {
                assert!(state.in_flight.is_empty(), "12: choked {peer}");
            }
            let queued = state
                .has
                .iter_ones()
                .filter(|&p| self.states[p as usize] == PieceState::Queued)
                .count();
            let needed = state
                .has
                .iter_ones()
                .filter(|&p| is_needed(self.states[p as usize]))
                .count();
            assert_eq!(state.queued as usize, queued, "13: {peer}");
            assert_eq!(state.needed as usize, needed, "13: {peer}");
            let floor = self.queue.valid_level(&state.floor);
            let below = state.has.iter_ones().find(|&p| {
                self.states[p as usize] == PieceState::Queued && self.queue.availability(p) < floor
            });
            assert_eq!(below, None, "14: {peer} has a queued piece below its floor");
        }
    }
}
