//! A peer for tests that serves corrupt data: built on the same `shared` session as the real
//! peer, it answers every request with the right block's size but flipped bytes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use mtorrent_shared::tracker::{Announce, AnnounceEvent, PeerAddress, ToTracker};
use mtorrent_shared::wire::Message;
use mtorrent_shared::{Bitfield, Metainfo, PeerId, PeerSession, SessionConfig, SessionEvent};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::command::Dir;
use crate::process::Process;
use crate::swarm::{share_slowly, Trackers};
use crate::tracker_client::TrackerClient;

/// A running corrupt peer; it stops when dropped.
#[derive(Debug)]
pub struct CorruptPeer {
    task: tokio::task::JoinHandle<()>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Drop for CorruptPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CorruptPeer {
    /// Starts it, claiming every piece of `metainfo`, and announces it at `tracker`.
    pub async fn start(metainfo: Metainfo, tracker: &str) -> (Self, TrackerClient) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peer_id = PeerId([0xBA; 20]);
        let serving = metainfo.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let metainfo = serving.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, metainfo, peer_id).await;
                });
            }
        });
        let mut client = TrackerClient::connect(tracker).await;
        client
            .request(&ToTracker::Announce(Announce {
                info_hash: metainfo.info_hash(),
                peer_id,
                event: AnnounceEvent::Started,
                address: PeerAddress::Native {
                    url: format!("ws://{addr}/"),
                },
                left: 0,
                numwant: 0,
                metainfo: None,
            }))
            .await;
        (Self { task, addr }, client)
    }
}

/// A swarm of `data` (as `data.bin` in a test's directory) with an honest but slow seeder (4
/// MB/s, so a downloader surely asks the corrupt peer too) and a corrupt peer. Both stop when
/// it is dropped.
#[derive(Debug)]
pub struct CorruptSwarm {
    /// The file's `.mtorrent`.
    pub mtorrent: std::path::PathBuf,
    _seeder: Process,
    _corrupt: CorruptPeer,
    _registration: TrackerClient,
}

impl CorruptSwarm {
    /// Starts the seeder (`seeder/` in `dir`) and the corrupt peer, announced at `trackers`.
    pub async fn start(dir: &Dir, trackers: &Trackers, data: &[u8]) -> Self {
        let seeder = share_slowly(dir, "seeder", data, trackers, 4_000_000);
        let mtorrent = dir.join("data.bin.mtorrent");
        let metainfo = Metainfo::from_json(&std::fs::read(&mtorrent).unwrap()).unwrap();
        let (corrupt, registration) = CorruptPeer::start(metainfo, &trackers.one.ws_url()).await;
        Self {
            mtorrent,
            _seeder: seeder,
            _corrupt: corrupt,
            _registration: registration,
        }
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    metainfo: Metainfo,
    peer_id: PeerId,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut socket = tokio_tungstenite::accept_async(stream).await?;
    let started = Instant::now();
    let lengths = metainfo.lengths();
    let mut session = PeerSession::new(
        lengths,
        metainfo.info_hash(),
        peer_id,
        Bitfield::full(lengths.piece_count()),
        SessionConfig::default(),
        Duration::ZERO,
    );
    loop {
        while let Some(event) = session.poll_event() {
            match event {
                SessionEvent::Interested(interested) => session.set_choking(!interested),
                SessionEvent::BlockRequested(block) => {
                    let garbage = vec![0x5A; block.length as usize];
                    session.send_piece(block, garbage.into());
                }
                _ => {}
            }
        }
        while let Some(message) = session.poll_transmit(started.elapsed()) {
            socket.send(WsMessage::Binary(message.to_bytes())).await?;
        }
        match socket.next().await {
            Some(Ok(WsMessage::Binary(bytes))) => {
                session.handle_message(started.elapsed(), Message::decode_frame(bytes)?)?;
            }
            Some(Ok(_)) => {}
            _ => return Ok(()),
        }
    }
}
