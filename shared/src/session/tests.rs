use super::*;
use crate::wire::PieceHeader;
use crate::{BLOCK_SIZE, PIECE_SIZE};

const T0: Duration = Duration::ZERO;

fn lengths(size: u64) -> Lengths {
    Lengths::new(size).unwrap()
}

fn session(size: u64, id: u8, ours: Bitfield) -> PeerSession {
    PeerSession::new(
        lengths(size),
        InfoHash([7; 20]),
        PeerId([id; 20]),
        ours,
        SessionConfig {
            max_requests_accepted: 4,
            ..SessionConfig::default()
        },
        T0,
    )
}

fn handshake(id: u8, info: u8, max_requests: u16) -> Message {
    Message::Handshake(Handshake {
        version: PROTOCOL_VERSION,
        info_hash: InfoHash([info; 20]),
        peer_id: PeerId([id; 20]),
        max_requests,
    })
}

fn drain(s: &mut PeerSession) -> Vec<Message> {
    std::iter::from_fn(|| s.poll_transmit(T0)).collect()
}

fn events(s: &mut PeerSession) -> Vec<SessionEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// A session whose peer (id 2, has every piece, accepts 2 requests) is ready and unchoked us.
fn ready(size: u64, ours: Bitfield) -> PeerSession {
    let mut s = session(size, 1, ours);
    let pieces = lengths(size).piece_count();
    s.handle_message(T0, handshake(2, 7, 2)).unwrap();
    s.handle_message(
        T0,
        Message::Bitfield(Bytes::from(Bitfield::full(pieces).to_wire())),
    )
    .unwrap();
    s.handle_message(T0, Message::Unchoke).unwrap();
    drain(&mut s);
    events(&mut s);
    s
}

fn block(size: u64, piece: u32, index: u32) -> BlockRef {
    let l = lengths(size);
    l.block(l.validate_piece_index(piece).unwrap(), index)
        .unwrap()
}

/// The `n`th block of the file, counting across pieces.
fn nth_block(size: u64, n: usize) -> BlockRef {
    let l = lengths(size);
    (0..l.piece_count())
        .flat_map(|piece| l.blocks(l.validate_piece_index(piece).unwrap()))
        .nth(n)
        .expect("the file has that many blocks")
}

#[test]
fn opens_with_handshake_then_bitfield() {
    let mut s = session(3 * u64::from(PIECE_SIZE), 1, Bitfield::full(3));
    let sent = drain(&mut s);
    assert_eq!(sent.len(), 2);
    assert!(
        matches!(&sent[0], Message::Handshake(h) if h.max_requests == 4 && h.peer_id == PeerId([1; 20]))
    );
    assert_eq!(
        sent[1],
        Message::Bitfield(Bytes::from_static(&[0b1110_0000]))
    );
}

#[test]
fn the_handshake_must_come_first_name_our_file_and_not_be_us() {
    let size = u64::from(PIECE_SIZE);
    assert_eq!(
        session(size, 1, Bitfield::new(1)).handle_message(T0, Message::Unchoke),
        Err(SessionError::HandshakeOrder)
    );
    assert_eq!(
        session(size, 1, Bitfield::new(1)).handle_message(T0, handshake(2, 8, 1)),
        Err(SessionError::WrongInfoHash(InfoHash([8; 20])))
    );
    assert_eq!(
        session(size, 1, Bitfield::new(1)).handle_message(T0, handshake(1, 7, 1)),
        Err(SessionError::SelfConnection)
    );
    let mut s = session(size, 1, Bitfield::new(1));
    s.handle_message(T0, handshake(2, 7, 1)).unwrap();
    assert_eq!(
        s.handle_message(T0, Message::Unchoke),
        Err(SessionError::BitfieldMissing)
    );
}

#[test]
fn a_bitfield_of_the_wrong_size_is_refused() {
    let mut s = session(9 * u64::from(PIECE_SIZE), 1, Bitfield::new(9));
    s.handle_message(T0, handshake(2, 7, 1)).unwrap();
    let err = s.handle_message(T0, Message::Bitfield(Bytes::from_static(&[0xFF])));
    assert!(matches!(err, Err(SessionError::BadBitfield(_))), "{err:?}");
}

#[test]
fn ready_reports_the_peer_and_its_pieces() {
    let mut s = session(2 * u64::from(PIECE_SIZE), 1, Bitfield::new(2));
    s.handle_message(T0, handshake(2, 7, 1)).unwrap();
    s.handle_message(T0, Message::Bitfield(Bytes::from_static(&[0b0100_0000])))
        .unwrap();
    let mut expected = Bitfield::new(2);
    expected.set(
        lengths(2 * u64::from(PIECE_SIZE))
            .validate_piece_index(1)
            .unwrap(),
    );
    assert_eq!(
        events(&mut s),
        [SessionEvent::Ready {
            peer_id: PeerId([2; 20]),
            bitfield: expected
        }]
    );
    s.handle_message(T0, Message::Have { piece: 0 }).unwrap();
    s.handle_message(T0, Message::Have { piece: 0 }).unwrap();
    assert_eq!(events(&mut s).len(), 1, "a repeated have is reported once");
    assert_eq!(
        s.handle_message(T0, Message::Have { piece: 2 }),
        Err(SessionError::PieceOutOfRange(2))
    );
}

#[test]
fn our_requests_respect_choking_and_the_peers_limit() {
    let size = 2 * u64::from(PIECE_SIZE);
    let mut s = session(size, 1, Bitfield::new(2));
    s.handle_message(T0, handshake(2, 7, 2)).unwrap();
    s.handle_message(T0, Message::Bitfield(Bytes::from_static(&[0b1100_0000])))
        .unwrap();
    assert!(!s.request(nth_block(size, 0)), "choked");
    s.handle_message(T0, Message::Unchoke).unwrap();
    drain(&mut s);
    assert!(s.request(nth_block(size, 0)));
    assert!(!s.request(nth_block(size, 0)), "already requested");
    assert!(s.request(nth_block(size, 1)));
    assert!(!s.request(nth_block(size, 2)), "the peer accepts two");
    assert_eq!(drain(&mut s).len(), 2);
    // A choke voids them.
    s.handle_message(T0, Message::Choke).unwrap();
    assert_eq!(s.in_flight(), 0);
}

#[test]
fn a_piece_header_alone_gives_the_awaited_block_to_the_caller() {
    let size = u64::from(PIECE_SIZE);
    let b = block(size, 0, 1);
    let header = |data_len: usize| PieceHeader {
        piece: 0,
        offset: b.offset,
        data_len,
    };
    let full = BLOCK_SIZE as usize;
    // Before the handshake and the bitfield, a piece is out of order.
    let mut s = session(size, 1, Bitfield::new(1));
    assert_eq!(
        s.handle_piece_header(T0, header(full)),
        Err(SessionError::HandshakeOrder)
    );
    s.handle_message(T0, handshake(2, 7, 2)).unwrap();
    assert_eq!(
        s.handle_piece_header(T0, header(full)),
        Err(SessionError::BitfieldMissing)
    );
    let mut s = ready(size, Bitfield::new(1));
    assert_eq!(s.handle_piece_header(T0, header(full)), Ok(None));
    assert!(s.request(b));
    assert!(matches!(
        s.handle_piece_header(T0, header(full - 1)),
        Err(SessionError::BadBlock { .. })
    ));
    assert_eq!(s.handle_piece_header(T0, header(full)), Ok(Some(b)));
    assert_eq!(s.in_flight(), 0);
    assert!(
        events(&mut s).is_empty(),
        "the caller has the block, not an event"
    );
    // Only once.
    assert_eq!(s.handle_piece_header(T0, header(full)), Ok(None));
}

#[test]
fn received_blocks_must_answer_a_request() {
    let size = u64::from(PIECE_SIZE);
    let mut s = ready(size, Bitfield::new(1));
    let b = block(size, 0, 1);
    let data = Bytes::from(vec![5u8; BLOCK_SIZE as usize]);
    let piece = |data: Bytes| Message::Piece {
        piece: 0,
        offset: b.offset,
        data,
    };
    s.handle_message(T0, piece(data.clone())).unwrap();
    assert!(events(&mut s).is_empty(), "an unrequested block is dropped");
    assert!(s.request(b));
    s.handle_message(T0, piece(data.clone())).unwrap();
    assert_eq!(
        events(&mut s),
        [SessionEvent::BlockReceived {
            block: b,
            data: data.clone()
        }]
    );
    assert!(matches!(
        s.handle_message(T0, piece(data.slice(1..))),
        Err(SessionError::BadBlock { .. })
    ));
    // A reject frees the slot and is reported.
    assert!(s.request(b));
    s.handle_message(T0, Message::Reject(b.into())).unwrap();
    assert_eq!(events(&mut s), [SessionEvent::RequestRejected(b)]);
    assert_eq!(s.in_flight(), 0);
}

#[test]
fn serving_only_what_we_have_to_an_unchoked_peer_within_our_limit() {
    // We have every piece but the last, which gives more blocks than our limit.
    let size = 4 * u64::from(PIECE_SIZE);
    let l = lengths(size);
    let mut ours = Bitfield::new(4);
    for piece in 0..3 {
        ours.set(l.validate_piece_index(piece).unwrap());
    }
    let mut s = ready(size, ours);
    let request =
        |s: &mut PeerSession, b: BlockRef| s.handle_message(T0, Message::Request(b.into()));
    // Choked: rejected.
    request(&mut s, nth_block(size, 0)).unwrap();
    assert_eq!(drain(&mut s), [Message::Reject(nth_block(size, 0).into())]);
    s.set_choking(false);
    drain(&mut s);
    // A piece we lack: rejected.
    request(&mut s, block(size, 3, 0)).unwrap();
    assert_eq!(drain(&mut s), [Message::Reject(block(size, 3, 0).into())]);
    // Four accepted (our limit), the fifth rejected.
    for i in 0..5 {
        request(&mut s, nth_block(size, i)).unwrap();
    }
    let requested: Vec<_> = events(&mut s);
    assert_eq!(requested.len(), 4);
    assert_eq!(drain(&mut s), [Message::Reject(nth_block(size, 4).into())]);
    // Cancelled requests are not served.
    s.handle_message(T0, Message::Cancel(nth_block(size, 0).into()))
        .unwrap();
    assert!(events(&mut s).contains(&SessionEvent::RequestCancelled(nth_block(size, 0))));
    s.send_piece(
        nth_block(size, 0),
        Bytes::from(vec![0; BLOCK_SIZE as usize]),
    );
    s.send_piece(
        nth_block(size, 1),
        Bytes::from(vec![1; BLOCK_SIZE as usize]),
    );
    let sent = drain(&mut s);
    assert!(
        sent.iter()
            .all(|m| !matches!(m, Message::Piece { offset: 0, .. })),
        "{sent:?}"
    );
    assert!(sent
        .iter()
        .any(|m| matches!(m, Message::Piece { offset, .. } if *offset == BLOCK_SIZE)));
    // Out-of-range requests are violations.
    assert!(matches!(
        s.handle_message(
            T0,
            Message::Request(BlockRequest {
                piece: 9,
                offset: 0,
                length: 1
            })
        ),
        Err(SessionError::BadBlock { .. })
    ));
}

#[test]
fn keepalives_and_idle_timeout() {
    let mut s = ready(u64::from(PIECE_SIZE), Bitfield::new(1));
    let config = SessionConfig::default();
    assert_eq!(s.poll_timeout(), config.keepalive_interval);
    s.handle_timeout(config.keepalive_interval).unwrap();
    // The keep-alive waits for the driver: the deadline moves on, never stays in the past.
    assert!(
        s.poll_timeout() > config.keepalive_interval,
        "a deadline already past while the keep-alive waits: {:?}",
        s.poll_timeout()
    );
    assert_eq!(
        s.poll_transmit(config.keepalive_interval),
        Some(Message::KeepAlive)
    );
    assert_eq!(
        s.handle_timeout(config.idle_timeout),
        Err(SessionError::TimedOut)
    );
}
