//! A browser WebSocket, to a peer or a tracker. Messages are handed over as the JavaScript
//! values they arrived as, untouched: a binary message as its `ArrayBuffer`, so a block is
//! copied once, from there to the piece it belongs to, and so the receiver can check a
//! message's size before any of it is copied into WebAssembly memory.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{select, Either};
use js_sys::{ArrayBuffer, JsString};
use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use crate::clock;

/// What arrives on a socket.
#[derive(Debug)]
pub enum SocketEvent {
    /// A binary message.
    Binary(ArrayBuffer),
    /// A text message, still a JavaScript string.
    Text(JsString),
    /// The socket closed: `None` if normally, or why not.
    Closed(Option<String>),
}

/// An open WebSocket; closed when dropped (an attempt to open one too, if its future is
/// dropped before it opens).
#[derive(Debug)]
pub struct Socket {
    socket: WebSocket,
    /// Bytes handed to the browser to send so far, to tell with `bufferedAmount` how many of
    /// them have left.
    sent: Cell<u64>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
    _on_open: Closure<dyn FnMut()>,
}

impl Socket {
    /// Dials `url` and waits until the socket is open, at most `timeout`; what arrives then
    /// goes to `deliver`.
    pub async fn open(
        url: &str,
        timeout: Duration,
        deliver: impl Fn(SocketEvent) + 'static,
    ) -> Result<Self, String> {
        let socket = WebSocket::new(url).map_err(crate::store::describe)?;
        socket.set_binary_type(BinaryType::Arraybuffer);
        let deliver = Rc::new(deliver);
        let (opened_tx, opened) = oneshot::channel::<bool>();
        let opened_tx = Rc::new(RefCell::new(Some(opened_tx)));
        let on_message = {
            let deliver = deliver.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                let data = event.data();
                match data.dyn_into::<ArrayBuffer>() {
                    Ok(buffer) => deliver(SocketEvent::Binary(buffer)),
                    Err(data) => match data.dyn_into::<JsString>() {
                        Ok(text) => deliver(SocketEvent::Text(text)),
                        // Binary messages arrive as ArrayBuffers, set above.
                        Err(_) => deliver(SocketEvent::Closed(Some(
                            "a message arrived that is neither binary nor text".into(),
                        ))),
                    },
                }
            })
        };
        let on_close = {
            let opened_tx = opened_tx.clone();
            Closure::<dyn FnMut(CloseEvent)>::new(move |event: CloseEvent| {
                // Closed before it opened: the dial failed.
                if let Some(tx) = opened_tx.borrow_mut().take() {
                    let _ = tx.send(false);
                    return;
                }
                let reason = match event.code() {
                    1000 | 1005 => None,
                    code if event.reason().is_empty() => {
                        Some(format!("the connection was closed (code {code})"))
                    }
                    code => Some(format!(
                        "the connection was closed (code {code}: {})",
                        event.reason()
                    )),
                };
                deliver(SocketEvent::Closed(reason));
            })
        };
        let on_open = Closure::once(move || {
            if let Some(tx) = opened_tx.borrow_mut().take() {
                let _ = tx.send(true);
            }
        });
        socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        // From here, dropping it (the attempt failed or timed out, or this future was dropped)
        // abandons the attempt.
        let socket = Self {
            socket,
            sent: Cell::new(0),
            _on_message: on_message,
            _on_close: on_close,
            _on_open: on_open,
        };
        let open = match select(opened, Box::pin(clock::sleep(timeout))).await {
            Either::Left((opened, _)) => opened.unwrap_or(false),
            Either::Right(((), _)) => false,
        };
        if !open {
            return Err("cannot connect".into());
        }
        socket.socket.set_onopen(None);
        Ok(socket)
    }

    /// Sends one binary message.
    pub fn send(&self, bytes: &[u8]) -> Result<(), String> {
        self.socket
            .send_with_u8_array(bytes)
            .map_err(crate::store::describe)?;
        self.sent.set(self.sent.get() + bytes.len() as u64);
        Ok(())
    }

    /// Sends one text message.
    pub fn send_text(&self, text: &str) -> Result<(), String> {
        self.socket
            .send_with_str(text)
            .map_err(crate::store::describe)?;
        // `bufferedAmount` counts text as its UTF-8 bytes, as `str::len` does.
        self.sent.set(self.sent.get() + text.len() as u64);
        Ok(())
    }

    /// Closes the socket with a WebSocket close `code` and a `reason` for the other side.
    pub fn close_with(&self, code: u16, reason: &str) {
        let _ = self.socket.close_with_code_and_reason(code, reason);
    }

    /// Bytes handed to [`Socket::send`] and [`Socket::send_text`] so far.
    pub fn bytes_sent(&self) -> u64 {
        self.sent.get()
    }

    /// Bytes sent but not yet passed to the network: the browser queues them without bound
    /// while the other side does not read.
    pub fn buffered(&self) -> u64 {
        u64::from(self.socket.buffered_amount())
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.socket.set_onopen(None);
        self.socket.set_onmessage(None);
        self.socket.set_onclose(None);
        let _ = self.socket.close();
    }
}
