use super::*;
use mtorrent_shared::tracker::DEFAULT_NUMWANT;
use rand::rngs::StdRng;
use rand::SeedableRng;

const SECOND: Duration = Duration::from_secs(1);

fn limits() -> RegistryLimits {
    RegistryLimits {
        interval: Duration::from_secs(30),
        peer_timeout: Duration::from_secs(90),
        max_swarms_per_connection: 3,
        max_numwant: 200,
    }
}

fn announce(info: u8, peer: u8, event: AnnounceEvent, left: u64) -> Announce {
    Announce {
        info_hash: InfoHash([info; 20]),
        peer_id: PeerId([peer; 20]),
        event,
        address: PeerAddress::Native {
            url: format!("ws://127.0.0.1:{}/peer", 6000 + u16::from(peer)),
        },
        left,
        numwant: DEFAULT_NUMWANT,
        metainfo: None,
    }
}

fn peers_of(reply: &FromTracker) -> Vec<PeerId> {
    let FromTracker::Peers { peers, .. } = reply else {
        panic!("expected peers, got {reply:?}");
    };
    peers.iter().map(|p| p.peer_id).collect()
}

#[test]
fn announce_returns_other_peers_never_the_asker() {
    let mut registry = Registry::new(limits());
    let mut rng = StdRng::seed_from_u64(1);
    let mut sync = Vec::new();
    for peer in 1..=5u8 {
        let reply = registry
            .handle_announce(
                u64::from(peer),
                &announce(9, peer, AnnounceEvent::Started, 10),
                SECOND,
                &mut rng,
                &mut sync,
            )
            .unwrap();
        let others = peers_of(&reply);
        assert_eq!(others.len(), usize::from(peer - 1));
        assert!(!others.contains(&PeerId([peer; 20])));
    }
    assert_eq!(sync.len(), 5, "every announce reaches the twin");
    assert_eq!(
        registry.counts(),
        RegistryCounts {
            swarms: 1,
            peers: 5,
            seeders: 0,
            peer_connections: 5,
        }
    );
}

#[test]
fn sampling_is_bounded_by_numwant_and_distinct() {
    for swarm_size in [3u8, 40, 200] {
        for numwant in [0u32, 1, 5, 20, 199, 500] {
            let mut registry = Registry::new(limits());
            let mut rng = StdRng::seed_from_u64(u64::from(numwant) * 1000 + u64::from(swarm_size));
            let mut sync = Vec::new();
            for peer in 1..=swarm_size {
                let mut a = announce(1, peer, AnnounceEvent::Started, 0);
                a.numwant = numwant;
                let reply = registry
                    .handle_announce(u64::from(peer), &a, SECOND, &mut rng, &mut sync)
                    .unwrap();
                let mut got = peers_of(&reply);
                let expected = (numwant as usize).min(usize::from(peer) - 1);
                assert_eq!(got.len(), expected, "swarm {swarm_size}, numwant {numwant}");
                assert!(!got.contains(&a.peer_id));
                got.sort();
                got.dedup();
                assert_eq!(got.len(), expected, "no duplicates");
            }
        }
    }
}

#[test]
fn a_peer_id_belongs_to_the_connection_that_registered_it() {
    let mut registry = Registry::new(limits());
    let mut rng = StdRng::seed_from_u64(2);
    let mut sync = Vec::new();
    let a = announce(1, 7, AnnounceEvent::Started, 5);
    registry
        .handle_announce(1, &a, SECOND, &mut rng, &mut sync)
        .unwrap();
    let hijack = registry.handle_announce(2, &a, SECOND, &mut rng, &mut sync);
    assert_eq!(hijack.unwrap_err().0, ErrorCode::PeerIdTaken);
    let leave = registry.handle_leave(2, a.info_hash, a.peer_id, &mut sync);
    assert_eq!(leave.unwrap_err().0, ErrorCode::PeerIdTaken);
    assert_eq!(registry.counts().peers, 1);
    // Once the owner's connection closes, the id is free again.
    registry.handle_connection_closed(1, &mut sync);
    assert!(registry
        .handle_announce(2, &a, SECOND, &mut rng, &mut sync)
        .is_ok());
}

#[test]
fn stopped_leave_and_close_remove_peers_and_tell_the_twin() {
    let mut registry = Registry::new(limits());
    let mut rng = StdRng::seed_from_u64(3);
    let mut sync = Vec::new();
    registry
        .handle_announce(
            1,
            &announce(1, 1, AnnounceEvent::Started, 0),
            SECOND,
            &mut rng,
            &mut sync,
        )
        .unwrap();
    registry
        .handle_announce(
            1,
            &announce(2, 1, AnnounceEvent::Started, 0),
            SECOND,
            &mut rng,
            &mut sync,
        )
        .unwrap();
    registry
        .handle_announce(
            2,
            &announce(1, 2, AnnounceEvent::Started, 9),
            SECOND,
            &mut rng,
            &mut sync,
        )
        .unwrap();
    sync.clear();
    registry
        .handle_announce(
            1,
            &announce(1, 1, AnnounceEvent::Stopped, 0),
            SECOND,
            &mut rng,
            &mut sync,
        )
        .unwrap();
    registry
        .handle_leave(2, InfoHash([1; 20]), PeerId([2; 20]), &mut sync)
        .unwrap();
    assert_eq!(
        registry.counts(),
        RegistryCounts {
            swarms: 1,
            peers: 1,
            seeders: 1,
            peer_connections: 1,
        }
    );
    registry.handle_connection_closed(1, &mut sync);
    assert_eq!(registry.counts(), RegistryCounts::default());
    assert_eq!(sync.len(), 3);
    assert!(sync
        .iter()
        .all(|m| matches!(m, ToTracker::SyncPeerRemoved { .. })));
}

#[test]
fn swarms_per_connection_are_limited() {
    let mut registry = Registry::new(limits());
    let mut rng = StdRng::seed_from_u64(4);
    let mut sync = Vec::new();
    for info in 1..=3 {
        registry
            .handle_announce(
                1,
                &announce(info, 1, AnnounceEvent::Started, 0),
                SECOND,
                &mut rng,
                &mut sync,
            )
            .unwrap();
    }
    let fourth = registry.handle_announce(
        1,
        &announce(4, 1, AnnounceEvent::Started, 0),
        SECOND,
        &mut rng,
        &mut sync,
    );
    assert_eq!(fourth.unwrap_err().0, ErrorCode::TooManySwarms);
    // Re-announcing in a swarm it is already in is fine.
    assert!(registry
        .handle_announce(
            1,
            &announce(2, 1, AnnounceEvent::Update, 0),
            SECOND,
            &mut rng,
            &mut sync
        )
        .is_ok());
}

#[test]
fn silent_peers_expire() {
    let mut registry = Registry::new(limits());
    let mut rng = StdRng::seed_from_u64(5);
    let mut sync = Vec::new();
    registry
        .handle_announce(
            1,
            &announce(1, 1, AnnounceEvent::Started, 0),
            SECOND,
            &mut rng,
            &mut sync,
        )
        .unwrap();
    registry
        .handle_announce(
            2,
            &announce(1, 2, AnnounceEvent::Started, 0),
            50 * SECOND,
            &mut rng,
            &mut sync,
        )
        .unwrap();
    registry.apply_twin_peer(
        SyncPeer {
            info_hash: InfoHash([1; 20]),
            peer: PeerInfo {
                peer_id: PeerId([3; 20]),
                address: PeerAddress::Browser,
                complete: false,
            },
        },
        SECOND,
    );
    sync.clear();
    registry.expire(91 * SECOND + Duration::from_millis(1), &mut sync);
    assert_eq!(
        registry.counts().peers,
        1,
        "only the peer seen at 50 s is left"
    );
    assert_eq!(sync.len(), 1, "the twin hears about local expiries only");
}

#[test]
fn twin_state_replaces_twin_records_and_never_local_ones() {
    let mut registry = Registry::new(limits());
    let mut rng = StdRng::seed_from_u64(6);
    let mut sync = Vec::new();
    registry
        .handle_announce(
            1,
            &announce(1, 1, AnnounceEvent::Started, 0),
            SECOND,
            &mut rng,
            &mut sync,
        )
        .unwrap();
    let twin_peer = |peer: u8| SyncPeer {
        info_hash: InfoHash([1; 20]),
        peer: PeerInfo {
            peer_id: PeerId([peer; 20]),
            address: PeerAddress::Browser,
            complete: true,
        },
    };
    registry.apply_twin_peer(twin_peer(2), SECOND);
    registry.apply_twin_peer(twin_peer(1), SECOND);
    assert_eq!(
        registry.owner(InfoHash([1; 20]), PeerId([1; 20])),
        Some(Owner::Local(1))
    );
    registry.replace_twin_state(vec![twin_peer(3)], SECOND);
    assert_eq!(registry.owner(InfoHash([1; 20]), PeerId([2; 20])), None);
    assert_eq!(
        registry.owner(InfoHash([1; 20]), PeerId([3; 20])),
        Some(Owner::Twin)
    );
    assert_eq!(registry.local_state().len(), 1);
    registry.apply_twin_removal(InfoHash([1; 20]), PeerId([1; 20]));
    assert_eq!(
        registry.counts().peers,
        2,
        "the twin cannot remove a local peer"
    );
}

#[test]
fn bad_addresses_are_refused() {
    let mut registry = Registry::new(limits());
    let mut a = announce(1, 1, AnnounceEvent::Started, 0);
    a.address = PeerAddress::Native {
        url: "http://x/".into(),
    };
    let result = registry.handle_announce(
        1,
        &a,
        SECOND,
        &mut StdRng::seed_from_u64(7),
        &mut Vec::new(),
    );
    assert_eq!(result.unwrap_err().0, ErrorCode::BadAddress);
}

#[test]
fn one_node_announces_many_swarms_over_one_connection_and_is_never_refused() {
    let mut registry = Registry::new(limits());
    let mut rng = StdRng::seed_from_u64(3);
    let mut sync = Vec::new();
    // Within the per-connection limit (3 in these tests), every swarm of one peer id, on one
    // connection, is accepted, again and again.
    for round in 0..3 {
        for swarm in 1..=3u8 {
            let event = if round == 0 {
                AnnounceEvent::Started
            } else {
                AnnounceEvent::Update
            };
            registry
                .handle_announce(
                    1,
                    &announce(swarm, 7, event, 0),
                    SECOND,
                    &mut rng,
                    &mut sync,
                )
                .unwrap();
        }
    }
    let counts = registry.counts();
    assert_eq!((counts.swarms, counts.peers), (3, 3));
    assert_eq!(counts.peer_connections, 1);
    // The same peer id from another connection is still refused.
    let hijack = registry.handle_announce(
        2,
        &announce(4, 7, AnnounceEvent::Started, 0),
        SECOND,
        &mut rng,
        &mut sync,
    );
    assert_eq!(hijack.unwrap_err().0, ErrorCode::PeerIdTaken);
}
