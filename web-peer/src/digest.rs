//! SHA-1 of a piece: the browser's own (WebCrypto, native code, run off the thread that asks)
//! when the page or worker has it, which is much faster than SHA-1 in WebAssembly; `shared`'s
//! otherwise. Pages that are not a secure context have no WebCrypto: their writer checks pieces
//! with [`piece_matches`].

use std::cell::RefCell;

use js_sys::{Array, Uint8Array};
use mtorrent_shared::PieceHash;
use wasm_bindgen::prelude::*;
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

thread_local! {
    /// Where [`piece_matches`] puts a piece's blocks together, reused from piece to piece.
    static ASSEMBLY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Whether the piece made of `blocks` (`Uint8Array`s, its bytes in order) has the SHA-1
/// `expected` (20 bytes), hashed with `shared`'s SHA-1: how a writer checks pieces where the
/// page has no WebCrypto (a page that is not a secure context).
#[wasm_bindgen(js_name = pieceMatches)]
pub fn piece_matches(blocks: &Array, expected: &[u8]) -> bool {
    ASSEMBLY.with_borrow_mut(|piece| {
        piece.clear();
        for block in blocks.iter() {
            let Some(block) = block.dyn_ref::<Uint8Array>() else {
                return false;
            };
            let at = piece.len();
            piece.resize(at + block.length() as usize, 0);
            block.copy_to(&mut piece[at..]);
        }
        PieceHash::of(piece).0[..] == *expected
    })
}
