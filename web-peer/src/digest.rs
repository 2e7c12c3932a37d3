//! SHA-1 of a piece: the browser's own (WebCrypto, native code, run off the main thread) when
//! the page has it, which is much faster than SHA-1 in WebAssembly; `shared`'s otherwise.

use mtorrent_shared::PieceHash;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// The SHA-1 of `data` (which WebCrypto copies before this returns).
pub async fn sha1(data: &mut [u8]) -> PieceHash {
    match web_crypto(data) {
        Some(pending) => match pending.await {
            Ok(value) => {
                if let Some(buffer) = value.dyn_ref::<js_sys::ArrayBuffer>() {
                    let bytes = js_sys::Uint8Array::new(buffer).to_vec();
                    if let Ok(hash) = <[u8; 20]>::try_from(bytes.as_slice()) {
                        return PieceHash(hash);
                    }
                }
                PieceHash::of(data)
            }
            Err(_) => PieceHash::of(data),
        },
        None => PieceHash::of(data),
    }
}

fn web_crypto(data: &mut [u8]) -> Option<JsFuture> {
    let subtle = web_sys::window()?.crypto().ok()?.subtle();
    let promise = subtle.digest_with_str_and_u8_array("SHA-1", data).ok()?;
    Some(JsFuture::from(promise))
}
