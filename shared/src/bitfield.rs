//! Which pieces a peer has.

/// Why bytes received as a bitfield are not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BitfieldError {
    /// The byte length does not match the piece count.
    #[error("a bitfield for {pieces} pieces is {expected} bytes, not {actual}")]
    Length {
        /// The piece count.
        pieces: u32,
        /// The expected byte length.
        expected: usize,
        /// The received byte length.
        actual: usize,
    },
}

/// One bit per piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: u32,
}

impl Bitfield {
    /// No pieces.
    pub fn new(len: u32) -> Self {
        Self {
            bytes: vec![0; len.div_ceil(8) as usize],
            len,
        }
    }

    /// Number of pieces tracked.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether it tracks no pieces.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
