//! The mtorrent browser peer.
//!
//! A thin driver around `mtorrent-shared`, exported to JavaScript with wasm-bindgen. The page
//! streams a user's `File` through [`FileHasher`] in `Blob.slice` chunks, so the browser builds
//! exactly the `.mtorrent` the native peer would build for the same bytes, and reads `.mtorrent`
//! files with [`MtorrentSummary::parse`], which applies the same validation as every other peer.
//! [`BrowserPeer`] downloads from native peers and seeds to them (they ask for it through the
//! tracker's signal, and the browser dials them back), over the same wire protocol and with the
//! same piece scheduler as the native peer.
#![warn(missing_docs)]

mod clock;
mod connection;
mod digest;
mod events;
mod origin;
mod piece_buffer;
mod socket;
mod store;
mod swarm;
mod tracker;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use futures::channel::mpsc;
use mtorrent_shared::{InfoHash, Metainfo, PeerId, PieceHasher};
use wasm_bindgen::prelude::*;

pub use digest::pieces_match;
pub use events::PeerEvent;
pub use store::PieceStore;
use swarm::Swarm;

/// Hashes a file streamed in chunks of any size and builds its `.mtorrent`.
#[wasm_bindgen]
#[derive(Debug, Default)]
pub struct FileHasher {
    inner: PieceHasher,
}

#[wasm_bindgen]
impl FileHasher {
    /// A hasher that has seen no bytes yet.
    #[wasm_bindgen(constructor)]
    pub fn new() -> FileHasher {
        FileHasher::default()
    }

    /// Feeds the next chunk of the file.
    pub fn update(&mut self, chunk: &[u8]) {
        self.inner.update(chunk);
    }

    /// How many bytes have been fed so far (for a progress bar).
    #[wasm_bindgen(getter, js_name = bytesHashed)]
    pub fn bytes_hashed(&self) -> f64 {
        self.inner.bytes_hashed() as f64
    }

    /// Ends the bytes fed and returns their pieces' SHA-1 hashes, 20 bytes each, concatenated:
    /// for a part of a file that starts at a piece boundary (and ends at one, unless it is the
    /// file's end), hashed apart from the rest, as [`build_mtorrent`] takes them.
    #[wasm_bindgen(js_name = finishHashes)]
    pub fn finish_hashes(self) -> Vec<u8> {
        self.inner
            .finish()
            .hashes
            .iter()
            .flat_map(|hash| hash.0)
            .collect()
    }

    /// Ends the file and returns the `.mtorrent` document, or an error naming the broken rule
    /// (a bad name or tracker URL, a file too large).
    pub fn finish(
        self,
        name: String,
        tracker1: String,
        tracker2: String,
    ) -> Result<String, JsError> {
        build_metainfo(self.inner, name, [tracker1, tracker2])
            .map(|meta| meta.to_json())
            .map_err(|e| JsError::new(&e.to_string()))
    }
}

fn build_metainfo(
    hasher: PieceHasher,
    name: String,
    trackers: [String; 2],
) -> Result<Metainfo, mtorrent_shared::MetainfoError> {
    let hashes = hasher.finish();
    Metainfo::new(trackers, name, hashes.size, hashes.hashes)
}

/// The size of every piece but a file's last, in bytes: where the page cuts a file it hashes.
#[wasm_bindgen(js_name = pieceSize)]
pub fn piece_size() -> u32 {
    mtorrent_shared::PIECE_SIZE
}

/// Builds the `.mtorrent` of a file of `size` bytes from its piece hashes (20 bytes each,
/// concatenated), computed by the page with the browser's own SHA-1 (WebCrypto); the same
/// document [`FileHasher`] builds. The error names the broken rule.
#[wasm_bindgen(js_name = buildMtorrent)]
pub fn build_mtorrent(
    name: String,
    size: f64,
    piece_hashes: &[u8],
    tracker1: String,
    tracker2: String,
) -> Result<String, JsError> {
    if !piece_hashes.len().is_multiple_of(20)
        || !(0.0..=9.007e15).contains(&size)
        || size.fract() != 0.0
    {
        return Err(JsError::new(
            "piece hashes are 20 bytes each, and a size a whole number",
        ));
    }
    let hashes = piece_hashes
        .chunks_exact(20)
        .map(|hash| mtorrent_shared::PieceHash(hash.try_into().expect("20 bytes")))
        .collect();
    Metainfo::new([tracker1, tracker2], name, size as u64, hashes)
        .map(|meta| meta.to_json())
        .map_err(|e| JsError::new(&e.to_string()))
}

/// The fields of a validated `.mtorrent`, for display.
#[wasm_bindgen]
#[derive(Debug)]
pub struct MtorrentSummary {
    inner: Metainfo,
}

#[wasm_bindgen]
impl MtorrentSummary {
    /// Parses and validates a `.mtorrent` document; the error says which rule it breaks.
    pub fn parse(document: &[u8]) -> Result<MtorrentSummary, JsError> {
        parse(document).map(|inner| MtorrentSummary { inner })
    }

    /// The file name.
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.inner.name().to_owned()
    }

    /// The file size in bytes.
    #[wasm_bindgen(getter)]
    pub fn size(&self) -> f64 {
        self.inner.size() as f64
    }

    /// The number of pieces.
    #[wasm_bindgen(getter, js_name = pieceCount)]
    pub fn piece_count(&self) -> u32 {
        self.inner.lengths().piece_count()
    }

    /// The info hash as 40 hex characters.
    #[wasm_bindgen(getter, js_name = infoHash)]
    pub fn info_hash(&self) -> String {
        self.inner.info_hash().to_hex()
    }

    /// The two tracker URLs, tracker 1 first.
    #[wasm_bindgen(getter)]
    pub fn trackers(&self) -> Vec<String> {
        self.inner.trackers().to_vec()
    }
}

/// The browser's peer: one node with one peer id, which downloads and seeds any number of
/// files at once and announces them all over one connection per tracker.
#[wasm_bindgen]
pub struct BrowserPeer {
    peer_id: PeerId,
    events: events::EventSink,
    swarms: RefCell<HashMap<InfoHash, Rc<Swarm>>>,
    /// The tracker client of each pair of trackers the page's files name.
    trackers: RefCell<HashMap<[String; 2], mpsc::UnboundedSender<tracker::SwarmChange>>>,
}

#[wasm_bindgen]
impl BrowserPeer {
    /// A peer with a fresh random id; `on_event` is called with every event (an object with a
    /// `type`: `progress`, `swarm`, `tracker`, `unreachable` or `warning`).
    #[wasm_bindgen(constructor)]
    pub fn new(on_event: js_sys::Function) -> BrowserPeer {
        // A panic is a bug: say so on the console rather than failing silently.
        std::panic::set_hook(Box::new(|info| {
            web_sys::console::error_1(&format!("mtorrent peer: {info}").into());
        }));
        BrowserPeer {
            peer_id: new_peer_id(),
            events: events::EventSink::new(on_event),
            swarms: RefCell::new(HashMap::new()),
            trackers: RefCell::new(HashMap::new()),
        }
    }

    /// Seeds the file whose `.mtorrent` is `metainfo` (which the page built by hashing it) from
    /// `store`: registers it with the trackers and serves every native peer that asks for it.
    /// Returns the info hash.
    pub fn seed(&self, metainfo: &str, store: PieceStore) -> Result<String, JsError> {
        let metainfo = parse(metainfo.as_bytes())?;
        let info_hash = metainfo.info_hash();
        let register = Some(metainfo.to_json());
        let swarm = Swarm::seeding(metainfo, self.peer_id, store, self.events.clone());
        self.replace(info_hash, swarm.clone());
        self.announce(swarm.clone(), register);
        swarm.publish();
        Ok(info_hash.to_hex())
    }

    /// Downloads the file whose `.mtorrent` is `metainfo` into `store`, from several native
    /// peers at once, verifying every piece. Resolves once every piece is verified and
    /// written; rejects with a message for people if the download stops.
    pub fn download(&self, metainfo: &[u8], store: PieceStore) -> Result<js_sys::Promise, JsError> {
        let metainfo = parse(metainfo)?;
        let info_hash = metainfo.info_hash();
        let (finished, done) = futures::channel::oneshot::channel();
        let swarm =
            Swarm::downloading(metainfo, self.peer_id, store, self.events.clone(), finished);
        self.replace(info_hash, swarm.clone());
        self.announce(swarm.clone(), None);
        swarm.publish();
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            match done.await {
                Ok(Ok(())) => Ok(JsValue::from_str(&info_hash.to_hex())),
                Ok(Err(message)) => Err(js_sys::Error::new(&message).into()),
                Err(_) => Err(js_sys::Error::new("the download was stopped").into()),
            }
        }))
    }

    /// Stops downloading or seeding a file (by info hash): its connections close and it
    /// leaves the swarm.
    pub fn stop(&self, info_hash: &str) {
        if let Ok(info_hash) = InfoHash::from_hex(info_hash) {
            if let Some(swarm) = self.swarms.borrow_mut().remove(&info_hash) {
                swarm.stop();
            }
        }
    }

    /// Announces `swarm` over the page's connection to its trackers, started on first use.
    fn announce(&self, swarm: Rc<Swarm>, register: Option<String>) {
        let trackers = swarm.metainfo.trackers().clone();
        let mut clients = self.trackers.borrow_mut();
        let client = clients
            .entry(trackers.clone())
            .or_insert_with(|| tracker::spawn(self.peer_id, trackers, self.events.clone()));
        let _ = client.unbounded_send(tracker::SwarmChange::Join(swarm, register));
    }

    fn replace(&self, info_hash: InfoHash, swarm: Rc<Swarm>) {
        if let Some(old) = self.swarms.borrow_mut().insert(info_hash, swarm) {
            old.stop();
        }
    }
}

impl std::fmt::Debug for BrowserPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserPeer")
            .field("swarms", &self.swarms.borrow().len())
            .finish()
    }
}

/// A fresh random peer id.
fn new_peer_id() -> PeerId {
    let mut id = [0u8; 20];
    id[..8].copy_from_slice(b"-MB0100-");
    for byte in &mut id[8..] {
        *byte = (js_sys::Math::random() * 256.0) as u8;
    }
    PeerId(id)
}

fn parse(document: &[u8]) -> Result<Metainfo, JsError> {
    Metainfo::from_json(document)
        .map_err(|e| JsError::new(&format!("this is not a valid .mtorrent: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hasher_matches_shared_for_any_chunking() {
        let data: Vec<u8> = (0..1_200_000u32).map(|i| (i % 253) as u8).collect();
        let trackers = ["ws://a:1/ws".to_owned(), "ws://b:2/ws".to_owned()];
        let mut whole = PieceHasher::new();
        whole.update(&data);
        let expected = build_metainfo(whole, "f.bin".into(), trackers.clone()).unwrap();

        let mut chunked = FileHasher::new();
        for chunk in data.chunks(65_537) {
            chunked.update(chunk);
        }
        assert_eq!(chunked.bytes_hashed(), data.len() as f64);
        let built = build_metainfo(chunked.inner, "f.bin".into(), trackers).unwrap();
        assert_eq!(built, expected);
        assert_eq!(built.lengths().piece_count(), 3);
    }
}
