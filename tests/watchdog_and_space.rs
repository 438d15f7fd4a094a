//! Never stuck: a backend call that hangs while the container is frozen is
//! cut off by the freeze budget (the container runs again, the caller gets
//! DEADLINE_EXCEEDED, the abandoned snapshot is cleaned up), and a snapshot
//! on a full filesystem fails cleanly with RESOURCE_EXHAUSTED.
//!
//! Root only: loop-backed btrfs, a real cgroup v2, a real `rollpointd`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use rollpoint::testkit::daemon::{DaemonOptions, TestDaemon};
use rollpoint::testkit::loop_btrfs::LoopBtrfs;
use rollpoint::testkit::root_or_skip;
use tonic::Code;

const BUDGET_MS: u64 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_snapshot_is_cut_off_by_the_freeze_budget() {
    if !root_or_skip("a_hanging_snapshot_is_cut_off_by_the_freeze_budget") {
        return;
    }
    let fs = LoopBtrfs::create(512 << 20).expect("loop btrfs");
    let volume = fs.create_subvolume("app").expect("subvolume");
    let writers = Writers::start("watchdog", &volume, 3);
    // The backend "hangs" for 2 s with the container frozen.
    let options = DaemonOptions::fault("create.frozen:sleep=2000").config(format!("freeze_budget_ms = {BUDGET_MS}\n"));
    let daemon = TestDaemon::start_with(daemon_binary(), options).await.expect("start rollpointd");
    let mut clients = daemon.clients().await.expect("connect");
    register(&mut clients, "app", writers.cgroup.relative_name(), &volume).await.expect("register");
    writers.wait_progress_at_least(20);

    // Watch the cgroup from another thread: when did it freeze, and thaw?
    let events = writers.cgroup.path().join("cgroup.events");
    let watcher = std::thread::spawn(move || {
        let started = Instant::now();
        let mut frozen_at = None;
        while started.elapsed() < Duration::from_secs(5) {
            let frozen = std::fs::read_to_string(&events).map(|t| t.contains("frozen 1")).unwrap_or(false);
            match (frozen, frozen_at) {
                (true, None) => frozen_at = Some(Instant::now()),
                (false, Some(at)) => return Some(at.elapsed()),
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    });
    let asked = Instant::now();
    let error = create_snapshot(&mut clients, "app", "stuck", "").await.expect_err("the snapshot must not succeed");
    let answered = asked.elapsed();
    assert_eq!(error.code(), Code::DeadlineExceeded, "{error:?}");
    assert!(error.message().contains("freeze budget"), "{}", error.message());
    let frozen_for = watcher.join().expect("watcher").expect("the cgroup froze and thawed again");
    println!("freeze budget {BUDGET_MS} ms: container frozen for {frozen_for:?}, caller answered after {answered:?}");
    // Generous bound (shared, noisy machines): the point is that the 2 s hang
    // did not hold the container frozen.
    assert!(frozen_for < Duration::from_millis(1500), "frozen for {frozen_for:?} despite a {BUDGET_MS} ms budget");
    assert!(!writers.frozen());
    let before = writers.progress();
    writers.assert_all_advance(&before);

    // Once the hung call returns, the abandoned snapshot is deleted, and
    // nothing was recorded.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(list_snapshots(&mut clients, "app").await.is_empty());
    let folder = snapshot_folder(fs.mount_point(), "app");
    assert!(subvolumes_in(&folder).is_empty(), "left on disk: {:?}", subvolumes_in(&folder));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_filesystem_fails_cleanly() {
    if !root_or_skip("a_full_filesystem_fails_cleanly") {
        return;
    }
    // Mixed block groups let a small filesystem fill up for real.
    let fs = LoopBtrfs::create_with(128 << 20, &["-M"], "").expect("small loop btrfs");
    let volume = fs.create_subvolume("app").expect("subvolume");
    let writers = Writers::start("enospc", &volume, 1);
    // The space guard off: what the filesystem itself says when full is
    // what this test is about (tests/retention.rs has the guard).
    let options = DaemonOptions::default().config("space_floor_percent = 0.0\n");
    let daemon = TestDaemon::start_with(daemon_binary(), options).await.expect("start rollpointd");
    let mut clients = daemon.clients().await.expect("connect");
    register(&mut clients, "app", writers.cgroup.relative_name(), &volume).await.expect("register");
    // One snapshot while there is room: the snapshot folder exists.
    create_snapshot(&mut clients, "app", "roomy", "").await.expect("snapshot with room");
    fill(&volume.join("filler"));

    let error = create_snapshot(&mut clients, "app", "no-room", "").await.expect_err("no room left");
    assert_eq!(error.code(), Code::ResourceExhausted, "{error:?}");
    assert!(error.message().contains("no space"), "{}", error.message());
    assert!(!writers.frozen(), "the container was left frozen");
    let listed = names(&list_snapshots(&mut clients, "app").await);
    assert_eq!(listed, ["roomy"], "nothing half-made is recorded");
    let folder = snapshot_folder(fs.mount_point(), "app");
    assert_eq!(subvolumes_in(&folder).into_iter().collect::<Vec<_>>(), ["roomy"]);

    // Room again: snapshots work again.
    std::fs::remove_file(volume.join("filler")).expect("free space");
    std::process::Command::new("/usr/bin/sync").status().expect("sync");
    let mut landed = false;
    for _ in 0..20 {
        if create_snapshot(&mut clients, "app", "after", "").await.is_ok() {
            landed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(landed, "no snapshot once space was freed");
}

/// Writes until the filesystem is full (ENOSPC), then syncs.
fn fill(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("filler");
    let block = vec![0x5au8; 1 << 20];
    loop {
        match file.write_all(&block) {
            Ok(()) => {}
            Err(error) if error.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(error) => panic!("filling: {error}"),
        }
    }
    let _ = file.sync_all();
}
