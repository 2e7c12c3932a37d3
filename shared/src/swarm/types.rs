//! The swarm core's settings, outputs and statistics.

use bytes::Bytes;

use crate::{BlockRef, PeerKey, SchedulerConfig, SessionConfig, ValidPieceIndex};

/// Settings of a [`Swarm`](super::Swarm).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmConfig {
    /// Whether missing pieces are downloaded. A driver that cannot write the file (a file
    /// served as it is) says no: then nothing is ever requested.
    pub downloading: bool,
    /// Whether pieces are offered to peers before the file is complete: sent in our bitfield,
    /// announced with a Have once verified, and served on request. A driver that cannot read
    /// its pieces back before the download is complete (a browser writing to its private file
    /// system) says no: then the swarm offers nothing, rejects every request and keeps every
    /// peer choked until it has every piece, and offers everything to the connections added
    /// from then on.
    pub offer_incomplete: bool,
    /// At most this many completed pieces may await [`Swarm::handle_piece_verified`]; beyond,
    /// no more blocks are requested until the driver catches up, so a slow disk never makes it
    /// hold the whole file in memory.
    ///
    /// [`Swarm::handle_piece_verified`]: super::Swarm::handle_piece_verified
    pub max_pieces_verifying: u32,
    /// The download scheduler's settings.
    pub scheduler: SchedulerConfig,
    /// Every peer session's settings.
    pub session: SessionConfig,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        Self {
            downloading: true,
            offer_incomplete: true,
            max_pieces_verifying: 16,
            scheduler: SchedulerConfig::default(),
            session: SessionConfig::default(),
        }
    }
}

/// Why the swarm closed a connection, in [`SwarmEvent::Close`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer contributed to too many pieces that failed their hash check; do not connect to
    /// it again for this file.
    Banned,
    /// We are already connected to this peer (same peer id) through another connection.
    Duplicate,
    /// The peer was silent for the idle timeout.
    TimedOut,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Banned => "the peer sent bad data too often",
            Self::Duplicate => "already connected to this peer",
            Self::TimedOut => "the peer was silent for too long",
        })
    }
}

/// Storage work and connection changes for the driver, from [`Swarm::poll_event`].
///
/// [`Swarm::poll_event`]: super::Swarm::poll_event
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwarmEvent {
    /// The peer asked for a block we have: read it, then call [`Swarm::send_block`] (or
    /// [`Swarm::reject_block`] if it cannot be read).
    ///
    /// [`Swarm::send_block`]: super::Swarm::send_block
    /// [`Swarm::reject_block`]: super::Swarm::reject_block
    ReadBlock {
        /// The peer that asked.
        peer: PeerKey,
        /// The block.
        block: BlockRef,
    },
    /// A block we asked for arrived and is to be kept: write it before acting on any later
    /// event (a [`SwarmEvent::VerifyPiece`] of its piece reads it back).
    WriteBlock {
        /// The peer that sent it.
        peer: PeerKey,
        /// The block.
        block: BlockRef,
        /// Its bytes, exactly `block.length` of them.
        data: Bytes,
    },
    /// Every block of the piece is written: check its hash, then call
    /// [`Swarm::handle_piece_verified`].
    ///
    /// [`Swarm::handle_piece_verified`]: super::Swarm::handle_piece_verified
    VerifyPiece(ValidPieceIndex),
    /// Close the connection. The swarm has already stopped using the peer; the driver closes
    /// the transport and then calls [`Swarm::handle_peer_closed`].
    ///
    /// [`Swarm::handle_peer_closed`]: super::Swarm::handle_peer_closed
    Close {
        /// The peer to disconnect.
        peer: PeerKey,
        /// Why.
        reason: CloseReason,
    },
}

/// The swarm's counters, from [`Swarm::stats`](super::Swarm::stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SwarmStats {
    /// Verified pieces.
    pub pieces: u32,
    /// Bytes in the verified pieces.
    pub bytes: u64,
    /// Pieces downloaded and verified by this swarm (not those it started with).
    pub fetched_pieces: u32,
    /// Downloaded pieces that failed their hash check.
    pub failed_pieces: u64,
    /// Blocks received that were already there (endgame duplicates).
    pub duplicate_blocks: u64,
    /// Bytes of piece data handed to the driver for sending.
    pub uploaded: u64,
    /// Connected peers whose handshake and bitfield arrived.
    pub peers: usize,
}
