//! Hashing a local file into its piece hashes, on every core, with bounded memory.
//!
//! Workers take piece indices from a shared counter and hash each piece on its own, so the work
//! spreads evenly whatever the file size. Each worker reads the piece it is hashing with one
//! positioned read into its own 512 KiB buffer, so memory stays at `workers × 512 KiB` whatever
//! the file size. (Mapping each piece instead saves the copy out of the page cache but measured
//! no faster here, and a file truncated under a mapping kills the process with SIGBUS.)

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;

use anyhow::{bail, Context, Result};
use mtorrent_shared::{Lengths, PieceHash, ValidPieceIndex, PIECE_SIZE};
use std::os::unix::fs::FileExt;

/// Bytes hashed so far, readable from another thread while hashing runs (for progress display).
pub type Progress = AtomicU64;

/// Hashes every piece of the file at `path`, whose size must be `lengths.total()`.
///
/// `workers` threads run at once (at least one); `progress` counts bytes done.
pub fn hash_file(
    path: &Path,
    lengths: Lengths,
    workers: usize,
    progress: &Progress,
) -> Result<Vec<PieceHash>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = file
        .metadata()
        .with_context(|| format!("cannot read the size of {}", path.display()))?
        .len();
    if size != lengths.total() {
        bail!(
            "{} is {size} bytes, expected {}",
            path.display(),
            lengths.total()
        );
    }
    let next = AtomicU32::new(0);
    let hashes = Mutex::new(vec![PieceHash::default(); lengths.piece_count() as usize]);
    let workers = workers.clamp(1, lengths.piece_count().max(1) as usize);
    thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| scope.spawn(|| hash_worker(&file, lengths, &next, &hashes, progress)))
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("hash worker panicked"))
    })
    .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hashes.into_inner().expect("no worker panicked"))
}

fn hash_worker(
    file: &File,
    lengths: Lengths,
    next: &AtomicU32,
    hashes: &Mutex<Vec<PieceHash>>,
    progress: &Progress,
) -> io::Result<()> {
    let mut done = Vec::new();
    let mut buffer = piece_buffer();
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let Some(piece) = lengths.validate_piece_index(index) else {
            break;
        };
        done.push((piece, hash_piece(file, lengths, piece, &mut buffer)?));
        progress.fetch_add(u64::from(lengths.piece_length(piece)), Ordering::Relaxed);
    }
    let mut hashes = hashes.lock().expect("no worker panicked");
    for (piece, hash) in done {
        hashes[piece.get() as usize] = hash;
    }
    Ok(())
}

/// A buffer that holds any piece, for [`hash_piece`].
pub fn piece_buffer() -> Vec<u8> {
    vec![0; PIECE_SIZE as usize]
}

/// Hashes one piece of `file`, read into `buffer` (from [`piece_buffer`]).
pub fn hash_piece(
    file: &File,
    lengths: Lengths,
    piece: ValidPieceIndex,
    buffer: &mut [u8],
) -> io::Result<PieceHash> {
    let data = &mut buffer[..lengths.piece_length(piece) as usize];
    file.read_exact_at(data, lengths.piece_offset(piece))?;
    Ok(PieceHash::of(data))
}

/// The number of hashing threads to use: one per core.
pub fn default_workers() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mtorrent_shared::PieceHasher;
    use std::io::Write;

    fn write_temp(data: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(data).unwrap();
        file.flush().unwrap();
        file
    }

    #[test]
    fn matches_the_streaming_hasher_for_any_worker_count() {
        let piece = PIECE_SIZE as usize;
        for size in [0, 1, piece - 1, piece, piece + 1, 5 * piece + 12_345] {
            let data: Vec<u8> = (0..size).map(|i| (i * 7 % 256) as u8).collect();
            let file = write_temp(&data);
            let mut streaming = PieceHasher::new();
            streaming.update(&data);
            let expected = streaming.finish().hashes;
            for workers in [1, 2, 3, 8] {
                let progress = Progress::new(0);
                let lengths = Lengths::new(size as u64).unwrap();
                let got = hash_file(file.path(), lengths, workers, &progress).unwrap();
                assert_eq!(got, expected, "size {size}, {workers} workers");
                assert_eq!(progress.load(Ordering::Relaxed), size as u64);
            }
        }
    }

    #[test]
    fn refuses_a_file_of_another_size() {
        let file = write_temp(b"abc");
        let lengths = Lengths::new(4).unwrap();
        let err = hash_file(file.path(), lengths, 2, &Progress::new(0)).unwrap_err();
        assert!(
            format!("{err:#}").contains("is 3 bytes, expected 4"),
            "{err:#}"
        );
    }
}
