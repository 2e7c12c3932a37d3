//! Which pieces a peer has: one bit per piece.
//!
//! The wire form is BitTorrent's: bytes in order, most significant bit first, so bit 7 of byte 0
//! is piece 0 and bit 0 of byte 0 is piece 7. The bits after the last piece ("spare bits") are
//! zero. A [`Bitfield`] keeps exactly that form in memory, so sending one is a borrow
//! ([`Bitfield::as_bytes`]) and receiving one is a length check plus a copy
//! ([`Bitfield::from_wire`]).
//!
//! Scans (counting, iterating, comparing) go eight bytes at a time: reading the bytes as a
//! big-endian `u64` puts piece `64 * k` at the word's most significant bit, so `leading_zeros`
//! gives the next piece index directly.

use crate::piece::ValidPieceIndex;

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
    /// A bit after the last piece is set.
    #[error("a bitfield for {pieces} pieces has a spare bit set after the last piece")]
    SpareBitSet {
        /// The piece count.
        pieces: u32,
    },
}

/// One bit per piece; a set bit means the piece is there.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Bitfield {
    /// The wire form; spare bits are always zero.
    bytes: Vec<u8>,
    len: u32,
}

impl std::fmt::Debug for Bitfield {
    // Printing 2^21 bits helps nobody; the count and the first bytes do.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = &self.bytes[..self.bytes.len().min(16)];
        f.debug_struct("Bitfield")
            .field("len", &self.len)
            .field("ones", &self.count_ones())
            .field("first_bytes", &hex::encode(shown))
            .finish()
    }
}

impl Bitfield {
    /// A bitfield of `len` pieces, none of them set.
    pub fn new(len: u32) -> Self {
        Self {
            bytes: vec![0; byte_len(len)],
            len,
        }
    }

    /// A bitfield of `len` pieces, all of them set (a seeder's).
    pub fn full(len: u32) -> Self {
        let mut bytes = vec![0xff; byte_len(len)];
        if let Some(last) = bytes.last_mut() {
            *last &= last_byte_mask(len);
        }
        Self { bytes, len }
    }

    /// Reads a bitfield received for a file of `piece_count` pieces.
    ///
    /// Refuses a length other than `ceil(piece_count / 8)` bytes and a set spare bit, since
    /// either means the sender disagrees about the file.
    pub fn from_wire(bytes: &[u8], piece_count: u32) -> Result<Self, BitfieldError> {
        let expected = byte_len(piece_count);
        if bytes.len() != expected {
            return Err(BitfieldError::Length {
                pieces: piece_count,
                expected,
                actual: bytes.len(),
            });
        }
        if let Some(&last) = bytes.last() {
            if last & !last_byte_mask(piece_count) != 0 {
                return Err(BitfieldError::SpareBitSet {
                    pieces: piece_count,
                });
            }
        }
        Ok(Self {
            bytes: bytes.to_vec(),
            len: piece_count,
        })
    }

    /// The wire form, borrowed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The wire form, copied.
    pub fn to_wire(&self) -> Vec<u8> {
        self.bytes.clone()
    }

    /// Number of pieces tracked.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether it tracks no pieces.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `piece` is set.
    ///
    /// # Panics
    /// If `piece` is out of range for this bitfield, which can only happen when mixing the
    /// bitfield of one file with the piece indices of another.
    pub fn get(&self, piece: ValidPieceIndex) -> bool {
        self.check(piece.get());
        self.bit(piece.get())
    }

    /// Sets `piece`. Panics like [`Bitfield::get`].
    pub fn set(&mut self, piece: ValidPieceIndex) {
        self.check(piece.get());
        self.set_bit(piece.get());
    }

    /// Clears `piece`. Panics like [`Bitfield::get`].
    pub fn clear(&mut self, piece: ValidPieceIndex) {
        self.check(piece.get());
        self.clear_bit(piece.get());
    }

    /// How many pieces are set.
    pub fn count_ones(&self) -> u32 {
        // Spare bits are zero, so whole words can be counted.
        words(&self.bytes).map(|(_, w)| w.count_ones()).sum()
    }

    /// Whether every piece is set (always true for zero pieces).
    pub fn is_complete(&self) -> bool {
        self.count_ones() == self.len
    }

    /// The set pieces, in increasing order.
    pub fn iter_ones(&self) -> impl Iterator<Item = u32> + '_ {
        ones(words(&self.bytes))
    }

    /// The unset pieces, in increasing order.
    pub fn iter_zeros(&self) -> impl Iterator<Item = u32> + '_ {
        let len = self.len;
        ones(words(&self.bytes).map(|(base, w)| (base, !w))).take_while(move |&i| i < len)
    }

    /// Whether this bitfield has a piece that `mine` lacks, i.e. whether its owner has
    /// something to offer to the owner of `mine`.
    ///
    /// # Panics
    /// If the two bitfields are for different piece counts.
    pub fn interesting_to(&self, mine: &Bitfield) -> bool {
        assert_eq!(self.len, mine.len, "bitfields of different files");
        words(&self.bytes)
            .zip(words(&mine.bytes))
            .any(|((_, theirs), (_, ours))| theirs & !ours != 0)
    }

    /// The pieces set both here and in `other`, in increasing order.
    pub(crate) fn iter_ones_in_both<'a>(
        &'a self,
        other: &'a Bitfield,
    ) -> impl Iterator<Item = u32> + 'a {
        debug_assert_eq!(self.len, other.len);
        ones(
            words(&self.bytes)
                .zip(words(&other.bytes))
                .map(|((base, a), (_, b))| (base, a & b)),
        )
    }

    /// Whether piece `index` is set; false when out of range.
    pub(crate) fn bit(&self, index: u32) -> bool {
        self.bytes
            .get((index / 8) as usize)
            .is_some_and(|byte| byte & mask(index) != 0)
    }

    /// Sets piece `index`, which must be in range.
    pub(crate) fn set_bit(&mut self, index: u32) {
        self.bytes[(index / 8) as usize] |= mask(index);
    }

    /// Clears piece `index`, which must be in range.
    pub(crate) fn clear_bit(&mut self, index: u32) {
        self.bytes[(index / 8) as usize] &= !mask(index);
    }

    fn check(&self, index: u32) {
        assert!(
            index < self.len,
            "piece {index} is out of range for a bitfield of {} pieces",
            self.len
        );
    }
}

fn byte_len(pieces: u32) -> usize {
    pieces.div_ceil(8) as usize
}

/// The bit of piece `index` within its byte.
fn mask(index: u32) -> u8 {
    0x80 >> (index % 8)
}

/// The bits of the last byte that belong to pieces.
fn last_byte_mask(pieces: u32) -> u8 {
    match pieces % 8 {
        0 => 0xff,
        used => !(0xff >> used),
    }
}

/// The bytes as big-endian words, each with the index of its first piece; the last word is
/// padded with zeros.
fn words(bytes: &[u8]) -> impl Iterator<Item = (u32, u64)> + '_ {
    bytes.chunks(8).enumerate().map(|(i, chunk)| {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        (i as u32 * 64, u64::from_be_bytes(word))
    })
}

/// The indices of the set bits of a sequence of words.
fn ones(words: impl Iterator<Item = (u32, u64)>) -> impl Iterator<Item = u32> {
    words.flat_map(|(base, mut word)| {
        std::iter::from_fn(move || {
            (word != 0).then(|| {
                let bit = word.leading_zeros();
                word &= !(1u64 << (63 - bit));
                base + bit
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::piece::{Lengths, PIECE_SIZE};
    use proptest::prelude::*;

    /// Piece indices for a file of `pieces` pieces.
    fn lengths(pieces: u32) -> Lengths {
        Lengths::new(u64::from(pieces) * u64::from(PIECE_SIZE)).unwrap()
    }

    fn index(lengths: &Lengths, i: u32) -> ValidPieceIndex {
        lengths.validate_piece_index(i).unwrap()
    }

    #[test]
    fn piece_zero_is_the_most_significant_bit_of_byte_zero() {
        let l = lengths(10);
        let mut bf = Bitfield::new(10);
        bf.set(index(&l, 0));
        assert_eq!(bf.as_bytes(), &[0b1000_0000, 0]);
        bf.set(index(&l, 7));
        bf.set(index(&l, 9));
        assert_eq!(bf.as_bytes(), &[0b1000_0001, 0b0100_0000]);
        bf.clear(index(&l, 0));
        assert_eq!(bf.to_wire(), vec![0b0000_0001, 0b0100_0000]);
    }

    #[test]
    fn from_wire_checks_the_length() {
        for (pieces, good) in [(0u32, 0usize), (1, 1), (8, 1), (9, 2), (64, 8), (65, 9)] {
            assert!(Bitfield::from_wire(&vec![0; good], pieces).is_ok());
            for bad in [good + 1, good.wrapping_sub(1)] {
                if bad > 100 {
                    continue;
                }
                assert_eq!(
                    Bitfield::from_wire(&vec![0; bad], pieces),
                    Err(BitfieldError::Length {
                        pieces,
                        expected: good,
                        actual: bad
                    })
                );
            }
        }
    }

    #[test]
    fn from_wire_refuses_every_spare_bit() {
        // 11 pieces: byte 1 holds pieces 8..11 in its top three bits, five spare bits below.
        for spare in 0..5 {
            let bytes = [0xff, 0b1110_0000 | (1 << spare)];
            assert_eq!(
                Bitfield::from_wire(&bytes, 11),
                Err(BitfieldError::SpareBitSet { pieces: 11 })
            );
        }
        assert!(Bitfield::from_wire(&[0xff, 0b1110_0000], 11).is_ok());
    }

    #[test]
    fn full_sets_every_piece_and_no_spare_bit() {
        for pieces in [0, 1, 7, 8, 9, 63, 64, 65, 1000] {
            let full = Bitfield::full(pieces);
            assert_eq!(full.count_ones(), pieces);
            assert!(full.is_complete());
            assert_eq!(Bitfield::from_wire(full.as_bytes(), pieces), Ok(full));
        }
        assert!(!Bitfield::new(3).is_complete());
        assert!(Bitfield::new(0).is_complete());
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn an_index_of_a_larger_file_panics() {
        let l = lengths(20);
        Bitfield::new(10).get(index(&l, 15));
    }

    #[test]
    fn interesting_to_needs_a_piece_the_other_lacks() {
        let l = lengths(70);
        let mut theirs = Bitfield::new(70);
        let mut mine = Bitfield::new(70);
        assert!(!theirs.interesting_to(&mine));
        theirs.set(index(&l, 69));
        assert!(theirs.interesting_to(&mine));
        mine.set(index(&l, 69));
        assert!(!theirs.interesting_to(&mine));
        mine.set(index(&l, 3));
        assert!(!theirs.interesting_to(&mine));
        assert!(mine.interesting_to(&theirs));
    }

    fn pieces_and_bools() -> impl Strategy<Value = Vec<bool>> {
        proptest::collection::vec(any::<bool>(), 0..300)
    }

    fn from_bools(bools: &[bool]) -> Bitfield {
        let l = lengths(bools.len().max(1) as u32);
        let mut bf = Bitfield::new(bools.len() as u32);
        for (i, &b) in bools.iter().enumerate() {
            if b {
                bf.set(index(&l, i as u32));
            }
        }
        bf
    }

    proptest! {
        /// Every query agrees with a plain `Vec<bool>` model.
        #[test]
        fn agrees_with_a_vec_of_bools(bools in pieces_and_bools()) {
            let bf = from_bools(&bools);
            let n = bools.len() as u32;
            prop_assert_eq!(bf.len(), n);
            for (i, &b) in bools.iter().enumerate() {
                prop_assert_eq!(bf.bit(i as u32), b);
                // The wire form, decoded by hand: byte i/8, bit 7 - i%8.
                prop_assert_eq!(bf.as_bytes()[i / 8] >> (7 - i % 8) & 1 == 1, b);
            }
            let ones: Vec<u32> = (0..n).filter(|&i| bools[i as usize]).collect();
            let zeros: Vec<u32> = (0..n).filter(|&i| !bools[i as usize]).collect();
            prop_assert_eq!(bf.count_ones() as usize, ones.len());
            prop_assert_eq!(bf.is_complete(), zeros.is_empty());
            prop_assert_eq!(bf.iter_ones().collect::<Vec<_>>(), ones);
            prop_assert_eq!(bf.iter_zeros().collect::<Vec<_>>(), zeros);
        }

        /// `from_wire` accepts exactly what `to_wire` produces, and round-trips it.
        #[test]
        fn wire_round_trip(bools in pieces_and_bools()) {
            let bf = from_bools(&bools);
            prop_assert_eq!(Bitfield::from_wire(&bf.to_wire(), bf.len()), Ok(bf));
        }

        /// Pairwise operations agree with the model.
        #[test]
        fn pairwise_agrees_with_the_model(
            pairs in proptest::collection::vec(any::<(bool, bool)>(), 0..300)
        ) {
            let a: Vec<bool> = pairs.iter().map(|p| p.0).collect();
            let b: Vec<bool> = pairs.iter().map(|p| p.1).collect();
            let (fa, fb) = (from_bools(&a), from_bools(&b));
            prop_assert_eq!(fa.interesting_to(&fb), pairs.iter().any(|&(x, y)| x && !y));
            let both: Vec<u32> =
                (0..pairs.len() as u32).filter(|&i| pairs[i as usize] == (true, true)).collect();
            prop_assert_eq!(fa.iter_ones_in_both(&fb).collect::<Vec<_>>(), both);
        }
    }
}
