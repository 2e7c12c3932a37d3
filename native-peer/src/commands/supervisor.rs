//! Keeps a running node in step with the catalog, which other `mtorrent` processes may change
//! at any time: it serves or downloads the entries whose locks it holds, saves download
//! progress durably, stops what was removed or paused, re-verifies files that changed on disk,
//! and (for `seed`) picks up entries that other commands add or leave behind.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use mtorrent_native_peer::catalog::{Catalog, Entry, EntryState, FileStamp};
use mtorrent_native_peer::locks::{Lock, Locks};
use mtorrent_native_peer::node::{Node, Torrent};
use mtorrent_shared::InfoHash;

use super::peer::prepare_torrent;

/// How often the catalog is checked for changes.
pub const STEP: Duration = Duration::from_millis(500);

/// The entries a node works on, each under its lock.
pub struct Supervisor {
    catalog: Catalog,
    locks: Locks,
    node: Arc<Node>,
    active: HashMap<InfoHash, Active>,
    /// Whether every entry of the catalog is taken up (`seed`), or only those started here.
    whole_catalog: bool,
    /// Entries that could not be started: not retried by this process.
    failed: HashSet<InfoHash>,
    /// Entries another process holds: retried at every step, as it may have ended.
    held_elsewhere: HashSet<InfoHash>,
    data_version: Option<i64>,
}

struct Active {
    torrent: Arc<Torrent>,
    path: PathBuf,
    /// Verified pieces last saved to the catalog, while downloading.
    saved: Option<u32>,
    _lock: Lock,
}

impl Supervisor {
    /// A supervisor of `node`; with `whole_catalog` it takes up every entry it can lock.
    pub fn new(catalog: Catalog, locks: Locks, node: Arc<Node>, whole_catalog: bool) -> Self {
        Self {
            catalog,
            locks,
            node,
            active: HashMap::new(),
            whole_catalog,
            failed: HashSet::new(),
            held_elsewhere: HashSet::new(),
            data_version: None,
        }
    }

    /// Starts serving or downloading `entry`, whose lock the caller took; `fresh` for a
    /// download whose file was just created (nothing on disk to check).
    pub fn start(&mut self, entry: &Entry, lock: Lock, fresh: bool) -> Result<Arc<Torrent>> {
        let torrent = prepare_torrent(&self.catalog, entry, fresh, self.node.peer_id)?;
        let register = torrent.is_complete().then(|| entry.metainfo.to_json());
        self.node.add(torrent.clone(), register);
        let saved = torrent
            .is_downloading()
            .then(|| torrent.watch_progress().borrow().pieces);
        self.active.insert(
            entry.metainfo.info_hash(),
            Active {
                torrent: torrent.clone(),
                path: entry.path.clone(),
                saved,
                _lock: lock,
            },
        );
        Ok(torrent)
    }

    /// One round: saves download progress, re-verifies changed files, stops what left the
    /// catalog and, for the whole catalog, takes up entries no process works on.
    pub fn step(&mut self) -> Result<()> {
        self.save_progress()?;
        self.reverify_changed()?;
        let version = self.catalog.data_version()?;
        let changed = self.data_version != Some(version);
        self.data_version = Some(version);
        if changed && self.whole_catalog {
            // One read of the catalog serves both: what left it, and what to take up.
            let entries = self.catalog.list()?;
            let wanted: HashSet<InfoHash> = entries
                .iter()
                .filter(|entry| entry.state != EntryState::Paused)
                .map(|entry| entry.metainfo.info_hash())
                .collect();
            self.stop_removed(&wanted);
            for info_hash in wanted {
                self.take_up(info_hash)?;
            }
        } else if changed {
            let mut wanted = HashSet::new();
            for info_hash in self.active.keys() {
                if let Some(entry) = self.catalog.get(*info_hash)? {
                    if entry.state != EntryState::Paused {
                        wanted.insert(*info_hash);
                    }
                }
            }
            self.stop_removed(&wanted);
        } else if self.whole_catalog {
            // Nothing changed, but a process that held an entry may have ended.
            let held: Vec<InfoHash> = self.held_elsewhere.iter().copied().collect();
            for info_hash in held {
                self.take_up(info_hash)?;
            }
        }
        Ok(())
    }

    /// Steps until the download of `info_hash` is complete and saved.
    pub async fn run_until_complete(&mut self, info_hash: InfoHash) -> Result<()> {
        let Some(torrent) = self.active.get(&info_hash).map(|a| a.torrent.clone()) else {
            anyhow::bail!("the download is not running");
        };
        let mut progress = torrent.watch_progress();
        loop {
            tokio::task::block_in_place(|| self.step())?;
            let Some(active) = self.active.get(&info_hash) else {
                anyhow::bail!("the download was removed from the catalog");
            };
            if active.saved.is_none() || active.torrent.is_complete() && self.saved(info_hash) {
                return Ok(());
            }
            // Progress is saved every step, not every piece (each save syncs the file and the
            // catalog), but completion is acted on at once.
            let next_step = tokio::time::Instant::now() + STEP;
            loop {
                tokio::select! {
                    changed = progress.changed() => {
                        changed.context("the download stopped")?;
                        if torrent.is_complete() {
                            break;
                        }
                    }
                    () = tokio::time::sleep_until(next_step) => break,
                }
            }
        }
    }

    /// Steps until Ctrl-C or SIGTERM.
    pub async fn run_until_signal(&mut self) -> Result<()> {
        let mut signal = std::pin::pin!(shutdown_signal());
        loop {
            tokio::task::block_in_place(|| self.step())?;
            tokio::select! {
                () = &mut signal => break,
                () = tokio::time::sleep(STEP) => {}
            }
        }
        self.save_progress()?;
        // Closing the tracker connections drops the node from every swarm at once.
        self.node.shutdown();
        // Give the tracker clients a moment to close their connections.
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(())
    }

    fn saved(&self, info_hash: InfoHash) -> bool {
        self.active.get(&info_hash).is_some_and(|active| {
            active.saved == Some(active.torrent.watch_progress().borrow().pieces)
        })
    }

    /// Takes up `info_hash` if no process works on it: locks it, then reads it under the lock
    /// (the process that held it may have changed it).
    fn take_up(&mut self, info_hash: InfoHash) -> Result<()> {
        if self.active.contains_key(&info_hash) || self.failed.contains(&info_hash) {
            return Ok(());
        }
        let Some(lock) = self.locks.entry(info_hash)? else {
            self.held_elsewhere.insert(info_hash);
            return Ok(());
        };
        self.held_elsewhere.remove(&info_hash);
        let Some(entry) = self.catalog.get(info_hash)? else {
            return Ok(());
        };
        if entry.state == EntryState::Paused {
            return Ok(());
        }
        match self.start(&entry, lock, false) {
            Ok(torrent) => {
                let what = if torrent.is_downloading() {
                    "downloading"
                } else {
                    "sharing"
                };
                eprintln!(
                    "{what} {} ({})",
                    entry.metainfo.name(),
                    entry.path.display()
                );
            }
            Err(e) => self.fail(&entry, &e)?,
        }
        Ok(())
    }

    /// Reports that `entry` could not be taken up, marks it failed in the catalog, and leaves
    /// it alone from now on.
    fn fail(&mut self, entry: &Entry, error: &anyhow::Error) -> Result<()> {
        eprintln!("error: {}: {error:#}", entry.path.display());
        let info_hash = entry.metainfo.info_hash();
        self.failed.insert(info_hash);
        self.catalog
            .set_state(info_hash, EntryState::Failed, Some(&format!("{error:#}")))?;
        Ok(())
    }

    /// Saves the verified pieces of every download that made progress, after making the
    /// written data durable; a complete one becomes seeding.
    fn save_progress(&mut self) -> Result<()> {
        for (info_hash, active) in &mut self.active {
            let Some(saved) = active.saved else { continue };
            let pieces = active.torrent.watch_progress().borrow().pieces;
            if pieces == saved {
                continue;
            }
            let storage = &active.torrent.storage;
            storage.sync().context("cannot write to disk")?;
            let stamp = FileStamp::of(&active.path).ok();
            self.catalog
                .save_progress(*info_hash, &active.torrent.have(), stamp)?;
            if active.torrent.is_complete() {
                self.catalog
                    .set_state(*info_hash, EntryState::Seeding, None)?;
            }
            active.saved = Some(pieces);
        }
        Ok(())
    }

    /// Files served as they are that changed on disk are verified again before anything more
    /// is served from them.
    fn reverify_changed(&mut self) -> Result<()> {
        let changed: Vec<InfoHash> = self
            .active
            .iter()
            .filter(|(_, active)| active.torrent.has_changed())
            .map(|(info_hash, _)| *info_hash)
            .collect();
        for info_hash in changed {
            let Some(active) = self.active.remove(&info_hash) else {
                continue;
            };
            self.node.remove(info_hash);
            eprintln!(
                "{} changed on disk: verifying it again",
                active.path.display()
            );
            let Some(entry) = self.catalog.get(info_hash)? else {
                continue;
            };
            let lock = active._lock;
            if let Err(e) = self.start(&entry, lock, false) {
                self.fail(&entry, &e)?;
            }
        }
        Ok(())
    }

    /// Stops the entries not `wanted` any more: removed from the catalog, or paused.
    fn stop_removed(&mut self, wanted: &HashSet<InfoHash>) {
        let gone: Vec<InfoHash> = self
            .active
            .keys()
            .filter(|info_hash| !wanted.contains(info_hash))
            .copied()
            .collect();
        for info_hash in gone {
            if let Some(active) = self.active.remove(&info_hash) {
                self.node.remove(info_hash);
                eprintln!(
                    "stopped {} ({})",
                    active.torrent.metainfo.name(),
                    active.path.display()
                );
            }
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
