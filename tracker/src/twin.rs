//! The outgoing link to the twin tracker: dial (over TLS for a `wss://` URL), prove to each
//! other that both hold the twin secret, send the whole state then every change, and apply what
//! the twin sends back; on any failure, dial again with a short backoff.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use mtorrent_shared::tracker::{FromTracker, ToTracker};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::state::{Tracker, TWIN_OUTBOX_CAPACITY};
use crate::twin_auth::{self, Side};
use crate::twin_sync::{TwinFrame, TwinInbox};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How long the twin has to answer this tracker's greeting, check its proof and welcome it.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);

/// Keeps a link to the twin at `url` for as long as the tracker runs.
pub async fn maintain_link(tracker: Arc<Tracker>, url: String) {
    let mut backoff = FIRST_BACKOFF;
    let mut last_error = None;
    loop {
        let config = WebSocketConfig::default()
            .max_message_size(Some(tracker.config.max_message_bytes))
            .max_frame_size(Some(tracker.config.max_message_bytes));
        match mtorrent_tls::connect(&url, config).await {
            Ok((socket, _)) => match run_link(&tracker, socket, &url).await {
                Ok(()) => {
                    backoff = FIRST_BACKOFF;
                    last_error = None;
                    tracing::warn!("twin link to {url} down");
                }
                Err(reason) => {
                    if last_error.as_ref() != Some(&reason) {
                        tracing::warn!("no twin link to {url}: {reason}");
                        last_error = Some(reason);
                    }
                }
            },
            Err(e) => {
                // Said once per new reason (an untrusted certificate, say), not every retry.
                let reason = e.to_string();
                if last_error.as_ref() != Some(&reason) {
                    tracing::warn!("cannot reach the twin at {url}: {reason}");
                    last_error = Some(reason);
                } else {
                    tracing::debug!("cannot reach the twin at {url}: {reason}");
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Greets the twin, and once each has proved to the other that it holds the twin secret,
/// carries the link until it breaks (`Ok`); `Err` says why the link never came up.
async fn run_link<S>(
    tracker: &Arc<Tracker>,
    socket: tokio_tungstenite::WebSocketStream<S>,
    url: &str,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = socket.split();
    tokio::time::timeout(
        WELCOME_TIMEOUT,
        authenticate(tracker, &mut sink, &mut stream, url),
    )
    .await
    .map_err(|_| format!("no welcome within {WELCOME_TIMEOUT:?}"))??;
    tracing::info!("twin link to {url} up");
    let (sender, mut outgoing) = mpsc::channel::<TwinFrame>(TWIN_OUTBOX_CAPACITY);
    let conn = tracker.new_connection_id();
    if !tracker.install_twin_link(conn, sender) {
        return Ok(());
    }
    let writer = async {
        while let Some(frame) = outgoing.recv().await {
            for text in frame.into_texts() {
                if sink.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
        }
    };
    let reader = async {
        let mut inbox = TwinInbox::default();
        while let Some(Ok(frame)) = stream.next().await {
            match frame {
                Message::Text(text) => match ToTracker::decode(&text) {
                    Ok(message) => tracker.handle_twin_message(&mut inbox, message),
                    Err(e) => tracing::warn!("bad message from the twin: {e}"),
                },
                Message::Close(_) => break,
                _ => {}
            }
        }
    };
    tokio::select! {
        () = writer => {}
        () = reader => {}
    }
    tracker.close_connection(conn);
    Ok(())
}

/// The dialling side of the twin handshake (see [`twin_auth`]): a nonce out, the twin's proof
/// checked, this tracker's proof back, and the twin's welcome.
async fn authenticate<K, S>(
    tracker: &Tracker,
    sink: &mut K,
    stream: &mut S,
    url: &str,
) -> Result<(), String>
where
    K: futures::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let secret = tracker.twin_secret().unwrap_or_default();
    let nonce = twin_auth::new_nonce();
    let hello = ToTracker::SyncHello {
        tracker_id: tracker.tracker_id.clone(),
        nonce: nonce.clone(),
    };
    send(sink, hello).await?;
    let (twin_id, twin_nonce, proof) = match next_reply(stream).await? {
        ToTracker::SyncChallenge {
            tracker_id,
            nonce,
            proof,
        } => (tracker_id, nonce, proof),
        other => return Err(format!("the twin answered {other:?} to the greeting")),
    };
    if twin_id == tracker.tracker_id {
        return Err(format!("{url} is this tracker itself, not its twin"));
    }
    if !twin_auth::is_nonce(&twin_nonce)
        || !twin_auth::verify(secret, Side::Answering, &nonce, &twin_nonce, &proof)
    {
        return Err(format!(
            "what answers at {url} cannot prove it holds the twin secret: it is not the twin, \
             or the two were given different --twin-secret"
        ));
    }
    let proof = twin_auth::prove(secret, Side::Dialling, &nonce, &twin_nonce);
    send(sink, ToTracker::SyncProof { proof }).await?;
    match next_reply(stream).await? {
        ToTracker::SyncWelcome { tracker_id } => {
            tracing::debug!("welcomed by twin {tracker_id}");
            Ok(())
        }
        other => Err(format!(
            "the twin answered {other:?} to this tracker's proof"
        )),
    }
}

async fn send<K>(sink: &mut K, message: ToTracker) -> Result<(), String>
where
    K: futures::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    sink.send(Message::Text(message.encode().into()))
        .await
        .map_err(|e| format!("cannot talk to the twin: {e}"))
}

/// The twin's next message during the handshake; an error reply means it refused this tracker.
async fn next_reply<S>(stream: &mut S) -> Result<ToTracker, String>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(frame) = stream.next().await {
        let text = match frame.map_err(|e| e.to_string())? {
            Message::Text(text) => text,
            Message::Close(_) => break,
            _ => continue,
        };
        if let Ok(message) = ToTracker::decode(&text) {
            return Ok(message);
        }
        if let Ok(FromTracker::Error { message, .. }) = FromTracker::decode(&text) {
            return Err(format!(
                "the twin refused this tracker ({message}): are both given the same --twin-secret?"
            ));
        }
        return Err(format!(
            "the twin sent something else than a twin message: {text:.200}"
        ));
    }
    Err("the twin closed the link before welcoming it".into())
}
