//! The outgoing link to the twin tracker: dial, greet with the full state, stream every change,
//! apply what the twin sends back (over TLS for a `wss://` URL); on any failure, dial again with a short backoff.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use mtorrent_shared::tracker::{FromTracker, ToTracker};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::state::{Tracker, TWIN_OUTBOX_CAPACITY};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How long the twin has to welcome this tracker's greeting.
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

/// Greets the twin, and once it welcomes the greeting, carries the link until it breaks
/// (`Ok`); `Err` says why the twin never welcomed it.
async fn run_link<S>(
    tracker: &Arc<Tracker>,
    socket: tokio_tungstenite::WebSocketStream<S>,
    url: &str,
) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = socket.split();
    let hello = tracker.twin_hello().encode();
    sink.send(Message::Text(hello.into()))
        .await
        .map_err(|e| format!("cannot greet the twin: {e}"))?;
    tokio::time::timeout(WELCOME_TIMEOUT, welcome(&mut stream))
        .await
        .map_err(|_| format!("no welcome within {WELCOME_TIMEOUT:?}"))??;
    tracing::info!("twin link to {url} up");
    let (sender, mut outgoing) = mpsc::channel::<String>(TWIN_OUTBOX_CAPACITY);
    let conn = tracker.new_connection_id();
    if !tracker.install_twin_link(conn, sender, false) {
        return Ok(());
    }
    let writer = async {
        while let Some(text) = outgoing.recv().await {
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
    };
    let reader = async {
        while let Some(Ok(frame)) = stream.next().await {
            match frame {
                Message::Text(text) => match ToTracker::decode(&text) {
                    Ok(message) => tracker.handle_twin_message(message),
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

/// Reads until the twin welcomes this tracker's greeting; an error reply means it refused it.
async fn welcome<S>(stream: &mut S) -> Result<(), String>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(frame) = stream.next().await {
        let text = match frame.map_err(|e| e.to_string())? {
            Message::Text(text) => text,
            Message::Close(_) => break,
            _ => continue,
        };
        if let Ok(ToTracker::SyncWelcome { tracker_id }) = ToTracker::decode(&text) {
            tracing::debug!("welcomed by twin {tracker_id}");
            return Ok(());
        }
        if let Ok(FromTracker::Error { message, .. }) = FromTracker::decode(&text) {
            return Err(format!(
                "the twin refused this tracker ({message}): are both given the same --twin-secret?"
            ));
        }
    }
    Err("the twin closed the link before welcoming it".into())
}
