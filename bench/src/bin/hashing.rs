//! Hashing benchmark: `mtorrent create` next to `sha1sum` and `openssl dgst -sha1` on the same
//! generated file, in the same run.
//!
//! `cargo run --release -p mtorrent-bench --bin hashing [-- --size 1GiB --runs 5]`
//!
//! Each tool runs `--runs` times under `/usr/bin/time`; the table shows the median wall time and
//! the largest peak RSS seen. The file is read once beforehand so every tool finds it in the page
//! cache (dropping the cache needs root and measures the disk, not the hashing).

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use mtorrent_bench::{generate_file, median, parse_size, peak_measure, Measured};

/// Command-line options.
#[derive(Debug, Parser)]
struct Options {
    /// Size of the generated file (e.g. 1GiB, 512MiB, 4GiB).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    size: u64,
    /// Runs per tool.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Directory for the generated file [default: the system's temporary directory].
    #[arg(long)]
    dir: Option<PathBuf>,
}

struct Row {
    tool: &'static str,
    seconds: f64,
    peak_rss_kib: u64,
}

fn main() -> Result<()> {
    let options = Options::parse();
    ensure!(options.runs > 0, "--runs must be at least 1");
    let dir = tempfile::Builder::new()
        .prefix("mtorrent-bench-")
        .tempdir_in(options.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    let file = dir.path().join("data.bin");
    eprintln!(
        "generating {} bytes of random data in {}",
        options.size,
        file.display()
    );
    generate_file(&file, options.size, 0x5eed)?;
    std::fs::read(&file)
        .map(drop)
        .context("warming the page cache")?;

    let mtorrent = mtorrent_bench::sibling_binary("mtorrent")?;
    let out = dir.path().join("data.bin.mtorrent");
    let file_arg = file.to_str().context("temporary path is UTF-8")?;
    let out_arg = out.to_str().context("temporary path is UTF-8")?;
    let tools: [(&'static str, Vec<&str>); 3] = [
        (
            "mtorrent create",
            vec![
                mtorrent.to_str().context("binary path is UTF-8")?,
                "create",
                file_arg,
                "--tracker",
                "ws://127.0.0.1:7001/ws",
                "--tracker",
                "ws://127.0.0.1:7002/ws",
                "--force",
                "-o",
                out_arg,
            ],
        ),
        ("sha1sum", vec!["sha1sum", file_arg]),
        (
            "openssl dgst -sha1",
            vec!["openssl", "dgst", "-sha1", file_arg],
        ),
    ];
    let mut rows = Vec::new();
    for (tool, argv) in &tools {
        let runs: Vec<Measured> = (0..options.runs)
            .map(|_| peak_measure(argv))
            .collect::<Result<_>>()
            .with_context(|| format!("running {tool}"))?;
        rows.push(Row {
            tool,
            seconds: median(runs.iter().map(|r| r.seconds).collect()),
            peak_rss_kib: runs.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0),
        });
    }
    check_output(&out)?;
    print_table(&rows, options.size);
    Ok(())
}

/// The benchmark only counts if `mtorrent create` produced a valid document.
fn check_output(out: &Path) -> Result<()> {
    let document = std::fs::read(out).context("reading the .mtorrent written")?;
    if let Err(e) = mtorrent_shared::Metainfo::from_json(&document) {
        bail!("mtorrent create wrote an invalid .mtorrent: {e}");
    }
    Ok(())
}

fn print_table(rows: &[Row], size: u64) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let openssl = rows[2].seconds;
    let sha1sum = rows[1].seconds;
    println!(
        "file: {size} bytes ({:.2} GiB), page cache warm, {cores} cores",
        size as f64 / (1u64 << 30) as f64
    );
    println!(
        "{:<20} {:>9} {:>10} {:>14} {:>12} {:>12}",
        "tool", "seconds", "MB/s", "peak RSS MiB", "vs openssl", "vs sha1sum"
    );
    for row in rows {
        println!(
            "{:<20} {:>9.3} {:>10.0} {:>14.1} {:>11.2}x {:>11.2}x",
            row.tool,
            row.seconds,
            size as f64 / row.seconds / 1e6,
            row.peak_rss_kib as f64 / 1024.0,
            openssl / row.seconds,
            sha1sum / row.seconds,
        );
    }
    let ours = &rows[0];
    let speedup = openssl / ours.seconds;
    let rss_mib = ours.peak_rss_kib as f64 / 1024.0;
    println!(
        "target: mtorrent create >= 2.00x openssl: {:.2}x {}",
        speedup,
        if speedup >= 2.0 { "MET" } else { "NOT MET" }
    );
    println!(
        "target: peak RSS < 64 MiB: {rss_mib:.1} MiB {}",
        if rss_mib < 64.0 { "MET" } else { "NOT MET" }
    );
}
