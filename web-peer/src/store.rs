//! Where a file's bytes live, as the page provides them: a user's `File` to seed, or a file in
//! the Origin Private File System being downloaded. JavaScript implements the interface, so
//! the peer never holds a whole file in memory.

use js_sys::{Promise, Uint8Array};
use mtorrent_shared::PieceHash;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen(typescript_custom_section)]
const PIECE_STORE: &str = r#"
/** A file's bytes, read and written at byte offsets. */
export interface PieceStore {
  /** Reads `length` bytes at `offset`. */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Writes `data` at `offset`. Writes complete in the order they are made. */
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Optional, preferred for downloads: checks that the SHA-1 of a piece is `sha1` (20
   * bytes) and only then writes it at `offset`; resolves to whether it matched. The piece is
   * `blocks`, its bytes in order: views into the buffers the blocks arrived in, which are the
   * store's from now on (to transfer to a worker that checks and writes, say). */
  writeIfHashIs?(offset: number, blocks: Uint8Array[], sha1: Uint8Array): Promise<boolean>;
}
"#;

#[wasm_bindgen]
extern "C" {
    /// A file's bytes, implemented by the page (see the `PieceStore` TypeScript interface).
    #[wasm_bindgen(typescript_type = "PieceStore")]
    pub type PieceStore;

    #[wasm_bindgen(method, catch, js_name = read)]
    fn read_js(this: &PieceStore, offset: f64, length: u32) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, catch, js_name = write)]
    fn write_js(this: &PieceStore, offset: f64, data: Uint8Array) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, getter, js_name = writeIfHashIs)]
    fn write_if_hash_is_js(this: &PieceStore) -> JsValue;
}

impl PieceStore {
    /// Reads `length` bytes at `offset`.
    pub async fn read(&self, offset: u64, length: u32) -> Result<Vec<u8>, String> {
        let promise = self.read_js(offset as f64, length).map_err(describe)?;
        let value = JsFuture::from(promise).await.map_err(describe)?;
        let bytes = Uint8Array::new(&value);
        if bytes.length() != length {
            return Err(format!(
                "the file gave {} bytes where {length} were asked for",
                bytes.length()
            ));
        }
        Ok(bytes.to_vec())
    }

    /// Writes `data` at `offset`.
    pub async fn write(&self, offset: u64, data: &[u8]) -> Result<(), String> {
        let promise = self
            .write_js(offset as f64, Uint8Array::from(data))
            .map_err(describe)?;
        JsFuture::from(promise).await.map_err(describe)?;
        Ok(())
    }

    /// Whether the page checks pieces itself before writing them (`writeIfHashIs`).
    pub fn checks_pieces(&self) -> bool {
        self.write_if_hash_is_js().is_function()
    }

    /// Has the page check that the SHA-1 of the piece made of `blocks` (in order, the page's
    /// from now on) is `hash` and, only then, write it at `offset`; whether it matched. Needs
    /// [`Self::checks_pieces`].
    pub async fn write_if_hash_is(
        &self,
        offset: u64,
        blocks: js_sys::Array,
        hash: &PieceHash,
    ) -> Result<bool, String> {
        let function: js_sys::Function = self.write_if_hash_is_js().unchecked_into();
        let promise = function
            .call3(
                self,
                &JsValue::from_f64(offset as f64),
                &blocks,
                &Uint8Array::from(&hash.0[..]),
            )
            .map_err(describe)?;
        let matched = JsFuture::from(promise.unchecked_into::<Promise>())
            .await
            .map_err(describe)?;
        matched
            .as_bool()
            .ok_or_else(|| "the store did not say whether the piece matched".to_owned())
    }
}

/// A JavaScript error as text.
pub fn describe(value: JsValue) -> String {
    if let Some(error) = value.dyn_ref::<js_sys::Error>() {
        return String::from(error.message());
    }
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}
