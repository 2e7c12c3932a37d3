//! The client side: trusted roots and dialing `ws://` or `wss://` URLs.

use std::sync::{Arc, OnceLock};

use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::UrlError;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

/// A WebSocket dialed by [`connect`], over plain TCP or TLS.
pub type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why [`connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No certificate could be trusted, so no `wss://` URL can be dialed.
    #[error("{0}")]
    Trust(String),
    /// The connection, its TLS handshake (a certificate that is not trusted among others) or
    /// its WebSocket handshake failed.
    #[error(transparent)]
    WebSocket(#[from] tungstenite::Error),
}

/// The client configuration: the system's root certificates, or, when `SSL_CERT_FILE` or
/// `SSL_CERT_DIR` is set, the certificates found there instead. Read once per process.
/// Fails if no certificate can be trusted at all.
pub fn client_config() -> Result<Arc<ClientConfig>, ConnectError> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(load_client_config)
        .clone()
        .map_err(ConnectError::Trust)
}

fn load_client_config() -> Result<Arc<ClientConfig>, String> {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!("while loading trusted certificates: {error}");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 {
        tracing::warn!("{ignored} trusted certificates could not be parsed");
    }
    if added == 0 {
        return Err(
            "no trusted root certificate found (system store, SSL_CERT_FILE, SSL_CERT_DIR)"
                .to_owned(),
        );
    }
    let config = ClientConfig::builder_with_provider(crate::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Opens a WebSocket to `url`: plain for `ws://`, TLS verified against [`client_config`] for
/// `wss://`. TCP_NODELAY is set: peers and trackers send small messages that must not wait.
pub async fn connect(
    url: &str,
    config: WebSocketConfig,
) -> Result<(WsStream, tungstenite::handshake::client::Response), ConnectError> {
    let request = url.into_client_request()?;
    let tls = is_tls_url(url);
    let host = request
        .uri()
        .host()
        .ok_or(tungstenite::Error::Url(UrlError::NoHostName))?;
    // An IPv6 literal comes in brackets, which neither the resolver nor rustls wants.
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .to_owned();
    let port = request
        .uri()
        .port_u16()
        .unwrap_or(if tls { 443 } else { 80 });
    let connector = if tls {
        Connector::Rustls(client_config()?)
    } else {
        Connector::Plain
    };
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(tungstenite::Error::Io)?;
    tcp.set_nodelay(true).map_err(tungstenite::Error::Io)?;
    bound_unsent(&tcp);
    let connected = tokio_tungstenite::client_async_tls_with_config(
        request,
        tcp,
        Some(config),
        Some(connector),
    )
    .await?;
    Ok(connected)
}

/// Whether `url` asks for TLS (`wss://`).
pub fn is_tls_url(url: &str) -> bool {
    url.get(..6)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("wss://"))
}

/// Most bytes written to a connection that the kernel keeps before it has sent them
/// (`TCP_NOTSENT_LOWAT`): a writer waits beyond it. Data in flight is not limited, so a
/// connection's speed is not; but a peer that never reads holds at most this much of the
/// machine's TCP memory, where Linux would otherwise let its queue grow to megabytes, and past
/// the system's limit every connection on the machine, honest ones too, gets less.
pub const MAX_UNSENT_BYTES: u32 = 128 * 1024;

/// Applies [`MAX_UNSENT_BYTES`] to `tcp` (best effort: an error is only logged).
pub fn bound_unsent(tcp: &TcpStream) {
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_notsent_lowat(MAX_UNSENT_BYTES) {
        tracing::debug!("cannot set TCP_NOTSENT_LOWAT: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_wss_urls_ask_for_tls() {
        assert!(is_tls_url("wss://a:1/ws"));
        assert!(is_tls_url("WSS://a:1/ws"));
        assert!(!is_tls_url("ws://a:1/ws"));
        assert!(!is_tls_url("wss:"));
        assert!(!is_tls_url(""));
    }
}
