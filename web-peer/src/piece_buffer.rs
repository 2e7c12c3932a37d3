//! A piece being assembled from its blocks: in WebAssembly memory, or, when the page checks
//! and writes pieces itself, as the blocks themselves, left in the buffers they arrived in and
//! handed to the page whole. Then the thread that receives blocks copies none of them.

use js_sys::{Array, Uint8Array};

/// A piece being assembled.
#[derive(Debug)]
pub enum PieceBuffer {
    /// In WebAssembly memory.
    Here(Vec<u8>),
    /// Its blocks so far, each with its offset in the piece, where they arrived.
    Blocks(Vec<(usize, Uint8Array)>),
}

impl PieceBuffer {
    /// Adds a block's bytes, where they arrived, at offset `at` of the piece.
    pub fn put(&mut self, at: usize, bytes: Uint8Array) {
        match self {
            Self::Here(piece) => bytes.copy_to(&mut piece[at..at + bytes.length() as usize]),
            Self::Blocks(blocks) => blocks.push((at, bytes)),
        }
    }
}

/// A piece's blocks, in order of their offsets, as one JavaScript array.
pub fn in_order(mut blocks: Vec<(usize, Uint8Array)>) -> Array {
    blocks.sort_unstable_by_key(|(at, _)| *at);
    blocks.into_iter().map(|(_, bytes)| bytes).collect()
}
