//! The catalog: which local path holds which `.mtorrent`, in what state, and which of its
//! pieces are verified on disk.
//!
//! It lives in an SQLite database in write-ahead-log mode with full synchronisation, so a
//! committed change survives a crash of the process or the machine (`kill -9` included), and
//! several `mtorrent` processes can use the same catalog at once: SQLite serialises writers,
//! and a writer that finds the database busy waits for it (up to [`BUSY_TIMEOUT`]).
//! Every document read back is validated again; a damaged row is reported, never trusted.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mtorrent_shared::{Bitfield, InfoHash, Metainfo};
use rusqlite::{params, Connection, OptionalExtension};

/// How long a write waits for another process's write to finish.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA_VERSION: i64 = 1;

/// Where a download or a shared file stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryState {
    /// Some pieces are still missing.
    Downloading,
    /// Every piece is verified and served.
    Seeding,
    /// Neither downloaded nor served until resumed.
    Paused,
    /// Stopped by an error (see [`Entry::error`]).
    Failed,
}

impl EntryState {
    /// The state's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryState::Downloading => "downloading",
            EntryState::Seeding => "seeding",
            EntryState::Paused => "paused",
            EntryState::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "downloading" => EntryState::Downloading,
            "seeding" => EntryState::Seeding,
            "paused" => EntryState::Paused,
            "failed" => EntryState::Failed,
            _ => return None,
        })
    }
}

/// The size and modification time a file had when its pieces were last verified; if either
/// changed since, the verified pieces must be checked again before they are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
}

impl FileStamp {
    /// The stamp of the file at `path` now.
    pub fn of(path: &Path) -> std::io::Result<Self> {
        Ok(Self::from_metadata(&std::fs::metadata(path)?))
    }

    /// The stamp in a file's metadata.
    pub fn from_metadata(metadata: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            size: metadata.len(),
            mtime_ns: metadata.mtime() * 1_000_000_000 + metadata.mtime_nsec(),
        }
    }
}

/// One file in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its `.mtorrent`.
    pub metainfo: Metainfo,
    /// Where the file is (or is being downloaded to).
    pub path: PathBuf,
    /// Where it stands.
    pub state: EntryState,
    /// Its pieces verified on disk.
    pub verified: Bitfield,
    /// The file as it was when `verified` was last saved.
    pub stamp: Option<FileStamp>,
    /// Why it failed, for [`EntryState::Failed`].
    pub error: Option<String>,
}

/// Why a catalog operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The database could not be opened, read or written.
    #[error("catalog database: {0}")]
    Database(#[from] rusqlite::Error),
    /// The catalog's directory could not be created.
    #[error("cannot create {path}: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database was written by a newer version of mtorrent.
    #[error(
        "the catalog has schema version {0}; this mtorrent understands up to {SCHEMA_VERSION}"
    )]
    NewerSchema(i64),
    /// A stored row does not hold a valid entry.
    #[error("catalog entry {info_hash} is damaged: {reason}")]
    Damaged {
        /// The entry's key, as stored.
        info_hash: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The file is already in the catalog at another path.
    #[error("{info_hash} is already in the catalog, at {}", path.display())]
    AlreadyPresent {
        /// The file.
        info_hash: InfoHash,
        /// Where the catalog has it.
        path: PathBuf,
    },
    /// No entry for this info hash.
    #[error("{0} is not in the catalog")]
    NotFound(InfoHash),
}

/// The catalog database. See the module documentation.
#[derive(Debug)]
pub struct Catalog {
    connection: Connection,
}

impl Catalog {
    /// The default catalog: `$MTORRENT_HOME/catalog.sqlite`, or
    /// `$XDG_DATA_HOME/mtorrent/catalog.sqlite`, or `~/.local/share/mtorrent/catalog.sqlite`.
    pub fn default_path() -> PathBuf {
        let home = std::env::var_os("MTORRENT_HOME")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_DATA_HOME").map(|d| PathBuf::from(d).join("mtorrent"))
            })
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/mtorrent"))
            })
            .unwrap_or_else(|| PathBuf::from(".mtorrent"));
        home.join("catalog.sqlite")
    }

    /// Opens (creating if needed) the catalog database at `path`.
    pub fn open(path: &Path) -> Result<Self, CatalogError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| CatalogError::Directory {
                path: dir.to_owned(),
                source,
            })?;
        }
        let connection = Connection::open(path)?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        let catalog = Self { connection };
        catalog.migrate()?;
        Ok(catalog)
    }

    fn migrate(&self) -> Result<(), CatalogError> {
        let version: i64 = self
            .connection
            .pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(CatalogError::NewerSchema(version));
        }
        if version < 1 {
            self.connection.execute_batch(
                "BEGIN IMMEDIATE;
                 CREATE TABLE IF NOT EXISTS entries (
                     info_hash BLOB PRIMARY KEY,
                     path BLOB NOT NULL,
                     metainfo TEXT NOT NULL,
                     state TEXT NOT NULL,
                     verified BLOB NOT NULL,
                     file_size INTEGER,
                     file_mtime_ns INTEGER,
                     error TEXT
                 );
                 PRAGMA user_version = 1;
                 COMMIT;",
            )?;
        }
        Ok(())
    }

    /// Adds a file. Adding the same file at the same path again replaces the entry; at
    /// another path it is refused.
    pub fn add(&mut self, entry: &Entry) -> Result<(), CatalogError> {
        let info_hash = entry.metainfo.info_hash();
        let tx = self
            .connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let existing: Option<Vec<u8>> = tx
            .query_row(
                "SELECT path FROM entries WHERE info_hash = ?1",
                params![info_hash.as_bytes().as_slice()],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(path) = existing.map(|bytes| path_from_bytes(&bytes)) {
            if path != entry.path {
                return Err(CatalogError::AlreadyPresent { info_hash, path });
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO entries
                 (info_hash, path, metainfo, state, verified, file_size, file_mtime_ns, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                info_hash.as_bytes().as_slice(),
                entry.path.as_os_str().as_bytes(),
                entry.metainfo.to_json(),
                entry.state.as_str(),
                entry.verified.as_bytes(),
                entry.stamp.map(|s| s.size as i64),
                entry.stamp.map(|s| s.mtime_ns),
                entry.error,
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The entry for a file, if any.
    pub fn get(&self, info_hash: InfoHash) -> Result<Option<Entry>, CatalogError> {
        let row = self
            .connection
            .query_row(
                &format!("{SELECT} WHERE info_hash = ?1"),
                params![info_hash.as_bytes().as_slice()],
                RawEntry::from_row,
            )
            .optional()?;
        row.map(RawEntry::into_entry).transpose()
    }

    /// Every entry, in the order they were added.
    pub fn list(&self) -> Result<Vec<Entry>, CatalogError> {
        let mut statement = self
            .connection
            .prepare(&format!("{SELECT} ORDER BY rowid"))?;
        let rows = statement.query_map([], RawEntry::from_row)?;
        rows.map(|row| row?.into_entry()).collect()
    }

    /// A number that changes whenever another connection commits a change to the catalog
    /// (SQLite's `data_version`): a cheap way to notice other processes' changes.
    pub fn data_version(&self) -> Result<i64, CatalogError> {
        Ok(self
            .connection
            .pragma_query_value(None, "data_version", |row| row.get(0))?)
    }

    /// Removes a file's entry; returns whether it was there. The file itself is untouched.
    pub fn remove(&self, info_hash: InfoHash) -> Result<bool, CatalogError> {
        let removed = self.connection.execute(
            "DELETE FROM entries WHERE info_hash = ?1",
            params![info_hash.as_bytes().as_slice()],
        )?;
        Ok(removed > 0)
    }

    /// Records which pieces are verified on disk, and the file's stamp at that moment.
    pub fn save_progress(
        &self,
        info_hash: InfoHash,
        verified: &Bitfield,
        stamp: Option<FileStamp>,
    ) -> Result<(), CatalogError> {
        let changed = self.connection.execute(
            "UPDATE entries SET verified = ?2, file_size = ?3, file_mtime_ns = ?4
             WHERE info_hash = ?1",
            params![
                info_hash.as_bytes().as_slice(),
                verified.as_bytes(),
                stamp.map(|s| s.size as i64),
                stamp.map(|s| s.mtime_ns),
            ],
        )?;
        if changed == 0 {
            return Err(CatalogError::NotFound(info_hash));
        }
        Ok(())
    }

    /// Changes a file's state, with the error that caused [`EntryState::Failed`].
    pub fn set_state(
        &self,
        info_hash: InfoHash,
        state: EntryState,
        error: Option<&str>,
    ) -> Result<(), CatalogError> {
        let changed = self.connection.execute(
            "UPDATE entries SET state = ?2, error = ?3 WHERE info_hash = ?1",
            params![info_hash.as_bytes().as_slice(), state.as_str(), error],
        )?;
        if changed == 0 {
            return Err(CatalogError::NotFound(info_hash));
        }
        Ok(())
    }
}

const SELECT: &str =
    "SELECT info_hash, path, metainfo, state, verified, file_size, file_mtime_ns, error
                      FROM entries";

/// A row as stored, before validation.
struct RawEntry {
    info_hash: Vec<u8>,
    path: Vec<u8>,
    metainfo: String,
    state: String,
    verified: Vec<u8>,
    file_size: Option<i64>,
    file_mtime_ns: Option<i64>,
    error: Option<String>,
}

impl RawEntry {
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            info_hash: row.get(0)?,
            path: row.get(1)?,
            metainfo: row.get(2)?,
            state: row.get(3)?,
            verified: row.get(4)?,
            file_size: row.get(5)?,
            file_mtime_ns: row.get(6)?,
            error: row.get(7)?,
        })
    }

    fn into_entry(self) -> Result<Entry, CatalogError> {
        let damaged = |reason: String| CatalogError::Damaged {
            info_hash: hex_of(&self.info_hash),
            reason,
        };
        let metainfo =
            Metainfo::from_json(self.metainfo.as_bytes()).map_err(|e| damaged(e.to_string()))?;
        if metainfo.info_hash().as_bytes().as_slice() != self.info_hash.as_slice() {
            return Err(damaged("the .mtorrent does not match its key".into()));
        }
        let state = EntryState::parse(&self.state)
            .ok_or_else(|| damaged(format!("unknown state {:?}", self.state)))?;
        let verified = Bitfield::from_wire(&self.verified, metainfo.lengths().piece_count())
            .map_err(|e| damaged(e.to_string()))?;
        let stamp = match (self.file_size, self.file_mtime_ns) {
            (Some(size), Some(mtime_ns)) => Some(FileStamp {
                size: u64::try_from(size).map_err(|_| damaged("negative size".into()))?,
                mtime_ns,
            }),
            _ => None,
        };
        Ok(Entry {
            path: path_from_bytes(&self.path),
            metainfo,
            state,
            verified,
            stamp,
            error: self.error,
        })
    }
}

fn path_from_bytes(bytes: &[u8]) -> PathBuf {
    PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
