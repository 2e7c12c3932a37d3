//! Piece and block arithmetic.
//!
//! A file is cut into pieces of exactly [`PIECE_SIZE`] bytes; the last piece holds the remainder
//! and is shorter unless the size is a multiple of the piece size. An empty file has no pieces.
//! Pieces are transferred in blocks of at most [`BLOCK_SIZE`] bytes; a piece's last block may be
//! shorter. Indices coming from the network are validated once into [`ValidPieceIndex`] and
//! [`BlockRef`], which can then be used without further range checks.

/// The size of every piece but the last: 512 KiB.
pub const PIECE_SIZE: u32 = 512 * 1024;

/// The size of every block but a piece's last: 256 KiB, so a piece is 2 blocks. Large blocks
/// mean few messages per byte, which matters most to a browser peer: it pays dearly for each
/// WebSocket message.
pub const BLOCK_SIZE: u32 = 256 * 1024;

/// The lengths of one file: its size, its pieces and their blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lengths {
    total: u64,
    piece_count: u32,
}

/// A piece index that is known to be in range for the [`Lengths`] that produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValidPieceIndex(u32);

impl ValidPieceIndex {
    /// The index as a number.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// A block of a piece, known to be in range: piece index, byte offset within the piece, length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRef {
    /// The piece the block belongs to.
    pub piece: ValidPieceIndex,
    /// Byte offset of the block within its piece; a multiple of [`BLOCK_SIZE`].
    pub offset: u32,
    /// Length of the block in bytes; [`BLOCK_SIZE`] except for a piece's last block.
    pub length: u32,
}

impl Lengths {
    /// The lengths of a file of `total` bytes, or `None` if it would have more than `u32::MAX`
    /// pieces.
    pub fn new(total: u64) -> Option<Self> {
        let piece_count = u32::try_from(total.div_ceil(u64::from(PIECE_SIZE))).ok()?;
        Some(Self { total, piece_count })
    }

    /// The file size in bytes.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// How many pieces the file has; zero for an empty file.
    pub fn piece_count(&self) -> u32 {
        self.piece_count
    }

    /// Checks an index received from elsewhere.
    pub fn validate_piece_index(&self, index: u32) -> Option<ValidPieceIndex> {
        (index < self.piece_count).then_some(ValidPieceIndex(index))
    }

    /// Every piece index, in order.
    pub fn pieces(&self) -> impl Iterator<Item = ValidPieceIndex> + use<> {
        (0..self.piece_count).map(ValidPieceIndex)
    }

    /// The byte offset of a piece within the file.
    pub fn piece_offset(&self, piece: ValidPieceIndex) -> u64 {
        u64::from(piece.0) * u64::from(PIECE_SIZE)
    }

    /// The length of a piece: [`PIECE_SIZE`], or less for the last piece.
    pub fn piece_length(&self, piece: ValidPieceIndex) -> u32 {
        let remaining = self.total - self.piece_offset(piece);
        remaining.min(u64::from(PIECE_SIZE)) as u32
    }

    /// How many blocks a piece has.
    pub fn block_count(&self, piece: ValidPieceIndex) -> u32 {
        self.piece_length(piece).div_ceil(BLOCK_SIZE)
    }

    /// The blocks of a piece, in order.
    pub fn blocks(&self, piece: ValidPieceIndex) -> impl Iterator<Item = BlockRef> + use<> {
        let piece_length = self.piece_length(piece);
        (0..piece_length.div_ceil(BLOCK_SIZE)).map(move |i| {
            let offset = i * BLOCK_SIZE;
            BlockRef {
                piece,
                offset,
                length: (piece_length - offset).min(BLOCK_SIZE),
            }
        })
    }

    /// The `index`-th block of a piece, if the piece has that many.
    pub fn block(&self, piece: ValidPieceIndex, index: u32) -> Option<BlockRef> {
        let piece_length = self.piece_length(piece);
        let offset = index
            .checked_mul(BLOCK_SIZE)
            .filter(|&o| o < piece_length)?;
        Some(BlockRef {
            piece,
            offset,
            length: (piece_length - offset).min(BLOCK_SIZE),
        })
    }

    /// Checks a request received from a peer: the piece exists, and `offset..offset + length` is
    /// one whole block of it.
    pub fn validate_block(&self, piece: u32, offset: u32, length: u32) -> Option<BlockRef> {
        let piece = self.validate_piece_index(piece)?;
        if !offset.is_multiple_of(BLOCK_SIZE) {
            return None;
        }
        self.block(piece, offset / BLOCK_SIZE)
            .filter(|block| block.length == length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIECE: u64 = PIECE_SIZE as u64;

    #[test]
    fn empty_file_has_no_pieces() {
        let lengths = Lengths::new(0).unwrap();
        assert_eq!(lengths.piece_count(), 0);
        assert_eq!(lengths.validate_piece_index(0), None);
        assert_eq!(lengths.pieces().count(), 0);
    }

    #[test]
    fn piece_counts_around_boundaries() {
        for (size, count, last) in [
            (1, 1, 1),
            (PIECE - 1, 1, PIECE - 1),
            (PIECE, 1, PIECE),
            (PIECE + 1, 2, 1),
            (3 * PIECE, 3, PIECE),
        ] {
            let lengths = Lengths::new(size).unwrap();
            assert_eq!(lengths.piece_count(), count, "size {size}");
            let last_piece = lengths.validate_piece_index(count - 1).unwrap();
            assert_eq!(
                u64::from(lengths.piece_length(last_piece)),
                last,
                "size {size}"
            );
            assert_eq!(lengths.validate_piece_index(count), None);
        }
    }

    #[test]
    fn too_many_pieces_is_refused() {
        assert!(Lengths::new(u64::from(u32::MAX) * PIECE).is_some());
        assert!(Lengths::new(u64::from(u32::MAX) * PIECE + 1).is_none());
    }

    #[test]
    fn blocks_cover_every_piece_exactly() {
        for size in [
            1,
            1000,
            u64::from(BLOCK_SIZE),
            PIECE,
            PIECE + 70_000,
            5 * PIECE - 3,
        ] {
            let lengths = Lengths::new(size).unwrap();
            let mut covered = 0u64;
            for piece in lengths.pieces() {
                let mut next = 0;
                for block in lengths.blocks(piece) {
                    assert_eq!(block.offset, next);
                    assert!(block.length > 0 && block.length <= BLOCK_SIZE);
                    assert_eq!(
                        lengths.validate_block(piece.get(), block.offset, block.length),
                        Some(block)
                    );
                    next += block.length;
                }
                assert_eq!(next, lengths.piece_length(piece));
                assert_eq!(
                    lengths.block_count(piece) as usize,
                    lengths.blocks(piece).count()
                );
                covered += u64::from(next);
            }
            assert_eq!(covered, size);
        }
    }

    #[test]
    fn validate_block_refuses_partial_and_out_of_range_requests() {
        let lengths = Lengths::new(PIECE + 100).unwrap();
        assert!(lengths.validate_block(0, 0, BLOCK_SIZE).is_some());
        assert!(lengths.validate_block(0, 1, BLOCK_SIZE).is_none());
        assert!(lengths.validate_block(0, 0, BLOCK_SIZE - 1).is_none());
        assert!(lengths.validate_block(0, PIECE_SIZE, BLOCK_SIZE).is_none());
        assert!(lengths.validate_block(1, 0, 100).is_some());
        assert!(lengths.validate_block(1, 0, 101).is_none());
        assert!(lengths.validate_block(2, 0, 100).is_none());
        assert!(lengths.validate_block(0, u32::MAX, BLOCK_SIZE).is_none());
    }
}
