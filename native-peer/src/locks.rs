//! Advisory locks that let several `mtorrent` processes share one catalog: a process works on a
//! catalog entry (downloads or serves it) only while it holds that entry's lock, and the
//! long-running `seed` holds the catalog's seed lock, so one-shot commands can hand it work.
//! The operating system releases a lock when its holder dies, even by `kill -9`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use mtorrent_shared::InfoHash;

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Where a catalog's locks live: a directory beside the database.
#[derive(Debug, Clone)]
pub struct Locks {
    dir: PathBuf,
}

impl Locks {
    /// The locks of the catalog at `catalog`.
    pub fn for_catalog(catalog: &Path) -> Self {
        let mut dir = catalog.as_os_str().to_owned();
        dir.push(".locks");
        Self { dir: dir.into() }
    }

    /// The lock of one entry: held by whichever process downloads or serves it.
    pub fn entry(&self, info_hash: InfoHash) -> std::io::Result<Option<Lock>> {
        self.try_lock(&format!("{info_hash}.lock"))
    }

    /// The seed lock: held by the running `mtorrent seed` (or a `share` that seeds itself).
    pub fn seed(&self) -> std::io::Result<Option<Lock>> {
        self.try_lock("seed.lock")
    }

    /// The process id written in an entry's lock, if a live process holds it.
    pub fn entry_holder(&self, info_hash: InfoHash) -> Option<u32> {
        self.holder(&format!("{info_hash}.lock"))
    }

    /// The process id of the running seed, if one holds the seed lock.
    pub fn seed_holder(&self) -> Option<u32> {
        self.holder("seed.lock")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Takes the lock `name` without waiting, writing our process id in it; `None` if another
    /// process holds it.
    fn try_lock(&self, name: &str) -> std::io::Result<Option<Lock>> {
        std::fs::create_dir_all(&self.dir)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.path(name))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(e),
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        Ok(Some(Lock { _file: file }))
    }

    fn holder(&self, name: &str) -> Option<u32> {
        let mut file = File::open(self.path(name)).ok()?;
        match file.try_lock_shared() {
            // Nobody holds it: the id in it is stale.
            Ok(()) => None,
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                file.read_to_string(&mut text).ok()?;
                text.trim().parse().ok()
            }
            Err(TryLockError::Error(_)) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_exclusive_until_dropped_and_names_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let locks = Locks::for_catalog(&dir.path().join("catalog.sqlite"));
        let hash = InfoHash([7; 20]);
        assert_eq!(locks.entry_holder(hash), None);
        let held = locks.entry(hash).unwrap().expect("free");
        assert!(locks.entry(hash).unwrap().is_none(), "held elsewhere");
        assert_eq!(locks.entry_holder(hash), Some(std::process::id()));
        assert!(locks.entry(InfoHash([8; 20])).unwrap().is_some());
        drop(held);
        assert_eq!(locks.entry_holder(hash), None);
        assert!(locks.entry(hash).unwrap().is_some());
        let seed = locks.seed().unwrap().expect("free");
        assert_eq!(locks.seed_holder(), Some(std::process::id()));
        drop(seed);
        assert_eq!(locks.seed_holder(), None);
    }
}
