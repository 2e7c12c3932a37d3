//! Connections whose received bytes are counted, so that a connection can tell a message still
//! arriving from one that stopped arriving: WebSocket libraries only ever show whole messages.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes received on one connection, shared between its socket and its handler.
#[derive(Debug, Default)]
pub struct Received(AtomicU64);

impl Received {
    /// Bytes received so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Where a connection comes from, and its counter of received bytes.
#[derive(Debug, Clone)]
pub struct Client {
    /// The TCP source address.
    pub addr: SocketAddr,
    /// Bytes received on the connection.
    pub received: Arc<Received>,
}

/// A listener whose connections count the bytes they receive.
#[derive(Debug)]
pub struct MeteredListener<L>(pub L);

impl<L> axum::serve::Listener for MeteredListener<L>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    type Io = Metered<L::Io>;
    type Addr = Client;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.0.accept().await;
        let received = Arc::new(Received::default());
        let io = Metered {
            inner: io,
            received: received.clone(),
        };
        (io, Client { addr, received })
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Client {
            addr: self.0.local_addr()?,
            received: Arc::default(),
        })
    }
}

/// A stream that adds what it reads to its [`Received`].
#[derive(Debug)]
pub struct Metered<S> {
    inner: S,
    received: Arc<Received>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            self.received.0.fetch_add(read as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn every_byte_read_is_counted() {
        let (mut far, near) = tokio::io::duplex(64);
        let received = Arc::new(Received::default());
        let mut metered = Metered {
            inner: near,
            received: received.clone(),
        };
        far.write_all(b"hello, ").await.unwrap();
        far.write_all(b"world").await.unwrap();
        drop(far);
        let mut text = String::new();
        metered.read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "hello, world");
        assert_eq!(received.get(), 12);
    }
}
