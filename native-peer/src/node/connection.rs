//! One peer connection: moves messages between a WebSocket and the torrent's swarm core,
//! which holds the connection's protocol state.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use futures::{SinkExt, StreamExt};
use mtorrent_shared::wire::Message;
use mtorrent_shared::CloseReason;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

use super::rate::RateLimit;
use super::torrent::{Registration, Torrent};

/// The largest WebSocket message a peer may send: one peer-wire frame.
pub const MAX_WS_MESSAGE: usize = mtorrent_shared::wire::MAX_FRAME_LEN + 4;

/// Runs a connection until it ends. `first` is a message already read from the socket (the
/// handshake of an incoming connection, read to find the torrent).
pub async fn run<S>(
    torrent: Arc<Torrent>,
    socket: WebSocketStream<S>,
    first: Option<Message>,
    upload_limit: Option<Arc<RateLimit>>,
) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let registration = torrent.connect();
    let key = registration.key;
    let result = drive(&torrent, registration, socket, first, upload_limit).await;
    torrent.disconnect(key);
    result
}

async fn drive<S>(
    torrent: &Torrent,
    Registration { key, wake }: Registration,
    mut socket: WebSocketStream<S>,
    first: Option<Message>,
    upload_limit: Option<Arc<RateLimit>>,
) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut stop = torrent.stop_signal();
    if let Some(message) = first {
        torrent.handle_message(key, message)?;
    }
    loop {
        let transmit = torrent.transmit(key);
        send(&mut socket, transmit.messages, upload_limit.as_deref()).await?;
        match transmit.close {
            Some(CloseReason::Duplicate) => return Ok(()),
            Some(reason) => bail!("{reason}"),
            None => {}
        }
        tokio::select! {
            frame = socket.next() => match frame {
                Some(Ok(WsMessage::Binary(bytes))) => {
                    let message = Message::decode_frame(bytes).context("bad frame from peer")?;
                    torrent.handle_message(key, message)?;
                }
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                Some(Ok(WsMessage::Close(_))) | None => return Ok(()),
                Some(Ok(_)) => bail!("peers send binary frames only"),
                Some(Err(e)) => return Err(e.into()),
            },
            () = wake.notified() => {}
            () = stop.wait() => {
                // Say goodbye, so the peer sees a closed connection rather than a reset.
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.close(None)).await;
                return Ok(());
            }
        }
    }
}

/// How long a write may make no progress before the peer is dropped as one that does not
/// read: its requests would otherwise hold our buffers, and the connection, forever.
pub const WRITE_STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// `write`, failed if the peer does not take it within [`WRITE_STALL_TIMEOUT`].
async fn unless_stalled<T>(
    write: impl std::future::Future<Output = Result<T, tokio_tungstenite::tungstenite::Error>>,
) -> Result<T> {
    match tokio::time::timeout(WRITE_STALL_TIMEOUT, write).await {
        Ok(result) => Ok(result?),
        Err(_) => bail!("the peer has not read what we sent for {WRITE_STALL_TIMEOUT:?}"),
    }
}

/// How long a stopping connection waits to send its close frame.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

async fn send<S>(
    socket: &mut WebSocketStream<S>,
    messages: Vec<Message>,
    upload_limit: Option<&RateLimit>,
) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if messages.is_empty() {
        return Ok(());
    }
    for message in messages {
        if let (Message::Piece { data, .. }, Some(limit)) = (&message, upload_limit) {
            // Send what is queued first, so the wait does not hold back earlier messages.
            unless_stalled(socket.flush()).await?;
            limit.acquire(data.len()).await;
        }
        unless_stalled(socket.feed(WsMessage::Binary(message.to_bytes()))).await?;
    }
    unless_stalled(socket.flush()).await?;
    Ok(())
}
