//! One WebSocket connection: a peer, or the twin tracker, which greets with `sync_hello` and
//! proves it holds the twin secret (see [`crate::twin_auth`]) before anything it says counts.
//!
//! [`run`] sets up, calls [`run_inner`], and always cleans up, so a connection's peers are
//! dropped however it ends. Errors end the connection, never the tracker.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use mtorrent_shared::tracker::{AnnounceEvent, ErrorCode, FromTracker, ToTracker};
use tokio::sync::mpsc;

use crate::admission::Slot;
use crate::advertised::Refusal;
use crate::metered::Received;
use crate::outbox::{Outbox, Text};
use crate::registry::ConnectionId;
use crate::state::{Tracker, Verdict, TWIN_OUTBOX_CAPACITY};
use crate::twin_auth::{self, Side};
use crate::twin_sync::{TwinFrame, TwinInbox};

/// How long a peer may leave its queued replies unread before it is dropped as a slow reader.
const SLOW_READER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a message under way may go without a byte arriving before the peer is dropped.
const PARTIAL_MESSAGE_STALL: Duration = Duration::from_secs(10);

/// After [`PARTIAL_MESSAGE_STALL`], a message under way must have arrived at this many bytes
/// per second on average: a peer that trickles a large message is dropped, rather than make the
/// tracker hold the part it sent for as long as it likes.
const PARTIAL_MESSAGE_MIN_RATE: u64 = 64 * 1024;

/// How often a connection waiting for a message looks at what arrived meanwhile.
const ARRIVAL_CHECK: Duration = Duration::from_secs(1);

/// The longest header of a client's control frame: two bytes and a four-byte mask (a control
/// frame's payload is at most 125 bytes, so its length fits the first).
const MAX_CONTROL_HEADER: usize = 6;

/// Serves one accepted WebSocket, from `source`, until it closes; `received` counts the bytes
/// that arrive on it, and `_slot` is its place among the tracker's connections, freed when
/// this returns.
pub async fn run(
    tracker: Arc<Tracker>,
    socket: WebSocket,
    source: IpAddr,
    received: Arc<Received>,
    _slot: Slot,
) {
    let (mut sink, stream) = socket.split();
    let (outbox, mut outgoing) = Outbox::new(tracker.config.max_queued_bytes);
    // Used only if the connection turns out to be the twin's (a larger queue, see `state`).
    let (twin_sender, mut twin_outgoing) = mpsc::channel::<TwinFrame>(TWIN_OUTBOX_CAPACITY);
    let conn = tracker.open_connection(outbox.clone());
    let idle_timeout = Duration::from_secs(tracker.config.idle_timeout);
    let writer = tokio::spawn(async move {
        // A ping every third of the idle timeout: a peer that reads answers it, so an idle
        // but live connection always has something arriving.
        let mut ping = tokio::time::interval(idle_timeout / 3);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        loop {
            let sent = tokio::select! {
                // Replies first, so everything queued is sent before a closed twin queue ends
                // the loop.
                biased;
                Some(text) = outgoing.recv() => {
                    let sent = sink.send(Message::Text(shared_text(&text))).await;
                    outgoing.written(&text);
                    sent
                }
                // `None` here means the twin link was installed and then dropped: close.
                twin = twin_outgoing.recv() => match twin {
                    Some(frame) => {
                        let mut sent = Ok(());
                        for text in frame.into_texts() {
                            sent = sink.send(Message::Text(text.into())).await;
                            if sent.is_err() {
                                break;
                            }
                        }
                        sent
                    }
                    None => break,
                },
                _ = ping.tick() => sink.send(Message::Ping(bytes::Bytes::new())).await,
            };
            if sent.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let mut link = Some(twin_sender);
    let frames = Frames::new(
        stream,
        received,
        Duration::from_secs(tracker.config.idle_timeout),
    );
    if let Err(reason) = run_inner(&tracker, conn, source, frames, outbox, &mut link).await {
        tracing::debug!(conn, "connection closed: {reason}");
    }
    tracker.close_connection(conn);
    // Let the writer flush what is queued (such as the error that closed the connection), but
    // never wait long on a peer that does not read.
    drop(link);
    let abort = writer.abort_handle();
    if tokio::time::timeout(Duration::from_secs(2), writer)
        .await
        .is_err()
    {
        abort.abort();
    }
}

type TwinChannel = Option<mpsc::Sender<TwinFrame>>;

/// A twin handshake under way on this connection: the greeting's tracker id and nonce, and the
/// nonce this tracker answered with.
struct TwinHandshake {
    tracker_id: String,
    dialling_nonce: String,
    answering_nonce: String,
}

impl TwinHandshake {
    /// Whether `proof` shows the greeting tracker holds this tracker's twin secret.
    fn proved_by(&self, tracker: &Tracker, proof: &str) -> bool {
        tracker.twin_secret().is_some_and(|secret| {
            twin_auth::verify(
                secret,
                Side::Dialling,
                &self.dialling_nonce,
                &self.answering_nonce,
                proof,
            )
        })
    }
}

/// The answer to a twin's greeting (this tracker's nonce and proof), and the handshake to
/// finish with the twin's proof; or why the greeting is refused.
fn answer_twin_greeting(
    tracker: &Tracker,
    tracker_id: String,
    nonce: String,
) -> Result<(ToTracker, TwinHandshake), &'static str> {
    let secret = tracker
        .twin_secret()
        .ok_or("not the twin: this tracker has no twin secret")?;
    if !twin_auth::is_nonce(&nonce) {
        return Err("bad nonce");
    }
    let answering_nonce = twin_auth::new_nonce();
    let challenge = ToTracker::SyncChallenge {
        tracker_id: tracker.tracker_id.clone(),
        proof: twin_auth::prove(secret, Side::Answering, &nonce, &answering_nonce),
        nonce: answering_nonce.clone(),
    };
    let handshake = TwinHandshake {
        tracker_id,
        dialling_nonce: nonce,
        answering_nonce,
    };
    Ok((challenge, handshake))
}

async fn run_inner(
    tracker: &Arc<Tracker>,
    conn: ConnectionId,
    source: IpAddr,
    mut frames: Frames,
    outbox: Outbox,
    link: &mut TwinChannel,
) -> Result<(), String> {
    let mut limiter = RateLimiter::new(tracker.config.rate_limit, tracker.config.rate_burst);
    let mut strikes = 0u32;
    let mut is_twin = false;
    let mut handshake: Option<TwinHandshake> = None;
    let mut inbox = TwinInbox::default();
    loop {
        let Some(frame) = frames.next().await? else {
            break;
        };
        let text = match frame {
            Message::Text(text) => text,
            Message::Binary(_) => {
                strike(
                    &outbox,
                    &mut strikes,
                    tracker,
                    ErrorCode::Malformed,
                    "send text frames",
                )
                .await?;
                continue;
            }
            Message::Close(_) => return Ok(()),
            Message::Ping(_) | Message::Pong(_) => continue,
        };
        tracker.messages.fetch_add(1, Ordering::Relaxed);
        if is_twin {
            match ToTracker::decode(&text) {
                Ok(message) => tracker.handle_twin_message(&mut inbox, message),
                Err(e) => tracing::warn!("bad message from the twin: {e}"),
            }
            continue;
        }
        if !limiter.allow(Instant::now()) {
            strike(
                &outbox,
                &mut strikes,
                tracker,
                ErrorCode::RateLimited,
                "slow down",
            )
            .await?;
            continue;
        }
        let message = match ToTracker::decode(&text) {
            Ok(message) => message,
            Err(e) => {
                strike(
                    &outbox,
                    &mut strikes,
                    tracker,
                    ErrorCode::Malformed,
                    &e.to_string(),
                )
                .await?;
                continue;
            }
        };
        match message {
            ToTracker::SyncHello { tracker_id, nonce } => {
                match answer_twin_greeting(tracker, tracker_id, nonce) {
                    Ok((challenge, greeting)) => {
                        queue(&outbox, challenge.encode().into()).await?;
                        handshake = Some(greeting);
                    }
                    Err(reason) => {
                        tracing::warn!(conn, "refused a twin link: {reason}");
                        strike(&outbox, &mut strikes, tracker, ErrorCode::Malformed, reason)
                            .await?;
                    }
                }
                continue;
            }
            ToTracker::SyncProof { proof } => {
                let Some(greeted) = handshake.take().filter(|h| h.proved_by(tracker, &proof))
                else {
                    tracing::warn!(conn, "refused a twin link: no proof of the twin secret");
                    strike(
                        &outbox,
                        &mut strikes,
                        tracker,
                        ErrorCode::Malformed,
                        "not the twin",
                    )
                    .await?;
                    continue;
                };
                tracing::info!(conn, "twin {} connected", greeted.tracker_id);
                is_twin = true;
                let welcome = ToTracker::SyncWelcome {
                    tracker_id: tracker.tracker_id.clone(),
                };
                queue(&outbox, welcome.encode().into()).await?;
                become_twin_link(tracker, conn, link);
                continue;
            }
            _ => {}
        }
        if let ToTracker::Announce(announce) = &message {
            // Checked before the state is locked: a name may take a lookup. A peer that leaves
            // is not held to its address: nobody dials it from this announce.
            let checked = if announce.event == AnnounceEvent::Stopped {
                Ok(())
            } else {
                tracker.advertised.check(&announce.address, source).await
            };
            match checked {
                Ok(()) => {}
                Err(Refusal::NotYours(reason)) => {
                    let code = ErrorCode::BadAddress;
                    strike(&outbox, &mut strikes, tracker, code, &reason).await?;
                    continue;
                }
                Err(Refusal::TryLater(reason)) => {
                    let refused = FromTracker::error(ErrorCode::BadAddress, &reason);
                    queue(&outbox, refused.encode().into()).await?;
                    continue;
                }
            }
        }
        let mut reply = None;
        let verdict = tracker.handle_peer_message(conn, source, message, &mut reply);
        if let Some(reply) = reply {
            queue(&outbox, reply).await?;
        }
        if verdict == Verdict::Strike {
            strikes += 1;
            check_strikes(strikes, tracker)?;
        }
    }
    Ok(())
}

/// An incoming twin link. If this tracker dials its twin itself, its changes go over that
/// outgoing link and this one only receives; otherwise this link carries them too.
fn become_twin_link(tracker: &Arc<Tracker>, conn: ConnectionId, link: &mut TwinChannel) {
    tracker.forget_outbox(conn);
    if tracker.config.twin.is_some() {
        return;
    }
    if let Some(sender) = link.take() {
        tracker.install_twin_link(conn, sender);
    }
}

/// Queues a reply, waiting while the peer reads what is queued before; a peer that leaves it
/// unread for [`SLOW_READER_TIMEOUT`] is dropped, and meanwhile nothing more is read from it.
async fn queue(outbox: &Outbox, text: Text) -> Result<(), String> {
    match tokio::time::timeout(SLOW_READER_TIMEOUT, outbox.send(text)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err("writer gone".into()),
        Err(_) => Err(format!(
            "slow reader: {} bytes unread for {SLOW_READER_TIMEOUT:?}",
            outbox.queued()
        )),
    }
}

/// The text as a WebSocket frame's payload, sharing its bytes rather than copying them.
fn shared_text(text: &Text) -> axum::extract::ws::Utf8Bytes {
    struct Shared(Text);
    impl AsRef<[u8]> for Shared {
        fn as_ref(&self) -> &[u8] {
            self.0.as_bytes()
        }
    }
    axum::extract::ws::Utf8Bytes::try_from(bytes::Bytes::from_owner(Shared(text.clone())))
        .expect("a str is UTF-8")
}

async fn strike(
    outbox: &Outbox,
    strikes: &mut u32,
    tracker: &Tracker,
    code: ErrorCode,
    message: &str,
) -> Result<(), String> {
    *strikes += 1;
    queue(outbox, FromTracker::error(code, message).encode().into()).await?;
    check_strikes(*strikes, tracker)
}

fn check_strikes(strikes: u32, tracker: &Tracker) -> Result<(), String> {
    if strikes >= tracker.config.max_strikes {
        Err(format!("closed after {strikes} refused messages"))
    } else {
        Ok(())
    }
}

/// A token bucket: `rate` messages per second on average, `burst` at once.
#[derive(Debug)]
struct RateLimiter {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl RateLimiter {
    fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: None,
        }
    }

    fn allow(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + refill).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A connection's incoming frames, each awaited within the limits that keep a peer from holding
/// the connection, or part of a message, for free.
struct Frames {
    stream: futures::stream::SplitStream<WebSocket>,
    received: Arc<Received>,
    idle_timeout: Duration,
    /// When the last frame of any kind came.
    last_heard: Instant,
    /// When the last whole message came (or a ping or pong with nothing else since), and the
    /// byte count then: what arrives after it belongs to a message under way.
    last_frame: (Instant, u64),
    /// When the byte count last grew, and to what.
    last_byte: (Instant, u64),
    /// When bytes of a message were first seen after the last whole frame.
    message_started: Option<Instant>,
}

impl Frames {
    fn new(
        stream: futures::stream::SplitStream<WebSocket>,
        received: Arc<Received>,
        idle_timeout: Duration,
    ) -> Self {
        let now = Instant::now();
        let count = received.get();
        Self {
            stream,
            received,
            idle_timeout,
            last_heard: now,
            last_frame: (now, count),
            last_byte: (now, count),
            message_started: None,
        }
    }

    /// The next frame; `None` when the peer closed; `Err` when it broke a limit: nothing at all
    /// (not even the answer to a ping) for the idle timeout, or a message under way that
    /// stopped arriving or arrives too slowly.
    async fn next(&mut self) -> Result<Option<Message>, String> {
        loop {
            match tokio::time::timeout(ARRIVAL_CHECK, self.stream.next()).await {
                Ok(Some(frame)) => {
                    let now = Instant::now();
                    let count = self.received.get();
                    self.last_heard = now;
                    // A ping or pong may come between the fragments of a message: it ends
                    // nothing unless nothing but itself arrived since the last message.
                    let control = match &frame {
                        Ok(Message::Ping(payload) | Message::Pong(payload)) => Some(payload.len()),
                        _ => None,
                    };
                    let since = count - self.last_frame.1;
                    if control.is_none_or(|len| since <= (len + MAX_CONTROL_HEADER) as u64) {
                        self.last_frame = (now, count);
                        self.last_byte = self.last_frame;
                        self.message_started = None;
                    } else {
                        // Control frames coming often must not keep the message's limits
                        // from being checked.
                        self.check(now)?;
                    }
                    return frame.map(Some).map_err(|e| e.to_string());
                }
                Ok(None) => return Ok(None),
                Err(_) => self.check(Instant::now())?,
            }
        }
    }

    fn check(&mut self, now: Instant) -> Result<(), String> {
        let count = self.received.get();
        if count != self.last_byte.1 {
            self.last_byte = (now, count);
        }
        let waited = now.duration_since(self.last_heard);
        if waited >= self.idle_timeout {
            return Err(format!("silent for {:?}", self.idle_timeout));
        }
        let pending = count - self.last_frame.1;
        if pending == 0 {
            return Ok(());
        }
        if now.duration_since(self.last_byte.0) >= PARTIAL_MESSAGE_STALL {
            return Err(format!(
                "{pending} bytes of a message, then nothing for {PARTIAL_MESSAGE_STALL:?}"
            ));
        }
        let started = *self.message_started.get_or_insert(self.last_byte.0);
        let arriving = now.duration_since(started);
        if arriving >= PARTIAL_MESSAGE_STALL
            && pending < PARTIAL_MESSAGE_MIN_RATE * arriving.as_secs()
        {
            return Err(format!(
                "a message trickling in: {pending} bytes in {arriving:?}"
            ));
        }
        Ok(())
    }
}
