//! Two torrents joined by an in-memory WebSocket, driven by their real connection tasks and
//! timers.

use std::sync::Arc;
use std::time::Duration;

use mtorrent_shared::{Bitfield, Metainfo, PeerId, PieceHash, PIECE_SIZE};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use super::Torrent;
use crate::node::connection::{self, Side};
use crate::storage::Storage;

fn metainfo(data: &[u8]) -> Metainfo {
    let hashes = data
        .chunks(PIECE_SIZE as usize)
        .map(PieceHash::of)
        .collect();
    Metainfo::new(
        ["ws://127.0.0.1:1/".into(), "ws://127.0.0.1:2/".into()],
        "data.bin".into(),
        data.len() as u64,
        hashes,
    )
    .unwrap()
}

async fn socket_pair() -> (
    WebSocketStream<tokio::io::DuplexStream>,
    WebSocketStream<tokio::io::DuplexStream>,
) {
    let (a, b) = tokio::io::duplex(1 << 20);
    (
        WebSocketStream::from_raw_socket(a, Role::Client, None).await,
        WebSocketStream::from_raw_socket(b, Role::Server, None).await,
    )
}

#[tokio::test]
async fn two_torrents_transfer_a_file_with_the_cores_timers() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..PIECE_SIZE as usize * 3 + 4321)
        .map(|i| (i * 7 % 253) as u8)
        .collect();
    let metainfo = metainfo(&data);
    let lengths = metainfo.lengths();
    let count = lengths.piece_count();
    let source = dir.path().join("source");
    std::fs::write(&source, &data).unwrap();
    let seeder = Torrent::new(
        metainfo.clone(),
        Storage::open_existing(&source, lengths, false).unwrap(),
        Bitfield::full(count),
        PeerId([1; 20]),
        1,
    );
    let target = dir.path().join("target");
    let leecher = Torrent::new(
        metainfo,
        Storage::create_new(&target, lengths).unwrap(),
        Bitfield::new(count),
        PeerId([2; 20]),
        2,
    );
    assert!(leecher.is_downloading() && !seeder.is_downloading());
    for torrent in [&seeder, &leecher] {
        let torrent = torrent.clone();
        tokio::spawn(async move { torrent.run_timers().await });
    }
    let (a, b) = socket_pair().await;
    let up = tokio::spawn(connection::run(
        seeder.clone(),
        a,
        Side::Dialled,
        None,
        None,
    ));
    let down = tokio::spawn(connection::run(
        leecher.clone(),
        b,
        Side::Accepted,
        None,
        None,
    ));
    let mut progress = leecher.watch_progress();
    tokio::time::timeout(
        Duration::from_secs(30),
        progress.wait_for(|p| p.pieces == count),
    )
    .await
    .expect("the download finishes")
    .unwrap();
    assert!(leecher.is_complete() && !leecher.is_downloading());
    assert_eq!(std::fs::read(&target).unwrap(), data);
    let progress = *leecher.watch_progress().borrow();
    assert_eq!(
        (progress.fetched_pieces, progress.failed_pieces),
        (count, 0)
    );
    assert_eq!(seeder.uploaded(), data.len() as u64);
    assert!(seeder.is_connected(PeerId([2; 20])));
    seeder.stop();
    leecher.stop();
    up.await.unwrap().unwrap();
    down.await.unwrap().unwrap();
    assert_eq!(leecher.watch_progress().borrow().peers, 0);
}

#[tokio::test(start_paused = true)]
async fn the_timers_close_a_silent_peer() {
    let dir = tempfile::tempdir().unwrap();
    let data = vec![5; 1000];
    let metainfo = metainfo(&data);
    let lengths = metainfo.lengths();
    let torrent = Torrent::new(
        metainfo,
        Storage::create_new(&dir.path().join("target"), lengths).unwrap(),
        Bitfield::new(1),
        PeerId([2; 20]),
        3,
    );
    let timers = torrent.clone();
    tokio::spawn(async move { timers.run_timers().await });
    let (a, mut silent) = socket_pair().await;
    // The other end reads everything and says nothing.
    tokio::spawn(async move {
        use futures::StreamExt;
        while silent.next().await.is_some() {}
    });
    let started = tokio::time::Instant::now();
    let ended = connection::run(torrent.clone(), a, Side::Dialled, None, None).await;
    let error = ended.expect_err("a silent peer is an error");
    assert!(error.to_string().contains("silent"), "{error:#}");
    assert_eq!(started.elapsed(), Duration::from_secs(120));
    torrent.stop();
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_asks_for_blocks_and_never_reads_is_dropped() {
    use futures::SinkExt;
    use mtorrent_shared::wire::{BlockRequest, Handshake, Message, PROTOCOL_VERSION};
    use mtorrent_shared::BLOCK_SIZE;
    let dir = tempfile::tempdir().unwrap();
    let data = vec![9; PIECE_SIZE as usize * 4];
    let metainfo = metainfo(&data);
    let lengths = metainfo.lengths();
    let source = dir.path().join("source");
    std::fs::write(&source, &data).unwrap();
    let info_hash = metainfo.info_hash();
    let seeder = Torrent::new(
        metainfo,
        Storage::open_existing(&source, lengths, false).unwrap(),
        Bitfield::full(4),
        PeerId([1; 20]),
        4,
    );
    let timers = seeder.clone();
    tokio::spawn(async move { timers.run_timers().await });
    // A small pipe, so a peer that does not read stops our writes early.
    let (a, b) = tokio::io::duplex(64 * 1024);
    let ours = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
    let mut greedy = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
    let started = tokio::time::Instant::now();
    let connection = tokio::spawn(connection::run(
        seeder.clone(),
        ours,
        Side::Accepted,
        None,
        None,
    ));
    let mut asks = vec![
        Message::Handshake(Handshake {
            version: PROTOCOL_VERSION,
            info_hash,
            peer_id: PeerId([6; 20]),
            max_requests: 16,
        }),
        Message::Bitfield(Bitfield::new(4).to_wire().into()),
        Message::Interested,
    ];
    asks.extend((0..4 * PIECE_SIZE / BLOCK_SIZE).map(|block| {
        Message::Request(BlockRequest {
            piece: block * BLOCK_SIZE / PIECE_SIZE,
            offset: block * BLOCK_SIZE % PIECE_SIZE,
            length: BLOCK_SIZE,
        })
    }));
    for ask in asks {
        let frame = tokio_tungstenite::tungstenite::Message::Binary(ask.to_bytes());
        if greedy.send(frame).await.is_err() {
            break;
        }
    }
    // It never reads: the connection ends once our writes have stalled long enough, well
    // before the 120 s a silent peer is given.
    let ended = tokio::time::timeout(Duration::from_secs(100), connection)
        .await
        .expect("the connection ends")
        .unwrap();
    let error = ended.expect_err("a peer that does not read is an error");
    assert!(error.to_string().contains("has not read"), "{error:#}");
    assert!(started.elapsed() >= connection::WRITE_STALL_TIMEOUT);
    assert!(seeder.uploaded() < data.len() as u64);
    seeder.stop();
    drop(greedy);
}

#[tokio::test]
async fn stopping_ends_the_timers() {
    let dir = tempfile::tempdir().unwrap();
    let data = vec![5; 1000];
    let metainfo = metainfo(&data);
    let lengths = metainfo.lengths();
    let torrent: Arc<Torrent> = Torrent::new(
        metainfo,
        Storage::create_new(&dir.path().join("target"), lengths).unwrap(),
        Bitfield::new(1),
        PeerId([4; 20]),
        4,
    );
    let timers = tokio::spawn({
        let torrent = torrent.clone();
        async move { torrent.run_timers().await }
    });
    torrent.stop();
    tokio::time::timeout(Duration::from_secs(5), timers)
        .await
        .expect("run_timers returns once the torrent stops")
        .unwrap();
}
