//! A TLS listener whose handshakes run beside the accept loop: each in its own task, with a
//! deadline, at most so many at once, so that a slow or silent client never stalls accepting.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;

use crate::ServerTls;

/// A TCP connection after its server-side TLS handshake.
pub type TlsTcpStream = TlsStream<TcpStream>;

/// How [`Incoming`] bounds handshakes.
#[derive(Debug, Clone, Copy)]
pub struct IncomingLimits {
    /// How long a client may take to finish its TLS handshake before it is dropped.
    pub handshake_timeout: Duration,
    /// Most handshakes in progress at once; beyond it, accepting waits for one to end.
    pub max_handshakes: usize,
}

impl Default for IncomingLimits {
    /// 10 seconds per handshake, 256 at once.
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            max_handshakes: 256,
        }
    }
}

/// Connections that finished their TLS handshake, with their source addresses. Accepting and
/// handshaking run in background tasks until this is dropped.
#[derive(Debug)]
pub struct Incoming {
    ready: mpsc::Receiver<(TlsTcpStream, SocketAddr)>,
    local_addr: SocketAddr,
    accept_loop: tokio::task::AbortHandle,
}

impl Incoming {
    /// Starts accepting on `listener` (TCP_NODELAY set on every connection) and handshaking
    /// with `tls` within `limits`. Must be called inside a tokio runtime.
    pub fn start(
        listener: TcpListener,
        tls: ServerTls,
        limits: IncomingLimits,
    ) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (sender, ready) = mpsc::channel(64);
        let accept_loop = tokio::spawn(accept_loop(listener, tls, limits, sender)).abort_handle();
        Ok(Self {
            ready,
            local_addr,
            accept_loop,
        })
    }

    /// The next connection whose handshake succeeded.
    pub async fn accept(&mut self) -> (TlsTcpStream, SocketAddr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop only ends when this is dropped.
            None => std::future::pending().await,
        }
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: ServerTls,
    limits: IncomingLimits,
    ready: mpsc::Sender<(TlsTcpStream, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(limits.max_handshakes.max(1)));
    loop {
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let (tcp, source) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors (EMFILE) or memory: accepting again at once would fail
                // the same way and spin; give the connections that end a moment to free some.
                tracing::warn!("cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        crate::client::bound_unsent(&tcp);
        let tls = tls.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(limits.handshake_timeout, tls.accept(tcp)).await;
            drop(permit);
            match handshake {
                Ok(Ok(stream)) => {
                    let _ = ready.send((stream, source)).await;
                }
                Ok(Err(e)) => tracing::debug!("TLS handshake with {source} failed: {e}"),
                Err(_) => tracing::debug!("TLS handshake with {source} timed out"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn server_and_client() -> (ServerTls, Arc<rustls::ClientConfig>, tempfile::TempDir) {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, signing_key.serialize_pem()).unwrap();
        let server = ServerTls::from_pem_files(&cert_path, &key_path).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (server, Arc::new(client), dir)
    }

    async fn handshake(addr: SocketAddr, client: Arc<rustls::ClientConfig>) {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(client);
        let name = ServerName::try_from("localhost").unwrap();
        let mut stream = connector.connect(name, tcp).await.unwrap();
        stream.write_all(b"ping").await.unwrap();
        stream.flush().await.unwrap();
    }

    #[tokio::test]
    async fn silent_clients_do_not_stall_others_and_are_dropped_at_the_deadline() {
        let (server, client, _dir) = server_and_client();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let limits = IncomingLimits {
            handshake_timeout: Duration::from_millis(300),
            max_handshakes: 4,
        };
        let mut incoming = Incoming::start(listener, server, limits).unwrap();
        let addr = incoming.local_addr();
        // Silent clients, fewer than the cap: they connect and never say a word.
        let mut silent = Vec::new();
        for _ in 0..3 {
            silent.push(TcpStream::connect(addr).await.unwrap());
        }
        tokio::spawn(handshake(addr, client));
        let (mut stream, source) =
            tokio::time::timeout(Duration::from_millis(250), incoming.accept())
                .await
                .expect("a client that speaks is accepted while others are silent");
        assert!(source.ip().is_loopback());
        let mut ping = [0u8; 4];
        stream.read_exact(&mut ping).await.unwrap();
        assert_eq!(&ping, b"ping");
        // The silent ones are closed once their deadline passes.
        for mut tcp in silent {
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut byte)).await;
            assert!(matches!(read, Ok(Ok(0) | Err(_))), "still open: {read:?}");
        }
    }

    #[tokio::test]
    async fn at_the_cap_accepting_waits_until_a_handshake_ends() {
        let (server, client, _dir) = server_and_client();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let limits = IncomingLimits {
            handshake_timeout: Duration::from_millis(500),
            max_handshakes: 1,
        };
        let mut incoming = Incoming::start(listener, server, limits).unwrap();
        let addr = incoming.local_addr();
        let _silent = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = tokio::time::Instant::now();
        tokio::spawn(handshake(addr, client));
        tokio::time::timeout(Duration::from_secs(3), incoming.accept())
            .await
            .expect("accepted once the silent client's deadline passed");
        assert!(started.elapsed() >= Duration::from_millis(300));
    }
}
