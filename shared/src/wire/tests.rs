use super::*;
use proptest::prelude::*;

fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    Message::decode_frame(Bytes::copy_from_slice(bytes))
}

/// Byte fixtures written out by hand from the layout in the module doc.
#[test]
fn fixtures_decode_and_encode_to_the_documented_bytes() {
    let mut handshake = vec![0, 0, 0, 53, 1];
    handshake.extend_from_slice(b"mtorrent");
    handshake.extend_from_slice(&[0, 2]);
    handshake.extend_from_slice(&[0xAA; 20]);
    handshake.extend_from_slice(&[0xBB; 20]);
    handshake.extend_from_slice(&[0x01, 0x00]);
    let cases: Vec<(Vec<u8>, Message)> = vec![
        (vec![0, 0, 0, 1, 0], Message::KeepAlive),
        (
            handshake,
            Message::Handshake(Handshake {
                version: 2,
                info_hash: InfoHash([0xAA; 20]),
                peer_id: PeerId([0xBB; 20]),
                max_requests: 256,
            }),
        ),
        (vec![0, 0, 0, 1, 2], Message::Choke),
        (vec![0, 0, 0, 1, 3], Message::Unchoke),
        (vec![0, 0, 0, 1, 4], Message::Interested),
        (vec![0, 0, 0, 1, 5], Message::NotInterested),
        (
            vec![0, 0, 0, 5, 6, 0, 1, 0, 2],
            Message::Have { piece: 65538 },
        ),
        (
            vec![0, 0, 0, 3, 7, 0b1010_0000, 0b1000_0000],
            Message::Bitfield(Bytes::from_static(&[0b1010_0000, 0b1000_0000])),
        ),
        (
            vec![0, 0, 0, 13, 8, 0, 0, 0, 7, 0, 1, 0, 0, 0, 1, 0, 0],
            Message::Request(BlockRequest {
                piece: 7,
                offset: 65536,
                length: 65536,
            }),
        ),
        (
            vec![0, 0, 0, 12, 9, 0, 0, 0, 3, 0, 0, 0, 0, b'a', b'b', b'c'],
            Message::Piece {
                piece: 3,
                offset: 0,
                data: Bytes::from_static(b"abc"),
            },
        ),
        (
            vec![0, 0, 0, 13, 10, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9],
            Message::Cancel(BlockRequest {
                piece: 1,
                offset: 0,
                length: 9,
            }),
        ),
        (
            vec![0, 0, 0, 13, 11, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9],
            Message::Reject(BlockRequest {
                piece: 1,
                offset: 0,
                length: 9,
            }),
        ),
    ];
    for (bytes, message) in cases {
        assert_eq!(decode(&bytes), Ok(message.clone()), "{message:?}");
        assert_eq!(message.to_bytes().as_ref(), &bytes[..], "{message:?}");
        assert_eq!(message.encoded_len(), bytes.len(), "{message:?}");
    }
}

#[test]
fn malformed_frames_are_typed_errors() {
    let cases: Vec<(Vec<u8>, WireError)> = vec![
        (
            vec![0, 0, 0],
            WireError::Truncated {
                needed: 4,
                available: 3,
            },
        ),
        (vec![0, 0, 0, 0], WireError::Empty),
        (
            vec![0, 0, 0, 2, 6],
            WireError::Truncated {
                needed: 6,
                available: 5,
            },
        ),
        (vec![0, 0, 0, 1, 2, 9], WireError::TrailingBytes(1)),
        (vec![0, 0, 0, 1, 12], WireError::UnknownTag(12)),
        (vec![0, 0, 0, 1, 255], WireError::UnknownTag(255)),
        (
            vec![0, 0, 0, 2, 3, 0],
            WireError::BadPayloadLength {
                message: "Unchoke",
                expected: 0,
                actual: 1,
            },
        ),
        (
            vec![0, 0, 0, 3, 6, 0, 0],
            WireError::BadPayloadLength {
                message: "Have",
                expected: 4,
                actual: 2,
            },
        ),
        (
            vec![0, 0, 0, 5, 9, 0, 0, 0, 1],
            WireError::BadPayloadLength {
                message: "Piece",
                expected: 8,
                actual: 4,
            },
        ),
        (
            vec![0, 0, 0, 9, 9, 0, 0, 0, 1, 0, 0, 0, 0],
            WireError::BadBlockLength(0),
        ),
        (
            [
                &[0, 0, 0, 13, 8, 0, 0, 0, 0, 0, 0, 0, 0],
                &(BLOCK_SIZE + 1).to_be_bytes()[..],
            ]
            .concat(),
            WireError::BadBlockLength(BLOCK_SIZE as usize + 1),
        ),
        (
            vec![0, 0, 0, 13, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            WireError::BadBlockLength(0),
        ),
        (
            vec![0xFF, 0xFF, 0xFF, 0xFF, 0],
            WireError::Oversized {
                len: u32::MAX as usize,
            },
        ),
    ];
    for (bytes, error) in cases {
        assert_eq!(decode(&bytes), Err(error.clone()), "{bytes:?}");
    }
}

fn handshake_bytes(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut bytes = Message::Handshake(Handshake {
        version: PROTOCOL_VERSION,
        info_hash: InfoHash([1; 20]),
        peer_id: PeerId([2; 20]),
        max_requests: 8,
    })
    .to_bytes()
    .to_vec();
    edit(&mut bytes);
    bytes
}

#[test]
fn handshake_checks_magic_version_and_limit() {
    assert!(decode(&handshake_bytes(|_| {})).is_ok());
    assert_eq!(
        decode(&handshake_bytes(|b| b[5] = b'x')),
        Err(WireError::BadMagic)
    );
    // A peer of version 1, with 64 KiB blocks.
    assert_eq!(
        decode(&handshake_bytes(|b| b[14] = 1)),
        Err(WireError::UnsupportedVersion(1))
    );
    assert_eq!(
        decode(&handshake_bytes(|b| {
            let n = b.len();
            b[n - 2..].copy_from_slice(&[0, 0]);
        })),
        Err(WireError::ZeroMaxRequests)
    );
}

#[test]
fn the_largest_bitfield_fits_and_one_byte_more_does_not() {
    let largest = Message::Bitfield(Bytes::from(vec![0xFF; MAX_BITFIELD_BYTES]));
    assert_eq!(Message::decode_frame(largest.to_bytes()), Ok(largest));
    let mut too_long = vec![];
    too_long.put_u32(MAX_FRAME_LEN as u32 + 1);
    too_long.put_u8(7);
    assert_eq!(
        decode(&too_long),
        Err(WireError::Oversized {
            len: MAX_FRAME_LEN + 1
        })
    );
    // 1 TiB of 512 KiB pieces is 2^21 bits.
    assert_eq!(MAX_BITFIELD_BYTES, (1 << 21) / 8);
}

#[test]
fn stream_refuses_an_oversized_prefix_before_buffering_the_body() {
    let mut decoder = FrameDecoder::new();
    decoder.push(&[0x7F, 0xFF, 0xFF, 0xFF]);
    assert_eq!(
        decoder.next_message(),
        Err(WireError::Oversized { len: 0x7FFF_FFFF })
    );
    assert!(
        decoder.buffer.capacity() < 1024,
        "nothing reserved for the body"
    );
}

#[test]
fn piece_header_and_data_make_a_whole_frame() {
    let data = vec![7u8; BLOCK_SIZE as usize];
    let mut frame = Vec::new();
    encode_piece_header(4, 65536, data.len(), &mut frame);
    assert_eq!(frame.len(), PIECE_FRAME_HEADER_LEN);
    frame.extend_from_slice(&data);
    let decoded = Message::decode_frame(Bytes::from(frame)).unwrap();
    assert_eq!(
        decoded,
        Message::Piece {
            piece: 4,
            offset: 65536,
            data: Bytes::from(data)
        }
    );
}

#[test]
fn decode_frame_shares_piece_data_with_the_frame() {
    let frame = Message::Piece {
        piece: 0,
        offset: 0,
        data: Bytes::from_static(b"xyz"),
    }
    .to_bytes();
    let start = frame.as_ptr() as usize;
    let Ok(Message::Piece { data, .. }) = Message::decode_frame(frame.clone()) else {
        panic!("a piece");
    };
    assert_eq!(data.as_ptr() as usize, start + PIECE_FRAME_HEADER_LEN);
}

fn any_block_request() -> impl Strategy<Value = BlockRequest> {
    (any::<u32>(), any::<u32>(), 1..=BLOCK_SIZE).prop_map(|(piece, offset, length)| BlockRequest {
        piece,
        offset,
        length,
    })
}

fn any_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        Just(Message::KeepAlive),
        Just(Message::Choke),
        Just(Message::Unchoke),
        Just(Message::Interested),
        Just(Message::NotInterested),
        (any::<[u8; 20]>(), any::<[u8; 20]>(), 1..=u16::MAX).prop_map(|(i, p, max)| {
            Message::Handshake(Handshake {
                version: PROTOCOL_VERSION,
                info_hash: InfoHash(i),
                peer_id: PeerId(p),
                max_requests: max,
            })
        }),
        any::<u32>().prop_map(|piece| Message::Have { piece }),
        proptest::collection::vec(any::<u8>(), 0..300)
            .prop_map(|bits| Message::Bitfield(Bytes::from(bits))),
        any_block_request().prop_map(Message::Request),
        any_block_request().prop_map(Message::Cancel),
        any_block_request().prop_map(Message::Reject),
        (
            any::<u32>(),
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 1..2000)
        )
            .prop_map(|(piece, offset, data)| Message::Piece {
                piece,
                offset,
                data: Bytes::from(data)
            }),
    ]
}

/// The edges of a Piece frame, and a header read as the browser peer reads it: the first bytes
/// of a longer frame.
#[test]
fn peeking_a_piece_header_refuses_what_decoding_refuses() {
    let piece_frame = |data_len: usize| {
        let mut frame = Vec::new();
        frame.extend_from_slice(&((1 + 8 + data_len) as u32).to_be_bytes());
        frame.extend_from_slice(&[tag::PIECE, 0, 0, 0, 3, 0, 0, 0, 0]);
        frame.resize(PIECE_FRAME_HEADER_LEN + data_len, 7);
        frame
    };
    let header = |data_len| {
        Some(PieceHeader {
            piece: 3,
            offset: 0,
            data_len,
        })
    };
    let full = BLOCK_SIZE as usize;
    for (data_len, expected) in [
        (0, None),
        (1, header(1)),
        (full, header(full)),
        (full + 1, None),
    ] {
        let frame = piece_frame(data_len);
        assert_eq!(
            peek_piece_frame(&frame, frame.len()),
            expected,
            "{data_len} bytes"
        );
        assert_eq!(
            decode(&frame).is_ok(),
            expected.is_some(),
            "decoding {data_len} bytes"
        );
        // Only the header at hand, as when the frame stays in a browser's buffer.
        let head = &frame[..PIECE_FRAME_HEADER_LEN];
        assert_eq!(peek_piece_frame(head, frame.len()), expected);
    }
    // A length prefix that does not match the frame, and a header too short to read.
    let frame = piece_frame(100);
    assert_eq!(peek_piece_frame(&frame, frame.len() + 1), None);
    assert_eq!(peek_piece_frame(&frame, frame.len() - 1), None);
    assert_eq!(
        peek_piece_frame(&frame[..PIECE_FRAME_HEADER_LEN - 1], frame.len()),
        None
    );
}

proptest! {
    #[test]
    fn every_message_round_trips(message in any_message()) {
        let bytes = message.to_bytes();
        prop_assert_eq!(bytes.len(), message.encoded_len());
        prop_assert_eq!(Message::decode_frame(bytes), Ok(message));
    }

    /// Any split of a stream of messages gives back the same messages.
    #[test]
    fn every_split_point_of_a_stream_decodes_the_same(
        messages in proptest::collection::vec(any_message(), 1..6),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut stream = Vec::new();
        for message in &messages {
            message.encode(&mut stream);
        }
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        points.extend([0, stream.len()]);
        points.sort_unstable();
        let mut decoder = FrameDecoder::new();
        let mut decoded = Vec::new();
        for pair in points.windows(2) {
            decoder.push(&stream[pair[0]..pair[1]]);
            while let Some(message) = decoder.next_message().unwrap() {
                decoded.push(message);
            }
        }
        prop_assert_eq!(decoded, messages);
        prop_assert_eq!(decoder.buffered(), 0);
    }

    /// Every truncation of a frame is an error from `decode_frame`, and "not yet" from the
    /// stream decoder; neither panics.
    #[test]
    fn every_truncation_is_an_error_or_incomplete(message in any_message()) {
        let bytes = message.to_bytes();
        for end in 0..bytes.len() {
            prop_assert!(Message::decode_frame(bytes.slice(..end)).is_err());
            let mut decoder = FrameDecoder::new();
            decoder.push(&bytes[..end]);
            prop_assert_eq!(decoder.next_message(), Ok(None));
        }
    }

    /// A Piece frame's header alone says what `decode_frame` would: the same block, with the
    /// rest of the frame as its data; any other message is left to `decode_frame`.
    #[test]
    fn peeking_a_piece_header_agrees_with_decoding(message in any_message()) {
        let bytes = message.to_bytes();
        let peeked = peek_piece_frame(&bytes, bytes.len());
        match message {
            Message::Piece { piece, offset, data } => prop_assert_eq!(
                peeked,
                Some(PieceHeader { piece, offset, data_len: data.len() })
            ),
            _ => prop_assert_eq!(peeked, None),
        }
    }

    /// On any bytes, peeking finds a Piece exactly when decoding does.
    #[test]
    fn peeking_arbitrary_bytes_agrees_with_decoding(
        mut bytes in proptest::collection::vec(any::<u8>(), 0..64),
        piece_tag in any::<bool>(),
        length_right in any::<bool>(),
    ) {
        // Often well-formed enough to be a Piece, so both answers are exercised.
        if bytes.len() > LEN_PREFIX {
            if piece_tag {
                bytes[LEN_PREFIX] = tag::PIECE;
            }
            if length_right {
                let body = (bytes.len() - LEN_PREFIX) as u32;
                bytes[..LEN_PREFIX].copy_from_slice(&body.to_be_bytes());
            }
        }
        let decoded = decode(&bytes);
        let expected = match decoded {
            Ok(Message::Piece { piece, offset, data }) => {
                prop_assert_eq!(&data[..], &bytes[PIECE_FRAME_HEADER_LEN..]);
                Some(PieceHeader { piece, offset, data_len: data.len() })
            }
            _ => None,
        };
        prop_assert_eq!(peek_piece_frame(&bytes, bytes.len()), expected);
    }

    /// Arbitrary bytes never panic either decoder.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = Message::decode_frame(Bytes::from(bytes.clone()));
        let mut decoder = FrameDecoder::new();
        decoder.push(&bytes);
        while let Ok(Some(_)) = decoder.next_message() {}
    }

    /// Decoding what decoded successfully and re-encoding it gives the same bytes.
    #[test]
    fn decode_then_encode_is_the_identity(tag in 0u8..12, payload in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut frame = Vec::new();
        frame.put_u32(1 + payload.len() as u32);
        frame.put_u8(tag);
        frame.extend_from_slice(&payload);
        if let Ok(message) = decode(&frame) {
            let encoded = message.to_bytes();
            prop_assert_eq!(encoded.as_ref(), &frame[..]);
        }
    }
}
