//! A file being downloaded or served, accessed by piece and block with positioned reads and
//! writes, so any number of blocks can be read and written at once without a shared cursor.
//!
//! A download keeps its file open. A file served as it is is opened only while it is in use:
//! a node may serve tens of thousands of files, far more than a process may keep open, so
//! served files share a bounded pool of open files ([`MAX_OPEN_SERVED_FILES`]), the least
//! recently read closed first, and each is reopened by path when it is needed again.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use mtorrent_shared::{BlockRef, Lengths, ValidPieceIndex};

use crate::catalog::FileStamp;

/// Most files served as they are that the process keeps open at once.
pub const MAX_OPEN_SERVED_FILES: usize = 256;

/// One file on disk, of the size its `.mtorrent` says.
#[derive(Debug)]
pub struct Storage {
    access: Access,
    lengths: Lengths,
}

#[derive(Debug)]
enum Access {
    /// A download: open for writing for as long as it runs.
    Writable(File),
    /// A file served as it is: read through the pool of open files.
    Served {
        /// Its path, to open it again when the pool closed it.
        path: PathBuf,
        /// Its key in the pool.
        key: u64,
    },
}

impl Storage {
    /// Creates the file for a new download, at its full size (sparse where the filesystem
    /// allows). Refuses to touch a file that already exists: it may be the user's.
    pub fn create_new(path: &Path, lengths: Lengths) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        file.set_len(lengths.total())?;
        Ok(Self {
            access: Access::Writable(file),
            lengths,
        })
    }

    /// Opens an existing file: for writing to resume a download, or read-only to serve it. Its
    /// size must be the expected one.
    pub fn open_existing(path: &Path, lengths: Lengths, writable: bool) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(writable).open(path)?;
        let size = file.metadata()?.len();
        if size != lengths.total() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is {size} bytes, expected {}",
                    path.display(),
                    lengths.total()
                ),
            ));
        }
        let access = if writable {
            Access::Writable(file)
        } else {
            let key = POOL.next_key.fetch_add(1, Ordering::Relaxed);
            POOL.insert(key, Arc::new(file));
            Access::Served {
                path: path.to_owned(),
                key,
            }
        };
        Ok(Self { access, lengths })
    }

    /// Whether blocks may be written (a download), or only read (a file served as it is).
    pub fn is_writable(&self) -> bool {
        matches!(self.access, Access::Writable(_))
    }

    /// The file's size and modification time now: of the open file for a download, of the
    /// file at its path for a file served as it is (which is what will be read next).
    pub fn stamp(&self) -> io::Result<FileStamp> {
        let metadata = match &self.access {
            Access::Writable(file) => file.metadata()?,
            Access::Served { path, .. } => std::fs::metadata(path)?,
        };
        Ok(FileStamp::from_metadata(&metadata))
    }

    /// The file's piece arithmetic.
    pub fn lengths(&self) -> Lengths {
        self.lengths
    }

    /// Reads one block into `buffer` (which must be `block.length` bytes).
    pub fn read_block(&self, block: BlockRef, buffer: &mut [u8]) -> io::Result<()> {
        self.with_file(|file| file.read_exact_at(buffer, self.offset(block)))
    }

    /// Writes one block's bytes (`block.length` of them) in place.
    pub fn write_block(&self, block: BlockRef, data: &[u8]) -> io::Result<()> {
        debug_assert_eq!(data.len(), block.length as usize);
        match &self.access {
            Access::Writable(file) => file.write_all_at(data, self.offset(block)),
            Access::Served { path, .. } => Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} is served as it is, never written", path.display()),
            )),
        }
    }

    /// Reads a whole piece into the start of `buffer` and returns it.
    pub fn read_piece<'a>(
        &self,
        piece: ValidPieceIndex,
        buffer: &'a mut [u8],
    ) -> io::Result<&'a [u8]> {
        let data = &mut buffer[..self.lengths.piece_length(piece) as usize];
        self.with_file(|file| file.read_exact_at(data, self.lengths.piece_offset(piece)))?;
        Ok(data)
    }

    /// Makes everything written so far durable.
    pub fn sync(&self) -> io::Result<()> {
        match &self.access {
            Access::Writable(file) => file.sync_data(),
            Access::Served { .. } => Ok(()),
        }
    }

    fn with_file<T>(&self, f: impl FnOnce(&File) -> io::Result<T>) -> io::Result<T> {
        match &self.access {
            Access::Writable(file) => f(file),
            Access::Served { path, key } => f(POOL.get_or_open(*key, path)?.as_ref()),
        }
    }

    fn offset(&self, block: BlockRef) -> u64 {
        self.lengths.piece_offset(block.piece) + u64::from(block.offset)
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Access::Served { key, .. } = self.access {
            POOL.remove(key);
        }
    }
}

/// The process's open served files.
static POOL: LazyLock<FilePool> = LazyLock::new(|| FilePool::new(MAX_OPEN_SERVED_FILES));

/// A bounded set of open files, by key; the least recently used is closed to make room.
#[derive(Debug)]
struct FilePool {
    capacity: usize,
    next_key: AtomicU64,
    open: Mutex<PoolState>,
}

#[derive(Debug, Default)]
struct PoolState {
    /// Each open file, with the turn it was last used at.
    files: HashMap<u64, (Arc<File>, u64)>,
    turn: u64,
}

impl FilePool {
    fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            next_key: AtomicU64::new(1),
            open: Mutex::new(PoolState::default()),
        }
    }

    /// The open file of `key`, opened (read-only) from `path` if the pool had closed it. The
    /// file is opened outside the pool's lock.
    fn get_or_open(&self, key: u64, path: &Path) -> io::Result<Arc<File>> {
        {
            let mut state = self.lock();
            state.turn += 1;
            let turn = state.turn;
            if let Some((file, used)) = state.files.get_mut(&key) {
                *used = turn;
                return Ok(file.clone());
            }
        }
        let file = Arc::new(File::open(path)?);
        self.insert(key, file.clone());
        Ok(file)
    }

    fn insert(&self, key: u64, file: Arc<File>) {
        let mut state = self.lock();
        state.turn += 1;
        let turn = state.turn;
        state.files.insert(key, (file, turn));
        if state.files.len() > self.capacity {
            // A linear scan over a few hundred entries, only when a file is opened.
            let oldest = state
                .files
                .iter()
                .filter(|(k, _)| **k != key)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                state.files.remove(&oldest);
            }
        }
    }

    fn remove(&self, key: u64) {
        self.lock().files.remove(&key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtorrent_shared::{PieceHash, PIECE_SIZE};

    #[test]
    fn blocks_written_in_any_order_make_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let size = 2 * PIECE_SIZE as usize + 1000;
        let data: Vec<u8> = (0..size).map(|i| (i * 13 % 256) as u8).collect();
        let lengths = Lengths::new(size as u64).unwrap();
        let storage = Storage::create_new(&path, lengths).unwrap();
        let mut blocks: Vec<BlockRef> = lengths.pieces().flat_map(|p| lengths.blocks(p)).collect();
        blocks.reverse();
        for block in &blocks {
            let start = (lengths.piece_offset(block.piece) + u64::from(block.offset)) as usize;
            storage
                .write_block(*block, &data[start..start + block.length as usize])
                .unwrap();
        }
        storage.sync().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
        let mut buffer = vec![0; PIECE_SIZE as usize];
        let last = lengths.validate_piece_index(2).unwrap();
        let piece = storage.read_piece(last, &mut buffer).unwrap();
        assert_eq!(
            PieceHash::of(piece),
            PieceHash::of(&data[2 * PIECE_SIZE as usize..])
        );
        let mut block = vec![0; blocks[0].length as usize];
        storage.read_block(blocks[0], &mut block).unwrap();
        assert_eq!(block, data[size - block.len()..]);
    }

    #[test]
    fn never_overwrites_an_existing_file_and_checks_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.txt");
        std::fs::write(&path, b"precious").unwrap();
        let lengths = Lengths::new(100).unwrap();
        let err = Storage::create_new(&path, lengths).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
        let err = Storage::open_existing(&path, lengths, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(Storage::open_existing(&path, Lengths::new(8).unwrap(), false).is_ok());
    }

    #[test]
    fn served_files_share_a_bounded_pool_and_reopen_when_needed() {
        let dir = tempfile::tempdir().unwrap();
        let pool = FilePool::new(2);
        let paths: Vec<PathBuf> = (0..5u8)
            .map(|i| {
                let path = dir.path().join(format!("{i}.bin"));
                std::fs::write(&path, [i; 10]).unwrap();
                path
            })
            .collect();
        for round in 0..3 {
            for (key, path) in paths.iter().enumerate() {
                let file = pool.get_or_open(key as u64, path).unwrap();
                let mut byte = [0];
                file.read_exact_at(&mut byte, 3).unwrap();
                assert_eq!(byte[0], key as u8, "round {round}");
                assert!(pool.lock().files.len() <= 2);
            }
        }
        // The most recently used stay open.
        let state = pool.lock();
        let mut open: Vec<u64> = state.files.keys().copied().collect();
        open.sort_unstable();
        assert_eq!(open, [3, 4]);
    }

    #[test]
    fn a_served_file_is_read_but_never_written_and_its_stamp_follows_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("served.bin");
        std::fs::write(&path, [7u8; 100]).unwrap();
        let lengths = Lengths::new(100).unwrap();
        let storage = Storage::open_existing(&path, lengths, false).unwrap();
        assert!(!storage.is_writable());
        let block = lengths
            .blocks(lengths.validate_piece_index(0).unwrap())
            .next()
            .unwrap();
        let mut buffer = vec![0; block.length as usize];
        storage.read_block(block, &mut buffer).unwrap();
        assert_eq!(buffer, [7u8; 100]);
        let err = storage.write_block(block, &buffer).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(std::fs::read(&path).unwrap(), [7u8; 100]);
        let before = storage.stamp().unwrap();
        std::fs::write(&path, [8u8; 101]).unwrap();
        assert_ne!(storage.stamp().unwrap(), before, "a changed file shows");
    }
}
