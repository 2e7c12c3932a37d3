//! SHA-1 of a piece: the browser's own (WebCrypto, native code, run off the thread that asks)
//! when the page or worker has it, which is much faster than SHA-1 in WebAssembly; `shared`'s
//! otherwise. Pages that are not a secure context have no WebCrypto: their writer checks pieces
//! with [`pieces_match`].

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
    /// Where [`pieces_match`] puts four pieces together, reused from call to call.
    static ASSEMBLIES: RefCell<[Vec<u8>; 4]> = const {
        RefCell::new([Vec::new(), Vec::new(), Vec::new(), Vec::new()])
    };
}

/// Copies the piece made of `blocks` (`Uint8Array`s, its bytes in order) into `piece`; false if
/// a block is not a `Uint8Array`.
fn assemble(blocks: &JsValue, piece: &mut Vec<u8>) -> bool {
    piece.clear();
    let Some(blocks) = blocks.dyn_ref::<Array>() else {
        return false;
    };
    for block in blocks.iter() {
        let Some(block) = block.dyn_ref::<Uint8Array>() else {
            return false;
        };
        let at = piece.len();
        piece.resize(at + block.length() as usize, 0);
        block.copy_to(&mut piece[at..]);
    }
    true
}

/// For each piece of `pieces` (an array of pieces, each an array of its blocks as
/// `Uint8Array`s, in order), 1 if its SHA-1 is the matching 20 bytes of `expected` and 0 if not
/// (or if the piece is not such an array). Four pieces of one length are hashed at once
/// ([`mtorrent_shared::sha1_x4`], about twice as fast in WebAssembly as four one at a time),
/// so a writer that checks pieces in groups of four spends half the time hashing.
#[wasm_bindgen(js_name = piecesMatch)]
pub fn pieces_match(pieces: &Array, expected: &[u8]) -> Vec<u8> {
    let count = pieces.length() as usize;
    let mut matched = vec![0u8; count];
    if expected.len() != count * 20 {
        return matched;
    }
    ASSEMBLIES.with_borrow_mut(|assemblies| {
        for first in (0..count).step_by(4) {
            let group = (count - first).min(4);
            let mut whole = [false; 4];
            for (i, assembly) in assemblies.iter_mut().enumerate().take(group) {
                whole[i] = assemble(&pieces.get((first + i) as u32), assembly);
            }
            let digests: Vec<[u8; 20]> = if group == 4
                && whole.iter().all(|&w| w)
                && assemblies.iter().all(|a| a.len() == assemblies[0].len())
            {
                let [a, b, c, d] = &*assemblies;
                mtorrent_shared::sha1_x4::sha1_x4([a, b, c, d]).to_vec()
            } else {
                // A piece that is not an array of blocks is not hashed: it matches nothing.
                assemblies[..group]
                    .iter()
                    .zip(whole)
                    .map(|(piece, whole)| {
                        if whole {
                            PieceHash::of(piece).0
                        } else {
                            [0; 20]
                        }
                    })
                    .collect()
            };
            for (i, digest) in digests.iter().enumerate() {
                let at = (first + i) * 20;
                matched[first + i] = u8::from(whole[i] && digest[..] == expected[at..at + 20]);
            }
        }
    });
    matched
}
