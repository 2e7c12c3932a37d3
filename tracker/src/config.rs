//! The tracker's configuration: flags, each also settable by an environment variable.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::registry::RegistryLimits;

/// mtorrent-tracker: the WebSocket tracker of mtorrent. It keeps, per file, the swarm of peers
/// that have it; replicates every change with its twin tracker; keeps the catalog of shared
/// `.mtorrent` files on disk; and serves the web page, `/stats` and `/metrics` on the same port.
/// Peers and the twin connect to `ws://ADDR/ws`, or `wss://ADDR/ws` with --tls-cert and
/// --tls-key.
#[derive(Debug, Clone, Parser)]
#[command(version)]
pub struct Config {
    /// Address to listen on (port 0: any free port; the chosen address is printed on stdout
    /// as `listening on IP:PORT`).
    #[arg(
        long,
        env = "MTORRENT_TRACKER_LISTEN",
        default_value = "127.0.0.1:7001"
    )]
    pub listen: SocketAddr,
    /// The twin tracker's WebSocket URL (ws://HOST:PORT/ws, or wss:// for a twin with TLS,
    /// whose certificate must be trusted: the system's roots, or SSL_CERT_FILE/SSL_CERT_DIR
    /// instead when set). Without it, the tracker still replicates with a twin that connects
    /// to it.
    #[arg(long, env = "MTORRENT_TRACKER_TWIN", value_name = "URL")]
    pub twin: Option<String>,
    /// A secret shared with the twin; a twin link is accepted only with it. Required with
    /// --twin, and to accept a twin that connects.
    #[arg(
        long,
        env = "MTORRENT_TRACKER_TWIN_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub twin_secret: Option<String>,
    /// Serve https:// and wss:// on the same port with this certificate chain (PEM, the
    /// tracker's certificate first). Needs --tls-key.
    #[arg(
        long,
        env = "MTORRENT_TRACKER_TLS_CERT",
        value_name = "PATH",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM). Needs --tls-cert.
    #[arg(
        long,
        env = "MTORRENT_TRACKER_TLS_KEY",
        value_name = "PATH",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Directory for the catalog of .mtorrent files; without it the catalog lives in memory only.
    #[arg(long, env = "MTORRENT_TRACKER_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Directory of the web page to serve at `/`.
    #[arg(
        long,
        env = "MTORRENT_TRACKER_WWW",
        value_name = "DIR",
        default_value = "www"
    )]
    pub www: PathBuf,
    /// Seconds between a peer's announces, told to every peer.
    #[arg(long, env = "MTORRENT_TRACKER_INTERVAL", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub interval: u64,
    /// Seconds after which a peer that stopped announcing is dropped (more than --interval).
    #[arg(long, env = "MTORRENT_TRACKER_PEER_TIMEOUT", default_value_t = 75, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub peer_timeout: u64,
    /// Most simultaneous WebSocket connections.
    #[arg(
        long,
        env = "MTORRENT_TRACKER_MAX_CONNECTIONS",
        default_value_t = 20_000
    )]
    pub max_connections: usize,
    /// Most simultaneous WebSocket connections from one client address (behind a trusted
    /// proxy, the address the proxy names).
    #[arg(
        long,
        env = "MTORRENT_TRACKER_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 256
    )]
    pub max_connections_per_address: usize,
    /// Largest message accepted, in bytes.
    #[arg(long, env = "MTORRENT_TRACKER_MAX_MESSAGE_BYTES", default_value_t = mtorrent_shared::tracker::MAX_TRACKER_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
    /// Bytes of replies queued for one connection that it has not read yet; a connection
    /// that leaves them unread for 10 s is dropped, and meanwhile nothing more is read from it.
    /// A single larger reply (a big `.mtorrent`) is still sent, alone.
    #[arg(
        long,
        env = "MTORRENT_TRACKER_MAX_QUEUED_BYTES",
        default_value_t = 1 << 20
    )]
    pub max_queued_bytes: usize,
    /// Bytes of `.mtorrent` documents the catalog keeps in all (each kept in canonical form).
    #[arg(long, env = "MTORRENT_TRACKER_MAX_CATALOG_BYTES", default_value_t = 1 << 30)]
    pub max_catalog_bytes: usize,
    /// Bytes of `.mtorrent` documents peers at one address may register (a 1 GiB file's
    /// document is about 80 KiB).
    #[arg(
        long,
        env = "MTORRENT_TRACKER_MAX_CATALOG_BYTES_PER_ADDRESS",
        default_value_t = 256 << 20
    )]
    pub max_catalog_bytes_per_address: usize,
    /// Hours after which a file that no peer seeds is dropped from the catalog.
    #[arg(long, env = "MTORRENT_TRACKER_UNSEEDED_FILE_HOURS", default_value_t = 168, value_parser = clap::value_parser!(u64).range(1..=87_600))]
    pub unseeded_file_hours: u64,
    /// Seconds a WebSocket connection may stay silent: the tracker pings every third of it,
    /// and drops a connection from which nothing, not even the answer, arrived for that long.
    #[arg(long, env = "MTORRENT_TRACKER_IDLE_TIMEOUT", default_value_t = 90, value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub idle_timeout: u64,
    /// Most swarms one connection may announce in. A peer node announces every file it
    /// shares over one connection, so this bounds the library of one node.
    #[arg(
        long,
        env = "MTORRENT_TRACKER_MAX_SWARMS_PER_CONNECTION",
        default_value_t = 100_000
    )]
    pub max_swarms_per_connection: usize,
    /// Messages per second one peer connection may send, on average.
    #[arg(long, env = "MTORRENT_TRACKER_RATE_LIMIT", default_value_t = 1_000)]
    pub rate_limit: u32,
    /// Messages one peer connection may send in a burst above the average.
    #[arg(long, env = "MTORRENT_TRACKER_RATE_BURST", default_value_t = 2_000)]
    pub rate_burst: u32,
    /// Refused messages (malformed, over the rate, not allowed) before a connection is closed.
    #[arg(long, env = "MTORRENT_TRACKER_MAX_STRIKES", default_value_t = 10)]
    pub max_strikes: u32,
    /// A reverse proxy in front of the tracker (repeat for several, or comma-separate in the
    /// environment). A connection from one of these addresses is taken to come from the last
    /// address in its `X-Forwarded-For` header, the client the proxy saw, so that peers'
    /// announces are completed with their own addresses rather than the proxy's.
    #[arg(
        long = "trusted-proxy",
        env = "MTORRENT_TRACKER_TRUSTED_PROXIES",
        value_name = "IP",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<IpAddr>,
    /// A relay that announces peers at other hosts than its own (repeat for several, or
    /// comma-separate in the environment). Everyone else may announce a URL only at the
    /// address the announce comes from (or a name that resolves to it), so that nobody can
    /// list a victim's address for the swarm to dial.
    #[arg(
        long = "trusted-relay",
        env = "MTORRENT_TRACKER_TRUSTED_RELAYS",
        value_name = "IP",
        value_delimiter = ','
    )]
    pub trusted_relays: Vec<IpAddr>,
}

impl Config {
    /// Checks what clap cannot: relations between flags.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.peer_timeout > self.interval,
            "--peer-timeout ({}) must be longer than --interval ({})",
            self.peer_timeout,
            self.interval
        );
        if let Some(twin) = &self.twin {
            anyhow::ensure!(
                mtorrent_shared::tracker::is_ws_url(twin),
                "--twin {twin:?} is not a ws:// or wss:// URL"
            );
            anyhow::ensure!(
                self.twin_secret.is_some(),
                "--twin needs --twin-secret (the same on both trackers)"
            );
        }
        if let Some(secret) = &self.twin_secret {
            anyhow::ensure!(
                secret.len() >= 16,
                "--twin-secret must be at least 16 characters"
            );
        }
        anyhow::ensure!(
            self.rate_limit > 0 && self.rate_burst > 0,
            "rate limits must be positive"
        );
        Ok(())
    }

    /// The catalog's limits.
    pub fn catalog_limits(&self) -> crate::catalog::CatalogLimits {
        crate::catalog::CatalogLimits {
            max_bytes: self.max_catalog_bytes,
            max_bytes_per_address: self.max_catalog_bytes_per_address,
            unseeded_ttl: Duration::from_secs(self.unseeded_file_hours * 3600),
        }
    }

    /// The registry's limits.
    pub fn registry_limits(&self) -> RegistryLimits {
        RegistryLimits {
            interval: Duration::from_secs(self.interval),
            peer_timeout: Duration::from_secs(self.peer_timeout),
            max_swarms_per_connection: self.max_swarms_per_connection,
            max_numwant: 200,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent_and_defaults_are_valid() {
        Config::command().debug_assert();
        let config = Config::try_parse_from(["mtorrent-tracker"]).unwrap();
        config.validate().unwrap();
    }

    #[test]
    fn bad_relations_are_refused() {
        let config =
            Config::try_parse_from(["t", "--interval", "60", "--peer-timeout", "30"]).unwrap();
        assert!(config.validate().is_err());
        let config = Config::try_parse_from(["t", "--twin", "http://x/"]).unwrap();
        assert!(config.validate().is_err());
        let config = Config::try_parse_from(["t", "--twin", "ws://x/ws"]).unwrap();
        assert!(config.validate().is_err(), "--twin without a secret");
        let config =
            Config::try_parse_from(["t", "--twin", "ws://x/ws", "--twin-secret", "short"]).unwrap();
        assert!(config.validate().is_err(), "a short secret");
        let config = Config::try_parse_from([
            "t",
            "--twin",
            "ws://x/ws",
            "--twin-secret",
            "0123456789abcdef",
        ])
        .unwrap();
        config.validate().unwrap();
        let config = Config::try_parse_from([
            "t",
            "--twin",
            "wss://x/ws",
            "--twin-secret",
            "0123456789abcdef",
        ])
        .unwrap();
        config.validate().unwrap();
    }

    #[test]
    fn a_tls_certificate_needs_its_key_and_a_key_its_certificate() {
        assert!(Config::try_parse_from(["t", "--tls-cert", "c.pem"]).is_err());
        assert!(Config::try_parse_from(["t", "--tls-key", "k.pem"]).is_err());
        let config =
            Config::try_parse_from(["t", "--tls-cert", "c.pem", "--tls-key", "k.pem"]).unwrap();
        assert_eq!(config.tls_cert, Some(PathBuf::from("c.pem")));
        assert_eq!(config.tls_key, Some(PathBuf::from("k.pem")));
    }
}
