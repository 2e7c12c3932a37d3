//! Tracker load benchmark: many WebSocket connections announcing in a loop against one tracker.
//!
//! `cargo run --release -p mtorrent-bench --bin tracker_load [-- --connections 100,1000,10000]`
//!
//! The tracker runs pinned to core 0 and this load generator (one thread) to core 1. Each
//! connection announces, waits for the reply, and announces again, for `--seconds` after a one
//! second warm-up. Printed per connection count: announces per second, latency percentiles, and
//! the tracker's peak RSS (VmHWM) after the run.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use futures::{SinkExt, StreamExt};
use mtorrent_shared::tracker::{Announce, AnnounceEvent, FromTracker, PeerAddress, ToTracker};
use mtorrent_shared::{InfoHash, PeerId};
use tokio_tungstenite::tungstenite::Message;

/// Command-line options.
#[derive(Debug, Parser)]
struct Options {
    /// Connection counts to measure, one run each.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
    connections: Vec<usize>,
    /// Seconds each run measures.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Swarms the announces are spread over.
    #[arg(long, default_value_t = 100)]
    swarms: u32,
    /// Peers asked for in each announce.
    #[arg(long, default_value_t = 10)]
    numwant: u32,
}

struct RunResult {
    connections: usize,
    announces_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    tracker_peak_rss_mib: f64,
}

fn main() -> Result<()> {
    let options = Options::parse();
    let (soft, hard) = rlimit::Resource::NOFILE.get()?;
    let wanted = (options.connections.iter().max().copied().unwrap_or(0) as u64 + 1024).min(hard);
    if soft < wanted {
        rlimit::Resource::NOFILE
            .set(wanted, hard)
            .context("raising the open-file limit")?;
    }
    pin_self_to_core(1)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut results = Vec::new();
    for &connections in &options.connections {
        let data = tempfile::tempdir()?;
        let mut tracker = start_tracker(data.path())?;
        let result = runtime.block_on(run(&options, connections, &mut tracker));
        let _ = tracker.0.kill();
        let _ = tracker.0.wait();
        results.push(result?);
    }
    print_table(&options, &results);
    Ok(())
}

fn pin_self_to_core(core: usize) -> Result<()> {
    let status = Command::new("taskset")
        .args([
            "-p",
            "-c",
            &core.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(Stdio::null())
        .status()
        .context("running taskset (Debian package util-linux)")?;
    if !status.success() {
        bail!("taskset failed: {status}");
    }
    Ok(())
}

/// The tracker process and its address.
struct Tracker(Child, String);

/// Starts the tracker pinned to core 0; it inherits this process's raised open-file limit.
fn start_tracker(data_dir: &std::path::Path) -> Result<Tracker> {
    let binary = mtorrent_bench::sibling_binary("mtorrent-tracker")?;
    let mut child = Command::new("taskset")
        .args(["-c", "0"])
        .arg(&binary)
        .args(["--listen", "127.0.0.1:0", "--max-connections", "20000"])
        // Every load connection comes from 127.0.0.1.
        .args(["--max-connections-per-address", "20000"])
        // It announces its simulated peers at 10.0.x.y, as a relay would.
        .args(["--trusted-relay", "127.0.0.1"])
        .args(["--rate-limit", "1000000", "--rate-burst", "1000000"])
        .arg("--data-dir")
        .arg(data_dir)
        .env("MTORRENT_TRACKER_WWW", data_dir)
        .env("RUST_LOG", "mtorrent_tracker=warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the tracker")?;
    let stdout = child.stdout.take().expect("piped");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)?;
    let addr = line
        .strip_prefix("listening on ")
        .context("the tracker did not print its address")?
        .trim()
        .to_owned();
    Ok(Tracker(child, format!("ws://{addr}/ws")))
}

async fn run(options: &Options, connections: usize, tracker: &mut Tracker) -> Result<RunResult> {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::with_capacity(connections);
    for i in 0..connections {
        let url = tracker.1.clone();
        let (measuring, stop) = (measuring.clone(), stop.clone());
        let info_hash = InfoHash(swarm_id(i as u32 % options.swarms));
        let numwant = options.numwant;
        tasks.push(tokio::spawn(async move {
            connection_loop(url, i as u64, info_hash, numwant, measuring, stop).await
        }));
        if i % 500 == 499 {
            tokio::task::yield_now().await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(options.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let rss = peak_rss_mib(tracker.0.id())?;
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (mut l, e) = task.await??;
        latencies.append(&mut l);
        errors += e;
    }
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(f64::NAN, |micros| f64::from(*micros) / 1000.0)
    };
    Ok(RunResult {
        connections,
        announces_per_second: latencies.len() as f64 / elapsed,
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
        errors,
        tracker_peak_rss_mib: rss,
    })
}

fn swarm_id(n: u32) -> [u8; 20] {
    let mut id = [0u8; 20];
    id[..4].copy_from_slice(&n.to_be_bytes());
    id
}

/// One connection announcing in a loop; returns the latencies measured (µs) and error replies.
async fn connection_loop(
    url: String,
    index: u64,
    info_hash: InfoHash,
    numwant: u32,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Result<(Vec<u32>, u64)> {
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .with_context(|| format!("connection {index}"))?;
    let mut peer_id = [0u8; 20];
    peer_id[12..].copy_from_slice(&index.to_be_bytes());
    let mut announce = Announce {
        info_hash,
        peer_id: PeerId(peer_id),
        event: AnnounceEvent::Started,
        address: PeerAddress::Native {
            url: format!("ws://10.0.{}.{}:6881/peer", index / 250, index % 250),
        },
        left: index % 2,
        numwant,
        metainfo: None,
    };
    let mut latencies = Vec::new();
    let mut errors = 0;
    while !stop.load(Ordering::Relaxed) {
        let text = ToTracker::Announce(announce.clone()).encode();
        let sent = Instant::now();
        socket.send(Message::Text(text.into())).await?;
        let reply = loop {
            match socket.next().await {
                Some(Ok(Message::Text(reply))) => break reply,
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => bail!("the tracker closed connection {index}"),
            }
        };
        let micros = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        match FromTracker::decode(&reply) {
            Ok(FromTracker::Peers { .. }) if measuring.load(Ordering::Relaxed) => {
                latencies.push(micros);
            }
            Ok(FromTracker::Peers { .. }) => {}
            _ => errors += 1,
        }
        announce.event = AnnounceEvent::Update;
    }
    Ok((latencies, errors))
}

fn peak_rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM in /proc status")?;
    let kib: f64 = line
        .split_whitespace()
        .nth(1)
        .context("VmHWM value")?
        .parse()?;
    Ok(kib / 1024.0)
}

fn print_table(options: &Options, results: &[RunResult]) {
    println!(
        "tracker pinned to core 0, load generator to core 1; {} s per run, {} swarms, numwant {}",
        options.seconds, options.swarms, options.numwant
    );
    println!(
        "{:>11} {:>14} {:>9} {:>9} {:>7} {:>17}",
        "connections", "announces/s", "p50 ms", "p99 ms", "errors", "tracker RSS MiB"
    );
    for r in results {
        println!(
            "{:>11} {:>14.0} {:>9.2} {:>9.2} {:>7} {:>17.1}",
            r.connections,
            r.announces_per_second,
            r.p50_ms,
            r.p99_ms,
            r.errors,
            r.tracker_peak_rss_mib
        );
    }
    for r in results {
        if r.connections == 100 {
            println!(
                "target: >= 50000 announces/s at 100 connections: {:.0} {}; p99 < 10 ms: {:.2} {}",
                r.announces_per_second,
                verdict(r.announces_per_second >= 50_000.0),
                r.p99_ms,
                verdict(r.p99_ms < 10.0)
            );
        }
        if r.connections == 10_000 {
            println!(
                "target: 10000 connections with tracker RSS < 200 MiB: {:.1} MiB {}",
                r.tracker_peak_rss_mib,
                verdict(r.tracker_peak_rss_mib < 200.0)
            );
        }
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "MET"
    } else {
        "NOT MET"
    }
}
