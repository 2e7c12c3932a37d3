//! Four SHA-1 digests at once, one message per lane of four-wide vectors.
//!
//! SHA-1 is one chain of dependent rounds, so hashing a single message leaves most of a CPU's
//! vector unit idle. Four independent messages of the same length — four pieces of a file —
//! fill it: word `t` of every message sits in one four-lane vector, and every round is a handful
//! of vector instructions: WebAssembly `simd128` (which the workspace enables for wasm32), or
//! four-element arrays elsewhere, where the same rounds are tested against the `sha1` crate. The
//! browser peer hashes pieces with it; native builds use the `sha1` crate, which has SHA-NI.

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod lanes {
    //! Four lanes in one WebAssembly `v128`.
    use core::arch::wasm32::*;

    pub type Lanes = v128;

    #[inline(always)]
    pub fn splat(x: u32) -> Lanes {
        u32x4_splat(x)
    }
    #[inline(always)]
    pub fn lane(a: Lanes, i: usize) -> u32 {
        match i {
            0 => u32x4_extract_lane::<0>(a),
            1 => u32x4_extract_lane::<1>(a),
            2 => u32x4_extract_lane::<2>(a),
            _ => u32x4_extract_lane::<3>(a),
        }
    }
    #[inline(always)]
    pub fn add(a: Lanes, b: Lanes) -> Lanes {
        i32x4_add(a, b)
    }
    #[inline(always)]
    pub fn xor(a: Lanes, b: Lanes) -> Lanes {
        v128_xor(a, b)
    }
    #[inline(always)]
    pub fn and(a: Lanes, b: Lanes) -> Lanes {
        v128_and(a, b)
    }
    #[inline(always)]
    pub fn or(a: Lanes, b: Lanes) -> Lanes {
        v128_or(a, b)
    }
    /// `!a & b`.
    #[inline(always)]
    pub fn and_not(a: Lanes, b: Lanes) -> Lanes {
        v128_andnot(b, a)
    }
    #[inline(always)]
    pub fn rotl<const N: u32>(a: Lanes) -> Lanes {
        v128_or(i32x4_shl(a, N), u32x4_shr(a, 32 - N))
    }
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod lanes {
    //! Four lanes in an array, for targets without WebAssembly SIMD.

    pub type Lanes = [u32; 4];

    #[inline(always)]
    fn map2(a: Lanes, b: Lanes, f: impl Fn(u32, u32) -> u32) -> Lanes {
        [f(a[0], b[0]), f(a[1], b[1]), f(a[2], b[2]), f(a[3], b[3])]
    }
    #[inline(always)]
    pub fn splat(x: u32) -> Lanes {
        [x; 4]
    }
    #[inline(always)]
    pub fn from_words(w: [u32; 4]) -> Lanes {
        w
    }
    #[inline(always)]
    pub fn lane(a: Lanes, i: usize) -> u32 {
        a[i]
    }
    #[inline(always)]
    pub fn add(a: Lanes, b: Lanes) -> Lanes {
        map2(a, b, u32::wrapping_add)
    }
    #[inline(always)]
    pub fn xor(a: Lanes, b: Lanes) -> Lanes {
        map2(a, b, |x, y| x ^ y)
    }
    #[inline(always)]
    pub fn and(a: Lanes, b: Lanes) -> Lanes {
        map2(a, b, |x, y| x & y)
    }
    #[inline(always)]
    pub fn or(a: Lanes, b: Lanes) -> Lanes {
        map2(a, b, |x, y| x | y)
    }
    /// `!a & b`.
    #[inline(always)]
    pub fn and_not(a: Lanes, b: Lanes) -> Lanes {
        map2(a, b, |x, y| !x & y)
    }
    #[inline(always)]
    pub fn rotl<const N: u32>(a: Lanes) -> Lanes {
        a.map(|x| x.rotate_left(N))
    }
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
use lanes::from_words;
use lanes::{add, and, and_not, lane, or, rotl, splat, xor, Lanes};

const H: [u32; 5] = [
    0x6745_2301,
    0xEFCD_AB89,
    0x98BA_DCFE,
    0x1032_5476,
    0xC3D2_E1F0,
];
const K: [u32; 4] = [0x5A82_7999, 0x6ED9_EBA1, 0x8F1B_BCDC, 0xCA62_C1D6];

/// The SHA-1 digests of four messages of the same length.
///
/// # Panics
/// If the messages' lengths differ.
pub fn sha1_x4(messages: [&[u8]; 4]) -> [[u8; 20]; 4] {
    let len = messages[0].len();
    assert!(
        messages.iter().all(|m| m.len() == len),
        "sha1_x4 hashes messages of one length"
    );
    let mut state: [Lanes; 5] = H.map(splat);
    let full = len / 64;
    for block in 0..full {
        let at = block * 64;
        compress(&mut state, messages.map(|m| &m[at..at + 64]));
    }
    // The padding: 0x80, zeros, and the length in bits, in one block or two.
    let rest = len - full * 64;
    let tail_len = if rest + 9 <= 64 { 64 } else { 128 };
    let mut tails = [[0u8; 128]; 4];
    for (tail, message) in tails.iter_mut().zip(messages) {
        tail[..rest].copy_from_slice(&message[full * 64..]);
        tail[rest] = 0x80;
        tail[tail_len - 8..tail_len].copy_from_slice(&(len as u64 * 8).to_be_bytes());
    }
    for at in (0..tail_len).step_by(64) {
        compress(
            &mut state,
            [0, 1, 2, 3].map(|lane| &tails[lane][at..at + 64]),
        );
    }
    let mut digests = [[0u8; 20]; 4];
    for (lane_index, digest) in digests.iter_mut().enumerate() {
        for (word, out) in state.iter().zip(digest.chunks_exact_mut(4)) {
            out.copy_from_slice(&lane(*word, lane_index).to_be_bytes());
        }
    }
    digests
}

/// The 16 big-endian words of each of four 64-byte blocks, transposed: word `t` of every block
/// in `w[t]`. In WebAssembly, four vector loads, a byte swap each, and a 4 × 4 transpose per
/// four words: building each vector from four scalar loads instead took longer than the rounds.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn load_words(blocks: [&[u8]; 4]) -> [Lanes; 16] {
    use core::arch::wasm32::*;
    let mut w = [splat(0); 16];
    for group in 0..4 {
        let v = blocks.map(|b| {
            let x: [u8; 16] = b[16 * group..16 * group + 16].try_into().expect("16 bytes");
            // Built from 16 neighbouring bytes, which the compiler makes one vector load; the
            // swizzle turns each big-endian word around.
            let raw = u8x16(
                x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8], x[9], x[10], x[11], x[12],
                x[13], x[14], x[15],
            );
            i8x16_swizzle(
                raw,
                i8x16(3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12),
            )
        });
        let low01 = i32x4_shuffle::<0, 4, 1, 5>(v[0], v[1]);
        let high01 = i32x4_shuffle::<2, 6, 3, 7>(v[0], v[1]);
        let low23 = i32x4_shuffle::<0, 4, 1, 5>(v[2], v[3]);
        let high23 = i32x4_shuffle::<2, 6, 3, 7>(v[2], v[3]);
        w[4 * group] = i64x2_shuffle::<0, 2>(low01, low23);
        w[4 * group + 1] = i64x2_shuffle::<1, 3>(low01, low23);
        w[4 * group + 2] = i64x2_shuffle::<0, 2>(high01, high23);
        w[4 * group + 3] = i64x2_shuffle::<1, 3>(high01, high23);
    }
    w
}

/// The same, a word at a time, where there is no WebAssembly SIMD.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn load_words(blocks: [&[u8]; 4]) -> [Lanes; 16] {
    let mut w: [Lanes; 16] = [splat(0); 16];
    for (t, word) in w.iter_mut().enumerate() {
        *word = from_words(
            blocks
                .map(|b| u32::from_be_bytes([b[4 * t], b[4 * t + 1], b[4 * t + 2], b[4 * t + 3]])),
        );
    }
    w
}

/// One 64-byte block of each of the four messages.
#[inline(always)]
fn compress(state: &mut [Lanes; 5], blocks: [&[u8]; 4]) {
    let mut w = load_words(blocks);
    let mut v = *state;
    macro_rules! rounds {
        ($($t:literal)*) => { $(round::<$t>(&mut v, &mut w);)* };
    }
    // Unrolled, so that every index is a constant and the values stay in registers.
    rounds!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63 64 65 66 67 68 69 70 71 72 73 74 75 76 77 78 79);
    for (s, r) in state.iter_mut().zip(v) {
        *s = add(*s, r);
    }
}

/// Round `T` of 80: schedules word `T` (from round 16 on) and mixes it into `v` (a, b, c, d,
/// e).
#[inline(always)]
fn round<const T: usize>(v: &mut [Lanes; 5], w: &mut [Lanes; 16]) {
    if T >= 16 {
        let x = xor(
            xor(w[(T + 13) & 15], w[(T + 8) & 15]),
            xor(w[(T + 2) & 15], w[T & 15]),
        );
        w[T & 15] = rotl::<1>(x);
    }
    let [a, b, c, d, e] = *v;
    let (f, k) = if T < 20 {
        (or(and(b, c), and_not(b, d)), K[0])
    } else if T < 40 {
        (xor(xor(b, c), d), K[1])
    } else if T < 60 {
        (or(or(and(b, c), and(b, d)), and(c, d)), K[2])
    } else {
        (xor(xor(b, c), d), K[3])
    };
    let temp = add(add(rotl::<5>(a), f), add(add(e, splat(k)), w[T & 15]));
    *v = [temp, a, rotl::<30>(b), c, d];
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha1::{Digest, Sha1};

    fn reference(data: &[u8]) -> [u8; 20] {
        Sha1::digest(data).into()
    }

    #[test]
    fn four_lanes_match_the_sha1_crate_for_every_padding_case() {
        for len in [0usize, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000, 524_288] {
            let messages: Vec<Vec<u8>> = (0..4)
                .map(|lane| {
                    (0..len)
                        .map(|i| ((i * 7 + lane * 13 + len) % 256) as u8)
                        .collect()
                })
                .collect();
            let digests = sha1_x4([&messages[0], &messages[1], &messages[2], &messages[3]]);
            for (lane, digest) in digests.iter().enumerate() {
                assert_eq!(
                    *digest,
                    reference(&messages[lane]),
                    "length {len}, lane {lane}"
                );
            }
        }
    }

    #[test]
    #[should_panic(expected = "one length")]
    fn messages_of_different_lengths_are_refused() {
        let _ = sha1_x4([b"a", b"b", b"c", b"dd"]);
    }
}
