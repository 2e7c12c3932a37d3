//! One node serving a whole library: a catalog of many small generated files, one
//! `mtorrent seed` serving them all, then many concurrent `mtorrent get`s of different files
//! from it. Prints the time until every file is announced, the seed's memory, its tracker
//! connections, and the time for all the gets to finish.
//!
//! ```text
//! cargo build --release && cargo run --release -p mtorrent-bench --bin library
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use mtorrent_e2e::process::Process;
use mtorrent_e2e::swarm::Trackers;
use mtorrent_e2e::{bin_path, random_bytes, tracker_stats};
use mtorrent_native_peer::catalog::{Catalog, Entry, EntryState, FileStamp};
use mtorrent_shared::{Bitfield, Metainfo, PieceHasher};

/// A library of many small files served by one node.
#[derive(Debug, Parser)]
struct Options {
    /// Files in the node's catalog.
    #[arg(long, default_value_t = 10_000)]
    files: usize,
    /// Concurrent `mtorrent get`s, each of a different file.
    #[arg(long, default_value_t = 200)]
    gets: usize,
    /// Keep the working directory (logs, catalog) and print where it is.
    #[arg(long)]
    keep: bool,
}

fn main() -> Result<()> {
    let options = Options::parse();
    ensure!(options.files > 0, "--files must be at least 1");
    ensure!(
        options.gets <= options.files,
        "--gets cannot exceed --files"
    );
    rlimit::increase_nofile_limit(u64::MAX).context("cannot raise the open file limit")?;
    let dir = tempfile::Builder::new()
        .prefix("mtorrent-library-")
        .tempdir()?;
    let root = dir.path();
    let trackers = Trackers::start_logging_in(root);
    let urls = [trackers.one.ws_url(), trackers.two.ws_url()];

    eprintln!(
        "generating {} files and their catalog entries…",
        options.files
    );
    let library = generate_library(root, &urls, options.files)?;

    eprintln!("starting mtorrent seed…");
    let catalog = root.join("library/catalog.sqlite");
    let started = Instant::now();
    let seed = Process::start(
        "mtorrent",
        ["seed".as_ref(), "--catalog".as_ref(), catalog.as_os_str()],
        &root.join("seed.log"),
    );
    let mut last_report = Instant::now();
    wait_for("every file announced", Duration::from_secs(300), || {
        let swarms = tracker_stats(trackers.one.addr())["swarms"].as_u64();
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("  {swarms:?} announced after {:.0?}", started.elapsed());
            last_report = Instant::now();
        }
        Ok(swarms == Some(options.files as u64))
    })?;
    let announced = started.elapsed();
    let rss_announced = rss_kib(seed.id(), "VmRSS")?;
    let connections = tracker_stats(trackers.one.addr())["peer_connections"]
        .as_u64()
        .unwrap_or(0)
        + tracker_stats(trackers.two.addr())["peer_connections"]
            .as_u64()
            .unwrap_or(0);

    eprintln!("{} concurrent gets…", options.gets);
    let step = options.files / options.gets.max(1);
    let chosen: Vec<&Shared> = library
        .iter()
        .step_by(step.max(1))
        .take(options.gets)
        .collect();
    let gets_took = run_gets(root, &chosen)?;
    let rss_peak = rss_kib(seed.id(), "VmHWM")?;
    let log = seed.log();
    ensure!(
        !log.contains("refused"),
        "the tracker refused the seed: {log}"
    );

    let bytes: u64 = library.iter().map(|s| s.data_len).sum();
    println!();
    println!(
        "one node serving {} files ({:.1} MiB in all, 1 to 64 KiB each); {} concurrent gets",
        options.files,
        bytes as f64 / f64::from(1 << 20),
        options.gets
    );
    println!("| what | figure | target |");
    println!("|---|---|---|");
    println!(
        "| seed start until every file is announced | {:.1} s | ≤ 30 s |",
        announced.as_secs_f64()
    );
    println!(
        "| seed RSS, every file announced | {:.1} MiB | < 150 MiB |",
        rss_announced as f64 / 1024.0
    );
    println!(
        "| seed peak RSS, after the gets | {:.1} MiB | < 150 MiB |",
        rss_peak as f64 / 1024.0
    );
    println!("| seed's tracker connections (both trackers) | {connections} | ≤ 2 |");
    println!(
        "| {} concurrent gets of different files, all verified | {:.1} s | ≤ 60 s |",
        options.gets,
        gets_took.as_secs_f64()
    );
    if options.keep {
        println!("kept {}", dir.keep().display());
    }
    Ok(())
}

/// One file of the library.
struct Shared {
    name: String,
    mtorrent: PathBuf,
    data_len: u64,
    seed: u64,
}

/// Writes `count` files of 1 to 64 KiB under `root/library/`, their `.mtorrent`s under
/// `root/mtorrents/`, and a catalog in which the seed finds them all, verified.
fn generate_library(root: &Path, trackers: &[String; 2], count: usize) -> Result<Vec<Shared>> {
    let files = root.join("library");
    let mtorrents = root.join("mtorrents");
    std::fs::create_dir_all(&files)?;
    std::fs::create_dir_all(&mtorrents)?;
    let mut catalog = Catalog::open(&files.join("catalog.sqlite"))?;
    let mut library = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("file-{i:05}.bin");
        let size = 1024 + (i * 7_919) % (63 * 1024);
        let seed = i as u64 + 1;
        let data = random_bytes(size, seed);
        let path = files.join(&name);
        std::fs::write(&path, &data)?;
        let mut hasher = PieceHasher::new();
        hasher.update(&data);
        let hashes = hasher.finish();
        let metainfo = Metainfo::new(trackers.clone(), name.clone(), hashes.size, hashes.hashes)?;
        let mtorrent = mtorrents.join(format!("{name}.mtorrent"));
        std::fs::write(&mtorrent, metainfo.to_json())?;
        catalog.add(&Entry {
            verified: Bitfield::full(metainfo.lengths().piece_count()),
            metainfo,
            stamp: Some(FileStamp::of(&path)?),
            path,
            state: EntryState::Seeding,
            error: None,
        })?;
        library.push(Shared {
            name,
            mtorrent,
            data_len: size as u64,
            seed,
        });
    }
    Ok(library)
}

/// Runs one `mtorrent get` per file, all at once, each with its own directory and catalog;
/// returns the time until the last one finished, once every file is checked.
fn run_gets(root: &Path, files: &[&Shared]) -> Result<Duration> {
    let mtorrent = bin_path("mtorrent");
    let started = Instant::now();
    let mut children: Vec<(Child, &Shared, PathBuf)> = Vec::new();
    for (i, shared) in files.iter().enumerate() {
        let home = root.join(format!("get-{i:03}"));
        std::fs::create_dir_all(&home)?;
        let log = std::fs::File::create(home.join("get.log"))?;
        let child = Command::new(&mtorrent)
            .arg("get")
            .arg(&shared.mtorrent)
            .arg(&home)
            .arg("--catalog")
            .arg(home.join("catalog.sqlite"))
            .env("MTORRENT_LISTEN", mtorrent_e2e::TEST_LISTEN)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start mtorrent get")?;
        children.push((child, shared, home));
    }
    let deadline = started + Duration::from_secs(600);
    let mut finished = started;
    for (child, _, home) in &mut children {
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    let log = std::fs::read_to_string(home.join("get.log")).unwrap_or_default();
                    bail!("a get failed ({status}): {log}");
                }
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("a get did not finish in 10 minutes: {}", home.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        finished = finished.max(Instant::now());
    }
    let took = finished - started;
    for (_, shared, home) in &children {
        let got = std::fs::read(home.join(&shared.name))?;
        ensure!(
            got == random_bytes(shared.data_len as usize, shared.seed),
            "{} differs from the seed's file",
            home.join(&shared.name).display()
        );
    }
    Ok(took)
}

/// A memory figure of process `pid` from `/proc/PID/status` (`VmRSS` now, `VmHWM` peak), KiB.
fn rss_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// Polls `done` every 100 ms until it holds, for at most `timeout`.
fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !done()? {
        if Instant::now() > deadline {
            bail!("timed out waiting until {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
