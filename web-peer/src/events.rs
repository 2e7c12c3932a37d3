//! What the peer tells the page: progress, peers, errors, each as one JSON object handed to a
//! JavaScript callback.

use serde::Serialize;
use wasm_bindgen::JsValue;

/// Something the page may want to show.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PeerEvent {
    /// A file's progress changed.
    Progress {
        /// The file.
        info_hash: String,
        /// Verified pieces.
        pieces: u32,
        /// All its pieces.
        piece_count: u32,
        /// Verified bytes.
        bytes: u64,
        /// Connected peers.
        peers: usize,
        /// Bytes uploaded to peers.
        uploaded: u64,
        /// Pieces that failed their hash (and were fetched again).
        failed_pieces: u64,
    },
    /// What the tracker says about a swarm.
    Swarm {
        /// The file.
        info_hash: String,
        /// Peers with the whole file.
        seeders: u32,
        /// Peers still downloading.
        leechers: u32,
    },
    /// The tracker in use changed (tracker 1 failed, or came back).
    Tracker {
        /// The tracker now in use.
        url: String,
    },
    /// Peers the tracker named that this page cannot open a connection to, skipped: a page
    /// loaded over https cannot open `ws://` connections.
    Unreachable {
        /// The file.
        info_hash: String,
        /// How many peers of the tracker's latest reply were skipped.
        skipped: usize,
        /// How many of its peers remain that the page can reach.
        reachable: usize,
        /// Why, for people.
        reason: String,
    },
    /// Something went wrong that the user should know about; the peer goes on if it can.
    Warning {
        /// The file, if it is about one.
        info_hash: Option<String>,
        /// For people.
        message: String,
    },
}

/// The page's callback.
#[derive(Debug, Clone)]
pub struct EventSink {
    callback: js_sys::Function,
}

impl EventSink {
    /// Events go to `callback`, called with one object argument.
    pub fn new(callback: js_sys::Function) -> Self {
        Self { callback }
    }

    /// Hands one event to the page.
    pub fn emit(&self, event: &PeerEvent) {
        let json = serde_json::to_string(event).expect("events serialize");
        let value = js_sys::JSON::parse(&json).unwrap_or_else(|_| JsValue::from_str(&json));
        // An exception in the page's callback is the page's business.
        let _ = self.callback.call1(&JsValue::NULL, &value);
    }
}
