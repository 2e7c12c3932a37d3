//! `mtorrent`: the command-line peer.
//!
//! Exit codes: 0 success; 1 the command ran but found a problem it reports (for example pieces
//! that do not match in `verify`); 2 an error (bad arguments, unreadable or invalid input).

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod commands;
mod output;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "mtorrent=warn,mtorrent_native_peer=warn".into()),
        )
        .init();
    // A node keeps a file and a lock open per shared file: a library of thousands of files
    // needs more than the usual soft limit of 1,024 descriptors.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::debug!("cannot raise the open file limit: {e}");
    }
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
