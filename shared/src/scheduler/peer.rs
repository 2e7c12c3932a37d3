//! What the scheduler knows about one peer.

use std::collections::BTreeMap;
use std::time::Duration;

use super::rarity::Floor;
use super::types::SchedulerConfig;
use crate::bitfield::Bitfield;

/// A block by piece index and block index within the piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct BlockKey {
    pub(super) piece: u32,
    pub(super) block: u32,
}

/// One connected peer.
#[derive(Debug, Clone)]
pub(super) struct Peer {
    /// The pieces it has, as far as we know.
    pub(super) has: Bitfield,
    /// Whether it chokes us; peers start choked, as in BitTorrent.
    pub(super) choked: bool,
    /// Set when one of its requests times out, cleared when it delivers a block: a snubbed peer
    /// gets one request at a time, so a stalled peer does not hold many blocks hostage.
    pub(super) snubbed: bool,
    /// Its outstanding requests, each with its deadline.
    pub(super) in_flight: BTreeMap<BlockKey, Duration>,
    /// How many queued pieces it has: when zero, the rarest-first queue need not be scanned.
    pub(super) queued: u32,
    /// Where its rarest-first scans start.
    pub(super) floor: Floor,
    /// How many pieces it has that we still need (queued, in flight, awaiting hash).
    pub(super) needed: u32,
    /// How many pieces it alone sent failed their hash check.
    pub(super) strikes: u32,
    /// Set when a piece it shared with other peers failed its hash check, cleared when a piece
    /// it downloaded alone passes: on parole, a peer only downloads whole pieces by itself, so
    /// the next failure is known to be its own.
    pub(super) on_parole: bool,
    /// How many of its requests timed out.
    pub(super) timeouts: u32,
}

impl Peer {
    pub(super) fn new(has: Bitfield) -> Self {
        Self {
            has,
            choked: true,
            snubbed: false,
            in_flight: BTreeMap::new(),
            queued: 0,
            floor: Floor::default(),
            needed: 0,
            strikes: 0,
            on_parole: false,
            timeouts: 0,
        }
    }

    /// Whether it may be sent one more request now.
    pub(super) fn can_request(&self, config: &SchedulerConfig) -> bool {
        let limit = if self.snubbed {
            1
        } else {
            config.max_in_flight_per_peer as usize
        };
        !self.choked && self.in_flight.len() < limit
    }
}
