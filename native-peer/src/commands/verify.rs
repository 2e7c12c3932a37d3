//! `mtorrent verify`: which pieces of a local file match a `.mtorrent`.

use std::fmt::Write as _;
use std::fs::File;
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::{Context, Result};

use super::progress::with_progress;
use crate::cli::VerifyArgs;
use crate::output::read_metainfo;
use mtorrent_native_peer::hashing::{self, PieceResult};

pub fn run(args: VerifyArgs) -> Result<ExitCode> {
    let meta = read_metainfo(&args.mtorrent)?;
    let file =
        File::open(&args.path).with_context(|| format!("cannot open {}", args.path.display()))?;
    let local_size = file
        .metadata()
        .with_context(|| format!("cannot read {}", args.path.display()))?
        .len();
    let lengths = meta.lengths();
    let bad = Mutex::new(Vec::new());
    with_progress("verifying", meta.size(), |progress| {
        hashing::hash_pieces(
            &file,
            lengths,
            local_size,
            args.hashing.workers(),
            progress,
            &|piece, result| {
                let expected = meta.piece_hashes()[piece.get() as usize];
                if result != PieceResult::Hashed(expected) {
                    bad.lock().expect("no worker panicked").push(piece.get());
                }
            },
        )
    })
    .with_context(|| format!("cannot read {}", args.path.display()))?;
    let mut bad = bad.into_inner().expect("no worker panicked");
    bad.sort_unstable();

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
