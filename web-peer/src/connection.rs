//! One connection to a native peer: moves frames between a browser WebSocket and the swarm
//! core, which holds the connection's protocol state. A frame larger than any peer-wire frame
//! closes the connection before any of it is copied into WebAssembly memory; blocks are held
//! back from a peer that leaves too much unread, and a peer that reads nothing is dropped
//! ([`send_buffer`]); an address is dialled once per file, and the page holds a bounded
//! number of connections ([`dials`]).

pub mod dials;
mod send_buffer;

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::future::{select, Either};
use futures::StreamExt;
use js_sys::{ArrayBuffer, Uint8Array};
use mtorrent_shared::wire::{self, Message, PieceHeader, PIECE_FRAME_HEADER_LEN};
use mtorrent_shared::CloseReason;

use crate::clock;
use crate::socket::{Socket, SocketEvent};
use crate::swarm::Swarm;
use send_buffer::{Flow, SendBuffer};

/// The largest WebSocket message a peer may send: one peer-wire frame, its 4-byte length
/// prefix included (the native peer's limit too).
pub const MAX_PEER_MESSAGE_BYTES: usize = wire::MAX_FRAME_LEN + 4;

/// How long a dial may take to open.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// The close code for a message too big to take: RFC 6455's 1009 in the private range (4000 +),
/// since a page may close only with 1000 or 3000–4999 (any other code throws, and the socket
/// would then close with none).
const CLOSE_TOO_BIG: u16 = 4009;

/// The close code for a peer that broke the rules: RFC 6455's 1008 in the private range.
const CLOSE_POLICY: u16 = 4008;

/// A running timer.
type Timer = Pin<Box<dyn Future<Output = ()>>>;

/// What wakes a connection.
enum Input {
    Frame(ArrayBuffer),
    Closed(Option<String>),
    /// The swarm has something for this connection: messages to send, a close or a stop.
    Wake,
}

/// Dials `url` for `swarm` and runs the connection until it ends, in the background, unless
/// the file already has a connection to `url` or the page holds all the connections it may
/// ([`dials`]). Returns whether it dials.
pub fn dial(swarm: Rc<Swarm>, url: String) -> bool {
    let Some(claim) = swarm.claim_dial(&url, &dials::page_slots()) else {
        return false;
    };
    wasm_bindgen_futures::spawn_local(async move {
        let _claim = claim;
        if let Err(e) = run(swarm.clone(), &url).await {
            if !swarm.is_stopped() {
                swarm.events().emit(&crate::events::PeerEvent::Warning {
                    info_hash: Some(swarm.metainfo.info_hash().to_hex()),
                    message: format!("lost the connection to the peer at {url}: {e}"),
                });
            }
        }
    });
    true
}

async fn run(swarm: Rc<Swarm>, url: &str) -> Result<(), String> {
    let (tx, mut inputs) = mpsc::unbounded::<Input>();
    let frames = tx.clone();
    let socket = Socket::open(url, DIAL_TIMEOUT, move |event| {
        let input = match event {
            SocketEvent::Binary(buffer) => Input::Frame(buffer),
            SocketEvent::Text(_) => Input::Closed(Some(
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
    let mut send_buffer = SendBuffer::new(swarm.serving_window_bytes());
    let mut holding = false;
    // The timer that looks at the send queue again, with its interval, while one is needed.
    let mut check: Option<(Duration, Timer)> = None;
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
            let flow = send_buffer.observe(socket.bytes_sent(), socket.buffered(), clock::now());
            if let Flow::Drop(reason) = flow {
                socket.close_with(CLOSE_POLICY, "not reading");
                return Err(reason);
            }
            if holding != (flow == Flow::Hold) {
                holding = !holding;
                swarm.hold_reads(key, holding);
            }
            check = match send_buffer.next_check() {
                Some(interval) if check.as_ref().is_some_and(|(armed, _)| *armed == interval) => {
                    check
                }
                Some(interval) => Some((interval, Box::pin(clock::sleep(interval)))),
                None => None,
            };
            // Wait for a frame, a command, or the time to look at the send queue again.
            let input = match check.as_mut() {
                Some((_, timer)) => match select(inputs.next(), timer.as_mut()).await {
                    Either::Left((input, _)) => input,
                    Either::Right(((), _)) => {
                        check = None;
                        Some(Input::Wake)
                    }
                },
                None => inputs.next().await,
            };
            let Some(input) = input else {
                return Ok(());
            };
            match input {
                Input::Frame(buffer) => match read_frame(&buffer) {
                    Ok(Frame::Piece(header, data)) => swarm.handle_piece(key, header, data)?,
                    Ok(Frame::Other(message)) => swarm.handle_message(key, message)?,
                    Err(FrameError::TooBig(reason)) => {
                        socket.close_with(CLOSE_TOO_BIG, "frame too big");
                        return Err(reason);
                    }
                    Err(FrameError::Bad(reason)) => return Err(reason),
                },
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

/// A frame from a peer, read from the buffer it arrived in.
#[derive(Debug)]
enum Frame {
    /// A Piece frame: its header, and a view of its block's bytes where they arrived (not
    /// copied).
    Piece(PieceHeader, Uint8Array),
    /// Any other frame, decoded.
    Other(Message),
}

/// Why a frame was refused.
#[derive(Debug, PartialEq, Eq)]
enum FrameError {
    /// Larger than any frame, refused before it was copied.
    TooBig(String),
    /// Not a well-formed frame.
    Bad(String),
}

/// Refuses a message larger than [`MAX_PEER_MESSAGE_BYTES`], from its size alone: the browser
/// holds it outside WebAssembly memory, and none of it is copied in.
fn check_frame_size(buffer: &ArrayBuffer) -> Result<(), FrameError> {
    let len = buffer.byte_length() as usize;
    if len > MAX_PEER_MESSAGE_BYTES {
        return Err(FrameError::TooBig(format!(
            "the peer sent a frame of {len} bytes; frames are at most {MAX_PEER_MESSAGE_BYTES}"
        )));
    }
    Ok(())
}

/// Reads one frame. A block's bytes stay in the frame's buffer, to go straight into their
/// piece with no copy in between; other frames are copied and decoded whole, once their size
/// is known to be that of a frame.
fn read_frame(buffer: &ArrayBuffer) -> Result<Frame, FrameError> {
    check_frame_size(buffer)?;
    let frame = Uint8Array::new(buffer);
    let frame_len = frame.length() as usize;
    let mut head = [0; PIECE_FRAME_HEADER_LEN];
    if frame_len >= head.len() {
        frame.subarray(0, head.len() as u32).copy_to(&mut head);
    }
    if let Some(header) = wire::peek_piece_frame(&head, frame_len) {
        let data = frame.subarray(head.len() as u32, frame_len as u32);
        return Ok(Frame::Piece(header, data));
    }
    Message::decode_frame(Bytes::from(frame.to_vec()))
        .map(Frame::Other)
        .map_err(|e| FrameError::Bad(format!("bad frame from the peer: {e}")))
}

#[cfg(all(test, target_arch = "wasm32"))]
mod tests {
    use super::*;
    use wasm_bindgen::JsCast;
    use wasm_bindgen_test::wasm_bindgen_test as test;

    wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

    /// The bytes of WebAssembly memory.
    fn memory_bytes() -> u32 {
        wasm_bindgen::memory()
            .unchecked_into::<js_sys::WebAssembly::Memory>()
            .buffer()
            .unchecked_into::<ArrayBuffer>()
            .byte_length()
    }

    #[test]
    fn a_frame_of_the_largest_size_passes_the_size_check_and_one_byte_more_does_not() {
        assert_eq!(
            check_frame_size(&ArrayBuffer::new(MAX_PEER_MESSAGE_BYTES as u32)),
            Ok(())
        );
        let refused = check_frame_size(&ArrayBuffer::new(MAX_PEER_MESSAGE_BYTES as u32 + 1));
        assert!(matches!(refused, Err(FrameError::TooBig(_))), "{refused:?}");
    }

    #[test]
    fn an_oversized_frame_is_refused_without_being_copied_into_webassembly_memory() {
        // Larger than all of WebAssembly memory: copying it in would have to grow memory to
        // more than its size.
        let before = memory_bytes();
        let len = (before as usize * 2).max(MAX_PEER_MESSAGE_BYTES + 1);
        let frame = ArrayBuffer::new(len as u32);
        // A frame whose length prefix claims it all (it is oversized however it is read).
        Uint8Array::new(&frame).set_index(0, 0x7f);
        let refused = read_frame(&frame);
        assert!(matches!(refused, Err(FrameError::TooBig(_))), "{refused:?}");
        let after = memory_bytes();
        assert!(
            (after as usize) < len,
            "WebAssembly memory grew from {before} to {after} bytes for a {len}-byte frame"
        );
    }

    #[test]
    fn frames_within_the_limit_are_read_as_before() {
        let bytes = Message::Have { piece: 7 }.to_bytes();
        let buffer = Uint8Array::from(&bytes[..]).buffer();
        assert!(matches!(
            read_frame(&buffer),
            Ok(Frame::Other(Message::Have { piece: 7 }))
        ));
        let bytes = Message::Piece {
            piece: 1,
            offset: 0,
            data: Bytes::from(vec![5; 1000]),
        }
        .to_bytes();
        let buffer = Uint8Array::from(&bytes[..]).buffer();
        let Ok(Frame::Piece(header, data)) = read_frame(&buffer) else {
            panic!("a piece frame");
        };
        assert_eq!((header.piece, header.offset, header.data_len), (1, 0, 1000));
        assert_eq!(data.to_vec(), vec![5; 1000]);
    }

    #[test]
    fn a_file_dials_an_address_once_however_often_it_is_named() {
        let (swarm, _store) = crate::swarm::tests::seeding_swarm(1);
        // Nothing listens on port 9: the dial fails, in its own time.
        let url = "ws://127.0.0.1:9/".to_owned();
        assert!(dial(swarm.clone(), url.clone()));
        for _ in 0..100 {
            assert!(!dial(swarm.clone(), url.clone()), "dialled again");
        }
        assert_eq!(swarm.dial_count(), 1);
        assert!(dial(swarm.clone(), "ws://127.0.0.1:10/".to_owned()));
        assert_eq!(swarm.dial_count(), 2);
    }
}
