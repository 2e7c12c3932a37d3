//! The blocks of one piece being downloaded.

use super::types::PeerKey;

/// One block of a piece in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Block {
    /// Not received yet; requested from these peers (none, one, or several in endgame).
    Missing { requesters: Vec<PeerKey> },
    /// Received from this peer, which is blamed if the piece fails its hash check.
    Received(PeerKey),
}

/// A piece that is in flight or awaiting its hash check.
#[derive(Debug, Clone)]
pub(super) struct Download {
    pub(super) blocks: Vec<Block>,
    /// How many blocks are missing and requested from nobody.
    pub(super) unrequested: u32,
    /// How many blocks are received.
    pub(super) received: u32,
    /// Its key in the scheduler's list of open pieces, while it is in that list.
    pub(super) open_seq: Option<u64>,
    /// The peer on parole that downloads this piece alone, so that a failure is its own.
    pub(super) owner: Option<PeerKey>,
}

impl Download {
    pub(super) fn new(block_count: u32) -> Self {
        Self {
            blocks: vec![
                Block::Missing {
                    requesters: Vec::new()
                };
                block_count as usize
            ],
            unrequested: block_count,
            received: 0,
            open_seq: None,
            owner: None,
        }
    }

    pub(super) fn is_complete(&self) -> bool {
        self.received as usize == self.blocks.len()
    }

    /// Nothing received and nothing requested: as if never started.
    pub(super) fn is_untouched(&self) -> bool {
        self.unrequested as usize == self.blocks.len()
    }

    /// No block is requested from anyone.
    pub(super) fn is_idle(&self) -> bool {
        (self.unrequested + self.received) as usize == self.blocks.len()
    }

    /// The first block that is missing and requested from nobody.
    pub(super) fn first_unrequested(&self) -> Option<u32> {
        self.blocks
            .iter()
            .position(
                |block| matches!(block, Block::Missing { requesters } if requesters.is_empty()),
            )
            .map(|i| i as u32)
    }

    /// The peers that sent a block of it, each once.
    pub(super) fn contributors(&self) -> Vec<PeerKey> {
        let mut peers: Vec<PeerKey> = self
            .blocks
            .iter()
            .filter_map(|block| match block {
                Block::Received(peer) => Some(*peer),
                Block::Missing { .. } => None,
            })
            .collect();
        peers.sort_unstable();
        peers.dedup();
        peers
    }
}
