//! The node's tracker client: drives one [`mtorrent_shared::Announcer`] for every swarm the node
//! is in whose `.mtorrent` names the same pair of trackers, over one WebSocket to tracker 1 (or
//! 2). However many files the node shares, it holds one connection per tracker and announces
//! every swarm over it; the peers the trackers name are handed to the node to dial.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use mtorrent_shared::tracker::{FromTracker, PeerAddress, PeerInfo};
use mtorrent_shared::{Action, Announcer, AnnouncerConfig, AnnouncerEvent, InfoHash};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use super::torrent::Torrent;
use super::Node;

type TrackerSocket = mtorrent_tls::WsStream;

/// What the node tells its tracker client.
#[derive(Debug)]
pub enum SwarmChange {
    /// Join the torrent's swarm, registering the `.mtorrent` (`register`) if given.
    Join {
        /// The torrent.
        torrent: Arc<Torrent>,
        /// The `.mtorrent` document to register with the trackers.
        register: Option<String>,
    },
    /// The torrent now lacks this many bytes.
    Left {
        /// The torrent's swarm.
        info_hash: InfoHash,
        /// Bytes still missing.
        left: u64,
    },
    /// Leave the swarm.
    Leave(InfoHash),
    /// Close the tracker connection and end: the tracker drops every swarm of the connection.
    Shutdown,
}

/// Starts the client of tracker pair `trackers` for `node`; it runs until told to shut down
/// or until the node is gone.
pub fn spawn(node: Weak<Node>, trackers: [String; 2]) -> mpsc::UnboundedSender<SwarmChange> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(node, trackers, rx));
    tx
}

struct Client {
    node: Weak<Node>,
    announcer: Announcer,
    torrents: HashMap<InfoHash, Arc<Torrent>>,
    socket: Option<TrackerSocket>,
    start: tokio::time::Instant,
}

async fn run(
    node: Weak<Node>,
    trackers: [String; 2],
    mut changes: mpsc::UnboundedReceiver<SwarmChange>,
) {
    let Some(peer_id) = node.upgrade().map(|n| n.peer_id) else {
        return;
    };
    let start = tokio::time::Instant::now();
    let mut client = Client {
        node,
        announcer: Announcer::new(
            trackers,
            peer_id,
            AnnouncerConfig::default(),
            Duration::ZERO,
        ),
        torrents: HashMap::new(),
        socket: None,
        start,
    };
    loop {
        client.handle_events();
        client.perform_actions().await;
        let wake = client
            .announcer
            .poll_timeout()
            .map(|t| start + t)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            frame = next_text(&mut client.socket) => match frame {
                Some(text) => match FromTracker::decode(&text) {
                    Ok(message) => client.announcer.handle_message(message, client.now()),
                    Err(e) => tracing::warn!("bad message from the tracker: {e}"),
                },
                None => {
                    client.socket = None;
                    client.announcer.handle_disconnected(client.now());
                }
            },
            change = changes.recv() => match change {
                Some(SwarmChange::Shutdown) | None => break,
                Some(change) => client.apply(change),
            },
            () = tokio::time::sleep_until(wake) => client.announcer.handle_timeout(client.now()),
        }
    }
    // Whatever was queued (stops) goes out before the connection closes.
    client.perform_actions().await;
    if let Some(mut socket) = client.socket.take() {
        let _ = socket.close(None).await;
    }
}

impl Client {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn apply(&mut self, change: SwarmChange) {
        let now = self.now();
        match change {
            SwarmChange::Join { torrent, register } => {
                let Some(node) = self.node.upgrade() else {
                    return;
                };
                let info_hash = torrent.metainfo.info_hash();
                let left = left_of(&torrent);
                self.torrents.insert(info_hash, torrent);
                self.announcer
                    .add_swarm(info_hash, node.address(), left, register, now);
            }
            SwarmChange::Left { info_hash, left } => {
                self.announcer.set_left(info_hash, left, now);
            }
            SwarmChange::Leave(info_hash) => {
                self.torrents.remove(&info_hash);
                self.announcer.remove_swarm(info_hash, now);
            }
            SwarmChange::Shutdown => {}
        }
    }

    /// Acts on what the trackers said: dials the peers a download needs.
    fn handle_events(&mut self) {
        while let Some(event) = self.announcer.poll_event() {
            match event {
                AnnouncerEvent::Peers {
                    info_hash, peers, ..
                } => self.connect_to(info_hash, peers),
                AnnouncerEvent::SwitchedTracker { url } => tracing::info!("using tracker {url}"),
                AnnouncerEvent::Refused { code, message } => {
                    tracing::warn!("tracker refused: {code:?}: {message}");
                }
                // Native peers accept connections: nobody needs to signal them.
                AnnouncerEvent::Signal { .. } => {}
            }
        }
    }

    fn connect_to(&mut self, info_hash: InfoHash, peers: Vec<PeerInfo>) {
        let (Some(node), Some(torrent)) = (self.node.upgrade(), self.torrents.get(&info_hash))
        else {
            return;
        };
        if torrent.is_complete() {
            return;
        }
        for peer in peers {
            if peer.peer_id == node.peer_id || torrent.is_connected(peer.peer_id) {
                continue;
            }
            match peer.address {
                PeerAddress::Native { url } => node.dial(torrent.clone(), url),
                // A browser cannot be dialled: ask it, through the tracker, to dial us.
                // (The tracker sends it to the address it has for us; the URL is a hint.)
                PeerAddress::Browser => self.announcer.signal(
                    info_hash,
                    peer.peer_id,
                    node.advertise
                        .clone()
                        .unwrap_or_else(|| format!("ws://{}/", node.listen_addr)),
                    self.now(),
                ),
                // Trackers resolve ports to URLs before they pass them on.
                PeerAddress::Listening { .. } => {}
            }
        }
    }

    /// Connects, sends and closes as the announcer asks; messages are written together and
    /// flushed once.
    async fn perform_actions(&mut self) {
        let mut unflushed = false;
        while let Some(action) = self.announcer.poll_action() {
            match action {
                Action::Connect { urls, hedge_after } => {
                    match connect_either(&urls, hedge_after).await {
                        Some((which, socket)) => {
                            self.socket = Some(socket);
                            self.announcer.handle_connected(which, self.now());
                        }
                        None => {
                            tracing::debug!("cannot reach tracker {} nor {}", urls[0], urls[1]);
                            self.socket = None;
                            self.announcer.handle_disconnected(self.now());
                        }
                    }
                }
                Action::Send(message) => {
                    let fed = match self.socket.as_mut() {
                        Some(socket) => socket
                            .feed(WsMessage::Text(message.encode().into()))
                            .await
                            .is_ok(),
                        None => false,
                    };
                    unflushed |= fed;
                    if !fed {
                        self.socket = None;
                        self.announcer.handle_disconnected(self.now());
                    }
                }
                Action::Disconnect => self.socket = None,
            }
        }
        if unflushed {
            if let Some(socket) = self.socket.as_mut() {
                if socket.flush().await.is_err() {
                    self.socket = None;
                    self.announcer.handle_disconnected(self.now());
                }
            }
        }
    }
}

/// How long connecting to the trackers may take in all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `urls[0]`, and to `urls[1]` too if the first has not answered after
/// `hedge_after` (or failed before); returns the first that opens, with its index, and drops the
/// other attempt.
async fn connect_either(
    urls: &[String; 2],
    hedge_after: Duration,
) -> Option<(usize, TrackerSocket)> {
    let connect = |which: usize| {
        let url = urls[which].clone();
        async move {
            match mtorrent_tls::connect(&url, WebSocketConfig::default()).await {
                Ok((socket, _)) => (which, Some(socket)),
                Err(e) => {
                    tracing::debug!("cannot reach tracker {url}: {e}");
                    (which, None)
                }
            }
        }
    };
    let mut attempts = futures::stream::FuturesUnordered::new();
    attempts.push(connect(0));
    let hedge = tokio::time::sleep(hedge_after);
    let deadline = tokio::time::sleep(CONNECT_TIMEOUT);
    tokio::pin!(hedge, deadline);
    let mut hedged = false;
    loop {
        tokio::select! {
            Some((which, socket)) = attempts.next() => {
                if let Some(socket) = socket {
                    return Some((which, socket));
                }
                if !hedged {
                    hedged = true;
                    attempts.push(connect(1));
                } else if attempts.is_empty() {
                    return None;
                }
            }
            () = &mut hedge, if !hedged => {
                hedged = true;
                attempts.push(connect(1));
            }
            () = &mut deadline => return None,
        }
    }
}

/// Bytes the torrent still lacks.
pub fn left_of(torrent: &Torrent) -> u64 {
    torrent.metainfo.size() - torrent.watch_progress().borrow().bytes
}

/// The next text message, `None` when the socket closes; pending forever without a socket.
async fn next_text(socket: &mut Option<TrackerSocket>) -> Option<String> {
    let Some(s) = socket.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        match s.next().await? {
            Ok(WsMessage::Text(text)) => return Some(text.to_string()),
            Ok(WsMessage::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}
