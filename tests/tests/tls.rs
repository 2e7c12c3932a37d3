//! TLS: trackers over https and wss, twins linked over wss, a native peer that accepts peers
//! over TLS, bad certificates and keys, and clients that do not trust the certificate.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mtorrent_e2e::command::Dir;
use mtorrent_e2e::launcher::Launcher;
use mtorrent_e2e::process::Process;
use mtorrent_e2e::swarm::share_through;
use mtorrent_e2e::tls::{https_get, https_stats, wait_for_https_stats, TestCa};
use mtorrent_e2e::tracker_client::TrackerClient;
use mtorrent_e2e::{random_bytes, tracker_stats};
use mtorrent_shared::tracker::{Announce, AnnounceEvent, FromTracker, PeerAddress, ToTracker};
use mtorrent_shared::{InfoHash, Metainfo, PeerId};

const TWIN_SECRET: &str = "tls-tests-twin-secret-0123";

/// Starts a tracker on an OS-chosen port of 127.0.0.1 with `extra` arguments and `env`.
fn tracker(dir: &Dir, name: &str, extra: &[&str], env: &[(&str, &Path)]) -> Process {
    let mut args = vec![
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--www".to_owned(),
        mtorrent_e2e::www_dir().to_string_lossy().into_owned(),
        "--twin-secret".to_owned(),
        TWIN_SECRET.to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let env = env.iter().map(|(k, v)| (*k, v.as_os_str()));
    Process::start_with_env(
        "mtorrent-tracker",
        args,
        env,
        &dir.join(format!("{name}.log")),
    )
}

/// A tracker serving TLS with a certificate of `ca` for 127.0.0.1.
fn tls_tracker(dir: &Dir, ca: &TestCa, name: &str, extra: &[&str]) -> Process {
    let (cert, key) = ca.issue(&["127.0.0.1"]);
    let mut args = vec![
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    tracker(dir, name, &args, &[("SSL_CERT_FILE", ca.ca_pem_path())])
}

fn wss_url(addr: SocketAddr) -> String {
    format!("wss://{addr}/ws")
}

fn announce(info_hash: InfoHash, peer: u8, address: PeerAddress) -> ToTracker {
    ToTracker::Announce(Announce {
        info_hash,
        peer_id: PeerId([peer; 20]),
        event: AnnounceEvent::Started,
        address,
        left: 0,
        numwant: 50,
        metainfo: None,
    })
}

/// Asks the tracker at `url` for the swarm of `info_hash` (as peer `asker`) until it lists a
/// peer other than the asker, for at most 15 s; returns the peers it lists.
async fn wait_for_peers(
    ca: &TestCa,
    url: &str,
    info_hash: InfoHash,
    asker: u8,
) -> Vec<(PeerId, PeerAddress)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut client = TrackerClient::connect_tls(url, ca.client_config()).await;
    let asking = PeerAddress::Native {
        url: "wss://127.0.0.1:1/".into(),
    };
    loop {
        let reply = client
            .request(&announce(info_hash, asker, asking.clone()))
            .await;
        let FromTracker::Peers { peers, .. } = reply else {
            panic!("expected peers, got {reply:?}");
        };
        if !peers.is_empty() {
            return peers.into_iter().map(|p| (p.peer_id, p.address)).collect();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no peer ever listed at {url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_tracker_over_https_serves_stats_metrics_the_page_and_wss() {
    let dir = Dir::new();
    let ca = TestCa::new();
    let t = tls_tracker(&dir, &ca, "t", &[]);
    let stats = https_stats(&ca, t.addr());
    assert_eq!(stats["swarms"], 0, "{stats}");
    let (status, page) = https_get(&ca, t.addr(), "/");
    assert_eq!(status, 200);
    assert!(page.contains("<html"), "{page}");
    let (status, metrics) = https_get(&ca, t.addr(), "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("mtorrent_tracker_connections"),
        "{metrics}"
    );
    // The tracker protocol over wss, on the same port; the source address of the TLS
    // connection completes an announce that gives only a port.
    let mut client = TrackerClient::connect_tls(&wss_url(t.addr()), ca.client_config()).await;
    let hash = InfoHash([7; 20]);
    let reply = client
        .request(&announce(
            hash,
            1,
            PeerAddress::Listening {
                port: 4567,
                tls: true,
            },
        ))
        .await;
    assert!(matches!(reply, FromTracker::Peers { .. }), "{reply:?}");
    let peers = wait_for_peers(&ca, &wss_url(t.addr()), hash, 2).await;
    assert_eq!(
        peers,
        [(
            PeerId([1; 20]),
            PeerAddress::Native {
                url: "wss://127.0.0.1:4567/".into()
            }
        )]
    );
    // Nothing is served in the clear on that port.
    let mut plain = std::net::TcpStream::connect(t.addr()).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        plain,
        "GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn twins_linked_over_wss_replicate() {
    let dir = Dir::new();
    let ca = TestCa::new();
    let t1 = tls_tracker(&dir, &ca, "t1", &[]);
    let twin = wss_url(t1.addr());
    let t2 = tls_tracker(&dir, &ca, "t2", &["--twin", &twin]);
    wait_for_https_stats(&ca, t2.addr(), "linked to its twin", |s| {
        s["twin"]["link"] == "up"
    });
    wait_for_https_stats(&ca, t1.addr(), "linked to its twin", |s| {
        s["twin"]["link"] == "up"
    });
    let hash = InfoHash([9; 20]);
    let mut at_1 = TrackerClient::connect_tls(&wss_url(t1.addr()), ca.client_config()).await;
    at_1.request(&announce(
        hash,
        1,
        PeerAddress::Listening {
            port: 4000,
            tls: true,
        },
    ))
    .await;
    let peers = wait_for_peers(&ca, &wss_url(t2.addr()), hash, 2).await;
    assert_eq!(
        peers,
        [(
            PeerId([1; 20]),
            PeerAddress::Native {
                url: "wss://127.0.0.1:4000/".into()
            }
        )]
    );
    // And the other way.
    let other = InfoHash([10; 20]);
    let mut at_2 = TrackerClient::connect_tls(&wss_url(t2.addr()), ca.client_config()).await;
    at_2.request(&announce(
        other,
        3,
        PeerAddress::Native {
            url: "wss://localhost:7003/".into(),
        },
    ))
    .await;
    let peers = wait_for_peers(&ca, &wss_url(t1.addr()), other, 4).await;
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(peers[0].0, PeerId([3; 20]));
}

#[tokio::test]
async fn a_native_seeder_with_tls_serves_a_get_over_wss() {
    let dir = Dir::new();
    let ca = TestCa::new();
    let t1 = tls_tracker(&dir, &ca, "t1", &[]);
    let twin = wss_url(t1.addr());
    let t2 = tls_tracker(&dir, &ca, "t2", &["--twin", &twin]);
    let trackers = [wss_url(t1.addr()), wss_url(t2.addr())];

    let data = random_bytes(3 << 20 | 777, 41);
    let mtorrent = dir.join("data.bin.mtorrent");
    let (cert, key) = ca.issue(&["127.0.0.1"]);
    let launcher = Launcher::local()
        .env("SSL_CERT_FILE", ca.ca_pem_path())
        .env("XDG_CONFIG_HOME", dir.join("seeder-config"));
    let args: Vec<String> = [
        "--tracker",
        &trackers[0],
        "--tracker",
        &trackers[1],
        "--tls-cert",
        &cert.to_string_lossy(),
        "--tls-key",
        &key.to_string_lossy(),
    ]
    .map(str::to_owned)
    .into();
    let seeder = share_through(&launcher, &dir, "seeder", "data.bin", &data, &args);
    let metainfo = Metainfo::from_json(&wait_for_file(&mtorrent)).unwrap();
    // Both trackers list the seeder at its TLS address, on the address it connected from.
    let expected = PeerAddress::Native {
        url: format!("wss://127.0.0.1:{}/", seeder.addr().port()),
    };
    for url in &trackers {
        let peers = wait_for_peers(&ca, url, metainfo.info_hash(), 200).await;
        assert_eq!(peers.len(), 1, "{peers:?}");
        assert_eq!(peers[0].1, expected, "at {url}");
    }

    let leecher = dir.join("leecher");
    std::fs::create_dir_all(&leecher).unwrap();
    dir.command("mtorrent")
        .args(["get".as_ref(), mtorrent.as_os_str(), leecher.as_os_str()])
        .args([
            "--catalog".as_ref(),
            leecher.join("catalog.sqlite").as_os_str(),
        ])
        .env("SSL_CERT_FILE", ca.ca_pem_path())
        .run()
        .success()
        .stdout_contains("downloaded");
    assert_eq!(std::fs::read(leecher.join("data.bin")).unwrap(), data);
}

/// Waits up to 30 s for the file at `path` to exist, and returns it.
fn wait_for_file(path: &Path) -> Vec<u8> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(bytes) = std::fs::read(path) {
            return bytes;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} never written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_bad_certificate_or_key_is_a_clear_error_before_listening() {
    let dir = Dir::new();
    let ca = TestCa::new();
    let (cert, key) = ca.issue(&["127.0.0.1"]);
    let (_, other_key) = ca.issue(&["127.0.0.1"]);
    let missing = dir.join("missing.key");
    let cases: [(&PathBuf, &PathBuf, &str); 3] = [
        (&cert, &missing, "cannot use the TLS key"),
        (&missing, &key, "cannot use the TLS certificate"),
        (&cert, &other_key, "cannot be used together"),
    ];
    for (cert, key, says) in cases {
        let tracker = dir
            .command("mtorrent-tracker")
            .args(["--listen", "127.0.0.1:0", "--tls-cert"])
            .args([cert])
            .args(["--tls-key".as_ref(), key.as_os_str()])
            .run()
            .code(2)
            .stderr_contains(says);
        assert!(!tracker.stdout().contains("listening on"), "{tracker}");
        let peer = dir
            .command("mtorrent")
            .args(["seed", "--catalog"])
            .args([dir.join("catalog.sqlite")])
            .args(["--tls-cert".as_ref(), cert.as_os_str()])
            .args(["--tls-key".as_ref(), key.as_os_str()])
            .run()
            .code(2)
            .stderr_contains(says);
        assert!(!peer.stdout().contains("listening on"), "{peer}");
    }
    // The error names the file at fault.
    dir.command("mtorrent-tracker")
        .args(["--listen", "127.0.0.1:0", "--tls-cert"])
        .args([&cert])
        .args(["--tls-key".as_ref(), missing.as_os_str()])
        .run()
        .code(2)
        .stderr_contains("missing.key");
    // The same from the settings file, where a certificate without a key is an error too.
    std::fs::create_dir_all(dir.join(".config/mtorrent")).unwrap();
    dir.write(
        ".config/mtorrent/config.toml",
        format!("tls_cert = {:?}\ntls_key = {:?}\n", cert, missing),
    );
    dir.command("mtorrent")
        .args(["seed", "--catalog"])
        .args([dir.join("catalog.sqlite")])
        .run()
        .code(2)
        .stderr_contains("cannot use the TLS key");
    dir.write(
        ".config/mtorrent/config.toml",
        format!("tls_cert = {:?}\n", cert),
    );
    dir.command("mtorrent")
        .args(["seed", "--catalog"])
        .args([dir.join("catalog.sqlite")])
        .run()
        .code(2)
        .stderr_contains("tls_key is not");
}

#[test]
fn a_client_that_does_not_trust_the_certificate_fails_rather_than_falling_back() {
    let dir = Dir::new();
    let ca = TestCa::new();
    let t1 = tls_tracker(&dir, &ca, "t1", &[]);
    let twin = wss_url(t1.addr());
    // A twin with the system's roots only: the test CA is not among them.
    let untrusting = tracker(&dir, "untrusting", &["--twin", &twin], &[]);
    std::thread::sleep(Duration::from_secs(3));
    let stats = tracker_stats(untrusting.addr());
    assert_eq!(stats["twin"]["link"], "down", "{stats}");
    let stats = https_stats(&ca, t1.addr());
    assert_eq!(stats["twin"]["link"], "down", "{stats}");
    let log = untrusting.log();
    assert!(
        log.contains("cannot reach the twin") && log.contains("certificate"),
        "{log}"
    );
    // The same twin that trusts the CA links at once: the certificate was all that was
    // missing.
    let trusting = tracker(
        &dir,
        "trusting",
        &["--twin", &twin],
        &[("SSL_CERT_FILE", ca.ca_pem_path())],
    );
    mtorrent_e2e::wait_for_tracker_stats(trusting.addr(), "linked to its twin", |s| {
        s["twin"]["link"] == "up"
    });
    // A client trusting another authority cannot even fetch the page.
    let stranger = TestCa::new();
    let refused = mtorrent_e2e::tls::try_https_get(&stranger, t1.addr(), "/stats");
    assert!(refused.is_err(), "{refused:?}");
}
