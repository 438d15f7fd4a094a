//! The `systemd` lifecycle of a restore, over real D-Bus: a private
//! dbus-daemon, a stand-in `org.freedesktop.systemd1` on it that starts and
//! stops a real process in the container's cgroup when asked, and the real
//! rollpointd pointed at that bus. (systemd itself as PID 1 is exercised in
//! the virtual-machine harness, not here.)

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rollpoint::api::proto;
use rollpoint::testkit::cgroup::TestCgroup;
use rollpoint::testkit::daemon::{DaemonOptions, TestDaemon};
use rollpoint::testkit::loop_btrfs::LoopBtrfs;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

/// A dbus-daemon of the test's own, killed by pid on drop.
struct PrivateBus {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl PrivateBus {
    fn start() -> PrivateBus {
        let dir = tempfile::tempdir().unwrap();
        let address = format!("unix:path={}", dir.path().join("bus").display());
        let child = Command::new("/usr/bin/dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", &format!("--address={address}")])
            .stdout(Stdio::null())
            .spawn()
            .expect("start dbus-daemon (package dbus-daemon)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !dir.path().join("bus").exists() {
            assert!(Instant::now() < deadline, "dbus-daemon did not create its socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        PrivateBus { child, address, _dir: dir }
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The part of systemd's Manager that rollpointd uses. The "unit" is one
/// sleeping process in the container's cgroup.
struct FakeSystemd {
    cgroup: Arc<TestCgroup>,
    calls: Arc<Mutex<Vec<String>>>,
    running: Arc<Mutex<Option<Child>>>,
    next_job: AtomicU32,
    /// Result reported for StartUnit jobs ("done", or e.g. "failed").
    start_result: Arc<Mutex<String>>,
}

impl FakeSystemd {
    fn job(&self) -> (u32, OwnedObjectPath) {
        let id = self.next_job.fetch_add(1, Ordering::SeqCst);
        (id, ObjectPath::try_from(format!("/org/freedesktop/systemd1/job/{id}")).unwrap().into())
    }
}

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl FakeSystemd {
    async fn start_unit(
        &self,
        name: String,
        mode: String,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        self.calls.lock().push(format!("start {name} {mode}"));
        let child = self
            .cgroup
            .spawn(Command::new("/bin/sleep").arg("600"))
            .map_err(|e| zbus::fdo::Error::Failed(e.to_string()))?;
        *self.running.lock() = Some(child);
        let (id, job) = self.job();
        let result = self.start_result.lock().clone();
        Self::job_removed(&emitter, id, job.as_ref(), &name, &result).await?;
        Ok(job)
    }

    async fn stop_unit(
        &self,
        name: String,
        mode: String,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> zbus::fdo::Result<OwnedObjectPath> {
        self.calls.lock().push(format!("stop {name} {mode}"));
        if let Some(mut child) = self.running.lock().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let (id, job) = self.job();
        Self::job_removed(&emitter, id, job.as_ref(), &name, "done").await?;
        Ok(job)
    }

    async fn subscribe(&self) {}

    #[zbus(signal)]
    async fn job_removed(
        emitter: &SignalEmitter<'_>,
        id: u32,
        job: ObjectPath<'_>,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_stops_and_starts_a_systemd_unit_over_dbus() {
    if !rollpoint::testkit::root_or_skip("restore_stops_and_starts_a_systemd_unit_over_dbus") {
        return;
    }
    let bus = PrivateBus::start();
    let fs = LoopBtrfs::create(512 << 20).unwrap();
    let volume = fs.create_subvolume("db-1").unwrap();
    let cgroup = Arc::new(TestCgroup::create("systemd").unwrap());
    let calls = Arc::new(Mutex::new(Vec::new()));
    let running = Arc::new(Mutex::new(None));
    let start_result = Arc::new(Mutex::new("done".to_string()));
    let fake = FakeSystemd {
        cgroup: cgroup.clone(),
        calls: calls.clone(),
        running: running.clone(),
        next_job: AtomicU32::new(1),
        start_result: start_result.clone(),
    };
    let _systemd = zbus::connection::Builder::address(bus.address.as_str())
        .unwrap()
        .name("org.freedesktop.systemd1")
        .unwrap()
        .serve_at("/org/freedesktop/systemd1", fake)
        .unwrap()
        .build()
        .await
        .unwrap();

    let daemon = TestDaemon::start_with(
        common::daemon_binary(),
        DaemonOptions::default().env("ROLLPOINT_SYSTEMD_BUS", &bus.address),
    )
    .await
    .unwrap();
    let mut clients = daemon.clients().await.unwrap();
    clients
        .containers
        .register_container(proto::RegisterContainerRequest {
            id: "db-1".into(),
            cgroup: cgroup.path().display().to_string(),
            subvolume: volume.display().to_string(),
            lifecycle: Some(proto::Lifecycle {
                kind: Some(proto::lifecycle::Kind::Systemd(proto::SystemdLifecycle {
                    unit: "db-1.service".into(),
                    timeout_seconds: 10,
                })),
            }),
            labels: Default::default(),
            hooks: None,
        })
        .await
        .unwrap();
    std::fs::write(volume.join("data"), "before the migration").unwrap();
    clients
        .snapshots
        .create_snapshot(proto::CreateSnapshotRequest {
            container: "db-1".into(),
            alias: "rollback-point".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    std::fs::write(volume.join("data"), "broken").unwrap();

    let restored = clients
        .snapshots
        .restore_snapshot(proto::RestoreSnapshotRequest {
            container: "db-1".into(),
            snapshot: "rollback-point".into(),
            request_id: String::new(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read(&volume.join("data")), "before the migration");
    assert_eq!(*calls.lock(), ["stop db-1.service replace", "start db-1.service replace"]);
    let pid = running.lock().as_ref().map(Child::id).expect("the unit runs again");
    assert!(cgroup.pids().unwrap().contains(&pid), "the started process is not in the container's cgroup");
    println!("restore over D-Bus: total {:?}, downtime {:?}", restored.total, restored.downtime);

    // A start job that fails: the restore has happened, the error says so.
    *start_result.lock() = "failed".into();
    std::fs::write(volume.join("data"), "broken again").unwrap();
    let error = clients
        .snapshots
        .restore_snapshot(proto::RestoreSnapshotRequest {
            container: "db-1".into(),
            snapshot: "rollback-point".into(),
            request_id: String::new(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::FailedPrecondition, "{error:?}");
    assert!(error.message().contains("did not start") && error.message().contains("failed"), "{}", error.message());
    assert_eq!(read(&volume.join("data")), "before the migration");
    let last = running.lock().take();
    if let Some(mut child) = last {
        let _ = child.kill();
        let _ = child.wait();
    }
}
