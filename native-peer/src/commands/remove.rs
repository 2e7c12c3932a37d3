//! `mtorrent remove`: forget a file, and delete it only when asked.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use mtorrent_shared::InfoHash;

use super::peer::open_catalog;
use crate::cli::RemoveArgs;
use crate::output::read_metainfo;

pub fn run(args: RemoveArgs) -> Result<ExitCode> {
    let info_hash = match InfoHash::from_hex(&args.target) {
        Ok(hash) => hash,
        Err(_) => read_metainfo(args.target.as_ref())?.info_hash(),
    };
    let (catalog, _) = open_catalog(&args.catalog)?;
    let Some(entry) = catalog.get(info_hash)? else {
        bail!("{info_hash} is not in the catalog");
    };
    catalog.remove(info_hash)?;
    if args.delete_file {
        std::fs::remove_file(&entry.path)
            .with_context(|| format!("cannot delete {}", entry.path.display()))?;
        println!(
            "removed {} and deleted {}",
            entry.metainfo.name(),
            entry.path.display()
        );
    } else {
        println!(
            "removed {} (the file stays at {})",
            entry.metainfo.name(),
            entry.path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
