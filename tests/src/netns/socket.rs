//! Sockets inside a host's network namespace, for a test that runs outside it: a socket
//! belongs to the namespace of the thread that created it, for its whole life, so a short-lived
//! thread enters the namespace (`setns`), creates the socket and hands it back. A
//! [`Forwarder`] builds on that to make a service that listens on a host's own 127.0.0.1
//! (chromedriver, say) reachable from the test's 127.0.0.1.

use std::fs::File;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sched::{setns, CloneFlags};

/// How long connecting to a host's service may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `work` on a new thread that has entered network namespace `namespace` (a name under
/// `/run/netns`), and returns what it returns: sockets it creates live in that namespace. The
/// calling thread stays where it is.
pub fn in_namespace<T, F>(namespace: &str, work: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let path = Path::new("/run/netns").join(namespace);
    std::thread::Builder::new()
        .name(format!("in {namespace}"))
        .spawn(move || {
            let namespace = File::open(&path)?;
            setns(&namespace, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            work()
        })?
        .join()
        .map_err(|_| io::Error::other("the thread inside the namespace panicked"))?
}

/// A TCP connection to `addr`, made from inside `namespace`, failing after `timeout`.
pub fn connect(namespace: &str, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    in_namespace(namespace, move || {
        TcpStream::connect_timeout(&addr, timeout)
    })
}

/// A listener on `addr`, inside `namespace`.
pub fn listen(namespace: &str, addr: SocketAddr) -> io::Result<TcpListener> {
    in_namespace(namespace, move || TcpListener::bind(addr))
}

/// Forwards connections to a port of the test's own 127.0.0.1 to an address as seen from inside
/// a namespace; each connection gets its own connection inside, and bytes are copied both ways
/// until either side closes. Dropping it stops accepting and closes every connection.
#[derive(Debug)]
pub struct Forwarder {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    /// Both ends of every forwarded connection, to close them all when dropped.
    open: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Forwarder {
    /// Starts forwarding an OS-chosen port of 127.0.0.1 to `target` inside `namespace`.
    pub fn start(namespace: &str, target: SocketAddr) -> io::Result<Forwarder> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let acceptor = std::thread::Builder::new()
            .name(format!("forward to {target} in {namespace}"))
            .spawn({
                let namespace = namespace.to_owned();
                let stopping = stopping.clone();
                let open = open.clone();
                move || accept_loop(&listener, &namespace, target, &stopping, &open)
            })?;
        Ok(Forwarder {
            addr,
            stopping,
            open,
            acceptor: Some(acceptor),
        })
    }

    /// The address to connect to: `127.0.0.1:PORT` of the test's namespace.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the acceptor, which sees it is stopping.
        let _ = TcpStream::connect_timeout(&self.addr, CONNECT_TIMEOUT);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for stream in lock(&self.open).drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    namespace: &str,
    target: SocketAddr,
    stopping: &AtomicBool,
    open: &Mutex<Vec<TcpStream>>,
) {
    for client in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        // A target not listening yet closes the client's connection: the client retries.
        let Ok(inside) = connect(namespace, target, CONNECT_TIMEOUT) else {
            continue;
        };
        let (Ok(client_copy), Ok(inside_copy)) = (client.try_clone(), inside.try_clone()) else {
            continue;
        };
        {
            let mut open = lock(open);
            // Connections that ended are closed already; keep the list short.
            open.retain(|s| s.peer_addr().is_ok());
            for stream in [&client, &inside] {
                if let Ok(copy) = stream.try_clone() {
                    open.push(copy);
                }
            }
        }
        std::thread::spawn(move || pump(client, inside_copy));
        std::thread::spawn(move || pump(inside, client_copy));
    }
}

/// Copies `from` to `to` until `from` ends, then ends `to`'s writing side.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
