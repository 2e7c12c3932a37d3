//! The mtorrent browser peer.
//!
//! A thin driver around `mtorrent-shared`, exported to JavaScript with wasm-bindgen. The page
//! streams a user's `File` through [`FileHasher`] in `Blob.slice` chunks, so the browser builds
//! exactly the `.mtorrent` the native peer would build for the same bytes, and reads `.mtorrent`
//! files with [`MtorrentSummary::parse`], which applies the same validation as every other peer.
#![warn(missing_docs)]

use mtorrent_shared::{Metainfo, PieceHasher};
use wasm_bindgen::prelude::*;

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
        Metainfo::from_json(document)
            .map(|inner| MtorrentSummary { inner })
            .map_err(|e| JsError::new(&format!("this is not a valid .mtorrent: {e}")))
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
