//! One module per subcommand; [`run`] dispatches.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command, HashingArgs};
use mtorrent_native_peer::hashing;

mod create;
mod get;
mod inspect;
mod list;
mod peer;
mod progress;
mod remove;
mod seed;
mod share;
mod supervisor;
mod verify;

/// Runs the parsed command line and returns the exit code to use.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Create(args) => create::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Share(args) => share::run(args),
        Command::Get(args) => get::run(args),
        Command::Seed(args) => seed::run(args),
        Command::List(args) => list::run(args),
        Command::Remove(args) => remove::run(args),
    }
}

impl HashingArgs {
    /// How many hashing threads to run.
    fn workers(&self) -> usize {
        self.threads
            .map_or_else(hashing::default_workers, usize::from)
    }
}

/// A byte count for people: `1.5 GiB (1610612736 bytes)`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {} ({bytes} bytes)", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn human_bytes_picks_the_largest_unit_below_the_value() {
        assert_eq!(human_bytes(0), "0 bytes");
        assert_eq!(human_bytes(1023), "1023 bytes");
        assert_eq!(human_bytes(1024), "1.0 KiB (1024 bytes)");
        assert_eq!(human_bytes(1536 * 1024), "1.5 MiB (1572864 bytes)");
        assert_eq!(human_bytes(1 << 40), "1.0 TiB (1099511627776 bytes)");
    }
}
