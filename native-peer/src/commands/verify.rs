//! `mtorrent verify`: which pieces of a local file match a `.mtorrent`.

use std::fmt::Write as _;
use std::fs::File;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use anyhow::{Context, Result};
use mtorrent_shared::{Metainfo, ValidPieceIndex};

use super::progress::with_progress;
use crate::cli::VerifyArgs;
use crate::hashing;
use crate::output::read_metainfo;

pub fn run(args: VerifyArgs) -> Result<ExitCode> {
    let meta = read_metainfo(&args.mtorrent)?;
    let file =
        File::open(&args.path).with_context(|| format!("cannot open {}", args.path.display()))?;
    let local_size = file
        .metadata()
        .with_context(|| format!("cannot read {}", args.path.display()))?
        .len();
    let lengths = meta.lengths();
    let bad = with_progress("verifying", meta.size(), |progress| {
        mismatched_pieces(&file, &meta, local_size, args.hashing.workers(), progress)
    })
    .with_context(|| format!("cannot read {}", args.path.display()))?;

    let total = lengths.piece_count();
    let good = total - bad.len() as u32;
    let percent = if total == 0 {
        100.0
    } else {
        f64::from(good) * 100.0 / f64::from(total)
    };
    println!("{good}/{total} pieces match ({percent:.1}%)");
    if local_size != meta.size() {
        println!("size: {local_size} bytes on disk, {} expected", meta.size());
    }
    if bad.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    println!("missing or wrong: {}", compact_ranges(&bad));
    Ok(ExitCode::from(1))
}

/// Every piece that is missing from the local file (it is too short) or does not match its hash,
/// in order. Hashed on `workers` threads.
fn mismatched_pieces(
    file: &File,
    meta: &Metainfo,
    local_size: u64,
    workers: usize,
    progress: &AtomicU64,
) -> std::io::Result<Vec<u32>> {
    let lengths = meta.lengths();
    let next = AtomicU32::new(0);
    let bad = Mutex::new(Vec::new());
    let work = || -> std::io::Result<()> {
        let mut buffer = hashing::piece_buffer();
        while let Some(piece) = lengths.validate_piece_index(next.fetch_add(1, Ordering::Relaxed)) {
            if !piece_matches(file, meta, local_size, piece, &mut buffer)? {
                bad.lock().expect("no worker panicked").push(piece.get());
            }
            progress.fetch_add(u64::from(lengths.piece_length(piece)), Ordering::Relaxed);
        }
        Ok(())
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.max(1)).map(|_| scope.spawn(work)).collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("verify worker panicked"))
    })?;
    let mut bad = bad.into_inner().expect("no worker panicked");
    bad.sort_unstable();
    Ok(bad)
}

fn piece_matches(
    file: &File,
    meta: &Metainfo,
    local_size: u64,
    piece: ValidPieceIndex,
    buffer: &mut [u8],
) -> std::io::Result<bool> {
    let lengths = meta.lengths();
    let end = lengths.piece_offset(piece) + u64::from(lengths.piece_length(piece));
    if end > local_size {
        return Ok(false);
    }
    Ok(hashing::hash_piece(file, lengths, piece, buffer)?
        == meta.piece_hashes()[piece.get() as usize])
}

/// Sorted piece indices as ranges: `[3, 4, 5, 7]` → `3-5, 7`.
fn compact_ranges(sorted: &[u32]) -> String {
    let mut text = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end += 1;
        }
        if !text.is_empty() {
            text.push_str(", ");
        }
        if start == end {
            let _ = write!(text, "{start}");
        } else {
            let _ = write!(text, "{start}-{end}");
        }
        i += 1;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::compact_ranges;

    #[test]
    fn compact_ranges_joins_runs() {
        assert_eq!(compact_ranges(&[]), "");
        assert_eq!(compact_ranges(&[4]), "4");
        assert_eq!(compact_ranges(&[3, 4, 5, 7]), "3-5, 7");
        assert_eq!(compact_ranges(&[0, 2, 3, 9, 10, 11]), "0, 2-3, 9-11");
    }
}
