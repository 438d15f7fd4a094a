//! RestoreSnapshot end to end ("one-call restore that can be undone"), on a
//! real `rollpointd`, a loop-backed btrfs and real cgroups:
//!
//! - a container of real processes (a `rollpoint-workload serve` that mirrors
//!   a file of the volume into a status file outside it) started and stopped
//!   by the `command` lifecycle is restored by alias: the volume is exactly
//!   the snapshot, a new process serves the restored data, the state from
//!   just before is kept as a read-only pre-restore snapshot, and restoring
//!   that one undoes the restore;
//! - restores by name, refusals (a snapshot of another container, a deleted
//!   one: NOT_FOUND), repeats (no writes since: `already_restored`; the same
//!   `request_id`: the same answer), and a restore that finds the container
//!   busy with another restore (it waits its turn, then finds the work
//!   done);
//! - a crash at each restore fault point, then what recovery makes of it
//!   (matrix printed);
//! - the `none` lifecycle: the cgroup's processes are killed.
//!
//! Root only.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rollpoint::api::proto::{self, SnapshotOrigin, SnapshotState};
use rollpoint::testkit::cgroup::TestCgroup;
use rollpoint::testkit::daemon::{DaemonOptions, TestDaemon, RESTORE_FAULT_POINTS};
use rollpoint::testkit::loop_btrfs::LoopBtrfs;
use rollpoint::testkit::root_or_skip;
use tonic::Code;

/// How long a served container gets to show some content.
const SERVE_TIMEOUT: Duration = Duration::from_secs(10);
/// The steps a restore reports, in order (`engine/restore.rs`).
const RESTORE_STEPS: [&str; 5] = ["prepare", "stop", "swap", "start", "record"];

type Tree = BTreeMap<PathBuf, TreeEntry>;

/// A container of one real process: `rollpoint-workload serve` reads
/// `<volume>/data.txt` every 50 ms and copies it to a status file in a temp
/// folder outside the volume; its pid is in a pid file there. The command
/// lifecycle starts it (inside the cgroup) and stops it (kill by pid file).
struct Served {
    /// First: dropping it kills the server, which writes into `dir`.
    cgroup: TestCgroup,
    dir: tempfile::TempDir,
    volume: PathBuf,
}

impl Served {
    fn new(prefix: &str, volume: &Path) -> Served {
        let cgroup = TestCgroup::create(prefix).expect("create the test cgroup");
        let dir = tempfile::Builder::new().prefix("rollpoint-served-").tempdir().expect("temp dir");
        Served { cgroup, dir, volume: volume.to_path_buf() }
    }

    fn status_file(&self) -> PathBuf {
        self.dir.path().join("status")
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("pid")
    }

    /// The start command's shell line: the server in the background, its pid
    /// in the pid file; the shell exits at once.
    fn start_line(&self) -> String {
        format!(
            "{WORKLOAD} serve --watch {} --status {} </dev/null >/dev/null 2>&1 & echo $! > {}",
            self.volume.join("data.txt").display(),
            self.status_file().display(),
            self.pid_file().display()
        )
    }

    /// Where the lifecycle commands write one line (`stop`, `start`) each
    /// time they run.
    fn commands_file(&self) -> PathBuf {
        self.dir.path().join("commands")
    }

    /// The lifecycle commands run so far, in order.
    fn commands_run(&self) -> Vec<String> {
        std::fs::read_to_string(self.commands_file()).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    /// The lifecycle to register: stop kills the server by its pid file;
    /// each command notes that it ran.
    fn lifecycle(&self) -> proto::Lifecycle {
        let log = self.commands_file();
        let stop = format!("echo stop >> {}; kill $(cat {})", log.display(), self.pid_file().display());
        let start = format!("echo start >> {}; {}", log.display(), self.start_line());
        command_lifecycle(&["/bin/sh", "-c", &stop], &["/bin/sh", "-c", &start], 10)
    }

    /// Starts the server the first time, as the daemon's start command would:
    /// a shell in the cgroup that backgrounds it.
    fn start_by_hand(&self) {
        let mut shell = self
            .cgroup
            .spawn(Command::new("/bin/sh").arg("-c").arg(self.start_line()).current_dir("/").stdin(Stdio::null()))
            .expect("spawn the start shell");
        let status = shell.wait().expect("wait for the start shell");
        assert!(status.success(), "start shell: {status}");
    }

    /// The pid the last start wrote.
    fn pid(&self) -> u32 {
        let text = std::fs::read_to_string(self.pid_file()).expect("read the pid file");
        text.trim().parse().unwrap_or_else(|e| panic!("pid file {text:?}: {e}"))
    }

    /// Removes the status file and waits until a server writes it again with
    /// exactly `want`: proof that a server runs now and reads the volume.
    /// Returns the pid of the last start, checked alive and in the cgroup.
    async fn wait_serving(&self, want: &[u8]) -> u32 {
        let status_file = self.status_file();
        match std::fs::remove_file(&status_file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("remove {}: {e}", status_file.display()),
        }
        let deadline = Instant::now() + SERVE_TIMEOUT;
        let mut last = None;
        loop {
            last = std::fs::read(&status_file).ok().or(last);
            if last.as_deref() == Some(want) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no server showed {:?} in {SERVE_TIMEOUT:?}; last status {:?}; cgroup {:?} (frozen: {:?})",
                String::from_utf8_lossy(want),
                last.as_deref().map(String::from_utf8_lossy),
                self.cgroup.pids(),
                self.cgroup.is_frozen()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pid = self.pid();
        assert!(process_alive(pid), "server {pid} from the pid file is not running");
        assert!(self.cgroup.pids().expect("cgroup.procs").contains(&pid), "server {pid} is not in the cgroup");
        pid
    }
}

/// The data a container starts with: files, folders, an empty folder, a
/// symlink, a binary file, odd modes.
fn write_first_state(volume: &Path) {
    std::fs::write(volume.join("data.txt"), "state one\n").unwrap();
    std::fs::create_dir_all(volume.join("docs")).unwrap();
    std::fs::write(volume.join("docs/readme.txt"), "kept as is\n").unwrap();
    std::fs::write(volume.join("docs/old.txt"), "deleted after the snapshot\n").unwrap();
    std::fs::create_dir_all(volume.join("nested/deep")).unwrap();
    let pattern: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(volume.join("nested/deep/blob.bin"), pattern).unwrap();
    std::fs::create_dir_all(volume.join("empty")).unwrap();
    std::os::unix::fs::symlink("data.txt", volume.join("link")).unwrap();
    std::fs::write(volume.join("script.sh"), "#!/bin/sh\necho hi\n").unwrap();
    set_mode(&volume.join("script.sh"), 0o750);
}

/// What the tests do to a container after its snapshot: change, delete,
/// add, truncate.
fn write_second_state(volume: &Path) {
    std::fs::write(volume.join("data.txt"), "state two\n").unwrap();
    std::fs::remove_file(volume.join("docs/old.txt")).unwrap();
    std::fs::write(volume.join("docs/new.txt"), "added after the snapshot\n").unwrap();
    std::fs::OpenOptions::new().write(true).open(volume.join("nested/deep/blob.bin")).unwrap().set_len(1000).unwrap();
    std::fs::remove_dir(volume.join("empty")).unwrap();
    std::fs::write(volume.join("new.bin"), vec![0xa5u8; 300_000]).unwrap();
    set_mode(&volume.join("script.sh"), 0o700);
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The checks every successful (not `already_restored`) restore answer
/// passes: target, pre-restore name, timings, steps.
fn check_answer(answer: &proto::RestoreSnapshotResponse, target: &str) {
    let restored = answer.restored.as_ref().expect("restored snapshot in the answer");
    assert_eq!(restored.name, target, "the answer names the snapshot restored");
    assert!(!answer.already_restored);
    assert!(
        answer.pre_restore_snapshot.starts_with("pre-restore-"),
        "pre-restore snapshot name: {:?}",
        answer.pre_restore_snapshot
    );
    let total = duration_of(answer.total.as_ref());
    let downtime = duration_of(answer.downtime.as_ref());
    let daemon_time = duration_of(answer.daemon_time.as_ref());
    assert!(total > Duration::ZERO && downtime > Duration::ZERO && daemon_time > Duration::ZERO, "{answer:?}");
    assert!(total >= daemon_time, "total {total:?} < daemon_time {daemon_time:?}");
    assert!(total >= downtime, "total {total:?} < downtime {downtime:?}");
    let steps: Vec<&str> = answer.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(steps, RESTORE_STEPS, "steps in order");
    let summed: Duration = answer.steps.iter().map(|s| duration_of(s.took.as_ref())).sum();
    assert!(summed <= total, "steps add up to {summed:?}, more than the total {total:?}");
}

// ------------------------------------------------------------------ the job

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_by_alias_of_a_running_container_and_undo_it() {
    if !root_or_skip("restore_by_alias_of_a_running_container_and_undo_it") {
        return;
    }
    let fs = LoopBtrfs::create(512 << 20).expect("loop btrfs");
    let volume = fs.create_subvolume("app").expect("subvolume");
    let folder = snapshot_folder(fs.mount_point(), "app");
    write_first_state(&volume);
    let served = Served::new("restore-app", &volume);
    served.start_by_hand();
    let first_pid = served.wait_serving(b"state one\n").await;

    let daemon = TestDaemon::start(daemon_binary()).await.expect("start rollpointd");
    let mut clients = daemon.clients().await.expect("connect");
    register_with_lifecycle(&mut clients, "app", served.cgroup.relative_name(), &volume, Some(served.lifecycle()))
        .await
        .expect("RegisterContainer");

    let target = create_snapshot(&mut clients, "app", "before-change", "rollback-point").await.expect("snapshot");
    let first_state = file_tree(&volume);
    assert_same_tree(&file_tree(Path::new(&target.location)), &first_state, "the snapshot");

    write_second_state(&volume);
    let second_state = file_tree(&volume);
    served.wait_serving(b"state two\n").await;
    let newer = create_snapshot(&mut clients, "app", "after-change", "").await.expect("newer snapshot");

    let answer = restore(&mut clients, "app", "rollback-point", "").await.expect("RestoreSnapshot by alias");
    check_answer(&answer, "before-change");
    assert!(!served.cgroup.is_frozen().unwrap(), "frozen after the restore");

    // The data is the snapshot's, exactly.
    assert_same_tree(&file_tree(&volume), &first_state, "the volume after the restore");
    assert!(is_subvolume(&volume));
    // A new process runs and serves the restored data; the old one is gone.
    let new_pid = served.wait_serving(b"state one\n").await;
    assert_ne!(new_pid, first_pid, "the start command ran again");
    assert!(!process_alive(first_pid), "the old server {first_pid} survived the restore");

    // The state from just before is kept, read-only, as a pre-restore snapshot.
    let pre_restore = get_snapshot(&mut clients, "app", &answer.pre_restore_snapshot).await.expect("pre-restore");
    assert_eq!(pre_restore.origin(), SnapshotOrigin::PreRestore);
    assert_eq!(pre_restore.state(), SnapshotState::Ready);
    assert!(pre_restore.read_only);
    assert_read_only(Path::new(&pre_restore.location));
    assert_same_tree(&file_tree(Path::new(&pre_restore.location)), &second_state, "the pre-restore snapshot");

    // Newer snapshots are still there, untouched.
    let listed = assert_listing_matches_disk(&mut clients, "app", &folder).await;
    let expected: std::collections::BTreeSet<String> =
        ["before-change", "after-change", answer.pre_restore_snapshot.as_str()].map(String::from).into();
    assert_eq!(listed, expected);
    assert_same_tree(&file_tree(Path::new(&newer.location)), &second_state, "the newer snapshot");
    assert_eq!(get_snapshot(&mut clients, "app", "rollback-point").await.unwrap().name, "before-change");

    // Undo: restore the pre-restore snapshot.
    let undo = restore(&mut clients, "app", &answer.pre_restore_snapshot, "").await.expect("undo");
    check_answer(&undo, &answer.pre_restore_snapshot);
    assert_ne!(undo.pre_restore_snapshot, answer.pre_restore_snapshot);
    assert_same_tree(&file_tree(&volume), &second_state, "the volume after the undo");
    let undo_pid = served.wait_serving(b"state two\n").await;
    assert!(!process_alive(new_pid) && undo_pid != new_pid, "the server was restarted by the undo");
    let undone = get_snapshot(&mut clients, "app", &undo.pre_restore_snapshot).await.expect("second pre-restore");
    assert_same_tree(&file_tree(Path::new(&undone.location)), &first_state, "the state the undo replaced");
    assert_listing_matches_disk(&mut clients, "app", &folder).await;
    assert!(!served.cgroup.is_frozen().unwrap());

    // Both restores are on the timeline.
    let events = clients
        .events
        .list_events(proto::ListEventsRequest { container: "app".into(), page_size: 1000, ..Default::default() })
        .await
        .expect("ListEvents")
        .into_inner()
        .events;
    let finished = events.iter().filter(|e| e.kind == "restore.finished").count();
    assert_eq!(finished, 2, "restore.finished events: {:?}", events.iter().map(|e| &e.kind).collect::<Vec<_>>());
    println!(
        "restore: total {:?}, downtime {:?}, daemon {:?}, steps {:?}",
        duration_of(answer.total.as_ref()),
        duration_of(answer.downtime.as_ref()),
        duration_of(answer.daemon_time.as_ref()),
        answer.steps.iter().map(|s| (s.name.as_str(), duration_of(s.took.as_ref()))).collect::<Vec<_>>()
    );
}

// ---------------------------------------------------- names, refusals, repeats

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_by_name_refusals_repeats_and_a_busy_container() {
    if !root_or_skip("restore_by_name_refusals_repeats_and_a_busy_container") {
        return;
    }
    let fs = LoopBtrfs::create(512 << 20).expect("loop btrfs");
    let alpha_volume = fs.create_subvolume("alpha").expect("subvolume");
    let beta_volume = fs.create_subvolume("beta").expect("subvolume");
    let gamma_volume = fs.create_subvolume("gamma").expect("subvolume");
    let alpha_folder = snapshot_folder(fs.mount_point(), "alpha");
    // Empty cgroups: these containers have no processes; the `none`
    // lifecycle has nothing to stop.
    let alpha_cgroup = TestCgroup::create("restore-alpha").expect("cgroup");
    let beta_cgroup = TestCgroup::create("restore-beta").expect("cgroup");
    let gamma_cgroup = TestCgroup::create("restore-gamma").expect("cgroup");
    let marks = tempfile::Builder::new().prefix("rollpoint-marks-").tempdir().expect("temp dir");
    // A short lock wait, so that a restore that finds the container busy is
    // refused in 200 ms instead of the default 30 s.
    let daemon = TestDaemon::start_with(daemon_binary(), DaemonOptions::default().config("lock_wait_ms = 200\n"))
        .await
        .expect("start rollpointd");
    let mut clients = daemon.clients().await.expect("connect");
    register(&mut clients, "alpha", alpha_cgroup.relative_name(), &alpha_volume).await.expect("register alpha");
    register(&mut clients, "beta", beta_cgroup.relative_name(), &beta_volume).await.expect("register beta");

    let file = alpha_volume.join("f.txt");
    let read = || std::fs::read_to_string(&file).expect("read f.txt");
    std::fs::write(&file, "one").unwrap();
    create_snapshot(&mut clients, "alpha", "s1", "").await.expect("s1");
    std::fs::write(&file, "two").unwrap();
    create_snapshot(&mut clients, "alpha", "s2", "").await.expect("s2");
    std::fs::write(beta_volume.join("f.txt"), "beta").unwrap();
    create_snapshot(&mut clients, "beta", "b1", "rollback-point").await.expect("b1");

    // By name.
    let first = restore(&mut clients, "alpha", "s1", "").await.expect("restore s1 by name");
    check_answer(&first, "s1");
    // f.txt is read only after the repeat below: with relatime, the first
    // read of a restored file updates its atime, a change of the volume that
    // makes the repeat a real restore again.
    let pre_first = get_snapshot(&mut clients, "alpha", &first.pre_restore_snapshot).await.unwrap();
    assert_eq!(std::fs::read_to_string(Path::new(&pre_first.location).join("f.txt")).unwrap(), "two");
    let listed = assert_listing_matches_disk(&mut clients, "alpha", &alpha_folder).await;

    // A snapshot of another container, by name and by an alias only it has:
    // looked up within the container, so not found.
    for reference in ["b1", "rollback-point"] {
        expect_status(
            restore(&mut clients, "alpha", reference, "").await.map(tonic::Response::new),
            Code::NotFound,
            &[reference],
        );
    }
    // A deleted snapshot.
    clients
        .snapshots
        .delete_snapshot(proto::DeleteSnapshotRequest { container: "alpha".into(), snapshot: "s2".into() })
        .await
        .expect("delete s2");
    expect_status(restore(&mut clients, "alpha", "s2", "").await.map(tonic::Response::new), Code::NotFound, &["s2"]);
    let mut expected_listing = listed.clone();
    expected_listing.remove("s2");
    assert_eq!(assert_listing_matches_disk(&mut clients, "alpha", &alpha_folder).await, expected_listing);

    // The same restore again, no writes since: nothing done.
    let repeat = restore(&mut clients, "alpha", "s1", "").await.expect("repeat restore");
    assert!(repeat.already_restored, "a repeat with no writes must be already_restored: {repeat:?}");
    assert!(repeat.pre_restore_snapshot.is_empty(), "no pre-restore snapshot for a no-op: {repeat:?}");
    assert!(repeat.steps.is_empty());
    assert_eq!(repeat.restored.as_ref().map(|s| s.name.as_str()), Some("s1"));
    assert_eq!(read(), "one", "restored, and untouched by the refusals and the repeat");
    assert_eq!(assert_listing_matches_disk(&mut clients, "alpha", &alpha_folder).await, expected_listing);

    // The same request_id twice: the first answer, and only one restore.
    std::fs::write(&file, "three").unwrap();
    let once = restore(&mut clients, "alpha", "s1", "undo-42").await.expect("restore with a request id");
    check_answer(&once, "s1");
    assert_eq!(read(), "one");
    std::fs::write(&file, "four").unwrap();
    let twice = restore(&mut clients, "alpha", "s1", "undo-42").await.expect("repeated request id");
    assert_eq!(twice, once, "a repeated request_id returns the first answer");
    assert_eq!(read(), "four", "a repeated request_id restored again");
    expected_listing.insert(once.pre_restore_snapshot.clone());
    assert_eq!(assert_listing_matches_disk(&mut clients, "alpha", &alpha_folder).await, expected_listing);
    // Another id is another restore.
    let other = restore(&mut clients, "alpha", "s1", "undo-43").await.expect("another request id");
    check_answer(&other, "s1");
    assert_eq!(read(), "one");

    // Busy: a restore whose stop command takes 1.5 s holds the container; a
    // second restore of it waits its turn (calls for one container run in the
    // order they came, issue 19), then finds it restored already: a no-op.
    let stopping = marks.path().join("stopping");
    let stop = format!("touch {}; sleep 1.5", stopping.display());
    register_with_lifecycle(
        &mut clients,
        "gamma",
        gamma_cgroup.relative_name(),
        &gamma_volume,
        Some(command_lifecycle(&["/bin/sh", "-c", &stop], &["/bin/true"], 10)),
    )
    .await
    .expect("register gamma");
    create_snapshot(&mut clients, "gamma", "g1", "").await.expect("g1");
    std::fs::write(gamma_volume.join("f.txt"), "later").unwrap();
    let slow = {
        let mut clients = clients.clone();
        tokio::spawn(async move { restore(&mut clients, "gamma", "g1", "").await })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !stopping.exists() {
        assert!(Instant::now() < deadline, "the slow stop command never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let asked = Instant::now();
    let queued = restore(&mut clients, "gamma", "g1", "").await.expect("the second restore waits its turn");
    let waited = asked.elapsed();
    assert!(queued.already_restored, "nothing was written since the first: {queued:?}");
    let slow = slow.await.expect("join").expect("the slow restore itself succeeds");
    check_answer(&slow, "g1");
    assert!(!gamma_volume.join("f.txt").exists());
    println!("a second restore of a busy container waited its turn: {waited:?}");
}

// ------------------------------------------------------------ fault points

/// One row of the matrix.
#[derive(Debug, Default)]
struct Row {
    call: String,
    died: String,
    volume_at_crash: &'static str,
    staging_at_crash: usize,
    volume_after: &'static str,
    staging_after: usize,
    frozen_after: bool,
    process: String,
    commands: String,
    listed_after: Vec<String>,
    retry: &'static str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_after_a_crash_at_every_restore_fault_point() {
    if !root_or_skip("recovery_after_a_crash_at_every_restore_fault_point") {
        return;
    }
    let fs = Arc::new(LoopBtrfs::create(1 << 30).expect("loop btrfs"));
    let mut rows: Vec<(&str, Result<Row, String>)> = Vec::new();
    for point in RESTORE_FAULT_POINTS {
        // Each point in its own task: one failing still lets the others run
        // and the matrix print; its fixtures are dropped as it unwinds.
        let fs = fs.clone();
        let result = tokio::spawn(async move { crash_in_restore(&fs, point).await }).await.map_err(panic_text);
        rows.push((point, result));
    }

    println!();
    println!(
        "{:<19} {:<12} {:<8} {:<16} {:<16} {:<16} {:<14} {:<7} {:<26} {:<52} {:<44} retry",
        "fault point",
        "call",
        "died",
        "volume@crash",
        "staging@crash",
        "volume@restart",
        "staging@rest.",
        "frozen",
        "process",
        "commands and hooks run",
        "listed@restart"
    );
    for (point, row) in &rows {
        match row {
            Ok(row) => println!(
                "{point:<19} {:<12} {:<8} {:<16} {:<16} {:<16} {:<14} {:<7} {:<26} {:<52} {:<44} {}",
                row.call,
                row.died,
                row.volume_at_crash,
                row.staging_at_crash,
                row.volume_after,
                row.staging_after,
                row.frozen_after,
                row.process,
                row.commands,
                format!("{:?}", row.listed_after),
                row.retry
            ),
            Err(failure) => println!("{point:<19} FAILED: {failure}"),
        }
    }
    let failed: Vec<&str> = rows.iter().filter(|(_, r)| r.is_err()).map(|(p, _)| *p).collect();
    assert!(failed.is_empty(), "fault points that failed: {failed:?}");
}

/// Which of the two states a volume holds.
fn which_state(volume: &Path, old: &Tree, restored: &Tree) -> &'static str {
    if !is_subvolume(volume) {
        return "MISSING";
    }
    let now = file_tree(volume);
    if &now == old {
        "old"
    } else if &now == restored {
        "restored"
    } else {
        "NEITHER"
    }
}

fn staging_in(folder: &Path) -> Vec<String> {
    subvolumes_in(folder).into_iter().filter(|name| name.starts_with("restore-staging-")).collect()
}

async fn crash_in_restore(fs: &LoopBtrfs, point: &'static str) -> Row {
    let id = point.replace('.', "-");
    let volume = fs.create_subvolume(&id).expect("subvolume");
    let folder = snapshot_folder(fs.mount_point(), &id);
    write_first_state(&volume);
    let served = Served::new(&id, &volume);
    served.start_by_hand();
    served.wait_serving(b"state one\n").await;
    let mut daemon =
        TestDaemon::start_with(daemon_binary(), DaemonOptions::fault(point)).await.expect("start rollpointd");
    let mut clients = daemon.clients().await.expect("connect");
    register_with_lifecycle(&mut clients, &id, served.cgroup.relative_name(), &volume, Some(served.lifecycle()))
        .await
        .expect("RegisterContainer");
    // The restore hooks note in the same file as the lifecycle commands
    // that they ran, and with which restore key.
    let hook =
        format!(r#"/bin/sh -c 'echo "$ROLLPOINT_HOOK $ROLLPOINT_RESTORE_ID" >> {}'"#, served.commands_file().display());
    succeeded(cli(&daemon, &["--json", "container", "update", &id, "--pre-restore", &hook, "--post-restore", &hook]));
    create_snapshot(&mut clients, &id, "target", "").await.expect("snapshot");
    let restored_state = file_tree(&volume);
    write_second_state(&volume);
    let old_state = file_tree(&volume);
    let pid_before = served.wait_serving(b"state two\n").await;

    // Steps from the exchange on are finished by recovery; earlier ones are
    // rolled back.
    let swapped = matches!(point, "restore.exchanged" | "restore.starting" | "restore.started" | "restore.recorded");
    let expected = if swapped { "restored" } else { "old" };
    let call = expect_transport_error(point, restore(&mut clients, &id, "target", "").await);
    let mut row = Row {
        call,
        died: expect_fault_death(&mut daemon, point),
        volume_at_crash: which_state(&volume, &old_state, &restored_state),
        staging_at_crash: staging_in(&folder).len(),
        ..Row::default()
    };
    assert_eq!(row.volume_at_crash, expected, "{point}: the volume at the crash");
    assert!(!served.cgroup.is_frozen().unwrap(), "{point}: a restore never freezes");

    daemon.restart_with(DaemonOptions::default()).await.expect("restart without the fault");
    let mut clients = daemon.clients().await.expect("reconnect");
    row.volume_after = which_state(&volume, &old_state, &restored_state);
    assert_eq!(row.volume_after, expected, "{point}: the volume after recovery");
    let staging = staging_in(&folder);
    row.staging_after = staging.len();
    assert!(staging.is_empty(), "{point}: staging left after recovery: {staging:?}");
    row.frozen_after = served.cgroup.is_frozen().unwrap();
    assert!(!row.frozen_after, "{point}: frozen after recovery");

    if point == "restore.stopping" {
        // The stop never ran: the old server still runs in the cgroup, and
        // recovery does not start a second copy next to it.
        assert!(process_alive(pid_before), "{point}: the old server {pid_before} is gone");
        assert_eq!(served.cgroup.pids().unwrap_or_default(), [pid_before], "{point}: a second copy was started");
        row.process = format!("old {pid_before} kept, none started");
    } else {
        // Recovery ran the start command: a new server serves the volume's state.
        let want: &[u8] = if swapped { b"state one\n" } else { b"state two\n" };
        let pid_after = served.wait_serving(want).await;
        assert_ne!(pid_after, pid_before, "{point}: recovery did not run the start command");
        assert!(!process_alive(pid_before), "{point}: the old server {pid_before} survived");
        row.process = format!("new {pid_after}");
    }

    // Each lifecycle command and hook ran once for the restore, whatever the
    // point: recovery never runs a stop, never a start beside a running
    // copy, and runs the post_restore hook of a finished restore that the
    // crash came before (with the restore's key the pre_restore hook had).
    let mut commands = served.commands_run();
    let key = commands.first().and_then(|line| line.strip_prefix("pre_restore ")).unwrap_or_default().to_owned();
    assert!(key.starts_with(&format!("{id}-")), "{point}: the restore key given to the hooks: {commands:?}");
    for line in &mut commands {
        *line = line.replace(&key, "K");
    }
    row.commands = commands.join(",");
    let want: &[&str] = match point {
        "restore.stopping" => &["pre_restore K"],
        _ if swapped => &["pre_restore K", "stop", "start", "post_restore K"],
        _ => &["pre_restore K", "stop", "start"],
    };
    assert_eq!(commands, want, "{point}: lifecycle commands and hooks run by the restore and its recovery");

    let listed = list_snapshots(&mut clients, &id).await;
    row.listed_after = names(&listed);
    assert_listing_matches_disk(&mut clients, &id, &folder).await;
    if swapped {
        assert_eq!(listed.len(), 2, "{point}: target and pre-restore: {:?}", row.listed_after);
        let pre = listed.iter().find(|s| s.name != "target").expect("pre-restore listed");
        assert!(pre.name.starts_with("pre-restore-"), "{point}: {}", pre.name);
        assert_eq!(pre.origin(), SnapshotOrigin::PreRestore);
        assert_eq!(pre.state(), SnapshotState::Ready);
        assert!(pre.read_only);
        assert_read_only(Path::new(&pre.location));
        assert_same_tree(&file_tree(Path::new(&pre.location)), &old_state, "the pre-restore snapshot");
    } else {
        assert_eq!(row.listed_after, ["target"], "{point}: nothing but the target");
    }

    // The restarted daemon restores the container normally.
    let retry = restore(&mut clients, &id, "target", "").await.unwrap_or_else(|s| panic!("{point}: retry: {s}"));
    row.retry = if retry.already_restored { "already restored" } else { "restored" };
    assert_same_tree(&file_tree(&volume), &restored_state, "the volume after the retry");
    served.wait_serving(b"state one\n").await;
    assert_listing_matches_disk(&mut clients, &id, &folder).await;
    assert!(staging_in(&folder).is_empty());
    row
}

// ------------------------------------------------------------ lifecycle none

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_with_lifecycle_none_kills_the_cgroup() {
    if !root_or_skip("restore_with_lifecycle_none_kills_the_cgroup") {
        return;
    }
    let fs = LoopBtrfs::create(512 << 20).expect("loop btrfs");
    let volume = fs.create_subvolume("plain").expect("subvolume");
    let folder = snapshot_folder(fs.mount_point(), "plain");
    write_first_state(&volume);
    let cgroup = TestCgroup::create("restore-none").expect("cgroup");
    let mut children = Vec::new();
    for _ in 0..2 {
        children.push(cgroup.spawn(Command::new(WORKLOAD).arg("sleep").stdin(Stdio::null())).expect("spawn sleeper"));
    }
    // And one the test did not spawn itself (a shell's background child).
    children.push(
        cgroup
            .spawn(Command::new("/bin/sh").args(["-c", "/bin/sleep 1000 & wait"]).stdin(Stdio::null()))
            .expect("spawn shell"),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while cgroup.pids().unwrap().len() < 4 {
        assert!(Instant::now() < deadline, "processes did not start: {:?}", cgroup.pids());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let daemon = TestDaemon::start(daemon_binary()).await.expect("start rollpointd");
    let mut clients = daemon.clients().await.expect("connect");
    // No lifecycle given: `none`.
    let container = register(&mut clients, "plain", cgroup.relative_name(), &volume).await.expect("register");
    assert!(
        matches!(container.lifecycle.and_then(|l| l.kind), Some(proto::lifecycle::Kind::None(_))),
        "registered without a lifecycle means none"
    );
    create_snapshot(&mut clients, "plain", "", "rollback-point").await.expect("snapshot");
    let first_state = file_tree(&volume);
    write_second_state(&volume);
    let second_state = file_tree(&volume);

    let answer = restore(&mut clients, "plain", "rollback-point", "").await.expect("restore");
    check_answer(&answer, &answer.restored.as_ref().unwrap().name.clone());
    let left = cgroup.pids().expect("cgroup.procs");
    assert!(left.is_empty(), "processes left in the cgroup after a restore with lifecycle none: {left:?}");
    assert!(!cgroup.is_frozen().unwrap());
    for child in &mut children {
        let status = child.wait().expect("reap");
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL), "{status}");
    }
    assert_same_tree(&file_tree(&volume), &first_state, "the volume after the restore");
    let pre = get_snapshot(&mut clients, "plain", &answer.pre_restore_snapshot).await.expect("pre-restore");
    assert_same_tree(&file_tree(Path::new(&pre.location)), &second_state, "the pre-restore snapshot");
    assert_listing_matches_disk(&mut clients, "plain", &folder).await;
}
