//! The command line, as clap parses it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// mtorrent: share files peer to peer, from the command line or the browser.
#[derive(Debug, Parser)]
#[command(version, propagate_version = true, after_help = EXIT_CODES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

const EXIT_CODES: &str = "Exit codes: 0 success; 1 the command found a problem it reports \
(e.g. pieces that do not match); 2 an error (bad arguments, unreadable or invalid input).";

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Hash a file and write its .mtorrent.
    Create(CreateArgs),
    /// Print the fields of a .mtorrent file.
    Inspect(InspectArgs),
    /// Check which pieces of a local file match a .mtorrent.
    #[command(
        after_help = "Exit codes: 0 every piece matches; 1 some pieces are missing or \
                            do not match; 2 an error."
    )]
    Verify(VerifyArgs),
    /// Share a file: write its .mtorrent, record it in the catalog, register it with the
    /// trackers and seed it (with everything else in the catalog) until stopped.
    Share(ShareArgs),
    /// Download a file from the peers of a .mtorrent, verifying every piece; resumes an
    /// interrupted download.
    Get(GetArgs),
    /// Seed everything in the catalog and finish unfinished downloads, until stopped.
    Seed(PeerArgs),
    /// Show every file in the catalog: state, progress and path.
    List(CatalogArgs),
    /// Stop sharing a file and forget it; the file itself stays unless --delete-file is given.
    Remove(RemoveArgs),
}

/// Where the catalog is.
#[derive(Debug, Args)]
pub struct CatalogArgs {
    /// The catalog database [default: $MTORRENT_HOME/catalog.sqlite, or
    /// ~/.local/share/mtorrent/catalog.sqlite].
    #[arg(long, env = "MTORRENT_CATALOG", value_name = "PATH")]
    pub catalog: Option<PathBuf>,
}

/// Options of the commands that run a peer.
#[derive(Debug, Args)]
pub struct PeerArgs {
    /// Address to listen on for other peers [default: 0.0.0.0:7003, or any free port if that
    /// one is taken].
    #[arg(long, env = "MTORRENT_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
    /// The URL other peers should dial (ws://, or wss://NAME:PORT/ with TLS), for relays, port
    /// forwards and certificates that name a host [default: the trackers announce the
    /// listening port on the address they see this peer connect from].
    #[arg(long, env = "MTORRENT_ADVERTISE", value_name = "URL")]
    pub advertise: Option<String>,
    /// Accept peers over TLS only (wss://) with this certificate chain (PEM, this peer's
    /// certificate first), and announce so. Needs --tls-key [default: `tls_cert` in
    /// config.toml].
    #[arg(
        long,
        env = "MTORRENT_TLS_CERT",
        value_name = "PATH",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM). Needs --tls-cert [default: `tls_key` in
    /// config.toml].
    #[arg(
        long,
        env = "MTORRENT_TLS_KEY",
        value_name = "PATH",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Limit uploads to all peers together to this many bytes per second.
    #[arg(long, env = "MTORRENT_MAX_UPLOAD_RATE", value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_upload_rate: Option<u64>,
    #[command(flatten)]
    pub catalog: CatalogArgs,
}

/// Arguments of `mtorrent share`.
#[derive(Debug, Args)]
pub struct ShareArgs {
    /// The file to share.
    pub file: PathBuf,
    /// A tracker's WebSocket URL; give two, tracker 1 first [default: MTORRENT_TRACKERS (two
    /// comma-separated URLs), else `trackers` in ~/.config/mtorrent/config.toml, else the two
    /// that scripts/run.sh starts on this machine].
    #[arg(long = "tracker", value_name = "URL", num_args = 1)]
    pub trackers: Vec<String>,
    /// Where to write the .mtorrent [default: <file name>.mtorrent in the current directory].
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub peer: PeerArgs,
    #[command(flatten)]
    pub hashing: HashingArgs,
}

/// Arguments of `mtorrent get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The .mtorrent of the file to download.
    pub mtorrent: PathBuf,
    /// Where to save it: a directory (the file keeps its name) or a file path
    /// [default: the current directory].
    pub destination: Option<PathBuf>,
    /// Keep seeding after the download completes, until stopped.
    #[arg(long)]
    pub seed: bool,
    #[command(flatten)]
    pub peer: PeerArgs,
}

/// Arguments of `mtorrent remove`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The file's .mtorrent, or its info hash.
    pub target: String,
    /// Also delete the downloaded or shared file.
    #[arg(long)]
    pub delete_file: bool,
    #[command(flatten)]
    pub catalog: CatalogArgs,
}

/// Arguments of `mtorrent create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The file to share.
    pub file: PathBuf,
    /// A tracker's WebSocket URL (ws://host:port/ws); give exactly two, tracker 1 first
    /// [default: MTORRENT_TRACKERS (two comma-separated URLs), else `trackers` in
    /// ~/.config/mtorrent/config.toml].
    #[arg(long = "tracker", value_name = "URL", num_args = 1)]
    pub trackers: Vec<String>,
    /// Where to write the .mtorrent [default: <file name>.mtorrent in the current directory].
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Replace the output file if it exists.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub hashing: HashingArgs,
}

/// Arguments of `mtorrent inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The .mtorrent file.
    pub mtorrent: PathBuf,
    /// Print the fields as one JSON object instead.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `mtorrent verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The .mtorrent file.
    pub mtorrent: PathBuf,
    /// The local file to check.
    pub path: PathBuf,
    #[command(flatten)]
    pub hashing: HashingArgs,
}

/// Options shared by the commands that hash files.
#[derive(Debug, Args)]
pub struct HashingArgs {
    /// Hashing threads [default: one per core].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn create_takes_repeated_trackers_in_order() {
        let cli = Cli::try_parse_from([
            "mtorrent",
            "create",
            "f",
            "--tracker",
            "ws://a/ws",
            "--tracker",
            "ws://b/ws",
        ])
        .unwrap();
        let Command::Create(args) = cli.command else {
            panic!("expected create");
        };
        assert_eq!(args.trackers, ["ws://a/ws", "ws://b/ws"]);
        assert_eq!(args.output, None);
    }

    #[test]
    fn zero_threads_are_refused() {
        assert!(Cli::try_parse_from([
            "mtorrent",
            "create",
            "f",
            "--tracker",
            "ws://a/ws",
            "--threads",
            "0"
        ])
        .is_err());
    }
}
