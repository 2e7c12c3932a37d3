//! The catalog: every `.mtorrent` registered with this tracker or its twin, kept on disk so it
//! survives restarts.
//!
//! Each document is its own file, `<info hash>.mtorrent`, in the catalog directory, written to a
//! temporary file, synced and renamed into place, so a crash at any moment leaves either the
//! whole document or none. Documents are validated before they are stored and again when they
//! are loaded; a damaged file is skipped with a warning, never served.
//!
//! The catalog is bounded: in total bytes of documents, and in bytes added from one address;
//! a file that no peer has seeded for the configured time is forgotten, on disk too, and its
//! bytes count no more against the address that added it.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use mtorrent_shared::tracker::{FileInfo, FromTracker};
use mtorrent_shared::{InfoHash, Metainfo};

/// The catalog, in memory and (unless it is ephemeral) on disk.
#[derive(Debug)]
pub struct Catalog {
    dir: Option<PathBuf>,
    files: BTreeMap<InfoHash, Entry>,
    limits: CatalogLimits,
    /// Bytes of every document.
    bytes: usize,
    /// Bytes of the documents each address added (and that are still here).
    bytes_by_address: HashMap<IpAddr, usize>,
}

/// How much the catalog keeps.
#[derive(Debug, Clone, Copy)]
pub struct CatalogLimits {
    /// Bytes of documents in all.
    pub max_bytes: usize,
    /// Bytes of documents added from one address.
    pub max_bytes_per_address: usize,
    /// A file no peer has seeded for this long is forgotten.
    pub unseeded_ttl: Duration,
}

impl Default for CatalogLimits {
    fn default() -> Self {
        Self {
            max_bytes: usize::MAX,
            max_bytes_per_address: usize::MAX,
            unseeded_ttl: Duration::MAX,
        }
    }
}

#[derive(Debug)]
struct Entry {
    name: String,
    size: u64,
    document: std::sync::Arc<str>,
    /// The `metainfo` reply carrying `document`, encoded the first time it is asked for and
    /// then shared by every connection it is queued for.
    reply: std::sync::OnceLock<std::sync::Arc<str>>,
    /// The address of the peer that registered it, if a peer did (not the twin, not the disk).
    added_by: Option<IpAddr>,
    /// When a peer last seeded it (or when it came, if none has since), on the tracker's clock.
    last_seeded: Duration,
}

/// Why a document was not added.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    /// The document is not a valid `.mtorrent`.
    #[error("invalid .mtorrent: {0}")]
    Invalid(#[from] mtorrent_shared::MetainfoError),
    /// The document is for another info hash than the announce it came with.
    #[error("the .mtorrent is for {actual}, not {expected}")]
    WrongInfoHash {
        /// The announced info hash.
        expected: InfoHash,
        /// The document's.
        actual: InfoHash,
    },
    /// The catalog holds all the bytes it may.
    #[error("the tracker's catalog is full")]
    CatalogFull,
    /// The address it came from has added all the bytes it may.
    #[error("this address has registered as many .mtorrent bytes as it may ({0} bytes)")]
    AddressQuota(usize),
    /// Writing it to disk failed.
    #[error("cannot store the .mtorrent: {0:#}")]
    Storage(anyhow::Error),
}

impl Catalog {
    /// A catalog kept only in memory.
    pub fn ephemeral() -> Self {
        Self {
            dir: None,
            files: BTreeMap::new(),
            limits: CatalogLimits::default(),
            bytes: 0,
            bytes_by_address: HashMap::new(),
        }
    }

    /// Opens the catalog in `dir`, creating it if needed, and loads every valid document.
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut catalog = Self {
            dir: Some(dir.to_owned()),
            ..Self::ephemeral()
        };
        for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let path = entry?.path();
            if path.extension().is_none_or(|ext| ext != "mtorrent") {
                continue;
            }
            match fs::read(&path)
                .map_err(anyhow::Error::from)
                .and_then(|bytes| {
                    Metainfo::from_json(&bytes)
                        .map(|meta| (meta, String::from_utf8_lossy(&bytes).into_owned()))
                        .map_err(anyhow::Error::from)
                }) {
                Ok((meta, document)) => catalog.insert(&meta, document, None, Duration::ZERO),
                Err(e) => tracing::warn!("skipping {}: {e:#}", path.display()),
            }
        }
        Ok(catalog)
    }

    /// Validates and adds a document; returns its canonical form if it is new, `None` if it
    /// was here already. `expected` is the info hash
    /// it was announced under, if any. Only an exact document is accepted (no field the format
    /// does not define), and what is kept is its canonical form, not the bytes received: no
    /// padding, spacing or other data rides along into the catalog, its disk or the twin.
    ///
    /// `added_by` is the address of the peer that sent it (`None` for the twin, which enforces
    /// its own quotas); `now` is the tracker's clock.
    pub fn add(
        &mut self,
        document: &str,
        expected: Option<InfoHash>,
        added_by: Option<IpAddr>,
        now: Duration,
    ) -> Result<Option<String>, AddError> {
        let meta = Metainfo::from_json_exact(document.as_bytes())?;
        if let Some(expected) = expected.filter(|e| *e != meta.info_hash()) {
            return Err(AddError::WrongInfoHash {
                expected,
                actual: meta.info_hash(),
            });
        }
        if self.files.contains_key(&meta.info_hash()) {
            return Ok(None);
        }
        let document = meta.to_json();
        if self.bytes + document.len() > self.limits.max_bytes {
            return Err(AddError::CatalogFull);
        }
        if let Some(address) = added_by {
            let used = self.bytes_by_address.get(&address).copied().unwrap_or(0);
            if used + document.len() > self.limits.max_bytes_per_address {
                return Err(AddError::AddressQuota(self.limits.max_bytes_per_address));
            }
        }
        if let Some(dir) = &self.dir {
            store(dir, meta.info_hash(), &document).map_err(AddError::Storage)?;
        }
        self.insert(&meta, document.clone(), added_by, now);
        Ok(Some(document))
    }

    /// Sets the limits; documents already kept stay.
    pub fn set_limits(&mut self, limits: CatalogLimits) {
        self.limits = limits;
    }

    /// Forgets every file no peer has seeded for the unseeded time-to-live, on disk too;
    /// `has_seeders` says whether a file's swarm has a seeder now. Returns how many went.
    pub fn expire(&mut self, now: Duration, has_seeders: impl Fn(InfoHash) -> bool) -> usize {
        let ttl = self.limits.unseeded_ttl;
        let mut expired = Vec::new();
        for (info_hash, entry) in &mut self.files {
            if has_seeders(*info_hash) {
                entry.last_seeded = now;
            } else if now.saturating_sub(entry.last_seeded) > ttl {
                expired.push(*info_hash);
            }
        }
        for info_hash in &expired {
            self.remove(*info_hash);
        }
        expired.len()
    }

    fn remove(&mut self, info_hash: InfoHash) {
        let Some(entry) = self.files.remove(&info_hash) else {
            return;
        };
        self.bytes -= entry.document.len();
        if let Some(address) = entry.added_by {
            if let Some(used) = self.bytes_by_address.get_mut(&address) {
                *used -= entry.document.len();
                if *used == 0 {
                    self.bytes_by_address.remove(&address);
                }
            }
        }
        if let Some(dir) = &self.dir {
            let path = dir.join(format!("{info_hash}.mtorrent"));
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!("cannot remove {}: {e}", path.display());
            }
        }
        tracing::info!(
            "forgot {info_hash}: nobody seeded it for {:?}",
            self.limits.unseeded_ttl
        );
    }

    fn insert(
        &mut self,
        meta: &Metainfo,
        document: String,
        added_by: Option<IpAddr>,
        now: Duration,
    ) {
        self.bytes += document.len();
        if let Some(address) = added_by {
            *self.bytes_by_address.entry(address).or_default() += document.len();
        }
        self.files.insert(
            meta.info_hash(),
            Entry {
                name: meta.name().to_owned(),
                size: meta.size(),
                document: document.into(),
                reply: std::sync::OnceLock::new(),
                added_by,
                last_seeded: now,
            },
        );
    }

    /// One document.
    #[cfg(test)]
    pub fn get(&self, info_hash: InfoHash) -> Option<&str> {
        self.files.get(&info_hash).map(|e| &*e.document)
    }

    /// The encoded `metainfo` reply for one document, shared rather than copied per request.
    pub fn metainfo_reply(&self, info_hash: InfoHash) -> Option<std::sync::Arc<str>> {
        let entry = self.files.get(&info_hash)?;
        let reply = entry.reply.get_or_init(|| {
            FromTracker::Metainfo {
                info_hash,
                metainfo: entry.document.to_string(),
            }
            .encode()
            .into()
        });
        Some(reply.clone())
    }

    /// Up to `limit` files after `after` (from the first without), in info hash order, with
    /// swarm counts from `counts`; and where the next page starts, if any file is left.
    pub fn list(
        &self,
        after: Option<InfoHash>,
        limit: usize,
        counts: impl Fn(InfoHash) -> (u32, u32),
    ) -> (Vec<FileInfo>, Option<InfoHash>) {
        use std::ops::Bound;
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut page = self.files.range((start, Bound::Unbounded));
        let files: Vec<FileInfo> = page
            .by_ref()
            .take(limit)
            .map(|(info_hash, entry)| {
                let (seeders, leechers) = counts(*info_hash);
                FileInfo {
                    info_hash: *info_hash,
                    name: entry.name.clone(),
                    size: entry.size,
                    seeders,
                    leechers,
                }
            })
            .collect();
        let next = match (page.next(), files.last()) {
            (Some(_), Some(last)) => Some(last.info_hash),
            _ => None,
        };
        (files, next)
    }

    /// Every document, for the twin: shared, not copied.
    pub fn documents(&self) -> Vec<std::sync::Arc<str>> {
        self.files.values().map(|e| e.document.clone()).collect()
    }

    /// How many files.
    pub fn len(&self) -> usize {
        self.files.len()
    }
}

fn store(dir: &Path, info_hash: InfoHash, document: &str) -> Result<()> {
    let mut temp = tempfile::Builder::new()
        .prefix(".incoming-")
        .tempfile_in(dir)?;
    temp.write_all(document.as_bytes())?;
    temp.as_file().sync_all()?;
    temp.persist(dir.join(format!("{info_hash}.mtorrent")))?;
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtorrent_shared::PieceHasher;

    fn document(name: &str, data: &[u8]) -> (InfoHash, String) {
        let mut hasher = PieceHasher::new();
        hasher.update(data);
        let hashes = hasher.finish();
        let meta = Metainfo::new(
            ["ws://a:1/ws".into(), "ws://b:2/ws".into()],
            name.into(),
            hashes.size,
            hashes.hashes,
        )
        .unwrap();
        (meta.info_hash(), meta.to_json())
    }

    #[test]
    fn documents_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (hash, doc) = document("a.bin", b"hello");
        {
            let mut catalog = Catalog::open(dir.path()).unwrap();
            assert_eq!(
                catalog.add(&doc, Some(hash), None, Duration::ZERO).unwrap(),
                Some(doc.clone())
            );
            assert_eq!(
                catalog.add(&doc, None, None, Duration::ZERO).unwrap(),
                None,
                "second add is not new"
            );
        }
        fs::write(dir.path().join("junk.mtorrent"), b"{not json").unwrap();
        let catalog = Catalog::open(dir.path()).unwrap();
        assert_eq!(catalog.len(), 1);
        assert_eq!(catalog.get(hash), Some(doc.as_str()));
        let (listed, next) = catalog.list(None, 10, |_| (2, 3));
        assert_eq!((listed.len(), next), (1, None));
        assert_eq!((listed[0].name.as_str(), listed[0].size), ("a.bin", 5));
        assert_eq!((listed[0].seeders, listed[0].leechers), (2, 3));
    }

    #[test]
    fn the_list_comes_in_pages_that_cover_every_file_once() {
        let mut catalog = Catalog::ephemeral();
        let mut hashes: Vec<InfoHash> = (0..7u8)
            .map(|i| {
                let (hash, doc) = document(&format!("{i}.bin"), &[i]);
                catalog.add(&doc, None, None, Duration::ZERO).unwrap();
                hash
            })
            .collect();
        hashes.sort();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let (page, next) = catalog.list(after, 3, |_| (0, 0));
            assert!(page.len() <= 3);
            seen.extend(page.iter().map(|file| file.info_hash));
            match next {
                Some(last) => {
                    assert_eq!(
                        Some(&last),
                        seen.last(),
                        "the next page starts after this one"
                    );
                    after = Some(last);
                }
                None => break,
            }
        }
        assert_eq!(seen, hashes);
        // A page that ends exactly at the last file says there is no next one.
        let (page, next) = catalog.list(Some(hashes[3]), 3, |_| (0, 0));
        assert_eq!((page.len(), next), (3, None));
    }

    #[test]
    fn invalid_or_mismatched_documents_are_refused() {
        let mut catalog = Catalog::ephemeral();
        assert!(matches!(
            catalog.add("{}", None, None, Duration::ZERO),
            Err(AddError::Invalid(_))
        ));
        let (_, doc) = document("a.bin", b"hello");
        let (other, _) = document("b.bin", b"world");
        assert!(matches!(
            catalog.add(&doc, Some(other), None, Duration::ZERO),
            Err(AddError::WrongInfoHash { .. })
        ));
        assert_eq!(catalog.len(), 0);
    }

    #[test]
    fn quotas_hold_in_bytes_per_address_and_in_all() {
        let (_, a) = document("a.bin", b"a");
        let (_, b) = document("b.bin", b"b");
        let (_, c) = document("c.bin", b"c");
        let one = a.len();
        let mut catalog = Catalog::ephemeral();
        catalog.set_limits(CatalogLimits {
            max_bytes: 2 * one + one / 2,
            max_bytes_per_address: one + one / 2,
            unseeded_ttl: Duration::MAX,
        });
        let (x, y): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        catalog.add(&a, None, Some(x), Duration::ZERO).unwrap();
        assert!(matches!(
            catalog.add(&b, None, Some(x), Duration::ZERO),
            Err(AddError::AddressQuota(_))
        ));
        catalog.add(&b, None, Some(y), Duration::ZERO).unwrap();
        assert!(matches!(
            catalog.add(&c, None, None, Duration::ZERO),
            Err(AddError::CatalogFull)
        ));
        assert_eq!(catalog.len(), 2);
    }

    #[test]
    fn a_file_nobody_seeds_is_forgotten_with_its_quota_and_its_disk_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (a_hash, a) = document("a.bin", b"a");
        let (b_hash, b) = document("b.bin", b"b");
        let hour = Duration::from_secs(3600);
        let mut catalog = Catalog::open(dir.path()).unwrap();
        catalog.set_limits(CatalogLimits {
            max_bytes: usize::MAX,
            max_bytes_per_address: a.len(),
            unseeded_ttl: 24 * hour,
        });
        let x: IpAddr = "192.0.2.1".parse().unwrap();
        catalog.add(&a, None, Some(x), Duration::ZERO).unwrap();
        catalog.add(&b, None, None, Duration::ZERO).unwrap();
        // b is seeded all along; a is not.
        let seeded = |hash: InfoHash| hash == b_hash;
        assert_eq!(catalog.expire(23 * hour, seeded), 0);
        assert_eq!(catalog.expire(25 * hour, seeded), 1);
        assert_eq!(catalog.len(), 1);
        assert!(catalog.get(a_hash).is_none());
        assert!(!dir.path().join(format!("{a_hash}.mtorrent")).exists());
        // b's clock restarted each time it was seen seeded.
        assert_eq!(catalog.expire(48 * hour, |_| false), 0);
        assert_eq!(catalog.expire(50 * hour, |_| false), 1);
        // x's quota is free again.
        catalog.add(&a, None, Some(x), 50 * hour).unwrap();
        assert_eq!(Catalog::open(dir.path()).unwrap().len(), 1);
    }
}
