//! Which block a peer is asked for next: partial pieces, then rarest first, then endgame.

use super::{Block, BlockKey, PeerKey, PieceState, Scheduler};

impl Scheduler {
    /// A block requested from nobody in a piece already in flight that the peer has, oldest
    /// piece first. Pieces a peer on parole owns are its alone; it continues those, or takes
    /// over a piece nobody is downloading. O(open pieces).
    pub(super) fn pick_partial(&self, peer: PeerKey) -> Option<BlockKey> {
        self.open
            .values()
            .find(|&&piece| self.may_continue(peer, piece))
            .map(|&piece| BlockKey {
                piece,
                block: self.downloads[&piece]
                    .first_unrequested()
                    .expect("open pieces have an unrequested block"),
            })
    }

    /// Whether `peer` may be asked for blocks of the in-flight `piece`: it has it, and the
    /// piece is not another's on parole; a peer on parole continues only its own pieces, or
    /// takes over one nobody is downloading.
    pub(super) fn may_continue(&self, peer: PeerKey, piece: u32) -> bool {
        let state = &self.peers[&peer];
        let download = &self.downloads[&piece];
        let allowed = match (state.on_parole, download.owner) {
            (_, Some(owner)) => owner == peer,
            (false, None) => true,
            (true, None) => download.is_idle(),
        };
        state.has.bit(piece) && allowed
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
    /// fewer than the endgame limit, with the fewest requesters. Pieces owned by a peer on
    /// parole are not shared, and a peer on parole joins none. O(outstanding requests).
    pub(super) fn pick_endgame(&self, peer: PeerKey) -> Option<BlockKey> {
        if !self.in_endgame() || self.peers[&peer].on_parole {
            return None;
        }
        let has = &self.peers[&peer].has;
        let limit = self.config.endgame_max_requests_per_block as usize;
        let mut best: Option<(usize, BlockKey)> = None;
        for (&piece, download) in &self.downloads {
            if self.states[piece as usize] != PieceState::InFlight
                || !has.bit(piece)
                || download.owner.is_some()
            {
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
