use super::*;
use mtorrent_shared::{PieceHasher, PIECE_SIZE};

fn metainfo(name: &str, size: usize) -> Metainfo {
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let mut hasher = PieceHasher::new();
    hasher.update(&data);
    let hashes = hasher.finish();
    Metainfo::new(
        ["ws://a:1/ws".into(), "ws://b:2/ws".into()],
        name.into(),
        hashes.size,
        hashes.hashes,
    )
    .unwrap()
}

fn entry(name: &str, pieces: usize) -> Entry {
    let metainfo = metainfo(name, pieces * PIECE_SIZE as usize - 7);
    let verified = Bitfield::new(metainfo.lengths().piece_count());
    Entry {
        path: PathBuf::from(format!("/data/{name}")),
        metainfo,
        state: EntryState::Downloading,
        verified,
        stamp: None,
        error: None,
    }
}

#[test]
fn entries_survive_reopening_with_their_progress() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/catalog.sqlite");
    let mut e = entry("a.bin", 3);
    let info_hash = e.metainfo.info_hash();
    {
        let mut catalog = Catalog::open(&path).unwrap();
        catalog.add(&e).unwrap();
        e.verified
            .set(e.metainfo.lengths().validate_piece_index(1).unwrap());
        e.stamp = Some(FileStamp {
            size: 42,
            mtime_ns: 7,
        });
        catalog
            .save_progress(info_hash, &e.verified, e.stamp)
            .unwrap();
        e.state = EntryState::Failed;
        e.error = Some("disk full".into());
        catalog
            .set_state(info_hash, e.state, e.error.as_deref())
            .unwrap();
    }
    let catalog = Catalog::open(&path).unwrap();
    assert_eq!(catalog.get(info_hash).unwrap(), Some(e.clone()));
    assert_eq!(catalog.list().unwrap(), [e]);
}

#[test]
fn the_same_file_at_another_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut catalog = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
    let e = entry("a.bin", 1);
    catalog.add(&e).unwrap();
    catalog.add(&e).unwrap();
    let mut elsewhere = e.clone();
    elsewhere.path = PathBuf::from("/other/a.bin");
    assert!(matches!(
        catalog.add(&elsewhere),
        Err(CatalogError::AlreadyPresent { path, .. }) if path == e.path
    ));
}

#[test]
fn remove_and_updates_of_missing_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut catalog = Catalog::open(&dir.path().join("c.sqlite")).unwrap();
    let e = entry("a.bin", 2);
    let info_hash = e.metainfo.info_hash();
    catalog.add(&e).unwrap();
    assert!(catalog.remove(info_hash).unwrap());
    assert!(!catalog.remove(info_hash).unwrap());
    assert_eq!(catalog.get(info_hash).unwrap(), None);
    assert!(matches!(
        catalog.set_state(info_hash, EntryState::Paused, None),
        Err(CatalogError::NotFound(_))
    ));
    assert!(matches!(
        catalog.save_progress(info_hash, &e.verified, None),
        Err(CatalogError::NotFound(_))
    ));
}

#[test]
fn damaged_rows_are_reported_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sqlite");
    let mut catalog = Catalog::open(&path).unwrap();
    let e = entry("a.bin", 2);
    catalog.add(&e).unwrap();
    catalog
        .connection
        .execute("UPDATE entries SET verified = x'FFFF'", [])
        .unwrap();
    let err = catalog.list().unwrap_err().to_string();
    assert!(err.contains("is damaged"), "{err}");
    catalog
        .connection
        .execute("UPDATE entries SET metainfo = '{}'", [])
        .unwrap();
    assert!(matches!(
        catalog.get(e.metainfo.info_hash()),
        Err(CatalogError::Damaged { .. })
    ));
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sqlite");
    Catalog::open(&path)
        .unwrap()
        .connection
        .pragma_update(None, "user_version", 9)
        .unwrap();
    assert!(matches!(
        Catalog::open(&path),
        Err(CatalogError::NewerSchema(9))
    ));
}

/// Several processes' worth of connections writing at once lose nothing.
#[test]
fn concurrent_writers_never_lose_an_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sqlite");
    Catalog::open(&path).unwrap();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut catalog = Catalog::open(&path).unwrap();
                for i in 0..15 {
                    let e = entry(&format!("w{w}-{i}.bin"), 1);
                    catalog.add(&e).unwrap();
                    catalog
                        .set_state(e.metainfo.info_hash(), EntryState::Seeding, None)
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let entries = Catalog::open(&path).unwrap().list().unwrap();
    assert_eq!(entries.len(), 60);
    assert!(entries.iter().all(|e| e.state == EntryState::Seeding));
}
