//! Admission on a real daemon (loop-backed btrfs, real cgroups with real
//! processes): a burst far past `max_concurrent_operations` all lands,
//! nothing refused, because calls past the limit wait their turn; and a call
//! whose deadline passes while it waits gets DEADLINE_EXCEEDED and never
//! runs later.
//!
//! Root only.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::curl::{curl, Via};
use common::*;
use rollpoint::api::proto;
use rollpoint::testkit::cgroup::TestCgroup;
use rollpoint::testkit::daemon::{DaemonOptions, TestDaemon};
use rollpoint::testkit::loop_btrfs::LoopBtrfs;
use rollpoint::testkit::root_or_skip;
use tonic::Code;

/// Only there so that a hung call fails the test instead of blocking it.
const HANG_GUARD: Duration = Duration::from_secs(300);

struct Containers {
    ids: Vec<String>,
    cgroups: Vec<TestCgroup>,
}

/// `count` containers on `fs`, each a subvolume and a cgroup with one
/// sleeping process, not registered yet.
fn make_containers(fs: &LoopBtrfs, prefix: &str, count: usize) -> (Containers, Vec<std::path::PathBuf>) {
    let mut ids = Vec::new();
    let mut cgroups = Vec::new();
    let mut volumes = Vec::new();
    for index in 0..count {
        let id = format!("{prefix}-{index:03}");
        volumes.push(fs.create_subvolume(&id).expect("subvolume"));
        let cgroup = TestCgroup::create(&id).expect("cgroup");
        // Reaped by the cgroup's drop.
        #[allow(clippy::zombie_processes)]
        let _child = cgroup.spawn(Command::new(WORKLOAD).arg("sleep").stdin(Stdio::null())).expect("spawn");
        cgroups.push(cgroup);
        ids.push(id);
    }
    (Containers { ids, cgroups }, volumes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_200_creates_past_the_limit_all_lands() {
    if !root_or_skip("a_burst_of_200_creates_past_the_limit_all_lands") {
        return;
    }
    const BURST: usize = 200;
    const CONNECTIONS: usize = 8;
    let fs = LoopBtrfs::create(1 << 30).expect("loop btrfs");
    let (containers, volumes) = make_containers(&fs, "burst", BURST);
    // Low, so that nearly the whole burst waits in the queue; the queue
    // limit and the wait are the defaults.
    let options = DaemonOptions::default().config("max_concurrent_operations = 4\n");
    let daemon = TestDaemon::start_with(daemon_binary(), options).await.expect("start rollpointd");
    let mut root = daemon.clients().await.expect("connect");
    for (index, (id, volume)) in containers.ids.iter().zip(&volumes).enumerate() {
        register(&mut root, id, containers.cgroups[index].relative_name(), volume).await.expect("register");
    }
    let mut connections = Vec::new();
    for _ in 0..CONNECTIONS {
        connections.push(daemon.clients().await.expect("connect"));
    }

    let start = std::sync::Arc::new(tokio::sync::Barrier::new(BURST + 1));
    let mut calls = Vec::new();
    for (index, id) in containers.ids.iter().enumerate() {
        let mut clients = connections[index % CONNECTIONS].clone();
        let (id, start) = (id.clone(), start.clone());
        calls.push(tokio::spawn(async move {
            start.wait().await;
            let created = tokio::time::timeout(HANG_GUARD, create_snapshot(&mut clients, &id, "nightly", "")).await;
            (id, created)
        }));
    }
    start.wait().await;
    // Reads are answered while the burst waits for its turn.
    let read = root
        .containers
        .get_container(proto::GetContainerRequest { id: containers.ids[0].clone() })
        .await
        .expect("GetContainer during the burst");
    assert_eq!(read.into_inner().container.expect("container").id, containers.ids[0]);

    let mut failures = Vec::new();
    for call in calls {
        let (id, created) = call.await.expect("call task");
        match created {
            Err(_) => failures.push(format!("{id}: no answer in {HANG_GUARD:?}")),
            Ok(Err(status)) => failures.push(format!("{id}: {:?} {}", status.code(), status.message())),
            Ok(Ok(snapshot)) => assert_eq!(snapshot.name, "nightly"),
        }
    }
    if !failures.is_empty() {
        daemon.print_log();
    }
    assert!(
        failures.is_empty(),
        "{} of {BURST} refused or failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    for id in &containers.ids {
        let on_disk = subvolumes_in(&snapshot_folder(fs.mount_point(), id));
        assert_eq!(on_disk.into_iter().collect::<Vec<_>>(), ["nightly"], "{id}: the snapshot is on disk");
    }
    // The daemon goes before the cgroups, and they before the filesystem.
    drop(daemon);
    drop(containers);
}

/// A daemon with one operation slot (plus `config`), two registered
/// containers, and that slot held by a delete of the first container's
/// snapshot, stalled for `stall_ms` by fault injection (logged when it
/// starts). Returns the delete's task and the second container's id.
struct HeldSlot {
    daemon: TestDaemon,
    root: rollpoint::api::client::Clients,
    delete: tokio::task::JoinHandle<Result<tonic::Response<proto::DeleteSnapshotResponse>, tonic::Status>>,
    other: String,
    containers: Containers,
    fs: LoopBtrfs,
}

async fn hold_the_only_slot(prefix: &str, config: &str, stall_ms: u32) -> HeldSlot {
    let fs = LoopBtrfs::create(256 << 20).expect("loop btrfs");
    let (containers, volumes) = make_containers(&fs, prefix, 2);
    let options = DaemonOptions::default()
        .config(format!("max_concurrent_operations = 1\n{config}"))
        .env("ROLLPOINT_FAULT", format!("delete.intent:sleep={stall_ms}"));
    let daemon = TestDaemon::start_with(daemon_binary(), options).await.expect("start rollpointd");
    let mut root = daemon.clients().await.expect("connect");
    for (index, (id, volume)) in containers.ids.iter().zip(&volumes).enumerate() {
        register(&mut root, id, containers.cgroups[index].relative_name(), volume).await.expect("register");
    }
    let (slow, other) = (containers.ids[0].clone(), containers.ids[1].clone());
    create_snapshot(&mut root, &slow, "to-delete", "").await.expect("a snapshot to delete");
    let mut deleting = root.clone();
    let delete = tokio::spawn(async move {
        deleting
            .snapshots
            .delete_snapshot(proto::DeleteSnapshotRequest { container: slow, snapshot: "to-delete".into() })
            .await
    });
    while !daemon.log().contains("fault injection: stalling") {
        assert!(!delete.is_finished(), "the delete ended before it stalled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    HeldSlot { daemon, root, delete, other, containers, fs }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_deadline_passes_while_it_waits_never_runs() {
    if !root_or_skip("a_call_whose_deadline_passes_while_it_waits_never_runs") {
        return;
    }
    let HeldSlot { daemon, mut root, delete, other: hurried, containers, fs } =
        hold_the_only_slot("deadline", "", 5000).await;

    let mut request = tonic::Request::new(proto::CreateSnapshotRequest {
        container: hurried.clone(),
        name: "too-late".into(),
        ..Default::default()
    });
    request.set_timeout(Duration::from_millis(200));
    let refused = root.snapshots.create_snapshot(request).await.expect_err("no slot within the deadline");
    assert_eq!(refused.code(), Code::DeadlineExceeded, "{}", refused.message());

    // Without a deadline a call waits its turn behind the stalled delete,
    // then lands; a wait over a second is on the timeline and in the metrics.
    let waiting = {
        let (mut root, hurried) = (root.clone(), hurried.clone());
        tokio::spawn(async move { create_snapshot(&mut root, &hurried, "after", "").await })
    };
    let socket = Via::Socket(daemon.socket().to_owned());
    while !metrics(&socket).contains("rollpoint_admission_queued_calls{kind=\"change\"} 1\n") {
        assert!(!waiting.is_finished(), "the create ended before it was seen queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(metrics(&socket).contains("rollpoint_admission_in_flight_calls{kind=\"change\"} 1\n"));
    // And in `rollpoint status` (which needs no slot itself).
    let status = cli(&daemon, &["--json", "status"]);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let change = status["admission"].as_array().unwrap().iter().find(|l| l["kind"] == "change").unwrap().clone();
    assert_eq!((change["queued"].as_u64(), change["in_flight"].as_u64()), (Some(1), Some(1)), "{status}");
    assert_eq!(change["max_in_flight"], 1, "{status}");
    assert_eq!(status["containers"], 2, "{status}");
    let (code, rest) = curl(&socket, "GET", "/api/v1/status", None);
    assert_eq!((code, &rest["admission"]), (200, &status["admission"]), "{rest}");
    waiting.await.expect("create task").expect("a create that waits for the slot");
    delete.await.expect("delete task").expect("the stalled delete still succeeds");
    let scrape = metrics(&socket);
    let waited_seconds: f64 = scrape
        .lines()
        .find_map(|line| line.strip_prefix("rollpoint_admission_wait_seconds_sum{kind=\"change\"} "))
        .and_then(|sum| sum.parse().ok())
        .unwrap_or_else(|| panic!("no admission wait sum in:\n{scrape}"));
    assert!(waited_seconds > 1.0, "{waited_seconds}");
    let events = list_events(&mut root, &hurried, "").await;
    let waited = events.iter().find(|e| e.kind == "admission.waited").expect("the long wait is an event");
    assert!(waited.detail.contains("for an operation slot"), "{waited:?}");
    let listed = names(&list_snapshots(&mut root, &hurried).await);
    assert_eq!(listed, ["after"], "the call refused while it waited never ran");
    let on_disk = subvolumes_in(&snapshot_folder(fs.mount_point(), &hurried));
    assert_eq!(on_disk.into_iter().collect::<Vec<_>>(), ["after"]);
    // The daemon goes before the cgroups, and they before the filesystem.
    drop(daemon);
    drop(containers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_retries_a_busy_daemon_until_a_slot_frees_and_says_when_it_gives_up() {
    if !root_or_skip("the_cli_retries_a_busy_daemon_until_a_slot_frees_and_says_when_it_gives_up") {
        return;
    }
    // A waiting call is refused (with RetryInfo) after 100 ms in the queue.
    let HeldSlot { daemon, mut root, delete, other, containers, fs: _fs } =
        hold_the_only_slot("retry", "admission_wait_ms = 100\n", 4000).await;

    let once = cli(&daemon, &["--retries", "0", "snapshot", "create", &other, "--name", "once"]);
    let stderr = String::from_utf8_lossy(&once.stderr);
    assert_eq!(once.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("resource exhausted"), "{stderr}");
    assert!(stderr.contains("too busy") && stderr.contains("--retries"), "the hint says what to do: {stderr}");

    let patient = cli(&daemon, &["--retries", "10", "snapshot", "create", &other, "--name", "patient"]);
    let stderr = String::from_utf8_lossy(&patient.stderr);
    assert!(patient.status.success(), "{stderr}");
    assert!(stderr.contains("retrying in"), "each retry is announced: {stderr}");
    delete.await.expect("delete task").expect("the stalled delete succeeds");
    let listed = names(&list_snapshots(&mut root, &other).await);
    assert_eq!(listed, ["patient"], "the refused call never ran; the retried one ran once");
    // The daemon goes before the cgroups, and they before the filesystem.
    drop(daemon);
    drop(containers);
}

/// The text of `GET /metrics` on the socket.
fn metrics(socket: &Via) -> String {
    let (code, text) = curl(socket, "GET", "/metrics", None);
    assert_eq!(code, 200, "{text}");
    text.as_str().expect("metrics are text").to_owned()
}
