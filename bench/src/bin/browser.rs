//! Browser benchmark: the page's hashing next to the native peer's on the same file, and a
//! download in the page from three native seeders, in headless Chromium, in the same run.
//!
//! `scripts/build-web.sh && cargo build --release && cargo run --release -p mtorrent-bench --bin browser [-- --size 256MiB]`
//!
//! Native hashing is `mtorrent create` with one thread and with one per core, under
//! `/usr/bin/time`. In the page (served by a local tracker, driven over WebDriver), sharing the
//! file hashes it in one worker per core, each reading its part in `Blob.slice` chunks and
//! hashing it with WebCrypto's SHA-1; the page reports the time from the first read to the
//! finished `.mtorrent`. The same workers then hash the file with the page's WebAssembly
//! fallback (`shared`'s SHA-1, four pieces at once with SIMD), and read it without hashing;
//! and the WebAssembly SHA-1 hashes 256 MiB already in memory, its bound on one core.
//! Then three `mtorrent share` seeders serve the file and a fresh page downloads it: the time runs
//! from opening the `.mtorrent` to the last piece verified and written to the Origin Private
//! File System, and the result's SHA-1 must match. Then a fresh page opened at a name that is not
//! a secure context (Chromium maps `mtorrent.test` to 127.0.0.1), as a page opened over plain
//! http from another machine is, downloads it again: pieces checked with the WebAssembly SHA-1
//! and kept in IndexedDB, the time running to the file built from them; every piece of what it
//! saves must match. `--downloads N` runs both downloads N times, in turn, each in a fresh
//! browser, so the two storages are compared under the same load; `--downloads-only` skips the
//! hashing figures (the `.mtorrent` then comes from the first seeder).
//! Needs Chromium and chromedriver (`scripts/setup.sh` installs them).

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use clap::Parser;
use mtorrent_bench::{generate_file, median, parse_size, peak_measure, sibling_binary};
use mtorrent_e2e::browser::{Browser, INSECURE_HOST};
use mtorrent_e2e::process::Process;
use mtorrent_e2e::swarm::Trackers;

/// Command-line options.
#[derive(Debug, Parser)]
struct Options {
    /// Size of the generated file (e.g. 256MiB, 1GiB).
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    size: u64,
    /// Directory for the generated file and the seeders' catalogs [default: the system's
    /// temporary directory].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// How many times each download (OPFS, then IndexedDB) runs, in turn, each in a fresh
    /// browser; every figure is printed.
    #[arg(long, default_value_t = 1)]
    downloads: u32,
    /// Only the downloads: no hashing measured, the `.mtorrent` made by the first seeder.
    #[arg(long)]
    downloads_only: bool,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let options = Options::parse();
    ensure!(options.downloads >= 1, "--downloads must be at least 1");
    let dir = tempfile::Builder::new()
        .prefix("mtorrent-bench-browser-")
        .tempdir_in(options.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    let file = dir.path().join("data.bin");
    eprintln!("generating {} bytes in {}", options.size, file.display());
    generate_file(&file, options.size, 0xb0b)?;
    // Reading it warms the page cache; its SHA-1 checks the page's download at the end.
    let expected = mtorrent_shared::PieceHash::of(
        &std::fs::read(&file).context("reading the generated file")?,
    );
    let mb = options.size as f64 / 1e6;

    let www = mtorrent_e2e::www_dir();
    ensure!(
        www.join("pkg/mtorrent_web_peer.js").is_file(),
        "the browser peer is not built: run scripts/build-web.sh"
    );
    let log = |name: &str| dir.path().join(format!("{name}.log"));
    let trackers = Trackers::start_logging_in(dir.path());
    let hashing = if options.downloads_only {
        None
    } else {
        Some(hashing_figures(&file, dir.path(), mb, &trackers).await?)
    };

    let seeders: Vec<Process> = (1..=3)
        .map(|n| seeder(n, &file, dir.path(), &trackers, &log))
        .collect();
    let metainfo_path = match hashing {
        Some(_) => dir.path().join("data.bin.mtorrent"),
        None => seeder_mtorrent(dir.path()).await?,
    };
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let metainfo = mtorrent_shared::Metainfo::from_json(std::fs::read(&metainfo_path)?.as_slice())?;
    let expected_pieces: String = metainfo.piece_hashes().iter().map(|h| h.to_hex()).collect();
    let mut opfs = Vec::new();
    let mut indexeddb = Vec::new();
    for _ in 0..options.downloads {
        eprintln!("downloading in a fresh page from 3 native seeders");
        // A new browser, as a user who opens the page to download would have: nothing left
        // over from hashing a gigabyte or from the download before.
        let browser = Browser::on_page(&trackers.page_url()).await;
        let download = download_in(&browser, &metainfo_path, options.size).await?;
        eprintln!("page download: {download}");
        let digest = browser.sha1_of_link("download-save").await;
        ensure!(
            digest == expected.to_hex(),
            "the page's download differs from the file"
        );
        opfs.push(download);
        drop(browser);

        eprintln!("downloading in a fresh page that is not a secure context (IndexedDB)");
        let browser = Browser::on_insecure_page(&trackers.page_url()).await;
        ensure!(
            browser.eval("return window.isSecureContext;").await == serde_json::json!(false),
            "the page at {INSECURE_HOST} is a secure context"
        );
        let download = download_in(&browser, &metainfo_path, options.size).await?;
        eprintln!("page download, not a secure context: {download}");
        ensure!(
            piece_hashes_of_link(&browser, "download-save").await? == expected_pieces,
            "the insecure page's download differs from the file"
        );
        indexeddb.push(download);
    }
    drop(seeders);

    println!(
        "file: {} bytes ({:.2} GiB) on 127.0.0.1, headless Chromium, {} cores",
        options.size,
        options.size as f64 / (1u64 << 30) as f64,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("{:<48} {:>10}", "what", "MB/s");
    let row = |what: &str, mb_per_s: f64| println!("{what:<48} {mb_per_s:>10.0}");
    if let Some(h) = hashing {
        let hashing_row = |what: &str, mb_per_s: f64| {
            println!(
                "{what:<48} {mb_per_s:>10.0}   ({:.0}% of native 1 thread)",
                mb_per_s * 100.0 / h.native_one
            );
        };
        row("native hashing, 1 thread (mtorrent create)", h.native_one);
        row("native hashing, all cores", h.native_all);
        hashing_row("page hashing (WebCrypto SHA-1, the page's)", h.page);
        hashing_row("page hashing (WebAssembly SHA-1, fallback)", h.page_wasm);
        row("page reading the file only (same workers)", h.page_reading);
        hashing_row("WebAssembly SHA-1 in memory, one thread", h.wasm_in_memory);
    }
    println!();
    println!(
        "{:<48} {:>10} {:>12}",
        "download (median of each figure)", "MB/s", "CPU s/GiB"
    );
    let downloads_row = |what: &str, downloads: &[Download]| {
        let speed = median(downloads.iter().map(|d| d.mb_per_s).collect());
        let cpu = median(downloads.iter().map(|d| d.cpu_s_per_gib).collect());
        print!("{what:<48} {speed:>10.0} {cpu:>12.1}");
        if downloads.len() > 1 {
            let each: Vec<String> = downloads.iter().map(ToString::to_string).collect();
            print!("   (each: {})", each.join("; "));
        }
        println!();
    };
    downloads_row("page download from 3 native seeders (OPFS)", &opfs);
    downloads_row(
        "page download, not a secure context (IndexedDB)",
        &indexeddb,
    );
    Ok(())
}

/// One page download's figures.
struct Download {
    /// The file's size over the time the page took, from opening the `.mtorrent` to the file
    /// ready to save.
    mb_per_s: f64,
    /// The machine's CPU time over that download (every process: the browser's, the seeders',
    /// the trackers'), in seconds per GiB downloaded. Unlike the speed, it does not depend on
    /// how much of the machine other work takes.
    cpu_s_per_gib: f64,
}

impl std::fmt::Display for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0} MB/s, {:.1} CPU s/GiB",
            self.mb_per_s, self.cpu_s_per_gib
        )
    }
}

/// Downloads the `.mtorrent` at `metainfo` (of a file of `size` bytes) in the page `browser`
/// shows, and measures it.
async fn download_in(browser: &Browser, metainfo: &Path, size: u64) -> Result<Download> {
    let cpu_before = machine_busy_seconds()?;
    browser.choose_file("download-mtorrent", metainfo).await;
    wait_until_downloaded(browser).await?;
    let cpu = machine_busy_seconds()? - cpu_before;
    Ok(Download {
        mb_per_s: size as f64 / 1e6 / seconds_of(browser, "download-status").await?,
        cpu_s_per_gib: cpu / (size as f64 / (1u64 << 30) as f64),
    })
}

/// Waits for the page's download to finish, without polling it: the page answers once its
/// status changes (or after 20 s, to keep each script short), so the wait takes nothing from
/// the download it measures.
async fn wait_until_downloaded(browser: &Browser) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    loop {
        let state = browser
            .eval(
                "const status = document.getElementById('download-status');
                 const settled = () => ['done', 'error'].includes(status.dataset.state);
                 if (settled()) return status.dataset.state;
                 return new Promise((resolve) => {
                   const observer = new MutationObserver(() => {
                     if (settled()) { observer.disconnect(); resolve(status.dataset.state); }
                   });
                   observer.observe(status, { attributes: true, attributeFilter: ['data-state'] });
                   setTimeout(() => { observer.disconnect(); resolve(status.dataset.state); }, 20000);
                 });",
            )
            .await;
        match state.as_str() {
            Some("done") => return Ok(()),
            Some("error") => {
                let (_, text) = browser.state("download-status").await;
                anyhow::bail!("the page's download failed: {text}");
            }
            _ => ensure!(
                std::time::Instant::now() < deadline,
                "the page's download took more than 10 minutes"
            ),
        }
    }
}

/// CPU seconds the machine has spent busy since it started, on every core: user, nice, system,
/// interrupt and softirq time from `/proc/stat` (not idle, I/O wait or steal).
fn machine_busy_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let fields: Vec<f64> = stat
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("cpu "))
        .context("no cpu line in /proc/stat")?
        .split_whitespace()
        .map(|field| field.parse().context("a number in /proc/stat"))
        .collect::<Result<_>>()?;
    ensure!(fields.len() >= 7, "a short cpu line in /proc/stat");
    // user nice system idle iowait irq softirq
    let busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6];
    // The kernel counts in USER_HZ ticks, 100 a second on Linux.
    Ok(busy / 100.0)
}

/// The hashing figures, in MB/s.
struct Hashing {
    native_one: f64,
    native_all: f64,
    page: f64,
    page_wasm: f64,
    page_reading: f64,
    wasm_in_memory: f64,
}

/// Hashes `file` natively (one thread, then every core) and in a page (WebCrypto, the
/// WebAssembly fallback, reading only, and the WebAssembly SHA-1 in memory); writes the page's
/// `.mtorrent` to `dir/data.bin.mtorrent`.
async fn hashing_figures(file: &Path, dir: &Path, mb: f64, trackers: &Trackers) -> Result<Hashing> {
    let mtorrent = sibling_binary("mtorrent")?;
    let native = |threads: &str| -> Result<f64> {
        let out = dir.join(format!("native-{threads}.mtorrent"));
        let mut argv = vec![
            mtorrent.to_str().context("UTF-8 path")?,
            "create",
            file.to_str().context("UTF-8 path")?,
            "--tracker",
            "ws://127.0.0.1:1/ws",
            "--tracker",
            "ws://127.0.0.1:2/ws",
            "--force",
            "-o",
            out.to_str().context("UTF-8 path")?,
        ];
        if threads != "all" {
            argv.extend(["--threads", threads]);
        }
        Ok(mb / peak_measure(&argv)?.seconds)
    };
    let native_one = native("1")?;
    let native_all = native("all")?;

    let browser = Browser::on_page(&trackers.page_url()).await;
    eprintln!("hashing in the page");
    browser.choose_file("share-file", file).await;
    browser.wait_for_state("share-status", &["seeding"]).await;
    let page = mb / seconds_of(&browser, "share-status").await?;
    eprintln!("page hashing: {page:.0} MB/s");
    eprintln!("WebAssembly SHA-1 in memory, on one thread");
    let wasm_in_memory = browser
        .eval(
            "return import('./pkg/mtorrent_web_peer.js').then(({ FileHasher }) => {
               const data = new Uint8Array(64 << 20);
               for (let i = 0; i < data.length; i += 4096) data[i] = i >> 12;
               const hasher = new FileHasher();
               hasher.update(data); // warms the code up
               const started = performance.now();
               for (let round = 0; round < 4; round++) hasher.update(data);
               const seconds = (performance.now() - started) / 1000;
               hasher.free();
               return 4 * data.length / 1e6 / seconds;
             });",
        )
        .await
        .as_f64()
        .context("the in-memory WebAssembly hashing speed")?;
    eprintln!("hashing in WebAssembly in the page");
    let page_wasm = mb / hashing_seconds(&browser, "wasm").await?;
    eprintln!("page hashing in WebAssembly: {page_wasm:.0} MB/s");
    // What the hashing cannot beat: reading the file, as the page's hashing workers do.
    let page_reading = mb / hashing_seconds(&browser, "read-only").await?;
    let document = browser
        .eval("return document.querySelector('#shared tbody tr:last-child a.mtorrent').dataset.document;")
        .await;
    std::fs::write(
        dir.join("data.bin.mtorrent"),
        document.as_str().context("the page's .mtorrent")?,
    )?;
    Ok(Hashing {
        native_one,
        native_all,
        page,
        page_wasm,
        page_reading,
        wasm_in_memory,
    })
}

/// The `.mtorrent` the first seeder writes once it has hashed the file.
async fn seeder_mtorrent(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("seed1.mtorrent");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let written = std::fs::read(&path).ok();
        if written
            .is_some_and(|bytes| mtorrent_shared::Metainfo::from_json(bytes.as_slice()).is_ok())
        {
            return Ok(path);
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "the first seeder wrote no .mtorrent"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The SHA-1 of every piece of the file behind the link `id`, hashed in the page with the
/// WebAssembly SHA-1 (a page that is not a secure context has no WebCrypto), as hex.
async fn piece_hashes_of_link(browser: &Browser, id: &str) -> Result<String> {
    browser
        .eval(&format!(
            "return import('./pkg/mtorrent_web_peer.js').then(async ({{ FileHasher }}) => {{
               const file = await fetch(document.getElementById({id:?}).href).then((r) => r.blob());
               const hasher = new FileHasher();
               for (let at = 0; at < file.size; at += 16 << 20) {{
                 hasher.update(new Uint8Array(await file.slice(at, at + (16 << 20)).arrayBuffer()));
               }}
               return [...hasher.finishHashes()].map((x) => x.toString(16).padStart(2, '0')).join('');
             }});"
        ))
        .await
        .as_str()
        .map(str::to_owned)
        .context("the piece hashes of the saved file")
}

/// A `mtorrent share` of `file` with its own catalog.
fn seeder(
    n: u32,
    file: &Path,
    dir: &Path,
    trackers: &Trackers,
    log: &dyn Fn(&str) -> PathBuf,
) -> Process {
    let catalog = dir.join(format!("seed{n}.sqlite"));
    let out = dir.join(format!("seed{n}.mtorrent"));
    let mut args: Vec<std::ffi::OsString> = vec![
        "share".into(),
        file.into(),
        "-o".into(),
        out.into(),
        "--catalog".into(),
        catalog.into(),
    ];
    args.extend(trackers.args().into_iter().map(Into::into));
    Process::start("mtorrent", args, &log(&format!("seed{n}")))
}

/// The seconds the page's hashing workers take over the file chosen to share, with `engine`
/// ("wasm", "webcrypto", or "read-only" to read without hashing).
async fn hashing_seconds(browser: &Browser, engine: &str) -> Result<f64> {
    browser
        .eval(&format!(
            "const file = document.getElementById('share-file').files[0];
             const started = performance.now();
             return window.mtorrentHashing
               .hashFile(file, 'ws://127.0.0.1:1/ws', 'ws://127.0.0.1:2/ws', () => {{}}, {engine:?})
               .then(() => (performance.now() - started) / 1000);"
        ))
        .await
        .as_f64()
        .with_context(|| format!("the page's hashing time with {engine}"))
}

/// The seconds the page recorded on element `id`.
async fn seconds_of(browser: &Browser, id: &str) -> Result<f64> {
    let value = browser
        .eval(&format!(
            "return document.getElementById({id:?}).dataset.seconds;"
        ))
        .await;
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("#{id} recorded no time"))
}
