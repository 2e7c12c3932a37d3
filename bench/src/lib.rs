//! Benchmarks that compare mtorrent with standard tools on this machine; one binary each, with
//! the measuring helpers they share here.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// One measured run of a command.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Peak resident set size, KiB.
    pub peak_rss_kib: u64,
}

/// Runs `argv` under `/usr/bin/time`, which reports its peak RSS; the wall time is measured
/// here, to the microsecond (`time` rounds to 10 ms). The command's own output is discarded; a
/// non-zero exit is an error.
pub fn peak_measure(argv: &[&str]) -> Result<Measured> {
    let report = tempfile::NamedTempFile::new()?;
    let start = std::time::Instant::now();
    let status = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(report.path())
        .args(argv)
        .stdout(std::process::Stdio::null())
        .status()
        .context("running /usr/bin/time (Debian package `time`)")?;
    let seconds = start.elapsed().as_secs_f64();
    if !status.success() {
        bail!("{argv:?} failed: {status}");
    }
    let text = std::fs::read_to_string(report.path())?;
    let peak_rss_kib = text
        .trim()
        .parse()
        .with_context(|| format!("unexpected /usr/bin/time output {text:?}"))?;
    Ok(Measured {
        seconds,
        peak_rss_kib,
    })
}

/// The median of some measurements.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Writes `size` pseudo-random bytes (SplitMix64 from `seed`) to `path`.
pub fn generate_file(path: &Path, size: u64, seed: u64) -> Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut state = seed;
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            word.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        out.write_all(&block[..n])?;
        left -= n as u64;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

/// Parses sizes such as `1GiB`, `512MiB`, `64KiB` or a plain number of bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let units = [
        ("GiB", 1u64 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("", 1),
    ];
    for (suffix, scale) in units {
        if let Some(number) = text.strip_suffix(suffix) {
            return number
                .trim()
                .parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(scale))
                .ok_or_else(|| format!("{text:?} is not a size like 1GiB, 512MiB or 1000"));
        }
    }
    unreachable!("the empty suffix always matches")
}

/// A binary of the workspace built in the same profile as the running benchmark.
pub fn sibling_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(name);
    if !path.is_file() {
        bail!(
            "{} is missing: build it first (cargo build --release -p mtorrent-native-peer)",
            path.display()
        );
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_size_reads_units() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("1GB").is_err());
        assert!(parse_size("x").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
    }

    #[test]
    fn median_takes_the_middle_value() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![5.0]), 5.0);
    }

    #[test]
    fn generated_files_have_the_size_asked_and_depend_on_the_seed() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        generate_file(&a, 3 << 20 | 5, 1).unwrap();
        generate_file(&b, 3 << 20 | 5, 2).unwrap();
        let (a, b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
        assert_eq!(a.len(), 3 << 20 | 5);
        assert_ne!(a, b);
    }
}
