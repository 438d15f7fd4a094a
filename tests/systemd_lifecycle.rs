//! The `systemd` lifecycle of a restore, over real D-Bus: a private
//! dbus-daemon, a stand-in `org.freedesktop.systemd1` on it that starts and
//! stops a real process in the container's cgroup when asked, and the real
//! rollpointd pointed at that bus. (systemd itself as PID 1 is exercised in
//! the virtual-machine harness, not here.) Discovery from systemd-machined
//! likewise, with a stand-in `org.freedesktop.machine1` listing a machine
//! whose leader is a real process in a real cgroup and whose root is a real
//! btrfs subvolume.

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rollpoint::api::proto;
use rollpoint::testkit::cgroup::TestCgroup;
use rollpoint::testkit::daemon::{DaemonOptions, TestDaemon};
use rollpoint::testkit::loop_btrfs::LoopBtrfs;
use rollpoint::testkit::machined::{Machine, PrivateBus, StandInMachined};
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

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
    let bus = PrivateBus::start().expect("start dbus-daemon (package dbus-daemon)");
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

fn discovered<'a>(listing: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    listing["containers"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("{name} not discovered: {listing}"))
}

/// Runs `check` every 100 ms until it gives a value (failing after a minute).
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within a minute");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_are_discovered_from_machined_and_followed_by_its_signals() {
    if !rollpoint::testkit::root_or_skip("machines_are_discovered_from_machined_and_followed_by_its_signals") {
        return;
    }
    let bus = PrivateBus::start().expect("start dbus-daemon (package dbus-daemon)");
    let fs = LoopBtrfs::create(512 << 20).unwrap();
    let root = fs.create_subvolume("web").unwrap();
    // The unit's group, with the machine's processes in payload/ below it,
    // as systemd-nspawn@.service lays them out.
    let slice = TestCgroup::create("machine").unwrap();
    let unit_group = slice.path().join("systemd-nspawn@web.service");
    std::fs::create_dir_all(unit_group.join("payload")).unwrap();
    let procs = unit_group.join("payload/cgroup.procs");
    let mut leader = slice
        .spawn(Command::new("/bin/sh").arg("-c").arg(format!("echo $$ > {}; exec sleep 600", procs.display())))
        .unwrap();
    eventually("the leader in payload", || read(&procs).contains(&leader.id().to_string()).then_some(()));

    let machined = StandInMachined::start(&bus.address).await.unwrap();
    let web = Machine {
        name: "web".into(),
        class: "container".into(),
        unit: "systemd-nspawn@web.service".into(),
        leader: leader.id(),
        root: root.display().to_string(),
    };
    machined.add(web).await.unwrap();

    // Followed with an hour between scans: only the first scan and the
    // signals can register and mark within this test.
    let settings = "[discovery]\nsources = [\"machined\"]\nauto_register = [\"machined\"]\ninterval_seconds = 3600\n";
    let daemon = TestDaemon::start_with(
        common::daemon_binary(),
        DaemonOptions::default().env("ROLLPOINT_SYSTEMD_BUS", &bus.address).config(settings),
    )
    .await
    .unwrap();
    let shown = eventually("registered at start", || {
        let output = common::cli(&daemon, &["--json", "container", "show", "web"]);
        output.status.success().then(|| common::succeeded(output))
    });
    assert_eq!(shown["cgroup"], unit_group.display().to_string(), "the unit's group, not payload: {shown}");
    assert_eq!(shown["subvolume"], root.display().to_string(), "{shown}");
    assert_eq!(shown["lifecycle"]["unit"], "systemd-nspawn@web.service", "{shown}");
    assert_eq!(shown["discovered"]["source"], "machined", "{shown}");
    common::succeeded(common::cli(&daemon, &["--json", "snapshot", "create", "web", "--name", "first"]));

    // A virtual machine appears: listed, not registrable.
    let vm = Machine {
        name: "vm-1".into(),
        class: "vm".into(),
        unit: "machine-vm\\x2d1.scope".into(),
        leader: leader.id(),
        root: String::new(),
    };
    machined.add(vm).await.unwrap();
    let listing = common::succeeded(common::cli(&daemon, &["--json", "discover"]));
    assert_eq!(discovered(&listing, "web")["registered_as"], "web", "{listing}");
    let problem = discovered(&listing, "vm-1")["problem"].as_str().unwrap_or_default().to_owned();
    assert!(problem.contains("a vm, not a container"), "{listing}");

    // The machine goes: MachineRemoved marks it at once, its snapshot kept.
    machined.remove("web").await.unwrap();
    let gone = eventually("marked vanished after MachineRemoved", || {
        let shown = common::succeeded(common::cli(&daemon, &["--json", "container", "show", "web"]));
        shown["discovered"]["vanish_time"].is_string().then_some(shown)
    });
    assert_eq!(gone["snapshot_count"], 1, "{gone}");
    // (On a failure, the TestCgroup kills and reaps it.)
    leader.kill().unwrap();
    leader.wait().unwrap();
}
