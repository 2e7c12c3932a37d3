//! The swarm registry: which peers are in which swarm, who owns each peer id, and when each was
//! last seen. Plain data with `handle_*` methods; the clock (`now`, time since the tracker
//! started) and the random source are passed in, and changes the twin must hear about are pushed
//! to an output `Vec`, so everything here is deterministic and tested without sockets.
//!
//! Every peer record has an [`Owner`]: a connection of this tracker, or the twin. A peer id is
//! bound to the one connection that announced it, at this tracker or, while the twins are
//! linked, at the twin: nobody else may announce, stop or leave for it on either tracker. Records
//! the twin told us about are replaced wholesale when the twin sends its full state, and expire
//! like any other when not refreshed; while the twin link is down, a peer that moves here from
//! the twin takes its records over.
//!
//! Counts are kept as records come and go, so no announce or `/stats` walks a swarm.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use indexmap::IndexMap;
use mtorrent_shared::tracker::{
    Announce, AnnounceEvent, ErrorCode, FromTracker, PeerAddress, PeerInfo, SyncPeer, ToTracker,
};
use mtorrent_shared::{InfoHash, PeerId};
use rand::Rng;

/// A connection of this tracker, numbered from 1 in order of arrival.
pub type ConnectionId = u64;

/// Who may speak for a peer id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Owner {
    /// A peer connected to this tracker.
    Local(ConnectionId),
    /// A peer connected to the twin tracker.
    Twin,
}

#[derive(Debug, Clone)]
struct PeerRecord {
    address: PeerAddress,
    complete: bool,
    owner: Owner,
    last_seen: Duration,
}

/// Limits the registry enforces.
#[derive(Debug, Clone, Copy)]
pub struct RegistryLimits {
    /// Seconds between announces, told to every peer.
    pub interval: Duration,
    /// A peer not heard from for this long is dropped.
    pub peer_timeout: Duration,
    /// Most swarms one connection may be in.
    pub max_swarms_per_connection: usize,
    /// Most peers returned in one answer.
    pub max_numwant: u32,
}

/// Counts for `/stats` and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RegistryCounts {
    /// Swarms with at least one peer.
    pub swarms: usize,
    /// Peer records in all swarms.
    pub peers: usize,
    /// Of which complete.
    pub seeders: usize,
    /// Connections of this tracker in at least one swarm: one per peer node, however many
    /// files it shares.
    pub peer_connections: usize,
}

/// One swarm's peers, with its count of seeders.
#[derive(Debug, Default)]
struct Swarm {
    peers: IndexMap<PeerId, PeerRecord>,
    seeders: u32,
}

/// The local connection a peer id is bound to, and how many of its records it holds.
#[derive(Debug, Clone, Copy)]
struct Binding {
    conn: ConnectionId,
    records: usize,
}

/// Every swarm this tracker knows.
#[derive(Debug)]
pub struct Registry {
    limits: RegistryLimits,
    swarms: HashMap<InfoHash, Swarm>,
    /// Which swarms each local connection is in, to clean up when it closes; a connection in no
    /// swarm has no entry.
    connection_swarms: HashMap<ConnectionId, HashMap<InfoHash, PeerId>>,
    /// The local connection each locally announced peer id is bound to.
    bindings: HashMap<PeerId, Binding>,
    /// How many records the twin owns for each peer id.
    twin_records: HashMap<PeerId, usize>,
    /// Whether the twin link is up: only then does a peer id at the twin bind here too.
    twin_linked: bool,
    peers: usize,
    seeders: usize,
}

impl Registry {
    /// An empty registry.
    pub fn new(limits: RegistryLimits) -> Self {
        Self {
            limits,
            swarms: HashMap::new(),
            connection_swarms: HashMap::new(),
            bindings: HashMap::new(),
            twin_records: HashMap::new(),
            twin_linked: false,
            peers: 0,
            seeders: 0,
        }
    }

    /// Tells the registry whether the twin link is up. While it is, a peer id the twin's peers
    /// hold cannot be announced here; while it is down, such a peer may move here.
    pub fn set_twin_linked(&mut self, linked: bool) {
        self.twin_linked = linked;
    }

    /// Handles an announce from local connection `conn`; returns the reply, and pushes the change
    /// for the twin to `sync`.
    pub fn handle_announce(
        &mut self,
        conn: ConnectionId,
        announce: &Announce,
        now: Duration,
        rng: &mut impl Rng,
        sync: &mut Vec<ToTracker>,
    ) -> Result<FromTracker, (ErrorCode, String)> {
        self.check_announce(conn, announce)?;
        if announce.event == AnnounceEvent::Stopped {
            self.remove_local(conn, announce.info_hash, announce.peer_id, sync);
            return Ok(self.peers_reply(announce, rng));
        }
        let record = PeerRecord {
            address: announce.address.clone(),
            complete: announce.left == 0,
            owner: Owner::Local(conn),
            last_seen: now,
        };
        sync.push(ToTracker::SyncPeer(SyncPeer {
            info_hash: announce.info_hash,
            peer: PeerInfo {
                peer_id: announce.peer_id,
                address: record.address.clone(),
                complete: record.complete,
            },
        }));
        self.insert(announce.info_hash, announce.peer_id, record);
        Ok(self.peers_reply(announce, rng))
    }

    /// Whether [`Registry::handle_announce`] would accept `announce` from `conn`, and if not,
    /// why; it changes nothing, so what comes with an announce (its `.mtorrent`) can be checked
    /// against it before anything is stored.
    pub fn check_announce(
        &self,
        conn: ConnectionId,
        announce: &Announce,
    ) -> Result<(), (ErrorCode, String)> {
        if !announce.address.is_valid() {
            return Err((
                ErrorCode::BadAddress,
                "the peer address is not a ws:// URL".into(),
            ));
        }
        self.check_binding(conn, announce.peer_id)?;
        let in_swarms = self.connection_swarms.get(&conn);
        let here = in_swarms.and_then(|swarms| swarms.get(&announce.info_hash));
        // A connection is one peer node: one peer per swarm, so that nobody crowds a swarm's
        // answers with ids of its own.
        if let Some(other) = here.filter(|id| **id != announce.peer_id) {
            return Err((
                ErrorCode::PeerIdTaken,
                format!("this connection is already in the swarm as {other}"),
            ));
        }
        if announce.event != AnnounceEvent::Stopped
            && here.is_none()
            && in_swarms.map_or(0, HashMap::len) >= self.limits.max_swarms_per_connection
        {
            return Err((
                ErrorCode::TooManySwarms,
                format!(
                    "one connection may be in at most {} swarms",
                    self.limits.max_swarms_per_connection
                ),
            ));
        }
        Ok(())
    }

    /// Handles a leave from local connection `conn`.
    pub fn handle_leave(
        &mut self,
        conn: ConnectionId,
        info_hash: InfoHash,
        peer_id: PeerId,
        sync: &mut Vec<ToTracker>,
    ) -> Result<(), (ErrorCode, String)> {
        self.check_binding(conn, peer_id)?;
        self.remove_local(conn, info_hash, peer_id, sync);
        Ok(())
    }

    /// Drops everything connection `conn` registered; called when it closes. The cost is that
    /// connection's own records, whatever else the registry holds.
    pub fn handle_connection_closed(&mut self, conn: ConnectionId, sync: &mut Vec<ToTracker>) {
        let records: Vec<(InfoHash, PeerId)> = self
            .connection_swarms
            .get(&conn)
            .map(|swarms| swarms.iter().map(|(h, p)| (*h, *p)).collect())
            .unwrap_or_default();
        for (info_hash, peer_id) in records {
            self.remove_peer(info_hash, peer_id, sync);
        }
        debug_assert!(!self.connection_swarms.contains_key(&conn));
    }

    /// Drops peers not seen for the peer timeout. Local peers' removals go to `sync`; the twin
    /// expires its own.
    pub fn expire(&mut self, now: Duration, sync: &mut Vec<ToTracker>) {
        let timeout = self.limits.peer_timeout;
        let mut expired = Vec::new();
        for (info_hash, swarm) in &self.swarms {
            for (peer_id, record) in &swarm.peers {
                if now.saturating_sub(record.last_seen) > timeout {
                    expired.push((*info_hash, *peer_id, record.owner));
                }
            }
        }
        for (info_hash, peer_id, owner) in expired {
            match owner {
                Owner::Local(_) => self.remove_peer(info_hash, peer_id, sync),
                Owner::Twin => self.remove_peer(info_hash, peer_id, &mut Vec::new()),
            }
        }
    }

    /// A peer the twin reports as joined or changed. A peer id bound to a live local connection
    /// stays with that connection.
    pub fn apply_twin_peer(&mut self, peer: SyncPeer, now: Duration) {
        if self.bindings.contains_key(&peer.peer.peer_id) {
            return;
        }
        self.insert(
            peer.info_hash,
            peer.peer.peer_id,
            PeerRecord {
                address: peer.peer.address,
                complete: peer.peer.complete,
                owner: Owner::Twin,
                last_seen: now,
            },
        );
    }

    /// A peer the twin reports as gone.
    pub fn apply_twin_removal(&mut self, info_hash: InfoHash, peer_id: PeerId) {
        if self.owner(info_hash, peer_id) == Some(Owner::Twin) {
            self.remove_peer(info_hash, peer_id, &mut Vec::new());
        }
    }

    /// The twin's whole state: replaces every record the twin owned before.
    pub fn replace_twin_state(&mut self, peers: Vec<SyncPeer>, now: Duration) {
        let twin_owned: Vec<(InfoHash, PeerId)> = self
            .swarms
            .iter()
            .flat_map(|(info_hash, swarm)| {
                swarm
                    .peers
                    .iter()
                    .filter(|(_, record)| record.owner == Owner::Twin)
                    .map(|(peer_id, _)| (*info_hash, *peer_id))
            })
            .collect();
        for (info_hash, peer_id) in twin_owned {
            self.remove_peer(info_hash, peer_id, &mut Vec::new());
        }
        for peer in peers {
            self.apply_twin_peer(peer, now);
        }
    }

    /// Every peer this tracker's own connections registered, for the twin.
    pub fn local_state(&self) -> Vec<SyncPeer> {
        let mut peers = Vec::new();
        for (info_hash, swarm) in &self.swarms {
            for (peer_id, record) in &swarm.peers {
                if matches!(record.owner, Owner::Local(_)) {
                    peers.push(SyncPeer {
                        info_hash: *info_hash,
                        peer: PeerInfo {
                            peer_id: *peer_id,
                            address: record.address.clone(),
                            complete: record.complete,
                        },
                    });
                }
            }
        }
        peers
    }

    /// How peer `peer_id` of swarm `info_hash` is reached, if it is there.
    pub fn address(&self, info_hash: InfoHash, peer_id: PeerId) -> Option<&PeerAddress> {
        Some(&self.swarms.get(&info_hash)?.peers.get(&peer_id)?.address)
    }

    /// Who owns peer `peer_id` in swarm `info_hash`, if it is there.
    pub fn owner(&self, info_hash: InfoHash, peer_id: PeerId) -> Option<Owner> {
        Some(self.swarms.get(&info_hash)?.peers.get(&peer_id)?.owner)
    }

    /// Seeders and leechers in one swarm.
    pub fn swarm_counts(&self, info_hash: InfoHash) -> (u32, u32) {
        let Some(swarm) = self.swarms.get(&info_hash) else {
            return (0, 0);
        };
        (swarm.seeders, swarm.peers.len() as u32 - swarm.seeders)
    }

    /// Totals across swarms.
    pub fn counts(&self) -> RegistryCounts {
        RegistryCounts {
            swarms: self.swarms.len(),
            peers: self.peers,
            seeders: self.seeders,
            peer_connections: self.connection_swarms.len(),
        }
    }

    fn check_binding(
        &self,
        conn: ConnectionId,
        peer_id: PeerId,
    ) -> Result<(), (ErrorCode, String)> {
        match self.bindings.get(&peer_id) {
            Some(bound) if bound.conn != conn => Err((
                ErrorCode::PeerIdTaken,
                format!("peer id {peer_id} belongs to another connection"),
            )),
            None if self.twin_linked && self.twin_records.contains_key(&peer_id) => Err((
                ErrorCode::PeerIdTaken,
                format!("peer id {peer_id} belongs to a connection at the twin tracker"),
            )),
            _ => Ok(()),
        }
    }

    /// Removes `conn`'s own record of `peer_id` in `info_hash`, if it has one; a record another
    /// connection or the twin owns stays.
    fn remove_local(
        &mut self,
        conn: ConnectionId,
        info_hash: InfoHash,
        peer_id: PeerId,
        sync: &mut Vec<ToTracker>,
    ) {
        if self.owner(info_hash, peer_id) == Some(Owner::Local(conn)) {
            self.remove_peer(info_hash, peer_id, sync);
        }
    }

    /// Puts `record` in place of whatever `peer_id` had in `info_hash`, keeping every count.
    fn insert(&mut self, info_hash: InfoHash, peer_id: PeerId, record: PeerRecord) {
        self.remove_peer(info_hash, peer_id, &mut Vec::new());
        match record.owner {
            Owner::Local(conn) => {
                let binding = self
                    .bindings
                    .entry(peer_id)
                    .or_insert(Binding { conn, records: 0 });
                debug_assert_eq!(binding.conn, conn);
                binding.records += 1;
                self.connection_swarms
                    .entry(conn)
                    .or_default()
                    .insert(info_hash, peer_id);
            }
            Owner::Twin => *self.twin_records.entry(peer_id).or_default() += 1,
        }
        let swarm = self.swarms.entry(info_hash).or_default();
        swarm.seeders += u32::from(record.complete);
        self.seeders += usize::from(record.complete);
        self.peers += 1;
        swarm.peers.insert(peer_id, record);
    }

    /// Removes `peer_id`'s record in `info_hash`, whoever owns it, keeping every count; a local
    /// peer's removal goes to `sync` for the twin.
    fn remove_peer(&mut self, info_hash: InfoHash, peer_id: PeerId, sync: &mut Vec<ToTracker>) {
        let Some(swarm) = self.swarms.get_mut(&info_hash) else {
            return;
        };
        let Some(record) = swarm.peers.shift_remove(&peer_id) else {
            return;
        };
        swarm.seeders -= u32::from(record.complete);
        if swarm.peers.is_empty() {
            self.swarms.remove(&info_hash);
        }
        self.seeders -= usize::from(record.complete);
        self.peers -= 1;
        match record.owner {
            Owner::Local(conn) => {
                sync.push(ToTracker::SyncPeerRemoved { info_hash, peer_id });
                if let Some(binding) = self.bindings.get_mut(&peer_id) {
                    binding.records -= 1;
                    if binding.records == 0 {
                        self.bindings.remove(&peer_id);
                    }
                }
                if let Some(swarms) = self.connection_swarms.get_mut(&conn) {
                    if swarms.get(&info_hash) == Some(&peer_id) {
                        swarms.remove(&info_hash);
                    }
                    if swarms.is_empty() {
                        self.connection_swarms.remove(&conn);
                    }
                }
            }
            Owner::Twin => {
                if let Some(count) = self.twin_records.get_mut(&peer_id) {
                    *count -= 1;
                    if *count == 0 {
                        self.twin_records.remove(&peer_id);
                    }
                }
            }
        }
    }

    /// A random sample of up to `numwant` peers of the swarm, never the asker.
    fn peers_reply(&self, announce: &Announce, rng: &mut impl Rng) -> FromTracker {
        let (seeders, leechers) = self.swarm_counts(announce.info_hash);
        let numwant = announce.numwant.min(self.limits.max_numwant) as usize;
        let mut peers = Vec::new();
        if let Some(swarm) = self
            .swarms
            .get(&announce.info_hash)
            .map(|swarm| &swarm.peers)
        {
            let others = swarm.len() - usize::from(swarm.contains_key(&announce.peer_id));
            let wanted = numwant.min(others);
            let take = |index: usize, peers: &mut Vec<PeerInfo>| {
                let (peer_id, record) = swarm.get_index(index).expect("index in range");
                if *peer_id != announce.peer_id {
                    peers.push(PeerInfo {
                        peer_id: *peer_id,
                        address: record.address.clone(),
                        complete: record.complete,
                    });
                }
            };
            if wanted * 2 >= swarm.len() {
                // Most of the swarm: a partial Fisher-Yates shuffle of every index.
                let mut indices: Vec<usize> = (0..swarm.len()).collect();
                let mut i = 0;
                while peers.len() < wanted {
                    let j = rng.random_range(i..indices.len());
                    indices.swap(i, j);
                    take(indices[i], &mut peers);
                    i += 1;
                }
            } else {
                // A small part of a large swarm: draw indices until enough distinct ones, so
                // the cost is O(numwant) whatever the swarm's size.
                let mut chosen = HashSet::with_capacity(wanted + 1);
                while peers.len() < wanted {
                    let index = rng.random_range(0..swarm.len());
                    if chosen.insert(index) {
                        take(index, &mut peers);
                    }
                }
            }
        }
        FromTracker::Peers {
            info_hash: announce.info_hash,
            interval_secs: self.limits.interval.as_secs() as u32,
            peers,
            seeders,
            leechers,
        }
    }
}

#[cfg(test)]
mod tests;
