//! Which block a peer is asked for next: partial pieces, then rarest first, then endgame.

use super::{Block, BlockKey, PeerKey, PieceState, Scheduler};

impl Scheduler {
    /// A block requested from nobody in a piece already in flight that the peer has, oldest
    /// piece first. O(open pieces).
    pub(super) fn pick_partial(&self, peer: PeerKey) -> Option<BlockKey> {
        let has = &self.peers[&peer].has;
        self.open
            .values()
            .find(|&&piece| has.bit(piece))
            .map(|&piece| BlockKey {
                piece,
                block: self.downloads[&piece]
                    .first_unrequested()
                    .expect("open pieces have an unrequested block"),
            })
    }

    /// Starts the rarest queued piece the peer has and returns its first block.
    pub(super) fn pick_queued(&mut self, peer: PeerKey) -> Option<BlockKey> {
        let state = self.peers.get_mut(&peer).expect("known peer");
        if state.queued == 0 {
            return None;
        }
        // Scanning as many queue entries as the fallback reads words keeps the probing cost
        // within that of the fallback, while a peer with a fair share of the buckets above its
        // floor is served in a few probes.
        let budget = (self.lengths.piece_count() as usize / 64).max(64);
        let piece = self
            .queue
            .pick(&state.has, &mut state.floor, budget, &mut self.rng)?;
        self.start_download(piece);
        Some(BlockKey { piece, block: 0 })
    }

    /// In endgame, a block already requested from other peers but not from this one, and from
    /// fewer than the endgame limit, with the fewest requesters. O(outstanding requests).
    pub(super) fn pick_endgame(&self, peer: PeerKey) -> Option<BlockKey> {
        if !self.in_endgame() {
            return None;
        }
        let has = &self.peers[&peer].has;
        let limit = self.config.endgame_max_requests_per_block as usize;
        let mut best: Option<(usize, BlockKey)> = None;
        for (&piece, download) in &self.downloads {
            if self.states[piece as usize] != PieceState::InFlight || !has.bit(piece) {
                continue;
            }
            for (block, state) in download.blocks.iter().enumerate() {
                let Block::Missing { requesters } = state else {
                    continue;
                };
                let count = requesters.len();
                if count < limit
                    && !requesters.contains(&peer)
                    && best.is_none_or(|(fewest, _)| count < fewest)
                {
                    let block = block as u32;
                    best = Some((count, BlockKey { piece, block }));
                }
            }
        }
        best.map(|(_, key)| key)
    }
}
