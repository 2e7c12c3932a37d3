//! Attacks against real trackers and native peers, by the hostile client of
//! `mtorrent_e2e::hostile`: each checks that nothing was stored, nobody was made to dial, no
//! honest peer was delisted, memory stayed bounded and honest clients were served meanwhile.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mtorrent_e2e::command::Dir;
use mtorrent_e2e::hostile::{
    announce, large_metainfo, open_files, padded, peak_rss_bytes, rss_bytes, AttackMix, Victim,
};
use mtorrent_e2e::process::Process;
use mtorrent_e2e::random_bytes;
use mtorrent_e2e::swarm::{share, Trackers};
use mtorrent_e2e::tracker_client::TrackerClient;
use mtorrent_shared::tracker::{AnnounceEvent, FromTracker, PeerAddress, ToTracker};
use mtorrent_shared::{InfoHash, Metainfo, PeerId};

/// The secret the trackers of these tests share with their twins.
const TWIN_SECRET: &str = "hostile-tests-twin-secret-0123";

/// Starts a tracker on an OS-chosen port, its data in `dir/name/`, its log beside.
fn tracker(dir: &Dir, name: &str, extra: &[&str]) -> Process {
    let data = dir.join(name);
    let mut args = vec![
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--data-dir".to_owned(),
        data.to_string_lossy().into_owned(),
        "--twin-secret".to_owned(),
        TWIN_SECRET.to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Process::start("mtorrent-tracker", args, &dir.join(format!("{name}.log")))
}

/// Raises this process's open-file limit to at least `wanted` (the processes it starts
/// inherit it), if the hard limit allows.
fn raise_open_file_limit(wanted: u64) {
    let (soft, hard) = rlimit::Resource::NOFILE.get().expect("the open-file limit");
    if soft < wanted {
        assert!(
            hard >= wanted,
            "the test needs {wanted} open files; the hard limit is {hard}"
        );
        rlimit::Resource::NOFILE
            .set(wanted, hard)
            .expect("raising the open-file limit");
    }
}

/// The info hashes the tracker at `url` lists.
async fn list_files(url: &str) -> Vec<InfoHash> {
    TrackerClient::connect(url).await.list_files(100).await
}

/// The peer ids the tracker at `url` hands `asker` for `info_hash`.
async fn listed_peers(url: &str, info_hash: InfoHash, asker: PeerId) -> Vec<PeerId> {
    let mut client = TrackerClient::connect(url).await;
    let reply = client
        .request(&ToTracker::Announce(announce(
            info_hash,
            asker,
            AnnounceEvent::Started,
            PeerAddress::Browser,
        )))
        .await;
    match reply {
        FromTracker::Peers { peers, .. } => peers.iter().map(|p| p.peer_id).collect(),
        other => panic!("expected peers, got {other:?}"),
    }
}

/// Files under `path`, recursively.
fn files_under(path: &std::path::Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(path) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                files_under(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

/// `mtorrent get` of `mtorrent` into `dir/name/`, off the runtime's threads; asserts that it
/// succeeded.
async fn honest_get(dir: &Dir, name: &str, mtorrent: &std::path::Path) -> Duration {
    let home = dir.join(name);
    let mtorrent = mtorrent.to_owned();
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&home).unwrap();
        std::process::Command::new(mtorrent_e2e::bin_path("mtorrent"))
            .arg("get")
            .arg(&mtorrent)
            .arg(&home)
            .arg("--catalog")
            .arg(home.join("catalog.sqlite"))
            .env_remove("MTORRENT_TRACKERS")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "the honest get failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    started.elapsed()
}

// ---------------------------------------------------------------------------------------------
// The load test

/// Most resident memory a tracker may reach under the load test's attack. Each of its 500 slow
/// readers holds at most one reply (the 650 KiB document: queued replies are bounded in bytes
/// and shared, but the WebSocket layer copies the one being written into the connection's write
/// buffer), about 330 MiB in all; replies counted in messages would hold hundreds of MiB per
/// reader.
const TRACKER_RSS_BOUND: u64 = 512 << 20;
/// Most resident memory the seeder may reach under the load test's attack: each of its 1,024
/// peer places holds at most the one block (256 KiB) a slow reader leaves unread, 256 MiB in
/// all, each of its 1,024 connections in their handshakes a few small buffers (32 MiB), plus
/// 96 MiB for the rest. A block copied whole into each connection's write buffer as well
/// would take 256 MiB more.
const SEEDER_RSS_BOUND: u64 = 384 << 20;

// Several threads: thousands of attackers run while the test waits on processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_download_completes_while_thousands_of_attackers_hold_on() {
    raise_open_file_limit(16_384);
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    let data = random_bytes(4 << 20 | 4321, 41);
    let seeder = share(&dir, "seeder", "data.bin", &data, &trackers);
    let mtorrent = dir.join("data.bin.mtorrent");
    let metainfo = Arc::new(Metainfo::from_json(&std::fs::read(&mtorrent).unwrap()).unwrap());
    mtorrent_e2e::wait_for_tracker_stats(trackers.one.addr(), "the seeder announced", |s| {
        s["peers"] == 1
    });
    // A large document for the tracker's slow readers to ask for: 650 KiB a reply.
    let big = large_metainfo(
        "big.bin",
        16_384,
        [trackers.one.ws_url(), trackers.two.ws_url()],
    );
    let _big_seeder =
        mtorrent_e2e::hostile::register_seeder(&trackers.one.ws_url(), &big, PeerId([0xB1; 20]))
            .await;

    // A thousand slow readers and a thousand idle connections against the trackers (half at
    // each) and as many against the seeder.
    let mix = AttackMix::start(
        [
            (trackers.one.addr(), trackers.one.ws_url()),
            (trackers.two.addr(), trackers.two.ws_url()),
        ],
        big.info_hash(),
        seeder.addr(),
        metainfo.clone(),
        1000,
        1000,
    );
    mix.wait_engaged(Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    eprint!("{}", mix.report());
    eprintln!(
        "open files: tracker 1 {}, tracker 2 {}, seeder {}",
        open_files(trackers.one.id()),
        open_files(trackers.two.id()),
        open_files(seeder.id())
    );

    // An honest tracker client is served, and an honest download completes, identical.
    let mut honest = TrackerClient::connect(&trackers.one.ws_url()).await;
    let reply = honest
        .request(&ToTracker::Announce(announce(
            metainfo.info_hash(),
            PeerId([0x11; 20]),
            AnnounceEvent::Started,
            PeerAddress::Browser,
        )))
        .await;
    assert!(matches!(reply, FromTracker::Peers { .. }), "got {reply:?}");
    let took = honest_get(&dir, "leecher", &mtorrent).await;
    assert_eq!(std::fs::read(dir.join("leecher/data.bin")).unwrap(), data);
    let attackers = mix.engaged();
    eprintln!("the honest get took {took:?}, with {attackers} attackers engaged");

    let tracker_peak = peak_rss_bytes(trackers.one.id()).max(peak_rss_bytes(trackers.two.id()));
    let seeder_peak = peak_rss_bytes(seeder.id());
    eprintln!(
        "peak RSS: tracker {} MiB, seeder {} MiB; now: tracker 1 {} MiB, seeder {} MiB",
        tracker_peak >> 20,
        seeder_peak >> 20,
        rss_bytes(trackers.one.id()) >> 20,
        rss_bytes(seeder.id()) >> 20
    );
    assert!(
        tracker_peak < TRACKER_RSS_BOUND,
        "a tracker reached {} MiB",
        tracker_peak >> 20
    );
    assert!(
        seeder_peak < SEEDER_RSS_BOUND,
        "the seeder reached {} MiB",
        seeder_peak >> 20
    );
    drop(mix);
}

// ---------------------------------------------------------------------------------------------
// The attacks one by one

/// A tracker client connected from `source`.
async fn client_from(source: std::net::Ipv4Addr, tracker: &Process) -> TrackerClient {
    let stream = mtorrent_e2e::hostile::connect_from(source, tracker.addr(), None)
        .await
        .expect("a connection to the tracker");
    TrackerClient::connect_over(&tracker.ws_url(), stream.into_std().unwrap()).await
}

/// Sample documents, each of a tiny made-up file.
fn documents(prefix: &str, count: usize) -> Vec<Metainfo> {
    (0..count)
        .map(|i| {
            large_metainfo(
                &format!("{prefix}-{i}.bin"),
                1,
                ["ws://127.0.0.1:1/ws".into(), "ws://127.0.0.1:2/ws".into()],
            )
        })
        .collect()
}

#[tokio::test]
async fn a_catalog_flood_from_many_addresses_stores_only_what_the_quotas_allow() {
    let dir = Dir::new();
    let one = documents("size", 1)[0].to_json().len();
    // Two documents per address, ten in all.
    let t = tracker(
        &dir,
        "t1",
        &[
            "--max-catalog-bytes-per-address",
            &(2 * one + one / 2).to_string(),
            "--max-catalog-bytes",
            &(10 * one + one / 2).to_string(),
        ],
    );
    let flood = documents("flood", 15);
    for (n, batch) in flood.chunks(5).enumerate() {
        let source = mtorrent_e2e::hostile::source_address(40, n);
        for (i, metainfo) in batch.iter().enumerate() {
            // A connection per document, so refusals never add up to a close.
            let mut flooder = client_from(source, &t).await;
            let peer = mtorrent_e2e::hostile::attacker_id(40, n * 100 + i);
            let seeder = PeerAddress::Listening {
                port: 9,
                tls: false,
            };
            // The document padded with a field the format does not define; sent by a peer that
            // does not have the file; and, last, as a seeder would send it.
            let mut padded_announce =
                announce(metainfo.info_hash(), peer, AnnounceEvent::Started, seeder);
            padded_announce.metainfo = Some(padded(&metainfo.to_json(), 100_000));
            let mut unseeded = padded_announce.clone();
            unseeded.metainfo = Some(metainfo.to_json());
            unseeded.left = 1;
            let mut seeded = unseeded.clone();
            seeded.left = 0;
            for attempt in [padded_announce, unseeded, seeded] {
                flooder.request(&ToTracker::Announce(attempt)).await;
            }
        }
    }
    // An honest seeder registers its file meanwhile.
    let honest = documents("honest", 1).remove(0);
    let _honest =
        mtorrent_e2e::hostile::register_seeder(&t.ws_url(), &honest, PeerId([0x22; 20])).await;

    // Two documents from each flooding address, and the honest one: nothing padded, nothing
    // from a peer without the file, nothing beyond an address's share.
    let listed = list_files(&t.ws_url()).await;
    assert_eq!(listed.len(), 3 * 2 + 1, "{listed:?}");
    assert!(listed.contains(&honest.info_hash()));
    let stored = files_under(&dir.join("t1"));
    let documents_on_disk: Vec<_> = stored
        .iter()
        .filter(|path| path.extension().is_some_and(|e| e == "mtorrent"))
        .collect();
    assert_eq!(documents_on_disk.len(), 7, "{stored:?}");
    for path in &stored {
        let bytes = std::fs::read(path).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("padding"),
            "padding reached the disk in {}",
            path.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_fake_peers_at_a_victim_make_a_downloader_dial_it_once() {
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    let data = random_bytes(3 << 20, 43);
    let _seeder = share(&dir, "seeder", "data.bin", &data, &trackers);
    let mtorrent = dir.join("data.bin.mtorrent");
    let metainfo = Metainfo::from_json(&std::fs::read(&mtorrent).unwrap()).unwrap();
    let victim = Victim::start().await;
    // 40 connections each register a peer id at the victim's address, as seeders (one
    // connection is one peer in a swarm): fewer than the 50 peers a downloader asks for, so
    // each reply names the real seeder too, and the download need not wait for luck.
    let mut registrars = Vec::new();
    let mut registered = 0;
    for n in 0..40 {
        let mut registrar = TrackerClient::connect(&trackers.one.ws_url()).await;
        let fake = announce(
            metainfo.info_hash(),
            mtorrent_e2e::hostile::attacker_id(50, n),
            AnnounceEvent::Started,
            PeerAddress::Native { url: victim.url() },
        );
        if let FromTracker::Peers { .. } = registrar.request(&ToTracker::Announce(fake)).await {
            registered += 1;
        }
        registrars.push(registrar);
    }
    assert_eq!(registered, 40);
    // The honest download completes, and the victim was dialled at most once for the file.
    honest_get(&dir, "leecher", &mtorrent).await;
    assert_eq!(std::fs::read(dir.join("leecher/data.bin")).unwrap(), data);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        victim.connections() <= 1,
        "the victim received {} connections",
        victim.connections()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hijacker_at_the_twin_cannot_delist_a_real_seeder() {
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    let data = random_bytes(2 << 20, 44);
    let _seeder = share(&dir, "seeder", "data.bin", &data, &trackers);
    let mtorrent = dir.join("data.bin.mtorrent");
    let info_hash = Metainfo::from_json(&std::fs::read(&mtorrent).unwrap())
        .unwrap()
        .info_hash();
    // The seeder's peer id, as anybody learns it from the tracker.
    let mut seeder_id = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while seeder_id.is_empty() {
        assert!(Instant::now() < deadline, "the seeder never showed up");
        seeder_id = listed_peers(&trackers.two.ws_url(), info_hash, PeerId([0x31; 20])).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seeder_id = seeder_id[0];
    // At each tracker, from addresses of its own, the hijacker stops, leaves and re-announces
    // the seeder's id elsewhere.
    for (n, tracker) in [&trackers.one, &trackers.two].into_iter().enumerate() {
        let mut hijacker = client_from(mtorrent_e2e::hostile::source_address(60, n), tracker).await;
        let elsewhere = PeerAddress::Native {
            url: "ws://127.0.0.1:9/elsewhere".into(),
        };
        for message in [
            ToTracker::Announce(announce(
                info_hash,
                seeder_id,
                AnnounceEvent::Stopped,
                elsewhere.clone(),
            )),
            ToTracker::Leave {
                info_hash,
                peer_id: seeder_id,
            },
            ToTracker::Announce(announce(
                info_hash,
                seeder_id,
                AnnounceEvent::Started,
                elsewhere,
            )),
        ] {
            let reply = hijacker.request(&message).await;
            assert!(
                matches!(reply, FromTracker::Error { .. }),
                "accepted: {reply:?}"
            );
        }
    }
    // Both trackers still list the seeder, and an honest download from it completes.
    for (tracker, asker) in [(&trackers.one, 0x32), (&trackers.two, 0x33)] {
        let mut listed = listed_peers(&tracker.ws_url(), info_hash, PeerId([asker; 20])).await;
        // The other tracker's asker may still be listed here until its leave is replicated.
        listed.retain(|id| ![0x31, 0x32, 0x33].map(|n| PeerId([n; 20])).contains(id));
        assert_eq!(listed, [seeder_id], "at {}", tracker.ws_url());
    }
    honest_get(&dir, "leecher", &mtorrent).await;
    assert_eq!(std::fs::read(dir.join("leecher/data.bin")).unwrap(), data);
}

#[tokio::test]
async fn signals_never_send_a_browser_to_a_victim_nor_reach_a_native_peer() {
    let dir = Dir::new();
    let t = tracker(&dir, "t1", &[]);
    let info_hash = InfoHash([0x70; 20]);
    let victim = Victim::start().await;
    let mut browser = TrackerClient::connect(&t.ws_url()).await;
    browser
        .request(&ToTracker::Announce(announce(
            info_hash,
            PeerId([1; 20]),
            AnnounceEvent::Started,
            PeerAddress::Browser,
        )))
        .await;
    let mut native = TrackerClient::connect(&t.ws_url()).await;
    native
        .request(&ToTracker::Announce(announce(
            info_hash,
            PeerId([2; 20]),
            AnnounceEvent::Started,
            PeerAddress::Native {
                url: "ws://127.0.0.1:20002/".into(),
            },
        )))
        .await;
    // The abuser is in the swarm at its own address, and asks for the victim in every way.
    let mut abuser = TrackerClient::connect(&t.ws_url()).await;
    let own = "ws://127.0.0.1:20003/";
    abuser
        .request(&ToTracker::Announce(announce(
            info_hash,
            PeerId([3; 20]),
            AnnounceEvent::Started,
            PeerAddress::Native { url: own.into() },
        )))
        .await;
    for (from, to) in [(3u8, 1u8), (3, 2), (2, 1), (1, 2)] {
        let signal = ToTracker::Signal {
            info_hash,
            from: PeerId([from; 20]),
            to: PeerId([to; 20]),
            dial: victim.url(),
        };
        abuser.request(&signal).await;
    }
    // The browser heard of the abuser once, at the abuser's own address; the native peer heard
    // nothing.
    match browser.recv().await {
        Ok(FromTracker::Signal { dial, from, .. }) => {
            assert_eq!((dial.as_str(), from), (own, PeerId([3; 20])));
        }
        other => panic!("expected one signal, got {other:?}"),
    }
    let more = tokio::time::timeout(Duration::from_millis(500), browser.recv()).await;
    assert!(more.is_err(), "the browser also got {more:?}");
    let heard = tokio::time::timeout(Duration::from_millis(500), native.recv()).await;
    assert!(heard.is_err(), "the native peer got {heard:?}");
    assert_eq!(victim.connections(), 0);
}
