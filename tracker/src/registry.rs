//! The swarm registry: which peers are in which swarm, who owns each peer id, and when each was
//! last seen. Plain data with `handle_*` methods; the clock (`now`, time since the tracker
//! started) and the random source are passed in, and changes the twin must hear about are pushed
//! to an output `Vec`, so everything here is deterministic and tested without sockets.
//!
//! Every peer record has an [`Owner`]: a connection of this tracker, or the twin. Only the owning
//! connection may announce or leave for a peer id; records the twin told us about are replaced
//! wholesale when the twin sends its full state, and expire like any other when not refreshed.

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

/// Every swarm this tracker knows.
#[derive(Debug)]
pub struct Registry {
    limits: RegistryLimits,
    swarms: HashMap<InfoHash, IndexMap<PeerId, PeerRecord>>,
    /// Which swarms each local connection is in, to clean up when it closes.
    connection_swarms: HashMap<ConnectionId, HashSet<(InfoHash, PeerId)>>,
    /// The connection a peer id is bound to, once it announced through it.
    bindings: HashMap<PeerId, ConnectionId>,
}

impl Registry {
    /// An empty registry.
    pub fn new(limits: RegistryLimits) -> Self {
        Self {
            limits,
            swarms: HashMap::new(),
            connection_swarms: HashMap::new(),
            bindings: HashMap::new(),
        }
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
        if !announce.address.is_valid() {
            return Err((
                ErrorCode::BadAddress,
                "the peer address is not a ws:// URL".into(),
            ));
        }
        self.check_binding(conn, announce.peer_id)?;
        let key = (announce.info_hash, announce.peer_id);
        let swarms_of_conn = self.connection_swarms.entry(conn).or_default();
        if announce.event == AnnounceEvent::Stopped {
            swarms_of_conn.remove(&key);
            self.remove_peer(announce.info_hash, announce.peer_id, sync);
            return Ok(self.peers_reply(announce, rng));
        }
        if !swarms_of_conn.contains(&key)
            && swarms_of_conn.len() >= self.limits.max_swarms_per_connection
        {
            return Err((
                ErrorCode::TooManySwarms,
                format!(
                    "one connection may be in at most {} swarms",
                    self.limits.max_swarms_per_connection
                ),
            ));
        }
        swarms_of_conn.insert(key);
        self.bindings.insert(announce.peer_id, conn);
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
        self.swarms
            .entry(announce.info_hash)
            .or_default()
            .insert(announce.peer_id, record);
        Ok(self.peers_reply(announce, rng))
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
        if let Some(swarms) = self.connection_swarms.get_mut(&conn) {
            swarms.remove(&(info_hash, peer_id));
        }
        self.remove_peer(info_hash, peer_id, sync);
        Ok(())
    }

    /// Drops everything connection `conn` registered; called when it closes.
    pub fn handle_connection_closed(&mut self, conn: ConnectionId, sync: &mut Vec<ToTracker>) {
        for (info_hash, peer_id) in self.connection_swarms.remove(&conn).unwrap_or_default() {
            self.remove_peer(info_hash, peer_id, sync);
        }
        self.bindings.retain(|_, bound| *bound != conn);
    }

    /// Drops peers not seen for the peer timeout. Local peers' removals go to `sync`; the twin
    /// expires its own.
    pub fn expire(&mut self, now: Duration, sync: &mut Vec<ToTracker>) {
        let timeout = self.limits.peer_timeout;
        let mut expired = Vec::new();
        for (info_hash, peers) in &self.swarms {
            for (peer_id, record) in peers {
                if now.saturating_sub(record.last_seen) > timeout {
                    expired.push((*info_hash, *peer_id, record.owner));
                }
            }
        }
        for (info_hash, peer_id, owner) in expired {
            if let Owner::Local(conn) = owner {
                if let Some(swarms) = self.connection_swarms.get_mut(&conn) {
                    swarms.remove(&(info_hash, peer_id));
                }
                self.remove_peer(info_hash, peer_id, sync);
            } else {
                self.remove_peer(info_hash, peer_id, &mut Vec::new());
            }
        }
    }

    /// A peer the twin reports as joined or changed. A peer id bound to a live local connection
    /// stays with that connection.
    pub fn apply_twin_peer(&mut self, peer: SyncPeer, now: Duration) {
        let swarm = self.swarms.entry(peer.info_hash).or_default();
        if let Some(existing) = swarm.get(&peer.peer.peer_id) {
            if matches!(existing.owner, Owner::Local(_)) {
                return;
            }
        }
        swarm.insert(
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
        if let Some(swarm) = self.swarms.get_mut(&info_hash) {
            if swarm.get(&peer_id).is_some_and(|r| r.owner == Owner::Twin) {
                swarm.shift_remove(&peer_id);
                if swarm.is_empty() {
                    self.swarms.remove(&info_hash);
                }
            }
        }
    }

    /// The twin's whole state: replaces every record the twin owned before.
    pub fn replace_twin_state(&mut self, peers: Vec<SyncPeer>, now: Duration) {
        for swarm in self.swarms.values_mut() {
            swarm.retain(|_, record| record.owner != Owner::Twin);
        }
        self.swarms.retain(|_, swarm| !swarm.is_empty());
        for peer in peers {
            self.apply_twin_peer(peer, now);
        }
    }

    /// Every peer this tracker's own connections registered, for the twin.
    pub fn local_state(&self) -> Vec<SyncPeer> {
        let mut peers = Vec::new();
        for (info_hash, swarm) in &self.swarms {
            for (peer_id, record) in swarm {
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
        Some(&self.swarms.get(&info_hash)?.get(&peer_id)?.address)
    }

    /// Who owns peer `peer_id` in swarm `info_hash`, if it is there.
    pub fn owner(&self, info_hash: InfoHash, peer_id: PeerId) -> Option<Owner> {
        Some(self.swarms.get(&info_hash)?.get(&peer_id)?.owner)
    }

    /// Seeders and leechers in one swarm.
    pub fn swarm_counts(&self, info_hash: InfoHash) -> (u32, u32) {
        let Some(swarm) = self.swarms.get(&info_hash) else {
            return (0, 0);
        };
        let seeders = swarm.values().filter(|r| r.complete).count() as u32;
        (seeders, swarm.len() as u32 - seeders)
    }

    /// Totals across swarms.
    pub fn counts(&self) -> RegistryCounts {
        let mut counts = RegistryCounts {
            swarms: self.swarms.len(),
            peer_connections: self
                .connection_swarms
                .values()
                .filter(|swarms| !swarms.is_empty())
                .count(),
            ..RegistryCounts::default()
        };
        for swarm in self.swarms.values() {
            counts.peers += swarm.len();
            counts.seeders += swarm.values().filter(|r| r.complete).count();
        }
        counts
    }

    fn check_binding(
        &self,
        conn: ConnectionId,
        peer_id: PeerId,
    ) -> Result<(), (ErrorCode, String)> {
        match self.bindings.get(&peer_id) {
            Some(bound) if *bound != conn => Err((
                ErrorCode::PeerIdTaken,
                format!("peer id {peer_id} belongs to another connection"),
            )),
            _ => Ok(()),
        }
    }

    fn remove_peer(&mut self, info_hash: InfoHash, peer_id: PeerId, sync: &mut Vec<ToTracker>) {
        let Some(swarm) = self.swarms.get_mut(&info_hash) else {
            return;
        };
        if swarm.shift_remove(&peer_id).is_some() {
            sync.push(ToTracker::SyncPeerRemoved { info_hash, peer_id });
        }
        if swarm.is_empty() {
            self.swarms.remove(&info_hash);
        }
    }

    /// A random sample of up to `numwant` peers of the swarm, never the asker.
    fn peers_reply(&self, announce: &Announce, rng: &mut impl Rng) -> FromTracker {
        let (seeders, leechers) = self.swarm_counts(announce.info_hash);
        let numwant = announce.numwant.min(self.limits.max_numwant) as usize;
        let mut peers = Vec::new();
        if let Some(swarm) = self.swarms.get(&announce.info_hash) {
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
