//! Admission on a real daemon (loop-backed btrfs, real cgroups with real
//! processes): a burst of 500 on the default configuration all lands,
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
async fn a_burst_of_500_creates_on_the_default_config_all_lands() {
    if !root_or_skip("a_burst_of_500_creates_on_the_default_config_all_lands") {
        return;
    }
    const BURST: usize = 500;
    const CONNECTIONS: usize = 8;
    let fs = LoopBtrfs::create(1 << 30).expect("loop btrfs");
    let (containers, volumes) = make_containers(&fs, "burst", BURST);
    // The default configuration: 64 in flight, the rest of the burst waits.
    let daemon = TestDaemon::start(daemon_binary()).await.expect("start rollpointd");
    let mut root = daemon.clients().await.expect("connect");
    for (index, (id, volume)) in containers.ids.iter().zip(&volumes).enumerate() {
        register(&mut root, id, containers.cgroups[index].relative_name(), volume).await.expect("register");
    }
    let mut connections = Vec::new();
    for _ in 0..CONNECTIONS {
        connections.push(daemon.clients().await.expect("connect"));
    }

    let start = std::sync::Arc::new(tokio::sync::Barrier::new(BURST + 1));
    let landed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut calls = Vec::new();
    for (index, id) in containers.ids.iter().enumerate() {
        let mut clients = connections[index % CONNECTIONS].clone();
        let (id, start, landed) = (id.clone(), start.clone(), landed.clone());
        calls.push(tokio::spawn(async move {
            start.wait().await;
            let created = tokio::time::timeout(HANG_GUARD, create_snapshot(&mut clients, &id, "nightly", "")).await;
            landed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            (id, created)
        }));
    }
    start.wait().await;
    let fired = std::time::Instant::now();
    // Reads are answered while the burst waits for its turn: asked once
    // calls are seen queued, the reply comes before the last create lands.
    let socket = Via::Socket(daemon.socket().to_owned());
    let queued = |text: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix("rollpoint_admission_queued_calls{kind=\"change\"} "))
            .and_then(|count| count.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut waiting = 0;
    while waiting == 0 && landed.load(std::sync::atomic::Ordering::SeqCst) < BURST {
        waiting = queued(&metrics(&socket));
    }
    let asked = std::time::Instant::now();
    let read = root
        .containers
        .get_container(proto::GetContainerRequest { id: containers.ids[BURST - 1].clone() })
        .await
        .expect("GetContainer during the burst");
    let answered_in = asked.elapsed();
    let landed_before_read = landed.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(read.into_inner().container.expect("container").id, containers.ids[BURST - 1]);
    println!(
        "GetContainer during the burst ({waiting} calls queued) answered in {answered_in:?}, {landed_before_read} of {BURST} creates landed by then"
    );
    assert!(landed_before_read < BURST, "the read was answered only after the whole burst had landed");

    let mut failures = Vec::new();
    for call in calls {
        let (id, created) = call.await.expect("call task");
        match created {
            Err(_) => failures.push(format!("{id}: no answer in {HANG_GUARD:?}")),
            Ok(Err(status)) => failures.push(format!("{id}: {:?} {}", status.code(), status.message())),
            Ok(Ok(snapshot)) => assert_eq!(snapshot.name, "nightly"),
        }
    }
    println!("the last of {BURST} landed {:?} after they were sent", fired.elapsed());
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

/// How long the test waits for `* * * * *` entries to fire by the clock.
const CLOCK_TIMEOUT: Duration = Duration::from_secs(150);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_minutely_entries_calling_the_cli_all_land_in_the_same_minute() {
    if !root_or_skip("a_hundred_minutely_entries_calling_the_cli_all_land_in_the_same_minute") {
        return;
    }
    const ENTRIES: usize = 100;
    let fs = LoopBtrfs::create(512 << 20).expect("loop btrfs");
    let (containers, volumes) = make_containers(&fs, "minutely", ENTRIES);
    let daemon = TestDaemon::start(daemon_binary()).await.expect("start rollpointd");
    let mut root = daemon.clients().await.expect("connect");
    let socket = Via::Socket(daemon.socket().to_owned());
    let cli = env!("CARGO_BIN_EXE_rollpoint");
    for (index, (id, volume)) in containers.ids.iter().zip(&volumes).enumerate() {
        register(&mut root, id, containers.cgroups[index].relative_name(), volume).await.expect("register");
        let command = format!("{cli} --socket {} snapshot create {id} --name by-the-clock", daemon.socket().display());
        let body = serde_json::json!({"id": id, "schedule": "* * * * *", "command": command}).to_string();
        let (code, entry) = curl(&socket, "POST", "/api/v1/users/root/entries", Some(&body));
        assert_eq!(code, 200, "{entry}");
    }

    // Every entry fires at the next minute, all in the same second.
    let deadline = std::time::Instant::now() + CLOCK_TIMEOUT;
    let mut missing = containers.ids.clone();
    while !missing.is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut still = Vec::new();
        for id in missing {
            if !names(&list_snapshots(&mut root, &id).await).contains(&"by-the-clock".to_string()) {
                still.push(id);
            }
        }
        missing = still;
    }
    if !missing.is_empty() {
        daemon.print_log();
    }
    assert!(
        missing.is_empty(),
        "{} of {ENTRIES} snapshots missing after {CLOCK_TIMEOUT:?}: {missing:?}",
        missing.len()
    );
    let mut minutes = std::collections::BTreeSet::new();
    for id in &containers.ids {
        let snapshot = list_snapshots(&mut root, id).await.into_iter().find(|s| s.name == "by-the-clock").unwrap();
        minutes.insert(snapshot.create_time.expect("create time").seconds / 60);
    }
    assert_eq!(minutes.len(), 1, "the {ENTRIES} snapshots landed in the minute they fired: {minutes:?}");
    let (code, events) = curl(&socket, "GET", "/api/v1/events?limit=1000", None);
    assert_eq!(code, 200, "{events}");
    let commands: Vec<&serde_json::Value> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|event| event["kind"] == "schedule.command")
        .collect();
    let failed: Vec<&&serde_json::Value> = commands.iter().filter(|event| event["outcome"] != "ok").collect();
    assert_eq!((commands.len(), failed.len()), (ENTRIES, 0), "commands that failed: {failed:?}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_at_once_and_a_caller_gone_while_waiting_leaves_nothing() {
    if !root_or_skip("a_full_queue_refuses_at_once_and_a_caller_gone_while_waiting_leaves_nothing") {
        return;
    }
    const QUEUE: usize = 10;
    let HeldSlot { daemon, mut root, delete, other, containers, fs } =
        hold_the_only_slot("queue", &format!("max_queued_operations = {QUEUE}\n"), 8000).await;
    let socket = Via::Socket(daemon.socket().to_owned());
    let wait_for_queued = |count: usize| {
        let wanted = format!("rollpoint_admission_queued_calls{{kind=\"change\"}} {count}\n");
        while !metrics(&socket).contains(&wanted) {
            assert!(!delete.is_finished(), "the slot was freed before {count} calls were seen queued");
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    // Nine callers wait in the queue; the tenth is a CLI process, killed
    // while it waits.
    let mut waiting = Vec::new();
    for index in 0..QUEUE - 1 {
        let (mut root, other) = (root.clone(), other.clone());
        waiting.push(tokio::spawn(
            async move { create_snapshot(&mut root, &other, &format!("queued-{index}"), "").await },
        ));
        wait_for_queued(index + 1);
    }
    let mut gone = Command::new(env!("CARGO_BIN_EXE_rollpoint"))
        .arg("--socket")
        .arg(daemon.socket())
        .args(["--retries", "0", "snapshot", "create", &other, "--name", "caller-gone"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run rollpoint");
    wait_for_queued(QUEUE);

    // The queue is full: the next call is refused at once (the slot is
    // still held), with RetryInfo saying when to come back.
    let refused = create_snapshot(&mut root, &other, "one-too-many", "").await.expect_err("the queue is full");
    assert!(!delete.is_finished(), "refused only after the slot freed: not at once");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{}", refused.message());
    assert!(refused.message().contains("max_queued_operations"), "{}", refused.message());
    use tonic_types::StatusExt as _;
    let retry = refused.get_details_retry_info().expect("RetryInfo in the status details");
    assert!(retry.retry_delay.is_some(), "{retry:?}");

    // The killed caller leaves the queue: its call never runs.
    gone.kill().expect("kill the waiting CLI");
    gone.wait().expect("reap the CLI");
    wait_for_queued(QUEUE - 1);
    delete.await.expect("delete task").expect("the stalled delete still succeeds");
    for call in waiting {
        call.await.expect("create task").expect("a queued create lands once the slot frees");
    }
    let mut expected: Vec<String> = (0..QUEUE - 1).map(|index| format!("queued-{index}")).collect();
    expected.sort();
    let mut listed = names(&list_snapshots(&mut root, &other).await);
    listed.sort();
    assert_eq!(listed, expected, "neither the refused call nor the killed caller's ran");
    let on_disk: Vec<String> = subvolumes_in(&snapshot_folder(fs.mount_point(), &other)).into_iter().collect();
    assert_eq!(on_disk, expected);
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
