//! `mtorrent create`: hash a file and write its `.mtorrent`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use mtorrent_shared::{Lengths, Metainfo, MAX_FILE_SIZE};

use super::progress::with_progress;
use crate::cli::CreateArgs;
use crate::output;
use mtorrent_native_peer::hashing;

pub fn run(args: CreateArgs) -> Result<ExitCode> {
    let trackers: [String; 2] = args.trackers.clone().try_into().map_err(|urls: Vec<_>| {
        anyhow!(
            "give exactly two --tracker URLs (tracker 1, then tracker 2); got {}",
            urls.len()
        )
    })?;
    let name = file_name(&args.file)?;
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let metadata = file
        .metadata()
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    if !metadata.is_file() {
        bail!("{} is not a regular file", args.file.display());
    }
    let size = metadata.len();
    if size > MAX_FILE_SIZE {
        bail!(
            "{} is {size} bytes; files up to {MAX_FILE_SIZE} bytes can be shared",
            args.file.display()
        );
    }
    let lengths = Lengths::new(size).expect("sizes up to MAX_FILE_SIZE have few enough pieces");
    // Validate everything but the hashes before the long part, so a bad name or URL fails fast.
    Metainfo::new(trackers.clone(), name.clone(), 0, Vec::new())?;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{name}.mtorrent")));
    if output.exists() && !args.force {
        bail!(
            "{} already exists (use --force to replace it)",
            output.display()
        );
    }

    let hashes = with_progress("hashing", size, |progress| {
        hashing::hash_file(&file, lengths, args.hashing.workers(), progress)
    })
    .with_context(|| format!("cannot read {}", args.file.display()))?;
    let metainfo = Metainfo::new(trackers, name, size, hashes)?;
    output::write_atomically(&output, metainfo.to_json().as_bytes(), args.force)?;
    println!(
        "wrote {} (info hash {})",
        output.display(),
        metainfo.info_hash()
    );
    Ok(ExitCode::SUCCESS)
}

/// The name the file is shared under: the last component of its path.
fn file_name(path: &std::path::Path) -> Result<String> {
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} does not name a file", path.display()))?;
    name.to_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("the file name {name:?} is not valid UTF-8"))
}
