//! The `mtorrent` command: create, inspect, verify.

use mtorrent_e2e::command::Dir;
use mtorrent_e2e::random_bytes;
use mtorrent_shared::{Metainfo, PIECE_SIZE};
use sha1::{Digest, Sha1};

const PIECE: usize = PIECE_SIZE as usize;
const TRACKERS: [&str; 4] = [
    "--tracker",
    "ws://127.0.0.1:7001/ws",
    "--tracker",
    "ws://127.0.0.1:7002/ws",
];

/// The hash string computed independently of the project's code.
fn expected_hash_string(data: &[u8]) -> String {
    data.chunks(PIECE)
        .map(|piece| hex::encode(Sha1::digest(piece)))
        .collect()
}

fn create(dir: &Dir, file: &str) -> Metainfo {
    dir.command("mtorrent")
        .args(["create", file])
        .args(TRACKERS)
        .run()
        .success();
    let document = dir.read(format!("{file}.mtorrent"));
    Metainfo::from_json(&document).expect("create writes a valid .mtorrent")
}

#[test]
fn create_inspect_verify_round_trip_for_every_size_class() {
    for (i, size) in [0, 1, PIECE - 1, PIECE, PIECE + 1, 3 * PIECE + 777]
        .into_iter()
        .enumerate()
    {
        let dir = Dir::new();
        let data = random_bytes(size, i as u64);
        dir.write("data.bin", &data);
        let meta = create(&dir, "data.bin");

        let json: serde_json::Value =
            serde_json::from_slice(&dir.read("data.bin.mtorrent")).unwrap();
        assert_eq!(json["name"], "data.bin");
        assert_eq!(json["size"], size as u64);
        assert_eq!(
            json["pieces"].as_str().unwrap(),
            expected_hash_string(&data),
            "size {size}"
        );
        assert_eq!(json["trackers"][0], "ws://127.0.0.1:7001/ws");
        assert_eq!(json["trackers"][1], "ws://127.0.0.1:7002/ws");

        let inspected = dir
            .command("mtorrent")
            .args(["inspect", "data.bin.mtorrent"])
            .stdout();
        assert!(
            inspected.contains(&meta.info_hash().to_hex()),
            "{inspected}"
        );
        assert!(
            inspected.contains(&format!("({size} bytes)")) || size < 1024,
            "{inspected}"
        );
        let pieces = size.div_ceil(PIECE);
        assert!(
            inspected.contains(&format!("pieces:     {pieces}\n")),
            "{inspected}"
        );

        dir.command("mtorrent")
            .args(["verify", "data.bin.mtorrent", "data.bin"])
            .run()
            .success()
            .stdout_contains(&format!("{pieces}/{pieces} pieces match"));
    }
}

#[test]
fn thread_count_does_not_change_the_result() {
    let dir = Dir::new();
    dir.write("data.bin", random_bytes(4 * PIECE + 5, 9));
    let mut documents = Vec::new();
    for threads in ["1", "3"] {
        dir.command("mtorrent")
            .args(["create", "data.bin", "--force", "--threads", threads])
            .args(TRACKERS)
            .run()
            .success();
        documents.push(dir.read("data.bin.mtorrent"));
    }
    assert_eq!(documents[0], documents[1]);
}

#[test]
fn inspect_json_reports_the_same_fields() {
    let dir = Dir::new();
    dir.write("a.bin", random_bytes(PIECE + 3, 1));
    let meta = create(&dir, "a.bin");
    let out = dir
        .command("mtorrent")
        .args(["inspect", "--json", "a.bin.mtorrent"])
        .stdout();
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["info_hash"], meta.info_hash().to_hex());
    assert_eq!(json["pieces"], 2);
    assert_eq!(json["size"], PIECE as u64 + 3);
}

#[test]
fn verify_reports_corrupt_and_missing_pieces() {
    let dir = Dir::new();
    let mut data = random_bytes(5 * PIECE + 10, 2);
    dir.write("data.bin", &data);
    create(&dir, "data.bin");

    data[PIECE + 17] ^= 0x40;
    data[3 * PIECE] ^= 0x01;
    dir.write("data.bin", &data);
    dir.command("mtorrent")
        .args(["verify", "data.bin.mtorrent", "data.bin"])
        .run()
        .code(1)
        .stdout_contains("4/6 pieces match")
        .stdout_contains("missing or wrong: 1, 3\n");

    dir.write("data.bin", &data[..2 * PIECE + 5]);
    dir.command("mtorrent")
        .args(["verify", "data.bin.mtorrent", "data.bin"])
        .run()
        .code(1)
        .stdout_contains("missing or wrong: 1-5\n")
        .stdout_contains(&format!("size: {} bytes on disk", 2 * PIECE + 5));
}

/// A valid document for `data`, as JSON to edit.
fn valid_document(data: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    serde_json::json!({
        "trackers": ["ws://127.0.0.1:7001/ws", "ws://127.0.0.1:7002/ws"],
        "name": "data.bin",
        "size": data.len(),
        "piece_size": PIECE,
        "pieces": expected_hash_string(data),
    })
    .as_object()
    .unwrap()
    .clone()
}

#[test]
fn malformed_mtorrents_are_refused_with_a_clear_error() {
    let data = random_bytes(PIECE + 1, 3);
    let edit = |key: &str, value: serde_json::Value| {
        let mut doc = valid_document(&data);
        doc.insert(key.into(), value);
        serde_json::to_vec(&doc).unwrap()
    };
    let mut missing = valid_document(&data);
    missing.remove("size");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "traversal",
            edit("name", "../../etc/passwd".into()),
            "path separator",
        ),
        (
            "dotdot",
            edit("name", "..".into()),
            "outside the destination",
        ),
        ("nul", edit("name", "a\u{0}b".into()), "control character"),
        (
            "short hashes",
            edit("pieces", "ab".repeat(20).into()),
            "hash string has 40 characters",
        ),
        (
            "bad hex",
            edit("pieces", "zz".repeat(40).into()),
            "non-hex character at position 0",
        ),
        (
            "huge",
            edit("size", (1u64 << 50).into()),
            "exceeds the limit",
        ),
        ("bad json", b"{\"name\": ".to_vec(), "not valid JSON"),
        (
            "missing field",
            serde_json::to_vec(&missing).unwrap(),
            "no `size` field",
        ),
    ];
    for (label, document, message) in cases {
        let dir = Dir::new();
        dir.write("data.bin", &data);
        dir.write("bad.mtorrent", &document);
        let before = dir.entries();
        for command in [
            &["inspect", "bad.mtorrent"][..],
            &["verify", "bad.mtorrent", "data.bin"],
        ] {
            let finished = dir
                .command("mtorrent")
                .args(command)
                .run()
                .code(2)
                .stderr_contains("bad.mtorrent is not a valid .mtorrent")
                .stderr_contains(message);
            assert_eq!(
                finished.stderr().lines().count(),
                1,
                "{label}: one line\n{finished}"
            );
        }
        assert_eq!(dir.entries(), before, "{label}: nothing written");
        assert_eq!(dir.read("data.bin"), data, "{label}: data untouched");
    }
}

#[test]
fn create_refuses_bad_input_and_writes_nothing() {
    let dir = Dir::new();
    dir.write("data.bin", random_bytes(1000, 4));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["create", "missing.bin"], "cannot read missing.bin"),
        (vec!["create", "."], "does not name a file"),
        (
            vec!["create", "data.bin", "--tracker", "ws://a/ws"],
            "exactly two --tracker",
        ),
        (
            vec![
                "create",
                "data.bin",
                "--tracker",
                "http://a/",
                "--tracker",
                "ws://b/ws",
            ],
            "not a ws:// or wss:// URL",
        ),
    ];
    for (args, message) in cases {
        let mut command = dir.command("mtorrent");
        command.args(&args);
        if args.iter().all(|a| *a != "--tracker") {
            command.args(TRACKERS);
        }
        command.run().code(2).stderr_contains(message);
        assert_eq!(dir.entries(), ["data.bin"], "{args:?} wrote nothing");
    }
}

#[test]
fn trackers_come_from_the_flags_then_the_environment_then_the_config_file() {
    let dir = Dir::new();
    dir.write("data.bin", random_bytes(1000, 6));
    let trackers_of = |out: &str| {
        let document = dir.read(out);
        let metainfo = Metainfo::from_json(&document).unwrap();
        metainfo.trackers().clone()
    };
    // Nothing anywhere: a clear error, nothing written.
    dir.command("mtorrent")
        .args(["create", "data.bin", "-o", "none.mtorrent"])
        .run()
        .code(2)
        .stderr_contains("name the trackers");
    assert!(!dir.join("none.mtorrent").exists());
    // The config file.
    std::fs::create_dir_all(dir.join(".config/mtorrent")).unwrap();
    dir.write(
        ".config/mtorrent/config.toml",
        "trackers = [\"ws://config-1:7001/ws\", \"ws://config-2:7002/ws\"]\n",
    );
    dir.command("mtorrent")
        .args(["create", "data.bin", "-o", "config.mtorrent"])
        .run()
        .success();
    assert_eq!(
        trackers_of("config.mtorrent"),
        ["ws://config-1:7001/ws", "ws://config-2:7002/ws"]
    );
    // The environment wins over the file, and flags over both.
    dir.command("mtorrent")
        .args(["create", "data.bin", "-o", "env.mtorrent"])
        .env("MTORRENT_TRACKERS", "ws://env-1/ws, ws://env-2/ws")
        .run()
        .success();
    assert_eq!(
        trackers_of("env.mtorrent"),
        ["ws://env-1/ws", "ws://env-2/ws"]
    );
    dir.command("mtorrent")
        .args(["create", "data.bin", "-o", "flags.mtorrent"])
        .args(TRACKERS)
        .env("MTORRENT_TRACKERS", "ws://env-1/ws,ws://env-2/ws")
        .run()
        .success();
    assert_eq!(trackers_of("flags.mtorrent"), [TRACKERS[1], TRACKERS[3]]);
    // A config file with a mistake is refused, naming the file.
    dir.write(
        ".config/mtorrent/config.toml",
        "tracker = [\"ws://a/ws\"]\n",
    );
    dir.command("mtorrent")
        .args(["create", "data.bin", "-o", "bad.mtorrent"])
        .run()
        .code(2)
        .stderr_contains("config.toml is not a valid mtorrent config");
    assert!(!dir.join("bad.mtorrent").exists());
}

#[test]
fn create_refuses_to_overwrite_without_force() {
    let dir = Dir::new();
    dir.write("data.bin", b"first");
    create(&dir, "data.bin");
    let first = dir.read("data.bin.mtorrent");
    dir.write("data.bin", b"second");
    dir.command("mtorrent")
        .args(["create", "data.bin"])
        .args(TRACKERS)
        .run()
        .code(2)
        .stderr_contains("already exists (use --force");
    assert_eq!(dir.read("data.bin.mtorrent"), first);
    dir.command("mtorrent")
        .args(["create", "data.bin", "--force", "-o", "data.bin.mtorrent"])
        .args(TRACKERS)
        .run()
        .success();
    assert_ne!(dir.read("data.bin.mtorrent"), first);
    assert_eq!(dir.entries(), ["data.bin", "data.bin.mtorrent"]);
}
