//! Checks that run natively and in a real browser (`scripts/test.sh` runs them in headless
//! Chromium with wasm-bindgen-test): the browser hashes files into exactly the `.mtorrent` the
//! native peer builds, and the wire and tracker codecs round-trip in both.

use bytes::Bytes;
use mtorrent_shared::tracker::{Announce, AnnounceEvent, PeerAddress, ToTracker};
use mtorrent_shared::wire::{BlockRequest, Handshake, Message, PROTOCOL_VERSION};
use mtorrent_shared::{InfoHash, Metainfo, PeerId, PieceHasher};
use mtorrent_web_peer::{build_mtorrent, FileHasher, MtorrentSummary};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

const TRACKERS: [&str; 2] = ["ws://127.0.0.1:7001/ws", "ws://127.0.0.1:7002/ws"];

/// The `.mtorrent` of these bytes as computed by the native peer when this test was written:
/// a browser with a different SHA-1 or encoding would not match it.
const GOLDEN_INFO_HASH: &str = "6fb9cb93e0d3f925e274392afc4b8fdeb8affffb";

fn sample(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + 7) % 251) as u8).collect()
}

/// The `.mtorrent` the shared core builds from the whole buffer at once.
fn native_metainfo(data: &[u8]) -> Metainfo {
    let mut hasher = PieceHasher::new();
    hasher.update(data);
    let hashes = hasher.finish();
    Metainfo::new(
        TRACKERS.map(String::from),
        "golden.bin".into(),
        hashes.size,
        hashes.hashes,
    )
    .unwrap()
}

#[test]
fn the_browser_hasher_builds_the_native_mtorrent() {
    let data = sample(1_300_000);
    let mut hasher = FileHasher::new();
    // Uneven chunks, as Blob.slice reads may come.
    for chunk in data.chunks(300_007) {
        hasher.update(chunk);
    }
    let document = hasher
        .finish("golden.bin".into(), TRACKERS[0].into(), TRACKERS[1].into())
        .unwrap_or_else(|_| panic!("the hasher builds a .mtorrent"));
    let built = Metainfo::from_json(document.as_bytes()).unwrap();
    assert_eq!(built, native_metainfo(&data));
    assert_eq!(built.info_hash().to_hex(), GOLDEN_INFO_HASH);
    let summary = MtorrentSummary::parse(document.as_bytes())
        .unwrap_or_else(|_| panic!("the .mtorrent parses"));
    assert_eq!(summary.info_hash(), GOLDEN_INFO_HASH);
    assert_eq!(summary.piece_count(), 3);
}

/// The `.mtorrent` `build_mtorrent` makes of a file of `size` bytes with these piece hashes.
fn built_from_hashes(size: usize, hashes: &[u8]) -> Metainfo {
    let document = build_mtorrent(
        "golden.bin".into(),
        size as f64,
        hashes,
        TRACKERS[0].into(),
        TRACKERS[1].into(),
    )
    .unwrap_or_else(|_| panic!("a valid .mtorrent"));
    Metainfo::from_json(document.as_bytes()).unwrap()
}

#[test]
fn hashes_computed_elsewhere_build_the_same_mtorrent() {
    let data = sample(1_300_000);
    let hashes: Vec<u8> = data
        .chunks(524_288)
        .flat_map(|piece| mtorrent_shared::PieceHash::of(piece).0)
        .collect();
    assert_eq!(
        built_from_hashes(data.len(), &hashes).info_hash().to_hex(),
        GOLDEN_INFO_HASH
    );
    // Errors are JavaScript objects: only a browser can make one.
    #[cfg(target_arch = "wasm32")]
    {
        let refused = build_mtorrent(
            "golden.bin".into(),
            data.len() as f64,
            &hashes[..40],
            TRACKERS[0].into(),
            TRACKERS[1].into(),
        );
        assert!(refused.is_err());
    }
}

#[test]
fn parts_hashed_apart_build_the_same_mtorrent() {
    let data = sample(1_300_000);
    // Two parts split at a piece boundary, as two hashing workers take them.
    let (first, second) = data.split_at(524_288);
    let mut hashes = Vec::new();
    for part in [first, second] {
        let mut hasher = FileHasher::new();
        for chunk in part.chunks(100_003) {
            hasher.update(chunk);
        }
        hashes.extend(hasher.finish_hashes());
    }
    assert_eq!(hashes.len(), 3 * 20);
    assert_eq!(
        built_from_hashes(data.len(), &hashes).info_hash().to_hex(),
        GOLDEN_INFO_HASH
    );
}

#[test]
fn peer_wire_messages_round_trip() {
    let request = BlockRequest {
        piece: 3,
        offset: 65_536,
        length: 65_536,
    };
    let messages = [
        Message::KeepAlive,
        Message::Handshake(Handshake {
            version: PROTOCOL_VERSION,
            info_hash: InfoHash([5; 20]),
            peer_id: PeerId([6; 20]),
            max_requests: 64,
        }),
        Message::Choke,
        Message::Unchoke,
        Message::Interested,
        Message::NotInterested,
        Message::Have { piece: 9 },
        Message::Bitfield(Bytes::from_static(&[0b1010_0000])),
        Message::Request(request),
        Message::Piece {
            piece: 3,
            offset: 65_536,
            data: Bytes::from(sample(65_536)),
        },
        Message::Cancel(request),
        Message::Reject(request),
    ];
    for message in messages {
        let decoded = Message::decode_frame(message.to_bytes()).unwrap();
        assert_eq!(decoded, message);
    }
    assert!(Message::decode_frame(Bytes::from_static(&[0, 0, 0, 1, 99])).is_err());
}

#[test]
fn tracker_messages_round_trip() {
    let announce = ToTracker::Announce(Announce {
        info_hash: InfoHash([1; 20]),
        peer_id: PeerId([2; 20]),
        event: AnnounceEvent::Started,
        address: PeerAddress::Browser,
        left: 1 << 40,
        numwant: 30,
        metainfo: Some("{}".into()),
    });
    assert_eq!(ToTracker::decode(&announce.encode()).unwrap(), announce);
    assert!(ToTracker::decode("{\"type\":\"announce\"}").is_err());
}

/// The writer of a page without WebCrypto checks pieces, given as their blocks, with
/// `piecesMatch`: a piece's SHA-1, whatever its blocks, and nothing else.
#[cfg(target_arch = "wasm32")]
#[test]
fn a_piece_matches_its_sha1_from_its_blocks_only() {
    use mtorrent_shared::PieceHash;
    use mtorrent_web_peer::pieces_match;
    let piece = sample(524_288);
    let expected = PieceHash::of(&piece).0;
    let blocks = |cuts: &[usize]| -> js_sys::Array {
        let mut at = 0;
        cuts.iter()
            .chain([piece.len()].iter())
            .map(|&end| {
                let block = js_sys::Uint8Array::from(&piece[at..end]);
                at = end;
                block
            })
            .collect()
    };
    let matches = |blocks: js_sys::Array, expected: &[u8]| {
        pieces_match(&[blocks].into_iter().collect(), expected) == [1]
    };
    assert!(matches(blocks(&[]), &expected));
    assert!(matches(blocks(&[262_144]), &expected));
    assert!(matches(blocks(&[1, 100_000, 400_001]), &expected));
    // Blocks out of order, a byte changed, a block missing, a wrong hash.
    let reordered = blocks(&[262_144]);
    reordered.reverse();
    assert!(!matches(reordered, &expected));
    let mut changed = piece.clone();
    changed[77] ^= 1;
    assert!(!matches(
        [js_sys::Uint8Array::from(&changed[..])]
            .into_iter()
            .collect(),
        &expected
    ));
    let missing = blocks(&[262_144]);
    missing.pop();
    assert!(!matches(missing, &expected));
    assert!(!matches(blocks(&[]), &[0; 20]));
}

/// `piecesMatch` checks several pieces at once, four of one length together, and says of each
/// exactly what it says of that piece alone: the SIMD hashing of four gives every lane its own
/// SHA-1.
#[cfg(target_arch = "wasm32")]
#[test]
fn pieces_checked_together_match_their_own_sha1_each() {
    use mtorrent_shared::PieceHash;
    use mtorrent_web_peer::pieces_match;
    // Eight pieces of 512 KiB (two groups of four), then a short last piece; blocks of 256 KiB.
    let pieces: Vec<Vec<u8>> = (0..9u8)
        .map(|n| {
            let len = if n == 8 { 1_000 } else { 524_288 };
            sample(len).into_iter().map(|b| b ^ n).collect()
        })
        .collect();
    let as_blocks = |piece: &[u8]| -> js_sys::Array {
        piece
            .chunks(262_144)
            .map(js_sys::Uint8Array::from)
            .collect()
    };
    let all: js_sys::Array = pieces.iter().map(|p| as_blocks(p)).collect();
    let mut expected: Vec<u8> = pieces.iter().flat_map(|p| PieceHash::of(p).0).collect();
    assert_eq!(pieces_match(&all, &expected), vec![1; 9]);
    for (i, piece) in pieces.iter().enumerate() {
        let alone: js_sys::Array = [as_blocks(piece)].into_iter().collect();
        assert_eq!(pieces_match(&alone, &expected[i * 20..i * 20 + 20]), [1]);
    }
    // A wrong hash in each group, and a piece that is not an array of blocks: those pieces
    // alone fail.
    expected[2 * 20] ^= 1;
    expected[5 * 20 + 19] ^= 1;
    all.set(7, wasm_bindgen::JsValue::from_str("not blocks"));
    assert_eq!(
        pieces_match(&all, &expected),
        vec![1, 1, 0, 1, 1, 0, 1, 0, 1]
    );
    // Hashes of the wrong total length match nothing.
    assert_eq!(pieces_match(&all, &expected[..20]), vec![0; 9]);
}
