//! On a real network made in the test: trackers, seeders and leechers each on a host of their
//! own (a network namespace with its own address), nothing on 127.0.0.1, peers on their default
//! address with no `--listen` nor `--advertise`: the trackers announce them at the address their
//! connections come from. A partition cuts a host's cable; a NAT router hides a seeder behind
//! its public address. Chromium on a host of its own opens the page of a tracker on another
//! over plain http, not a secure context, and trades files with native peers on others (only
//! the test's path to its chromedriver goes through 127.0.0.1). Where network namespaces cannot
//! be made (not root), each test says so and passes.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use mtorrent_e2e::browser::{Browser, AFTER_AN_ACTION};
use mtorrent_e2e::command::{Dir, Finished, TestCommand};
use mtorrent_e2e::netns::{Host, Network};
use mtorrent_e2e::process::Process;
use mtorrent_e2e::random_bytes;
use mtorrent_e2e::swarm::Trackers;
use mtorrent_e2e::tls::TestCa;
use mtorrent_e2e::tracker_client::TrackerClient;
use mtorrent_shared::tracker::{Announce, AnnounceEvent, FromTracker, PeerAddress, ToTracker};
use mtorrent_shared::{Metainfo, PeerId};
use sha1::{Digest, Sha1};

/// The secret the trackers of these tests share with their twin.
const TWIN_SECRET: &str = "network-tests-twin-secret-0123";

/// The port trackers listen on, each on its own host.
const TRACKER_PORT: u16 = 7001;

/// The port a peer listens on when nothing says otherwise (on a fresh host it is free).
const PEER_PORT: u16 = 7003;

/// Tracker 1 on host `one` and tracker 2 on host `two`, twins of each other (each told the
/// other's URL, as `scripts/run.sh` does, so that the page of either names both), both serving
/// the page.
fn start_trackers(dir: &Dir, one: &Host, two: &Host) -> Trackers {
    start_trackers_with(dir, one, two, None)
}

/// [`start_trackers`]; with `tls`, over https and wss with certificates of that authority for
/// their hosts' addresses, twins linked over wss and trusting it.
fn start_trackers_with(dir: &Dir, one: &Host, two: &Host, tls: Option<&TestCa>) -> Trackers {
    let www = mtorrent_e2e::www_dir().to_string_lossy().into_owned();
    let tracker = |host: &Host, log: &str, twin: &Host| {
        let mut args = vec![
            "--listen".to_owned(),
            host.addr(TRACKER_PORT).to_string(),
            "--twin-secret".to_owned(),
            TWIN_SECRET.to_owned(),
            "--twin".to_owned(),
            tracker_url(twin, tls),
            "--www".to_owned(),
            www.clone(),
        ];
        let mut launcher = host.launcher();
        if let Some(ca) = tls {
            let (cert, key) = ca.issue(&[&host.ip().to_string()]);
            args.extend(["--tls-cert".to_owned(), path_arg(&cert)]);
            args.extend(["--tls-key".to_owned(), path_arg(&key)]);
            launcher = launcher.env("SSL_CERT_FILE", ca.ca_pem_path());
        }
        Process::start_with(&launcher, "mtorrent-tracker", args, &dir.join(log))
    };
    let one_process = tracker(one, "tracker-1.log", two);
    let two_process = tracker(two, "tracker-2.log", one);
    Trackers {
        one: one_process,
        two: two_process,
    }
}

/// The tracker protocol's URL of the tracker on `host`: `wss://` with `tls`.
fn tracker_url(host: &Host, tls: Option<&TestCa>) -> String {
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    format!("{scheme}://{}/ws", host.addr(TRACKER_PORT))
}

/// `mtorrent share` of `data` as `data.bin` on `host`, from `dir/name/` with its own catalog,
/// writing `dir/name/data.bin.mtorrent`; it listens where a peer listens by default.
fn share_on(host: &Host, dir: &Dir, name: &str, data: &[u8], trackers: &Trackers) -> Process {
    share_on_with(host, dir, name, data, &trackers.args(), None)
}

/// [`share_on`], naming the trackers with `tracker_args`; with `tls`, listening over TLS with a
/// certificate of that authority for its host's address, and trusting it.
fn share_on_with(
    host: &Host,
    dir: &Dir,
    name: &str,
    data: &[u8],
    tracker_args: &[String],
    tls: Option<&TestCa>,
) -> Process {
    share_on_trusting(host, dir, name, data, tracker_args, tls, tls.is_some())
}

/// [`share_on_with`], trusting `ca`'s trackers, listening with a certificate of `ca` only if
/// `listen_tls` (else at a plain `ws://` address).
fn share_on_trusting(
    host: &Host,
    dir: &Dir,
    name: &str,
    data: &[u8],
    tracker_args: &[String],
    ca: Option<&TestCa>,
    listen_tls: bool,
) -> Process {
    let home = dir.join(name);
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("data.bin"), data).unwrap();
    let mut args = vec![
        "share".to_owned(),
        path_arg(&home.join("data.bin")),
        "-o".into(),
        path_arg(&home.join("data.bin.mtorrent")),
        "--catalog".into(),
        path_arg(&home.join("catalog.sqlite")),
    ];
    args.extend_from_slice(tracker_args);
    let mut launcher = host.launcher();
    if let Some(ca) = ca {
        if listen_tls {
            let (cert, key) = ca.issue(&[&host.ip().to_string()]);
            args.extend(["--tls-cert".to_owned(), path_arg(&cert)]);
            args.extend(["--tls-key".to_owned(), path_arg(&key)]);
        }
        launcher = launcher.env("SSL_CERT_FILE", ca.ca_pem_path());
    }
    let seeder = Process::start_with(
        &launcher,
        "mtorrent",
        args,
        &dir.join(format!("{name}.log")),
    );
    assert_eq!(
        seeder.addr().port(),
        PEER_PORT,
        "{name} listens on the default port"
    );
    seeder
}

/// `mtorrent get` of `mtorrent` on `host` into `dir/name/` with its own catalog, run to the end.
fn get_on(host: &Host, dir: &Dir, name: &str, mtorrent: &Path) -> Finished {
    get_in(host, dir, name, mtorrent).run()
}

/// The command of [`get_on`], not started yet.
fn get_in(host: &Host, dir: &Dir, name: &str, mtorrent: &Path) -> TestCommand {
    let home = dir.join(name);
    std::fs::create_dir_all(&home).unwrap();
    let mut command = host.command(dir, "mtorrent");
    command
        .args(["get".as_ref(), mtorrent.as_os_str(), home.as_os_str()])
        .args([
            "--catalog".as_ref(),
            home.join("catalog.sqlite").as_os_str(),
        ]);
    command
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// What the peer in `dir/name/` has of `data.bin`.
fn downloaded(dir: &Dir, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name).join("data.bin")).unwrap()
}

#[test]
fn a_leecher_downloads_from_two_seeders_on_other_hosts_then_through_tracker_two_when_tracker_one_is_cut_off(
) {
    let Some(network) = Network::new() else {
        return;
    };
    let dir = Dir::new();
    let tracker_1 = network.host("tracker-1");
    let tracker_2 = network.host("tracker-2");
    let seeder_a = network.host("seeder-a");
    let seeder_b = network.host("seeder-b");
    let leecher = network.host("leecher");
    let trackers = start_trackers(&dir, &tracker_1, &tracker_2);
    let data = random_bytes(8 << 20, 31);
    let _a = share_on(&seeder_a, &dir, "a", &data, &trackers);
    let _b = share_on(&seeder_b, &dir, "b", &data, &trackers);
    let mtorrent = dir.join("a/data.bin.mtorrent");
    assert_eq!(
        std::fs::read(&mtorrent).unwrap(),
        std::fs::read(dir.join("b/data.bin.mtorrent")).unwrap(),
        "both seeders share the same file"
    );
    for (tracker, which) in [(&trackers.one, "1"), (&trackers.two, "2")] {
        leecher.wait_for_tracker_stats(
            tracker.addr(),
            &format!("both seeders are in tracker {which}'s swarm"),
            |stats| stats["peers"] == 2,
        );
    }

    let sent_before = [seeder_a.sent_bytes(), seeder_b.sent_bytes()];
    get_on(&leecher, &dir, "first", &mtorrent).success();
    assert!(
        downloaded(&dir, "first") == data,
        "the first download differs"
    );
    // Nothing of mtorrent's shows what each seeder uploaded; each host's interface counts
    // what left it. Both sent a good part of the file, and together at least all of it.
    let sent = [
        seeder_a.sent_bytes() - sent_before[0],
        seeder_b.sent_bytes() - sent_before[1],
    ];
    let size = data.len() as u64;
    assert!(
        sent.iter().all(|&bytes| bytes >= size / 8) && sent[0] + sent[1] >= size,
        "both seeders uploaded: they sent {sent:?} bytes of a {size}-byte file"
    );

    // A partition: tracker 1 runs on, but nothing reaches it any more, and nothing is refused.
    network.cut_link(&tracker_1);
    let started = Instant::now();
    let second = get_in(&leecher, &dir, "second", &mtorrent)
        .env("RUST_LOG", "mtorrent_native_peer=info")
        .run()
        .success()
        .stderr_contains(&format!("using tracker {}", trackers.two.ws_url()));
    let took = started.elapsed();
    assert!(
        downloaded(&dir, "second") == data,
        "the second download differs"
    );
    // Tracker 2 is asked 300 ms after tracker 1 stays silent (the get says it used tracker 2);
    // waiting for tracker 1 until its 10 s timeout instead would make this download take
    // longer than this.
    assert!(
        took < Duration::from_secs(5),
        "the download through tracker 2 took {took:?}:\n{second}"
    );
}

#[test]
fn a_seeder_behind_a_nat_is_announced_at_the_nat_address_and_serves_through_a_port_forward() {
    let Some(network) = Network::new() else {
        return;
    };
    let dir = Dir::new();
    let tracker_1 = network.host("tracker-1");
    let tracker_2 = network.host("tracker-2");
    let nat = network.nat_host("nat");
    let seeder = network.host_behind(&nat, "seeder");
    let leecher = network.host("leecher");
    let trackers = start_trackers(&dir, &tracker_1, &tracker_2);
    let data = random_bytes(3 << 20 | 777, 32);
    let _seeder = share_on(&seeder, &dir, "seeder", &data, &trackers);
    let mtorrent = dir.join("seeder/data.bin.mtorrent");
    for tracker in [&trackers.one, &trackers.two] {
        leecher.wait_for_tracker_stats(tracker.addr(), "the seeder is in the swarm", |stats| {
            stats["peers"] == 1
        });
    }

    // Both trackers tell a peer on the public side the NAT's public address, never the
    // seeder's own.
    let public = SocketAddr::from((nat.public_ip(), PEER_PORT));
    let metainfo = Metainfo::from_json(&std::fs::read(&mtorrent).unwrap()).unwrap();
    for tracker in [&trackers.one, &trackers.two] {
        let urls = peer_urls_seen_from(&leecher, tracker, &metainfo);
        assert_eq!(urls, [format!("ws://{public}/")], "{}", tracker.ws_url());
    }

    // Without a port forward nothing listens there; with one, the seeder answers.
    let refused = leecher.connect_timeout(public, Duration::from_secs(2));
    assert_eq!(
        refused.map(drop).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused),
        "nothing answers at the NAT's address before the port forward"
    );
    nat.forward_port(PEER_PORT, &seeder, PEER_PORT);
    let sent_before = seeder.sent_bytes();
    get_on(&leecher, &dir, "leecher", &mtorrent).success();
    assert!(downloaded(&dir, "leecher") == data, "the download differs");
    let sent = seeder.sent_bytes() - sent_before;
    assert!(
        sent >= data.len() as u64,
        "the seeder behind the NAT uploaded the file: it sent {sent} bytes"
    );
}

/// The URLs of the peers that the tracker `tracker` tells a peer on `host` about, in the swarm
/// of `metainfo`. The asking peer announces itself and leaves again.
fn peer_urls_seen_from(host: &Host, tracker: &Process, metainfo: &Metainfo) -> Vec<String> {
    let stream = host.connect(tracker.addr()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = TrackerClient::connect_over(&tracker.ws_url(), stream).await;
        // A fresh id each time: the last asker's id may still be bound at the twin, where its
        // leave is replicated a moment later.
        static NEXT_ASKER: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0x50);
        let asker = NEXT_ASKER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let peer_id = PeerId([asker; 20]);
        let reply = client
            .request(&ToTracker::Announce(Announce {
                info_hash: metainfo.info_hash(),
                peer_id,
                event: AnnounceEvent::Started,
                // Nobody dials it: it leaves before any download starts.
                address: PeerAddress::Native {
                    url: format!("ws://{}/", host.addr(1)),
                },
                left: metainfo.size(),
                numwant: 50,
                metainfo: None,
            }))
            .await;
        client
            .send(&ToTracker::Leave {
                info_hash: metainfo.info_hash(),
                peer_id,
            })
            .await;
        let FromTracker::Peers { peers, .. } = reply else {
            panic!("expected peers, got {reply:?}");
        };
        // An earlier asker from this host may still be listed at the twin, until its leave is
        // replicated: only the other hosts' peers count.
        let own = format!("ws://{}/", host.addr(1));
        peers
            .into_iter()
            .map(|peer| match peer.address {
                PeerAddress::Native { url } => url,
                other => panic!("a native peer announced as {other:?}"),
            })
            .filter(|url| *url != own)
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_inside_a_host_opens_the_page_of_a_tracker_on_another_host() {
    let Some(network) = Network::new() else {
        return;
    };
    let dir = Dir::new();
    let server = network.host("tracker");
    let client = network.host("browser");
    let www = mtorrent_e2e::www_dir().to_string_lossy().into_owned();
    let tracker = server.start(
        "mtorrent-tracker",
        [
            "--listen",
            &server.addr(TRACKER_PORT).to_string(),
            "--twin-secret",
            TWIN_SECRET,
            "--www",
            &www,
        ],
        &dir.join("tracker.log"),
    );
    let browser = client.browser().await;
    let url = format!("http://{}/", tracker.addr());
    browser.client.goto(&url).await.expect("the page loads");
    let seen = browser
        .eval("return [location.hostname, window.isSecureContext, document.title];")
        .await;
    assert_eq!(seen[0], server.ip().to_string(), "{seen}");
    // Plain http from another host: not a secure context, unlike http://127.0.0.1.
    assert_eq!(seen[1], false, "{seen}");
    assert!(
        seen[2].as_str().is_some_and(|title| !title.is_empty()),
        "{seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_over_plain_http_from_another_host_downloads_from_a_native_seeder_and_shares_to_a_native_leecher(
) {
    mtorrent_e2e::browser::require_page();
    let Some(network) = Network::new() else {
        return;
    };
    let dir = Dir::new();
    let tracker_1 = network.host("tracker-1");
    let tracker_2 = network.host("tracker-2");
    let seeder = network.host("seeder");
    let leecher = network.host("leecher");
    let browser_host = network.host("browser");
    let data = random_bytes(3 << 20 | 123, 33);
    let (trackers, _seeders) = tokio::task::block_in_place(|| {
        let trackers = start_trackers(&dir, &tracker_1, &tracker_2);
        let seeding = share_on(&seeder, &dir, "seeder", &data, &trackers);
        for tracker in [&trackers.one, &trackers.two] {
            browser_host.wait_for_tracker_stats(
                tracker.addr(),
                "the seeder is in the swarm",
                |stats| stats["peers"] == 1,
            );
        }
        (trackers, seeding)
    });

    let browser = browser_host.browser().await;
    browser
        .open(&format!("http://{}/", trackers.one.addr()))
        .await;
    let seen = browser
        .eval("return [location.hostname, window.isSecureContext];")
        .await;
    // Plain http from another host: not a secure context, so the page keeps its downloads
    // in IndexedDB.
    assert_eq!(
        seen,
        serde_json::json!([tracker_1.ip().to_string(), false]),
        "the page's host and whether it is a secure context"
    );
    let visible = browser.visible(&AFTER_AN_ACTION).await;
    assert!(visible.is_empty(), "visible on a fresh page: {visible:?}");

    // The page downloads what the native seeder on another host shares; what it saves is the
    // file, byte for byte.
    browser
        .choose_file("download-mtorrent", &dir.join("seeder/data.bin.mtorrent"))
        .await;
    browser.wait_for_state("download-status", &["done"]).await;
    let saved = hex::decode(browser.hex_of_link("download-save").await).unwrap();
    assert!(
        saved == data,
        "the file the page saved differs from the seeded one"
    );

    // The page shares a file; it names the trackers by the address it was opened at, which
    // the leecher's host reaches too. The page cannot listen: told by the tracker, it dials
    // the native leecher back.
    let shared = random_bytes(4 << 20 | 55, 34);
    let file = dir.write("from-page.bin", &shared);
    let document = browser.share(&file).await;
    let metainfo = Metainfo::from_json(document.as_bytes()).expect("a valid .mtorrent");
    assert_eq!(
        metainfo.trackers(),
        &[trackers.one.ws_url(), trackers.two.ws_url()],
        "the page names the trackers at their hosts' addresses"
    );
    let mtorrent = dir.write("from-page.bin.mtorrent", &document);
    tokio::task::block_in_place(|| get_on(&leecher, &dir, "leecher", &mtorrent).success());
    let got = std::fs::read(dir.join("leecher/from-page.bin")).unwrap();
    assert!(
        got == shared,
        "the file the leecher got from the page differs"
    );
    browser.wait_for_upload("from-page.bin").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_over_https_from_another_host_trusting_the_test_ca_downloads_from_a_native_seeder_over_tls(
) {
    mtorrent_e2e::browser::require_page();
    let Some(network) = Network::new() else {
        return;
    };
    let dir = Dir::new();
    let ca = TestCa::new();
    let tracker_1 = network.host("tracker-1");
    let tracker_2 = network.host("tracker-2");
    let seeder = network.host("seeder");
    let plain_seeder = network.host("plain-seeder");
    let browser_host = network.host("browser");
    let data = random_bytes(5 << 20 | 4321, 35);
    let urls = [
        tracker_url(&tracker_1, Some(&ca)),
        tracker_url(&tracker_2, Some(&ca)),
    ];
    let tracker_args: Vec<String> = urls
        .iter()
        .flat_map(|url| ["--tracker".to_owned(), url.clone()])
        .collect();
    let (trackers, _seeder) = tokio::task::block_in_place(|| {
        let trackers = start_trackers_with(&dir, &tracker_1, &tracker_2, Some(&ca));
        for tracker in [&trackers.one, &trackers.two] {
            browser_host.wait_for_https_tracker_stats(
                &ca,
                tracker.addr(),
                "linked to its twin",
                |stats| stats["twin"]["link"] == "up",
            );
        }
        let seeding = share_on_with(&seeder, &dir, "seeder", &data, &tracker_args, Some(&ca));
        // A second seeder of the same file accepts only plain ws://, which an https page
        // cannot open: the page must skip it, say so, and download from the other.
        let plain = share_on_trusting(
            &plain_seeder,
            &dir,
            "plain-seeder",
            &data,
            &tracker_args,
            Some(&ca),
            false,
        );
        for tracker in [&trackers.one, &trackers.two] {
            browser_host.wait_for_https_tracker_stats(
                &ca,
                tracker.addr(),
                "both seeders are in the swarm",
                |stats| stats["peers"] == 2,
            );
        }
        (trackers, [seeding, plain])
    });
    let metainfo =
        Metainfo::from_json(&std::fs::read(dir.join("seeder/data.bin.mtorrent")).unwrap()).unwrap();
    assert_eq!(metainfo.trackers(), &urls);

    // Chromium trusts the test's authority through the NSS database of a home of its own:
    // no flag makes it overlook a certificate.
    let driver = browser_host.driver().env("HOME", ca.browser_home());
    let browser = Browser::start_with(driver, &[]).await;
    browser
        .open(&format!("https://{}/", trackers.one.addr()))
        .await;
    let seen = browser
        .eval(
            "return [location.protocol, location.hostname, window.isSecureContext,
                     document.getElementById('storage-status').dataset.storage];",
        )
        .await;
    assert_eq!(
        seen,
        serde_json::json!(["https:", tracker_1.ip().to_string(), true, "opfs"]),
        "the page's scheme and host, whether it is a secure context, where it keeps downloads"
    );

    // The page dials the seeder over wss, at its host's address.
    browser
        .choose_file("download-mtorrent", &dir.join("seeder/data.bin.mtorrent"))
        .await;
    browser.wait_for_state("download-status", &["done"]).await;
    let digest = browser.sha1_of_link("download-save").await;
    assert_eq!(
        digest,
        hex::encode(Sha1::digest(&data)),
        "the saved file's SHA-1"
    );
    let warnings = browser
        .eval("return document.getElementById('download-warnings').innerText;")
        .await;
    assert!(
        warnings
            .as_str()
            .is_some_and(|text| text.contains("Skipped 1 peer(s)") && text.contains("ws://")),
        "the page says which peer it skipped and why: {warnings}"
    );
}

#[test]
fn a_cut_link_drops_packets_and_a_dropped_network_leaves_nothing_behind() {
    let Some(network) = Network::new() else {
        return;
    };
    let server = network.host("server");
    let client = network.host("client");
    let listener = server.listen(server.addr(9000)).unwrap();
    client.connect(server.addr(9000)).unwrap();
    listener.accept().unwrap();

    network.cut_link(&server);
    let cut = client.connect_timeout(server.addr(9000), Duration::from_millis(500));
    assert_eq!(
        cut.map(drop).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::TimedOut),
        "a cut link drops packets, it refuses nothing"
    );
    network.restore_link(&server);
    client.connect(server.addr(9000)).unwrap();

    let mut sleeper = client
        .launcher()
        .command("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    // Dropped only once the sleeper is inside: `ip netns exec` enters the namespace, then
    // becomes `sleep`; a process still entering it is nobody's to kill yet.
    let comm = format!("/proc/{}/comm", sleeper.id());
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&comm).map_or(true, |name| name.trim() != "sleep") {
        assert!(Instant::now() < deadline, "the sleeper never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let namespaces = [server.namespace().to_owned(), client.namespace().to_owned()];
    drop(network);
    let deadline = Instant::now() + Duration::from_secs(5);
    while sleeper.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "a process inside outlived it");
        std::thread::sleep(Duration::from_millis(10));
    }
    for namespace in namespaces {
        assert!(
            !Path::new("/run/netns").join(&namespace).exists(),
            "{namespace} is left"
        );
    }
}
