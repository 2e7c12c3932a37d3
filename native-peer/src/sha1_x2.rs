//! SHA1 of two equal-length messages at once.
//!
//! With SHA-NI, one SHA1 is bound by the latency of its chain of dependent `sha1rnds4`
//! instructions, not by the CPU's throughput: a core hashing one message leaves most of its SHA
//! unit idle. Running two independent messages through the rounds side by side fills those gaps,
//! so one core hashes two pieces in much less than twice the time of one (the figures are in
//! `hashing.rs`). This is the "multi-buffer" technique of Intel's ISA-L (`sha1_ni_x2`).
//!
//! [`digest_pair`] uses SHA-NI when the CPU has it and falls back to the `sha1` crate otherwise.

use mtorrent_shared::PieceHash;
use sha1::{Digest, Sha1};

/// The SHA1 of `a` and of `b`, which must have the same length.
///
/// # Panics
///
/// If the lengths differ.
pub fn digest_pair(a: &[u8], b: &[u8]) -> (PieceHash, PieceHash) {
    assert_eq!(a.len(), b.len(), "digest_pair hashes equal-length inputs");
    #[cfg(target_arch = "x86_64")]
    if shani::available() {
        return shani::digest_pair(a, b);
    }
    (PieceHash::of(a), PieceHash::of(b))
}

/// One SHA1 through the portable path, for comparison in tests and benchmarks.
pub fn digest_one(data: &[u8]) -> PieceHash {
    PieceHash(Sha1::digest(data).into())
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod shani {
    use core::arch::x86_64::*;

    use mtorrent_shared::PieceHash;

    const INITIAL: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];

    /// Whether this CPU has the instructions [`digest_pair`] needs.
    pub fn available() -> bool {
        is_x86_feature_detected!("sha")
            && is_x86_feature_detected!("sse2")
            && is_x86_feature_detected!("ssse3")
            && is_x86_feature_detected!("sse4.1")
    }

    /// Both digests; the caller has checked [`available`] and that the lengths are equal.
    pub fn digest_pair(a: &[u8], b: &[u8]) -> (PieceHash, PieceHash) {
        let mut state_a = INITIAL;
        let mut state_b = INITIAL;
        let full = a.len() / 64 * 64;
        // SAFETY: `available()` returned true, so the CPU has every feature `compress_pair`
        // enables; it reads only within the slices it is given, whose lengths are equal
        // multiples of 64.
        unsafe { compress_pair(&mut state_a, &mut state_b, &a[..full], &b[..full]) };
        let (tail_a, len) = padded_tail(&a[full..], a.len() as u64);
        let (tail_b, _) = padded_tail(&b[full..], b.len() as u64);
        // SAFETY: as above; both tails are `len` bytes, a multiple of 64.
        unsafe { compress_pair(&mut state_a, &mut state_b, &tail_a[..len], &tail_b[..len]) };
        (to_hash(state_a), to_hash(state_b))
    }

    /// The message's last partial block with SHA1 padding: one or two 64-byte blocks.
    fn padded_tail(rest: &[u8], total_len: u64) -> ([u8; 128], usize) {
        let mut tail = [0u8; 128];
        tail[..rest.len()].copy_from_slice(rest);
        tail[rest.len()] = 0x80;
        let len = if rest.len() < 56 { 64 } else { 128 };
        tail[len - 8..len].copy_from_slice(&(total_len * 8).to_be_bytes());
        (tail, len)
    }

    fn to_hash(state: [u32; 5]) -> PieceHash {
        let mut out = [0u8; 20];
        for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        PieceHash(out)
    }

    macro_rules! rounds4 {
        ($h0:expr, $h1:expr, $wk:expr, $i:expr) => {
            _mm_sha1rnds4_epu32($h0, _mm_sha1nexte_epu32($h1, $wk), $i)
        };
    }

    macro_rules! schedule {
        ($v0:expr, $v1:expr, $v2:expr, $v3:expr) => {
            _mm_sha1msg2_epu32(_mm_xor_si128(_mm_sha1msg1_epu32($v0, $v1), $v2), $v3)
        };
    }

    /// One SHA1 block's 80 rounds for each of two lanes, the two lanes' steps interleaved so
    /// that each lane's instructions fill the other's latency.
    macro_rules! two_lanes {
        ($([$h0:ident, $h1:ident, $w0:ident, $w1:ident, $w2:ident, $w3:ident, $w4:ident, $i:expr]),* $(,)?) => {
            $(
                $w4.0 = schedule!($w0.0, $w1.0, $w2.0, $w3.0);
                $w4.1 = schedule!($w0.1, $w1.1, $w2.1, $w3.1);
                $h1.0 = rounds4!($h0.0, $h1.0, $w4.0, $i);
                $h1.1 = rounds4!($h0.1, $h1.1, $w4.1, $i);
            )*
        };
    }

    /// Runs the SHA1 compression function over `a`'s blocks in `state_a` and `b`'s in
    /// `state_b`.
    ///
    /// # Safety
    ///
    /// The CPU must support SHA, SSE2, SSSE3 and SSE4.1; `a` and `b` must have the same length,
    /// a multiple of 64.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    unsafe fn compress_pair(state_a: &mut [u32; 5], state_b: &mut [u32; 5], a: &[u8], b: &[u8]) {
        let mask = _mm_set_epi64x(0x0001_0203_0405_0607, 0x0809_0A0B_0C0D_0E0F);
        let load = |state: &[u32; 5]| {
            (
                _mm_set_epi32(
                    state[0] as i32,
                    state[1] as i32,
                    state[2] as i32,
                    state[3] as i32,
                ),
                _mm_set_epi32(state[4] as i32, 0, 0, 0),
            )
        };
        let (mut abcd_a, mut e_a) = load(state_a);
        let (mut abcd_b, mut e_b) = load(state_b);
        for (block_a, block_b) in a.chunks_exact(64).zip(b.chunks_exact(64)) {
            // SAFETY: each block is 64 bytes and only unaligned loads are used.
            let word = |block: &[u8], i: usize| unsafe {
                _mm_shuffle_epi8(_mm_loadu_si128(block.as_ptr().add(16 * i).cast()), mask)
            };
            let mut w0 = (word(block_a, 0), word(block_b, 0));
            let mut w1 = (word(block_a, 1), word(block_b, 1));
            let mut w2 = (word(block_a, 2), word(block_b, 2));
            let mut w3 = (word(block_a, 3), word(block_b, 3));
            let mut w4 = (_mm_setzero_si128(), _mm_setzero_si128());

            let mut h0 = (abcd_a, abcd_b);
            let mut h1 = (_mm_add_epi32(e_a, w0.0), _mm_add_epi32(e_b, w0.1));

            // Rounds 0..16 use the message words as loaded.
            h1.0 = _mm_sha1rnds4_epu32(h0.0, h1.0, 0);
            h1.1 = _mm_sha1rnds4_epu32(h0.1, h1.1, 0);
            h0.0 = rounds4!(h1.0, h0.0, w1.0, 0);
            h0.1 = rounds4!(h1.1, h0.1, w1.1, 0);
            h1.0 = rounds4!(h0.0, h1.0, w2.0, 0);
            h1.1 = rounds4!(h0.1, h1.1, w2.1, 0);
            h0.0 = rounds4!(h1.0, h0.0, w3.0, 0);
            h0.1 = rounds4!(h1.1, h0.1, w3.1, 0);
            two_lanes!(
                [h0, h1, w0, w1, w2, w3, w4, 0],
                // Rounds 20..40
                [h1, h0, w1, w2, w3, w4, w0, 1],
                [h0, h1, w2, w3, w4, w0, w1, 1],
                [h1, h0, w3, w4, w0, w1, w2, 1],
                [h0, h1, w4, w0, w1, w2, w3, 1],
                [h1, h0, w0, w1, w2, w3, w4, 1],
                // Rounds 40..60
                [h0, h1, w1, w2, w3, w4, w0, 2],
                [h1, h0, w2, w3, w4, w0, w1, 2],
                [h0, h1, w3, w4, w0, w1, w2, 2],
                [h1, h0, w4, w0, w1, w2, w3, 2],
                [h0, h1, w0, w1, w2, w3, w4, 2],
                // Rounds 60..80
                [h1, h0, w1, w2, w3, w4, w0, 3],
                [h0, h1, w2, w3, w4, w0, w1, 3],
                [h1, h0, w3, w4, w0, w1, w2, 3],
                [h0, h1, w4, w0, w1, w2, w3, 3],
                [h1, h0, w0, w1, w2, w3, w4, 3],
            );

            abcd_a = _mm_add_epi32(abcd_a, h0.0);
            abcd_b = _mm_add_epi32(abcd_b, h0.1);
            e_a = _mm_sha1nexte_epu32(h1.0, e_a);
            e_b = _mm_sha1nexte_epu32(h1.1, e_b);
        }
        let store = |state: &mut [u32; 5], abcd: __m128i, e: __m128i| {
            state[0] = _mm_extract_epi32(abcd, 3) as u32;
            state[1] = _mm_extract_epi32(abcd, 2) as u32;
            state[2] = _mm_extract_epi32(abcd, 1) as u32;
            state[3] = _mm_extract_epi32(abcd, 0) as u32;
            state[4] = _mm_extract_epi32(e, 3) as u32;
        };
        store(state_a, abcd_a, e_a);
        store(state_b, abcd_b, e_b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn standard_test_vectors() {
        // FIPS 180-2 appendix A.
        let (abc, _) = digest_pair(b"abc", b"xyz");
        assert_eq!(abc.to_hex(), "a9993e364706816aba3e25717850c26c9cd0d89d");
        let long = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        let (_, long_hash) = digest_pair(&[0; 56], long);
        assert_eq!(
            long_hash.to_hex(),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        let (empty, _) = digest_pair(b"", b"");
        assert_eq!(empty.to_hex(), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }

    #[test]
    fn matches_the_sha1_crate_around_every_padding_boundary() {
        for len in [
            0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 524_288,
        ] {
            let (a, b) = (bytes(len, 1), bytes(len, 2));
            assert_eq!(
                digest_pair(&a, &b),
                (digest_one(&a), digest_one(&b)),
                "length {len}"
            );
        }
    }

    #[test]
    #[should_panic(expected = "equal-length")]
    fn refuses_unequal_lengths() {
        let _ = digest_pair(b"a", b"ab");
    }

    proptest! {
        #[test]
        fn matches_the_sha1_crate(pair in (0usize..700).prop_flat_map(|len| (
            proptest::collection::vec(any::<u8>(), len),
            proptest::collection::vec(any::<u8>(), len),
        ))) {
            let (a, b) = pair;
            prop_assert_eq!(digest_pair(&a, &b), (digest_one(&a), digest_one(&b)));
        }
    }
}
