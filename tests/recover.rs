//! Nothing is lost when the record is (issue 21), and nothing is stopped
//! that cannot be restored: volumes a restore could never swap are refused
//! at registration, and a restore checks its swap before it stops anything.
//!
//! Root only: loop-backed btrfs, a real cgroup v2, a real `rollpointd`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rollpoint::api::client::Clients;
use rollpoint::api::proto;
use rollpoint::testkit::cgroup::TestCgroup;
use rollpoint::testkit::daemon::{DaemonOptions, TestDaemon};
use rollpoint::testkit::loop_btrfs::LoopBtrfs;
use rollpoint::testkit::root_or_skip;
use tonic::Code;

/// A bind mount the test made; unmounted on drop, also when the test fails.
struct BindMount {
    target: PathBuf,
}

impl BindMount {
    fn new(source: &Path, target: &Path) -> BindMount {
        let status = Command::new("/bin/mount").arg("--bind").arg(source).arg(target).status().expect("run mount");
        assert!(status.success(), "mount --bind {} {}: {status}", source.display(), target.display());
        BindMount { target: target.to_path_buf() }
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = Command::new("/bin/umount").arg(&self.target).status();
    }
}

/// Sleepers in a test cgroup, to see whether a refused restore touched them.
fn start_sleepers(cgroup: &TestCgroup, count: usize) -> Vec<Child> {
    let children: Vec<Child> = (0..count)
        .map(|_| cgroup.spawn(Command::new(WORKLOAD).arg("sleep").stdin(Stdio::null())).expect("spawn sleeper"))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while cgroup.pids().expect("cgroup.procs").len() < count {
        assert!(Instant::now() < deadline, "sleepers did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    children
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_a_restore_could_never_swap_are_refused_before_anything_stops() {
    if !root_or_skip("volumes_a_restore_could_never_swap_are_refused_before_anything_stops") {
        return;
    }
    let fs = LoopBtrfs::create(256 << 20).expect("loop btrfs");
    let volume = fs.create_subvolume("app").expect("subvolume");
    let other = fs.create_subvolume("other").expect("second subvolume");
    let bind_target = tempfile::Builder::new().prefix("rollpoint-bind-").tempdir().expect("bind target");
    let cgroup = TestCgroup::create("recover-preflight").expect("cgroup");
    let mut sleepers = start_sleepers(&cgroup, 2);
    let daemon = TestDaemon::start(daemon_binary()).await.expect("start rollpointd");
    let mut clients = daemon.clients().await.expect("connect");

    // The filesystem's top-level subvolume: its mount point.
    let refused = register(&mut clients, "top", cgroup.relative_name(), fs.mount_point()).await;
    expect_status(refused.map(tonic::Response::new), Code::FailedPrecondition, &["could never swap", "mount point"]);
    // A subvolume bind-mounted elsewhere, named by its mount point.
    let bound = BindMount::new(&other, bind_target.path());
    let refused = register(&mut clients, "bound", cgroup.relative_name(), bind_target.path()).await;
    expect_status(refused.map(tonic::Response::new), Code::FailedPrecondition, &["could never swap", "mount point"]);
    drop(bound);
    assert!(list_containers(&mut clients).await.is_empty(), "nothing registered");

    // A volume that becomes a mount point after registration: the restore
    // fails before the container is stopped.
    register(&mut clients, "app", cgroup.relative_name(), &volume).await.expect("register");
    create_snapshot(&mut clients, "app", "first", "rollback-point").await.expect("snapshot");
    let pids_before = cgroup.pids().expect("cgroup.procs");
    let over = BindMount::new(&volume, &volume);
    let refused = restore(&mut clients, "app", "rollback-point", "").await;
    expect_status(refused.map(tonic::Response::new), Code::FailedPrecondition, &["could never swap", "mount point"]);
    assert_eq!(cgroup.pids().expect("cgroup.procs"), pids_before, "a refused restore touched the container");
    for sleeper in &mut sleepers {
        assert!(sleeper.try_wait().expect("try_wait").is_none(), "a sleeper died");
    }
    let staging: Vec<String> = subvolumes_in(&snapshot_folder(fs.mount_point(), "app"))
        .into_iter()
        .filter(|name| name.starts_with("restore-staging"))
        .collect();
    assert!(staging.is_empty(), "a refused restore left {staging:?}");
    drop(over);

    // Once the volume can be swapped again the restore runs.
    let answer = restore(&mut clients, "app", "rollback-point", "").await.expect("restore after the unmount");
    assert!(!answer.pre_restore_snapshot.is_empty());
}

const CLI: &str = env!("CARGO_BIN_EXE_rollpoint");

/// Everything the daemon lists: containers and each one's snapshots.
#[derive(Debug, Clone, PartialEq)]
struct Listing {
    containers: Vec<proto::Container>,
    snapshots: Vec<Vec<proto::Snapshot>>,
}

async fn listing(clients: &mut Clients) -> Listing {
    let containers = list_containers(clients).await;
    let mut snapshots = Vec::new();
    for container in &containers {
        snapshots.push(list_snapshots(clients, &container.id).await);
    }
    Listing { containers, snapshots }
}

/// Compares two listings field by field, naming the first difference.
fn assert_same_listing(got: &Listing, want: &Listing, case: &str) {
    let ids = |l: &Listing| l.containers.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(got), ids(want), "{case}: containers");
    for (got_container, want_container) in got.containers.iter().zip(&want.containers) {
        assert_eq!(got_container, want_container, "{case}: container {}", want_container.id);
    }
    for (got_snapshots, want_snapshots) in got.snapshots.iter().zip(&want.snapshots) {
        assert_eq!(names(got_snapshots), names(want_snapshots), "{case}: snapshot names");
        for (got_snapshot, want_snapshot) in got_snapshots.iter().zip(want_snapshots) {
            // Sizes are measurements the daemon makes again in the background,
            // not part of the record: either listing may be taken before one.
            let recorded = |s: &proto::Snapshot| proto::Snapshot {
                delta_bytes: None,
                delta_parent: String::new(),
                exclusive_bytes: 0,
                ..s.clone()
            };
            assert_eq!(recorded(got_snapshot), recorded(want_snapshot), "{case}: {}", want_snapshot.resource_name);
        }
    }
}

async fn snapshot_with(clients: &mut Clients, container: &str, alias: &str, expiry_days: u32, comment: &str) {
    clients
        .snapshots
        .create_snapshot(proto::CreateSnapshotRequest {
            container: container.into(),
            name: String::new(),
            alias: alias.into(),
            expiry_days,
            comment: comment.into(),
        })
        .await
        .expect("CreateSnapshot");
}

/// Copies a folder tree (the state directory), files and folders only.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("list") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// The four ways the store is damaged.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// A few bytes of every 4 KiB page of every store file overwritten.
    PagesOverwritten,
    /// Every store file cut to a quarter.
    Truncated,
    /// The state directory gone (a new root disk).
    Removed,
    /// The state directory put back from a copy taken before the last
    /// snapshots.
    OlderCopy,
}

fn damage(state: &Path, how: Damage, older: &Path) {
    use std::os::unix::fs::FileExt as _;
    let db = state.join("db");
    match how {
        Damage::PagesOverwritten => {
            for file in files_under(&db) {
                let handle = std::fs::OpenOptions::new().write(true).open(&file).expect("open");
                let length = handle.metadata().expect("stat").len();
                let mut offset = 64;
                while offset < length {
                    handle.write_all_at(&[0xa5; 16], offset).expect("overwrite");
                    offset += 4096;
                }
            }
        }
        Damage::Truncated => {
            for file in files_under(&db) {
                let handle = std::fs::OpenOptions::new().write(true).open(&file).expect("open");
                let length = handle.metadata().expect("stat").len();
                handle.set_len(length / 4).expect("truncate");
            }
        }
        Damage::Removed => std::fs::remove_dir_all(state).expect("remove the state dir"),
        Damage::OlderCopy => {
            std::fs::remove_dir_all(state).expect("remove the state dir");
            copy_tree(older, state);
        }
    }
}

fn run_recover(config: &Path, state: &Path, apply: bool) -> String {
    let mut command = Command::new(CLI);
    command.arg("recover").arg("--config").arg(config).arg("--state-dir").arg(state);
    if apply {
        command.arg("--apply");
    }
    let output = command.output().expect("run rollpoint recover");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "rollpoint recover failed: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_is_never_served_and_recover_brings_everything_back() {
    if !root_or_skip("a_damaged_store_is_never_served_and_recover_brings_everything_back") {
        return;
    }
    let fs = LoopBtrfs::create(512 << 20).expect("loop btrfs");
    let volumes = [fs.create_subvolume("a").expect("subvolume"), fs.create_subvolume("b").expect("subvolume")];
    let cgroups = [TestCgroup::create("recover-a").expect("cgroup"), TestCgroup::create("recover-b").expect("cgroup")];
    let state_parent = tempfile::Builder::new().prefix("rollpoint-recover-state-").tempdir().expect("state dir");
    let state = state_parent.path().join("state");
    let older = state_parent.path().join("older");
    let config = format!("filesystems = [{:?}]\n", fs.mount_point().to_str().expect("utf-8"));
    let options = DaemonOptions::default().state_dir(&state).config(config);
    let mut daemon = TestDaemon::start_with(daemon_binary(), options).await.expect("start rollpointd");
    let config_file = daemon.dir().join("rollpointd.toml");
    let mut clients = daemon.clients().await.expect("connect");
    for ((id, volume), cgroup) in ["a", "b"].iter().zip(&volumes).zip(&cgroups) {
        clients
            .containers
            .register_container(proto::RegisterContainerRequest {
                id: (*id).into(),
                cgroup: cgroup.relative_name().into(),
                subvolume: volume.to_str().expect("utf-8").into(),
                labels: [("tier".to_owned(), format!("tier-{id}"))].into(),
                ..Default::default()
            })
            .await
            .expect("register");
        snapshot_with(&mut clients, id, "rollback-point", 7, "first").await;
        snapshot_with(&mut clients, id, "", 0, "kept forever").await;
    }
    // The older copy: taken with the daemon stopped, before the last ten
    // snapshots, an alias move, an expiry change and a restore.
    daemon.kill9().expect("stop");
    copy_tree(&state, &older);
    daemon.restart().await.expect("restart");
    let mut clients = daemon.clients().await.expect("connect");
    for round in 0..5 {
        for id in ["a", "b"] {
            let alias = if round == 4 { "rollback-point" } else { "" };
            snapshot_with(&mut clients, id, alias, round + 1, &format!("round {round}")).await;
        }
    }
    let second_of_b = list_snapshots(&mut clients, "b").await[1].name.clone();
    clients
        .snapshots
        .update_snapshot(proto::UpdateSnapshotRequest {
            container: "b".into(),
            snapshot: second_of_b,
            alias: "nightly".into(),
            expiry_days: 3,
            // A hold, too, is rebuilt from the disks.
            update_mask: vec!["alias".into(), "expiry_days".into(), "hold".into()],
            hold_reason: "kept for the audit".into(),
        })
        .await
        .expect("update");
    restore(&mut clients, "a", "rollback-point", "").await.expect("restore a");

    for how in [Damage::PagesOverwritten, Damage::Truncated, Damage::Removed, Damage::OlderCopy] {
        let case = format!("{how:?}");
        let mut clients = daemon.clients().await.expect("connect");
        let before = listing(&mut clients).await;
        daemon.kill9().expect("stop");
        damage(&state, how, &older);

        // Never served: the daemon refuses to start, naming the way out.
        let refused = daemon.restart().await;
        assert!(refused.is_err(), "{case}: the daemon served a damaged store");
        let log = daemon.log();
        let last_start = log.rsplit("===== start").next().unwrap_or_default();
        assert!(
            last_start.contains("rollpoint recover"),
            "{case}: the refusal does not name the way out: {last_start}"
        );

        // A dry run changes nothing: the daemon still refuses.
        let dry = run_recover(&config_file, &state, false);
        assert!(dry.contains("dry run"), "{case}: {dry}");
        assert!(daemon.restart().await.is_err(), "{case}: served after a dry run");

        let applied = run_recover(&config_file, &state, true);
        println!("{case}: recover --apply said:\n{applied}");
        daemon.restart().await.unwrap_or_else(|error| panic!("{case}: start after recover: {error}"));
        let mut clients = daemon.clients().await.expect("connect");
        assert_same_listing(&listing(&mut clients).await, &before, &case);

        // The containers restore and undo as before.
        for (id, snapshots) in ["a", "b"].iter().zip(&before.snapshots) {
            let answer = restore(&mut clients, id, &snapshots[0].name, "").await.expect("restore after recover");
            restore(&mut clients, id, &answer.pre_restore_snapshot, "").await.expect("undo after recover");
        }
    }

    // The whole record to a file and back into an empty state directory.
    let mut clients = daemon.clients().await.expect("connect");
    let before = listing(&mut clients).await;
    let daily = state.join("store-exports");
    assert_eq!(std::fs::read_dir(&daily).expect("daily exports").count(), 1, "one daily export in {daily:?}");
    daemon.kill9().expect("stop");
    let file = state_parent.path().join("export.json");
    let store_command = |verb: &str| {
        let output = Command::new(CLI)
            .args(["store", verb])
            .arg(&file)
            .arg("--config")
            .arg(&config_file)
            .arg("--state-dir")
            .arg(&state)
            .output()
            .expect("run rollpoint store");
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "rollpoint store {verb}: {text}");
        text
    };
    store_command("export");
    let exported = std::fs::read_to_string(&file).expect("read the export");
    assert!(exported.contains("\"format\": \"rollpoint-store\""), "{exported}");
    assert!(!exported.contains("\"tokens\""), "tokens exported unasked");
    std::fs::remove_dir_all(&state).expect("remove the state dir");
    store_command("import");
    daemon.restart().await.expect("start after import");
    let mut clients = daemon.clients().await.expect("connect");
    assert_same_listing(&listing(&mut clients).await, &before, "export and import");
}

/// Checks that the records beside the data say what the daemon lists: each
/// ready snapshot has its sidecar with the same name, alias, times, origin
/// and comment; each sidecar has its snapshot listed, or its volume on disk.
async fn assert_sidecars_agree(clients: &mut Clients, container: &str, folder: &Path, case: &str) {
    use rollpoint::store::sidecar;
    let on_disk = sidecar::read_folder(folder).expect("read the sidecars");
    assert!(on_disk.unreadable.is_empty(), "{case}: {:?}", on_disk.unreadable);
    assert_eq!(on_disk.container.as_ref().map(|c| c.id.as_str()), Some(container), "{case}: container sidecar");
    let listed = list_snapshots(clients, container).await;
    for snapshot in listed.iter().filter(|s| s.state == proto::SnapshotState::Ready as i32) {
        let found = on_disk
            .snapshots
            .iter()
            .find(|s| s.name == snapshot.name)
            .unwrap_or_else(|| panic!("{case}: {} has no sidecar", snapshot.name));
        assert_eq!(found.alias.clone().unwrap_or_default(), snapshot.alias, "{case}: alias of {}", snapshot.name);
        assert_eq!(found.comment, snapshot.comment, "{case}: comment of {}", snapshot.name);
        assert_eq!(Some(found.create_time), snapshot.create_time.as_ref().map(|t| time_of(Some(t))), "{case}");
        assert_eq!(found.expire_time, snapshot.expire_time.as_ref().map(|t| time_of(Some(t))), "{case}: expiry");
        assert_eq!(found.uuid, snapshot.uuid, "{case}: uuid of {}", snapshot.name);
    }
    for found in &on_disk.snapshots {
        let listed_too = listed.iter().any(|s| s.name == found.name);
        assert!(listed_too || is_subvolume(&folder.join(&found.name)), "{case}: stale sidecar of {}", found.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_every_step_leaves_the_store_and_the_disks_agreeing() {
    if !root_or_skip("a_crash_at_every_step_leaves_the_store_and_the_disks_agreeing") {
        return;
    }
    let fs = LoopBtrfs::create(512 << 20).expect("loop btrfs");
    let volume = fs.create_subvolume("a").expect("subvolume");
    let folder = snapshot_folder(fs.mount_point(), "a");
    let cgroup = TestCgroup::create("recover-crash").expect("cgroup");
    let state_parent = tempfile::Builder::new().prefix("rollpoint-recover-state-").tempdir().expect("state dir");
    let state = state_parent.path().join("state");
    let config = format!("filesystems = [{:?}]\n", fs.mount_point().to_str().expect("utf-8"));
    let normal = DaemonOptions::default().state_dir(&state).config(config.clone());
    let mut daemon = TestDaemon::start_with(daemon_binary(), normal.clone()).await.expect("start rollpointd");
    let mut clients = daemon.clients().await.expect("connect");
    register(&mut clients, "a", cgroup.relative_name(), &volume).await.expect("register");
    for _ in 0..3 {
        snapshot_with(&mut clients, "a", "rollback-point", 5, "before the crashes").await;
    }
    let cases: [(&str, &[&str]); 4] = [
        (
            "create",
            &[
                "create.intent",
                "create.frozen",
                "create.snapshotted",
                "create.flushed",
                "create.recorded",
                "mirror.durable",
            ],
        ),
        ("update", &["mirror.durable"]),
        ("delete", &["delete.intent", "delete.removed", "mirror.durable"]),
        (
            "restore",
            &[
                "restore.stopping",
                "restore.cloning",
                "restore.exchanging",
                "restore.exchanged",
                "restore.recorded",
                "mirror.durable",
            ],
        ),
    ];
    let mut round = 0;
    for (operation, points) in cases {
        for point in points {
            round += 1;
            let case = format!("{operation} killed at {point}");
            let armed = DaemonOptions::fault(point).state_dir(&state).config(config.clone());
            daemon.restart_with(armed).await.expect("start with the fault armed");
            let mut clients = daemon.clients().await.expect("connect");
            let listed = list_snapshots(&mut clients, "a").await;
            let result = match operation {
                "create" => clients
                    .snapshots
                    .create_snapshot(proto::CreateSnapshotRequest {
                        container: "a".into(),
                        alias: "rollback-point".into(),
                        expiry_days: 2,
                        ..Default::default()
                    })
                    .await
                    .map(|_| ()),
                "update" => clients
                    .snapshots
                    .update_snapshot(proto::UpdateSnapshotRequest {
                        container: "a".into(),
                        snapshot: listed[0].name.clone(),
                        alias: "rollback-point".into(),
                        expiry_days: 9,
                        update_mask: vec!["alias".into(), "expiry_days".into()],
                        hold_reason: String::new(),
                    })
                    .await
                    .map(|_| ()),
                "delete" => clients
                    .snapshots
                    .delete_snapshot(proto::DeleteSnapshotRequest {
                        container: "a".into(),
                        snapshot: listed[0].name.clone(),
                    })
                    .await
                    .map(|_| ()),
                // A write first: a repeat of the last restore with nothing
                // written since is a no-op that never reaches the point.
                _ => {
                    std::fs::write(volume.join(format!("marker-{round}")), b"written").expect("write a marker");
                    restore(&mut clients, "a", &listed[round % listed.len()].name, "").await.map(|_| ())
                }
            };
            expect_transport_error(&case, result);
            expect_fault_death(&mut daemon, point);
            daemon.restart_with(normal.clone()).await.unwrap_or_else(|error| panic!("{case}: restart: {error}"));
            let mut clients = daemon.clients().await.expect("connect");
            assert_sidecars_agree(&mut clients, "a", &folder, &case).await;
            println!("{case}: store and sidecars agree");
        }
    }
}

/// A snapshot volume the store does not know, found at start: in `rollpoint
/// status` (and its `--json`), in the metrics, never deleted; gone from both
/// once it is removed by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_volumes_without_a_record_are_reported_not_deleted() {
    if !root_or_skip("snapshot_volumes_without_a_record_are_reported_not_deleted") {
        return;
    }
    let fs = LoopBtrfs::create(256 << 20).expect("loop btrfs");
    let volume = fs.create_subvolume("a").expect("subvolume");
    let cgroup = TestCgroup::create("recover-unrecorded").expect("cgroup");
    let mut daemon = TestDaemon::start(daemon_binary()).await.expect("start rollpointd");
    let mut clients = daemon.clients().await.expect("connect");
    register(&mut clients, "a", cgroup.relative_name(), &volume).await.expect("register");
    create_snapshot(&mut clients, "a", "kept", "").await.expect("snapshot");
    daemon.kill9().expect("stop");
    let stray = snapshot_folder(fs.mount_point(), "a").join("stray");
    rollpoint::testkit::loop_btrfs::btrfs_command(&[
        "subvolume",
        "snapshot",
        "-r",
        volume.to_str().unwrap(),
        stray.to_str().unwrap(),
    ])
    .expect("a snapshot made by hand");
    daemon.restart().await.expect("restart");
    let mut clients = daemon.clients().await.expect("connect");

    let status = |daemon: &TestDaemon| {
        let output = cli(daemon, &["--json", "status"]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice::<serde_json::Value>(&output.stdout).expect("JSON")
    };
    let stray_text = stray.to_str().unwrap().to_owned();
    assert_eq!(status(&daemon)["unrecorded_snapshot_volumes"], serde_json::json!([stray_text]));
    let human = String::from_utf8(cli(&daemon, &["status"]).stdout).unwrap();
    assert!(human.contains("unrecorded snapshots") && human.contains(&stray_text), "{human}");
    let socket = common::curl::Via::Socket(daemon.socket().to_owned());
    let scrape = |socket: &common::curl::Via| {
        let (code, text) = common::curl::curl(socket, "GET", "/metrics", None);
        assert_eq!(code, 200, "{text}");
        text.as_str().expect("text").to_owned()
    };
    assert!(scrape(&socket).contains("rollpoint_unrecorded_snapshot_volumes 1"), "{}", scrape(&socket));
    assert!(stray.exists(), "left in place");
    assert_eq!(names(&list_snapshots(&mut clients, "a").await), ["kept"]);

    rollpoint::testkit::loop_btrfs::btrfs_command(&["subvolume", "delete", stray.to_str().unwrap()])
        .expect("removed by hand");
    assert_eq!(status(&daemon)["unrecorded_snapshot_volumes"], serde_json::json!([]));
    assert!(scrape(&socket).contains("rollpoint_unrecorded_snapshot_volumes 0"));
    drop(daemon);
}
