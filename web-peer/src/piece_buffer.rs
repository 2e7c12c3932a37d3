//! A piece being assembled from its blocks: in WebAssembly memory, or, when the page checks
//! and writes pieces itself, as the blocks themselves, left in the buffers they arrived in and
//! handed to the page whole. Then the thread that receives blocks copies none of them.

use js_sys::{Array, Uint8Array};

/// Where a received block's bytes are.
#[derive(Debug)]
pub enum BlockBytes<'a> {
    /// In WebAssembly memory.
    Here(&'a [u8]),
    /// In JavaScript memory: a view into the buffer of the message it arrived in.
    Js(Uint8Array),
}

/// A piece being assembled.
#[derive(Debug)]
pub enum PieceBuffer {
    /// In WebAssembly memory.
    Here(Vec<u8>),
    /// Its blocks so far, each with its offset in the piece, where they arrived.
    Blocks(Vec<(usize, Uint8Array)>),
}

impl PieceBuffer {
    /// Adds a block's bytes at offset `at` of the piece.
    pub fn put(&mut self, at: usize, bytes: BlockBytes<'_>) {
        match (self, bytes) {
            (Self::Here(piece), BlockBytes::Here(bytes)) => {
                piece[at..at + bytes.len()].copy_from_slice(bytes);
            }
            (Self::Here(piece), BlockBytes::Js(bytes)) => {
                bytes.copy_to(&mut piece[at..at + bytes.length() as usize]);
            }
            (Self::Blocks(blocks), BlockBytes::Here(bytes)) => {
                blocks.push((at, Uint8Array::from(bytes)));
            }
            (Self::Blocks(blocks), BlockBytes::Js(bytes)) => blocks.push((at, bytes)),
        }
    }
}

/// A piece's blocks, in order of their offsets, as one JavaScript array.
pub fn in_order(mut blocks: Vec<(usize, Uint8Array)>) -> Array {
    blocks.sort_unstable_by_key(|(at, _)| *at);
    blocks.into_iter().map(|(_, bytes)| bytes).collect()
}
