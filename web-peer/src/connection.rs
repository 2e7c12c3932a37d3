//! One connection to a native peer: drives a `shared` [`PeerSession`] over a browser
//! WebSocket, feeding received blocks to the swarm and serving blocks from its store.

use std::rc::Rc;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::StreamExt;
use js_sys::{ArrayBuffer, Uint8Array};
use mtorrent_shared::wire::{self, Message, PIECE_FRAME_HEADER_LEN};
use mtorrent_shared::{PeerKey, PeerSession, SessionConfig, SessionEvent};

use crate::clock;
use crate::socket::{PeerSocket, SocketEvent};
use crate::swarm::{PeerCommand, Swarm};

/// What wakes a connection.
enum Input {
    Frame(ArrayBuffer),
    Closed(Option<String>),
    Command(PeerCommand),
    /// A second passed: time for keep-alives and the idle check.
    Tick,
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
    // One timer per connection, not one per message: the session's deadlines are seconds apart.
    let ticks = tx.clone();
    wasm_bindgen_futures::spawn_local(async move {
        loop {
            clock::sleep(std::time::Duration::from_secs(1)).await;
            if ticks.unbounded_send(Input::Tick).is_err() {
                return;
            }
        }
    });
    let mut session = PeerSession::new(
        swarm.metainfo.lengths(),
        swarm.metainfo.info_hash(),
        swarm.peer_id,
        swarm.offered(),
        SessionConfig::default(),
        clock::now(),
    );
    let mut key: Option<PeerKey> = None;
    let result = async {
        loop {
            // Act on what the session learned.
            while let Some(event) = session.poll_event() {
                match event {
                    SessionEvent::Ready { peer_id, bitfield } => {
                        if swarm.is_connected(peer_id) || swarm.is_stopped() {
                            return Ok(());
                        }
                        let (k, commands) = swarm.add_peer(peer_id, bitfield);
                        key = Some(k);
                        session.set_interested(swarm.is_interesting(k));
                        let tx = tx.clone();
                        wasm_bindgen_futures::spawn_local(async move {
                            let mut commands = commands;
                            while let Some(command) = commands.next().await {
                                if tx.unbounded_send(Input::Command(command)).is_err() {
                                    return;
                                }
                            }
                        });
                    }
                    SessionEvent::Have(piece) => {
                        if let Some(k) = key {
                            swarm.peer_has(k, piece);
                            if swarm.is_interesting(k) {
                                session.set_interested(true);
                            }
                        }
                    }
                    SessionEvent::Choked => with_key(key, |k| swarm.peer_choked(k, true)),
                    SessionEvent::Unchoked => with_key(key, |k| swarm.peer_choked(k, false)),
                    SessionEvent::Interested(interested) => {
                        session.set_choking(!(interested && swarm.is_seeding()));
                    }
                    SessionEvent::BlockRequested(block) => {
                        if !swarm.is_seeding() {
                            session.reject(block);
                            continue;
                        }
                        let offset = swarm.metainfo.lengths().piece_offset(block.piece)
                            + u64::from(block.offset);
                        match swarm.store.read(offset, block.length).await {
                            Ok(data) => {
                                swarm.add_uploaded(data.len());
                                session.send_piece(block, Bytes::from(data));
                            }
                            Err(e) => {
                                swarm.events().emit(&crate::events::PeerEvent::Warning {
                                    info_hash: Some(swarm.metainfo.info_hash().to_hex()),
                                    message: format!("cannot read the shared file: {e}"),
                                });
                                session.reject(block);
                            }
                        }
                    }
                    SessionEvent::RequestCancelled(_) => {}
                    SessionEvent::BlockReceived { block, data } => {
                        if let Some(k) = key {
                            swarm.block_received(k, block, Uint8Array::from(&data[..]));
                        }
                    }
                    SessionEvent::RequestRejected(block) => {
                        with_key(key, |k| swarm.request_rejected(k, block));
                    }
                }
            }
            if let Some(k) = key {
                if swarm.is_complete() || !swarm.is_interesting(k) {
                    session.set_interested(false);
                }
                while session.can_request() {
                    let Some(block) = swarm.next_request(k) else {
                        break;
                    };
                    if !session.request(block) {
                        swarm.request_rejected(k, block);
                        break;
                    }
                }
            }
            // Send what the session has to say.
            while let Some(message) = session.poll_transmit(clock::now()) {
                socket.send(&message.to_bytes())?;
            }
            if swarm.is_stopped() {
                return Ok(());
            }
            // Wait for a frame, a command or a tick.
            let Some(input) = inputs.next().await else {
                return Ok(());
            };
            match input {
                Input::Frame(buffer) => handle_frame(&swarm, &mut session, key, &buffer)?,
                Input::Closed(reason) => return reason.map_or(Ok(()), Err),
                Input::Command(PeerCommand::Cancel(block)) => session.cancel(block),
                Input::Command(PeerCommand::Close) => return Ok(()),
                Input::Command(PeerCommand::Wake) => {}
                Input::Tick => session
                    .handle_timeout(clock::now())
                    .map_err(|e| e.to_string())?,
            }
        }
    }
    .await;
    if let Some(k) = key {
        swarm.remove_peer(k);
    }
    drop(socket);
    result
}

/// Hands one frame to the session. A block's bytes go straight from the frame's buffer into
/// its piece, with no copy in between; other frames are decoded whole.
fn handle_frame(
    swarm: &Rc<Swarm>,
    session: &mut PeerSession,
    key: Option<PeerKey>,
    buffer: &ArrayBuffer,
) -> Result<(), String> {
    let frame = Uint8Array::new(buffer);
    let frame_len = frame.length() as usize;
    let mut head = [0; PIECE_FRAME_HEADER_LEN];
    if frame_len >= head.len() {
        frame.subarray(0, head.len() as u32).copy_to(&mut head);
    }
    if let Some(header) = wire::peek_piece_frame(&head, frame_len) {
        let block = session
            .handle_piece_header(clock::now(), header)
            .map_err(|e| e.to_string())?;
        if let (Some(block), Some(key)) = (block, key) {
            let data = frame.subarray(head.len() as u32, frame_len as u32);
            swarm.block_received(key, block, data);
        }
        return Ok(());
    }
    let message = Message::decode_frame(Bytes::from(frame.to_vec()))
        .map_err(|e| format!("bad frame from the peer: {e}"))?;
    session
        .handle_message(clock::now(), message)
        .map_err(|e| e.to_string())
}

fn with_key(key: Option<PeerKey>, f: impl FnOnce(PeerKey)) {
    if let Some(key) = key {
        f(key);
    }
}
