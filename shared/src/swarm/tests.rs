use super::net::{file, Net, STEP};
use super::*;
use crate::{BLOCK_SIZE, PIECE_SIZE};

const T0: Duration = Duration::ZERO;

fn core(size: u64, id: u8, have: Bitfield, config: SwarmConfig) -> Swarm {
    let lengths = Lengths::new(size).unwrap();
    Swarm::new(
        lengths,
        InfoHash([7; 20]),
        PeerId([id; 20]),
        have,
        config,
        1,
    )
    .unwrap()
}

/// Carries every queued message from `a`'s connection `ka` to `b`'s `kb`, through the codec.
fn pump(a: &mut Swarm, ka: PeerKey, b: &mut Swarm, kb: PeerKey) -> Vec<Message> {
    let mut sent = Vec::new();
    while let Some(m) = a.poll_transmit(ka, T0) {
        let m = Message::decode_frame(m.to_bytes()).unwrap();
        sent.push(m.clone());
        b.handle_message(kb, T0, m).unwrap();
    }
    sent
}

fn events(s: &mut Swarm) -> Vec<SwarmEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn wakeups(s: &mut Swarm) -> Vec<PeerKey> {
    std::iter::from_fn(|| s.poll_wakeup()).collect()
}

#[test]
fn a_seeder_and_a_leecher_transfer_a_whole_file_through_the_codec() {
    for zero_copy in [false, true] {
        for size in [1usize, 70_000, PIECE_SIZE as usize * 3 + 12_345] {
            let mut net = Net::new(file(size, 3), SwarmConfig::default());
            let pieces = net.lengths.piece_count();
            net.add_node(Bitfield::full(pieces), false, false);
            let leecher = net.add_node(Bitfield::new(pieces), false, zero_copy);
            net.connect(leecher, 0);
            net.drive_bounded(100);
            let node = &net.nodes[leecher];
            assert_eq!(node.data, net.truth, "size {size}");
            let stats = node.swarm.stats();
            assert_eq!(stats.fetched_pieces, pieces);
            assert_eq!(stats.failed_pieces, 0);
            assert_eq!(stats.peers, 1);
            assert!(!node.swarm.is_downloading());
            assert_eq!(net.nodes[0].swarm.stats().uploaded, size as u64);
        }
    }
}

#[test]
fn a_liar_is_banned_and_the_file_still_arrives() {
    let size = PIECE_SIZE as usize * 4;
    let mut net = Net::new(file(size, 9), SwarmConfig::default());
    let pieces = net.lengths.piece_count();
    let liar = net.add_node(Bitfield::full(pieces), true, false);
    let leecher = net.add_node(Bitfield::new(pieces), false, false);
    net.connect(leecher, liar);
    for _ in 0..50 {
        net.step();
    }
    // The liar alone cannot deliver: every piece fails, and it is banned at the third (a
    // fourth, already in flight, fails too).
    let stats = net.nodes[leecher].swarm.stats();
    assert!((3..=4).contains(&stats.failed_pieces), "{stats:?}");
    assert_eq!(stats.peers, 0);
    let seeder = net.add_node(Bitfield::full(pieces), false, false);
    net.connect(leecher, seeder);
    net.drive_bounded(200);
    assert_eq!(net.nodes[leecher].data, net.truth);
}

#[test]
fn a_second_connection_to_the_same_peer_is_closed() {
    let size = 70_000;
    let mut seeder = core(size, 1, Bitfield::full(1), SwarmConfig::default());
    let mut leecher = core(size, 2, Bitfield::new(1), SwarmConfig::default());
    let (s1, l1) = (seeder.add_peer(T0), leecher.add_peer(T0));
    let (s2, l2) = (seeder.add_peer(T0), leecher.add_peer(T0));
    pump(&mut seeder, s1, &mut leecher, l1);
    assert!(leecher.is_connected(PeerId([1; 20])));
    pump(&mut seeder, s2, &mut leecher, l2);
    assert_eq!(
        events(&mut leecher),
        [SwarmEvent::Close {
            peer: l2,
            reason: CloseReason::Duplicate
        }]
    );
    assert_eq!(leecher.peer_count(), 1);
    assert!(leecher.poll_transmit(l2, T0).is_none());
    leecher.handle_peer_closed(l2);
    assert!(leecher.is_connected(PeerId([1; 20])));
}

#[test]
fn a_swarm_that_offers_nothing_incomplete_keeps_peers_choked_until_it_is_complete() {
    let size = u64::from(PIECE_SIZE) * 2;
    let config = SwarmConfig {
        offer_incomplete: false,
        ..SwarmConfig::default()
    };
    let mut half = Bitfield::new(2);
    half.set_bit(0);
    let mut quiet = core(size, 1, half, config.clone());
    let mut other = core(size, 2, Bitfield::new(2), SwarmConfig::default());
    assert_eq!(quiet.offered().count_ones(), 0);
    let (kq, ko) = (quiet.add_peer(T0), other.add_peer(T0));
    pump(&mut quiet, kq, &mut other, ko);
    pump(&mut other, ko, &mut quiet, kq);
    let bitfield = other.session(ko).unwrap().peer_bitfield().unwrap();
    assert_eq!(bitfield.count_ones(), 0);
    // Even asked, it keeps choking and rejects.
    quiet.handle_message(kq, T0, Message::Interested).unwrap();
    let block = quiet.lengths().validate_block(0, 0, BLOCK_SIZE).unwrap();
    quiet
        .handle_message(kq, T0, Message::Request(block.into()))
        .unwrap();
    assert!(events(&mut quiet).is_empty());
    let sent: Vec<Message> = std::iter::from_fn(|| quiet.poll_transmit(kq, T0)).collect();
    assert_eq!(sent, [Message::Reject(block.into())]);
    // Complete, it offers everything to new connections.
    let complete = core(size, 1, Bitfield::full(2), config);
    assert!(complete.is_offering());
    assert_eq!(complete.offered().count_ones(), 2);
}

#[test]
fn a_swarm_that_does_not_download_requests_nothing() {
    let size = 70_000;
    let config = SwarmConfig {
        downloading: false,
        ..SwarmConfig::default()
    };
    let mut seeder = core(size, 1, Bitfield::full(1), SwarmConfig::default());
    let mut reader = core(size, 2, Bitfield::new(1), config);
    assert!(!reader.is_downloading());
    let (ks, kr) = (seeder.add_peer(T0), reader.add_peer(T0));
    pump(&mut seeder, ks, &mut reader, kr);
    let sent = pump(&mut reader, kr, &mut seeder, ks);
    assert!(sent
        .iter()
        .all(|m| matches!(m, Message::Handshake(_) | Message::Bitfield(_))));
}

#[test]
fn a_verified_piece_is_announced_to_every_peer_and_wakes_them() {
    let size = u64::from(PIECE_SIZE) * 2;
    let mut seeder = core(size, 1, Bitfield::full(2), SwarmConfig::default());
    let mut leecher = core(size, 2, Bitfield::new(2), SwarmConfig::default());
    let mut other = core(size, 3, Bitfield::new(2), SwarmConfig::default());
    let (ks, kl) = (seeder.add_peer(T0), leecher.add_peer(T0));
    let (ko, klo) = (other.add_peer(T0), leecher.add_peer(T0));
    pump(&mut seeder, ks, &mut leecher, kl);
    pump(&mut other, ko, &mut leecher, klo);
    pump(&mut leecher, klo, &mut other, ko);
    // Interested, then Unchoke, then requests.
    pump(&mut leecher, kl, &mut seeder, ks);
    pump(&mut seeder, ks, &mut leecher, kl);
    let requests: Vec<BlockRef> = pump(&mut leecher, kl, &mut seeder, ks)
        .into_iter()
        .filter_map(|m| match m {
            Message::Request(r) => seeder.lengths().validate_block(r.piece, r.offset, r.length),
            _ => None,
        })
        .collect();
    assert_eq!(requests.len(), 4, "both pieces, two blocks each");
    for event in events(&mut seeder) {
        let SwarmEvent::ReadBlock { peer, block } = event else {
            panic!("unexpected {event:?}");
        };
        seeder.send_block(peer, block, Bytes::from(vec![0; block.length as usize]));
    }
    let _ = wakeups(&mut leecher);
    pump(&mut seeder, ks, &mut leecher, kl);
    let mut verify = Vec::new();
    for event in events(&mut leecher) {
        match event {
            SwarmEvent::WriteBlock { .. } => {}
            SwarmEvent::VerifyPiece(piece) => verify.push(piece),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(verify.len(), 2);
    assert_eq!(leecher.pieces_verifying(), 2);
    leecher.handle_piece_verified(verify[0], true);
    leecher.handle_piece_verified(verify[1], false);
    assert!(wakeups(&mut leecher).contains(&klo));
    let to_other = pump(&mut leecher, klo, &mut other, ko);
    assert!(to_other.contains(&Message::Have {
        piece: verify[0].get()
    }));
    let stats = leecher.stats();
    assert_eq!(
        (stats.pieces, stats.fetched_pieces, stats.failed_pieces),
        (1, 1, 1)
    );
    assert_eq!(stats.bytes, u64::from(PIECE_SIZE));
    // The failed piece is asked for again.
    let again = pump(&mut leecher, kl, &mut seeder, ks);
    assert_eq!(
        again
            .iter()
            .filter(|m| matches!(m, Message::Request(_)))
            .count(),
        2
    );
}

#[test]
fn requests_pause_while_too_many_pieces_await_verification() {
    let size = u64::from(PIECE_SIZE) * 3;
    let mut config = SwarmConfig {
        max_pieces_verifying: 1,
        ..SwarmConfig::default()
    };
    // One piece (two blocks) in flight at a time.
    config.scheduler.max_in_flight_per_peer = 2;
    let mut seeder = core(size, 1, Bitfield::full(3), SwarmConfig::default());
    let mut node = core(size, 2, Bitfield::new(3), config);
    let (ks, kl) = (seeder.add_peer(T0), node.add_peer(T0));
    let mut pending = None;
    for _ in 0..10 {
        pump(&mut seeder, ks, &mut node, kl);
        for event in events(&mut node) {
            if let SwarmEvent::VerifyPiece(piece) = event {
                pending.get_or_insert(piece);
            }
        }
        pump(&mut node, kl, &mut seeder, ks);
        for event in events(&mut seeder) {
            if let SwarmEvent::ReadBlock { peer, block } = event {
                seeder.send_block(peer, block, Bytes::from(vec![0; block.length as usize]));
            }
        }
    }
    assert_eq!(node.pieces_verifying(), 1);
    assert_eq!(
        node.scheduler().in_flight(kl),
        0,
        "no request while a piece waits"
    );
    node.handle_piece_verified(pending.unwrap(), true);
    let sent: Vec<Message> = std::iter::from_fn(|| node.poll_transmit(kl, T0)).collect();
    assert!(sent.iter().any(|m| matches!(m, Message::Request(_))));
}

#[test]
fn timers_queue_keepalives_time_out_requests_and_close_silent_peers() {
    let size = u64::from(BLOCK_SIZE) * 2;
    let config = SwarmConfig::default();
    let (keepalive, idle, request) = (
        config.session.keepalive_interval,
        config.session.idle_timeout,
        config.scheduler.request_timeout,
    );
    let mut seeder = core(size, 1, Bitfield::full(1), SwarmConfig::default());
    let mut leecher = core(size, 2, Bitfield::new(1), config);
    assert_eq!(leecher.poll_timeout(), None);
    let (ks, kl) = (seeder.add_peer(T0), leecher.add_peer(T0));
    pump(&mut seeder, ks, &mut leecher, kl);
    pump(&mut leecher, kl, &mut seeder, ks);
    pump(&mut seeder, ks, &mut leecher, kl);
    pump(&mut leecher, kl, &mut seeder, ks);
    assert_eq!(leecher.scheduler().in_flight(kl), 2);
    // The request deadline comes first, then the keep-alive.
    assert_eq!(leecher.poll_timeout(), Some(request.min(keepalive)));
    leecher.handle_timeout(keepalive);
    assert_eq!(leecher.scheduler().in_flight(kl), 0);
    assert_eq!(wakeups(&mut leecher), [kl]);
    let sent: Vec<Message> = std::iter::from_fn(|| leecher.poll_transmit(kl, keepalive)).collect();
    assert!(sent.iter().any(|m| matches!(m, Message::Cancel(_))));
    leecher.handle_timeout(idle);
    assert_eq!(
        events(&mut leecher),
        [SwarmEvent::Close {
            peer: kl,
            reason: CloseReason::TimedOut
        }]
    );
    assert_eq!(leecher.peer_count(), 0);
    assert_eq!(leecher.poll_timeout(), None);
    leecher.handle_peer_closed(kl);
    assert!(leecher.session(kl).is_none());
}

#[test]
fn peers_that_leave_hand_their_requests_to_others() {
    let size = PIECE_SIZE as usize * 2;
    let mut net = Net::new(file(size, 5), SwarmConfig::default());
    net.add_node(Bitfield::full(2), false, false);
    net.add_node(Bitfield::full(2), false, false);
    let leecher = net.add_node(Bitfield::new(2), false, false);
    net.connect_to_all(leecher);
    net.step();
    net.step();
    net.remove_node(1);
    let rounds = net.drive_bounded(100);
    assert!(rounds < 20, "took {rounds} rounds of {STEP:?}");
    assert_eq!(net.nodes[leecher].data, net.truth);
}
