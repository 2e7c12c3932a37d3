//! A minimal tracker client for tests: send a [`ToTracker`], wait for a [`FromTracker`].

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use mtorrent_shared::tracker::{FromTracker, ToTracker};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for one reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// One WebSocket connection to a tracker.
#[derive(Debug)]
pub struct TrackerClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What the tracker did instead of replying.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// The connection was closed.
    Closed,
    /// Nothing arrived in time.
    Timeout,
}

impl TrackerClient {
    /// Connects to `ws://.../ws`.
    pub async fn connect(url: &str) -> Self {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
        Self { socket }
    }

    /// Connects to `ws://.../ws` over `stream`, a TCP connection already open to the tracker
    /// (made inside a network namespace, say).
    pub async fn connect_over(url: &str, stream: std::net::TcpStream) -> Self {
        stream.set_nonblocking(true).expect("a non-blocking socket");
        let stream = TcpStream::from_std(stream).expect("a socket for the runtime");
        let (socket, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
        Self { socket }
    }

    /// Connects to `ws://.../ws` with extra request headers, as a reverse proxy would send.
    pub async fn connect_with_headers(url: &str, headers: &[(&str, &str)]) -> Self {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url.into_client_request().expect("a WebSocket URL");
        for (name, value) in headers {
            let name: tokio_tungstenite::tungstenite::http::HeaderName =
                name.parse().expect("a valid header name");
            request
                .headers_mut()
                .append(name, value.parse().expect("a valid header value"));
        }
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
        Self { socket }
    }

    /// Connects to `wss://.../ws`, trusting what `config` trusts.
    pub async fn connect_tls(url: &str, config: std::sync::Arc<rustls::ClientConfig>) -> Self {
        let connector = tokio_tungstenite::Connector::Rustls(config);
        let (socket, _) =
            tokio_tungstenite::connect_async_tls_with_config(url, None, true, Some(connector))
                .await
                .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
        Self { socket }
    }

    /// Sends a message.
    pub async fn send(&mut self, message: &ToTracker) {
        self.send_raw(Message::Text(message.encode().into())).await;
    }

    /// Sends any WebSocket message.
    pub async fn send_raw(&mut self, message: Message) {
        self.socket
            .send(message)
            .await
            .expect("send to the tracker");
    }

    /// The next tracker message, or why there is none.
    pub async fn recv(&mut self) -> Result<FromTracker, Closed> {
        let text = self.recv_text().await?;
        Ok(FromTracker::decode(&text).expect("the tracker sends valid messages"))
    }

    /// The next text message as it came (a twin's messages are not [`FromTracker`] ones), or
    /// why there is none.
    pub async fn recv_text(&mut self) -> Result<String, Closed> {
        loop {
            let frame = tokio::time::timeout(REPLY_TIMEOUT, self.socket.next())
                .await
                .map_err(|_| Closed::Timeout)?;
            match frame {
                Some(Ok(Message::Text(text))) => return Ok(text.to_string()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Err(Closed::Closed),
                Some(Ok(other)) => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// Sends `message` and returns the reply.
    pub async fn request(&mut self, message: &ToTracker) -> FromTracker {
        self.send(message).await;
        self.recv().await.expect("a reply")
    }

    /// Every file the tracker lists, asked for in pages of `page` files, checking that no page
    /// holds more than asked.
    pub async fn list_files(&mut self, page: u32) -> Vec<mtorrent_shared::InfoHash> {
        let mut listed = Vec::new();
        let mut after = None;
        loop {
            let ask = ToTracker::ListFiles {
                after,
                limit: Some(page),
            };
            match self.request(&ask).await {
                FromTracker::Files { files, next } => {
                    assert!(
                        files.len() <= page as usize,
                        "a page holds at most what was asked"
                    );
                    listed.extend(files.iter().map(|f| f.info_hash));
                    match next {
                        Some(next) => after = Some(next),
                        None => return listed,
                    }
                }
                other => panic!("expected files, got {other:?}"),
            }
        }
    }
}
