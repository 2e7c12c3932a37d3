//! Entry points for the cargo-fuzz targets in `fuzz/`: each decodes arbitrary bytes and, when
//! that succeeds, checks that encoding and decoding again gives the same value.

use bytes::Bytes;

use crate::tracker::{FromTracker, ToTracker};
use crate::wire::{FrameDecoder, Message};
use crate::Metainfo;

/// `.mtorrent` parsing: parse → write → parse is stable.
pub fn metainfo(data: &[u8]) {
    if let Ok(meta) = Metainfo::from_json(data) {
        let again = Metainfo::from_json(meta.to_json().as_bytes()).expect("own output parses");
        assert_eq!(again, meta);
    }
}

/// One whole peer-wire frame: decode → encode gives the same bytes.
pub fn wire_frame(data: &[u8]) {
    if let Ok(message) = Message::decode_frame(Bytes::copy_from_slice(data)) {
        assert_eq!(message.to_bytes().as_ref(), data);
    }
}

/// A peer-wire byte stream, pushed in chunks whose sizes come from the first byte: every message
/// decoded re-encodes to the bytes it came from, in order.
pub fn wire_stream(data: &[u8]) {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut decoder = FrameDecoder::new();
    let mut reencoded = Vec::new();
    'outer: for piece in stream.chunks(chunk) {
        decoder.push(piece);
        loop {
            match decoder.next_message() {
                Ok(Some(message)) => message.encode(&mut reencoded),
                Ok(None) => break,
                Err(_) => break 'outer,
            }
        }
    }
    assert_eq!(&reencoded[..], &stream[..reencoded.len()]);
}

/// Tracker messages, both directions: decode → encode → decode is stable.
pub fn tracker_message(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(message) = ToTracker::decode(text) {
        assert_eq!(ToTracker::decode(&message.encode()), Ok(message));
    }
    if let Ok(message) = FromTracker::decode(text) {
        assert_eq!(FromTracker::decode(&message.encode()), Ok(message));
    }
}
