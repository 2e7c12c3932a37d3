//! The tracker's shared state, and what it does with each message. Socket tasks only move text
//! in and out; every decision is made here, under one lock held for microseconds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mtorrent_shared::tracker::{
    AnnounceEvent, ErrorCode, FromTracker, PeerAddress, ToTracker, MAX_LIST_PAGE,
};
use tokio::sync::mpsc;

use crate::admission::Admission;
use crate::advertised::AdvertisedHosts;
use crate::catalog::{AddError, Catalog};
use crate::config::Config;
use crate::outbox::{Outbox, Text};
use crate::registry::{ConnectionId, Owner, Registry, RegistryCounts};
use crate::twin_sync::{TwinFrame, TwinInbox, TwinState};

/// How often the catalog is searched for files that nobody seeds any more.
const CATALOG_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Where the state and changes for the twin go.
pub type TwinOutbox = mpsc::Sender<TwinFrame>;

/// Capacity of the twin link's outbox, in changes: they queue here while the link is slow (or
/// still sending the state); when it is full the link is dropped and rebuilt with a full-state
/// exchange.
pub const TWIN_OUTBOX_CAPACITY: usize = 65_536;

/// Everything the tracker's tasks share.
#[derive(Debug)]
pub struct Tracker {
    /// The configuration it was started with.
    pub config: Config,
    /// A random id chosen at start, sent to the twin.
    pub tracker_id: String,
    started: Instant,
    inner: Mutex<Inner>,
    next_connection: AtomicU64,
    /// Places for WebSocket connections, in all and per address; how many are open.
    pub admission: Arc<Admission>,
    /// Checks announced URLs against where their announces come from.
    pub advertised: AdvertisedHosts,
    /// Messages received since start.
    pub messages: AtomicU64,
    /// Messages received in the last whole second.
    pub messages_per_second: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    catalog: Catalog,
    outboxes: HashMap<ConnectionId, Outbox>,
    twin: Option<TwinLink>,
    /// When files nobody seeds were last looked for.
    last_catalog_sweep: Duration,
}

#[derive(Debug)]
struct TwinLink {
    connection: ConnectionId,
    outbox: TwinOutbox,
}

/// What the socket task should do after a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Carry on.
    Ok,
    /// The message was refused; counts towards closing the connection.
    Strike,
}

impl Tracker {
    /// A tracker with the given configuration and catalog.
    pub fn new(config: Config, catalog: Catalog) -> Self {
        let registry = Registry::new(config.registry_limits());
        let admission = Admission::new(config.max_connections, config.max_connections_per_address);
        let mut catalog = catalog;
        catalog.set_limits(config.catalog_limits());
        let advertised = AdvertisedHosts::new(&config.trusted_relays);
        Self {
            config,
            tracker_id: format!("{:016x}", rand::random::<u64>()),
            started: Instant::now(),
            inner: Mutex::new(Inner {
                registry,
                catalog,
                outboxes: HashMap::new(),
                twin: None,
                last_catalog_sweep: Duration::ZERO,
            }),
            next_connection: AtomicU64::new(1),
            admission,
            advertised,
            messages: AtomicU64::new(0),
            messages_per_second: AtomicU64::new(0),
        }
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock would be a bug; the state is still consistent enough
        // to serve, so recover rather than take the whole tracker down.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a new connection and its outbox; returns its id.
    pub fn open_connection(&self, outbox: Outbox) -> ConnectionId {
        let id = self.new_connection_id();
        self.lock().outboxes.insert(id, outbox);
        id
    }

    /// A fresh connection id, for a link that receives no peer replies.
    pub fn new_connection_id(&self) -> ConnectionId {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// Forgets a closed connection and every peer it registered.
    pub fn close_connection(&self, conn: ConnectionId) {
        let mut inner = self.lock();
        inner.outboxes.remove(&conn);
        if inner.twin.as_ref().is_some_and(|t| t.connection == conn) {
            inner.set_twin(None);
        }
        let mut sync = Vec::new();
        inner.registry.handle_connection_closed(conn, &mut sync);
        inner.send_to_twin(sync);
    }

    /// Handles one message from a peer connection from `source`; the reply, if any, is put in
    /// `reply`, encoded, for the connection to queue.
    pub fn handle_peer_message(
        &self,
        conn: ConnectionId,
        source: std::net::IpAddr,
        message: ToTracker,
        reply: &mut Option<Text>,
    ) -> Verdict {
        let now = self.now();
        let mut inner = self.lock();
        let mut sync = Vec::new();
        let result = match message {
            ToTracker::Announce(mut announce) => {
                // A peer that gave only its port is where its announce came from.
                announce.address = announce.address.resolve(source);
                // Nothing is stored for an announce that would be refused, and a `.mtorrent`
                // comes only with a peer that joins the swarm as a seeder: a document is kept
                // because somebody serves its file.
                let registered = inner
                    .registry
                    .check_announce(conn, &announce)
                    .and_then(|()| match &announce.metainfo {
                        Some(_) if announce.event == AnnounceEvent::Stopped || announce.left != 0 => {
                            Err((
                                ErrorCode::BadMetainfo,
                                "a .mtorrent comes with the announce of a peer that has the whole file".into(),
                            ))
                        }
                        Some(document) => {
                            inner.add_file(document, Some(announce.info_hash), source, now, &mut sync)
                        }
                        None => Ok(()),
                    });
                registered.and_then(|()| {
                    inner.registry.handle_announce(
                        conn,
                        &announce,
                        now,
                        &mut rand::rng(),
                        &mut sync,
                    )
                })
            }
            ToTracker::Leave { info_hash, peer_id } => inner
                .registry
                .handle_leave(conn, info_hash, peer_id, &mut sync)
                .map(|()| FromTracker::Peers {
                    info_hash,
                    interval_secs: self.config.interval as u32,
                    peers: Vec::new(),
                    seeders: inner.registry.swarm_counts(info_hash).0,
                    leechers: inner.registry.swarm_counts(info_hash).1,
                }),
            ToTracker::Signal {
                info_hash,
                from,
                to,
                dial,
            } => inner.signal(conn, info_hash, from, to, dial),
            ToTracker::ListFiles { after, limit } => {
                // A page of none would say the list ends there: at least one.
                let limit = limit.unwrap_or(MAX_LIST_PAGE).clamp(1, MAX_LIST_PAGE) as usize;
                let (files, next) = inner
                    .catalog
                    .list(after, limit, |h| inner.registry.swarm_counts(h));
                Ok(FromTracker::Files { files, next })
            }
            ToTracker::GetMetainfo { info_hash } => match inner.catalog.metainfo_reply(info_hash) {
                // Encoded once per file and shared by every connection that asks for it.
                Some(encoded) => {
                    *reply = Some(encoded);
                    return Verdict::Ok;
                }
                None => Err((ErrorCode::UnknownFile, format!("no file {info_hash} here"))),
            },
            other => Err((
                ErrorCode::Malformed,
                format!("{} is for trackers only", message_name(&other)),
            )),
        };
        inner.send_to_twin(sync);
        match result {
            Ok(message) => {
                *reply = Some(message.encode().into());
                Verdict::Ok
            }
            Err((code, text)) => {
                *reply = Some(FromTracker::error(code, text).encode().into());
                Verdict::Strike
            }
        }
    }

    /// Handles one message from the twin, over the link whose state arrives in `inbox`.
    pub fn handle_twin_message(&self, inbox: &mut TwinInbox, message: ToTracker) {
        let now = self.now();
        if let ToTracker::SyncPeers { peers } = message {
            // Gathered outside the lock: only the state's end touches the registry.
            inbox.gather(peers);
            return;
        }
        let mut inner = self.lock();
        match message {
            ToTracker::SyncStateEnd => inner.registry.replace_twin_state(inbox.take(), now),
            ToTracker::SyncPeer(peer) => inner.registry.apply_twin_peer(peer, now),
            ToTracker::SyncPeerRemoved { info_hash, peer_id } => {
                inner.registry.apply_twin_removal(info_hash, peer_id);
            }
            ToTracker::SyncFile { metainfo } => inner.add_twin_file(&metainfo, now),
            ToTracker::SyncSignal {
                info_hash,
                from,
                to,
                dial,
            } => {
                if let Some(Owner::Local(target)) = inner.registry.owner(info_hash, to) {
                    inner.deliver(
                        target,
                        FromTracker::Signal {
                            info_hash,
                            from,
                            dial,
                        },
                    );
                }
            }
            ToTracker::SyncHello { .. }
            | ToTracker::SyncChallenge { .. }
            | ToTracker::SyncProof { .. }
            | ToTracker::SyncWelcome { .. } => {}
            other => tracing::warn!("ignoring {} from the twin", message_name(&other)),
        }
    }

    /// Turns connection `conn` into a twin link: it no longer receives peer replies or signals,
    /// only what [`Tracker::install_twin_link`] queues.
    pub fn forget_outbox(&self, conn: ConnectionId) {
        self.lock().outboxes.remove(&conn);
    }

    /// Makes `outbox` the link that carries this tracker's changes to its twin, and queues the
    /// whole state on it first, atomically: no change can slip between the snapshot and the
    /// link. The snapshot shares the catalog's documents; it is encoded a message at a time as
    /// the link sends it. Returns false if the outbox is already closed.
    pub fn install_twin_link(&self, conn: ConnectionId, outbox: TwinOutbox) -> bool {
        let mut inner = self.lock();
        let state = TwinState {
            peers: inner.registry.local_state(),
            files: inner.catalog.documents(),
        };
        if outbox.try_send(TwinFrame::State(state)).is_err() {
            return false;
        }
        inner.set_twin(Some(TwinLink {
            connection: conn,
            outbox,
        }));
        true
    }

    /// The shared twin secret, if the tracker was given one. Without one no twin link is
    /// accepted, so nobody can inject peers or files by claiming to be the twin.
    pub fn twin_secret(&self) -> Option<&str> {
        self.config.twin_secret.as_deref()
    }

    /// Whether a twin link is up.
    pub fn twin_link_up(&self) -> bool {
        self.lock().twin.is_some()
    }

    /// Drops peers that stopped announcing.
    pub fn expire(&self) {
        let now = self.now();
        let mut inner = self.lock();
        let mut sync = Vec::new();
        inner.registry.expire(now, &mut sync);
        inner.send_to_twin(sync);
        if now.saturating_sub(inner.last_catalog_sweep) >= CATALOG_SWEEP_INTERVAL {
            inner.last_catalog_sweep = now;
            let Inner {
                catalog, registry, ..
            } = &mut *inner;
            catalog.expire(now, |info_hash| registry.swarm_counts(info_hash).0 > 0);
        }
    }

    /// Totals for `/stats`: registry counts and the number of catalog files.
    pub fn counts(&self) -> (RegistryCounts, usize) {
        let inner = self.lock();
        (inner.registry.counts(), inner.catalog.len())
    }
}

impl Inner {
    /// Makes `link` the twin link (or none), and tells the registry whether the twins are linked.
    fn set_twin(&mut self, link: Option<TwinLink>) {
        self.registry.set_twin_linked(link.is_some());
        self.twin = link;
    }

    fn add_file(
        &mut self,
        document: &str,
        expected: Option<mtorrent_shared::InfoHash>,
        source: std::net::IpAddr,
        now: Duration,
        sync: &mut Vec<ToTracker>,
    ) -> Result<(), (ErrorCode, String)> {
        match self.catalog.add(document, expected, Some(source), now) {
            Ok(Some(canonical)) => {
                sync.push(ToTracker::SyncFile {
                    metainfo: canonical,
                });
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e @ AddError::Storage(_)) => {
                tracing::error!("{e}");
                Err((
                    ErrorCode::BadMetainfo,
                    "the tracker could not store the file".into(),
                ))
            }
            Err(e) => Err((ErrorCode::BadMetainfo, e.to_string())),
        }
    }

    fn add_twin_file(&mut self, document: &str, now: Duration) {
        if let Err(e) = self.catalog.add(document, None, None, now) {
            tracing::warn!("twin sent a file that was not stored: {e}");
        }
    }

    fn signal(
        &mut self,
        conn: ConnectionId,
        info_hash: mtorrent_shared::InfoHash,
        from: mtorrent_shared::PeerId,
        to: mtorrent_shared::PeerId,
        _dial: String,
    ) -> Result<FromTracker, (ErrorCode, String)> {
        if self.registry.owner(info_hash, from) != Some(Owner::Local(conn)) {
            return Err((
                ErrorCode::UnknownPeer,
                "announce in the swarm before signalling".into(),
            ));
        }
        // The browser is sent to the asking peer's own announced address, whatever the signal
        // says: nobody can make browsers dial a host of their choosing, and a peer that gave
        // only its port is dialled where the tracker saw it.
        let dial = match self.registry.address(info_hash, from) {
            Some(PeerAddress::Native { url }) => url.clone(),
            _ => {
                return Err((
                    ErrorCode::BadAddress,
                    "only a peer that accepts connections can ask to be dialled".into(),
                ))
            }
        };
        // Only a browser is ever asked to dial: a native peer dials by itself, and a signal to
        // one would only make it open a connection nobody needs.
        if self
            .registry
            .address(info_hash, to)
            .is_some_and(|address| *address != PeerAddress::Browser)
        {
            return Err((
                ErrorCode::BadAddress,
                format!("peer {to} is not a browser: it needs no signal to be dialled"),
            ));
        }
        match self.registry.owner(info_hash, to) {
            Some(Owner::Local(target)) => {
                self.deliver(
                    target,
                    FromTracker::Signal {
                        info_hash,
                        from,
                        dial,
                    },
                );
            }
            Some(Owner::Twin) => self.send_to_twin(vec![ToTracker::SyncSignal {
                info_hash,
                from,
                to,
                dial,
            }]),
            None => {
                return Err((
                    ErrorCode::UnknownPeer,
                    format!("no peer {to} in that swarm"),
                ));
            }
        }
        Ok(FromTracker::Peers {
            info_hash,
            interval_secs: 0,
            peers: Vec::new(),
            seeders: self.registry.swarm_counts(info_hash).0,
            leechers: self.registry.swarm_counts(info_hash).1,
        })
    }

    fn deliver(&mut self, conn: ConnectionId, message: FromTracker) {
        if let Some(outbox) = self.outboxes.get(&conn) {
            // A full outbox means a stalled peer: dropping one signal is better than blocking.
            let _ = outbox.try_send(message.encode().into());
        }
    }

    fn send_to_twin(&mut self, sync: Vec<ToTracker>) {
        let Some(link) = &self.twin else {
            return;
        };
        for message in sync {
            if link
                .outbox
                .try_send(TwinFrame::Change(message.encode()))
                .is_err()
            {
                // Dropping the link's last sender ends its writer, which closes the socket; the
                // link is then rebuilt with a full-state exchange.
                tracing::warn!("twin link overloaded or closed; it will resynchronise");
                self.set_twin(None);
                return;
            }
        }
    }
}

fn message_name(message: &ToTracker) -> &'static str {
    match message {
        ToTracker::Announce(_) => "announce",
        ToTracker::Leave { .. } => "leave",
        ToTracker::Signal { .. } => "signal",
        ToTracker::ListFiles { .. } => "list_files",
        ToTracker::GetMetainfo { .. } => "get_metainfo",
        ToTracker::SyncHello { .. } => "sync_hello",
        ToTracker::SyncChallenge { .. } => "sync_challenge",
        ToTracker::SyncProof { .. } => "sync_proof",
        ToTracker::SyncWelcome { .. } => "sync_welcome",
        ToTracker::SyncPeers { .. } => "sync_peers",
        ToTracker::SyncStateEnd => "sync_state_end",
        ToTracker::SyncPeer(_) => "sync_peer",
        ToTracker::SyncPeerRemoved { .. } => "sync_peer_removed",
        ToTracker::SyncFile { .. } => "sync_file",
        ToTracker::SyncSignal { .. } => "sync_signal",
    }
}
