//! The mtorrent protocol core.
//!
//! Everything the tracker, the native peer and the browser peer must agree on lives here, as pure
//! logic with no sockets, no filesystem, no clock and no async runtime, so that it builds natively
//! and for `wasm32-unknown-unknown` alike:
//!
//! - [`Metainfo`]: the `.mtorrent` file, built with a streaming [`PieceHasher`], written as JSON,
//!   parsed with validation ([`MetainfoError`]), and identified by its [`InfoHash`];
//! - [`Lengths`]: piece and block arithmetic for 512 KiB pieces;
//! - [`Bitfield`]: which pieces a peer has;
//! - [`wire`]: the binary peer-wire messages and their codec;
//! - [`tracker`]: the tracker messages (peer ⇄ tracker and tracker ⇄ tracker) and their codec;
//! - [`Announcer`]: a peer's tracker client, with failover from tracker 1 to tracker 2;
//! - [`PeerSession`]: one peer-wire connection's protocol state;
//! - [`Scheduler`]: the sans-IO download scheduler that decides which block to request from
//!   which peer;
//! - [`Swarm`]: one file's swarm, the scheduler and every peer's session in one state machine
//!   that both peers drive.
//!
//! Drivers (the tracker server, the native peer, the web peer) feed bytes, events and the current
//! time into these types and carry their outputs to the network or the disk.
#![warn(missing_docs)]

mod announcer;
mod bitfield;
mod ids;
mod metainfo;
mod piece;
mod scheduler;
mod session;
pub mod sha1_x4;
mod swarm;
pub mod tracker;
pub mod wire;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use announcer::{Action, Announcer, AnnouncerConfig, AnnouncerEvent};
pub use bitfield::{Bitfield, BitfieldError};
pub use ids::{IdParseError, InfoHash, PeerId, PieceHash};
pub use metainfo::{
    Metainfo, MetainfoError, PieceHasher, PieceHashes, MAX_FILE_SIZE, MAX_METAINFO_BYTES,
    MAX_NAME_BYTES,
};
pub use piece::{BlockRef, Lengths, ValidPieceIndex, BLOCK_SIZE, PIECE_SIZE};
pub use scheduler::{
    BlockOutcome, Event, PeerKey, PieceState, Scheduler, SchedulerConfig, SchedulerError,
};
pub use session::{PeerSession, SessionConfig, SessionError, SessionEvent};
pub use swarm::{CloseReason, Swarm, SwarmConfig, SwarmEvent, SwarmStats};
