//! Crash at every step of a create and a delete (`ROLLPOINT_FAULT=<point>`
//! makes the daemon SIGKILL itself there), restart without the fault, and
//! check what start-up recovery made of it: the container is thawed before
//! SERVING (also when the daemon died holding it frozen), its writers run,
//! the record and the snapshot folder agree, a snapshot recorded before the
//! crash is kept and one that was not is gone, a delete caught half-way is
//! finished. Prints a point x outcome matrix.
//!
//! Root only: loop-backed btrfs, real cgroups v2, real `rollpointd`s.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use rollpoint::api::proto::{self, SnapshotState};
use rollpoint::testkit::daemon::{DaemonOptions, TestDaemon, CREATE_FAULT_POINTS, DELETE_FAULT_POINTS};
use rollpoint::testkit::loop_btrfs::LoopBtrfs;
use rollpoint::testkit::root_or_skip;
use tonic::Code;

const WRITERS: u32 = 4;

/// One row of the matrix.
#[derive(Debug, Default)]
struct Row {
    /// What the client got from the call that crashed the daemon.
    call: String,
    died: String,
    frozen_at_crash: bool,
    /// Snapshot subvolumes on disk while the daemon was dead.
    on_disk_at_crash: usize,
    frozen_after_restart: bool,
    listed_after_restart: Vec<String>,
    on_disk_after_restart: usize,
    /// What happened to the snapshot the crashed call was about.
    outcome: &'static str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_after_a_crash_at_every_fault_point() {
    if !root_or_skip("recovery_after_a_crash_at_every_fault_point") {
        return;
    }
    let fs = Arc::new(LoopBtrfs::create(1 << 30).expect("loop btrfs"));
    let mut rows: Vec<(&str, Result<Row, String>)> = Vec::new();
    for point in CREATE_FAULT_POINTS.into_iter().chain(DELETE_FAULT_POINTS) {
        // Each point in its own task, so that one failing still lets the
        // others run and the matrix be printed; its fixtures are dropped
        // (daemon killed, writers killed, cgroup removed) as it unwinds.
        let fs = fs.clone();
        let task = tokio::spawn(async move {
            if point.starts_with("create.") {
                crash_in_create(&fs, point).await
            } else {
                crash_in_delete(&fs, point).await
            }
        });
        let result = task.await.map_err(|error| match error.try_into_panic() {
            Ok(panic) => panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into()),
            Err(error) => error.to_string(),
        });
        rows.push((point, result));
    }

    println!();
    println!(
        "{:<20} {:<8} {:<8} {:<13} {:<11} {:<15} {:<22} {:<12} outcome",
        "fault point", "call", "died", "frozen@crash", "disk@crash", "frozen@restart", "listed@restart", "disk@restart"
    );
    for (point, row) in &rows {
        match row {
            Ok(row) => println!(
                "{point:<20} {:<8} {:<8} {:<13} {:<11} {:<15} {:<22} {:<12} {}",
                row.call,
                row.died,
                row.frozen_at_crash,
                row.on_disk_at_crash,
                row.frozen_after_restart,
                format!("{:?}", row.listed_after_restart),
                row.on_disk_after_restart,
                row.outcome
            ),
            Err(failure) => println!("{point:<20} FAILED: {failure}"),
        }
    }
    let failed: Vec<&str> = rows.iter().filter(|(_, r)| r.is_err()).map(|(p, _)| *p).collect();
    assert!(failed.is_empty(), "fault points that failed: {failed:?}");
}

/// The container id and subvolume of one fault point: `create.frozen` ->
/// `create-frozen`.
fn container_of(point: &str) -> String {
    point.replace('.', "-")
}

/// A container of its own for one fault point: a subvolume, writers in a
/// cgroup, and a daemon armed with the fault, the container registered.
struct Scene {
    id: String,
    folder: std::path::PathBuf,
    writers: Writers,
    daemon: TestDaemon,
    clients: rollpoint::api::client::Clients,
}

impl Scene {
    async fn start(fs: &LoopBtrfs, point: &str) -> Scene {
        let id = container_of(point);
        let volume = fs.create_subvolume(&id).expect("subvolume");
        let folder = snapshot_folder(fs.mount_point(), &id);
        let writers = Writers::start(&id, &volume, WRITERS);
        let daemon =
            TestDaemon::start_with(daemon_binary(), DaemonOptions::fault(point)).await.expect("start rollpointd");
        let mut clients = daemon.clients().await.expect("connect");
        register(&mut clients, &id, writers.cgroup.relative_name(), &volume).await.expect("RegisterContainer");
        writers.wait_progress_at_least(20);
        Scene { id, folder, writers, daemon, clients }
    }
}

async fn crash_in_create(fs: &LoopBtrfs, point: &'static str) -> Row {
    let Scene { id, folder, writers, mut daemon, mut clients } = Scene::start(fs, point).await;

    let before = writers.progress();
    let mut row = Row::default();
    let call = create_snapshot(&mut clients, &id, "", "crashed").await;
    row.call = expect_transport_error(point, call);
    row.died = expect_fault_death(&mut daemon, point);
    row.frozen_at_crash = writers.frozen();
    // Only create.frozen dies between freeze and thaw.
    assert_eq!(row.frozen_at_crash, point == "create.frozen", "{point}: frozen at the crash");
    let at_crash = subvolumes_in(&folder);
    row.on_disk_at_crash = at_crash.len();
    let made = matches!(point, "create.snapshotted" | "create.recorded");
    assert_eq!(row.on_disk_at_crash, usize::from(made), "{point}: snapshots on disk at the crash: {at_crash:?}");

    daemon.restart_with(DaemonOptions::default()).await.expect("restart without the fault");
    // SERVING means recovery is done: it must have thawed already.
    row.frozen_after_restart = writers.frozen();
    assert!(!row.frozen_after_restart, "{point}: still frozen after the restart");
    let mut clients = daemon.clients().await.expect("reconnect");
    let listed = list_snapshots(&mut clients, &id).await;
    row.listed_after_restart = names(&listed);
    row.on_disk_after_restart = assert_listing_matches_disk(&mut clients, &id, &folder).await.len();
    if point == "create.recorded" {
        // Recorded and made durable before the crash: kept, whole.
        assert_eq!(listed.len(), 1, "{point}: the recorded snapshot is kept");
        let kept = &listed[0];
        assert_eq!((kept.state(), kept.alias.as_str()), (SnapshotState::Ready, "crashed"));
        assert_read_only(Path::new(&kept.location));
        writers.verify_snapshot(Path::new(&kept.location), &before);
        row.outcome = "kept (recorded), data verified";
    } else {
        // Never confirmed to anyone: rolled back.
        assert!(listed.is_empty(), "{point}: an unconfirmed snapshot is listed: {:?}", names(&listed));
        row.outcome = if made { "rolled back (subvolume removed)" } else { "rolled back (nothing made)" };
    }
    writers.assert_all_advance(&writers.progress());

    // The restarted daemon snapshots the same container normally.
    let again = create_snapshot(&mut clients, &id, "", "").await.unwrap_or_else(|s| panic!("{point}: retry: {s}"));
    assert!(!writers.frozen());
    assert_eq!(again.state(), SnapshotState::Ready);
    assert_listing_matches_disk(&mut clients, &id, &folder).await;
    writers.assert_all_advance(&writers.progress());
    row
}

async fn crash_in_delete(fs: &LoopBtrfs, point: &'static str) -> Row {
    let Scene { id, folder, writers, mut daemon, mut clients } = Scene::start(fs, point).await;
    let keep = create_snapshot(&mut clients, &id, "keep", "").await.expect("CreateSnapshot keep");
    let victim = create_snapshot(&mut clients, &id, "victim", "old").await.expect("CreateSnapshot victim");

    let mut row = Row::default();
    let call = clients
        .snapshots
        .delete_snapshot(proto::DeleteSnapshotRequest { container: id.clone(), snapshot: "old".into() })
        .await
        .map(|r| r.into_inner());
    row.call = expect_transport_error(point, call);
    row.died = expect_fault_death(&mut daemon, point);
    row.frozen_at_crash = writers.frozen();
    assert!(!row.frozen_at_crash, "{point}: a delete never freezes");
    let at_crash = subvolumes_in(&folder);
    row.on_disk_at_crash = at_crash.len();
    assert!(at_crash.contains("keep"), "{point}: the other snapshot is untouched");
    assert_eq!(at_crash.contains("victim"), point == "delete.intent", "{point}: victim on disk at the crash");

    daemon.restart_with(DaemonOptions::default()).await.expect("restart without the fault");
    row.frozen_after_restart = writers.frozen();
    assert!(!row.frozen_after_restart);
    let mut clients = daemon.clients().await.expect("reconnect");
    let listed = list_snapshots(&mut clients, &id).await;
    row.listed_after_restart = names(&listed);
    row.on_disk_after_restart = assert_listing_matches_disk(&mut clients, &id, &folder).await.len();
    // The delete was asked for and started: recovery finishes it.
    assert_eq!(row.listed_after_restart, ["keep"], "{point}: only the other snapshot is left");
    assert_eq!(listed[0].state(), SnapshotState::Ready);
    assert_eq!(listed[0].uuid, keep.uuid);
    assert!(!Path::new(&victim.location).exists(), "{point}: {} still on disk", victim.location);
    for reference in ["victim", "old"] {
        expect_status(
            get_snapshot(&mut clients, &id, reference).await.map(tonic::Response::new),
            Code::NotFound,
            &[reference],
        );
    }
    row.outcome = "delete finished";
    writers.assert_all_advance(&writers.progress());

    // The name is free again, and the daemon works normally.
    create_snapshot(&mut clients, &id, "victim", "").await.unwrap_or_else(|s| panic!("{point}: retry: {s}"));
    assert_listing_matches_disk(&mut clients, &id, &folder).await;
    row
}
