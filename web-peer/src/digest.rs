//! SHA-1 of a piece: the browser's own (WebCrypto, native code, run off the thread that asks)
//! when the page or worker has it, which is much faster than SHA-1 in WebAssembly; `shared`'s
//! otherwise.

use mtorrent_shared::PieceHash;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// The SHA-1 of `data` (which WebCrypto copies before this returns).
pub async fn sha1(data: &mut [u8]) -> PieceHash {
    if let Some(pending) = web_crypto(data) {
        if let Ok(value) = pending.await {
            if let Some(buffer) = value.dyn_ref::<js_sys::ArrayBuffer>() {
                let bytes = js_sys::Uint8Array::new(buffer).to_vec();
                if let Ok(hash) = <[u8; 20]>::try_from(bytes.as_slice()) {
                    return PieceHash(hash);
                }
            }
        }
    }
    PieceHash::of(data)
}

/// WebCrypto's digest, from the global scope: a page's `window` or a worker's `self`.
fn web_crypto(data: &mut [u8]) -> Option<JsFuture> {
    let crypto = js_sys::Reflect::get(&js_sys::global(), &"crypto".into())
        .ok()?
        .dyn_into::<web_sys::Crypto>()
        .ok()?;
    let promise = crypto
        .subtle()
        .digest_with_str_and_u8_array("SHA-1", data)
        .ok()?;
    Some(JsFuture::from(promise))
}
