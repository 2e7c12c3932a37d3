//! The browser peer, in the real page, in headless Chromium: downloads from native peers,
//! shares to them, and relays through them to another page; bad input shows an error, a
//! corrupt peer's pieces are caught and fetched again, and a peer that reads nothing has only
//! a bounded amount queued for it before it is dropped; both of its hashing engines hash every
//! piece right.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use mtorrent_e2e::bad_peer::CorruptSwarm;
use mtorrent_e2e::browser::{shared_row, Browser, AFTER_AN_ACTION};
use mtorrent_e2e::command::Dir;
use mtorrent_e2e::swarm::{get, get_and_seed, share, wait_until_file_equals, Trackers};
use mtorrent_e2e::tracker_client::TrackerClient;
use mtorrent_e2e::{random_bytes, tracker_stats};
use mtorrent_shared::tracker::{Announce, AnnounceEvent, FromTracker, PeerAddress, ToTracker};
use mtorrent_shared::wire::{Handshake, Message, PROTOCOL_VERSION};
use mtorrent_shared::{Bitfield, Metainfo, PeerId, BLOCK_SIZE, PIECE_SIZE};
use sha1::{Digest, Sha1};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

fn sha1_hex(data: &[u8]) -> String {
    hex::encode(Sha1::digest(data))
}

/// Waits, off the async workers, until the file at `path` holds `data`.
async fn wait_for_file(path: std::path::PathBuf, data: Vec<u8>) {
    tokio::task::spawn_blocking(move || wait_until_file_equals(&path, &data))
        .await
        .unwrap();
}

/// Downloads the `.mtorrent` at `mtorrent` in the page and returns the SHA-1 of the result.
async fn download_in_page(browser: &Browser, mtorrent: &Path) -> String {
    browser.choose_file("download-mtorrent", mtorrent).await;
    browser.wait_for_state("download-status", &["done"]).await;
    browser.sha1_of_link("download-save").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_refuses_a_bad_mtorrent_then_downloads_from_a_native_seeder() {
    mtorrent_e2e::browser::require_page();
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    let data = random_bytes(6 << 20 | 4321, 40);
    let _seeder = share(&dir, "seeder", "data.bin", &data, &trackers);
    let browser = Browser::on_page(&trackers.page_url()).await;

    let bad = dir.write("bad.mtorrent", b"{\"name\": \"../../etc/passwd\"}");
    browser.choose_file("download-mtorrent", &bad).await;
    let (_, message) = browser.wait_for_state("download-status", &["error"]).await;
    assert!(message.contains("not a valid .mtorrent"), "{message}");

    let digest = download_in_page(&browser, &dir.join("data.bin.mtorrent")).await;
    assert_eq!(digest, sha1_hex(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_page_shows_no_control_that_means_nothing_yet() {
    mtorrent_e2e::browser::require_page();
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    let browser = Browser::on_page(&trackers.page_url()).await;
    // What the user sees, not what the DOM holds: the computed visibility of each control that
    // only means something after a share or a download.
    let visible = browser.visible(&AFTER_AN_ACTION).await;
    assert!(visible.is_empty(), "visible on a fresh page: {visible:?}");
    // And what must be there is.
    let visible = browser
        .eval("return ['drop-zone', 'download-mtorrent'].map((id) => document.getElementById(id).checkVisibility());")
        .await;
    assert_eq!(visible, serde_json::json!([true, true]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_peer_downloads_a_file_the_page_shares() {
    mtorrent_e2e::browser::require_page();
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    let data = random_bytes(5 << 20 | 99, 41);
    let file = dir.write("from-browser.bin", &data);
    let browser = Browser::on_page(&trackers.page_url()).await;
    let document = browser.share(&file).await;
    let mtorrent = dir.write("from-browser.bin.mtorrent", document);
    let leecher = get_and_seed(&dir, "leecher", &mtorrent);
    let target = dir.join("leecher/from-browser.bin");
    wait_for_file(target, data).await;
    drop(leecher);
    browser.wait_for_upload("from-browser.bin").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_sharing_two_files_serves_each_to_native_gets_over_one_tracker_connection() {
    mtorrent_e2e::browser::require_page();
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    let browser = Browser::on_page(&trackers.page_url()).await;
    let mut shared = Vec::new();
    for (i, name) in ["first.bin", "second.bin"].into_iter().enumerate() {
        let data = random_bytes((3 << 20) + 1_001 * i, 50 + i as u64);
        let file = dir.write(name, &data);
        let document = browser.share(&file).await;
        let mtorrent = dir.write(format!("{name}.mtorrent"), document);
        shared.push((name, data, mtorrent));
    }
    // One page, one peer: both files over one connection to tracker 1.
    let tracker = trackers.one.addr();
    let stats = tokio::task::spawn_blocking(move || tracker_stats(tracker))
        .await
        .unwrap();
    assert_eq!(
        (stats["swarms"].as_u64(), stats["peer_connections"].as_u64()),
        (Some(2), Some(1)),
        "{stats}"
    );
    for (name, data, mtorrent) in shared {
        let leecher = format!("leecher-{name}");
        tokio::task::block_in_place(|| get(&dir, &leecher, &mtorrent).success());
        let got = std::fs::read(dir.join(&leecher).join(name)).unwrap();
        assert!(got == data, "{name} fetched from the page differs");
    }
    // The page lists both, each with what it uploaded, and the status still says it seeds.
    for name in ["first.bin", "second.bin"] {
        browser.wait_for_upload(name).await;
        let visible = browser
            .eval(&shared_row(name, "a.mtorrent').checkVisibility()"))
            .await;
        assert_eq!(visible, serde_json::json!(true), "{name}'s .mtorrent link");
    }
    let (state, _) = browser.state("share-status").await;
    assert_eq!(state, "seeding");
    if let Some(path) = std::env::var_os("MTORRENT_SCREENSHOT") {
        browser.screenshot(std::path::Path::new(&path)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_shared_by_one_page_reaches_another_through_a_native_peer() {
    mtorrent_e2e::browser::require_page();
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    let data = random_bytes(4 << 20 | 7, 42);
    let file = dir.write("relayed.bin", &data);
    let first = Browser::on_page(&trackers.page_url()).await;
    let document = first.share(&file).await;
    let mtorrent = dir.write("relayed.bin.mtorrent", document);
    // A native peer fetches it from the first page and seeds it.
    let _relay = get_and_seed(&dir, "relay", &mtorrent);
    let relayed = dir.join("relay/relayed.bin");
    wait_for_file(relayed, data.clone()).await;
    // The second page can only reach native peers: it gets the file from the relay.
    let second = Browser::on_page(&trackers.page_url()).await;
    let digest = download_in_page(&second, &mtorrent).await;
    assert_eq!(digest, sha1_hex(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_hashing_engines_of_the_page_give_every_piece_its_sha1() {
    mtorrent_e2e::browser::require_page();
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    // Pieces enough to be split between the hashing workers, and a short last one.
    let data = random_bytes(7 * PIECE_SIZE as usize + 12_345, 43);
    let file = dir.write("hashed.bin", &data);
    let browser = Browser::on_page(&trackers.page_url()).await;
    // Sharing hashes with WebCrypto; the WebAssembly fallback hashes the same file again.
    let with_web_crypto = browser.share(&file).await;
    let with_wasm = browser
        .eval(
            "const file = document.getElementById('share-file').files[0];
             return window.mtorrentHashing
               .hashFile(file, 'ws://127.0.0.1:1/ws', 'ws://127.0.0.1:2/ws', () => {}, 'wasm');",
        )
        .await;
    let expected: Vec<String> = data.chunks(PIECE_SIZE as usize).map(sha1_hex).collect();
    for document in [
        with_web_crypto.as_str(),
        with_wasm.as_str().expect("a .mtorrent"),
    ] {
        let metainfo = Metainfo::from_json(document.as_bytes()).expect("a valid .mtorrent");
        assert_eq!(metainfo.size(), data.len() as u64);
        let hashes: Vec<String> = metainfo.piece_hashes().iter().map(|h| h.to_hex()).collect();
        assert_eq!(hashes, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_refetches_pieces_a_corrupt_peer_sent() {
    mtorrent_e2e::browser::require_page();
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    let data = random_bytes(6 << 20, 44);
    let swarm = CorruptSwarm::start(&dir, &trackers, &data).await;
    let browser = Browser::on_page(&trackers.page_url()).await;
    let digest = download_in_page(&browser, &swarm.mtorrent).await;
    assert_eq!(digest, sha1_hex(&data));
    assert_corrupt_pieces_were_caught(&browser).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_is_not_a_secure_context_refetches_pieces_a_corrupt_peer_sent() {
    mtorrent_e2e::browser::require_page();
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    let data = random_bytes(5 << 20, 46);
    let swarm = CorruptSwarm::start(&dir, &trackers, &data).await;
    let browser = insecure_page(&trackers).await;
    browser
        .choose_file("download-mtorrent", &swarm.mtorrent)
        .await;
    browser.wait_for_state("download-status", &["done"]).await;
    let saved = hex::decode(browser.hex_of_link("download-save").await).unwrap();
    assert!(saved == data, "the saved file differs from the seeded one");
    assert_corrupt_pieces_were_caught(&browser).await;
}

/// Fails unless the page warned of pieces that failed their check.
async fn assert_corrupt_pieces_were_caught(browser: &Browser) {
    let (_, warnings) = browser.state("download-warnings").await;
    assert!(
        warnings.contains("failed its check"),
        "the corrupt peer's pieces were caught: {warnings:?}"
    );
}

/// The page, opened at an address that is not a secure context (as plain http from another
/// machine is not), its peer ready.
async fn insecure_page(trackers: &Trackers) -> Browser {
    let browser = Browser::on_insecure_page(&trackers.page_url()).await;
    let secure = browser.eval("return window.isSecureContext;").await;
    assert_eq!(
        secure,
        serde_json::json!(false),
        "the page is not a secure context"
    );
    browser
}

/// How many pieces and downloads the page keeps in IndexedDB.
async fn stored_in_indexeddb(browser: &Browser) -> serde_json::Value {
    browser
        .eval(
            "return import('./piece-db.js').then(async ({ openPieceDb }) => {
               const db = await openPieceDb();
               const count = (store) => new Promise((resolve, reject) => {
                 const request = db.transaction(store).objectStore(store).count();
                 request.onsuccess = () => resolve(request.result);
                 request.onerror = () => reject(request.error);
               });
               const counts = [await count('pieces'), await count('downloads')];
               db.close();
               return counts;
             });",
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_is_not_a_secure_context_downloads_into_indexeddb_and_keeps_no_piece() {
    mtorrent_e2e::browser::require_page();
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    let data = random_bytes(5 << 20 | 321, 45);
    let seeder = share(&dir, "seeder", "plain.bin", &data, &trackers);
    let browser = insecure_page(&trackers).await;
    browser
        .choose_file("download-mtorrent", &dir.join("plain.bin.mtorrent"))
        .await;
    browser.wait_for_state("download-status", &["done"]).await;
    // What the user saves is the file, byte for byte.
    let saved = hex::decode(browser.hex_of_link("download-save").await).unwrap();
    assert!(saved == data, "the saved file differs from the seeded one");
    // The file is built; its pieces are not kept twice.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while stored_in_indexeddb(&browser).await != serde_json::json!([0, 0]) {
        assert!(
            std::time::Instant::now() < deadline,
            "pieces stay in IndexedDB"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The page seeds what it downloaded, from the pieces the browser still holds for it: the
    // only seeder left.
    drop(seeder);
    let leecher = get_and_seed(&dir, "leecher", &dir.join("plain.bin.mtorrent"));
    wait_for_file(dir.join("leecher/plain.bin"), data).await;
    drop(leecher);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_says_where_it_keeps_downloads_and_how_much_it_may_keep() {
    mtorrent_e2e::browser::require_page();
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    for (browser, storage, name) in [
        (
            Browser::on_page(&trackers.page_url()).await,
            "opfs",
            "Origin Private File System",
        ),
        (insecure_page(&trackers).await, "indexeddb", "IndexedDB"),
    ] {
        let shown = browser
            .eval(
                "const e = document.getElementById('storage-status');
                 return [e.dataset.storage, Number(e.dataset.quota), e.checkVisibility(), e.textContent];",
            )
            .await;
        assert_eq!(shown[0], storage, "{shown}");
        assert!(
            shown[1].as_f64().is_some_and(|quota| quota > 0.0),
            "{shown}"
        );
        assert_eq!(shown[2], true, "{shown}");
        let text = shown[3].as_str().unwrap();
        assert!(
            text.contains(name) && text.contains("up to") && text.contains("iB"),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_is_not_a_secure_context_drops_pieces_a_closed_page_left() {
    mtorrent_e2e::browser::require_page();
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    let browser = insecure_page(&trackers).await;
    // A download a closed page left behind, and one another tab is running now.
    browser
        .eval(
            "return import('./piece-db.js').then(async ({ openPieceDb, putPieces }) => {
               const db = await openPieceDb();
               await putPieces(db, 'left.part', [{ index: 0, parts: [new Uint8Array(1)] }]);
               await putPieces(db, 'running.part', [{ index: 0, parts: [new Uint8Array(1)] }]);
               const transaction = db.transaction('downloads', 'readwrite');
               transaction.objectStore('downloads').put({ touched: Date.now() - 3600000 }, 'left.part');
               await new Promise((resolve) => { transaction.oncomplete = resolve; });
               db.close();
             });",
        )
        .await;
    assert_eq!(
        stored_in_indexeddb(&browser).await,
        serde_json::json!([2, 2])
    );
    browser
        .open(&mtorrent_e2e::browser::insecure_url(&trackers.page_url()))
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while stored_in_indexeddb(&browser).await != serde_json::json!([1, 1]) {
        assert!(std::time::Instant::now() < deadline, "the left pieces stay");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_peer_downloads_a_file_a_page_that_is_not_a_secure_context_shares() {
    mtorrent_e2e::browser::require_page();
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    let data = random_bytes(4 << 20 | 77, 46);
    let file = dir.write("from-plain-http.bin", &data);
    let browser = insecure_page(&trackers).await;
    let document = browser.share(&file).await;
    // The page names its trackers by the address it was opened at, which only the browser
    // resolves; the native peer reaches the same trackers at 127.0.0.1 (trackers are not part
    // of the file's identity).
    let metainfo = Metainfo::from_json(document.as_bytes()).expect("a valid .mtorrent");
    assert!(
        metainfo.trackers()[0].starts_with("ws://mtorrent.test:"),
        "{document}"
    );
    let native = Metainfo::new(
        [trackers.one.ws_url(), trackers.two.ws_url()],
        metainfo.name().to_owned(),
        metainfo.size(),
        metainfo.piece_hashes().to_vec(),
    )
    .unwrap();
    assert_eq!(native.info_hash(), metainfo.info_hash());
    let mtorrent = dir.write("from-plain-http.bin.mtorrent", native.to_json());
    let leecher = get_and_seed(&dir, "leecher", &mtorrent);
    wait_for_file(dir.join("leecher/from-plain-http.bin"), data).await;
    drop(leecher);
    browser.wait_for_upload("from-plain-http.bin").await;
}

/// How long the page lets bytes wait unread in a peer's socket, none leaving, before it drops
/// the peer (the browser peer's stall timeout).
const PAGE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Room for messages other than blocks (rejects, say) that the page lets wait unread on top of
/// two request windows of blocks, before it drops the peer (as the browser peer counts).
const PAGE_CONTROL_BYTES: u64 = 1 << 20;

/// The receive buffer asked for the socket of [`PeerDialledByThePage`], kept small so that
/// little of what the page sends can wait in this machine's kernel instead of in the page.
const SMALL_RECEIVE_BUFFER: u32 = 64 << 10;

/// A native peer made by hand that the page dialled: it announced itself at tracker 1 as a
/// leecher, asked the tracker to have the page dial it, and exchanged handshakes with it.
struct PeerDialledByThePage {
    /// The WebSocket the page opened to it.
    socket: WebSocketStream<TcpStream>,
    /// Where it listens, as the page dialled it.
    url: String,
    /// The requests the page takes outstanding at once, from its handshake.
    page_max_requests: u16,
    /// The receive buffer its socket got (the kernel's figure, which counts its overhead).
    receive_buffer: u64,
    /// Its announce, kept for as long as it runs.
    _registration: TrackerClient,
}

impl PeerDialledByThePage {
    /// Gets the page, sharing `metainfo`'s file, to dial a new peer; returns that peer once
    /// the page has unchoked it.
    async fn start(trackers: &Trackers, metainfo: &Metainfo) -> Self {
        let listening = tokio::net::TcpSocket::new_v4().unwrap();
        // Set before listening, so that accepted sockets start with it.
        listening
            .set_recv_buffer_size(SMALL_RECEIVE_BUFFER)
            .unwrap();
        let receive_buffer = u64::from(listening.recv_buffer_size().unwrap());
        listening.bind(([127, 0, 0, 1], 0).into()).unwrap();
        let listener = listening.listen(1).unwrap();
        let url = format!("ws://{}/", listener.local_addr().unwrap());
        let me = PeerId([0xEE; 20]);
        let mut registration = TrackerClient::connect(&trackers.one.ws_url()).await;
        let reply = registration
            .request(&ToTracker::Announce(Announce {
                info_hash: metainfo.info_hash(),
                peer_id: me,
                event: AnnounceEvent::Started,
                address: PeerAddress::Native { url: url.clone() },
                left: metainfo.size(),
                numwant: 50,
                metainfo: None,
            }))
            .await;
        let FromTracker::Peers { peers, .. } = reply else {
            panic!("no peers for the announce: {reply:?}");
        };
        let page = peers
            .iter()
            .find(|peer| matches!(peer.address, PeerAddress::Browser))
            .unwrap_or_else(|| panic!("the page is not in the swarm: {peers:?}"))
            .peer_id;
        registration
            .send(&ToTracker::Signal {
                info_hash: metainfo.info_hash(),
                from: me,
                to: page,
                dial: url.clone(),
            })
            .await;
        let (stream, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
            .await
            .expect("the page dials the peer")
            .unwrap();
        let mut socket = tokio_tungstenite::accept_async(stream).await.unwrap();
        for message in [
            Message::Handshake(Handshake {
                version: PROTOCOL_VERSION,
                info_hash: metainfo.info_hash(),
                peer_id: me,
                max_requests: 16,
            }),
            Message::Bitfield(
                Bitfield::new(metainfo.lengths().piece_count())
                    .to_wire()
                    .into(),
            ),
            Message::Interested,
        ] {
            socket
                .send(WsMessage::Binary(message.to_bytes()))
                .await
                .unwrap();
        }
        let mut page_max_requests = None;
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await
                .expect("the page unchokes the peer");
            let Some(Ok(WsMessage::Binary(bytes))) = frame else {
                panic!("the page closed the connection: {frame:?}");
            };
            match Message::decode_frame(bytes).expect("the page sends valid frames") {
                Message::Handshake(handshake) => page_max_requests = Some(handshake.max_requests),
                Message::Unchoke => break,
                _ => {}
            }
        }
        Self {
            socket,
            url,
            page_max_requests: page_max_requests.expect("the page's handshake before its unchoke"),
            receive_buffer,
            _registration: registration,
        }
    }
}

/// The most bytes the kernel lets a TCP socket hold unsent (the last figure of `tcp_wmem`).
fn most_kernel_send_buffer() -> u64 {
    let figures = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem").unwrap();
    figures
        .split_whitespace()
        .last()
        .and_then(|most| most.parse().ok())
        .unwrap_or_else(|| panic!("tcp_wmem is three figures: {figures:?}"))
}

/// The bytes the page uploaded of the file `info_hash` names, as it last said, and the warning
/// it gave on losing its connection to the peer at `url`, if it did.
async fn uploaded_and_lost_connection(
    browser: &Browser,
    info_hash: &str,
    url: &str,
) -> (u64, Option<String>) {
    let seen = browser
        .eval(&format!(
            "const events = window.mtorrentEvents;
             const progress = events.filter((e) => e.type === 'progress' && e.info_hash === {info_hash:?}).pop();
             const lost = events.find((e) => e.type === 'warning' && e.message.includes({url:?}));
             return [progress?.uploaded ?? 0, lost?.message ?? null];"
        ))
        .await;
    (
        seen[0].as_u64().expect("a byte count"),
        seen[1].as_str().map(str::to_owned),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_queues_a_bounded_amount_for_a_peer_that_reads_nothing_and_drops_it() {
    mtorrent_e2e::browser::require_page();
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    let data = random_bytes(8 << 20, 47);
    let file = dir.write("unread.bin", &data);
    let browser = Browser::on_page(&trackers.page_url()).await;
    let metainfo = Metainfo::from_json(browser.share(&file).await.as_bytes()).unwrap();
    let peer = PeerDialledByThePage::start(&trackers, &metainfo).await;
    // What the page may let wait in its socket: its blocks held back beyond one request
    // window, as many again already being read then, and other messages. What leaves the page
    // waits in the kernel (the page's send buffer and this peer's small receive buffer) and
    // in the browser's own pipe to it, for which a request window more is allowed.
    let window = u64::from(peer.page_max_requests) * u64::from(BLOCK_SIZE);
    let most_waiting_in_the_page = 2 * window + PAGE_CONTROL_BYTES;
    let most_sent =
        most_waiting_in_the_page + most_kernel_send_buffer() + peer.receive_buffer + window;
    let url = peer.url.clone();
    let (mut requests, mut unread) = peer.socket.split();

    // The peer asks for a request window of blocks every 20 ms, over and over, and reads
    // nothing.
    let lengths = metainfo.lengths();
    let blocks: Vec<_> = lengths
        .pieces()
        .flat_map(|piece| lengths.blocks(piece))
        .collect();
    let window_requests = usize::from(peer.page_max_requests);
    let asking = tokio::spawn(async move {
        let mut pace = tokio::time::interval(Duration::from_millis(20));
        for round in blocks.chunks(window_requests).cycle() {
            pace.tick().await;
            for block in round {
                let request = Message::Request((*block).into());
                if requests
                    .feed(WsMessage::Binary(request.to_bytes()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if requests.flush().await.is_err() {
                return;
            }
        }
    });

    let info_hash = metainfo.info_hash().to_hex();
    let started = Instant::now();
    let deadline = started + PAGE_STALL_TIMEOUT + Duration::from_secs(15);
    let lost = loop {
        let (uploaded, lost) = uploaded_and_lost_connection(&browser, &info_hash, &url).await;
        assert!(
            uploaded <= most_sent,
            "the page queued {uploaded} bytes for a peer that reads nothing, more than \
             {most_sent} after {:?}",
            started.elapsed()
        );
        if let Some(lost) = lost {
            break lost;
        }
        assert!(
            Instant::now() < deadline,
            "the page kept a peer that reads nothing for {:?} (it uploaded {uploaded} bytes)",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    asking.abort();
    assert!(
        lost.contains("unread") || lost.contains("not read"),
        "the page dropped the peer for not reading: {lost}"
    );
    let peers = browser
        .eval(&shared_row("unread.bin", ".peers').textContent"))
        .await;
    assert_eq!(
        peers, "0",
        "the page lists no peer once it dropped the one it had"
    );

    // All the page ever sent the peer, up to its close.
    let mut received = 0u64;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), unread.next())
            .await
            .expect("the page's close arrives once the peer reads");
        match frame {
            Some(Ok(WsMessage::Binary(bytes))) => received += bytes.len() as u64,
            Some(Ok(WsMessage::Close(_))) => break,
            other => {
                panic!("the connection ended without a close, after {received} bytes: {other:?}")
            }
        }
    }
    assert!(
        received <= most_sent,
        "the page sent {received} bytes to a peer that read nothing, more than {most_sent}"
    );
}
