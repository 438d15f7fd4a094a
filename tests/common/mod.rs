//! Helpers shared by the root integration tests: a container made of a
//! test cgroup full of record writers and a btrfs subvolume, plus checks on
//! what the daemon answers and what is on disk.
//!
//! Drop order matters and is the declaration order of the fields: the
//! cgroup (and its writers, which hold files open on the volume) goes before
//! the filesystem is unmounted.

#![allow(dead_code, reason = "each test binary uses its own subset")]

pub mod curl;

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rollpoint::api::client::Clients;
use rollpoint::api::proto;
use rollpoint::testkit::cgroup::TestCgroup;
use rollpoint::testkit::workload::{self, VerifyReport};
use tonic::{Code, Status};

pub const DAEMON: &str = env!("CARGO_BIN_EXE_rollpointd");
pub const WORKLOAD: &str = env!("CARGO_BIN_EXE_rollpoint-workload");

/// Pause of each writer between records: keeps ten writers from filling a
/// small filesystem or starving two cores, while a write is always in flight
/// somewhere.
pub const WRITER_PAUSE_US: &str = "100";

/// How long a test waits for writers to make progress.
pub const PROGRESS_TIMEOUT: Duration = Duration::from_secs(10);

/// inode number of the root directory of every btrfs subvolume
/// (BTRFS_FIRST_FREE_OBJECTID in linux/btrfs_tree.h).
const SUBVOLUME_ROOT_INO: u64 = 256;

pub fn daemon_binary() -> &'static Path {
    Path::new(DAEMON)
}

/// Record writers in a test cgroup, each appending to `writer-<id>.dat` in a
/// volume and publishing its progress in a temp folder outside the volume.
pub struct Writers {
    /// First: dropping it kills and reaps the writers.
    pub cgroup: TestCgroup,
    pub progress_dir: tempfile::TempDir,
    pub volume: PathBuf,
    pub ids: Vec<u32>,
}

impl Writers {
    /// Creates a cgroup named after `prefix` and starts `count` writers in it,
    /// writing into `volume`.
    pub fn start(prefix: &str, volume: &Path, count: u32) -> Writers {
        let cgroup = TestCgroup::create(prefix).expect("create the test cgroup");
        let progress_dir = tempfile::Builder::new().prefix("rollpoint-progress-").tempdir().expect("progress dir");
        let writers = Writers { cgroup, progress_dir, volume: volume.to_path_buf(), ids: (1..=count).collect() };
        for &id in &writers.ids {
            let mut command = Command::new(WORKLOAD);
            command
                .arg("write")
                .arg("--data")
                .arg(writers.volume.join(data_file_name(id)))
                .arg("--progress")
                .arg(writers.progress_file(id))
                .arg("--id")
                .arg(id.to_string())
                .arg("--pause-us")
                .arg(WRITER_PAUSE_US)
                .stdin(Stdio::null())
                .stdout(Stdio::null());
            // The Child is dropped unwaited on purpose: the cgroup reaps it.
            #[allow(clippy::zombie_processes)]
            let _child = writers.cgroup.spawn(&mut command).expect("spawn a writer");
        }
        writers
    }

    pub fn progress_file(&self, id: u32) -> PathBuf {
        self.progress_dir.path().join(format!("writer-{id}.progress"))
    }

    /// Each writer's last completed counter.
    pub fn progress(&self) -> Vec<Option<u64>> {
        self.ids.iter().map(|&id| workload::read_progress(&self.progress_file(id)).expect("read progress")).collect()
    }

    /// Waits until every writer has completed record `counter`.
    pub fn wait_progress_at_least(&self, counter: u64) -> Vec<u64> {
        let deadline = Instant::now() + PROGRESS_TIMEOUT;
        loop {
            let now = self.progress();
            if now.iter().all(|p| p.is_some_and(|c| c >= counter)) {
                return now.into_iter().map(Option::unwrap).collect();
            }
            assert!(
                Instant::now() < deadline,
                "writers did not reach record {counter} in {PROGRESS_TIMEOUT:?}: {now:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until every writer has gone past the counter it had in `from`:
    /// proof that none of them is stuck (frozen).
    pub fn assert_all_advance(&self, from: &[Option<u64>]) {
        let deadline = Instant::now() + PROGRESS_TIMEOUT;
        loop {
            let now = self.progress();
            let stuck: Vec<u32> = self
                .ids
                .iter()
                .zip(from.iter().zip(&now))
                .filter(|(_, (before, after))| after.is_none() || after <= before)
                .map(|(id, _)| *id)
                .collect();
            if stuck.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "writers {stuck:?} made no progress in {PROGRESS_TIMEOUT:?} (before {from:?}, now {now:?}; cgroup frozen: {:?})",
                self.cgroup.is_frozen()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Checks every writer's data file in a snapshot: whole records only,
    /// and every record completed before the request (`before`) is there.
    pub fn verify_snapshot(&self, snapshot: &Path, before: &[Option<u64>]) -> Vec<VerifyReport> {
        self.ids
            .iter()
            .zip(before)
            .map(|(&id, &completed)| {
                let file = snapshot.join(data_file_name(id));
                workload::verify(&file, id, completed)
                    .unwrap_or_else(|e| panic!("writer {id} in snapshot {}: {e}", snapshot.display()))
            })
            .collect()
    }

    /// Whether the kernel says the cgroup is frozen (`frozen 1` in
    /// `cgroup.events`).
    pub fn frozen(&self) -> bool {
        self.cgroup.is_frozen().expect("read cgroup.events")
    }
}

pub fn data_file_name(id: u32) -> String {
    format!("writer-{id}.dat")
}

/// The snapshot folder of `container` on the filesystem mounted at `mount`.
pub fn snapshot_folder(mount: &Path, container: &str) -> PathBuf {
    mount.join(".rollpoint").join(container)
}

/// Names of the subvolumes in a snapshot folder; empty when the folder does
/// not exist. Anything else in it but the records kept beside the data
/// (`_container.json`, `.<snapshot>.json`) fails the test: the daemon puts
/// only snapshots there.
pub fn subvolumes_in(folder: &Path) -> BTreeSet<String> {
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return BTreeSet::new(),
        Err(e) => panic!("list {}: {e}", folder.display()),
    };
    entries
        .filter_map(|entry| {
            let entry = entry.expect("read dir entry");
            let path = entry.path();
            let name = entry.file_name().into_string().expect("utf-8 name");
            if is_sidecar(&name) && path.is_file() {
                return None;
            }
            assert!(is_subvolume(&path), "{} in a snapshot folder is not a subvolume", path.display());
            Some(name)
        })
        .collect()
}

/// A record kept beside the data (`store::sidecar`).
pub fn is_sidecar(name: &str) -> bool {
    name == rollpoint::store::sidecar::CONTAINER_SIDECAR || (name.starts_with('.') && name.ends_with(".json"))
}

/// A directory that is the root of a btrfs subvolume.
pub fn is_subvolume(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir() && m.ino() == SUBVOLUME_ROOT_INO)
}

/// Creating a file in `dir` fails with EROFS.
pub fn assert_read_only(dir: &Path) {
    let probe = dir.join("rollpoint-test-probe");
    match std::fs::File::create(&probe) {
        Ok(_) => panic!("created {} in a snapshot that should be read-only", probe.display()),
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EROFS), "writing into {}: {e}", dir.display()),
    }
}

/// Asserts a call failed with `code` and a message holding every one of
/// `needles`; returns the status.
#[track_caller]
pub fn expect_status<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, Status>,
    code: Code,
    needles: &[&str],
) -> Status {
    let status = match result {
        Ok(reply) => panic!("expected {code:?} {needles:?}, got a reply: {:?}", reply.into_inner()),
        Err(status) => status,
    };
    assert_eq!(status.code(), code, "wrong code; message: {:?}", status.message());
    for needle in needles {
        assert!(
            status.message().contains(needle),
            "{code:?} message {:?} does not mention {needle:?}",
            status.message()
        );
    }
    status
}

pub fn time_of(timestamp: Option<&prost_types::Timestamp>) -> DateTime<Utc> {
    let timestamp = timestamp.expect("timestamp set");
    DateTime::from_timestamp(timestamp.seconds, u32::try_from(timestamp.nanos).expect("nanos"))
        .expect("timestamp in range")
}

pub fn duration_of(duration: Option<&prost_types::Duration>) -> Duration {
    let duration = duration.expect("duration set");
    Duration::new(u64::try_from(duration.seconds).expect("positive"), u32::try_from(duration.nanos).expect("nanos"))
}

/// A new token with every scope (made as root on the socket); its secret.
pub async fn admin_token(clients: &mut Clients, name: &str) -> String {
    clients
        .tokens
        .create_token(proto::CreateTokenRequest { name: name.into(), scopes: vec!["admin".into()], containers: vec![] })
        .await
        .expect("CreateToken")
        .into_inner()
        .secret
}

pub async fn register(
    clients: &mut Clients,
    id: &str,
    cgroup: &str,
    subvolume: &Path,
) -> Result<proto::Container, Status> {
    let reply = clients
        .containers
        .register_container(proto::RegisterContainerRequest {
            id: id.into(),
            cgroup: cgroup.into(),
            subvolume: subvolume.to_str().expect("utf-8 path").into(),
            ..Default::default()
        })
        .await?;
    Ok(reply.into_inner().container.expect("container in reply"))
}

pub async fn create_snapshot(
    clients: &mut Clients,
    container: &str,
    name: &str,
    alias: &str,
) -> Result<proto::Snapshot, Status> {
    let reply = clients
        .snapshots
        .create_snapshot(proto::CreateSnapshotRequest {
            container: container.into(),
            name: name.into(),
            alias: alias.into(),
            ..Default::default()
        })
        .await?;
    Ok(reply.into_inner().snapshot.expect("snapshot in reply"))
}

pub async fn get_snapshot(clients: &mut Clients, container: &str, snapshot: &str) -> Result<proto::Snapshot, Status> {
    let reply = clients
        .snapshots
        .get_snapshot(proto::GetSnapshotRequest { container: container.into(), snapshot: snapshot.into() })
        .await?;
    Ok(reply.into_inner().snapshot.expect("snapshot in reply"))
}

/// Every snapshot of a container, following pages.
pub async fn list_snapshots(clients: &mut Clients, container: &str) -> Vec<proto::Snapshot> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let reply = clients
            .snapshots
            .list_snapshots(proto::ListSnapshotsRequest { container: container.into(), page_size: 0, page_token })
            .await
            .expect("ListSnapshots")
            .into_inner();
        all.extend(reply.snapshots);
        if reply.next_page_token.is_empty() {
            return all;
        }
        page_token = reply.next_page_token;
    }
}

pub async fn list_containers(clients: &mut Clients) -> Vec<proto::Container> {
    clients
        .containers
        .list_containers(proto::ListContainersRequest::default())
        .await
        .expect("ListContainers")
        .into_inner()
        .containers
}

/// The names a listing holds, in its order.
pub fn names(snapshots: &[proto::Snapshot]) -> Vec<String> {
    snapshots.iter().map(|s| s.name.clone()).collect()
}

/// ListSnapshots and the snapshot folder on disk name the same snapshots,
/// each at its recorded location. Returns the names.
pub async fn assert_listing_matches_disk(clients: &mut Clients, container: &str, folder: &Path) -> BTreeSet<String> {
    let listed = list_snapshots(clients, container).await;
    for snapshot in &listed {
        assert_eq!(Path::new(&snapshot.location), folder.join(&snapshot.name), "location of {}", snapshot.name);
    }
    let listed: BTreeSet<String> = listed.into_iter().map(|s| s.name).collect();
    let on_disk = subvolumes_in(folder);
    assert_eq!(listed, on_disk, "ListSnapshots vs subvolumes in {}", folder.display());
    listed
}

pub async fn register_with_lifecycle(
    clients: &mut Clients,
    id: &str,
    cgroup: &str,
    subvolume: &Path,
    lifecycle: Option<proto::Lifecycle>,
) -> Result<proto::Container, Status> {
    let reply = clients
        .containers
        .register_container(proto::RegisterContainerRequest {
            id: id.into(),
            cgroup: cgroup.into(),
            subvolume: subvolume.to_str().expect("utf-8 path").into(),
            lifecycle,
            ..Default::default()
        })
        .await?;
    Ok(reply.into_inner().container.expect("container in reply"))
}

/// A command lifecycle (argv, no shell of its own) with a timeout in seconds.
pub fn command_lifecycle(stop: &[&str], start: &[&str], timeout_seconds: u32) -> proto::Lifecycle {
    proto::Lifecycle {
        kind: Some(proto::lifecycle::Kind::Command(proto::CommandLifecycle {
            stop: stop.iter().map(|s| s.to_string()).collect(),
            start: start.iter().map(|s| s.to_string()).collect(),
            timeout_seconds,
        })),
    }
}

pub async fn restore(
    clients: &mut Clients,
    container: &str,
    snapshot: &str,
    request_id: &str,
) -> Result<proto::RestoreSnapshotResponse, Status> {
    let reply = clients
        .snapshots
        .restore_snapshot(proto::RestoreSnapshotRequest {
            container: container.into(),
            snapshot: snapshot.into(),
            request_id: request_id.into(),
            ..Default::default()
        })
        .await?;
    Ok(reply.into_inner())
}

/// One entry of a [`file_tree`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeEntry {
    Dir { mode: u32 },
    File { mode: u32, contents: Vec<u8> },
    Symlink { target: PathBuf },
}

/// Everything under `root` (not `root` itself), by path relative to it:
/// folders and their modes, files with modes and contents, symlinks and
/// their targets. What "the data is exactly as in the snapshot" compares.
pub fn file_tree(root: &Path) -> std::collections::BTreeMap<PathBuf, TreeEntry> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<PathBuf, TreeEntry>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("read dir entry").path();
            let meta = std::fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
            let relative = path.strip_prefix(root).expect("under the root").to_path_buf();
            let mode = meta.mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).expect("readlink");
                out.insert(relative, TreeEntry::Symlink { target });
            } else if meta.is_dir() {
                out.insert(relative, TreeEntry::Dir { mode });
                walk(root, &path, out);
            } else {
                let contents = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
                out.insert(relative, TreeEntry::File { mode, contents });
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Asserts two [`file_tree`]s are equal, naming the paths that differ
/// (rather than dumping file contents).
#[track_caller]
pub fn assert_same_tree(
    actual: &std::collections::BTreeMap<PathBuf, TreeEntry>,
    expected: &std::collections::BTreeMap<PathBuf, TreeEntry>,
    what: &str,
) {
    let missing: Vec<&PathBuf> = expected.keys().filter(|k| !actual.contains_key(*k)).collect();
    let extra: Vec<&PathBuf> = actual.keys().filter(|k| !expected.contains_key(*k)).collect();
    let different: Vec<&PathBuf> =
        expected.iter().filter(|(k, v)| actual.get(*k).is_some_and(|a| a != *v)).map(|(k, _)| k).collect();
    assert!(
        missing.is_empty() && extra.is_empty() && different.is_empty(),
        "{what}: missing {missing:?}, unexpected {extra:?}, different {different:?}"
    );
}

/// A daemon listening on its socket and on a free loopback TCP port; the port.
pub async fn daemon_on_loopback_tcp() -> (rollpoint::testkit::daemon::TestDaemon, u16) {
    let port = free_loopback_port();
    let options = rollpoint::testkit::daemon::DaemonOptions::default().arg("--listen").arg(format!("127.0.0.1:{port}"));
    let daemon =
        rollpoint::testkit::daemon::TestDaemon::start_with(daemon_binary(), options).await.expect("start rollpointd");
    (daemon, port)
}

/// A free TCP port on 127.0.0.1 (bound to port 0, then released).
pub fn free_loopback_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// Whether `pid` is a live process (exists and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

/// A call made to hit a fault point must fail at the transport (the daemon
/// died under it), not with an answer. Returns the code, for a matrix.
#[track_caller]
pub fn expect_transport_error<T: std::fmt::Debug>(point: &str, call: Result<T, Status>) -> String {
    match call {
        Ok(reply) => panic!("{point}: the call succeeded although the daemon should have died: {reply:?}"),
        Err(status) => {
            assert!(
                matches!(status.code(), Code::Unavailable | Code::Unknown | Code::Cancelled),
                "{point}: expected a transport error, got {:?}: {}",
                status.code(),
                status.message()
            );
            format!("{:?}", status.code())
        }
    }
}

/// Waits (bounded) for a daemon armed with a fault point to have killed
/// itself there; returns what to print.
pub fn expect_fault_death(daemon: &mut rollpoint::testkit::daemon::TestDaemon, point: &str) -> String {
    use std::os::unix::process::ExitStatusExt;
    let timeout = Duration::from_secs(10);
    let status = daemon
        .wait_for_exit(timeout)
        .expect("wait for the daemon")
        .unwrap_or_else(|| panic!("{point}: the daemon still runs {timeout:?} after the call"));
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{point}: the daemon died of {status}, not its own SIGKILL");
    // The daemon logs to journald instead where the journal socket exists.
    if !Path::new("/run/systemd/journal/socket").exists() {
        assert!(daemon.log().contains("fault injection"), "{point}: no fault injection in the log");
    }
    "SIGKILL".into()
}

/// The text of a panic caught by `tokio::spawn`, for a matrix.
pub fn panic_text(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into()),
        Err(error) => error.to_string(),
    }
}

/// Every event matching the filter, oldest first, following pages.
pub async fn list_events(clients: &mut Clients, container: &str, entry: &str) -> Vec<proto::Event> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let reply = clients
            .events
            .list_events(proto::ListEventsRequest {
                container: container.into(),
                entry: entry.into(),
                oldest_first: true,
                page_token,
                ..Default::default()
            })
            .await
            .expect("ListEvents")
            .into_inner();
        all.extend(reply.events);
        if reply.next_page_token.is_empty() {
            return all;
        }
        page_token = reply.next_page_token;
    }
}

/// `rollpoint` against the daemon's socket, as a user would run it.
pub fn cli(daemon: &rollpoint::testkit::daemon::TestDaemon, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rollpoint"))
        .arg("--socket")
        .arg(daemon.socket())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run rollpoint")
}

/// The JSON a successful `rollpoint --json ...` printed (null when it printed
/// none); fails the test, with its stderr, when it failed.
pub fn succeeded(output: std::process::Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null)
}

/// Sets the extended attribute `name` of `path`.
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let name = std::ffi::CString::new(name).unwrap();
    // SAFETY: both strings are NUL-terminated and outlive the call; value
    // points to value.len() readable bytes.
    let done = unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    assert_eq!(done, 0, "setxattr: {}", std::io::Error::last_os_error());
}

/// The value of the extended attribute `name` of `path` (up to 256 bytes),
/// if it has one.
pub fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let name = std::ffi::CString::new(name).unwrap();
    let mut value = [0u8; 256];
    // SAFETY: the strings are NUL-terminated and outlive the call; the
    // buffer is writable for its length.
    let read = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
    usize::try_from(read).ok().map(|read| value[..read].to_vec())
}
