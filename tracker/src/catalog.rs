//! The catalog: every `.mtorrent` registered with this tracker or its twin, kept on disk so it
//! survives restarts.
//!
//! Each document is its own file, `<info hash>.mtorrent`, in the catalog directory, written to a
//! temporary file, synced and renamed into place, so a crash at any moment leaves either the
//! whole document or none. Documents are validated before they are stored and again when they
//! are loaded; a damaged file is skipped with a warning, never served.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mtorrent_shared::tracker::{FileInfo, FromTracker};
use mtorrent_shared::{InfoHash, Metainfo};

/// The catalog, in memory and (unless it is ephemeral) on disk.
#[derive(Debug)]
pub struct Catalog {
    dir: Option<PathBuf>,
    files: BTreeMap<InfoHash, Entry>,
}

#[derive(Debug)]
struct Entry {
    name: String,
    size: u64,
    document: String,
    /// The `metainfo` reply carrying `document`, encoded the first time it is asked for and
    /// then shared by every connection it is queued for.
    reply: std::sync::OnceLock<std::sync::Arc<str>>,
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
        }
    }

    /// Opens the catalog in `dir`, creating it if needed, and loads every valid document.
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut catalog = Self {
            dir: Some(dir.to_owned()),
            files: BTreeMap::new(),
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
                Ok((meta, document)) => catalog.insert(&meta, document),
                Err(e) => tracing::warn!("skipping {}: {e:#}", path.display()),
            }
        }
        Ok(catalog)
    }

    /// Validates and adds a document; returns whether it is new. `expected` is the info hash
    /// it was announced under, if any. Only an exact document is accepted (no field the format
    /// does not define), and what is kept is its canonical form, not the bytes received: no
    /// padding, spacing or other data rides along into the catalog, its disk or the twin.
    pub fn add(&mut self, document: &str, expected: Option<InfoHash>) -> Result<bool, AddError> {
        let meta = Metainfo::from_json_exact(document.as_bytes())?;
        if let Some(expected) = expected.filter(|e| *e != meta.info_hash()) {
            return Err(AddError::WrongInfoHash {
                expected,
                actual: meta.info_hash(),
            });
        }
        if self.files.contains_key(&meta.info_hash()) {
            return Ok(false);
        }
        let document = meta.to_json();
        if let Some(dir) = &self.dir {
            store(dir, meta.info_hash(), &document).map_err(AddError::Storage)?;
        }
        self.insert(&meta, document);
        Ok(true)
    }

    fn insert(&mut self, meta: &Metainfo, document: String) {
        self.files.insert(
            meta.info_hash(),
            Entry {
                name: meta.name().to_owned(),
                size: meta.size(),
                document,
                reply: std::sync::OnceLock::new(),
            },
        );
    }

    /// One document.
    #[cfg(test)]
    pub fn get(&self, info_hash: InfoHash) -> Option<&str> {
        self.files.get(&info_hash).map(|e| e.document.as_str())
    }

    /// The encoded `metainfo` reply for one document, shared rather than copied per request.
    pub fn metainfo_reply(&self, info_hash: InfoHash) -> Option<std::sync::Arc<str>> {
        let entry = self.files.get(&info_hash)?;
        let reply = entry.reply.get_or_init(|| {
            FromTracker::Metainfo {
                info_hash,
                metainfo: entry.document.clone(),
            }
            .encode()
            .into()
        });
        Some(reply.clone())
    }

    /// Every file, with swarm counts from `counts`.
    pub fn list(&self, counts: impl Fn(InfoHash) -> (u32, u32)) -> Vec<FileInfo> {
        self.files
            .iter()
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
            .collect()
    }

    /// Every document, for the twin.
    pub fn documents(&self) -> Vec<String> {
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
            assert!(catalog.add(&doc, Some(hash)).unwrap());
            assert!(!catalog.add(&doc, None).unwrap(), "second add is not new");
        }
        fs::write(dir.path().join("junk.mtorrent"), b"{not json").unwrap();
        let catalog = Catalog::open(dir.path()).unwrap();
        assert_eq!(catalog.len(), 1);
        assert_eq!(catalog.get(hash), Some(doc.as_str()));
        let listed = catalog.list(|_| (2, 3));
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].name.as_str(), listed[0].size), ("a.bin", 5));
        assert_eq!((listed[0].seeders, listed[0].leechers), (2, 3));
    }

    #[test]
    fn invalid_or_mismatched_documents_are_refused() {
        let mut catalog = Catalog::ephemeral();
        assert!(matches!(catalog.add("{}", None), Err(AddError::Invalid(_))));
        let (_, doc) = document("a.bin", b"hello");
        let (other, _) = document("b.bin", b"world");
        assert!(matches!(
            catalog.add(&doc, Some(other)),
            Err(AddError::WrongInfoHash { .. })
        ));
        assert_eq!(catalog.len(), 0);
    }
}
