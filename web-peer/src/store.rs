//! Where a file's bytes live, as the page provides them: a user's `File` to seed, or a file in
//! the Origin Private File System being downloaded. JavaScript implements the interface, so
//! the peer never holds a whole file in memory.

use js_sys::{Promise, Uint8Array};
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
  /** Optional, preferred: writes `data` at `offset` before returning (and keeps no reference to
   * it: it is a view into WebAssembly memory). */
  writeNow?(offset: number, data: Uint8Array): void;
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

    #[wasm_bindgen(method, getter, js_name = writeNow)]
    fn write_now_js(this: &PieceStore) -> JsValue;
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
        if let Some(write_now) = self.write_now_js().dyn_ref::<js_sys::Function>() {
            // A synchronous writer may read the bytes in place, in WebAssembly's memory: the
            // view is used up before anything here can move or free them.
            let memory = wasm_bindgen::memory().unchecked_into::<js_sys::WebAssembly::Memory>();
            let view = Uint8Array::new_with_byte_offset_and_length(
                &memory.buffer(),
                data.as_ptr() as u32,
                data.len() as u32,
            );
            write_now
                .call2(self, &JsValue::from_f64(offset as f64), &view)
                .map_err(describe)?;
            return Ok(());
        }
        let array = Uint8Array::new_with_length(data.len() as u32);
        array.copy_from(data);
        let promise = self.write_js(offset as f64, array).map_err(describe)?;
        JsFuture::from(promise).await.map_err(describe)?;
        Ok(())
    }
}

/// A JavaScript error as text.
pub fn describe(value: JsValue) -> String {
    if let Some(error) = value.dyn_ref::<js_sys::Error>() {
        return String::from(error.message());
    }
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}
