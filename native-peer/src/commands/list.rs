//! `mtorrent list`: every file in the catalog.

use std::process::ExitCode;

use anyhow::Result;

use super::peer::open_catalog;
use crate::cli::CatalogArgs;

pub fn run(args: CatalogArgs) -> Result<ExitCode> {
    let (catalog, locks) = open_catalog(&args)?;
    let entries = catalog.list()?;
    if entries.is_empty() {
        println!("the catalog is empty");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<12} {:>7}  {:<40}  path", "state", "done", "info hash");
    for entry in entries {
        let pieces = entry.metainfo.lengths().piece_count();
        let done = if pieces == 0 {
            100.0
        } else {
            f64::from(entry.verified.count_ones()) * 100.0 / f64::from(pieces)
        };
        println!(
            "{:<12} {:>6.1}%  {}  {}",
            entry.state.as_str(),
            done,
            entry.metainfo.info_hash(),
            entry.path.display()
        );
        if let Some(pid) = locks.entry_holder(entry.metainfo.info_hash()) {
            println!("{:<12} active in process {pid}", "");
        }
        if let Some(error) = entry.error {
            println!("{:<12} {error}", "");
        }
    }
    Ok(ExitCode::SUCCESS)
}
