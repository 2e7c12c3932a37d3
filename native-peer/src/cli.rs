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
}

/// Arguments of `mtorrent create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The file to share.
    pub file: PathBuf,
    /// A tracker's WebSocket URL (ws://host:port/ws); give exactly two, tracker 1 first.
    #[arg(long = "tracker", value_name = "URL", required = true, num_args = 1)]
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
    fn create_without_tracker_and_zero_threads_are_refused() {
        assert!(Cli::try_parse_from(["mtorrent", "create", "f"]).is_err());
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
