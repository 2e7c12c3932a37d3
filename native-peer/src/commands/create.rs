//! `mtorrent create`: hash a file and write its `.mtorrent`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use mtorrent_shared::{Lengths, Metainfo, MAX_FILE_SIZE};

use super::progress::with_progress;
use crate::cli::CreateArgs;
use crate::output;
use mtorrent_native_peer::config::Config;
use mtorrent_native_peer::hashing;

pub fn run(args: CreateArgs) -> Result<ExitCode> {
    let trackers = chosen_trackers(&args.trackers, None)?;
    let name = file_name(&args.file)?;
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
    let metainfo = hash_into_metainfo(&args.file, trackers, args.hashing.workers())?;
    output::write_atomically(&output, metainfo.to_json().as_bytes(), args.force)?;
    println!(
        "wrote {} (info hash {})",
        output.display(),
        metainfo.info_hash()
    );
    Ok(ExitCode::SUCCESS)
}

/// Exactly two tracker URLs, tracker 1 first.
pub fn two_trackers(urls: &[String]) -> Result<[String; 2]> {
    urls.to_vec().try_into().map_err(|urls: Vec<_>| {
        anyhow!(
            "give exactly two --tracker URLs (tracker 1, then tracker 2); got {}",
            urls.len()
        )
    })
}

/// The trackers a new `.mtorrent` names: the `--tracker` flags if any, else
/// `MTORRENT_TRACKERS` (two URLs, comma-separated), else `trackers` in the config file, else
/// `fallback` (what `share` uses on a machine that runs its own trackers), else an error that
/// says where they can be given.
pub fn chosen_trackers(flags: &[String], fallback: Option<[&str; 2]>) -> Result<[String; 2]> {
    if !flags.is_empty() {
        return two_trackers(flags);
    }
    if let Some(list) = std::env::var_os("MTORRENT_TRACKERS").filter(|v| !v.is_empty()) {
        let list = list.to_string_lossy();
        let urls: Vec<String> = list.split(',').map(|u| u.trim().to_owned()).collect();
        return two_trackers(&urls).context("in MTORRENT_TRACKERS");
    }
    if let Some(path) = Config::default_path() {
        if let Some(urls) = Config::load(&path)?.trackers {
            return two_trackers(&urls).with_context(|| format!("in {}", path.display()));
        }
    }
    match fallback {
        Some([one, two]) => Ok([one.to_owned(), two.to_owned()]),
        None => bail!(
            "name the trackers: two --tracker URLs, MTORRENT_TRACKERS, or `trackers` in ~/.config/mtorrent/config.toml"
        ),
    }
}

/// Hashes the file at `path` on `workers` threads into its `.mtorrent`.
pub fn hash_into_metainfo(path: &Path, trackers: [String; 2], workers: usize) -> Result<Metainfo> {
    let name = file_name(path)?;
    Metainfo::new(trackers.clone(), name.clone(), 0, Vec::new())?;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let metadata = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?;
    if !metadata.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    let size = metadata.len();
    if size > MAX_FILE_SIZE {
        bail!(
            "{} is {size} bytes; files up to {MAX_FILE_SIZE} bytes can be shared",
            path.display()
        );
    }
    let lengths = Lengths::new(size).expect("sizes up to MAX_FILE_SIZE have few enough pieces");
    let hashes = with_progress("hashing", size, |progress| {
        hashing::hash_file(&file, lengths, workers, progress)
    })
    .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Metainfo::new(trackers, name, size, hashes)?)
}

/// The name the file is shared under: the last component of its path.
fn file_name(path: &Path) -> Result<String> {
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} does not name a file", path.display()))?;
    name.to_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("the file name {name:?} is not valid UTF-8"))
}
