//! The running peer: one node with one peer id, a WebSocket listener for other peers (incoming
//! connections routed to a file by info hash), outgoing connections to the peers the trackers
//! name, one [`Torrent`] per file it downloads or seeds, and one tracker client per pair of
//! trackers, which announces every file of the node over one connection per tracker.

mod connection;
mod rate;
mod torrent;
mod tracker;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use mtorrent_shared::tracker::PeerAddress;
use mtorrent_shared::wire::Message;
use mtorrent_shared::{InfoHash, PeerId};
use mtorrent_tls::ServerTls;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;

pub use rate::RateLimit;
pub use torrent::{Progress, StopSignal, Torrent, UploadError};

/// A running peer.
#[derive(Debug)]
pub struct Node {
    /// This peer's id.
    pub peer_id: PeerId,
    /// The URL other peers dial to reach it, if it was given (`--advertise`); without it the
    /// trackers announce the node's port on the address they see it connect from.
    pub advertise: Option<String>,
    /// The address it listens on.
    pub listen_addr: SocketAddr,
    /// Its certificate and key, when it accepts peers over TLS (`wss://`) only.
    tls: Option<ServerTls>,
    upload_limit: Option<Arc<RateLimit>>,
    torrents: Mutex<HashMap<InfoHash, Arc<Torrent>>>,
    /// The tracker client of each pair of trackers the node's files name.
    trackers: Mutex<HashMap<[String; 2], mpsc::UnboundedSender<tracker::SwarmChange>>>,
    /// Places for peer connections, incoming and outgoing together.
    peer_slots: Arc<Semaphore>,
    /// Each file's peer addresses being dialled or connected to: one connection per address
    /// and file, however many peer ids a tracker lists there.
    dialled: Mutex<HashSet<(InfoHash, String)>>,
    /// Incoming connections open from each source (an IPv4 address, an IPv6 /64).
    incoming: Mutex<HashMap<Source, usize>>,
    /// Incoming connections still in their handshakes, oldest first.
    pending: Mutex<PendingPool>,
}

/// Most peer connections a node holds at once, incoming and outgoing; beyond, new ones are
/// closed at once and dials wait for the next announce.
pub const MAX_PEER_CONNECTIONS: usize = 1024;

/// Most incoming connections open from one source at once (an IPv4 address, or an IPv6 /64,
/// which one host holds whole); beyond, new ones are closed at once. One address can take at
/// most this share of [`MAX_PEER_CONNECTIONS`], so filling them takes 32 addresses. Several
/// honest peers do share an address (behind one NAT, or on one machine, as tests and a
/// browser's tabs are), and each connects once per file: 32 leaves room for them.
pub const MAX_CONNECTIONS_PER_SOURCE: usize = 32;

/// Most incoming connections that may be in their handshakes at once. They take no place
/// among the [`MAX_PEER_CONNECTIONS`] until their peer-wire handshake arrives; beyond this
/// many, a newcomer closes the oldest. An honest handshake takes milliseconds, so a flood of
/// connections that say nothing cannot crowd out the peers that speak.
pub const MAX_PENDING_HANDSHAKES: usize = 1024;

impl Node {
    /// Binds the listener on `listen` (without one, [`DEFAULT_PORT`] on every interface, or
    /// any free port if that one is taken) and starts accepting peers. Other peers are told
    /// `advertise`, or, without it, the port on the address the trackers see.
    /// Uploads are limited to `max_upload_rate` bytes per second in all, if given. With `tls`,
    /// peers must connect over TLS (`wss://`), and the node is announced so.
    pub async fn start(
        listen: Option<SocketAddr>,
        advertise: Option<String>,
        max_upload_rate: Option<u64>,
        tls: Option<ServerTls>,
    ) -> Result<Arc<Self>> {
        let listener = match listen {
            Some(listen) => TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen for peers on {listen}"))?,
            None => bind_default().await?,
        };
        let bound = listener.local_addr()?;
        let node = Arc::new(Self {
            peer_id: PeerId(rand_id()),
            advertise,
            listen_addr: bound,
            tls,
            upload_limit: max_upload_rate.map(|rate| Arc::new(RateLimit::new(rate))),
            torrents: Mutex::new(HashMap::new()),
            trackers: Mutex::new(HashMap::new()),
            peer_slots: Arc::new(Semaphore::new(MAX_PEER_CONNECTIONS)),
            dialled: Mutex::new(HashSet::new()),
            incoming: Mutex::new(HashMap::new()),
            pending: Mutex::new(PendingPool::default()),
        });
        tokio::spawn(accept_loop(node.clone(), listener));
        Ok(node)
    }

    /// Starts downloading or seeding `torrent`, and announcing it (registering `register`, the
    /// `.mtorrent`, with the trackers if given) over the node's connection to its trackers.
    pub fn add(self: &Arc<Self>, torrent: Arc<Torrent>, register: Option<String>) {
        let info_hash = torrent.metainfo.info_hash();
        lock(&self.torrents).insert(info_hash, torrent.clone());
        let changes = self.tracker_client(torrent.metainfo.trackers());
        let _ = changes.send(tracker::SwarmChange::Join {
            torrent: torrent.clone(),
            register,
        });
        if torrent.is_downloading() {
            tokio::spawn(report_progress(torrent.clone(), changes));
        }
        // The torrent's timers (stalled requests, keep-alives, silent peers) run from its
        // core's next deadline until it stops; with no peer there is none.
        tokio::spawn(async move { torrent.run_timers().await });
    }

    /// Stops downloading or seeding a file: its connections close and it leaves its swarm.
    /// Returns the torrent, if it was there.
    pub fn remove(&self, info_hash: InfoHash) -> Option<Arc<Torrent>> {
        let torrent = lock(&self.torrents).remove(&info_hash)?;
        torrent.stop();
        if let Some(changes) = lock(&self.trackers).get(torrent.metainfo.trackers()) {
            let _ = changes.send(tracker::SwarmChange::Leave(info_hash));
        }
        Some(torrent)
    }

    /// Stops every file and closes the tracker connections, which drops the node from every
    /// swarm at once (rather than one stop announce per file).
    pub fn shutdown(&self) {
        for (_, torrent) in lock(&self.torrents).drain() {
            torrent.stop();
        }
        for (_, changes) in lock(&self.trackers).drain() {
            let _ = changes.send(tracker::SwarmChange::Shutdown);
        }
    }

    /// How trackers should announce this node: the advertised URL, or the port it listens on,
    /// for the tracker to pair with the address it sees.
    pub fn address(&self) -> PeerAddress {
        match &self.advertise {
            Some(url) => PeerAddress::Native { url: url.clone() },
            None => PeerAddress::Listening {
                port: self.listen_addr.port(),
                tls: self.tls.is_some(),
            },
        }
    }

    /// The client of tracker pair `trackers`, started on first use.
    fn tracker_client(
        self: &Arc<Self>,
        trackers: &[String; 2],
    ) -> mpsc::UnboundedSender<tracker::SwarmChange> {
        let mut clients = lock(&self.trackers);
        if let Some(changes) = clients.get(trackers).filter(|c| !c.is_closed()) {
            return changes.clone();
        }
        let changes = tracker::spawn(Arc::downgrade(self), trackers.clone());
        clients.insert(trackers.clone(), changes.clone());
        changes
    }

    fn torrent(&self, info_hash: InfoHash) -> Option<Arc<Torrent>> {
        lock(&self.torrents).get(&info_hash).cloned()
    }

    /// Connects to the peer at `url` for `torrent`, in the background.
    ///
    /// A tracker can list many peer ids at one address (a liar can list a thousand at a
    /// victim's): the node dials each address once per file, keeps no second connection to
    /// it, and dials nothing while it holds [`MAX_PEER_CONNECTIONS`].
    pub fn dial(self: &Arc<Self>, torrent: Arc<Torrent>, url: String) {
        let key = (torrent.metainfo.info_hash(), url.clone());
        if !lock(&self.dialled).insert(key.clone()) {
            return;
        }
        let Ok(slot) = self.peer_slots.clone().try_acquire_owned() else {
            lock(&self.dialled).remove(&key);
            return;
        };
        let limit = self.upload_limit.clone();
        let node = self.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _dialled = Dialled { node: &node, key };
            let connect = mtorrent_tls::connect(&url, ws_config());
            match tokio::time::timeout(Duration::from_secs(10), connect).await {
                Ok(Ok((socket, _))) => {
                    if let Err(e) =
                        connection::run(torrent, socket, connection::Side::Dialled, None, limit)
                            .await
                    {
                        tracing::debug!("connection to {url} ended: {e:#}");
                    }
                }
                Ok(Err(e)) => tracing::debug!("cannot reach peer {url}: {e}"),
                Err(_) => tracing::debug!("cannot reach peer {url}: timed out"),
            }
        });
    }
}

/// The port a node listens on when none is given, as BitTorrent clients have theirs.
pub const DEFAULT_PORT: u16 = 7003;

/// [`DEFAULT_PORT`] on every interface, so peers on other machines reach the node with no
/// flags; any free port if another program has it.
async fn bind_default() -> Result<TcpListener> {
    let any = std::net::Ipv4Addr::UNSPECIFIED;
    match TcpListener::bind((any, DEFAULT_PORT)).await {
        Ok(listener) => Ok(listener),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => TcpListener::bind((any, 0))
            .await
            .context("cannot listen for peers on any port"),
        Err(e) => Err(e).with_context(|| format!("cannot listen for peers on port {DEFAULT_PORT}")),
    }
}

/// Forgets a dialled address when its connection ends, however it ends.
struct Dialled<'a> {
    node: &'a Node,
    key: (InfoHash, String),
}

impl Drop for Dialled<'_> {
    fn drop(&mut self) {
        lock(&self.node.dialled).remove(&self.key);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Tells the tracker client how much a download still lacks, as it progresses, until it stops.
async fn report_progress(
    torrent: Arc<Torrent>,
    changes: mpsc::UnboundedSender<tracker::SwarmChange>,
) {
    let info_hash = torrent.metainfo.info_hash();
    let mut progress = torrent.watch_progress();
    let mut stop = torrent.stop_signal();
    loop {
        tokio::select! {
            changed = progress.changed() => {
                if changed.is_err() {
                    return;
                }
                let left = tracker::left_of(&torrent);
                if changes.send(tracker::SwarmChange::Left { info_hash, left }).is_err() {
                    return;
                }
            }
            () = stop.wait() => return,
        }
    }
}

/// Every peer connection's WebSocket settings. Its buffers are small, since a node holds a
/// thousand connections and each keeps its buffers at the largest they ever were (the read
/// buffer is filled in full at the first read): blocks go out in fragments
/// ([`connection::PIECE_FRAGMENT`]) rather than through the write buffer whole, and come in
/// [`READ_BUFFER`] bytes a read.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(connection::MAX_WS_MESSAGE))
        .max_frame_size(Some(connection::MAX_WS_MESSAGE))
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(connection::PIECE_FRAGMENT)
}

/// Bytes read from a peer's socket at once.
const READ_BUFFER: usize = 16 * 1024;

/// How long a peer that connected may take to finish the TLS, WebSocket and peer-wire
/// handshakes, all together.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn accept_loop(node: Arc<Node>, listener: TcpListener) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors (EMFILE) or memory: accepting again at once would fail the
                // same way and spin; give the connections that end a moment to free some.
                tracing::warn!("cannot accept a peer: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(source) = SourceCount::admit(&node, from.ip()) else {
            tracing::debug!(
                "refused a peer: {MAX_CONNECTIONS_PER_SOURCE} connections from {from} already"
            );
            continue;
        };
        let pending = Pending::join(&node);
        let _ = stream.set_nodelay(true);
        mtorrent_tls::bound_unsent(&stream);
        let node = node.clone();
        tokio::spawn(async move {
            let _source = source;
            if let Err(e) = serve_incoming(node, stream, pending).await {
                tracing::debug!("incoming peer {from}: {e:#}");
            }
        });
    }
}

/// Where a connection comes from, as far as per-source limits go: an IPv4 address, or the /64
/// of an IPv6 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4(std::net::Ipv4Addr),
    V6Prefix(u64),
}

impl Source {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4),
                None => Source::V6Prefix((v6.to_bits() >> 64) as u64),
            },
        }
    }
}

/// One incoming connection counted against its source's [`MAX_CONNECTIONS_PER_SOURCE`] while
/// it lives.
struct SourceCount {
    node: Arc<Node>,
    source: Source,
}

impl SourceCount {
    /// Counts a connection from `ip`, unless its source holds its share already.
    fn admit(node: &Arc<Node>, ip: IpAddr) -> Option<Self> {
        let source = Source::of(ip);
        let mut incoming = lock(&node.incoming);
        let count = incoming.entry(source).or_insert(0);
        if *count >= MAX_CONNECTIONS_PER_SOURCE {
            return None;
        }
        *count += 1;
        Some(Self {
            node: node.clone(),
            source,
        })
    }
}

impl Drop for SourceCount {
    fn drop(&mut self) {
        let mut incoming = lock(&self.node.incoming);
        if let Some(count) = incoming.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                incoming.remove(&self.source);
            }
        }
    }
}

/// The incoming connections in their handshakes, by age: each can be told to give up.
#[derive(Debug, Default)]
struct PendingPool {
    next: u64,
    waiting: BTreeMap<u64, oneshot::Sender<()>>,
}

/// An incoming connection's place in the [`PendingPool`] until its handshake is done (or it
/// ends): it has until its deadline, unless newer connections push it out first.
struct Pending {
    node: Arc<Node>,
    id: u64,
    deadline: tokio::time::Instant,
    evicted: oneshot::Receiver<()>,
}

impl Pending {
    /// Enters the pool, closing the oldest connection in it if it is full.
    fn join(node: &Arc<Node>) -> Self {
        let (evict, evicted) = oneshot::channel();
        let mut pool = lock(&node.pending);
        while pool.waiting.len() >= MAX_PENDING_HANDSHAKES {
            if let Some((_, oldest)) = pool.waiting.pop_first() {
                let _ = oldest.send(());
            }
        }
        let id = pool.next;
        pool.next += 1;
        pool.waiting.insert(id, evict);
        Self {
            node: node.clone(),
            id,
            deadline: tokio::time::Instant::now() + HANDSHAKE_TIMEOUT,
            evicted,
        }
    }

    /// Runs a step of the handshake, failed when the deadline passes or newer connections
    /// push this one out of the pool.
    async fn step<T>(&mut self, step: impl std::future::Future<Output = T>) -> Result<T> {
        tokio::select! {
            done = tokio::time::timeout_at(self.deadline, step) => {
                done.map_err(|_| anyhow::anyhow!("no handshake within {HANDSHAKE_TIMEOUT:?}"))
            }
            _ = &mut self.evicted => {
                anyhow::bail!("closed for newer connections: {MAX_PENDING_HANDSHAKES} in their handshakes")
            }
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        lock(&self.node.pending).waiting.remove(&self.id);
    }
}

async fn serve_incoming(
    node: Arc<Node>,
    stream: tokio::net::TcpStream,
    mut pending: Pending,
) -> Result<()> {
    // One deadline for the TLS, WebSocket and peer-wire handshakes together.
    match node.tls.clone() {
        None => serve_socket(node, stream, pending).await,
        Some(tls) => {
            let stream = pending
                .step(tls.accept(stream))
                .await
                .context("no TLS handshake")?
                .context("TLS handshake failed")?;
            serve_socket(node, stream, pending).await
        }
    }
}

async fn serve_socket<S>(node: Arc<Node>, stream: S, mut pending: Pending) -> Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let accept = tokio_tungstenite::accept_async_with_config(stream, Some(ws_config()));
    let mut socket = pending
        .step(accept)
        .await
        .context("no WebSocket handshake")??;
    let first = pending
        .step(socket.next())
        .await?
        .context("closed before the handshake")??;
    let WsMessage::Binary(bytes) = first else {
        anyhow::bail!("expected a binary handshake");
    };
    let message = Message::decode_frame(bytes)?;
    let Message::Handshake(handshake) = &message else {
        anyhow::bail!("expected a handshake");
    };
    let torrent = node
        .torrent(handshake.info_hash)
        .with_context(|| format!("not sharing {}", handshake.info_hash))?;
    // The handshake is done: the connection leaves the pool for a place among the peers.
    drop(pending);
    let Ok(_slot) = node.peer_slots.clone().try_acquire_owned() else {
        // Every place is taken: close at once rather than hold a socket nobody serves.
        anyhow::bail!("refused: {MAX_PEER_CONNECTIONS} connections already");
    };
    connection::run(
        torrent,
        socket,
        connection::Side::Accepted,
        Some(message),
        node.upload_limit.clone(),
    )
    .await
}

fn rand_id() -> [u8; 20] {
    let mut id = [0u8; 20];
    id[..8].copy_from_slice(b"-MT0100-");
    for chunk in id[8..].chunks_mut(8) {
        let random = rand::random::<u64>().to_le_bytes();
        chunk.copy_from_slice(&random[..chunk.len()]);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn an_address_listed_under_many_peer_ids_is_dialled_once() {
        use mtorrent_shared::{Bitfield, Metainfo, PieceHash};
        let node = Node::start(Some("127.0.0.1:0".parse().unwrap()), None, None, None)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let data = [7u8; 1000];
        let metainfo = Metainfo::new(
            ["ws://127.0.0.1:1/".into(), "ws://127.0.0.1:2/".into()],
            "data.bin".into(),
            data.len() as u64,
            vec![PieceHash::of(&data)],
        )
        .unwrap();
        let lengths = metainfo.lengths();
        let torrent = Torrent::new(
            metainfo,
            crate::storage::Storage::create_new(&dir.path().join("data.bin"), lengths).unwrap(),
            Bitfield::new(1),
            node.peer_id,
            1,
        );
        // The "victim": it counts the connections it is sent, and holds them open.
        let victim = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/", victim.local_addr().unwrap());
        for _ in 0..100 {
            node.dial(torrent.clone(), url.clone());
        }
        let mut held = Vec::new();
        let counting = async {
            loop {
                held.push(victim.accept().await.unwrap().0);
            }
        };
        let _ = tokio::time::timeout(Duration::from_millis(500), counting).await;
        assert_eq!(
            held.len(),
            1,
            "connections made to one address for one file"
        );
        // Once that connection ends, the address may be dialled again.
        drop(held);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            node.dial(torrent.clone(), url.clone());
            if let Ok(accepted) =
                tokio::time::timeout(Duration::from_millis(200), victim.accept()).await
            {
                accepted.unwrap();
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never dialled again"
            );
        }
    }

    /// A TCP connection to `node` from `source` (any 127.x.y.z is this machine).
    async fn connect_from(source: [u8; 4], node: &Node) -> tokio::net::TcpStream {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((source, 0).into()).unwrap();
        socket.connect(node.listen_addr).await.unwrap()
    }

    /// Whether the node closed `stream` within `within` (a read ends with 0 bytes or a reset).
    async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(within, stream.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn one_source_holds_only_its_share_of_the_connections() {
        let node = Node::start(Some("127.0.0.1:0".parse().unwrap()), None, None, None)
            .await
            .unwrap();
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS_PER_SOURCE {
            held.push(connect_from([127, 0, 0, 1], &node).await);
        }
        let mut one_more = connect_from([127, 0, 0, 1], &node).await;
        assert!(
            closed_within(&mut one_more, Duration::from_secs(2)).await,
            "a connection beyond the share of 127.0.0.1 was kept"
        );
        // Another address still gets in, and so does this one once a connection ends.
        let mut other = connect_from([127, 0, 0, 2], &node).await;
        assert!(!closed_within(&mut other, Duration::from_millis(300)).await);
        drop(held.pop());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut again = connect_from([127, 0, 0, 1], &node).await;
        assert!(!closed_within(&mut again, Duration::from_millis(300)).await);
        // Every held connection is still open.
        for stream in &mut held {
            assert!(!closed_within(stream, Duration::from_millis(1)).await);
        }
    }

    #[tokio::test]
    async fn connections_that_say_nothing_make_way_for_newer_ones() {
        let node = Node::start(Some("127.0.0.1:0".parse().unwrap()), None, None, None)
            .await
            .unwrap();
        let mut silent = Vec::new();
        for i in 0..MAX_PENDING_HANDSHAKES {
            let source = [127, 0, 1, (i / MAX_CONNECTIONS_PER_SOURCE) as u8 + 1];
            silent.push(connect_from(source, &node).await);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The pool is full: each newcomer closes the oldest, long before its deadline.
        let mut newer = Vec::new();
        for i in 0..3u8 {
            newer.push(connect_from([127, 0, 2, i + 1], &node).await);
        }
        for oldest in &mut silent[..3] {
            assert!(
                closed_within(oldest, Duration::from_secs(2)).await,
                "the oldest silent connection was kept"
            );
        }
        assert!(!closed_within(&mut silent[3], Duration::from_millis(1)).await);
        for stream in &mut newer {
            assert!(!closed_within(stream, Duration::from_millis(1)).await);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_connects_and_says_nothing_is_dropped_after_the_handshake_timeout() {
        let node = Node::start(Some("127.0.0.1:0".parse().unwrap()), None, None, None)
            .await
            .unwrap();
        let mut silent = tokio::net::TcpStream::connect(node.listen_addr)
            .await
            .unwrap();
        let started = tokio::time::Instant::now();
        let mut byte = [0u8; 1];
        // The node closes the connection: the read ends (0 bytes, or a reset), never a byte.
        let read = tokio::time::timeout(HANDSHAKE_TIMEOUT * 2, silent.read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0) | Err(_))), "still open: {read:?}");
        assert!(started.elapsed() >= HANDSHAKE_TIMEOUT);
    }
}
