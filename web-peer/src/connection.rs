//! One connection to a native peer: moves frames between a browser WebSocket and the swarm
//! core, which holds the connection's protocol state.

use std::rc::Rc;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::StreamExt;
use js_sys::{ArrayBuffer, Uint8Array};
use mtorrent_shared::wire::{self, Message, PIECE_FRAME_HEADER_LEN};
use mtorrent_shared::{CloseReason, PeerKey};

use crate::socket::{PeerSocket, SocketEvent};
use crate::swarm::Swarm;

/// What wakes a connection.
enum Input {
    Frame(ArrayBuffer),
    Closed(Option<String>),
    /// The swarm has something for this connection: messages to send, a close or a stop.
    Wake,
}

/// Dials `url` and runs the connection until it ends, in the background.
pub fn dial(swarm: Rc<Swarm>, url: String) {
    wasm_bindgen_futures::spawn_local(async move {
        if let Err(e) = run(swarm.clone(), &url).await {
            if !swarm.is_stopped() {
                swarm.events().emit(&crate::events::PeerEvent::Warning {
                    info_hash: Some(swarm.metainfo.info_hash().to_hex()),
                    message: format!("lost the connection to the peer at {url}: {e}"),
                });
            }
        }
    });
}

async fn run(swarm: Rc<Swarm>, url: &str) -> Result<(), String> {
    let (tx, mut inputs) = mpsc::unbounded::<Input>();
    let frames = tx.clone();
    let socket = PeerSocket::open(url, move |event| {
        let input = match event {
            SocketEvent::Binary(buffer) => Input::Frame(buffer),
            SocketEvent::Text => Input::Closed(Some(
                "the peer sent text; peers send binary frames only".into(),
            )),
            SocketEvent::Closed(reason) => Input::Closed(reason),
        };
        let _ = frames.unbounded_send(input);
    })
    .await
    .map_err(|e| format!("cannot dial {url}: {e}"))?;
    if swarm.is_stopped() {
        return Ok(());
    }
    let (key, mut wakeups) = swarm.connect();
    wasm_bindgen_futures::spawn_local(async move {
        while wakeups.next().await.is_some() {
            if tx.unbounded_send(Input::Wake).is_err() {
                return;
            }
        }
    });
    let result = async {
        loop {
            let (messages, closed) = swarm.transmit(key);
            for message in messages {
                socket.send(&message.to_bytes())?;
            }
            match closed {
                // A banned peer already shows as failed pieces: closed without a warning.
                Some(CloseReason::Duplicate | CloseReason::Banned) => return Ok(()),
                Some(reason) => return Err(reason.to_string()),
                None => {}
            }
            if swarm.is_stopped() {
                return Ok(());
            }
            // Wait for a frame or a command.
            let Some(input) = inputs.next().await else {
                return Ok(());
            };
            match input {
                Input::Frame(buffer) => handle_frame(&swarm, key, &buffer)?,
                Input::Closed(reason) => return reason.map_or(Ok(()), Err),
                // The loop's top sends what is queued and ends a closed connection.
                Input::Wake => {}
            }
        }
    }
    .await;
    swarm.disconnect(key);
    drop(socket);
    result
}

/// Hands one frame to the swarm. A block's bytes go straight from the frame's buffer into its
/// piece, with no copy in between; other frames are decoded whole.
fn handle_frame(swarm: &Rc<Swarm>, key: PeerKey, buffer: &ArrayBuffer) -> Result<(), String> {
    let frame = Uint8Array::new(buffer);
    let frame_len = frame.length() as usize;
    let mut head = [0; PIECE_FRAME_HEADER_LEN];
    if frame_len >= head.len() {
        frame.subarray(0, head.len() as u32).copy_to(&mut head);
    }
    if let Some(header) = wire::peek_piece_frame(&head, frame_len) {
        return swarm.handle_piece(key, header, || {
            frame.subarray(head.len() as u32, frame_len as u32)
        });
    }
    let message = Message::decode_frame(Bytes::from(frame.to_vec()))
        .map_err(|e| format!("bad frame from the peer: {e}"))?;
    swarm.handle_message(key, message)
}
