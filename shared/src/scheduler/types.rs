//! The scheduler's inputs and outputs.

use std::time::Duration;

use crate::piece::{BlockRef, ValidPieceIndex};

/// Names one peer connection. The driver chooses the keys (a connection counter, say) and must
/// not reuse the key of a peer that was banned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey(pub u64);

impl std::fmt::Display for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "peer #{}", self.0)
    }
}

/// The scheduler's knobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// How many block requests may be outstanding at one peer. Together with the block size
    /// it bounds the bytes in flight per peer: 8 blocks of 256 KiB is 2 MiB, enough to keep a
    /// 100 MB/s link with 20 ms of round trip busy.
    pub max_in_flight_per_peer: u32,
    /// In endgame, how many peers the same block may be requested from at once (the first
    /// request included). Bounds the bandwidth wasted on duplicates at the end.
    pub endgame_max_requests_per_block: u32,
    /// How long a request may stay unanswered before it is given to another peer.
    pub request_timeout: Duration,
    /// How many pieces that failed their hash check a peer may have contributed to before it is
    /// banned from this download.
    pub max_hash_failures: u32,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_in_flight_per_peer: 8,
            endgame_max_requests_per_block: 3,
            request_timeout: Duration::from_secs(30),
            max_hash_failures: 3,
        }
    }
}

/// Where one piece stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PieceState {
    /// Downloaded and verified (or was there when the download resumed).
    Have,
    /// Not wanted: it is never requested.
    NotNeeded,
    /// Wanted, and no block of it is requested or received.
    Queued,
    /// Some of its blocks are requested or received, not all received.
    InFlight,
    /// Every block received; the driver is checking its hash.
    AwaitingHash,
}

/// What became of a block the driver received, from [`Scheduler::handle_block_received`].
///
/// [`Scheduler::handle_block_received`]: super::Scheduler::handle_block_received
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "the driver must keep or drop the block's bytes accordingly"]
pub enum BlockOutcome {
    /// Keep the bytes; the piece still misses blocks.
    Stored,
    /// Keep the bytes: they complete this piece. Check its hash and report the result with
    /// `handle_hash_ok` or `handle_hash_failed`.
    PieceComplete(ValidPieceIndex),
    /// Drop the bytes: the block was already received, or its piece is verified or being
    /// verified.
    Duplicate,
    /// Drop the bytes: the block is not requested from this peer (never was, or the request
    /// was cancelled, timed out, rejected, or released by a choke).
    Unrequested,
}

/// Something the driver must carry out, from [`Scheduler::poll_event`].
///
/// [`Scheduler::poll_event`]: super::Scheduler::poll_event
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Send the peer a Cancel for this block: another peer delivered it (endgame), or the
    /// request timed out and was given to another peer.
    Cancel {
        /// The peer to send the Cancel to.
        peer: PeerKey,
        /// The block requested from it.
        block: BlockRef,
    },
    /// The peer contributed to too many pieces that failed their hash check: disconnect it and
    /// do not connect to it again for this download. The scheduler has already forgotten it.
    Ban {
        /// The banned peer.
        peer: PeerKey,
    },
}

/// A call the scheduler cannot act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedulerError {
    /// A bitfield is for a different number of pieces than the file has.
    #[error("a bitfield of {actual} pieces does not fit a file of {expected} pieces")]
    BitfieldLength {
        /// The file's piece count.
        expected: u32,
        /// The bitfield's piece count.
        actual: u32,
    },
    /// A configuration limit is zero, which would stall the download.
    #[error("the scheduler setting `{0}` must be at least 1")]
    ZeroLimit(&'static str),
    /// The peer key is already in use.
    #[error("{0} is already added")]
    PeerAlreadyAdded(PeerKey),
    /// The peer was banned from this download.
    #[error("{0} is banned from this download")]
    PeerBanned(PeerKey),
    /// A hash result arrived for a piece whose blocks are not all received.
    #[error("piece {0} is not awaiting a hash check")]
    PieceNotAwaitingHash(u32),
}
