//! One peer connection: drives a [`PeerSession`] over a WebSocket, serving blocks from the
//! torrent's storage and feeding received blocks to its scheduler.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use mtorrent_shared::wire::Message;
use mtorrent_shared::{PeerId, PeerKey, PeerSession, SessionConfig, SessionEvent};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

use super::rate::RateLimit;
use super::torrent::{PeerCommand, StopSignal, Torrent};

/// The largest WebSocket message a peer may send: one peer-wire frame.
pub const MAX_WS_MESSAGE: usize = mtorrent_shared::wire::MAX_FRAME_LEN + 4;

/// Runs a connection until it ends. `first` is a message already read from the socket (the
/// handshake of an incoming connection, read to find the torrent).
pub async fn run<S>(
    torrent: Arc<Torrent>,
    our_peer_id: PeerId,
    socket: WebSocketStream<S>,
    first: Option<Message>,
    upload_limit: Option<Arc<RateLimit>>,
) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut connection = Connection {
        stop: torrent.stop_signal(),
        upload_limit,
        session: PeerSession::new(
            torrent.metainfo.lengths(),
            torrent.metainfo.info_hash(),
            our_peer_id,
            torrent.have(),
            SessionConfig::default(),
            torrent.now(),
        ),
        torrent,
        key: None,
        commands: None,
    };
    let result = connection.drive(socket, first).await;
    if let Some(key) = connection.key {
        connection.torrent.remove_peer(key);
    }
    result
}

struct Connection {
    stop: StopSignal,
    upload_limit: Option<Arc<RateLimit>>,
    torrent: Arc<Torrent>,
    session: PeerSession,
    key: Option<PeerKey>,
    commands: Option<mpsc::UnboundedReceiver<PeerCommand>>,
}

impl Connection {
    async fn drive<S>(
        &mut self,
        mut socket: WebSocketStream<S>,
        first: Option<Message>,
    ) -> Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if let Some(message) = first {
            self.session.handle_message(self.torrent.now(), message)?;
        }
        loop {
            if !self.process_events()? {
                return Ok(());
            }
            self.request_blocks();
            self.flush(&mut socket).await?;
            let deadline = tokio::time::Instant::now()
                + self
                    .session
                    .poll_timeout()
                    .saturating_sub(self.torrent.now());
            tokio::select! {
                frame = socket.next() => match frame {
                    Some(Ok(WsMessage::Binary(bytes))) => {
                        let message = Message::decode_frame(bytes).context("bad frame from peer")?;
                        self.session.handle_message(self.torrent.now(), message)?;
                    }
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                    Some(Ok(WsMessage::Close(_))) | None => return Ok(()),
                    Some(Ok(_)) => bail!("peers send binary frames only"),
                    Some(Err(e)) => return Err(e.into()),
                },
                Some(command) = recv(&mut self.commands) => match command {
                    PeerCommand::Have(piece) => self.session.have(piece),
                    PeerCommand::Cancel(block) => self.session.cancel(block),
                    PeerCommand::Close => bail!("the peer sent bad data too often"),
                    PeerCommand::Wake => {}
                },
                () = tokio::time::sleep_until(deadline) => {
                    self.session.handle_timeout(self.torrent.now())?;
                }
                () = self.stop.wait() => return Ok(()),
            }
        }
    }

    /// Acts on the session's events; returns false if the connection should end quietly.
    fn process_events(&mut self) -> Result<bool> {
        while let Some(event) = self.session.poll_event() {
            match event {
                SessionEvent::Ready { peer_id, bitfield } => {
                    if self.torrent.is_connected(peer_id) {
                        return Ok(false);
                    }
                    let interesting = bitfield.interesting_to(&self.torrent.have());
                    let (key, commands) = self.torrent.add_peer(peer_id, bitfield);
                    self.key = Some(key);
                    self.commands = Some(commands);
                    self.session.set_interested(interesting);
                }
                SessionEvent::Have(piece) => {
                    if let Some(key) = self.key {
                        self.torrent.peer_has(key, piece);
                    }
                    if !self.torrent.is_complete() && !self.torrent.have().get(piece) {
                        self.session.set_interested(true);
                    }
                }
                SessionEvent::Choked => self.with_key(|t, k| t.peer_choked(k)),
                SessionEvent::Unchoked => self.with_key(|t, k| t.peer_unchoked(k)),
                SessionEvent::Interested(interested) => self.session.set_choking(!interested),
                SessionEvent::BlockRequested(block) => {
                    let mut data = vec![0; block.length as usize];
                    match self.torrent.read_for_upload(block, &mut data) {
                        Ok(()) => self.session.send_piece(block, Bytes::from(data)),
                        Err(e) => {
                            // A changed file is re-verified by its owner: expected, not alarming.
                            if !matches!(e, super::UploadError::Changed) {
                                tracing::warn!("not serving a requested block: {e}");
                            }
                            self.session.reject(block);
                        }
                    }
                }
                SessionEvent::RequestCancelled(_) => {}
                SessionEvent::BlockReceived { block, data } => {
                    if let Some(key) = self.key {
                        self.torrent
                            .block_received(key, block, &data)
                            .context("cannot write a received block")?;
                    }
                }
                SessionEvent::RequestRejected(block) => {
                    self.with_key(|t, k| t.request_rejected(k, block));
                }
            }
        }
        if self.torrent.is_complete() {
            self.session.set_interested(false);
        }
        Ok(true)
    }

    fn with_key(&self, f: impl FnOnce(&Torrent, PeerKey)) {
        if let Some(key) = self.key {
            f(&self.torrent, key);
        }
    }

    fn request_blocks(&mut self) {
        let Some(key) = self.key else { return };
        while self.session.can_request() {
            let Some(block) = self.torrent.next_requests(key, 1).pop() else {
                break;
            };
            if !self.session.request(block) {
                self.torrent.request_rejected(key, block);
                break;
            }
        }
    }

    async fn flush<S>(&mut self, socket: &mut WebSocketStream<S>) -> Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut sent = false;
        while let Some(message) = self.session.poll_transmit(self.torrent.now()) {
            if let Message::Piece { data, .. } = &message {
                if let Some(limit) = &self.upload_limit {
                    // Send what is queued first, so the wait does not hold back earlier
                    // messages.
                    socket.flush().await?;
                    limit.acquire(data.len()).await;
                }
                self.torrent.add_uploaded(data.len());
            }
            socket.feed(WsMessage::Binary(message.to_bytes())).await?;
            sent = true;
        }
        if sent {
            socket.flush().await?;
        }
        Ok(())
    }
}

async fn recv(commands: &mut Option<mpsc::UnboundedReceiver<PeerCommand>>) -> Option<PeerCommand> {
    match commands {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
