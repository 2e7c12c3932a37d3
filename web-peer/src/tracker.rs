//! The page's tracker client: drives one `shared` [`Announcer`] for every swarm of the page
//! whose `.mtorrent` names the same pair of trackers, over one browser WebSocket to tracker 1
//! (or 2). However many files the page shares or downloads, it is one peer with one peer id and
//! one tracker connection; a download dials the native peers it needs, and a seeding swarm
//! dials back the native peers that ask for it through the tracker's signal. A peer address
//! is dialled once per file however often the tracker names it, and the page holds a bounded
//! number of peer connections ([`connection::dials`]); a tracker message too long for the
//! protocol is refused before it is copied into WebAssembly memory.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use futures::channel::mpsc;
use futures::future::{select, Either};
use futures::StreamExt;
use js_sys::JsString;
use mtorrent_shared::tracker::{FromTracker, PeerAddress, PeerInfo, MAX_TRACKER_MESSAGE_BYTES};
use mtorrent_shared::{Action, Announcer, AnnouncerConfig, AnnouncerEvent, InfoHash, PeerId};

use crate::clock;
use crate::connection;
use crate::events::{EventSink, PeerEvent};
use crate::origin;
use crate::socket::{Socket, SocketEvent};
use crate::swarm::Swarm;

/// How many peers a download dials at most at once.
const MAX_DOWNLOAD_PEERS: usize = 8;

/// How long opening a tracker connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The close code for a message that breaks the protocol: RFC 6455's 1003 in the private
/// range (4000 +), since a page may close only with 1000 or 3000–4999.
const CLOSE_UNSUPPORTED: u16 = 4003;

/// What the page tells its tracker client.
pub enum SwarmChange {
    /// Join the swarm, registering the `.mtorrent` (`register`) if given.
    Join(Rc<Swarm>, Option<String>),
}

enum Input {
    Change(SwarmChange),
    /// A text message on tracker connection number `.0`.
    Text(u64, String),
    /// Tracker connection number `.0` closed.
    Closed(u64),
    /// Tracker connection number `.0` sent a message that breaks the protocol, for reason `.1`.
    Refused(u64, String),
    /// The page dropped its peer: nothing more will join.
    PeerDropped,
}

/// Starts the client of tracker pair `trackers` for the page's peer `peer_id`; it runs until
/// the returned sender is dropped.
pub fn spawn(
    peer_id: PeerId,
    trackers: [String; 2],
    events: EventSink,
) -> mpsc::UnboundedSender<SwarmChange> {
    let (changes, mut changes_rx) = mpsc::unbounded::<SwarmChange>();
    let (inputs, inputs_rx) = mpsc::unbounded::<Input>();
    let forward = inputs.clone();
    wasm_bindgen_futures::spawn_local(async move {
        while let Some(change) = changes_rx.next().await {
            if forward.unbounded_send(Input::Change(change)).is_err() {
                return;
            }
        }
        let _ = forward.unbounded_send(Input::PeerDropped);
    });
    let client = Client {
        announcer: Announcer::new(trackers, peer_id, AnnouncerConfig::default(), clock::now()),
        peer_id,
        events,
        swarms: HashMap::new(),
        socket: None,
        connection: 0,
        inputs,
    };
    wasm_bindgen_futures::spawn_local(client.run(inputs_rx));
    changes
}

struct Client {
    announcer: Announcer,
    peer_id: PeerId,
    events: EventSink,
    /// Each swarm, with the bytes it lacked when last told to the tracker.
    swarms: HashMap<InfoHash, (Rc<Swarm>, u64)>,
    socket: Option<Socket>,
    /// The number of the current tracker connection, so a closed one's late messages are
    /// ignored.
    connection: u64,
    inputs: mpsc::UnboundedSender<Input>,
}

impl Client {
    async fn run(mut self, mut inputs: mpsc::UnboundedReceiver<Input>) {
        loop {
            self.handle_events();
            self.perform_actions().await;
            self.follow_swarms();
            let now = clock::now();
            // Wake at least every 250 ms to notice progress and stops.
            let wait = self
                .announcer
                .poll_timeout()
                .map_or(Duration::MAX, |deadline| deadline.saturating_sub(now))
                .min(Duration::from_millis(250));
            match select(inputs.next(), Box::pin(clock::sleep(wait))).await {
                Either::Left((Some(Input::PeerDropped) | None, _)) => return,
                Either::Left((Some(input), _)) => self.handle_input(input),
                Either::Right(((), _)) => self.announcer.handle_timeout(clock::now()),
            }
        }
    }

    fn handle_input(&mut self, input: Input) {
        let now = clock::now();
        match input {
            Input::Change(SwarmChange::Join(swarm, register)) => {
                let info_hash = swarm.metainfo.info_hash();
                let left = swarm.left();
                // The swarm's own timers run from its core's next deadline until it stops.
                wasm_bindgen_futures::spawn_local(swarm.clone().run_timers());
                self.swarms.insert(info_hash, (swarm, left));
                self.announcer
                    .add_swarm(info_hash, PeerAddress::Browser, left, register, now);
            }
            Input::Text(connection, text) if connection == self.connection => {
                match FromTracker::decode(&text) {
                    Ok(message) => self.announcer.handle_message(message, now),
                    Err(e) => self.events.emit(&PeerEvent::Warning {
                        info_hash: None,
                        message: format!("the tracker sent something unreadable: {e}"),
                    }),
                }
            }
            Input::Closed(connection) if connection == self.connection => {
                self.socket = None;
                self.announcer.handle_disconnected(now);
            }
            Input::Refused(connection, reason) if connection == self.connection => {
                self.events.emit(&PeerEvent::Warning {
                    info_hash: None,
                    message: format!("closed the tracker connection: {reason}"),
                });
                if let Some(socket) = self.socket.take() {
                    socket.close_with(CLOSE_UNSUPPORTED, "message refused");
                }
                // Messages still on their way from it are ignored.
                self.connection += 1;
                self.announcer.handle_disconnected(now);
            }
            Input::Text(..) | Input::Closed(_) | Input::Refused(..) | Input::PeerDropped => {}
        }
    }

    /// Tells the tracker how much each swarm lacks, and leaves the stopped ones.
    fn follow_swarms(&mut self) {
        let now = clock::now();
        let mut stopped = Vec::new();
        for (info_hash, (swarm, told)) in &mut self.swarms {
            if swarm.is_stopped() {
                stopped.push(*info_hash);
            } else if swarm.left() != *told {
                *told = swarm.left();
                self.announcer.set_left(*info_hash, *told, now);
            }
        }
        for info_hash in stopped {
            self.swarms.remove(&info_hash);
            self.announcer.remove_swarm(info_hash, now);
        }
    }

    fn handle_events(&mut self) {
        while let Some(event) = self.announcer.poll_event() {
            match event {
                AnnouncerEvent::Peers {
                    info_hash,
                    peers,
                    seeders,
                    leechers,
                } => {
                    self.events.emit(&PeerEvent::Swarm {
                        info_hash: info_hash.to_hex(),
                        seeders,
                        leechers,
                    });
                    if let Some((swarm, _)) = self.swarms.get(&info_hash) {
                        self.dial_for_download(swarm, peers);
                    }
                }
                AnnouncerEvent::Signal {
                    info_hash,
                    from,
                    dial,
                } => {
                    if let Some((swarm, _)) = self.swarms.get(&info_hash) {
                        let wanted = swarm.is_seeding() && !swarm.is_connected(from);
                        if wanted && origin::reachable(&dial, origin::page_is_https()) {
                            // Nothing if the file dials or is connected to `dial` already, or
                            // the page holds all the connections it may.
                            connection::dial(swarm.clone(), dial);
                        } else if wanted {
                            self.events.emit(&PeerEvent::Warning {
                                info_hash: Some(info_hash.to_hex()),
                                message: format!(
                                    "a peer at {dial} asked for this file, but {}",
                                    origin::MIXED_CONTENT
                                ),
                            });
                        }
                    }
                }
                AnnouncerEvent::SwitchedTracker { url } => {
                    self.events.emit(&PeerEvent::Tracker { url });
                }
                AnnouncerEvent::Refused { message, .. } => {
                    self.events.emit(&PeerEvent::Warning {
                        info_hash: None,
                        message: format!("the tracker refused: {message}"),
                    });
                }
            }
        }
    }

    /// Dials the peers of the tracker's reply that the download needs; peers this page cannot
    /// reach (`ws://` ones, from an https page) are skipped, and the page hears how many.
    fn dial_for_download(&self, swarm: &Rc<Swarm>, peers: Vec<PeerInfo>) {
        if swarm.is_complete() || swarm.is_seeding() {
            return;
        }
        let https = origin::page_is_https();
        let (reachable, skipped): (Vec<String>, Vec<String>) = peers
            .into_iter()
            .filter(|peer| peer.peer_id != self.peer_id)
            .filter_map(|peer| match peer.address {
                PeerAddress::Native { url } => Some((peer.peer_id, url)),
                _ => None,
            })
            .filter(|(peer_id, _)| !swarm.is_connected(*peer_id))
            .map(|(_, url)| url)
            .partition(|url| origin::reachable(url, https));
        if !skipped.is_empty() {
            self.events.emit(&PeerEvent::Unreachable {
                info_hash: swarm.metainfo.info_hash().to_hex(),
                skipped: skipped.len(),
                reachable: reachable.len() + swarm.peer_count(),
                reason: origin::MIXED_CONTENT.to_owned(),
            });
        }
        // Dials in progress count: a connection joins the swarm only once it is open.
        for url in reachable {
            if swarm.dial_count() >= MAX_DOWNLOAD_PEERS {
                break;
            }
            connection::dial(swarm.clone(), url);
        }
    }

    async fn perform_actions(&mut self) {
        while let Some(action) = self.announcer.poll_action() {
            match action {
                Action::Connect { urls, hedge_after } => {
                    self.connection += 1;
                    match open_either(&urls, hedge_after, self.connection, &self.inputs).await {
                        Some((which, socket)) => {
                            self.socket = Some(socket);
                            self.announcer.handle_connected(which, clock::now());
                        }
                        None => {
                            self.socket = None;
                            self.announcer.handle_disconnected(clock::now());
                        }
                    }
                }
                Action::Send(message) => {
                    let sent = match self.socket.as_ref() {
                        Some(socket) => socket.send_text(&message.encode()).is_ok(),
                        None => false,
                    };
                    if !sent {
                        self.socket = None;
                        self.announcer.handle_disconnected(clock::now());
                    }
                }
                Action::Disconnect => {
                    // Messages still on their way from the old connection are ignored.
                    self.connection += 1;
                    self.socket = None;
                }
            }
        }
    }
}

/// Opens a WebSocket to `urls[0]`, and to `urls[1]` too if the first is not open after
/// `hedge_after` (or failed before); returns the first that opens, with its index, and drops the
/// other attempt.
async fn open_either(
    urls: &[String; 2],
    hedge_after: Duration,
    connection: u64,
    inputs: &mpsc::UnboundedSender<Input>,
) -> Option<(usize, Socket)> {
    let open_one = |which: usize| {
        let inputs = inputs.clone();
        let url = urls[which].clone();
        Box::pin(async move { open(&url, connection, inputs).await })
    };
    let first = open_one(0);
    let first = match select(first, Box::pin(clock::sleep(hedge_after))).await {
        Either::Left((Some(socket), _)) => return Some((0, socket)),
        Either::Left((None, _)) => return open_one(1).await.map(|socket| (1, socket)),
        Either::Right(((), first)) => first,
    };
    match select(first, open_one(1)).await {
        Either::Left((Some(socket), _)) => Some((0, socket)),
        Either::Right((Some(socket), _)) => Some((1, socket)),
        Either::Left((None, second)) => second.await.map(|socket| (1, socket)),
        Either::Right((None, first)) => first.await.map(|socket| (0, socket)),
    }
}

/// Opens a tracker WebSocket and waits until it is open (at most [`CONNECT_TIMEOUT`]); its
/// text messages and its close reach `inputs`, tagged with `connection`.
async fn open(url: &str, connection: u64, inputs: mpsc::UnboundedSender<Input>) -> Option<Socket> {
    Socket::open(url, CONNECT_TIMEOUT, move |event| {
        let input = match event {
            SocketEvent::Text(text) => match tracker_text(&text) {
                Ok(text) => Input::Text(connection, text),
                Err(reason) => Input::Refused(connection, reason),
            },
            SocketEvent::Binary(buffer) => Input::Refused(
                connection,
                format!(
                    "the tracker sent a binary message of {} bytes; trackers send text",
                    buffer.byte_length()
                ),
            ),
            SocketEvent::Closed(_) => Input::Closed(connection),
        };
        let _ = inputs.unbounded_send(input);
    })
    .await
    .ok()
}

/// A tracker's text message as Rust text, unless it is longer than
/// [`MAX_TRACKER_MESSAGE_BYTES`]: refused from its length in UTF-16 units alone (each is one
/// UTF-8 byte at least), before it is copied into WebAssembly memory; and checked again in
/// UTF-8 bytes once copied.
fn tracker_text(text: &JsString) -> Result<String, String> {
    let too_long = |len: usize| {
        format!(
            "the tracker sent a message of more than {len} bytes; the limit is \
             {MAX_TRACKER_MESSAGE_BYTES}"
        )
    };
    let units = text.length() as usize;
    if units > MAX_TRACKER_MESSAGE_BYTES {
        return Err(too_long(units));
    }
    let text = String::from(text);
    if text.len() > MAX_TRACKER_MESSAGE_BYTES {
        return Err(too_long(text.len()));
    }
    Ok(text)
}

#[cfg(all(test, target_arch = "wasm32"))]
mod tests {
    use super::*;
    use js_sys::{ArrayBuffer, WebAssembly};
    use wasm_bindgen::JsCast;
    use wasm_bindgen_test::wasm_bindgen_test as test;

    wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

    fn memory_bytes() -> usize {
        wasm_bindgen::memory()
            .unchecked_into::<WebAssembly::Memory>()
            .buffer()
            .unchecked_into::<ArrayBuffer>()
            .byte_length() as usize
    }

    #[test]
    fn a_tracker_message_within_the_limit_is_taken_as_text() {
        let text = JsString::from("{\"type\":\"error\"} é");
        assert_eq!(tracker_text(&text).unwrap(), "{\"type\":\"error\"} é");
    }

    #[test]
    fn an_overlong_tracker_message_is_refused_without_being_copied_into_webassembly_memory() {
        let before = memory_bytes();
        let units = (before * 2).max(MAX_TRACKER_MESSAGE_BYTES + 1);
        let text = JsString::from("a").repeat(units as i32);
        let refused = tracker_text(&text);
        assert!(refused.is_err(), "{} units taken", units);
        let after = memory_bytes();
        assert!(
            after < units,
            "WebAssembly memory grew from {before} to {after} bytes for a {units}-byte message"
        );
    }

    #[test]
    fn a_tracker_message_longer_in_utf8_than_the_limit_is_refused() {
        // Within the limit in UTF-16 units, beyond it in UTF-8 bytes.
        let text = JsString::from("é").repeat((MAX_TRACKER_MESSAGE_BYTES / 2 + 1) as i32);
        assert!(tracker_text(&text).is_err());
    }
}
