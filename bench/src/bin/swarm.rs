//! Swarm benchmark: one leecher downloading a generated file over 127.0.0.1 from one and from
//! three seeders, with mtorrent and with a standard BitTorrent client (aria2c), next to the raw
//! loopback TCP throughput iperf3 reaches, in the same run.
//!
//! `cargo build --release && cargo run --release -p mtorrent-bench --bin swarm [-- --size 1GiB]`
//!
//! With `--tls`, the mtorrent swarm runs over TLS: the benchmark makes its own certificate
//! authority, the trackers and seeders serve wss:// with certificates it issued for 127.0.0.1,
//! and every mtorrent process trusts it through `SSL_CERT_FILE`.
//!
//! With `--netns`, the mtorrent swarm runs on a network made for the run instead of loopback:
//! each tracker, each seeder and the leecher on a host of its own (a network namespace with its
//! own address, cabled by a veth pair to a bridge), peers on their default address; the
//! certificates of `--tls` are then issued for the hosts' addresses. It takes root. The iperf3
//! and aria2c rows stay on loopback; a column says where each row ran.
//!
//! Needs iperf3, aria2c, mktorrent, node and the npm package bittorrent-tracker (the local
//! tracker of the aria2c runs): `scripts/bench-deps.sh` installs them.
//!
//! Each swarm is started afresh for every run: for mtorrent two twin trackers and `mtorrent
//! share` seeders, each with its own catalog; for aria2c a bittorrent-tracker and aria2c seeders
//! of a `mktorrent` torrent with the same 512 KiB pieces. Once the trackers report every seeder,
//! and two seconds more for the seeders to settle, the leecher runs under `/usr/bin/time`: its
//! wall time, from the command's start to the verified file on disk, gives the MB/s, and `time`
//! its peak RSS. The downloaded file must be byte-identical to the source. The table shows the
//! median over `--runs` and the largest peak RSS seen. Every process started is killed at the
//! end, also on error.
//!
//! aria2c works in one-second ticks: on loopback its wall time includes a few seconds before the
//! first piece (dialing the peers, the unchoke) and after the last (the stopped announce), which
//! weigh less the larger `--size` is. Its log (`--log`) shows the transfer alone.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use mtorrent_bench::{generate_file, median, parse_size, peak_measure, sibling_binary, Measured};
use mtorrent_e2e::launcher::Launcher;
use mtorrent_e2e::netns::{Host, Network};
use mtorrent_e2e::tls::{try_https_get_over, TestCa};

/// Command-line options.
#[derive(Debug, Parser)]
struct Options {
    /// Size of the generated file (e.g. 1GiB, 256MiB).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    size: u64,
    /// Runs per measurement; the table shows the median.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Directory for the generated file and the downloads [default: the system's temporary
    /// directory].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Where scripts/bench-deps.sh installed the npm tracker [default: target/bench-tools of
    /// this checkout].
    #[arg(long)]
    tools: Option<PathBuf>,
    /// Leave out the aria2c rows (and the need for aria2c, mktorrent and node).
    #[arg(long)]
    skip_aria2: bool,
    /// Leave out the iperf3 row (and the need for iperf3).
    #[arg(long)]
    skip_iperf3: bool,
    /// Run the mtorrent trackers and peers over TLS (wss://), with a certificate authority
    /// made for the run.
    #[arg(long)]
    tls: bool,
    /// Run the mtorrent trackers, seeders and leecher each on a host of its own (a network
    /// namespace, cabled to a bridge) instead of 127.0.0.1; takes root.
    #[arg(long)]
    netns: bool,
}

/// A secret the two mtorrent trackers share.
const TWIN_SECRET: &str = "swarm-bench-twin-secret-0123";
/// How long a process may take to print its address (a seeder hashes the file first).
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the trackers may take to know every seeder.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a swarm is left to settle once the trackers know every seeder, before the leecher
/// starts: a seeder that just announced may still be starting (aria2c, with its one-second
/// ticks, then answers a leecher's handshake later).
const SETTLE: Duration = Duration::from_secs(2);
/// The name of the generated file, and so of every download.
const FILE_NAME: &str = "data.bin";
/// The local BitTorrent tracker of the aria2c runs: HTTP only, on 127.0.0.1 and the port given
/// as its argument. It imports the server alone: the package's index also loads its WebRTC
/// client, whose native module an `--ignore-scripts` install does not build.
const BT_TRACKER_JS: &str = "\
import Server from 'bittorrent-tracker/server'
const server = new Server({ http: true, udp: false, ws: false, stats: true })
server.on('error', e => console.error(e.message))
server.listen(Number(process.argv[1]), { http: '127.0.0.1' }, () =>
  console.log('listening on 127.0.0.1:' + server.http.address().port))
";
/// Options every aria2c of the benchmark takes: no DHT, local discovery or peer exchange (the
/// tracker alone finds the peers), no limits, no console output.
const ARIA2_COMMON: [&str; 9] = [
    "--enable-dht=false",
    "--enable-dht6=false",
    "--bt-enable-lpd=false",
    "--enable-peer-exchange=false",
    "--bt-max-peers=0",
    "--max-overall-download-limit=0",
    "--max-overall-upload-limit=0",
    "--summary-interval=0",
    "--console-log-level=warn",
];

/// The programs the benchmark runs, found before anything is measured.
struct Tools {
    mtorrent: PathBuf,
    tracker: PathBuf,
    /// The directory whose node_modules holds bittorrent-tracker.
    npm_dir: PathBuf,
}

/// A row of the table: a measurement, or `None` when skipped.
struct Row {
    what: &'static str,
    /// Where it ran: `loopback`, or `netns` (hosts of their own).
    place: &'static str,
    result: Option<Summary>,
}

/// One measurement over all its runs.
struct Summary {
    mb_per_s: f64,
    /// Median wall time of the timed command; none for iperf3.
    seconds: Option<f64>,
    /// Largest peak RSS of the timed command; none for iperf3.
    peak_rss_kib: Option<u64>,
}

impl Summary {
    fn of_runs(size: u64, runs: &[Measured]) -> Self {
        let seconds = median(runs.iter().map(|r| r.seconds).collect());
        Self {
            mb_per_s: size as f64 / 1e6 / seconds,
            seconds: Some(seconds),
            peak_rss_kib: runs.iter().map(|r| r.peak_rss_kib).max(),
        }
    }
}

/// What every measurement works with.
struct Bench {
    tools: Tools,
    /// The generated file.
    file: PathBuf,
    size: u64,
    runs: usize,
    /// The working directory, removed at the end.
    work: PathBuf,
    /// Log files of the processes started.
    logs: PathBuf,
    /// The certificate authority of the TLS runs (`--tls`), which every process trusts.
    tls: Option<TestCa>,
    /// The hosts of the mtorrent swarm with `--netns`; on loopback without.
    hosts: Option<Hosts>,
}

/// The hosts of a network made for the run (`--netns`): one per tracker, per seeder, and the
/// leecher's.
struct Hosts {
    trackers: [Host; 2],
    seeders: Vec<Host>,
    leecher: Host,
    /// Deleted, with every process inside, when dropped (after the hosts).
    _network: Network,
}

impl Hosts {
    fn new(seeders: usize) -> Result<Self> {
        let Some(network) = Network::new() else {
            bail!("--netns makes network namespaces, which takes root");
        };
        Ok(Self {
            trackers: [network.host("tracker-1"), network.host("tracker-2")],
            seeders: (1..=seeders)
                .map(|n| network.host(&format!("seed-{n}")))
                .collect(),
            leecher: network.host("leecher"),
            _network: network,
        })
    }
}

impl Bench {
    /// Where the mtorrent rows run.
    fn place(&self) -> &'static str {
        if self.hosts.is_some() {
            "netns"
        } else {
            "loopback"
        }
    }

    /// How to start a program on `host` (with `--netns`), or on this machine.
    fn launcher(&self, host: impl Fn(&Hosts) -> &Host) -> Launcher {
        self.hosts
            .as_ref()
            .map_or_else(Launcher::direct, |hosts| host(hosts).launcher())
    }

    /// A TCP connection to `addr`, from the leecher's host with `--netns`.
    fn connect(&self, addr: SocketAddr) -> Result<TcpStream> {
        Ok(match &self.hosts {
            Some(hosts) => hosts.leecher.connect(addr)?,
            None => TcpStream::connect_timeout(&addr, Duration::from_secs(5))?,
        })
    }
}

fn main() -> Result<()> {
    let options = Options::parse();
    ensure!(options.runs > 0, "--runs must be at least 1");
    let tools = find_tools(&options)?;
    let dir = tempfile::Builder::new()
        .prefix("mtorrent-bench-swarm-")
        .tempdir_in(options.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    let file = dir.path().join(FILE_NAME);
    eprintln!(
        "generating {} bytes of random data in {}",
        options.size,
        file.display()
    );
    generate_file(&file, options.size, 0x5eed)?;
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs)?;
    let tls = options.tls.then(TestCa::new);
    if let Some(ca) = &tls {
        // Every process started from here on trusts the run's authority, and it alone.
        std::env::set_var("SSL_CERT_FILE", ca.ca_pem_path());
    }
    let bench = Bench {
        tools,
        file,
        size: options.size,
        runs: options.runs,
        work: dir.path().to_owned(),
        logs,
        tls,
        hosts: if options.netns {
            Some(Hosts::new(3)?)
        } else {
            None
        },
    };

    let iperf3 = if options.skip_iperf3 {
        None
    } else {
        Some(measure_iperf3(&bench)?)
    };
    let mtorrent_1 = measure_mtorrent(&bench, 1)?;
    let mtorrent_3 = measure_mtorrent(&bench, 3)?;
    let (aria2_1, aria2_3) = if options.skip_aria2 {
        (None, None)
    } else {
        let torrent = prepare_aria2(&bench, 3)?;
        (
            Some(measure_aria2(&bench, &torrent, 1)?),
            Some(measure_aria2(&bench, &torrent, 3)?),
        )
    };
    let rows = [
        Row {
            what: "iperf3 loopback TCP",
            place: "loopback",
            result: iperf3,
        },
        Row {
            what: if options.tls {
                "mtorrent get TLS, 1 seeder"
            } else {
                "mtorrent get, 1 seeder"
            },
            place: bench.place(),
            result: Some(mtorrent_1),
        },
        Row {
            what: if options.tls {
                "mtorrent get TLS, 3 seeders"
            } else {
                "mtorrent get, 3 seeders"
            },
            place: bench.place(),
            result: Some(mtorrent_3),
        },
        Row {
            what: "aria2c, 1 seeder",
            place: "loopback",
            result: aria2_1,
        },
        Row {
            what: "aria2c, 3 seeders",
            place: "loopback",
            result: aria2_3,
        },
    ];
    print_table(&options, &rows);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Finding the tools

/// Checks that every program needed is there, before the file is generated.
fn find_tools(options: &Options) -> Result<Tools> {
    let mtorrent = sibling_binary("mtorrent")?;
    let tracker = sibling_binary("mtorrent-tracker")?;
    let npm_dir = options.tools.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target")
            .join("bench-tools")
    });
    require("/usr/bin/time", "")?;
    if !options.skip_iperf3 {
        require("iperf3", " (or pass --skip-iperf3)")?;
    }
    if !options.skip_aria2 {
        for program in ["aria2c", "mktorrent", "node"] {
            require(program, " (or pass --skip-aria2)")?;
        }
        let server = npm_dir.join("node_modules/bittorrent-tracker/server.js");
        if !server.is_file() {
            bail!(
                "the npm package bittorrent-tracker is not in {}: run scripts/bench-deps.sh \
                 (or pass --skip-aria2, or --tools DIR)",
                npm_dir.display()
            );
        }
    }
    Ok(Tools {
        mtorrent,
        tracker,
        npm_dir,
    })
}

/// Fails, telling how to install it, unless `program` is a path or on the PATH.
fn require(program: &str, alternative: &str) -> Result<()> {
    let found = if program.contains('/') {
        Path::new(program).is_file()
    } else {
        std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
    };
    ensure!(
        found,
        "{program} is missing: run scripts/bench-deps.sh{alternative}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// iperf3

/// Loopback TCP throughput: a one-off iperf3 server and a 5 second client, median over the runs.
fn measure_iperf3(bench: &Bench) -> Result<Summary> {
    let mut rates = Vec::new();
    for run in 0..bench.runs {
        eprintln!("iperf3, run {}", run + 1);
        let port = free_port()?;
        let mut server = Command::new("iperf3");
        server.args(["-s", "-1", "-p", &port.to_string()]);
        let _server = Running::start("iperf3-server", server, &bench.logs)?;
        let report = run_iperf3_client(port)?;
        let bits = iperf3_received_bits_per_second(&report)
            .with_context(|| format!("no end.sum_received.bits_per_second in {report}"))?;
        rates.push(bits / 8.0 / 1e6);
    }
    Ok(Summary {
        mb_per_s: median(rates),
        seconds: None,
        peak_rss_kib: None,
    })
}

/// Runs the client, retrying while the server is not listening yet; returns its JSON report.
fn run_iperf3_client(port: u16) -> Result<String> {
    let port = port.to_string();
    for _ in 0..50 {
        let output = Command::new("iperf3")
            .args(["-c", "127.0.0.1", "-p", &port, "-t", "5", "-J"])
            .output()
            .context("running iperf3")?;
        let report = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            return Ok(report);
        }
        if !report.contains("unable to connect") {
            bail!("iperf3 -c failed ({}): {report}", output.status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the iperf3 server never accepted a connection on port {port}")
}

/// `end.sum_received.bits_per_second` of an iperf3 JSON report.
fn iperf3_received_bits_per_second(report: &str) -> Option<f64> {
    serde_json::from_str::<serde_json::Value>(report)
        .ok()?
        .pointer("/end/sum_received/bits_per_second")?
        .as_f64()
}

// ---------------------------------------------------------------------------------------------
// mtorrent

/// `mtorrent get` from `seeders` sharing peers, a fresh swarm for every run.
fn measure_mtorrent(bench: &Bench, seeders: usize) -> Result<Summary> {
    let mut runs = Vec::new();
    for run in 0..bench.runs {
        eprintln!("mtorrent, {seeders} seeder(s), run {}", run + 1);
        let dir = bench.work.join(format!("mtorrent-{seeders}-{run}"));
        std::fs::create_dir(&dir)?;
        let swarm = MtorrentSwarm::start(bench, seeders, &dir)?;
        let dest = dir.join("leecher");
        std::fs::create_dir(&dest)?;
        let catalog = dir.join("leech.sqlite");
        let get = [
            utf8(&bench.tools.mtorrent)?,
            "get",
            utf8(&swarm.mtorrent_file)?,
            utf8(&dest)?,
            "--catalog",
            utf8(&catalog)?,
        ];
        // On its own host it listens where a peer does by default.
        let argv: Vec<&str> = match &bench.hosts {
            Some(hosts) => ["ip", "netns", "exec", hosts.leecher.namespace()]
                .into_iter()
                .chain(get)
                .collect(),
            None => get.into_iter().chain(["--listen", "127.0.0.1:0"]).collect(),
        };
        let measured = peak_measure(&argv).context("timing mtorrent get")?;
        drop(swarm);
        check_download(&bench.file, &dest.join(FILE_NAME))?;
        std::fs::remove_dir_all(&dir)?;
        runs.push(measured);
    }
    Ok(Summary::of_runs(bench.size, &runs))
}

/// Two twin mtorrent trackers and the seeders, all of them sharing the generated file.
struct MtorrentSwarm {
    _seeders: Vec<Running>,
    _trackers: [Running; 2],
    /// The .mtorrent the first seeder wrote (all of them write the same).
    mtorrent_file: PathBuf,
}

impl MtorrentSwarm {
    fn start(bench: &Bench, seeders: usize, dir: &Path) -> Result<Self> {
        let (one, one_addr) = start_mtorrent_tracker(bench, 0, &[], START_TIMEOUT)?;
        let scheme = if bench.tls.is_some() { "wss" } else { "ws" };
        let twin = format!("{scheme}://{one_addr}/ws");
        let (two, two_addr) = start_mtorrent_tracker(bench, 1, &["--twin", &twin], START_TIMEOUT)?;
        let trackers = [twin, format!("{scheme}://{two_addr}/ws")];
        let mut running = Vec::new();
        for n in 1..=seeders {
            let launcher = bench.launcher(|hosts| &hosts.seeders[n - 1]);
            let mut share = launcher.command(&bench.tools.mtorrent);
            share
                .arg("share")
                .arg(&bench.file)
                .args(["--tracker", &trackers[0], "--tracker", &trackers[1]])
                .arg("--catalog")
                .arg(dir.join(format!("seed{n}.sqlite")))
                .arg("-o")
                .arg(dir.join(format!("seed{n}.mtorrent")));
            // On its own host it listens where a peer does by default.
            let ip = match &bench.hosts {
                Some(hosts) => hosts.seeders[n - 1].ip().to_string(),
                None => {
                    share.args(["--listen", "127.0.0.1:0"]);
                    "127.0.0.1".to_owned()
                }
            };
            if let Some((cert, key)) = bench.tls.as_ref().map(|ca| ca.issue(&[&ip])) {
                share.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
            }
            let name = format!("mtorrent-seed{n}");
            running.push(Running::start_listening(&name, share, &bench.logs, START_TIMEOUT)?.0);
        }
        for addr in [one_addr, two_addr] {
            wait_until(
                &format!("tracker {addr} to report {seeders} seeder(s)"),
                REGISTER_TIMEOUT,
                || {
                    let stats = tracker_stats(bench, addr)?;
                    Ok(json_number(&stats, "seeders") >= Some(seeders as f64))
                },
            )?;
        }
        std::thread::sleep(SETTLE);
        Ok(Self {
            _seeders: running,
            _trackers: [one, two],
            mtorrent_file: dir.join("seed1.mtorrent"),
        })
    }
}

/// Starts mtorrent tracker `index` (0 or 1) on a free port of 127.0.0.1, or of its host's
/// address with `--netns`, and returns its address.
fn start_mtorrent_tracker(
    bench: &Bench,
    index: usize,
    extra: &[&str],
    timeout: Duration,
) -> Result<(Running, SocketAddr)> {
    let ip = bench.hosts.as_ref().map_or_else(
        || "127.0.0.1".to_owned(),
        |h| h.trackers[index].ip().to_string(),
    );
    let mut tracker = bench
        .launcher(|hosts| &hosts.trackers[index])
        .command(&bench.tools.tracker);
    tracker
        .args(["--listen", &format!("{ip}:0"), "--twin-secret", TWIN_SECRET])
        .args(extra);
    let name = format!("mtorrent-tracker-{}", index + 1);
    if let Some(ca) = &bench.tls {
        let (cert, key) = ca.issue(&[&ip]);
        tracker
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key);
    }
    Running::start_listening(&name, tracker, &bench.logs, timeout)
}

/// A tracker's `/stats`, over https in the TLS runs, asked from the leecher's host with
/// `--netns`.
fn tracker_stats(bench: &Bench, addr: SocketAddr) -> Result<String> {
    let stream = bench.connect(addr)?;
    match &bench.tls {
        None => http_get_over(stream, addr, "/stats"),
        Some(ca) => {
            let (status, body) = try_https_get_over(ca, stream, addr, "/stats")
                .with_context(|| format!("https://{addr}/stats"))?;
            ensure!(status == 200, "https://{addr}/stats: status {status}");
            Ok(body)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// aria2c

/// A torrent of the generated file with 512 KiB pieces, announcing to a local tracker port.
struct Torrent {
    path: PathBuf,
    tracker_port: u16,
    /// One directory per possible seeder, each holding a hard link to the generated file.
    seed_dirs: Vec<PathBuf>,
}

/// Writes the torrent with mktorrent and lays out the seeders' directories.
fn prepare_aria2(bench: &Bench, max_seeders: usize) -> Result<Torrent> {
    let tracker_port = free_port()?;
    let path = bench.work.join(format!("{FILE_NAME}.torrent"));
    eprintln!("mktorrent: hashing the file into {}", path.display());
    let status = Command::new("mktorrent")
        .arg("-a")
        .arg(format!("http://127.0.0.1:{tracker_port}/announce"))
        .args(["-l", "19", "-o"])
        .arg(&path)
        .arg(&bench.file)
        .stdout(Stdio::null())
        .status()
        .context("running mktorrent")?;
    ensure!(status.success(), "mktorrent failed: {status}");
    let mut seed_dirs = Vec::new();
    for n in 1..=max_seeders {
        let dir = bench.work.join(format!("aria2-seed{n}"));
        std::fs::create_dir(&dir)?;
        let link = dir.join(FILE_NAME);
        if std::fs::hard_link(&bench.file, &link).is_err() {
            std::fs::copy(&bench.file, &link).context("copying the file for a seeder")?;
        }
        seed_dirs.push(dir);
    }
    Ok(Torrent {
        path,
        tracker_port,
        seed_dirs,
    })
}

/// A timed aria2c leecher from `seeders` aria2c seeders, a fresh swarm for every run.
fn measure_aria2(bench: &Bench, torrent: &Torrent, seeders: usize) -> Result<Summary> {
    let mut runs = Vec::new();
    for run in 0..bench.runs {
        eprintln!("aria2c, {seeders} seeder(s), run {}", run + 1);
        let swarm = start_aria2_swarm(bench, torrent, seeders)?;
        let dest = bench.work.join(format!("aria2-leecher-{seeders}-{run}"));
        std::fs::create_dir(&dest)?;
        let port = free_port()?.to_string();
        let dir_arg = format!("--dir={}", utf8(&dest)?);
        let port_arg = format!("--listen-port={port}");
        let mut argv = vec![
            "aria2c",
            "--seed-time=0",
            "--file-allocation=none",
            "--quiet=true",
            &dir_arg,
            &port_arg,
        ];
        argv.extend(ARIA2_COMMON);
        argv.push(utf8(&torrent.path)?);
        let measured = peak_measure(&argv).context("timing the aria2c leecher")?;
        drop(swarm);
        check_download(&bench.file, &dest.join(FILE_NAME))?;
        std::fs::remove_dir_all(&dest)?;
        runs.push(measured);
    }
    Ok(Summary::of_runs(bench.size, &runs))
}

/// Starts the bittorrent-tracker and `seeders` aria2c seeders, and waits until the tracker
/// counts them all. Returns them, seeders first, tracker last.
fn start_aria2_swarm(bench: &Bench, torrent: &Torrent, seeders: usize) -> Result<Vec<Running>> {
    let mut tracker = Command::new("node");
    tracker
        .args(["--input-type=module", "-e", BT_TRACKER_JS])
        .arg(torrent.tracker_port.to_string())
        .current_dir(&bench.tools.npm_dir);
    let (tracker, addr) =
        Running::start_listening("bittorrent-tracker", tracker, &bench.logs, START_TIMEOUT)?;
    let mut running = Vec::new();
    for (n, dir) in torrent.seed_dirs.iter().take(seeders).enumerate() {
        let mut seeder = Command::new("aria2c");
        seeder
            .args([
                "--seed-ratio=0.0",
                "--bt-seed-unverified=true",
                &format!("--listen-port={}", free_port()?),
            ])
            .arg(format!("--dir={}", utf8(dir)?))
            .args(ARIA2_COMMON)
            .arg(&torrent.path);
        running.push(Running::start(
            &format!("aria2-seed{}", n + 1),
            seeder,
            &bench.logs,
        )?);
    }
    wait_until(
        &format!("bittorrent-tracker to report {seeders} seeder(s)"),
        REGISTER_TIMEOUT,
        || {
            let stats = http_get(addr, "/stats.json")?;
            Ok(json_number(&stats, "peersSeederOnly") >= Some(seeders as f64))
        },
    )?;
    std::thread::sleep(SETTLE);
    running.push(tracker);
    Ok(running)
}

// ---------------------------------------------------------------------------------------------
// Checking and printing

/// Fails unless `download` has exactly the bytes of `source`.
fn check_download(source: &Path, download: &Path) -> Result<()> {
    let (mut a, mut b) = (
        BufReader::with_capacity(1 << 20, File::open(source)?),
        BufReader::with_capacity(
            1 << 20,
            File::open(download)
                .with_context(|| format!("the download {} is missing", download.display()))?,
        ),
    );
    let (mut block_a, mut block_b) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut offset = 0u64;
    loop {
        let n = read_full(&mut a, &mut block_a)?;
        let m = read_full(&mut b, &mut block_b)?;
        ensure!(
            n == m && block_a[..n] == block_b[..m],
            "{} differs from the source in the MiB at offset {offset}",
            download.display()
        );
        if n == 0 {
            return Ok(());
        }
        offset += n as u64;
    }
}

/// Reads until `buf` is full or the end of the input; returns how much was read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn print_table(options: &Options, rows: &[Row]) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "file: {} bytes ({:.2} GiB), mtorrent {}, median of {} run(s), {cores} cores",
        options.size,
        options.size as f64 / (1u64 << 30) as f64,
        if options.netns {
            "on hosts of their own (netns: veth pairs through a bridge)"
        } else {
            "over 127.0.0.1 (loopback)"
        },
        options.runs
    );
    println!(
        "{:<28} {:<9} {:>9} {:>10} {:>14} {:>10}",
        "what", "where", "seconds", "MB/s", "peak RSS MiB", "vs aria2c"
    );
    for (i, row) in rows.iter().enumerate() {
        let Some(result) = &row.result else {
            println!("{:<28} {:<9} {:>9}", row.what, row.place, "skipped");
            continue;
        };
        // The mtorrent rows (1 and 2) compare with the aria2c row of the same seeder count.
        let versus = match (i, rows.get(i + 2).and_then(|r| r.result.as_ref())) {
            (1 | 2, Some(aria2)) => format!("{:.2}x", result.mb_per_s / aria2.mb_per_s),
            _ => String::new(),
        };
        println!(
            "{:<28} {:<9} {:>9} {:>10.0} {:>14} {:>10}",
            row.what,
            row.place,
            result
                .seconds
                .map_or_else(|| "-".to_owned(), |s| format!("{s:.3}")),
            result.mb_per_s,
            result
                .peak_rss_kib
                .map_or_else(|| "-".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0)),
            versus,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Generic helpers: processes, ports, HTTP, JSON

/// A process the benchmark started: killed (SIGKILL) and reaped when dropped, so none is left
/// behind, also on error.
struct Running {
    child: Child,
}

impl Running {
    /// Starts `command` with its stdout and stderr appended to `logs/NAME.log`.
    fn start(name: &str, mut command: Command, logs: &Path) -> Result<Self> {
        let log = open_log(logs, name)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Self { child })
    }

    /// Starts `command` and waits for the `listening on IP:PORT` line on its stdout; its output
    /// goes to `logs/NAME.log`.
    fn start_listening(
        name: &str,
        mut command: Command,
        logs: &Path,
        timeout: Duration,
    ) -> Result<(Self, SocketAddr)> {
        let mut log = open_log(logs, name)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.try_clone()?)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let mut running = Self { child };
        let stdout = running.child.stdout.take().context("piped stdout")?;
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            // Copies every line to the log, and keeps draining so the process never blocks.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = writeln!(log, "{line}");
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = received.recv_timeout(left) else {
                let status = match running.child.try_wait() {
                    Ok(Some(status)) => status.to_string(),
                    _ => format!("still running after {timeout:?}"),
                };
                bail!(
                    "{name} did not print `listening on ADDR` ({status}); its log ends:\n{}",
                    log_tail(&logs.join(format!("{name}.log")))
                );
            };
            if let Some(addr) = line.strip_prefix("listening on ") {
                let addr = addr
                    .trim()
                    .parse()
                    .with_context(|| format!("{name} printed a bad address: {line}"))?;
                return Ok((running, addr));
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn open_log(logs: &Path, name: &str) -> Result<File> {
    let path = logs.join(format!("{name}.log"));
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))
}

/// The last lines of a log, for an error message.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// A TCP port of 127.0.0.1 free at the time of asking.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls `done` every 50 ms until it holds, or fails after `timeout`.
fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !done()? {
        ensure!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The body of `GET path` from an HTTP server at `addr` (HTTP/1.0, so the server closes).
fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    http_get_over(
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))?,
        addr,
        path,
    )
}

/// The body of `GET path` from an HTTP server at `addr` over `stream`, a connection open to it
/// (HTTP/1.0, so the server closes).
fn http_get_over(mut stream: TcpStream, addr: SocketAddr, path: &str) -> Result<String> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n\r\n"
    )?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .with_context(|| format!("reading http://{addr}{path}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("http://{addr}{path}: no HTTP response"))?;
    ensure!(
        head.starts_with("HTTP/1.") && head.split(' ').nth(1) == Some("200"),
        "http://{addr}{path}: {}",
        head.lines().next().unwrap_or_default()
    );
    Ok(body.to_owned())
}

/// The number at top-level field `key` of a JSON object (tracker statistics).
fn json_number(text: &str, key: &str) -> Option<f64> {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()?
        .get(key)?
        .as_f64()
}

/// A path as the UTF-8 string an argument list of `peak_measure` takes.
fn utf8(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_number_reads_flat_and_pretty_printed_fields() {
        let stats = r#"{"swarms":1,"peers":3,"seeders":3,"leechers":0}"#;
        assert_eq!(json_number(stats, "seeders"), Some(3.0));
        assert_eq!(json_number(stats, "missing"), None);
        let iperf = "{\"end\": {\"sum_sent\": {\"bits_per_second\":\t1e3},\n\
                     \"sum_received\": {\n\t\"bytes\": 5,\n\t\"bits_per_second\":\t2.5e+10\n}}}";
        assert_eq!(iperf3_received_bits_per_second(iperf), Some(2.5e10));
    }

    #[test]
    fn downloads_are_compared_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        generate_file(&a, 3 << 20 | 7, 1).unwrap();
        generate_file(&b, 3 << 20 | 7, 1).unwrap();
        generate_file(&c, 3 << 20 | 6, 1).unwrap();
        check_download(&a, &b).unwrap();
        assert!(check_download(&a, &c).is_err());
        assert!(check_download(&a, &dir.path().join("none")).is_err());
    }
}
