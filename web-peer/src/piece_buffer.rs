//! A piece being assembled from its blocks: in WebAssembly memory, or in a buffer the page
//! lent (a download worker's), which goes back to the page whole once the piece is complete,
//! so a block is copied once, from the frame it arrived in to its place in the piece.

use js_sys::Uint8Array;

/// Where a received block's bytes are.
#[derive(Debug)]
pub enum BlockBytes<'a> {
    /// In WebAssembly memory.
    Here(&'a [u8]),
    /// In JavaScript memory: the frame's buffer it arrived in.
    Js(Uint8Array),
}

/// A piece being assembled.
#[derive(Debug)]
pub enum PieceBuffer {
    /// In WebAssembly memory.
    Here(Vec<u8>),
    /// In a buffer the page lent (`PieceStore.pieceBuffer`).
    Lent(Uint8Array),
}

impl PieceBuffer {
    /// Copies a block's bytes to offset `at` of the piece.
    pub fn put(&mut self, at: usize, bytes: BlockBytes<'_>) {
        match (self, bytes) {
            (Self::Here(piece), BlockBytes::Here(bytes)) => {
                piece[at..at + bytes.len()].copy_from_slice(bytes);
            }
            (Self::Here(piece), BlockBytes::Js(bytes)) => {
                bytes.copy_to(&mut piece[at..at + bytes.length() as usize]);
            }
            (Self::Lent(piece), BlockBytes::Here(bytes)) => piece
                .subarray(at as u32, (at + bytes.len()) as u32)
                .copy_from(bytes),
            (Self::Lent(piece), BlockBytes::Js(bytes)) => piece.set(&bytes, at as u32),
        }
    }

    /// The piece as a JavaScript array (the lent buffer itself, or a copy).
    pub fn into_js(self) -> Uint8Array {
        match self {
            Self::Here(piece) => Uint8Array::from(&piece[..]),
            Self::Lent(piece) => piece,
        }
    }

    /// The piece in WebAssembly memory (itself, or a copy).
    pub fn into_vec(self) -> Vec<u8> {
        match self {
            Self::Here(piece) => piece,
            Self::Lent(piece) => piece.to_vec(),
        }
    }
}
