//! Attack benchmark: what honest clients get from two twin trackers and a native seeder, without
//! attack and under the attack mix of the hostile tests (slow readers and idle connections
//! against the trackers and the seeder, from many source addresses, each reconnecting when
//! dropped).
//!
//! `cargo build --release && cargo run --release -p mtorrent-bench --bin attack [-- --size 256MiB]`
//!
//! The attackers run on threads of their own at the lowest CPU priority (nice 19): their own
//! cost stands for other machines', so what is measured is what the attack costs the trackers
//! and the seeder, not what the attacking program costs the two cores they share with it.
//!
//! Printed for each phase: the trackers' and the seeder's largest resident memory (VmRSS,
//! sampled every 100 ms during the phase), the latency of `--announces` honest announces made
//! one after the other over one connection (p50, p99), and the speed of an honest `mtorrent get`
//! of a `--size` file from the seeder (wall time of the command, verified file on disk); then
//! the ratio of the speeds. Targets: honest p99 under 20 ms, the download under attack at least
//! 80 % of its speed without, and the memory within the bounds the hostile load test states
//! (each tracker under 512 MiB, the seeder under 384 MiB).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use clap::Parser;
use mtorrent_bench::{generate_file, parse_size};
use mtorrent_e2e::command::Dir;
use mtorrent_e2e::hostile::{announce, large_metainfo, register_seeder, rss_bytes, AttackMix};
use mtorrent_e2e::launcher::Launcher;
use mtorrent_e2e::process::Process;
use mtorrent_e2e::swarm::Trackers;
use mtorrent_e2e::tracker_client::TrackerClient;
use mtorrent_shared::tracker::{AnnounceEvent, FromTracker, PeerAddress, ToTracker};
use mtorrent_shared::{Metainfo, PeerId};

/// Command-line options.
#[derive(Debug, Parser)]
struct Options {
    /// Size of the file the honest peer downloads (e.g. 256MiB, 1GiB).
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    size: u64,
    /// Honest announces measured in each phase.
    #[arg(long, default_value_t = 2000)]
    announces: usize,
    /// Slow readers against the trackers (half at each), and as many against the seeder.
    #[arg(long, default_value_t = 1000)]
    slow: usize,
    /// Idle connections against the trackers (half at each), and as many against the seeder.
    #[arg(long, default_value_t = 1000)]
    idle: usize,
}

/// One phase's figures.
struct Figures {
    tracker_rss: u64,
    seeder_rss: u64,
    p50: Duration,
    p99: Duration,
    download: Duration,
    attackers: usize,
}

fn main() -> Result<()> {
    let options = Options::parse();
    let (soft, hard) = rlimit::Resource::NOFILE.get()?;
    let wanted = (4 * (options.slow + options.idle) as u64 + 4096).min(hard);
    if soft < wanted {
        rlimit::Resource::NOFILE
            .set(wanted, hard)
            .context("raising the open-file limit")?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(&options))
}

async fn run(options: &Options) -> Result<()> {
    let dir = Dir::new();
    let source = dir.join("source");
    std::fs::create_dir_all(&source)?;
    eprintln!("generating {} bytes", options.size);
    generate_file(&source.join("data.bin"), options.size, 0xa77ac)?;
    let trackers = Trackers::start(&dir);
    let seeder = start_seeder(&dir, &trackers)?;
    let mtorrent = dir.join("data.bin.mtorrent");
    let metainfo = Arc::new(Metainfo::from_json(&std::fs::read(&mtorrent)?)?);
    // The large document the trackers' slow readers ask for (650 KiB), kept registered.
    let big = large_metainfo(
        "big.bin",
        16_384,
        [trackers.one.ws_url(), trackers.two.ws_url()],
    );
    let _big_seeder = register_seeder(&trackers.one.ws_url(), &big, PeerId([0xB1; 20])).await;

    eprintln!("without attack");
    let calm = measure(options, &dir, "calm", &trackers, &seeder, &mtorrent, None).await?;
    eprintln!(
        "starting the attack: {} slow readers and {} idle connections against the trackers, as many against the seeder",
        options.slow, options.idle
    );
    let attackers = attacker_runtime()?;
    let mix = {
        // The hordes' tasks go to the attackers' runtime.
        let _attackers = attackers.enter();
        AttackMix::start(
            [
                (trackers.one.addr(), trackers.one.ws_url()),
                (trackers.two.addr(), trackers.two.ws_url()),
            ],
            big.info_hash(),
            seeder.addr(),
            metainfo,
            options.slow,
            options.idle,
        )
    };
    mix.wait_engaged(Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    eprint!("{}", mix.report());
    let attacked = measure(
        options,
        &dir,
        "attacked",
        &trackers,
        &seeder,
        &mtorrent,
        Some(&mix),
    )
    .await?;
    eprint!("{}", mix.report());
    drop(mix);
    attackers.shutdown_background();
    print_table(options, &calm, &attacked);
    Ok(())
}

/// A runtime for the attackers whose threads run at nice 19 (on Linux, a thread's nice value
/// is its own).
fn attacker_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("attacker")
        .on_thread_start(|| {
            // SAFETY: setpriority has no memory effects; who 0 is the calling thread.
            #[allow(unsafe_code)]
            let lowered = unsafe { nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, 19) };
            if lowered != 0 {
                eprintln!("cannot lower an attacker thread's priority");
            }
        })
        .enable_all()
        .build()?)
}

/// `mtorrent share` of the generated file, with its own catalog.
fn start_seeder(dir: &Dir, trackers: &Trackers) -> Result<Process> {
    let home = dir.join("source");
    let args = vec![
        "share".to_owned(),
        home.join("data.bin").to_string_lossy().into_owned(),
        "-o".into(),
        dir.join("data.bin.mtorrent").to_string_lossy().into_owned(),
        "--catalog".into(),
        home.join("catalog.sqlite").to_string_lossy().into_owned(),
    ];
    let args: Vec<String> = args.into_iter().chain(trackers.args()).collect();
    Ok(Process::start_with(
        &Launcher::local(),
        "mtorrent",
        args,
        &dir.join("seeder.log"),
    ))
}

/// One phase: memory sampled throughout, the honest announces, then the honest download.
async fn measure(
    options: &Options,
    dir: &Dir,
    phase: &str,
    trackers: &Trackers,
    seeder: &Process,
    mtorrent: &std::path::Path,
    mix: Option<&AttackMix>,
) -> Result<Figures> {
    let sampling = Arc::new(AtomicBool::new(true));
    let tracker_rss = Arc::new(AtomicU64::new(0));
    let seeder_rss = Arc::new(AtomicU64::new(0));
    let sampler = {
        let pids = [trackers.one.id(), trackers.two.id()];
        let seeder_pid = seeder.id();
        let (sampling, tracker_rss, seeder_rss) =
            (sampling.clone(), tracker_rss.clone(), seeder_rss.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                for pid in pids {
                    tracker_rss.fetch_max(rss_bytes(pid), Ordering::Relaxed);
                }
                seeder_rss.fetch_max(rss_bytes(seeder_pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let mut latencies = announce_latencies(&trackers.one.ws_url(), options.announces).await?;
    latencies.sort();
    let percentile = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    let (p50, p99) = (percentile(50), percentile(99));

    let home = dir.join(format!("leecher-{phase}"));
    std::fs::create_dir_all(&home)?;
    let started = Instant::now();
    let output = tokio::task::spawn_blocking({
        let (home, mtorrent) = (home.clone(), mtorrent.to_owned());
        move || {
            std::process::Command::new(mtorrent_e2e::bin_path("mtorrent"))
                .arg("get")
                .arg(&mtorrent)
                .arg(&home)
                .arg("--catalog")
                .arg(home.join("catalog.sqlite"))
                .output()
        }
    })
    .await??;
    let download = started.elapsed();
    ensure!(
        output.status.success(),
        "the honest get failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(
        files_equal(&home.join("data.bin"), &dir.join("source/data.bin"))?,
        "the download differs from the source"
    );
    let attackers = mix.map_or(0, AttackMix::engaged);
    sampling.store(false, Ordering::Relaxed);
    sampler.await?;
    std::fs::remove_file(home.join("data.bin"))?;
    Ok(Figures {
        tracker_rss: tracker_rss.load(Ordering::Relaxed),
        seeder_rss: seeder_rss.load(Ordering::Relaxed),
        p50,
        p99,
        download,
        attackers,
    })
}

/// The latency of `count` announces made one after the other over one connection.
async fn announce_latencies(url: &str, count: usize) -> Result<Vec<Duration>> {
    ensure!(count > 0, "--announces must be at least 1");
    let mut client = TrackerClient::connect(url).await;
    let info_hash = mtorrent_shared::InfoHash([0x5A; 20]);
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        let event = if i == 0 {
            AnnounceEvent::Started
        } else {
            AnnounceEvent::Update
        };
        let message = ToTracker::Announce(announce(
            info_hash,
            PeerId([0x5B; 20]),
            event,
            PeerAddress::Browser,
        ));
        let started = Instant::now();
        let reply = client.request(&message).await;
        latencies.push(started.elapsed());
        ensure!(
            matches!(reply, FromTracker::Peers { .. }),
            "announce refused: {reply:?}"
        );
        // Within the tracker's message rate for one connection (1,000 a second).
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(latencies)
}

/// Whether two files hold the same bytes, compared a MiB at a time.
fn files_equal(a: &std::path::Path, b: &std::path::Path) -> Result<bool> {
    use std::io::Read;
    let (mut a, mut b) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
    if a.metadata()?.len() != b.metadata()?.len() {
        return Ok(false);
    }
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = a.read(&mut x)?;
        if n == 0 {
            return Ok(true);
        }
        b.read_exact(&mut y[..n])?;
        if x[..n] != y[..n] {
            return Ok(false);
        }
    }
}

fn print_table(options: &Options, calm: &Figures, attacked: &Figures) {
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    let speed = |f: &Figures| options.size as f64 / 1e6 / f.download.as_secs_f64();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "honest clients of two trackers and a seeder; file {} MiB, {} announces a phase",
        options.size >> 20,
        options.announces
    );
    println!(
        "attack: {} slow readers + {} idle connections against the trackers, as many against the seeder",
        options.slow, options.idle
    );
    println!(
        "{:<10} {:>9} {:>13} {:>12} {:>13} {:>13} {:>10} {:>9}",
        "phase",
        "attackers",
        "tracker RSS",
        "seeder RSS",
        "announce p50",
        "announce p99",
        "get MB/s",
        "get s"
    );
    for (phase, f) in [("no attack", calm), ("attack", attacked)] {
        println!(
            "{:<10} {:>9} {:>9.1} MiB {:>8.1} MiB {:>10.2} ms {:>10.2} ms {:>10.1} {:>9.2}",
            phase,
            f.attackers,
            mib(f.tracker_rss),
            mib(f.seeder_rss),
            ms(f.p50),
            ms(f.p99),
            speed(f),
            f.download.as_secs_f64()
        );
    }
    println!(
        "download under attack: {:.0} % of its speed without (target >= 80 %); announce p99 under attack {:.2} ms (target < 20 ms)",
        100.0 * speed(attacked) / speed(calm),
        ms(attacked.p99)
    );
}
