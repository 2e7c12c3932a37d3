//! Buffered reads for connections that carry bulk data over TLS.
//!
//! rustls asks its transport for at most 4 KiB at a time, so a 16 KiB TLS record read straight
//! from a socket costs about five system calls (and as many wake-ups). Reading through a buffer
//! of [`READ_BUFFER_BYTES`] takes several records per system call instead; rustls then copies
//! from memory. Writes pass through unbuffered. Plain WebSocket reads, which ask for more than
//! the buffer holds, bypass it.

use tokio::io::BufReader;
use tokio::net::TcpStream;

/// How much one read from the socket may take.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;

/// A TCP connection read through a buffer of [`READ_BUFFER_BYTES`].
pub type BufferedTcp = BufReader<TcpStream>;

/// Wraps `tcp` so that its reads are buffered.
pub fn buffered(tcp: TcpStream) -> BufferedTcp {
    BufReader::with_capacity(READ_BUFFER_BYTES, tcp)
}
