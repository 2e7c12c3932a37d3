//! The tracker's listener with TLS: connections reach axum once their handshake is done, so
//! the page, `/stats`, `/metrics` and `/ws` are served over https and wss on the one port.

use std::net::SocketAddr;

use mtorrent_tls::{Incoming, TlsTcpStream};

/// An [`Incoming`] as an axum listener; its address type is the client's source address, which
/// `ConnectInfo<SocketAddr>` hands to the handlers as with plain TCP.
#[derive(Debug)]
pub struct TlsListener(pub Incoming);

impl axum::serve::Listener for TlsListener {
    type Io = TlsTcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.0.accept().await
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.0.local_addr())
    }
}
