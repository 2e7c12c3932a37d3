use super::*;

const S: Duration = Duration::from_secs(1);
const HEDGE: Duration = Duration::from_millis(300);

fn urls() -> [String; 2] {
    ["ws://one/ws".into(), "ws://two/ws".into()]
}

fn announcer() -> Announcer {
    Announcer::new(
        urls(),
        PeerId([1; 20]),
        AnnouncerConfig::default(),
        Duration::ZERO,
    )
}

fn actions(a: &mut Announcer) -> Vec<Action> {
    std::iter::from_fn(|| a.poll_action()).collect()
}

fn announces(actions: &[Action]) -> Vec<(InfoHash, AnnounceEvent, bool)> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Send(ToTracker::Announce(a)) => {
                Some((a.info_hash, a.event, a.metainfo.is_some()))
            }
            _ => None,
        })
        .collect()
}

fn peers_reply(info_hash: InfoHash, interval_secs: u32) -> FromTracker {
    FromTracker::Peers {
        info_hash,
        interval_secs,
        peers: Vec::new(),
        seeders: 1,
        leechers: 0,
    }
}

const A: InfoHash = InfoHash([0xA; 20]);
const B: InfoHash = InfoHash([0xB; 20]);

/// Lets `a` connect at time zero: it asks for tracker 1, then tracker 2 as a hedge, and
/// tracker 1 answers.
fn connect_to_tracker_one(a: &mut Announcer) {
    a.handle_timeout(Duration::ZERO);
    assert_eq!(
        actions(a),
        [Action::Connect {
            urls: ["ws://one/ws".into(), "ws://two/ws".into()],
            hedge_after: HEDGE,
        }]
    );
    a.handle_connected(0, Duration::ZERO);
}

fn connected_with_swarm() -> Announcer {
    let mut a = announcer();
    a.add_swarm(
        A,
        PeerAddress::Browser,
        100,
        Some("{doc}".into()),
        Duration::ZERO,
    );
    connect_to_tracker_one(&mut a);
    a
}

#[test]
fn starts_with_tracker_one_and_announces_started_with_the_mtorrent() {
    let mut a = connected_with_swarm();
    assert_eq!(
        announces(&actions(&mut a)),
        [(A, AnnounceEvent::Started, true)]
    );
    a.handle_message(peers_reply(A, 30), S);
    assert!(matches!(
        a.poll_event(),
        Some(AnnouncerEvent::Peers { info_hash: A, .. })
    ));
    assert_eq!(a.poll_timeout(), Some(31 * S));
    a.handle_timeout(31 * S);
    assert_eq!(
        announces(&actions(&mut a)),
        [(A, AnnounceEvent::Update, false)]
    );
}

#[test]
fn completing_announces_completed_at_once() {
    let mut a = connected_with_swarm();
    actions(&mut a);
    a.handle_message(peers_reply(A, 30), S);
    a.set_left(A, 40, 2 * S);
    assert!(
        actions(&mut a).is_empty(),
        "progress alone is not announced"
    );
    a.set_left(A, 0, 3 * S);
    assert_eq!(
        announces(&actions(&mut a)),
        [(A, AnnounceEvent::Completed, false)]
    );
}

#[test]
fn a_failed_tracker_switches_to_the_other_at_once_and_starts_every_swarm_there() {
    let mut a = connected_with_swarm();
    a.add_swarm(B, PeerAddress::Browser, 0, None, Duration::ZERO);
    actions(&mut a);
    a.handle_message(peers_reply(A, 30), S);
    a.handle_message(peers_reply(B, 30), S);
    a.handle_disconnected(5 * S);
    assert_eq!(a.current_tracker(), "ws://two/ws");
    assert!(std::iter::from_fn(|| a.poll_event()).any(|e| e
        == AnnouncerEvent::SwitchedTracker {
            url: "ws://two/ws".into()
        }));
    assert_eq!(
        a.poll_timeout(),
        Some(5 * S),
        "no wait after the first failure"
    );
    a.handle_timeout(5 * S);
    assert_eq!(
        actions(&mut a),
        [Action::Connect {
            urls: ["ws://two/ws".into(), "ws://one/ws".into()],
            hedge_after: HEDGE,
        }]
    );
    a.handle_connected(0, 5 * S);
    let mut sent = announces(&actions(&mut a));
    sent.sort_by_key(|(h, ..)| *h);
    assert_eq!(
        sent,
        [
            (A, AnnounceEvent::Started, true),
            (B, AnnounceEvent::Started, false)
        ]
    );
}

#[test]
fn a_silent_tracker_counts_as_failed() {
    let mut a = connected_with_swarm();
    actions(&mut a);
    let timeout = AnnouncerConfig::default().reply_timeout;
    assert_eq!(a.poll_timeout(), Some(timeout));
    a.handle_timeout(timeout);
    assert_eq!(actions(&mut a), [Action::Disconnect]);
    assert_eq!(a.current_tracker(), "ws://two/ws");
    assert!(!a.is_connected());
}

#[test]
fn when_both_fail_it_backs_off_exponentially_up_to_the_limit() {
    let config = AnnouncerConfig::default();
    let mut a = announcer();
    let mut now = Duration::ZERO;
    let mut waits = Vec::new();
    for _ in 0..10 {
        a.handle_timeout(now);
        assert!(matches!(actions(&mut a)[..], [Action::Connect { .. }]));
        a.handle_disconnected(now);
        let next = a.poll_timeout().unwrap();
        waits.push(next - now);
        now = next;
    }
    assert_eq!(waits[0], Duration::ZERO);
    assert_eq!(&waits[1..5], [S, 2 * S, 4 * S, 8 * S]);
    assert_eq!(*waits.last().unwrap(), config.max_backoff);
    // A success resets it.
    a.handle_timeout(now);
    actions(&mut a);
    a.handle_connected(0, now);
    a.handle_disconnected(now);
    assert_eq!(a.poll_timeout(), Some(now));
}

#[test]
fn removing_a_swarm_announces_stopped_and_expects_no_reply() {
    let mut a = connected_with_swarm();
    actions(&mut a);
    a.handle_message(peers_reply(A, 30), S);
    a.remove_swarm(A, 2 * S);
    assert_eq!(
        announces(&actions(&mut a)),
        [(A, AnnounceEvent::Stopped, false)]
    );
    assert_eq!(a.poll_timeout(), None, "nothing left to do");
}

#[test]
fn signals_and_refusals_become_events() {
    let mut a = connected_with_swarm();
    actions(&mut a);
    a.signal(A, PeerId([2; 20]), "ws://me/peer".into(), S);
    assert!(matches!(
        &actions(&mut a)[..],
        [Action::Send(ToTracker::Signal { to, .. })] if *to == PeerId([2; 20])
    ));
    a.handle_message(
        FromTracker::Signal {
            info_hash: A,
            from: PeerId([3; 20]),
            dial: "ws://x/".into(),
        },
        S,
    );
    a.handle_message(FromTracker::error(ErrorCode::RateLimited, "slow down"), S);
    let events: Vec<_> = std::iter::from_fn(|| a.poll_event()).collect();
    assert!(matches!(
        events[..],
        [
            AnnouncerEvent::Signal { .. },
            AnnouncerEvent::Refused {
                code: ErrorCode::RateLimited,
                ..
            }
        ]
    ));
}

fn info_hash(i: u32) -> InfoHash {
    let mut bytes = [0; 20];
    bytes[..4].copy_from_slice(&i.to_be_bytes());
    InfoHash(bytes)
}

#[test]
fn many_swarms_share_one_connection_and_their_announces_are_paced() {
    let config = AnnouncerConfig {
        announce_rate: 100,
        ..AnnouncerConfig::default()
    };
    let mut a = Announcer::new(urls(), PeerId([1; 20]), config, Duration::ZERO);
    for i in 0..1_000 {
        a.add_swarm(info_hash(i), PeerAddress::Browser, 0, None, Duration::ZERO);
    }
    connect_to_tracker_one(&mut a);
    // Drive the clock in 10 ms steps, answering every announce at once, and record when each
    // swarm was first announced.
    let mut first_sent = BTreeMap::new();
    let mut now = Duration::ZERO;
    let mut per_second = BTreeMap::<u64, u32>::new();
    while first_sent.len() < 1_000 && now < 60 * S {
        for action in actions(&mut a) {
            match action {
                Action::Send(ToTracker::Announce(announce)) => {
                    first_sent.entry(announce.info_hash).or_insert(now);
                    *per_second.entry(now.as_secs()).or_default() += 1;
                    a.handle_message(peers_reply(announce.info_hash, 3600), now);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let next = a.poll_timeout().expect("announces are due");
        assert!(next >= now, "a deadline in the past: {next:?} < {now:?}");
        now = next.max(now + Duration::from_millis(10));
        a.handle_timeout(now);
    }
    assert_eq!(first_sent.len(), 1_000, "every swarm announced");
    // A second's burst, then the rate: never more than twice the rate in any second.
    assert!(
        per_second.values().all(|&n| n <= 2 * 100 + 1),
        "{per_second:?}"
    );
    let last = *first_sent.values().max().unwrap();
    assert!(
        (8 * S..=11 * S).contains(&last),
        "1,000 announces at 100/s take about 9 s, took {last:?}"
    );
}

#[test]
fn a_re_announce_of_many_swarms_follows_each_swarms_interval() {
    let mut a = announcer();
    for i in 0..50 {
        a.add_swarm(info_hash(i), PeerAddress::Browser, 0, None, Duration::ZERO);
    }
    a.handle_timeout(Duration::ZERO);
    let _ = actions(&mut a);
    a.handle_connected(0, Duration::ZERO);
    assert_eq!(announces(&actions(&mut a)).len(), 50);
    for i in 0..50 {
        a.handle_message(peers_reply(info_hash(i), 30 + i), S);
    }
    a.handle_message(peers_reply(info_hash(99), 1), S);
    assert_eq!(a.poll_timeout(), Some(31 * S));
    a.handle_timeout(40 * S);
    let due = announces(&actions(&mut a));
    assert_eq!(due.len(), 10, "intervals 30..=39 are due at 40 s: {due:?}");
    assert!(due
        .iter()
        .all(|(_, event, _)| *event == AnnounceEvent::Update));
    assert_eq!(a.swarm_count(), 50);
    assert!(!a.has_swarm(info_hash(99)));
}

#[test]
fn the_other_tracker_answering_first_becomes_the_one_in_use() {
    let mut a = announcer();
    a.add_swarm(A, PeerAddress::Browser, 100, None, Duration::ZERO);
    a.handle_timeout(Duration::ZERO);
    let _ = actions(&mut a);
    // Tracker 1 is silent (a partition); the driver tried tracker 2 after the hedge delay and
    // tracker 2 answered.
    a.handle_connected(1, HEDGE + Duration::from_millis(5));
    assert_eq!(a.current_tracker(), "ws://two/ws");
    assert_eq!(
        a.poll_event(),
        Some(AnnouncerEvent::SwitchedTracker {
            url: "ws://two/ws".into()
        })
    );
    assert_eq!(
        announces(&actions(&mut a)),
        [(A, AnnounceEvent::Started, false)]
    );
    // When tracker 2 goes away, tracker 1 is preferred again, tracker 2 still tried second.
    a.handle_disconnected(10 * S);
    a.handle_timeout(10 * S);
    assert_eq!(
        actions(&mut a),
        [Action::Connect {
            urls: ["ws://one/ws".into(), "ws://two/ws".into()],
            hedge_after: HEDGE,
        }]
    );
}
