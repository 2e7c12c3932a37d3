//! Writing and reading the files the commands produce and consume.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use mtorrent_shared::{Metainfo, MAX_METAINFO_BYTES};

/// Reads and validates a `.mtorrent` file.
pub fn read_metainfo(path: &Path) -> Result<Metainfo> {
    let size = fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if size > MAX_METAINFO_BYTES as u64 {
        bail!(
            "{} is {size} bytes, too large for a .mtorrent (limit {MAX_METAINFO_BYTES})",
            path.display()
        );
    }
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Metainfo::from_json(&bytes)
        .with_context(|| format!("{} is not a valid .mtorrent", path.display()))
}

/// Writes `contents` to `path` so that a crash leaves either no file or the whole file: a
/// temporary file in the same directory is written, synced, then linked into place.
///
/// An existing file at `path` is replaced only if `replace` is set.
pub fn write_atomically(path: &Path, contents: &[u8], replace: bool) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".mtorrent-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    temp.write_all(contents)
        .and_then(|()| temp.as_file().sync_all())
        .with_context(|| format!("cannot write to {}", dir.display()))?;
    let persisted = if replace {
        temp.persist(path).map_err(|e| e.error)
    } else {
        temp.persist_noclobber(path).map_err(|e| e.error)
    };
    persisted.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} already exists (use --force to replace it)",
                path.display()
            )
        } else {
            anyhow::Error::new(e).context(format!("cannot write {}", path.display()))
        }
    })?;
    // Make the new directory entry itself durable.
    if let Ok(dir) = fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomically_refuses_to_replace_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.mtorrent");
        write_atomically(&path, b"one", false).unwrap();
        let err = write_atomically(&path, b"two", false).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err:#}");
        assert_eq!(fs::read(&path).unwrap(), b"one");
        write_atomically(&path, b"three", true).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"three");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left behind"
        );
    }

    #[test]
    fn read_metainfo_names_the_file_and_the_rule() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.mtorrent");
        fs::write(&path, b"{\"name\": 1}").unwrap();
        let err = format!("{:#}", read_metainfo(&path).unwrap_err());
        assert!(
            err.contains("bad.mtorrent is not a valid .mtorrent"),
            "{err}"
        );
        assert!(err.contains("`trackers`"), "{err}");
    }
}
