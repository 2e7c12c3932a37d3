//! Drives a [`mtorrent_shared::Announcer`] for one torrent: a WebSocket to tracker 1 (or 2),
//! announces on schedule, and new peers handed to the node to dial.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use mtorrent_shared::tracker::{FromTracker, PeerAddress};
use mtorrent_shared::{Action, Announcer, AnnouncerConfig, AnnouncerEvent};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::torrent::Torrent;
use super::Node;

type TrackerSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Announces `torrent` until it is stopped (then leaves its swarm), dialing the peers the trackers name
/// while the torrent is incomplete. `register` is the `.mtorrent` to register the file with.
pub async fn announce(node: Arc<Node>, torrent: Arc<Torrent>, register: Option<String>) {
    let start = tokio::time::Instant::now();
    let now = || start.elapsed();
    let info_hash = torrent.metainfo.info_hash();
    let mut announcer = Announcer::new(
        torrent.metainfo.trackers().clone(),
        node.peer_id,
        AnnouncerConfig::default(),
        now(),
    );
    let left = |t: &Torrent| t.metainfo.size() - t.watch_progress().borrow().bytes;
    announcer.add_swarm(
        info_hash,
        PeerAddress::Native {
            url: node.advertised_url.clone(),
        },
        left(&torrent),
        register,
        now(),
    );
    let mut progress = torrent.watch_progress();
    let mut socket: Option<TrackerSocket> = None;
    let mut stopping = false;
    let mut stop = torrent.stop_signal();
    loop {
        // Events first: answering them (signals) queues messages sent just below.
        while let Some(event) = announcer.poll_event() {
            match event {
                AnnouncerEvent::Peers { peers, .. } if !torrent.is_complete() => {
                    for peer in peers {
                        if torrent.is_connected(peer.peer_id) || peer.peer_id == node.peer_id {
                            continue;
                        }
                        match peer.address {
                            PeerAddress::Native { url } => node.dial(torrent.clone(), url),
                            // A browser cannot be dialled: ask it, through the tracker, to
                            // dial us.
                            PeerAddress::Browser => announcer.signal(
                                info_hash,
                                peer.peer_id,
                                node.advertised_url.clone(),
                                now(),
                            ),
                        }
                    }
                }
                AnnouncerEvent::SwitchedTracker { url } => {
                    tracing::info!("using tracker {url}");
                }
                AnnouncerEvent::Refused { code, message } => {
                    tracing::warn!("tracker refused: {code:?}: {message}");
                }
                _ => {}
            }
        }
        while let Some(action) = announcer.poll_action() {
            match action {
                Action::Connect(url) => {
                    let connect = tokio_tungstenite::connect_async(url.as_str());
                    match tokio::time::timeout(Duration::from_secs(10), connect).await {
                        Ok(Ok((s, _))) => {
                            socket = Some(s);
                            announcer.handle_connected(now());
                        }
                        _ => {
                            tracing::debug!("cannot reach tracker {url}");
                            announcer.handle_disconnected(now());
                        }
                    }
                }
                Action::Send(message) => {
                    let sent = match socket.as_mut() {
                        Some(s) => s
                            .send(WsMessage::Text(message.encode().into()))
                            .await
                            .is_ok(),
                        None => false,
                    };
                    if !sent {
                        socket = None;
                        announcer.handle_disconnected(now());
                    }
                }
                Action::Disconnect => socket = None,
            }
        }
        if stopping {
            if let Some(mut s) = socket.take() {
                let _ = s.close(None).await;
            }
            return;
        }
        let wake = announcer
            .poll_timeout()
            .map(|t| start + t)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            frame = next_text(&mut socket) => match frame {
                Some(text) => match FromTracker::decode(&text) {
                    Ok(message) => announcer.handle_message(message, now()),
                    Err(e) => tracing::warn!("bad message from the tracker: {e}"),
                },
                None => {
                    socket = None;
                    announcer.handle_disconnected(now());
                }
            },
            changed = progress.changed() => {
                if changed.is_err() {
                    return;
                }
                announcer.set_left(info_hash, left(&torrent), now());
            }
            () = tokio::time::sleep_until(wake) => announcer.handle_timeout(now()),
            () = stop.wait(), if !stopping => {
                // Leave the swarm, if the tracker is connected, then end.
                announcer.remove_swarm(info_hash, now());
                stopping = true;
            }
        }
    }
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
