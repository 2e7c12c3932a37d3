//! Helpers for the end-to-end tests: finding the project's binaries, running commands, and
//! supervising long-running processes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

/// The path of one of the workspace's binaries (`mtorrent`, `mtorrent-tracker`, ...), built in
/// the same profile as the running test.
///
/// `CARGO_BIN_EXE_*` only exists inside the package that owns a binary, so this looks next to
/// the running executable instead: tests run from `target/<profile>/deps/`, benchmarks from
/// `target/<profile>/`, where the binaries live.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the executable has a path");
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let here = exe.parent().expect("the executable is in a directory");
    let profile_dir = if here.ends_with("deps") {
        here.parent().expect("deps is in target/<profile>")
    } else {
        here
    };
    let path = profile_dir.join(file);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first (`cargo test --workspace` builds it)",
        path.display()
    );
    path
}

/// Makes `ring` the process's default TLS provider, once: WebDriver's client builds its TLS
/// configuration from the default, and with both `ring` and `aws-lc` in the build rustls
/// cannot choose one by itself.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Where peers under test listen (`MTORRENT_LISTEN`): loopback, a port the system picks.
pub const TEST_LISTEN: &str = "127.0.0.1:0";

pub mod bad_peer;
pub mod browser;
pub mod command;
pub mod hostile;
pub mod launcher;
pub mod netns;
pub mod process;
pub mod swarm;
pub mod tls;
pub mod tracker_client;

/// Deterministic pseudo-random bytes (SplitMix64): the same for the same seed, different for
/// different seeds, fast enough for files of hundreds of MiB.
pub fn random_bytes(size: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(size);
    out
}

/// The page's directory, `www/`, whose `pkg/` holds the built browser peer.
pub fn www_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../www")
}

/// A plain HTTP GET of `path` from `addr`: the status and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_get_over(TcpStream::connect(addr).unwrap(), addr, path)
}

/// A plain HTTP GET of `path` from `addr` over `stream`, a connection already open to it (made
/// inside a network namespace, say): the status and the body.
pub fn http_get_over(mut stream: TcpStream, addr: SocketAddr, path: &str) -> (u16, String) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    parse_http_response(&response)
}

/// The status and body of a whole HTTP/1.1 response.
fn parse_http_response(response: &str) -> (u16, String) {
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Waits until the `/stats` of the tracker at `addr` satisfy `check`, for at most 30 s;
/// `what` says what was awaited when it never comes.
pub fn wait_for_tracker_stats(
    addr: SocketAddr,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) {
    wait_for_stats(|| tracker_stats(addr), what, check);
}

/// Waits until the stats that `fetch` reads satisfy `check`, for at most 30 s; `what` says what
/// was awaited when it never comes.
pub fn wait_for_stats(
    fetch: impl Fn() -> serde_json::Value,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stats = fetch();
        if check(&stats) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never {what}: {stats}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A tracker's `/stats`, parsed.
pub fn tracker_stats(addr: SocketAddr) -> serde_json::Value {
    parse_stats(http_get(addr, "/stats"))
}

/// The `/stats` response `(status, body)`, parsed.
pub fn parse_stats((status, body): (u16, String)) -> serde_json::Value {
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("bad /stats {body:?}: {e}"))
}
