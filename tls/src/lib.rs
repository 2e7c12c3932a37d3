//! TLS for mtorrent's native programs, in one place for the tracker and the `mtorrent` peer:
//!
//! - [`client`]: whom a client trusts (the system's root certificates, or those that
//!   `SSL_CERT_FILE`/`SSL_CERT_DIR` name instead) and [`connect`], which dials a `ws://` or
//!   `wss://` URL;
//! - [`server`]: a server's certificate and key, read from PEM files, and the TLS handshake of
//!   one incoming connection;
//! - [`incoming`]: a listener whose TLS handshakes run beside its accept loop, each with a
//!   deadline and a cap on how many run at once.
//!
//! Every configuration uses rustls with the `ring` provider. There is no mode that accepts any
//! certificate.

pub mod client;
pub mod incoming;
pub mod server;

pub use client::{bound_unsent, client_config, connect, ConnectError, WsStream, MAX_UNSENT_BYTES};
pub use incoming::{Incoming, IncomingLimits, TlsTcpStream};
pub use server::{ServerTls, TlsError};

/// The cryptography every configuration uses.
fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
