//! What the daemon replied survives a SIGKILL: a snapshot confirmed the
//! instant before the kill is listed READY after a restart on the same state
//! folder and is still on disk; a container registered just before the kill
//! is still registered.
//!
//! Root only: loop-backed btrfs, a real cgroup v2, a real `rollpointd`.

mod common;

use std::path::Path;

use common::*;
use rollpoint::api::proto::SnapshotState;
use rollpoint::testkit::daemon::TestDaemon;
use rollpoint::testkit::loop_btrfs::LoopBtrfs;
use rollpoint::testkit::root_or_skip;
use std::os::unix::process::ExitStatusExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_survive_sigkill_right_after_them() {
    if !root_or_skip("replies_survive_sigkill_right_after_them") {
        return;
    }
    let fs = LoopBtrfs::create(512 << 20).expect("loop btrfs");
    let volume = fs.create_subvolume("app").expect("subvolume");
    let late_volume = fs.create_subvolume("late").expect("subvolume");
    let writers = Writers::start("crash", &volume, 4);
    let late_writers = Writers::start("crash-late", &late_volume, 1);
    let mut daemon = TestDaemon::start(daemon_binary()).await.expect("start rollpointd");
    let mut clients = daemon.clients().await.expect("connect");

    register(&mut clients, "app", writers.cgroup.relative_name(), &volume).await.expect("RegisterContainer");
    writers.wait_progress_at_least(50);

    // 1. A snapshot, then SIGKILL as soon as the reply is in.
    let before = writers.progress();
    let snapshot = create_snapshot(&mut clients, "app", "", "pinned").await.expect("CreateSnapshot");
    let status = daemon.kill9().expect("kill").expect("daemon was running");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "died of our SIGKILL: {status}");
    daemon.restart().await.expect("restart on the same state");
    let mut clients = daemon.clients().await.expect("reconnect");

    let listed = list_snapshots(&mut clients, "app").await;
    assert_eq!(names(&listed), std::slice::from_ref(&snapshot.name), "the confirmed snapshot is listed");
    let found = &listed[0];
    assert_eq!(found.state(), SnapshotState::Ready);
    assert_eq!(
        (found.alias.as_str(), found.location.as_str(), found.uuid.as_str()),
        ("pinned", snapshot.location.as_str(), snapshot.uuid.as_str())
    );
    assert_eq!(found.create_time, snapshot.create_time);
    assert!(is_subvolume(Path::new(&found.location)), "{} on disk", found.location);
    assert_read_only(Path::new(&found.location));
    writers.verify_snapshot(Path::new(&found.location), &before);
    assert_eq!(get_snapshot(&mut clients, "app", "pinned").await.expect("alias survives").name, snapshot.name);
    assert!(!writers.frozen());

    // 2. A registration, then SIGKILL as soon as the reply is in.
    let late = register(&mut clients, "late", late_writers.cgroup.path().to_str().expect("utf-8"), &late_volume)
        .await
        .expect("RegisterContainer late");
    daemon.kill9().expect("kill").expect("daemon was running");
    daemon.restart().await.expect("restart on the same state");
    let mut clients = daemon.clients().await.expect("reconnect");
    let containers = list_containers(&mut clients).await;
    let ids: Vec<&str> = containers.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["app", "late"]);
    let found = containers.iter().find(|c| c.id == "late").expect("late");
    assert_eq!(
        (&found.cgroup, &found.subvolume, &found.snapshot_dir),
        (&late.cgroup, &late.subvolume, &late.snapshot_dir)
    );
    assert_eq!(found.create_time, late.create_time);

    // And the restarted daemon works on both.
    let again = create_snapshot(&mut clients, "late", "", "").await.expect("snapshot after restart");
    assert!(is_subvolume(Path::new(&again.location)));
    let second = create_snapshot(&mut clients, "app", "", "").await.expect("second snapshot after restarts");
    assert_ne!(second.name, snapshot.name, "default names keep counting after a restart");
    for (container, writers) in [("app", &writers), ("late", &late_writers)] {
        assert_listing_matches_disk(&mut clients, container, &snapshot_folder(fs.mount_point(), container)).await;
        writers.assert_all_advance(&writers.progress());
    }
}
