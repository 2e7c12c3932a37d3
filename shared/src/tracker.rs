//! Tracker messages, peer ⇄ tracker and tracker ⇄ tracker, and their codec.
//!
//! Tracker messages are JSON objects in WebSocket text messages, each with a `"type"` field
//! naming the message. Info hashes and peer ids are 40 hex characters. Everything a tracker
//! receives, from a peer or from its twin, is a [`ToTracker`]; everything it sends to a peer is a
//! [`FromTracker`]. Decoding checks the size limit ([`MAX_TRACKER_MESSAGE_BYTES`]) before it
//! parses anything.
//!
//! A peer's conversation with a tracker:
//!
//! - [`Announce`] with event `started` when it joins a swarm (carrying the `.mtorrent` when it
//!   shares a new file, so the tracker can list it), `update` every `interval_secs`, `completed`
//!   when it finishes, `stopped` when it leaves; each is answered with [`FromTracker::Peers`].
//! - [`ToTracker::Signal`]: a native peer asks that a browser peer dial it back (browsers cannot
//!   accept connections); the browser gets [`FromTracker::Signal`], from this tracker or through
//!   its twin ([`ToTracker::SyncSignal`]).
//! - [`ToTracker::ListFiles`] and [`ToTracker::GetMetainfo`]: the files the tracker knows.
//!
//! Twins exchange `sync_*` messages. On every (re)connection each proves it holds the shared
//! twin secret without sending it: the dialling tracker's `sync_hello` carries a nonce, the
//! answering tracker's `sync_challenge` its own nonce and an HMAC over both, and the dialler's
//! `sync_proof` an HMAC over both under another label; `sync_welcome` says the link is up.
//! Each side then streams its whole state in bounded pieces (`sync_peers` and `sync_file`
//! messages closed by `sync_state_end`), then each change as it happens.

use serde::{Deserialize, Serialize};

use crate::ids::{InfoHash, PeerId};

/// The largest tracker message: room for an announce carrying the `.mtorrent` of a file of about
/// 200 GiB, or a full-state sync of a large registry.
pub const MAX_TRACKER_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Most files in one page of `list_files`.
pub const MAX_LIST_PAGE: u32 = 1_000;

/// Most peers in one `sync_peers` message (a few hundred KiB of JSON).
pub const SYNC_PEERS_PER_MESSAGE: usize = 1_000;

/// Hex digits in a twin nonce (32 random bytes).
pub const TWIN_NONCE_HEX: usize = 64;

/// The default number of peers asked for in an announce.
pub const DEFAULT_NUMWANT: u32 = 50;

/// What an announce says about the peer's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnnounceEvent {
    /// The peer joins the swarm.
    Started,
    /// The peer has just finished downloading: it is now a seeder.
    Completed,
    /// The peer leaves the swarm.
    Stopped,
    /// A periodic re-announce.
    Update,
}

/// How to reach a peer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PeerAddress {
    /// A native peer listening for WebSocket connections at `url` (`ws://host:port/...`).
    Native {
        /// The peer's WebSocket URL.
        url: String,
    },
    /// A browser peer: it cannot be dialled, only asked through its tracker to dial back.
    Browser,
    /// A native peer accepting peers on `port` of the address its announce comes from. Only
    /// in announces: the tracker fills in the host from the connection's source address (as
    /// BitTorrent trackers do), so a peer need not know its public address, and a peer behind
    /// a NAT is announced with the NAT's; everyone else sees a [`PeerAddress::Native`] URL.
    Listening {
        /// The port it accepts peers on.
        port: u16,
        /// Whether it accepts `wss://` (TLS) rather than `ws://`.
        #[serde(default)]
        tls: bool,
    },
}

impl PeerAddress {
    /// Whether the address is usable: a browser, or a `ws://`/`wss://` URL with a host and no
    /// whitespace, at most 2048 bytes long.
    pub fn is_valid(&self) -> bool {
        match self {
            PeerAddress::Browser => true,
            PeerAddress::Native { url } => is_ws_url(url),
            PeerAddress::Listening { port, .. } => *port != 0,
        }
    }

    /// The address as others must see it: a [`PeerAddress::Listening`] port on `source`, the
    /// address its announce came from, becomes that host's URL; the others stay as they are.
    pub fn resolve(self, source: std::net::IpAddr) -> PeerAddress {
        match self {
            PeerAddress::Listening { port, tls } => PeerAddress::Native {
                url: format!(
                    "{}://{}/",
                    if tls { "wss" } else { "ws" },
                    std::net::SocketAddr::new(source, port)
                ),
            },
            other => other,
        }
    }
}

/// Whether `url` looks like a dialable WebSocket URL.
pub fn is_ws_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))
    else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    url.len() <= 2048
        && !host.is_empty()
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// An announce: a peer's state in one swarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announce {
    /// The file.
    pub info_hash: InfoHash,
    /// The announcing peer; bound to the connection that first used it.
    pub peer_id: PeerId,
    /// What happened.
    pub event: AnnounceEvent,
    /// How other peers reach this one.
    pub address: PeerAddress,
    /// Bytes the peer still lacks; 0 for a seeder.
    pub left: u64,
    /// How many peers it wants in the answer.
    #[serde(default = "default_numwant")]
    pub numwant: u32,
    /// The `.mtorrent` document, to register the file in the tracker's catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metainfo: Option<String>,
}

fn default_numwant() -> u32 {
    DEFAULT_NUMWANT
}

/// A peer in a swarm, as trackers tell peers and each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The peer's id.
    pub peer_id: PeerId,
    /// How to reach it.
    pub address: PeerAddress,
    /// Whether it has the whole file.
    pub complete: bool,
}

/// A file in the tracker's catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// The file's identity.
    pub info_hash: InfoHash,
    /// Its name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Peers with the whole file.
    pub seeders: u32,
    /// Peers still downloading it.
    pub leechers: u32,
}

/// One peer of one swarm in a twin's registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncPeer {
    /// The swarm.
    pub info_hash: InfoHash,
    /// The peer.
    #[serde(flatten)]
    pub peer: PeerInfo,
}

/// Everything a tracker receives: requests from peers, and sync messages from its twin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToTracker {
    /// Join, update, complete or leave a swarm.
    Announce(Announce),
    /// Leave a swarm (the same as an announce with event `stopped`).
    Leave {
        /// The swarm.
        info_hash: InfoHash,
        /// The leaving peer.
        peer_id: PeerId,
    },
    /// Ask that browser peer `to` dial `dial` for `info_hash`.
    Signal {
        /// The swarm.
        info_hash: InfoHash,
        /// The asking peer.
        from: PeerId,
        /// The browser peer to signal.
        to: PeerId,
        /// The URL it should dial. Trackers send the browser the asking peer's own announced
        /// address instead, so this is only a hint.
        dial: String,
    },
    /// List the files in the catalog, a page at a time, in info hash order.
    ListFiles {
        /// Start after this info hash (the previous page's `next`); from the first without.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<InfoHash>,
        /// Most files wanted in the page; the tracker caps it at [`MAX_LIST_PAGE`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Fetch one file's `.mtorrent`.
    GetMetainfo {
        /// The file.
        info_hash: InfoHash,
    },
    /// Twin: the first message on a link, from the dialling tracker.
    SyncHello {
        /// A random id the tracker chose when it started.
        tracker_id: String,
        /// A fresh random nonce, [`TWIN_NONCE_HEX`] hex digits.
        nonce: String,
    },
    /// Twin: the answering tracker's reply to `sync_hello`, proving it holds the twin secret.
    SyncChallenge {
        /// The answering tracker's id.
        tracker_id: String,
        /// Its own fresh nonce, [`TWIN_NONCE_HEX`] hex digits.
        nonce: String,
        /// HMAC-SHA256, under the twin secret, over both nonces as the answering side (hex).
        proof: String,
    },
    /// Twin: the dialling tracker's proof that it holds the twin secret.
    SyncProof {
        /// HMAC-SHA256, under the twin secret, over both nonces as the dialling side (hex).
        proof: String,
    },
    /// Twin: the answer to an accepted `sync_proof`. Until it comes, the dialling tracker does
    /// not count its link as up, nor send anything over it.
    SyncWelcome {
        /// The accepting tracker's id.
        tracker_id: String,
    },
    /// Twin: part of the sender's registry, in a state sent on every (re)connection; the
    /// state ends with `sync_state_end`.
    SyncPeers {
        /// At most [`SYNC_PEERS_PER_MESSAGE`] live peers.
        peers: Vec<SyncPeer>,
    },
    /// Twin: the state is complete: the peers of every `sync_peers` since the link came up
    /// replace what the receiver had from the sender.
    SyncStateEnd,
    /// Twin: a peer joined or changed.
    SyncPeer(SyncPeer),
    /// Twin: a peer left a swarm.
    SyncPeerRemoved {
        /// The swarm.
        info_hash: InfoHash,
        /// The peer.
        peer_id: PeerId,
    },
    /// Twin: a file was added to the catalog.
    SyncFile {
        /// Its `.mtorrent`.
        metainfo: String,
    },
    /// Twin: deliver a signal to a browser peer connected to you.
    SyncSignal {
        /// The swarm.
        info_hash: InfoHash,
        /// The asking peer.
        from: PeerId,
        /// The browser peer.
        to: PeerId,
        /// The URL it should dial.
        dial: String,
    },
}

/// Why a tracker refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The message could not be decoded.
    Malformed,
    /// The message is over the size limit.
    TooLarge,
    /// Too many messages too fast.
    RateLimited,
    /// The peer id belongs to another connection.
    PeerIdTaken,
    /// This connection announces in too many swarms.
    TooManySwarms,
    /// The tracker has too many connections.
    TooManyConnections,
    /// The file is not in the catalog.
    UnknownFile,
    /// The signalled peer is not connected.
    UnknownPeer,
    /// The `.mtorrent` carried by an announce is invalid or is not for that info hash.
    BadMetainfo,
    /// The peer address is not usable.
    BadAddress,
}

/// Everything a tracker sends to a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromTracker {
    /// The answer to an announce.
    Peers {
        /// The swarm.
        info_hash: InfoHash,
        /// Seconds until the next announce is due.
        interval_secs: u32,
        /// A random sample of the swarm, never the asker.
        peers: Vec<PeerInfo>,
        /// Peers with the whole file.
        seeders: u32,
        /// Peers still downloading.
        leechers: u32,
    },
    /// To a browser peer: dial `dial` for `info_hash`, because `from` wants pieces.
    Signal {
        /// The swarm.
        info_hash: InfoHash,
        /// The peer that asked.
        from: PeerId,
        /// The URL to dial.
        dial: String,
    },
    /// A page of the catalog.
    Files {
        /// Files in info hash order.
        files: Vec<FileInfo>,
        /// Where the next page starts (`after` in the next `list_files`); none after the last.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<InfoHash>,
    },
    /// One file's `.mtorrent`.
    Metainfo {
        /// The file.
        info_hash: InfoHash,
        /// The document.
        metainfo: String,
    },
    /// A refused request.
    Error {
        /// What kind of refusal.
        code: ErrorCode,
        /// For people.
        message: String,
    },
}

/// Why text is not a tracker message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackerCodecError {
    /// The text is over [`MAX_TRACKER_MESSAGE_BYTES`].
    #[error("message of {size} bytes exceeds the limit of {MAX_TRACKER_MESSAGE_BYTES}")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// The text is not one of the messages.
    #[error("malformed message: {0}")]
    Malformed(String),
}

impl ToTracker {
    /// Decodes a message received by a tracker.
    pub fn decode(text: &str) -> Result<Self, TrackerCodecError> {
        decode(text)
    }

    /// Encodes the message as JSON text.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("plain data serialises")
    }
}

impl FromTracker {
    /// Decodes a message received from a tracker.
    pub fn decode(text: &str) -> Result<Self, TrackerCodecError> {
        decode(text)
    }

    /// Encodes the message as JSON text.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("plain data serialises")
    }

    /// An error reply.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        FromTracker::Error {
            code,
            message: message.into(),
        }
    }
}

fn decode<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, TrackerCodecError> {
    if text.len() > MAX_TRACKER_MESSAGE_BYTES {
        return Err(TrackerCodecError::TooLarge { size: text.len() });
    }
    serde_json::from_str(text).map_err(|e| TrackerCodecError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests;
