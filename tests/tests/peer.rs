//! The native peer: share, get from several peers, the catalog, failover.

use std::time::{Duration, Instant};

use mtorrent_e2e::command::Dir;
use mtorrent_e2e::launcher::Launcher;
use mtorrent_e2e::swarm::{
    get, get_and_seed, number_after, share, share_slowly, share_through, wait_until_file_equals,
    Trackers,
};
use mtorrent_e2e::{random_bytes, wait_for_tracker_stats};
#[test]
fn a_leecher_downloads_an_identical_file_from_one_seeder() {
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    let data = random_bytes(5 << 20 | 12_345, 1);
    let _seeder = share(&dir, "seeder", "data.bin", &data, &trackers);
    get(&dir, "leecher", &dir.join("data.bin.mtorrent"))
        .success()
        .stdout_contains("downloaded");
    assert_eq!(std::fs::read(dir.join("leecher/data.bin")).unwrap(), data);
    let listed = dir
        .command("mtorrent")
        .args(["list", "--catalog"])
        .args([dir.join("leecher/catalog.sqlite")])
        .stdout();
    // The download is complete, and no process serves it once `get` has ended.
    assert!(
        listed.contains("complete") && listed.contains("100.0%") && listed.contains("not served"),
        "{listed}"
    );
    assert!(!listed.contains("seeding now"), "{listed}");
}

#[test]
fn three_seeders_serve_one_leecher() {
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    let data = random_bytes(24 << 20, 2);
    let mtorrent = dir.join("data.bin.mtorrent");
    let _first = share(&dir, "first", "data.bin", &data, &trackers);
    let _second = get_and_seed(&dir, "second", &mtorrent);
    wait_until_file_equals(&dir.join("second/data.bin"), &data);
    let _third = get_and_seed(&dir, "third", &mtorrent);
    wait_until_file_equals(&dir.join("third/data.bin"), &data);
    get(&dir, "leecher", &mtorrent).success();
    assert_eq!(std::fs::read(dir.join("leecher/data.bin")).unwrap(), data);
}

#[test]
fn a_download_completes_through_tracker_two_when_tracker_one_is_down() {
    let dir = Dir::new();
    let mut trackers = Trackers::start(&dir);
    let data = random_bytes(3 << 20, 3);
    let _seeder = share(&dir, "seeder", "data.bin", &data, &trackers);
    // Let the registration reach tracker 2, then kill tracker 1.
    std::thread::sleep(std::time::Duration::from_millis(500));
    trackers.one.kill();
    get(&dir, "leecher", &dir.join("data.bin.mtorrent")).success();
    assert_eq!(std::fs::read(dir.join("leecher/data.bin")).unwrap(), data);
}

#[test]
fn a_tracker_that_never_answers_costs_a_download_no_timeout() {
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    // Tracker 1 is a black hole: the system accepts connections to it, nothing ever answers,
    // as behind a partition that drops packets.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = format!("ws://{}/ws", black_hole.local_addr().unwrap());
    let data = random_bytes(2 << 20, 5);
    let mtorrent = dir.join("data.bin.mtorrent");
    let tracker_args = [
        "--tracker".into(),
        silent,
        "--tracker".into(),
        trackers.two.ws_url(),
    ];
    let _seeder = share_through(
        &Launcher::local(),
        &dir,
        "seeder",
        "data.bin",
        &data,
        &tracker_args,
    );
    wait_for_tracker_stats(trackers.two.addr(), "the seeder reached tracker 2", |s| {
        s["peers"] == 1
    });
    let started = Instant::now();
    get(&dir, "leecher", &mtorrent).success();
    let took = started.elapsed();
    assert_eq!(std::fs::read(dir.join("leecher/data.bin")).unwrap(), data);
    // A silent tracker is given up on after 10 s (the reply timeout); a download that waited
    // for that instead of asking tracker 2 alongside could not be done sooner.
    assert!(took < Duration::from_secs(8), "the get took {took:?}");
}

#[test]
fn get_never_overwrites_an_existing_file_and_refuses_bad_mtorrents() {
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    let data = random_bytes(100_000, 4);
    let _seeder = share(&dir, "seeder", "data.bin", &data, &trackers);
    std::fs::create_dir_all(dir.join("leecher")).unwrap();
    std::fs::write(dir.join("leecher/data.bin"), b"mine").unwrap();
    get(&dir, "leecher", &dir.join("data.bin.mtorrent"))
        .code(2)
        .stderr_contains("an existing file is never overwritten");
    assert_eq!(
        std::fs::read(dir.join("leecher/data.bin")).unwrap(),
        b"mine"
    );

    let evil = dir.write(
        "evil.mtorrent",
        std::fs::read_to_string(dir.join("data.bin.mtorrent"))
            .unwrap()
            .replace("\"data.bin\"", "\"../escape.bin\""),
    );
    get(&dir, "other", &evil)
        .code(2)
        .stderr_contains("not a valid .mtorrent");
    assert!(!dir.join("escape.bin").exists());
    assert!(
        !dir.join("other/catalog.sqlite").exists(),
        "nothing written"
    );
}

#[test]
fn remove_forgets_the_file_but_keeps_it() {
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    let data = random_bytes(200_000, 5);
    let _seeder = share(&dir, "seeder", "data.bin", &data, &trackers);
    get(&dir, "leecher", &dir.join("data.bin.mtorrent")).success();
    let catalog = dir.join("leecher/catalog.sqlite");
    dir.command("mtorrent")
        .args(["remove".as_ref(), dir.join("data.bin.mtorrent").as_os_str()])
        .args(["--catalog".as_ref(), catalog.as_os_str()])
        .run()
        .success()
        .stdout_contains("the file stays");
    assert_eq!(std::fs::read(dir.join("leecher/data.bin")).unwrap(), data);
    let listed = dir
        .command("mtorrent")
        .args(["list".as_ref(), "--catalog".as_ref(), catalog.as_os_str()])
        .stdout();
    assert!(listed.contains("the catalog is empty"), "{listed}");
}

#[test]
fn a_killed_download_resumes_without_fetching_verified_pieces_again() {
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    let data = random_bytes(16 << 20, 6);
    let pieces = 32;
    // A slow seeder, so the download can be interrupted halfway.
    let _seeder = share_slowly(&dir, "seeder", &data, &trackers, 4_000_000);

    let mtorrent = dir.join("data.bin.mtorrent");
    let mut leecher = get_and_seed(&dir, "leecher", &mtorrent);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    leecher.kill();

    let finished = get(&dir, "leecher", &mtorrent).success();
    let already = number_after(&finished.stderr(), "data.bin: ");
    let fetched = number_after(&finished.stdout(), "s); ");
    assert!(
        already > 0 && already < pieces,
        "interrupted halfway: {already} of {pieces}"
    );
    assert_eq!(already + fetched, pieces, "no verified piece fetched again");
    assert_eq!(std::fs::read(dir.join("leecher/data.bin")).unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pieces_from_a_corrupt_peer_are_refetched_from_an_honest_one() {
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    let data = random_bytes(6 << 20, 7);
    let swarm = mtorrent_e2e::bad_peer::CorruptSwarm::start(&dir, &trackers, &data).await;
    let mtorrent = swarm.mtorrent.clone();
    let finished = tokio::task::spawn_blocking({
        let home = dir.join("leecher");
        let mtorrent = mtorrent.clone();
        move || {
            std::fs::create_dir_all(&home).unwrap();
            let mut command = std::process::Command::new(mtorrent_e2e::bin_path("mtorrent"));
            command
                .arg("get")
                .arg(&mtorrent)
                .arg(&home)
                .arg("--catalog")
                .arg(home.join("catalog.sqlite"));
            command.output().unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&finished.stdout);
    assert!(
        finished.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&finished.stderr)
    );
    assert_eq!(std::fs::read(dir.join("leecher/data.bin")).unwrap(), data);
    let failed = number_after(&stdout, "pieces fetched, ");
    assert!(
        failed > 0,
        "the corrupt peer was asked for something: {stdout}"
    );
}

#[test]
fn a_download_completes_when_a_seeder_is_killed_midway() {
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    let data = random_bytes(16 << 20, 8);
    let _steady = share_slowly(&dir, "steady", &data, &trackers, 3_000_000);
    let mut doomed = share_slowly(&dir, "doomed", &data, &trackers, 3_000_000);
    let mtorrent = dir.join("data.bin.mtorrent");
    let mut leecher = get_and_seed(&dir, "leecher", &mtorrent);
    // Both seeders serve it for a while; then one dies with requests outstanding.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    doomed.kill();
    wait_until_file_equals(&dir.join("leecher/data.bin"), &data);
    leecher.kill();
    let log = leecher.log();
    assert!(!log.contains("error"), "{log}");
}

#[test]
fn two_leechers_trade_pieces_while_a_seeder_serves_both() {
    let dir = Dir::new();
    let trackers = Trackers::start(&dir);
    let data = random_bytes(12 << 20, 9);
    // The seeder is slow: the leechers get the file sooner by trading what they have.
    let _seeder = share_slowly(&dir, "seeder", &data, &trackers, 2_000_000);
    let mtorrent = dir.join("data.bin.mtorrent");
    let (one, two) = std::thread::scope(|scope| {
        let one = scope.spawn(|| get(&dir, "one", &mtorrent));
        let two = scope.spawn(|| get(&dir, "two", &mtorrent));
        (one.join().unwrap(), two.join().unwrap())
    });
    for (name, finished) in [("one", one), ("two", two)] {
        let finished = finished.success();
        assert_eq!(
            std::fs::read(dir.join(name).join("data.bin")).unwrap(),
            data
        );
        let uploaded = number_after(&finished.stdout(), "uploaded ");
        assert!(uploaded > 0, "{name} uploaded nothing: {finished}");
    }
}
