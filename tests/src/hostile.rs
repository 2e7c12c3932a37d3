//! A hostile client built on `shared`: attackers against real trackers and native peers, for
//! the hostile tests and the attack benchmark. Each attacker connects from a source address of
//! its own choosing (any 127.x.y.z is this machine), so per-address limits can be met, and
//! spread over. A [`Horde`] holds many attackers of one kind, each reconnecting when its target
//! drops it, until the horde is dropped.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use mtorrent_shared::tracker::{Announce, AnnounceEvent, PeerAddress, ToTracker};
use mtorrent_shared::wire::{BlockRequest, Handshake, Message, PROTOCOL_VERSION};
use mtorrent_shared::{Bitfield, InfoHash, Metainfo, PeerId, PieceHash};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

/// The receive buffer a slow reader asks for: as small as the system allows.
const TINY_RECEIVE_BUFFER: u32 = 4096;

/// How long an attacker waits for a step of a handshake before it gives up and tries again.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// The `n`th of the source addresses in block `block` (0 to 253): `127.(block+1).y.z`, 250
/// addresses per `y`, never a `.0` or `.255`.
pub fn source_address(block: u8, n: usize) -> Ipv4Addr {
    let n = u32::try_from(n).expect("a small attacker number");
    let y = u8::try_from(n / 250).expect("at most 62,500 addresses per block");
    Ipv4Addr::new(127, block + 1, y, (n % 250) as u8 + 1)
}

/// A TCP connection to `target` from `source`, with a receive buffer of `receive_buffer`
/// bytes if given.
pub async fn connect_from(
    source: Ipv4Addr,
    target: SocketAddr,
    receive_buffer: Option<u32>,
) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(size) = receive_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    socket.bind(SocketAddr::new(source.into(), 0))?;
    socket.connect(target).await
}

/// A WebSocket to `url` (at `target`) from `source`.
pub async fn websocket_from(
    source: Ipv4Addr,
    target: SocketAddr,
    url: &str,
    receive_buffer: Option<u32>,
) -> Result<WebSocketStream<TcpStream>, String> {
    let stream = connect_from(source, target, receive_buffer)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let handshake = tokio_tungstenite::client_async(url, stream);
    match tokio::time::timeout(STEP_TIMEOUT, handshake).await {
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(e)) => Err(format!("WebSocket handshake: {e}")),
        Err(_) => Err("WebSocket handshake timed out".into()),
    }
}

/// The resident memory of process `pid` now (`VmRSS`), in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS:") * 1024
}

/// The most resident memory process `pid` ever had (`VmHWM`), in bytes.
pub fn peak_rss_bytes(pid: u32) -> u64 {
    proc_status_kib(pid, "VmHWM:") * 1024
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("a live process");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// The open file descriptors of process `pid`.
pub fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

// ---------------------------------------------------------------------------------------------
// Attackers

/// What one attacker does, against what.
#[derive(Debug, Clone)]
pub enum Attack {
    /// Connects over TCP and sends nothing.
    IdleTcp {
        /// The target.
        target: SocketAddr,
    },
    /// Opens a WebSocket and sends nothing more.
    IdleWebSocket {
        /// The target.
        target: SocketAddr,
        /// Its WebSocket URL.
        url: String,
    },
    /// Connects to a tracker with a tiny receive buffer, asks for a `.mtorrent` again and
    /// again, and never reads.
    SlowTrackerReader {
        /// The tracker.
        target: SocketAddr,
        /// Its WebSocket URL.
        url: String,
        /// The file whose (large) `.mtorrent` it asks for.
        info_hash: InfoHash,
    },
    /// Connects to a native peer with a tiny receive buffer, reads until the peer unchokes it,
    /// then asks for every block it may and never reads again.
    SlowPeerReader {
        /// The peer.
        target: SocketAddr,
        /// The file the peer shares.
        metainfo: Arc<Metainfo>,
    },
}

impl Attack {
    /// Attacks once from `source`; returns when the target has dropped the attacker (or
    /// refused it), with why.
    pub async fn run_once(&self, source: Ipv4Addr, id: PeerId, engaged: &AtomicUsize) -> String {
        match self {
            Attack::IdleTcp { target } => match connect_from(source, *target, None).await {
                Ok(stream) => held_until_closed(stream, engaged).await,
                Err(e) => format!("connect: {e}"),
            },
            Attack::IdleWebSocket { target, url } => {
                match websocket_from(source, *target, url, None).await {
                    Ok(socket) => held_until_closed(socket.into_inner(), engaged).await,
                    Err(e) => e,
                }
            }
            Attack::SlowTrackerReader {
                target,
                url,
                info_hash,
            } => {
                let socket =
                    match websocket_from(source, *target, url, Some(TINY_RECEIVE_BUFFER)).await {
                        Ok(socket) => socket,
                        Err(e) => return e,
                    };
                let ask = ToTracker::GetMetainfo {
                    info_hash: *info_hash,
                }
                .encode();
                keep_asking(socket, engaged, || WsMessage::Text(ask.clone().into())).await
            }
            Attack::SlowPeerReader { target, metainfo } => {
                let url = format!("ws://{target}/");
                let mut socket =
                    match websocket_from(source, *target, &url, Some(TINY_RECEIVE_BUFFER)).await {
                        Ok(socket) => socket,
                        Err(e) => return e,
                    };
                if let Err(e) = until_unchoked(&mut socket, metainfo, id).await {
                    return e;
                }
                // Every block it may ask for at once, then nothing read ever again.
                let lengths = metainfo.lengths();
                let blocks = lengths.pieces().flat_map(|piece| lengths.blocks(piece));
                for block in blocks.take(16) {
                    let request = Message::Request(BlockRequest::from(block));
                    if let Err(e) = socket.send(WsMessage::Binary(request.to_bytes())).await {
                        return format!("request: {e}");
                    }
                }
                keep_asking(socket, engaged, || {
                    WsMessage::Binary(Message::KeepAlive.to_bytes())
                })
                .await
            }
        }
    }
}

/// Sends the peer-wire handshake, an empty bitfield and interest, and reads until unchoked.
async fn until_unchoked(
    socket: &mut WebSocketStream<TcpStream>,
    metainfo: &Metainfo,
    peer_id: PeerId,
) -> Result<(), String> {
    let count = metainfo.lengths().piece_count();
    let hello = [
        Message::Handshake(Handshake {
            version: PROTOCOL_VERSION,
            info_hash: metainfo.info_hash(),
            peer_id,
            max_requests: 16,
        }),
        Message::Bitfield(Bitfield::new(count).to_wire().into()),
        Message::Interested,
    ];
    for message in hello {
        socket
            .send(WsMessage::Binary(message.to_bytes()))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
    }
    loop {
        let frame = tokio::time::timeout(STEP_TIMEOUT, socket.next())
            .await
            .map_err(|_| "never unchoked".to_owned())?;
        match frame {
            Some(Ok(WsMessage::Binary(bytes))) => {
                if Message::decode_frame(bytes) == Ok(Message::Unchoke) {
                    return Ok(());
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("before the unchoke: {e}")),
            None => return Err("closed before the unchoke".into()),
        }
    }
}

/// Holds `stream` without sending anything, reading (and ignoring) what arrives, until the
/// other side closes it.
async fn held_until_closed(stream: TcpStream, engaged: &AtomicUsize) -> String {
    let _engaged = Engaged::new(engaged);
    let mut buffer = [0u8; 4096];
    loop {
        if stream.readable().await.is_err() {
            return "closed".into();
        }
        match stream.try_read(&mut buffer) {
            Ok(0) => return "closed by the target".into(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return format!("dropped: {e}"),
        }
    }
}

/// Sends `ask()` every half second without ever reading, until a send fails: the target
/// dropped the connection.
async fn keep_asking(
    mut socket: WebSocketStream<TcpStream>,
    engaged: &AtomicUsize,
    ask: impl Fn() -> WsMessage,
) -> String {
    let _engaged = Engaged::new(engaged);
    loop {
        // The send itself may wait for room in our socket's buffer, which a target that stopped
        // reading never makes: a send that takes this long counts as dropped too.
        match tokio::time::timeout(Duration::from_secs(60), socket.send(ask())).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return format!("dropped: {e}"),
            Err(_) => return "the target stopped reading".into(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Counts an attacker as engaged while it lives.
struct Engaged<'a>(&'a AtomicUsize);

impl<'a> Engaged<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Engaged<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Many attackers of one kind, each on its own source address (`addresses` of them, in block
/// `block` of [`source_address`]), each attacking again when dropped, until the horde is
/// dropped.
#[derive(Debug)]
pub struct Horde {
    tasks: tokio::task::JoinSet<()>,
    engaged: Arc<AtomicUsize>,
    attacks: Arc<AtomicUsize>,
}

impl Horde {
    /// Starts `count` attackers doing `attack`, spread over `addresses` source addresses.
    pub fn start(attack: Attack, count: usize, block: u8, addresses: usize) -> Self {
        let engaged = Arc::new(AtomicUsize::new(0));
        let attacks = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..count {
            let attack = attack.clone();
            let source = source_address(block, n % addresses.max(1));
            let (engaged, attacks) = (engaged.clone(), attacks.clone());
            let id = attacker_id(block, n);
            tasks.spawn(async move {
                loop {
                    attacks.fetch_add(1, Ordering::Relaxed);
                    let _why = attack.run_once(source, id, &engaged).await;
                    // A moment before the next try, so a refused attacker does not spin.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
        }
        Self {
            tasks,
            engaged,
            attacks,
        }
    }

    /// Attackers connected now (past their handshakes, for the slow readers).
    pub fn engaged(&self) -> usize {
        self.engaged.load(Ordering::Relaxed)
    }

    /// Attacks started so far, the first of each attacker and every one after a drop.
    pub fn attacks(&self) -> usize {
        self.attacks.load(Ordering::Relaxed)
    }

    /// Waits up to `within` until at least `count` attackers are engaged; returns how many are.
    pub async fn wait_engaged(&self, count: usize, within: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + within;
        while self.engaged() < count && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.engaged()
    }
}

impl Drop for Horde {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// A peer id for attacker `n` of block `block`: never one an honest peer uses.
pub fn attacker_id(block: u8, n: usize) -> PeerId {
    let mut id = [0xA7; 20];
    id[0] = block;
    id[1..9].copy_from_slice(&(n as u64).to_be_bytes());
    PeerId(id)
}

// ---------------------------------------------------------------------------------------------
// Documents and announces

/// The `.mtorrent` of a file of `pieces` pieces of made-up content: about 40 bytes per piece,
/// so 16,384 pieces make a 650 KiB document. Its tracker URLs are `trackers`.
pub fn large_metainfo(name: &str, pieces: u32, trackers: [String; 2]) -> Metainfo {
    let hashes = (0..pieces)
        .map(|i| {
            let mut bytes = name.as_bytes().to_vec();
            bytes.extend_from_slice(&i.to_le_bytes());
            PieceHash::of(&bytes)
        })
        .collect();
    Metainfo::new(
        trackers,
        name.into(),
        u64::from(pieces) * u64::from(mtorrent_shared::PIECE_SIZE),
        hashes,
    )
    .expect("a valid .mtorrent")
}

/// Registers `metainfo` at the tracker at `url` by a seeder's announce, and keeps the
/// seeder's connection (so the file stays seeded) for as long as the client lives.
pub async fn register_seeder(
    url: &str,
    metainfo: &Metainfo,
    peer: PeerId,
) -> crate::tracker_client::TrackerClient {
    let mut client = crate::tracker_client::TrackerClient::connect(url).await;
    let mut started = announce(
        metainfo.info_hash(),
        peer,
        AnnounceEvent::Started,
        PeerAddress::Listening {
            port: 9,
            tls: false,
        },
    );
    started.metainfo = Some(metainfo.to_json());
    let reply = client.request(&ToTracker::Announce(started)).await;
    assert!(
        matches!(reply, mtorrent_shared::tracker::FromTracker::Peers { .. }),
        "got {reply:?}"
    );
    client
}

/// An announce of `event` by `peer_id` in `info_hash`'s swarm at `address`, with nothing
/// left to download.
pub fn announce(
    info_hash: InfoHash,
    peer_id: PeerId,
    event: AnnounceEvent,
    address: PeerAddress,
) -> Announce {
    Announce {
        info_hash,
        peer_id,
        event,
        address,
        left: 0,
        numwant: 50,
        metainfo: None,
    }
}

/// `document` with a field the format does not define, of `padding` bytes, as a flooder pads
/// a tiny file's document to the size limit.
pub fn padded(document: &str, padding: usize) -> String {
    document.replacen(
        '{',
        &format!(r#"{{"padding": "{}","#, "x".repeat(padding)),
        1,
    )
}

// ---------------------------------------------------------------------------------------------
// Victims

/// A listener standing in for a victim that peers might be made to dial: it counts the TCP
/// connections it receives and holds them open.
#[derive(Debug)]
pub struct Victim {
    /// Where it listens.
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Victim {
    /// Starts listening on 127.0.0.1, on a port the system picks.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let addr = listener.local_addr().expect("a bound address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::Relaxed);
                held.push(stream);
            }
        });
        Self {
            addr,
            accepted,
            task,
        }
    }

    /// Its address as a peer URL.
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// Connections received so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// The attack mix of the load test and the benchmark

/// Attackers against a tracker pair and a native seeder: `slow` slow readers and `idle` idle
/// connections (half TCP, half WebSocket) against the trackers, half at each, and as many
/// against the seeder, spread over source addresses so that no per-address limit alone turns
/// them away. The trackers' slow readers ask for `big`, a large document in their catalog.
#[derive(Debug)]
pub struct AttackMix {
    /// Each horde, with what it is.
    pub hordes: Vec<(&'static str, Horde)>,
}

impl AttackMix {
    /// Starts the attackers, each horde in blocks 100 and up of [`source_address`].
    pub fn start(
        trackers: [(SocketAddr, String); 2],
        big: InfoHash,
        seeder: SocketAddr,
        metainfo: Arc<Metainfo>,
        slow: usize,
        idle: usize,
    ) -> Self {
        let mut hordes = Vec::new();
        // A source address for every 20 attackers: under every per-address limit.
        let spread = |count: usize| count.div_ceil(20).max(1);
        for (n, (target, url)) in trackers.into_iter().enumerate() {
            let block = 100 + 10 * n as u8;
            let slow_reader = Attack::SlowTrackerReader {
                target,
                url: url.clone(),
                info_hash: big,
            };
            hordes.push((
                "tracker slow readers",
                Horde::start(slow_reader, slow / 2, block, spread(slow / 2)),
            ));
            let idle_tcp = Attack::IdleTcp { target };
            hordes.push((
                "tracker idle TCP",
                Horde::start(idle_tcp, idle / 4, block + 1, spread(idle / 4)),
            ));
            let idle_ws = Attack::IdleWebSocket { target, url };
            hordes.push((
                "tracker idle WebSockets",
                Horde::start(idle_ws, idle / 4, block + 2, spread(idle / 4)),
            ));
        }
        let slow_reader = Attack::SlowPeerReader {
            target: seeder,
            metainfo,
        };
        hordes.push((
            "seeder slow readers",
            Horde::start(slow_reader, slow, 130, spread(slow)),
        ));
        let idle_tcp = Attack::IdleTcp { target: seeder };
        hordes.push((
            "seeder idle TCP",
            Horde::start(idle_tcp, idle / 2, 131, spread(idle / 2)),
        ));
        let idle_ws = Attack::IdleWebSocket {
            target: seeder,
            url: format!("ws://{seeder}/"),
        };
        hordes.push((
            "seeder idle WebSockets",
            Horde::start(idle_ws, idle / 2, 132, spread(idle / 2)),
        ));
        Self { hordes }
    }

    /// Waits up to `within` until nine in ten slow readers are engaged (the idle connections
    /// come and go as targets close them).
    pub async fn wait_engaged(&self, within: Duration) {
        for (what, horde) in &self.hordes {
            if what.ends_with("slow readers") {
                let wanted = horde.tasks.len() * 9 / 10;
                horde.wait_engaged(wanted, within).await;
            }
        }
    }

    /// Attackers connected now.
    pub fn engaged(&self) -> usize {
        self.hordes.iter().map(|(_, horde)| horde.engaged()).sum()
    }

    /// One line per horde: attackers engaged now, and attacks made.
    pub fn report(&self) -> String {
        self.hordes
            .iter()
            .map(|(what, horde)| {
                format!(
                    "{what}: {} engaged, {} attacks\n",
                    horde.engaged(),
                    horde.attacks()
                )
            })
            .collect()
    }
}
