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

fn twin_peer(info: u8, peer: u8) -> SyncPeer {
    SyncPeer {
        info_hash: InfoHash([info; 20]),
        peer: PeerInfo {
            peer_id: PeerId([peer; 20]),
            address: PeerAddress::Native {
                url: format!("ws://127.0.0.1:{}/", 7000 + u16::from(peer)),
            },
            complete: true,
        },
    }
}

#[test]
fn a_peer_id_at_the_twin_is_bound_there_while_the_twins_are_linked() {
    let mut registry = Registry::new(limits());
    let mut rng = StdRng::seed_from_u64(8);
    let mut sync = Vec::new();
    registry.set_twin_linked(true);
    registry.apply_twin_peer(twin_peer(1, 7), SECOND);
    // Nobody here may announce, stop or leave for it: its owner is connected at the twin.
    for event in [AnnounceEvent::Started, AnnounceEvent::Stopped] {
        let hijack =
            registry.handle_announce(2, &announce(1, 7, event, 0), SECOND, &mut rng, &mut sync);
        assert_eq!(hijack.unwrap_err().0, ErrorCode::PeerIdTaken);
    }
    let leave = registry.handle_leave(2, InfoHash([1; 20]), PeerId([7; 20]), &mut sync);
    assert_eq!(leave.unwrap_err().0, ErrorCode::PeerIdTaken);
    assert_eq!(
        registry.owner(InfoHash([1; 20]), PeerId([7; 20])),
        Some(Owner::Twin)
    );
    assert!(sync.is_empty(), "nothing reached the twin");
    // With the twin gone, its peer may move here (a failover), and then the id is bound here.
    registry.set_twin_linked(false);
    registry
        .handle_announce(
            2,
            &announce(1, 7, AnnounceEvent::Started, 0),
            SECOND,
            &mut rng,
            &mut sync,
        )
        .unwrap();
    assert_eq!(
        registry.owner(InfoHash([1; 20]), PeerId([7; 20])),
        Some(Owner::Local(2))
    );
    assert_eq!(registry.counts().peers, 1);
    registry.apply_twin_peer(twin_peer(1, 7), SECOND);
    assert_eq!(
        registry.owner(InfoHash([1; 20]), PeerId([7; 20])),
        Some(Owner::Local(2))
    );
}

#[test]
fn a_stop_or_leave_never_removes_a_record_its_connection_does_not_own() {
    let mut registry = Registry::new(limits());
    let mut rng = StdRng::seed_from_u64(9);
    let mut sync = Vec::new();
    // The twin link is down, so the id is free here; still, only a record of one's own goes.
    registry.apply_twin_peer(twin_peer(1, 7), SECOND);
    registry
        .handle_announce(
            2,
            &announce(1, 7, AnnounceEvent::Stopped, 0),
            SECOND,
            &mut rng,
            &mut sync,
        )
        .unwrap();
    registry
        .handle_leave(2, InfoHash([1; 20]), PeerId([7; 20]), &mut sync)
        .unwrap();
    assert_eq!(
        registry.owner(InfoHash([1; 20]), PeerId([7; 20])),
        Some(Owner::Twin)
    );
    assert!(sync.is_empty());
}

#[test]
fn a_peer_id_is_free_again_once_its_connection_left_every_swarm() {
    let mut registry = Registry::new(limits());
    let mut rng = StdRng::seed_from_u64(10);
    let mut sync = Vec::new();
    for swarm in [1, 2] {
        registry
            .handle_announce(
                1,
                &announce(swarm, 7, AnnounceEvent::Started, 0),
                SECOND,
                &mut rng,
                &mut sync,
            )
            .unwrap();
    }
    registry
        .handle_leave(1, InfoHash([1; 20]), PeerId([7; 20]), &mut sync)
        .unwrap();
    let early = registry.handle_announce(
        2,
        &announce(3, 7, AnnounceEvent::Started, 0),
        SECOND,
        &mut rng,
        &mut sync,
    );
    assert_eq!(
        early.unwrap_err().0,
        ErrorCode::PeerIdTaken,
        "still in swarm 2"
    );
    registry
        .handle_announce(
            1,
            &announce(2, 7, AnnounceEvent::Stopped, 0),
            SECOND,
            &mut rng,
            &mut sync,
        )
        .unwrap();
    assert_eq!(registry.counts(), RegistryCounts::default());
    registry
        .handle_announce(
            2,
            &announce(3, 7, AnnounceEvent::Started, 0),
            SECOND,
            &mut rng,
            &mut sync,
        )
        .unwrap();
}

/// One step of the registry's life, for the property test.
#[derive(Debug, Clone)]
enum Step {
    Announce {
        conn: u64,
        info: u8,
        peer: u8,
        event: u8,
        complete: bool,
    },
    Leave {
        conn: u64,
        info: u8,
        peer: u8,
    },
    Close {
        conn: u64,
    },
    TwinPeer {
        info: u8,
        peer: u8,
    },
    TwinRemoval {
        info: u8,
        peer: u8,
    },
    TwinState {
        peers: Vec<(u8, u8)>,
    },
    TwinLinked(bool),
    Expire {
        after_secs: u64,
    },
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (1..4u64, 1..4u8, 1..6u8, 0..3u8, any::<bool>()).prop_map(|(conn, info, peer, event, complete)| Step::Announce { conn, info, peer, event, complete }),
        1 => (1..4u64, 1..4u8, 1..6u8).prop_map(|(conn, info, peer)| Step::Leave { conn, info, peer }),
        1 => (1..4u64).prop_map(|conn| Step::Close { conn }),
        2 => (1..4u8, 1..8u8).prop_map(|(info, peer)| Step::TwinPeer { info, peer }),
        1 => (1..4u8, 1..8u8).prop_map(|(info, peer)| Step::TwinRemoval { info, peer }),
        1 => proptest::collection::vec((1..4u8, 1..8u8), 0..4).prop_map(|peers| Step::TwinState { peers }),
        1 => any::<bool>().prop_map(Step::TwinLinked),
        1 => (0..200u64).prop_map(|after_secs| Step::Expire { after_secs }),
    ]
}

/// The totals, counted the slow way from the records themselves.
fn recount(registry: &Registry) -> RegistryCounts {
    let records = registry
        .swarms
        .values()
        .flat_map(|swarm| swarm.peers.values());
    let local_connections: HashSet<ConnectionId> = records
        .clone()
        .filter_map(|record| match record.owner {
            Owner::Local(conn) => Some(conn),
            Owner::Twin => None,
        })
        .collect();
    RegistryCounts {
        swarms: registry.swarms.len(),
        peers: records.clone().count(),
        seeders: records.filter(|record| record.complete).count(),
        peer_connections: local_connections.len(),
    }
}

proptest::proptest! {
    /// Whatever happens, the kept counts match the records, a peer id is never held by two
    /// connections, and no swarm is left empty.
    #[test]
    fn counts_and_bindings_always_match_the_records(steps in proptest::collection::vec(step(), 1..60)) {
        let mut registry = Registry::new(limits());
        let mut rng = StdRng::seed_from_u64(11);
        let mut now = SECOND;
        for step in steps {
            let mut sync = Vec::new();
            match step {
                Step::Announce { conn, info, peer, event, complete } => {
                    let event = [AnnounceEvent::Started, AnnounceEvent::Update, AnnounceEvent::Stopped][usize::from(event)];
                    let _ = registry.handle_announce(conn, &announce(info, peer, event, u64::from(!complete)), now, &mut rng, &mut sync);
                }
                Step::Leave { conn, info, peer } => {
                    let _ = registry.handle_leave(conn, InfoHash([info; 20]), PeerId([peer; 20]), &mut sync);
                }
                Step::Close { conn } => registry.handle_connection_closed(conn, &mut sync),
                Step::TwinPeer { info, peer } => registry.apply_twin_peer(twin_peer(info, peer), now),
                Step::TwinRemoval { info, peer } => registry.apply_twin_removal(InfoHash([info; 20]), PeerId([peer; 20])),
                Step::TwinState { peers } => registry.replace_twin_state(peers.into_iter().map(|(i, p)| twin_peer(i, p)).collect(), now),
                Step::TwinLinked(linked) => registry.set_twin_linked(linked),
                Step::Expire { after_secs } => {
                    now += Duration::from_secs(after_secs);
                    registry.expire(now, &mut sync);
                }
            }
            proptest::prop_assert_eq!(registry.counts(), recount(&registry));
            proptest::prop_assert!(registry.swarms.values().all(|swarm| !swarm.peers.is_empty()));
            let mut owners: HashMap<PeerId, ConnectionId> = HashMap::new();
            for swarm in registry.swarms.values() {
                for (peer_id, record) in &swarm.peers {
                    if let Owner::Local(conn) = record.owner {
                        proptest::prop_assert_eq!(*owners.entry(*peer_id).or_insert(conn), conn);
                        proptest::prop_assert_eq!(registry.bindings[peer_id].conn, conn);
                    }
                }
            }
            let bound_records: usize = registry.bindings.values().map(|b| b.records).sum();
            let local_records = registry.swarms.values().flat_map(|s| s.peers.values()).filter(|r| matches!(r.owner, Owner::Local(_))).count();
            proptest::prop_assert_eq!(bound_records, local_records);
        }
    }
}
