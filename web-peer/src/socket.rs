//! A browser WebSocket to a peer. Binary messages are handed over as the `ArrayBuffer`s they
//! arrived in, untouched, so a block is copied once: from there to the piece it belongs to.

use std::cell::RefCell;
use std::rc::Rc;

use futures::channel::oneshot;
use js_sys::ArrayBuffer;
use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

/// What arrives on a peer socket.
#[derive(Debug)]
pub enum SocketEvent {
    /// A binary message.
    Binary(ArrayBuffer),
    /// A text message: peers send none.
    Text,
    /// The socket closed: `None` if normally, or why not.
    Closed(Option<String>),
}

/// An open WebSocket to a peer; closed when dropped.
#[derive(Debug)]
pub struct PeerSocket {
    socket: WebSocket,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl PeerSocket {
    /// Dials `url` and waits until the socket is open; what arrives then goes to `deliver`.
    pub async fn open(url: &str, deliver: impl Fn(SocketEvent) + 'static) -> Result<Self, String> {
        let socket = WebSocket::new(url).map_err(crate::store::describe)?;
        socket.set_binary_type(BinaryType::Arraybuffer);
        let deliver = Rc::new(deliver);
        let (opened_tx, opened) = oneshot::channel::<bool>();
        let opened_tx = Rc::new(RefCell::new(Some(opened_tx)));
        let on_message = {
            let deliver = deliver.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                match event.data().dyn_into::<ArrayBuffer>() {
                    Ok(buffer) => deliver(SocketEvent::Binary(buffer)),
                    Err(_) => deliver(SocketEvent::Text),
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
        let open = opened.await.unwrap_or(false);
        socket.set_onopen(None);
        if !open {
            socket.set_onmessage(None);
            socket.set_onclose(None);
            return Err("cannot connect".into());
        }
        Ok(Self {
            socket,
            _on_message: on_message,
            _on_close: on_close,
        })
    }

    /// Sends one binary message.
    pub fn send(&self, bytes: &[u8]) -> Result<(), String> {
        self.socket
            .send_with_u8_array(bytes)
            .map_err(crate::store::describe)
    }
}

impl Drop for PeerSocket {
    fn drop(&mut self) {
        self.socket.set_onmessage(None);
        self.socket.set_onclose(None);
        let _ = self.socket.close();
    }
}
