//! Drives a `shared` [`Announcer`] for one swarm over a browser WebSocket to tracker 1 (or 2):
//! announces, dials the native peers a download needs, and, seeding, dials back the native
//! peers that ask for us through the tracker's signal.

use std::rc::Rc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::future::{select, Either};
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use gloo::net::websocket::futures::WebSocket;
use gloo::net::websocket::{Message as WsMessage, State};
use mtorrent_shared::tracker::{FromTracker, PeerAddress};
use mtorrent_shared::{Action, Announcer, AnnouncerConfig, AnnouncerEvent};

use crate::clock;
use crate::connection;
use crate::events::PeerEvent;
use crate::swarm::Swarm;

/// How many peers a download dials at most at once.
const MAX_DOWNLOAD_PEERS: usize = 8;

enum Input {
    Text(String),
    Closed,
}

/// Announces `swarm` until it stops, registering `register` (its `.mtorrent`) if given.
pub fn announce(swarm: Rc<Swarm>, register: Option<String>) {
    wasm_bindgen_futures::spawn_local(run(swarm, register));
}

async fn run(swarm: Rc<Swarm>, register: Option<String>) {
    let info_hash = swarm.metainfo.info_hash();
    let mut announcer = Announcer::new(
        swarm.metainfo.trackers().clone(),
        swarm.peer_id,
        AnnouncerConfig::default(),
        clock::now(),
    );
    announcer.add_swarm(
        info_hash,
        PeerAddress::Browser,
        swarm.left(),
        register,
        clock::now(),
    );
    let mut link: Option<(
        SplitSink<WebSocket, WsMessage>,
        mpsc::UnboundedReceiver<Input>,
    )> = None;
    let mut left = swarm.left();
    let mut next_tick = clock::now();
    loop {
        while let Some(event) = announcer.poll_event() {
            handle_event(&swarm, event);
        }
        while let Some(action) = announcer.poll_action() {
            match action {
                Action::Connect(url) => match open(&url).await {
                    Some(opened) => {
                        link = Some(opened);
                        announcer.handle_connected(clock::now());
                    }
                    None => {
                        link = None;
                        announcer.handle_disconnected(clock::now());
                    }
                },
                Action::Send(message) => {
                    let sent = match link.as_mut() {
                        Some((sink, _)) => {
                            sink.send(WsMessage::Text(message.encode())).await.is_ok()
                        }
                        None => false,
                    };
                    if !sent {
                        link = None;
                        announcer.handle_disconnected(clock::now());
                    }
                }
                Action::Disconnect => link = None,
            }
        }
        if swarm.is_stopped() {
            announcer.remove_swarm(info_hash, clock::now());
            while let Some(action) = announcer.poll_action() {
                if let (Action::Send(message), Some((sink, _))) = (action, link.as_mut()) {
                    let _ = sink.send(WsMessage::Text(message.encode())).await;
                }
            }
            if let Some((mut sink, _)) = link {
                let _ = sink.close().await;
            }
            return;
        }
        if swarm.left() != left {
            left = swarm.left();
            announcer.set_left(info_hash, left, clock::now());
            continue;
        }
        let now = clock::now();
        if now >= next_tick {
            swarm.tick();
            next_tick = now + Duration::from_secs(1);
        }
        let deadline = announcer
            .poll_timeout()
            .map_or(next_tick, |t| t.min(next_tick));
        // Wake at least every 250 ms to notice progress and a stop.
        let wait = deadline.saturating_sub(now).min(Duration::from_millis(250));
        let input = match link.as_mut() {
            Some((_, inputs)) => match select(inputs.next(), Box::pin(clock::sleep(wait))).await {
                Either::Left((input, _)) => Some(input.unwrap_or(Input::Closed)),
                Either::Right(((), _)) => None,
            },
            None => {
                clock::sleep(wait).await;
                None
            }
        };
        match input {
            Some(Input::Text(text)) => match FromTracker::decode(&text) {
                Ok(message) => announcer.handle_message(message, clock::now()),
                Err(e) => swarm.events().emit(&PeerEvent::Warning {
                    info_hash: None,
                    message: format!("the tracker sent something unreadable: {e}"),
                }),
            },
            Some(Input::Closed) => {
                link = None;
                announcer.handle_disconnected(clock::now());
            }
            None => announcer.handle_timeout(clock::now()),
        }
    }
}

fn handle_event(swarm: &Rc<Swarm>, event: AnnouncerEvent) {
    let info_hash = swarm.metainfo.info_hash();
    match event {
        AnnouncerEvent::Peers {
            peers,
            seeders,
            leechers,
            ..
        } => {
            swarm.events().emit(&PeerEvent::Swarm {
                info_hash: info_hash.to_hex(),
                seeders,
                leechers,
            });
            if swarm.is_complete() {
                return;
            }
            for peer in peers {
                if swarm.peer_count() >= MAX_DOWNLOAD_PEERS {
                    break;
                }
                if let PeerAddress::Native { url } = peer.address {
                    if !swarm.is_connected(peer.peer_id) && peer.peer_id != swarm.peer_id {
                        connection::dial(swarm.clone(), url);
                    }
                }
            }
        }
        AnnouncerEvent::Signal { from, dial, .. } => {
            if swarm.is_seeding() && !swarm.is_connected(from) {
                connection::dial(swarm.clone(), dial);
            }
        }
        AnnouncerEvent::SwitchedTracker { url } => {
            swarm.events().emit(&PeerEvent::Tracker { url });
        }
        AnnouncerEvent::Refused { message, .. } => {
            swarm.events().emit(&PeerEvent::Warning {
                info_hash: Some(info_hash.to_hex()),
                message: format!("the tracker refused: {message}"),
            });
        }
    }
}

/// Opens a tracker WebSocket and waits until it is open (at most 10 s); its text messages
/// arrive on the returned channel.
async fn open(
    url: &str,
) -> Option<(
    SplitSink<WebSocket, WsMessage>,
    mpsc::UnboundedReceiver<Input>,
)> {
    let socket = WebSocket::open(url).ok()?;
    let deadline = clock::now() + Duration::from_secs(10);
    while matches!(socket.state(), State::Connecting) {
        if clock::now() > deadline {
            return None;
        }
        clock::sleep(Duration::from_millis(10)).await;
    }
    if !matches!(socket.state(), State::Open) {
        return None;
    }
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::unbounded();
    wasm_bindgen_futures::spawn_local(async move {
        while let Some(Ok(message)) = stream.next().await {
            if let WsMessage::Text(text) = message {
                if tx.unbounded_send(Input::Text(text)).is_err() {
                    return;
                }
            }
        }
        let _ = tx.unbounded_send(Input::Closed);
    });
    Some((sink, rx))
}
