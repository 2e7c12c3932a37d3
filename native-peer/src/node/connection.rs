//! One peer connection: moves messages between a WebSocket and the torrent's swarm core,
//! which holds the connection's protocol state.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use futures::{SinkExt, StreamExt};
use mtorrent_shared::wire::Message;
use mtorrent_shared::CloseReason;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

use super::rate::RateLimit;
use super::torrent::{Registration, Torrent};

/// The largest WebSocket message a peer may send: one peer-wire frame.
pub const MAX_WS_MESSAGE: usize = mtorrent_shared::wire::MAX_FRAME_LEN + 4;

/// Which end of the WebSocket this connection is, which decides how its blocks go out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// We accepted the connection (a browser's always are). Our frames go unmasked, so a
    /// block goes out as one frame written straight from its buffer.
    Accepted,
    /// We dialled. Our frames must be masked, which copies them: a block goes out in
    /// fragments of [`PIECE_FRAGMENT`] through the WebSocket's write buffer.
    Dialled,
}

/// Runs a connection until it ends. `first` is a message already read from the socket (the
/// handshake of an incoming connection, read to find the torrent).
pub async fn run<S>(
    torrent: Arc<Torrent>,
    socket: WebSocketStream<S>,
    side: Side,
    first: Option<Message>,
    upload_limit: Option<Arc<RateLimit>>,
) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let registration = torrent.connect();
    let key = registration.key;
    let result = drive(&torrent, registration, socket, side, first, upload_limit).await;
    torrent.disconnect(key);
    result
}

async fn drive<S>(
    torrent: &Torrent,
    Registration { key, wake }: Registration,
    mut socket: WebSocketStream<S>,
    side: Side,
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
        send(
            &mut socket,
            side,
            transmit.messages,
            upload_limit.as_deref(),
        )
        .await?;
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
async fn unless_stalled<T, E>(write: impl std::future::Future<Output = Result<T, E>>) -> Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(WRITE_STALL_TIMEOUT, write).await {
        Ok(result) => Ok(result?),
        Err(_) => bail!("the peer has not read what we sent for {WRITE_STALL_TIMEOUT:?}"),
    }
}

/// How long a stopping connection waits to send its close frame.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

async fn send<S>(
    socket: &mut WebSocketStream<S>,
    side: Side,
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
        match message {
            Message::Piece {
                piece,
                offset,
                data,
            } => match side {
                Side::Accepted => write_piece_frame(socket, piece, offset, &data).await?,
                Side::Dialled => {
                    for fragment in piece_fragments(piece, offset, data) {
                        unless_stalled(socket.feed(WsMessage::Frame(fragment))).await?;
                    }
                }
            },
            other => {
                unless_stalled(socket.feed(WsMessage::Binary(other.to_bytes()))).await?;
            }
        }
    }
    unless_stalled(socket.flush()).await?;
    Ok(())
}

/// Writes a Piece message as one unmasked WebSocket frame straight from the block's buffer:
/// first what the WebSocket holds, then the frame's header, then the block. Nothing of the
/// block is copied or buffered, and a browser handles one frame per block rather than a frame
/// per fragment (most of its cost of receiving is per frame). Only the accepting side may: a
/// dialler's frames are masked.
async fn write_piece_frame<S>(
    socket: &mut WebSocketStream<S>,
    piece: u32,
    offset: u32,
    data: &[u8],
) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    unless_stalled(socket.flush()).await?;
    let mut message_header = bytes::BytesMut::with_capacity(PIECE_FRAME_HEADER_LEN);
    mtorrent_shared::wire::encode_piece_header(piece, offset, data.len(), &mut message_header);
    let mut head = Vec::with_capacity(MAX_WS_HEADER_LEN + PIECE_FRAME_HEADER_LEN);
    FrameHeader {
        opcode: OpCode::Data(Data::Binary),
        ..FrameHeader::default()
    }
    .format((message_header.len() + data.len()) as u64, &mut head)?;
    head.extend_from_slice(&message_header);
    let stream = socket.get_mut();
    write_all_unless_stalled(stream, &head).await?;
    write_all_unless_stalled(stream, data).await?;
    unless_stalled(stream.flush()).await
}

/// The longest header of an unmasked WebSocket frame.
const MAX_WS_HEADER_LEN: usize = 10;

/// The peer-wire header before a Piece message's block.
const PIECE_FRAME_HEADER_LEN: usize = mtorrent_shared::wire::PIECE_FRAME_HEADER_LEN;

/// Writes all of `data`, failed if the peer takes none of it for [`WRITE_STALL_TIMEOUT`].
async fn write_all_unless_stalled<S>(stream: &mut S, mut data: &[u8]) -> Result<()>
where
    S: AsyncWrite + Unpin,
{
    while !data.is_empty() {
        let written = unless_stalled(stream.write(data)).await?;
        if written == 0 {
            bail!("the peer's connection closed while a block was going out");
        }
        data = &data[written..];
    }
    Ok(())
}

/// The largest fragment of a Piece message put on the WebSocket at once, and so about the
/// most of a block copied into the socket's write buffer.
pub const PIECE_FRAGMENT: usize = 16 * 1024;

/// A Piece message as WebSocket fragments (one message to the receiver): its header, then the
/// block's bytes [`PIECE_FRAGMENT`] at a time, shared with `data` rather than copied. Sent
/// whole, a block would be copied into the socket's write buffer, which would keep it (and
/// its size) for as long as a peer leaves it unread, and its size after that.
fn piece_fragments(piece: u32, offset: u32, data: bytes::Bytes) -> impl Iterator<Item = Frame> {
    let mut header = bytes::BytesMut::with_capacity(PIECE_FRAME_HEADER_LEN);
    mtorrent_shared::wire::encode_piece_header(piece, offset, data.len(), &mut header);
    let chunks = data.len().div_ceil(PIECE_FRAGMENT);
    let first = Frame::message(header.freeze(), OpCode::Data(Data::Binary), false);
    std::iter::once(first).chain((0..chunks).map(move |i| {
        let end = ((i + 1) * PIECE_FRAGMENT).min(data.len());
        let chunk = data.slice(i * PIECE_FRAGMENT..end);
        Frame::message(chunk, OpCode::Data(Data::Continue), i + 1 == chunks)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_accepting_side_sends_a_block_as_one_frame_after_what_was_queued_before_it() {
        let (ours, mut theirs) = tokio::io::duplex(1 << 20);
        let mut ours = WebSocketStream::from_raw_socket(
            ours,
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        let data = bytes::Bytes::from((0..256 * 1024u32).map(|i| i as u8).collect::<Vec<_>>());
        let piece = Message::Piece {
            piece: 7,
            offset: 262_144,
            data,
        };
        send(
            &mut ours,
            Side::Accepted,
            vec![Message::Interested, piece.clone()],
            None,
        )
        .await
        .unwrap();
        drop(ours);
        let mut wire = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut theirs, &mut wire)
            .await
            .unwrap();
        // First the message queued before the block, as tungstenite framed it...
        assert_eq!(wire[0], 0x82, "a final, unmasked binary frame");
        let first_len = usize::from(wire[1]);
        assert!(first_len < 126);
        let first = bytes::Bytes::copy_from_slice(&wire[2..2 + first_len]);
        assert_eq!(Message::decode_frame(first).unwrap(), Message::Interested);
        // ...then the block, whole, in one final unmasked frame with a 64-bit length.
        let frame = &wire[2 + first_len..];
        assert_eq!(frame[0], 0x82, "one final, unmasked binary frame");
        assert_eq!(frame[1], 127);
        let len = u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize;
        assert_eq!(frame.len(), 10 + len, "nothing follows the frame");
        let payload = bytes::Bytes::copy_from_slice(&frame[10..]);
        assert_eq!(Message::decode_frame(payload).unwrap(), piece);
    }

    #[test]
    fn a_block_goes_out_in_small_fragments_that_share_its_bytes_and_make_one_message() {
        let data = bytes::Bytes::from((0..256 * 1024u32).map(|i| i as u8).collect::<Vec<_>>());
        let fragments: Vec<Frame> = piece_fragments(3, 262_144, data.clone()).collect();
        let mut message = Vec::new();
        for (i, fragment) in fragments.iter().enumerate() {
            let header = fragment.header();
            let expected = if i == 0 { Data::Binary } else { Data::Continue };
            assert_eq!(header.opcode, OpCode::Data(expected));
            assert_eq!(header.is_final, i + 1 == fragments.len());
            assert!(fragment.payload().len() <= PIECE_FRAGMENT);
            if i > 0 {
                // A view of the block, not a copy.
                let start = fragment.payload().as_ptr() as usize - data.as_ptr() as usize;
                assert!(start + fragment.payload().len() <= data.len());
            }
            message.extend_from_slice(fragment.payload());
        }
        let expected = Message::Piece {
            piece: 3,
            offset: 262_144,
            data,
        };
        assert_eq!(
            Message::decode_frame(message.into()).unwrap(),
            expected,
            "the receiver reassembles the Piece"
        );
    }
}
