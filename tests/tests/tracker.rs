//! The tracker pair: registry, replication, persistence, faults.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mtorrent_e2e::command::Dir;
use mtorrent_e2e::http_get;
use mtorrent_e2e::process::Process;
use mtorrent_e2e::tracker_client::{Closed, TrackerClient};
use mtorrent_shared::tracker::{
    Announce, AnnounceEvent, ErrorCode, FromTracker, PeerAddress, ToTracker,
};
use mtorrent_shared::{InfoHash, Metainfo, PeerId, PieceHasher};
use tokio_tungstenite::tungstenite::Message;

/// The secret every tracker in these tests shares with its twin.
const TWIN_SECRET: &str = "test-twin-secret-0123456789";

fn www() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../www")
}

/// Starts a tracker on an OS-chosen port, with its data and log in `dir`.
fn tracker(dir: &Dir, name: &str, extra: &[&str]) -> Process {
    let data = dir.join(name);
    let mut args = vec![
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--data-dir".to_owned(),
        data.to_string_lossy().into_owned(),
        "--www".to_owned(),
        www().to_string_lossy().into_owned(),
        "--twin-secret".to_owned(),
        TWIN_SECRET.to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Process::start("mtorrent-tracker", args, &dir.join(format!("{name}.log")))
}

fn announce(info_hash: InfoHash, peer: u8, event: AnnounceEvent) -> ToTracker {
    ToTracker::Announce(Announce {
        info_hash,
        peer_id: PeerId([peer; 20]),
        event,
        address: PeerAddress::Native {
            url: format!("ws://127.0.0.1:{}/peer", 20_000 + u16::from(peer)),
        },
        left: 0,
        numwant: 50,
        metainfo: None,
    })
}

fn peer_ids(reply: &FromTracker) -> Vec<PeerId> {
    match reply {
        FromTracker::Peers { peers, .. } => peers.iter().map(|p| p.peer_id).collect(),
        other => panic!("expected peers, got {other:?}"),
    }
}

fn sample_metainfo(name: &str) -> Metainfo {
    let mut hasher = PieceHasher::new();
    hasher.update(name.as_bytes());
    let hashes = hasher.finish();
    Metainfo::new(
        ["ws://127.0.0.1:1/ws".into(), "ws://127.0.0.1:2/ws".into()],
        name.into(),
        hashes.size,
        hashes.hashes,
    )
    .unwrap()
}

/// Asks `url` for the swarm until `peer` shows up (or `absent`: until it is gone).
async fn wait_for_peer(url: &str, info_hash: InfoHash, asker: u8, peer: u8, present: bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut client = TrackerClient::connect(url).await;
    loop {
        let reply = client
            .request(&announce(info_hash, asker, AnnounceEvent::Update))
            .await;
        if peer_ids(&reply).contains(&PeerId([peer; 20])) == present {
            // Leave now, so the asker's id is free for the next call at once, whenever this
            // connection's close is handled.
            client
                .request(&announce(info_hash, asker, AnnounceEvent::Stopped))
                .await;
            return;
        }
        assert!(
            Instant::now() < deadline,
            "peer {peer} {} at {url}",
            if present {
                "never appeared"
            } else {
                "never left"
            }
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every file `url` lists, asked for in pages of two, so that every caller also checks that
/// the pages cover the catalog.
async fn list_files(url: &str) -> Vec<InfoHash> {
    TrackerClient::connect(url).await.list_files(2).await
}

async fn wait_for_file(url: &str, info_hash: InfoHash) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !list_files(url).await.contains(&info_hash) {
        assert!(
            Instant::now() < deadline,
            "{info_hash} never listed at {url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn announce_returns_the_other_peers() {
    let dir = Dir::new();
    let t = tracker(&dir, "t1", &[]);
    let hash = InfoHash([1; 20]);
    let mut a = TrackerClient::connect(&t.ws_url()).await;
    let mut b = TrackerClient::connect(&t.ws_url()).await;
    assert!(peer_ids(&a.request(&announce(hash, 1, AnnounceEvent::Started)).await).is_empty());
    assert_eq!(
        peer_ids(&b.request(&announce(hash, 2, AnnounceEvent::Started)).await),
        [PeerId([1; 20])]
    );
    let reply = a.request(&announce(hash, 1, AnnounceEvent::Update)).await;
    assert_eq!(peer_ids(&reply), [PeerId([2; 20])]);
    let FromTracker::Peers {
        seeders,
        interval_secs,
        ..
    } = reply
    else {
        unreachable!()
    };
    assert_eq!((seeders, interval_secs), (2, 30));
    // A stopped peer is no longer handed out.
    b.request(&announce(hash, 2, AnnounceEvent::Stopped)).await;
    assert!(peer_ids(&a.request(&announce(hash, 1, AnnounceEvent::Update)).await).is_empty());
}

#[tokio::test]
async fn closing_the_connection_removes_its_peers() {
    let dir = Dir::new();
    let t = tracker(&dir, "t1", &[]);
    let hash = InfoHash([2; 20]);
    let mut a = TrackerClient::connect(&t.ws_url()).await;
    a.request(&announce(hash, 1, AnnounceEvent::Started)).await;
    wait_for_peer(&t.ws_url(), hash, 9, 1, true).await;
    drop(a);
    wait_for_peer(&t.ws_url(), hash, 9, 1, false).await;
}

#[tokio::test]
async fn replication_works_both_ways() {
    let dir = Dir::new();
    let t1 = tracker(&dir, "t1", &[]);
    let t2 = tracker(&dir, "t2", &["--twin", &t1.ws_url()]);
    let hash = InfoHash([3; 20]);
    let mut at_1 = TrackerClient::connect(&t1.ws_url()).await;
    at_1.request(&announce(hash, 1, AnnounceEvent::Started))
        .await;
    let mut at_2 = TrackerClient::connect(&t2.ws_url()).await;
    at_2.request(&announce(hash, 2, AnnounceEvent::Started))
        .await;
    wait_for_peer(&t2.ws_url(), hash, 9, 1, true).await;
    wait_for_peer(&t1.ws_url(), hash, 8, 2, true).await;
    // Leaving is replicated too.
    at_1.request(&announce(hash, 1, AnnounceEvent::Stopped))
        .await;
    wait_for_peer(&t2.ws_url(), hash, 9, 1, false).await;
}

#[tokio::test]
async fn a_killed_tracker_recovers_every_swarm_and_file_from_its_twin() {
    let dir = Dir::new();
    // Tracker 1 keeps its catalog in memory only, so what it knows after the restart can only
    // have come from tracker 2.
    let mut t1 = Process::start(
        "mtorrent-tracker",
        ["--listen", "127.0.0.1:0", "--twin-secret", TWIN_SECRET],
        &dir.join("t1.log"),
    );
    let t2 = tracker(&dir, "t2", &["--twin", &t1.ws_url()]);
    let meta = sample_metainfo("shared.bin");
    let hash = meta.info_hash();
    let mut seeder = TrackerClient::connect(&t2.ws_url()).await;
    let ToTracker::Announce(mut started) = announce(hash, 1, AnnounceEvent::Started) else {
        unreachable!()
    };
    started.metainfo = Some(meta.to_json());
    seeder.request(&ToTracker::Announce(started)).await;
    wait_for_peer(&t1.ws_url(), hash, 9, 1, true).await;

    t1.kill();
    t1.restart();
    wait_for_peer(&t1.ws_url(), hash, 9, 1, true).await;
    wait_for_file(&t1.ws_url(), hash).await;
    let mut client = TrackerClient::connect(&t1.ws_url()).await;
    match client
        .request(&ToTracker::GetMetainfo { info_hash: hash })
        .await
    {
        FromTracker::Metainfo { metainfo, .. } => {
            assert_eq!(Metainfo::from_json(metainfo.as_bytes()).unwrap(), meta);
        }
        other => panic!("expected the .mtorrent, got {other:?}"),
    }
}

#[tokio::test]
async fn the_catalog_survives_a_restart_of_both_trackers() {
    let dir = Dir::new();
    let mut t1 = tracker(&dir, "t1", &[]);
    let mut t2 = tracker(&dir, "t2", &["--twin", &t1.ws_url()]);
    let meta = sample_metainfo("kept.bin");
    let mut peer = TrackerClient::connect(&t1.ws_url()).await;
    let ToTracker::Announce(mut started) = announce(meta.info_hash(), 1, AnnounceEvent::Started)
    else {
        unreachable!()
    };
    started.metainfo = Some(meta.to_json());
    peer.request(&ToTracker::Announce(started)).await;
    wait_for_file(&t2.ws_url(), meta.info_hash()).await;
    drop(peer);
    t1.kill();
    t2.kill();
    t1.restart();
    t2.restart();
    assert_eq!(list_files(&t1.ws_url()).await, [meta.info_hash()]);
    assert_eq!(list_files(&t2.ws_url()).await, [meta.info_hash()]);
}

#[tokio::test]
async fn silent_peers_expire() {
    let dir = Dir::new();
    let t = tracker(&dir, "t1", &["--interval", "1", "--peer-timeout", "2"]);
    let hash = InfoHash([4; 20]);
    // The connection stays open, but the peer never re-announces.
    let mut silent = TrackerClient::connect(&t.ws_url()).await;
    silent
        .request(&announce(hash, 1, AnnounceEvent::Started))
        .await;
    wait_for_peer(&t.ws_url(), hash, 9, 1, true).await;
    let started = Instant::now();
    wait_for_peer(&t.ws_url(), hash, 9, 1, false).await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "not before the timeout"
    );
}

#[tokio::test]
async fn a_peer_id_cannot_be_hijacked() {
    let dir = Dir::new();
    let t = tracker(&dir, "t1", &[]);
    let hash = InfoHash([5; 20]);
    let mut owner = TrackerClient::connect(&t.ws_url()).await;
    owner
        .request(&announce(hash, 1, AnnounceEvent::Started))
        .await;
    let mut thief = TrackerClient::connect(&t.ws_url()).await;
    for message in [
        announce(hash, 1, AnnounceEvent::Stopped),
        ToTracker::Leave {
            info_hash: hash,
            peer_id: PeerId([1; 20]),
        },
    ] {
        match thief.request(&message).await {
            FromTracker::Error { code, .. } => assert_eq!(code, ErrorCode::PeerIdTaken),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    wait_for_peer(&t.ws_url(), hash, 9, 1, true).await;
}

#[tokio::test]
async fn a_peer_id_cannot_be_hijacked_at_the_twin() {
    let dir = Dir::new();
    let t1 = tracker(&dir, "t1", &[]);
    let t2 = tracker(&dir, "t2", &["--twin", &t1.ws_url()]);
    let hash = InfoHash([6; 20]);
    let mut owner = TrackerClient::connect(&t1.ws_url()).await;
    owner
        .request(&announce(hash, 1, AnnounceEvent::Started))
        .await;
    wait_for_peer(&t2.ws_url(), hash, 9, 1, true).await;
    // At the other tracker, nobody may stop, leave or re-announce for the peer connected here.
    let mut thief = TrackerClient::connect(&t2.ws_url()).await;
    let mut elsewhere = announce(hash, 1, AnnounceEvent::Started);
    if let ToTracker::Announce(a) = &mut elsewhere {
        a.address = PeerAddress::Native {
            url: "ws://127.0.0.1:9/elsewhere".into(),
        };
    }
    for message in [
        announce(hash, 1, AnnounceEvent::Stopped),
        ToTracker::Leave {
            info_hash: hash,
            peer_id: PeerId([1; 20]),
        },
        elsewhere,
    ] {
        match thief.request(&message).await {
            FromTracker::Error { code, .. } => assert_eq!(code, ErrorCode::PeerIdTaken),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    // Both trackers still list the owner, at its own address.
    for (url, asker) in [(t1.ws_url(), 9), (t2.ws_url(), 8)] {
        assert_eq!(
            peer_urls(&url, hash, asker).await,
            ["ws://127.0.0.1:20001/peer"],
            "at {url}"
        );
    }
}

#[tokio::test]
async fn malformed_messages_get_errors_and_repeated_abuse_closes_the_connection() {
    let dir = Dir::new();
    let t = tracker(&dir, "t1", &["--max-strikes", "3"]);
    let mut client = TrackerClient::connect(&t.ws_url()).await;
    client.send_raw(Message::Text("not json".into())).await;
    match client.recv().await {
        Ok(FromTracker::Error { code, .. }) => assert_eq!(code, ErrorCode::Malformed),
        other => panic!("expected an error reply, got {other:?}"),
    }
    client.send_raw(Message::Binary(vec![1, 2, 3].into())).await;
    assert!(matches!(
        client.recv().await,
        Ok(FromTracker::Error {
            code: ErrorCode::Malformed,
            ..
        })
    ));
    client
        .send_raw(Message::Text("{\"type\":\"announce\"}".into()))
        .await;
    assert!(matches!(client.recv().await, Ok(FromTracker::Error { .. })));
    assert_eq!(client.recv().await.unwrap_err(), Closed::Closed);
    // The tracker is fine.
    let mut other = TrackerClient::connect(&t.ws_url()).await;
    assert!(matches!(
        other
            .request(&ToTracker::ListFiles {
                after: None,
                limit: None
            })
            .await,
        FromTracker::Files { .. }
    ));
}

#[tokio::test]
async fn oversized_messages_close_the_connection() {
    let dir = Dir::new();
    let t = tracker(&dir, "t1", &["--max-message-bytes", "4096"]);
    let mut client = TrackerClient::connect(&t.ws_url()).await;
    client
        .send_raw(Message::Text("x".repeat(10_000).into()))
        .await;
    assert_eq!(client.recv().await.unwrap_err(), Closed::Closed);
    let mut other = TrackerClient::connect(&t.ws_url()).await;
    assert!(matches!(
        other
            .request(&ToTracker::ListFiles {
                after: None,
                limit: None
            })
            .await,
        FromTracker::Files { .. }
    ));
}

#[tokio::test]
async fn the_page_stats_and_metrics_are_served() {
    let dir = Dir::new();
    let t = tracker(&dir, "t1", &[]);
    let mut peer = TrackerClient::connect(&t.ws_url()).await;
    peer.request(&announce(InfoHash([6; 20]), 1, AnnounceEvent::Started))
        .await;
    let addr = t.addr();
    let (status, page) = tokio::task::spawn_blocking(move || http_get(addr, "/"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("<title>mtorrent</title>"), "{page}");
    let (status, stats) = tokio::task::spawn_blocking(move || http_get(addr, "/stats"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["swarms"], 1);
    assert_eq!(stats["peers"], 1);
    assert_eq!(stats["connections"], 1);
    assert_eq!(stats["twin"]["link"], "down");
    let (status, metrics) = tokio::task::spawn_blocking(move || http_get(addr, "/metrics"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("mtorrent_tracker_peers 1\n"), "{metrics}");
}

#[tokio::test]
async fn signals_reach_a_browser_peer_on_this_tracker_or_its_twin() {
    let dir = Dir::new();
    let t1 = tracker(&dir, "t1", &[]);
    let t2 = tracker(&dir, "t2", &["--twin", &t1.ws_url()]);
    let hash = InfoHash([7; 20]);
    let browser_announce = |peer: u8| {
        let ToTracker::Announce(mut a) = announce(hash, peer, AnnounceEvent::Started) else {
            unreachable!()
        };
        a.address = PeerAddress::Browser;
        ToTracker::Announce(a)
    };
    let mut local_browser = TrackerClient::connect(&t1.ws_url()).await;
    local_browser.request(&browser_announce(1)).await;
    let mut remote_browser = TrackerClient::connect(&t2.ws_url()).await;
    remote_browser.request(&browser_announce(2)).await;
    let mut native = TrackerClient::connect(&t1.ws_url()).await;
    native
        .request(&announce(hash, 3, AnnounceEvent::Started))
        .await;
    wait_for_peer(&t1.ws_url(), hash, 9, 2, true).await;

    for (browser, target) in [(&mut local_browser, 1u8), (&mut remote_browser, 2)] {
        let signal = ToTracker::Signal {
            info_hash: hash,
            from: PeerId([3; 20]),
            to: PeerId([target; 20]),
            // Not the native peer's address: the browser must be sent to that one anyway.
            dial: "ws://127.0.0.1:9/elsewhere".into(),
        };
        assert!(matches!(
            native.request(&signal).await,
            FromTracker::Peers { .. }
        ));
        match browser.recv().await {
            Ok(FromTracker::Signal {
                info_hash,
                from,
                dial,
            }) => {
                assert_eq!((info_hash, from), (hash, PeerId([3; 20])));
                assert_eq!(dial, "ws://127.0.0.1:20003/peer");
            }
            other => panic!("browser {target} expected a signal, got {other:?}"),
        }
    }
    // Nobody may signal on behalf of a peer it is not.
    let forged = ToTracker::Signal {
        info_hash: hash,
        from: PeerId([1; 20]),
        to: PeerId([2; 20]),
        dial: "ws://127.0.0.1:1/".into(),
    };
    assert!(matches!(
        native.request(&forged).await,
        FromTracker::Error {
            code: ErrorCode::UnknownPeer,
            ..
        }
    ));
    // Only browsers are signalled: a native peer is never made to dial anyone.
    let mut other_native = TrackerClient::connect(&t1.ws_url()).await;
    other_native
        .request(&announce(hash, 4, AnnounceEvent::Started))
        .await;
    let to_native = ToTracker::Signal {
        info_hash: hash,
        from: PeerId([3; 20]),
        to: PeerId([4; 20]),
        dial: String::new(),
    };
    assert!(matches!(
        native.request(&to_native).await,
        FromTracker::Error {
            code: ErrorCode::BadAddress,
            ..
        }
    ));
    let heard = tokio::time::timeout(Duration::from_secs(1), other_native.recv()).await;
    assert!(heard.is_err(), "the native peer got {heard:?}");
}

#[tokio::test]
async fn a_connection_over_its_message_rate_is_refused() {
    let dir = Dir::new();
    let t = tracker(&dir, "t1", &["--rate-limit", "1", "--rate-burst", "3"]);
    let mut client = TrackerClient::connect(&t.ws_url()).await;
    let mut codes = Vec::new();
    for _ in 0..5 {
        match client
            .request(&ToTracker::ListFiles {
                after: None,
                limit: None,
            })
            .await
        {
            FromTracker::Files { .. } => codes.push(None),
            FromTracker::Error { code, .. } => codes.push(Some(code)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(&codes[..3], [None, None, None], "the burst is allowed");
    assert!(
        codes[3..].contains(&Some(ErrorCode::RateLimited)),
        "then the rate applies: {codes:?}"
    );
}

#[tokio::test]
async fn closed_connections_leave_nothing_behind() {
    let dir = Dir::new();
    let t = tracker(&dir, "t1", &[]);
    let mut clients = Vec::new();
    for peer in 0..50u8 {
        let mut client = TrackerClient::connect(&t.ws_url()).await;
        client
            .request(&announce(
                InfoHash([peer; 20]),
                peer,
                AnnounceEvent::Started,
            ))
            .await;
        clients.push(client);
    }
    drop(clients);
    let addr = t.addr();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = tokio::task::spawn_blocking(move || http_get(addr, "/stats"))
            .await
            .unwrap();
        let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
        if stats["connections"] == 0 && stats["peers"] == 0 && stats["swarms"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "still held after close: {stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn only_the_twin_with_the_secret_may_replicate() {
    let dir = Dir::new();
    let t = tracker(&dir, "t1", &[]);
    let hash = InfoHash([8; 20]);
    let mut impostor = TrackerClient::connect(&t.ws_url()).await;
    // The tracker answers a greeting with its own proof, but the impostor cannot make one.
    let hello = ToTracker::SyncHello {
        tracker_id: "impostor".into(),
        nonce: "0".repeat(mtorrent_shared::tracker::TWIN_NONCE_HEX),
    };
    impostor.send(&hello).await;
    let challenge = impostor.recv_text().await.unwrap();
    assert!(matches!(
        ToTracker::decode(&challenge),
        Ok(ToTracker::SyncChallenge { .. })
    ));
    let guess = ToTracker::SyncProof {
        proof: "ab".repeat(32),
    };
    assert!(matches!(
        impostor.request(&guess).await,
        FromTracker::Error { .. }
    ));
    let fake = ToTracker::SyncPeer(mtorrent_shared::tracker::SyncPeer {
        info_hash: hash,
        peer: mtorrent_shared::tracker::PeerInfo {
            peer_id: PeerId([66; 20]),
            address: PeerAddress::Browser,
            complete: true,
        },
    });
    assert!(matches!(
        impostor.request(&fake).await,
        FromTracker::Error { .. }
    ));
    let mut client = TrackerClient::connect(&t.ws_url()).await;
    let reply = client
        .request(&announce(hash, 1, AnnounceEvent::Started))
        .await;
    assert!(peer_ids(&reply).is_empty(), "no injected peer: {reply:?}");
}

/// Asks `url`, as peer `asker`, for the addresses of the other peers in `info_hash`'s swarm.
async fn peer_urls(url: &str, info_hash: InfoHash, asker: u8) -> Vec<String> {
    let mut client = TrackerClient::connect(url).await;
    match client
        .request(&announce(info_hash, asker, AnnounceEvent::Started))
        .await
    {
        FromTracker::Peers { peers, .. } => peers
            .into_iter()
            .map(|peer| match peer.address {
                PeerAddress::Native { url } => url,
                other => panic!("expected a native address, got {other:?}"),
            })
            .collect(),
        other => panic!("expected peers, got {other:?}"),
    }
}

#[tokio::test]
async fn only_a_trusted_proxy_may_say_where_a_peer_is() {
    let dir = Dir::new();
    let proxied = tracker(&dir, "proxied", &["--trusted-proxy", "127.0.0.1"]);
    let direct = tracker(&dir, "direct", &[]);
    let hash = InfoHash([7; 20]);
    let listening = |peer: u8| {
        ToTracker::Announce(Announce {
            address: PeerAddress::Listening {
                port: 7003,
                tls: false,
            },
            ..match announce(hash, peer, AnnounceEvent::Started) {
                ToTracker::Announce(a) => a,
                _ => unreachable!(),
            }
        })
    };
    // Behind the trusted proxy, the peer is where the proxy says its client was: the last
    // entry, which the proxy appended, not the one the client wrote itself.
    let forwarded = [("X-Forwarded-For", "203.0.113.66, 192.0.2.10")];
    let mut behind_proxy = TrackerClient::connect_with_headers(&proxied.ws_url(), &forwarded).await;
    behind_proxy.request(&listening(1)).await;
    assert_eq!(
        peer_urls(&proxied.ws_url(), hash, 9).await,
        ["ws://192.0.2.10:7003/"]
    );
    // A tracker that trusts no proxy ignores the header: the peer is where it connected from.
    let mut forger = TrackerClient::connect_with_headers(&direct.ws_url(), &forwarded).await;
    forger.request(&listening(1)).await;
    assert_eq!(
        peer_urls(&direct.ws_url(), hash, 9).await,
        ["ws://127.0.0.1:7003/"]
    );
}

#[tokio::test]
async fn only_an_exact_document_from_an_accepted_seeder_is_stored() {
    let dir = Dir::new();
    let t = tracker(&dir, "t1", &[]);
    let meta = sample_metainfo("exact.bin");
    let hash = meta.info_hash();
    let with_document = |peer: u8, document: String, left: u64, url: &str| {
        let ToTracker::Announce(mut a) = announce(hash, peer, AnnounceEvent::Started) else {
            unreachable!()
        };
        a.metainfo = Some(document);
        a.left = left;
        a.address = PeerAddress::Native { url: url.into() };
        ToTracker::Announce(a)
    };
    let good_url = "ws://127.0.0.1:20001/peer";
    // Padded with a field the format does not define; from a peer whose announce is refused;
    // from a peer that does not have the file: each refused, and nothing stored.
    let padded = meta.to_json().replacen(
        '{',
        &format!(r#"{{"padding": "{}","#, "x".repeat(100_000)),
        1,
    );
    let refused = [
        with_document(1, padded, 0, good_url),
        with_document(2, meta.to_json(), 0, "http://127.0.0.1:1/"),
        with_document(3, meta.to_json(), 1, good_url),
    ];
    let mut client = TrackerClient::connect(&t.ws_url()).await;
    for message in &refused {
        let reply = client.request(message).await;
        assert!(
            matches!(reply, FromTracker::Error { .. }),
            "expected a refusal, got {reply:?}"
        );
    }
    assert!(list_files(&t.ws_url()).await.is_empty());
    let stored = std::fs::read_dir(dir.join("t1").join("catalog"))
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert_eq!(stored, 0, "nothing on disk");
    // A seeder's announce with the exact document is stored, in canonical form, even when
    // it was sent with other spacing.
    let spaced = meta.to_json().replace('\n', "\n\n  ");
    let reply = client.request(&with_document(4, spaced, 0, good_url)).await;
    assert!(matches!(reply, FromTracker::Peers { .. }), "got {reply:?}");
    match client
        .request(&ToTracker::GetMetainfo { info_hash: hash })
        .await
    {
        FromTracker::Metainfo { metainfo, .. } => assert_eq!(metainfo, meta.to_json()),
        other => panic!("expected the document, got {other:?}"),
    }
}

/// The resident memory of process `pid`, in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("a live process");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_and_pins_no_memory() {
    let dir = Dir::new();
    let t = tracker(&dir, "t1", &[]);
    // The .mtorrent of an 8 GiB file: 16,384 piece hashes, a 650 KiB reply each time.
    let meta = large_metainfo("big.bin", 16_384);
    let hash = meta.info_hash();
    let mut seeder = TrackerClient::connect(&t.ws_url()).await;
    let ToTracker::Announce(mut register) = announce(hash, 1, AnnounceEvent::Started) else {
        unreachable!()
    };
    register.metainfo = Some(meta.to_json());
    assert!(matches!(
        seeder.request(&ToTracker::Announce(register)).await,
        FromTracker::Peers { .. }
    ));
    let before = rss_bytes(t.id());

    // A client with a tiny receive buffer asks for the document 400 times (260 MiB of
    // replies) and reads none of them.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(t.addr()).await.unwrap();
    let (mut greedy, _) = tokio_tungstenite::client_async(t.ws_url(), stream)
        .await
        .unwrap();
    let ask = ToTracker::GetMetainfo { info_hash: hash }.encode();
    for _ in 0..400 {
        use futures::SinkExt;
        if greedy
            .send(Message::Text(ask.clone().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    // Meanwhile an honest client is served at once.
    let mut honest = TrackerClient::connect(&t.ws_url()).await;
    let started = Instant::now();
    let reply = honest
        .request(&announce(hash, 2, AnnounceEvent::Started))
        .await;
    assert!(matches!(reply, FromTracker::Peers { .. }), "got {reply:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(honest);
    drop(seeder);

    // The greedy client is dropped as a slow reader, and its replies did not pile up.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut peak = 0;
    loop {
        peak = peak.max(rss_bytes(t.id()));
        let stats = mtorrent_e2e::tracker_stats(t.addr());
        if stats["connections"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the client that never reads is still connected: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let growth = peak.saturating_sub(before);
    assert!(
        growth < 32 << 20,
        "the tracker grew by {} MiB for one client that never reads",
        growth >> 20
    );
    drop(greedy);
}

#[tokio::test]
async fn the_catalog_is_bounded_per_address_and_in_all() {
    let documents: Vec<Metainfo> = (1..=5)
        .map(|i| sample_metainfo(&format!("quota-{i}.bin")))
        .collect();
    let one = documents[0].to_json().len();
    let dir = Dir::new();
    // The test's connections come through a "proxy" at 127.0.0.1, which names other addresses.
    let t = tracker(
        &dir,
        "t1",
        &[
            "--trusted-proxy",
            "127.0.0.1",
            "--max-catalog-bytes-per-address",
            &(2 * one + one / 2).to_string(),
            "--max-catalog-bytes",
            &(4 * one + one / 2).to_string(),
        ],
    );
    let register = |peer: u8, meta: &Metainfo| {
        let ToTracker::Announce(mut a) = announce(meta.info_hash(), peer, AnnounceEvent::Started)
        else {
            unreachable!()
        };
        a.metainfo = Some(meta.to_json());
        // At the address the proxy names: a peer is announced only where it is.
        a.address = PeerAddress::Listening {
            port: 7003,
            tls: false,
        };
        ToTracker::Announce(a)
    };
    let mut stored = Vec::new();
    for (address, peer, indices) in [("192.0.2.1", 1, [0, 1, 2]), ("192.0.2.2", 2, [2, 3, 4])] {
        let mut client =
            TrackerClient::connect_with_headers(&t.ws_url(), &[("X-Forwarded-For", address)]).await;
        for index in indices {
            if let FromTracker::Peers { .. } =
                client.request(&register(peer, &documents[index])).await
            {
                stored.push(index);
            }
        }
    }
    // Two files from the first address, the third refused; the second address adds the third
    // and the fourth, and the fifth finds the catalog full.
    assert_eq!(stored, [0, 1, 2, 3]);
    let mut listed = list_files(&t.ws_url()).await;
    listed.sort();
    let mut expected: Vec<InfoHash> = documents[..4].iter().map(Metainfo::info_hash).collect();
    expected.sort();
    assert_eq!(listed, expected);
}

// Several threads: the quiet client's reader must run while the test waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_dropped_and_a_quiet_one_that_answers_pings_is_kept() {
    use futures::StreamExt;
    let dir = Dir::new();
    let t = tracker(&dir, "t1", &["--idle-timeout", "3"]);
    // The quiet client sends nothing, but reads, so it answers the tracker's pings.
    let (quiet, _) = tokio_tungstenite::connect_async(t.ws_url()).await.unwrap();
    let reader = tokio::spawn(async move {
        let mut quiet = quiet;
        while let Some(Ok(_)) = quiet.next().await {}
    });
    // The silent client neither sends nor reads.
    let (silent, _) = tokio_tungstenite::connect_async(t.ws_url()).await.unwrap();
    mtorrent_e2e::wait_for_tracker_stats(t.addr(), "two connections", |s| s["connections"] == 2);
    mtorrent_e2e::wait_for_tracker_stats(t.addr(), "the silent one dropped", |s| {
        s["connections"] == 1
    });
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(mtorrent_e2e::tracker_stats(t.addr())["connections"], 1);
    assert!(!reader.is_finished(), "the quiet client is still connected");
    reader.abort();
    drop(silent);
}

#[tokio::test]
async fn one_address_holds_only_so_many_connections() {
    let dir = Dir::new();
    let t = tracker(
        &dir,
        "t1",
        &[
            "--max-connections-per-address",
            "3",
            "--trusted-proxy",
            "127.0.0.1",
        ],
    );
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio_tungstenite::connect_async(t.ws_url()).await.unwrap());
    }
    let refused = tokio_tungstenite::connect_async(t.ws_url()).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("429")),
        "a fourth connection from the same address: {refused:?}"
    );
    // Another address (named by the trusted proxy) still gets in, and so does this one once
    // it closes a connection.
    let mut other =
        TrackerClient::connect_with_headers(&t.ws_url(), &[("X-Forwarded-For", "192.0.2.9")]).await;
    assert!(matches!(
        other
            .request(&ToTracker::ListFiles {
                after: None,
                limit: None
            })
            .await,
        FromTracker::Files { .. }
    ));
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio_tungstenite::connect_async(t.ws_url()).await {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "never admitted again: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn twins_with_different_secrets_never_say_their_link_is_up() {
    let dir = Dir::new();
    let t1 = tracker(&dir, "t1", &[]);
    // Tracker 2 dials tracker 1 with a secret tracker 1 does not share.
    let t2 = Process::start(
        "mtorrent-tracker",
        [
            "--listen",
            "127.0.0.1:0",
            "--www",
            &www().to_string_lossy(),
            "--twin",
            &t1.ws_url(),
            "--twin-secret",
            "another-secret-0123456789",
        ],
        &dir.join("t2.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let stats = mtorrent_e2e::tracker_stats(t2.addr());
        assert_eq!(stats["twin"]["link"], "down", "{stats}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        t2.log().contains("different --twin-secret"),
        "tracker 2 says why: {}",
        t2.log()
    );
}

/// The `.mtorrent` of a file of `pieces` pieces, with made-up piece hashes.
fn large_metainfo(name: &str, pieces: u32) -> Metainfo {
    let trackers = ["ws://127.0.0.1:1/ws".into(), "ws://127.0.0.1:2/ws".into()];
    mtorrent_e2e::hostile::large_metainfo(name, pieces, trackers)
}

#[tokio::test]
async fn twins_replicate_a_state_many_times_larger_than_a_message() {
    let dir = Dir::new();
    // Messages of at most 256 KiB, and a catalog of twelve 1 GiB files (about 1 MiB of
    // documents), plus 600 peers: the state only fits in many messages.
    let limit = ["--max-message-bytes", "262144"];
    let t1 = tracker(&dir, "t1", &limit);
    let mut seeder = TrackerClient::connect(&t1.ws_url()).await;
    let mut expected = Vec::new();
    for i in 0..12u8 {
        let meta = large_metainfo(&format!("big-{i}.bin"), 2048);
        let ToTracker::Announce(mut register) =
            announce(meta.info_hash(), 1, AnnounceEvent::Started)
        else {
            unreachable!()
        };
        register.metainfo = Some(meta.to_json());
        let reply = seeder.request(&ToTracker::Announce(register)).await;
        assert!(matches!(reply, FromTracker::Peers { .. }), "{reply:?}");
        expected.push(meta.info_hash());
    }
    // One node in 600 swarms.
    let mut node = TrackerClient::connect(&t1.ws_url()).await;
    for i in 0..600u16 {
        let mut swarm = [0x5A; 20];
        swarm[..2].copy_from_slice(&i.to_be_bytes());
        let reply = node
            .request(&announce(InfoHash(swarm), 0xC0, AnnounceEvent::Started))
            .await;
        assert!(matches!(reply, FromTracker::Peers { .. }), "{reply:?}");
    }
    expected.sort();

    let mut args = limit.to_vec();
    let twin = t1.ws_url();
    args.extend(["--twin", &twin]);
    let t2 = tracker(&dir, "t2", &args);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let stats = mtorrent_e2e::tracker_stats(t2.addr());
        if list_files(&t2.ws_url()).await == expected && stats["peers"] == 600 + 12 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tracker 2 never got the whole state: {stats}; log: {}",
            t2.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_tracker_tells_nothing_to_what_answers_at_its_twin_url_without_the_secret() {
    use futures::{SinkExt, StreamExt};
    let dir = Dir::new();
    // Something listens at the twin's URL and answers the greeting with a made-up proof.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake_url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let heard = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut socket = tokio_tungstenite::accept_async(stream).await.unwrap();
        let mut heard = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, socket.next()).await {
            let Message::Text(text) = frame else { continue };
            if heard.is_empty() {
                let challenge = ToTracker::SyncChallenge {
                    tracker_id: "fake".into(),
                    nonce: "1".repeat(mtorrent_shared::tracker::TWIN_NONCE_HEX),
                    proof: "cd".repeat(32),
                };
                let _ = socket.send(Message::Text(challenge.encode().into())).await;
            }
            heard.push(text.to_string());
        }
        heard
    });
    let t = tracker(&dir, "t1", &["--twin", &fake_url]);
    let mut client = TrackerClient::connect(&t.ws_url()).await;
    let ToTracker::Announce(mut register) = announce(
        sample_metainfo("state.bin").info_hash(),
        1,
        AnnounceEvent::Started,
    ) else {
        unreachable!()
    };
    register.metainfo = Some(sample_metainfo("state.bin").to_json());
    assert!(matches!(
        client.request(&ToTracker::Announce(register)).await,
        FromTracker::Peers { .. }
    ));
    let heard = heard.await.unwrap();
    assert!(!heard.is_empty(), "the tracker dialled its twin URL");
    for text in &heard {
        assert!(!text.contains(TWIN_SECRET), "the secret went out: {text}");
        assert!(
            matches!(ToTracker::decode(text), Ok(ToTracker::SyncHello { .. })),
            "only a greeting goes to what cannot prove it is the twin, not {text:.200}"
        );
    }
    assert_eq!(
        mtorrent_e2e::tracker_stats(t.addr())["twin"]["link"],
        "down"
    );
    assert!(
        t.log().contains("cannot prove it holds the twin secret"),
        "the tracker says why: {}",
        t.log()
    );
}

#[tokio::test]
async fn a_peer_may_announce_only_an_address_of_its_own_unless_it_is_a_trusted_relay() {
    let dir = Dir::new();
    let t = tracker(&dir, "t1", &[]);
    let relayed = tracker(&dir, "relayed", &["--trusted-relay", "127.0.0.1"]);
    let hash = InfoHash([0x41; 20]);
    let at = |peer: u8, url: &str| {
        let ToTracker::Announce(mut a) = announce(hash, peer, AnnounceEvent::Started) else {
            unreachable!()
        };
        a.address = PeerAddress::Native { url: url.into() };
        ToTracker::Announce(a)
    };
    // A liar lists a victim's address, by IP and by a name that is not its own, under many ids.
    let mut liar = TrackerClient::connect(&t.ws_url()).await;
    for (peer, victim) in [
        (1, "ws://192.0.2.1:80/"),
        (2, "ws://169.254.169.254/"),
        (3, "ws://[::1]:22/"),
    ] {
        match liar.request(&at(peer, victim)).await {
            FromTracker::Error { code, .. } => assert_eq!(code, ErrorCode::BadAddress),
            other => panic!("{victim} was accepted from 127.0.0.1: {other:?}"),
        }
    }
    // Its own address, by IP or by a name for it, is fine.
    let mut honest = Vec::new();
    for (peer, own) in [(4, "ws://127.0.0.1:7003/"), (5, "ws://localhost:7004/")] {
        let mut client = TrackerClient::connect(&t.ws_url()).await;
        let reply = client.request(&at(peer, own)).await;
        assert!(
            matches!(reply, FromTracker::Peers { .. }),
            "{own}: {reply:?}"
        );
        honest.push(client);
    }
    let mut asker = TrackerClient::connect(&t.ws_url()).await;
    let listed = peer_ids(
        &asker
            .request(&announce(hash, 6, AnnounceEvent::Update))
            .await,
    );
    assert!(
        !listed.iter().any(|id| [1, 2, 3].contains(&id.0[0])),
        "{listed:?}"
    );
    // A relay the operator trusts announces peers elsewhere.
    let mut relay = TrackerClient::connect(&relayed.ws_url()).await;
    let reply = relay.request(&at(7, "ws://192.0.2.1:7003/")).await;
    assert!(matches!(reply, FromTracker::Peers { .. }), "{reply:?}");
}

/// Opens a WebSocket to `url` and starts a text message of `length` bytes by hand, sending its
/// frame header and `first` bytes of it; returns the raw stream to go on with.
async fn begin_message(
    url: &str,
    addr: std::net::SocketAddr,
    length: u64,
    first: usize,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (socket, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    let mut stream = socket.into_inner();
    // FIN and text; masked (as from a client) with a zero key, so the payload goes as it is.
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&length.to_be_bytes());
    header.extend_from_slice(&[0; 4]);
    stream.write_all(&header).await.unwrap();
    stream.write_all(&vec![b' '; first]).await.unwrap();
    stream
}

/// Opens a WebSocket to the tracker at `url` and sends the first fragment of a text message,
/// `length` bytes, not final: the rest of the message is still to come.
async fn begin_fragmented_message(
    url: &str,
    addr: std::net::SocketAddr,
    length: u16,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (socket, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    let mut stream = socket.into_inner();
    // Text, not FIN; masked with a zero key; a 16-bit length.
    let mut header = vec![0x01, 0x80 | 126];
    header.extend_from_slice(&length.to_be_bytes());
    header.extend_from_slice(&[0; 4]);
    stream.write_all(&header).await.unwrap();
    stream
        .write_all(&vec![b' '; usize::from(length)])
        .await
        .unwrap();
    stream
}

/// An empty Pong frame, masked as from a client: a control frame may come between the
/// fragments of a message.
const PONG: &[u8] = &[0x8a, 0x80, 0, 0, 0, 0];

/// How long until the tracker closes `stream`, sending it `bytes` every `every` meanwhile
/// (nothing if `None`); at most `limit`.
async fn closed_within(
    mut stream: tokio::net::TcpStream,
    every: Option<(Duration, &[u8])>,
    limit: Duration,
) -> Option<Duration> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = Instant::now();
    let mut buffer = [0u8; 4096];
    while started.elapsed() < limit {
        let wait = every.map_or(Duration::from_millis(500), |(every, _)| every);
        match tokio::time::timeout(wait, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            // A ping or an error reply before the close.
            Ok(Ok(_)) => {}
            Err(_) => {}
        }
        if let Some((_, bytes)) = every {
            if stream.write_all(bytes).await.is_err() {
                return Some(started.elapsed());
            }
        }
    }
    None
}

/// Asserts that `what` was closed (by [`closed_within`], given `limit`) within 20 s: well
/// before the 90 s idle timeout, within the tracker's 10 s allowances.
fn assert_closed_soon(what: &str, closed: Option<Duration>, limit: Duration) {
    let closed = closed.unwrap_or_else(|| panic!("{what}: still held after {limit:?}"));
    assert!(
        closed < Duration::from_secs(20),
        "{what}: closed after {closed:?}"
    );
}

#[tokio::test]
async fn a_message_that_stops_or_trickles_halfway_is_not_held() {
    let dir = Dir::new();
    let t = tracker(&dir, "t1", &[]);
    // One sends half of a 1 MiB message and stops; another sends a byte every 200 ms; a third
    // sends the first fragment of a message, then only pongs between the fragments.
    let stalled = begin_message(&t.ws_url(), t.addr(), 1 << 20, 512 << 10).await;
    let trickling = begin_message(&t.ws_url(), t.addr(), 1 << 20, 16).await;
    let ponging = begin_fragmented_message(&t.ws_url(), t.addr(), 60_000).await;
    // Meanwhile an idle client sends nothing but pongs, as one answering pings does: that is
    // not a message under way.
    let mut idle = TrackerClient::connect(&t.ws_url()).await;
    let idle_pongs = async {
        for _ in 0..30 {
            idle.send_raw(Message::Pong(Default::default())).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let limit = Duration::from_secs(30);
    let (stalled, trickling, ponging, ()) = tokio::join!(
        closed_within(stalled, None, limit),
        closed_within(trickling, Some((Duration::from_millis(200), b" ")), limit),
        closed_within(ponging, Some((Duration::from_millis(500), PONG)), limit),
        idle_pongs,
    );
    assert_closed_soon("stalled", stalled, limit);
    assert_closed_soon("trickling", trickling, limit);
    assert_closed_soon("ponging between fragments", ponging, limit);
    let reply = idle
        .request(&announce(InfoHash([4; 20]), 2, AnnounceEvent::Started))
        .await;
    assert!(matches!(reply, FromTracker::Peers { .. }), "{reply:?}");
    // An honest client with a message as large, sent at once, is served.
    let meta = large_metainfo("whole.bin", 20_000);
    let ToTracker::Announce(mut register) = announce(meta.info_hash(), 1, AnnounceEvent::Started)
    else {
        unreachable!()
    };
    register.metainfo = Some(meta.to_json());
    let mut honest = TrackerClient::connect(&t.ws_url()).await;
    let reply = honest.request(&ToTracker::Announce(register)).await;
    assert!(matches!(reply, FromTracker::Peers { .. }), "{reply:?}");
}

#[tokio::test]
async fn a_connection_that_sends_nothing_or_its_headers_a_byte_at_a_time_is_closed() {
    use tokio::io::AsyncWriteExt;
    let dir = Dir::new();
    let t = tracker(&dir, "t1", &[]);
    let silent = tokio::net::TcpStream::connect(t.addr()).await.unwrap();
    let mut slow = tokio::net::TcpStream::connect(t.addr()).await.unwrap();
    slow.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let limit = Duration::from_secs(30);
    let (silent, slow) = tokio::join!(
        closed_within(silent, None, limit),
        closed_within(slow, Some((Duration::from_millis(500), b" ")), limit),
    );
    assert_closed_soon("silent", silent, limit);
    assert_closed_soon("slow headers", slow, limit);
    // A WebSocket is not cut by the header deadline once upgraded.
    let mut client = TrackerClient::connect(&t.ws_url()).await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    let reply = client
        .request(&announce(InfoHash([3; 20]), 1, AnnounceEvent::Started))
        .await;
    assert!(matches!(reply, FromTracker::Peers { .. }), "{reply:?}");
}

#[tokio::test]
async fn a_connection_is_one_peer_in_a_swarm() {
    let dir = Dir::new();
    let t = tracker(&dir, "t1", &[]);
    let hash = InfoHash([0x42; 20]);
    let mut crowd = TrackerClient::connect(&t.ws_url()).await;
    let reply = crowd
        .request(&announce(hash, 1, AnnounceEvent::Started))
        .await;
    assert!(matches!(reply, FromTracker::Peers { .. }), "{reply:?}");
    // More ids in the same swarm from the same connection would crowd others out of answers.
    // (Fewer than the strikes that close a connection.)
    for peer in 2..6 {
        match crowd
            .request(&announce(hash, peer, AnnounceEvent::Started))
            .await
        {
            FromTracker::Error { code, .. } => assert_eq!(code, ErrorCode::PeerIdTaken),
            other => panic!("a second id in the swarm was accepted: {other:?}"),
        }
    }
    // The same peer in another swarm, and another connection in this one, are fine.
    let reply = crowd
        .request(&announce(InfoHash([0x43; 20]), 1, AnnounceEvent::Started))
        .await;
    assert!(matches!(reply, FromTracker::Peers { .. }), "{reply:?}");
    let mut other = TrackerClient::connect(&t.ws_url()).await;
    let listed = peer_ids(
        &other
            .request(&announce(hash, 30, AnnounceEvent::Started))
            .await,
    );
    assert_eq!(listed, [PeerId([1; 20])]);
    // Once it leaves, the connection may join as another peer.
    crowd
        .request(&announce(hash, 1, AnnounceEvent::Stopped))
        .await;
    let reply = crowd
        .request(&announce(hash, 2, AnnounceEvent::Started))
        .await;
    assert!(matches!(reply, FromTracker::Peers { .. }), "{reply:?}");
}

#[tokio::test]
async fn a_page_of_no_files_asked_for_does_not_end_the_list() {
    let dir = Dir::new();
    let t = tracker(&dir, "t1", &[]);
    let meta = large_metainfo("listed.bin", 4);
    let ToTracker::Announce(mut register) = announce(meta.info_hash(), 1, AnnounceEvent::Started)
    else {
        unreachable!()
    };
    register.metainfo = Some(meta.to_json());
    let mut client = TrackerClient::connect(&t.ws_url()).await;
    let reply = client.request(&ToTracker::Announce(register)).await;
    assert!(matches!(reply, FromTracker::Peers { .. }), "{reply:?}");
    let reply = client
        .request(&ToTracker::ListFiles {
            after: None,
            limit: Some(0),
        })
        .await;
    let FromTracker::Files { files, .. } = reply else {
        panic!("expected files, got {reply:?}")
    };
    assert_eq!(
        files.iter().map(|f| f.info_hash).collect::<Vec<_>>(),
        [meta.info_hash()],
        "a page holds at least one file"
    );
}
