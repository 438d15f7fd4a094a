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
use rollpoint::testkit::cgroup::TestCgroup;
use rollpoint::testkit::daemon::TestDaemon;
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
