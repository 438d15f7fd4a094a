//! What the cases stand on: data written for real, containers (a cgroup with
//! processes and a subvolume, registered with the daemon), the daemon's
//! memory, the machine, and Ctrl-C.
//!
//! Everything made here is removed by the testkit's drop guards, also when a
//! case fails or panics; Ctrl-C only sets a flag the loops check, so the
//! guards run then too.

use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rollpoint::api::client::Clients;
use rollpoint::api::proto;
use rollpoint::testkit::cgroup::TestCgroup;
use rollpoint::testkit::loop_btrfs::LoopBtrfs;
use serde_json::{json, Value};

pub const DAEMON: &str = env!("CARGO_BIN_EXE_rollpointd");
pub const WORKLOAD: &str = env!("CARGO_BIN_EXE_rollpoint-workload");

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// Pause of a writer between records, as in the consistency tests: ten of
/// them keep a write in flight at every moment without starving two cores.
pub const WRITER_PAUSE_US: &str = "100";

pub type Fallible<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Turns SIGINT and SIGTERM into a flag, so the suite stops at the next
/// check and its guards clean up.
pub fn watch_signals() {
    use tokio::signal::unix::{signal, SignalKind};
    for kind in [SignalKind::interrupt(), SignalKind::terminate()] {
        if let Ok(mut stream) = signal(kind) {
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    eprintln!("rollpoint_bench: interrupted; cleaning up");
                    INTERRUPTED.store(true, Ordering::SeqCst);
                }
            });
        }
    }
}

/// An error once Ctrl-C was pressed.
pub fn check_interrupted() -> Fallible<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Err("interrupted".into());
    }
    Ok(())
}

/// A progress line on stderr (the table goes to stdout).
pub fn progress(text: impl AsRef<str>) {
    eprintln!("rollpoint_bench: {}", text.as_ref());
}

/// 1 MiB of a fixed pseudo-random pattern (splitmix64 of the word index):
/// not compressible, not all zeros, the same in every run.
fn pattern_block() -> Vec<u8> {
    let mut block = Vec::with_capacity(MIB as usize);
    let mut x: u64 = 0x005e_ed0f_b1e5;
    while block.len() < MIB as usize {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        block.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    block
}

/// Writes `bytes` of the pattern into `dir` as files of at most 256 MiB
/// (`<prefix>-NNNN.bin`), each MiB stamped with its file and index so that no
/// two blocks are equal. Not synced: the caller decides.
pub fn write_data(dir: &Path, prefix: &str, bytes: u64) -> Fallible<()> {
    const FILE_SIZE: u64 = 256 * MIB;
    let mut block = pattern_block();
    let mut written = 0;
    let mut file_index = 0u64;
    while written < bytes {
        let path = dir.join(format!("{prefix}-{file_index:04}.bin"));
        let mut file = File::create(&path).map_err(|e| format!("create {}: {e}", path.display()))?;
        let mut in_file = 0;
        while in_file < FILE_SIZE && written < bytes {
            check_interrupted()?;
            let len = (bytes - written).min(MIB);
            block[..8].copy_from_slice(&file_index.to_le_bytes());
            block[8..16].copy_from_slice(&(in_file / MIB).to_le_bytes());
            file.write_all(&block[..len as usize]).map_err(|e| format!("write {}: {e}", path.display()))?;
            in_file += len;
            written += len;
        }
        file_index += 1;
    }
    Ok(())
}

/// `count` small files (512 B to 4 KiB, most of them inlined in btrfs
/// metadata) in folders of 1,000, under `dir/files`.
pub fn write_small_files(dir: &Path, count: u64) -> Fallible<()> {
    let block = pattern_block();
    let root = dir.join("files");
    for i in 0..count {
        if i % 1000 == 0 {
            check_interrupted()?;
            fs::create_dir_all(root.join(format!("d{:04}", i / 1000)))?;
        }
        let len = 512 + (i * 977 % 3585) as usize;
        let offset = (i * 4099 % (MIB - 4096)) as usize;
        let path = root.join(format!("d{:04}", i / 1000)).join(format!("f{i:07}"));
        fs::write(&path, &block[offset..offset + len]).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// syncfs(2) of the filesystem holding `path`.
pub fn sync_fs(path: &Path) -> Fallible<()> {
    let dir = File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    nix::unistd::syncfs(dir.as_fd()).map_err(|e| format!("syncfs {}: {e}", path.display()))?;
    Ok(())
}

/// Runs a program from a fixed path, waits, and fails on a non-zero exit.
pub fn run_program(program: &str, args: &[&str]) -> Fallible<()> {
    let output = Command::new(program).args(args).stdin(Stdio::null()).output()?;
    if !output.status.success() {
        return Err(format!(
            "{program} {}: {}: {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    Ok(())
}

/// A container of the benchmark: a cgroup with processes in it and a
/// subvolume. Field order is drop order: the processes (which may hold files
/// open on the volume) go first; the filesystem is the caller's and outlives
/// this.
pub struct Container {
    pub cgroup: TestCgroup,
    /// Where the writers publish their progress (outside the volume).
    pub progress_dir: tempfile::TempDir,
    pub id: String,
    pub volume: PathBuf,
}

impl Container {
    /// A subvolume `<mount>/<id>` and a cgroup holding `sleepers` sleeping
    /// processes and `writers` record writers appending to files in the
    /// volume.
    pub fn create(fs: &LoopBtrfs, id: &str, sleepers: usize, writers: u32) -> Fallible<Container> {
        let volume = fs.create_subvolume(id)?;
        let cgroup = TestCgroup::create(&format!("bench-{id}"))?;
        let progress_dir = tempfile::Builder::new().prefix("rollpoint-bench-progress-").tempdir()?;
        let container = Container { cgroup, progress_dir, id: id.to_string(), volume };
        container.add_sleepers(sleepers)?;
        for writer in 1..=writers {
            let mut command = Command::new(WORKLOAD);
            command
                .arg("write")
                .arg("--data")
                .arg(container.volume.join(format!("writer-{writer}.dat")))
                .arg("--progress")
                .arg(container.progress_dir.path().join(format!("writer-{writer}.progress")))
                .arg("--id")
                .arg(writer.to_string())
                .arg("--pause-us")
                .arg(WRITER_PAUSE_US)
                .stdin(Stdio::null())
                .stdout(Stdio::null());
            // Not waited for here: the cgroup's drop kills and reaps it.
            #[allow(clippy::zombie_processes)]
            let _child = container.cgroup.spawn(&mut command)?;
        }
        Ok(container)
    }

    pub fn add_sleepers(&self, count: usize) -> Fallible<()> {
        for _ in 0..count {
            #[allow(clippy::zombie_processes)]
            let _child = self.cgroup.spawn(
                Command::new(WORKLOAD).arg("sleep").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()),
            )?;
        }
        Ok(())
    }

    /// Waits until `count` processes are in the cgroup.
    pub fn wait_for_processes(&self, count: usize) -> Fallible<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let now = self.cgroup.pids()?.len();
            if now >= count {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("{}: {now} of {count} processes after 30 s", self.id).into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A `command` lifecycle as small as a container's can be: start puts a
    /// sleeping process in the cgroup (the daemon runs it there) and returns;
    /// stop kills the cgroup's processes.
    pub fn tiny_lifecycle(&self) -> proto::Lifecycle {
        let start = format!("{WORKLOAD} sleep >/dev/null 2>&1 &");
        let stop = format!("echo 1 > {}/cgroup.kill", self.cgroup.path().display());
        proto::Lifecycle {
            kind: Some(proto::lifecycle::Kind::Command(proto::CommandLifecycle {
                stop: vec!["/bin/sh".into(), "-c".into(), stop],
                start: vec!["/bin/sh".into(), "-c".into(), start],
                timeout_seconds: 30,
            })),
        }
    }

    pub async fn register(&self, clients: &mut Clients, lifecycle: Option<proto::Lifecycle>) -> Fallible<()> {
        self.register_as(clients, &self.id, lifecycle).await
    }

    /// Registers this container under another id (for a second daemon).
    pub async fn register_as(
        &self,
        clients: &mut Clients,
        id: &str,
        lifecycle: Option<proto::Lifecycle>,
    ) -> Fallible<()> {
        clients
            .containers
            .register_container(proto::RegisterContainerRequest {
                id: id.into(),
                cgroup: self.cgroup.relative_name().into(),
                subvolume: self.volume.to_str().ok_or("volume path is not UTF-8")?.into(),
                lifecycle,
                ..Default::default()
            })
            .await
            .map_err(|s| format!("register {id}: {:?}: {}", s.code(), s.message()))?;
        Ok(())
    }
}

/// RestoreSnapshot of `container` to `snapshot`.
pub async fn restore(
    clients: &mut Clients,
    container: &str,
    snapshot: &str,
) -> Fallible<proto::RestoreSnapshotResponse> {
    let reply = clients
        .snapshots
        .restore_snapshot(proto::RestoreSnapshotRequest {
            container: container.into(),
            snapshot: snapshot.into(),
            ..Default::default()
        })
        .await
        .map_err(|s| format!("RestoreSnapshot {container}/{snapshot}: {:?}: {}", s.code(), s.message()))?;
    Ok(reply.into_inner())
}

/// CreateSnapshot with a name (empty: the daemon's default name).
pub async fn create_snapshot(clients: &mut Clients, container: &str, name: &str) -> Fallible<proto::Snapshot> {
    let reply = clients
        .snapshots
        .create_snapshot(proto::CreateSnapshotRequest {
            container: container.into(),
            name: name.into(),
            ..Default::default()
        })
        .await
        .map_err(|s| format!("CreateSnapshot {container}/{name}: {:?}: {}", s.code(), s.message()))?;
    Ok(reply.into_inner().snapshot.ok_or("no snapshot in the reply")?)
}

pub async fn delete_snapshot(clients: &mut Clients, container: &str, name: &str) -> Fallible<()> {
    clients
        .snapshots
        .delete_snapshot(proto::DeleteSnapshotRequest { container: container.into(), snapshot: name.into() })
        .await
        .map_err(|s| format!("DeleteSnapshot {container}/{name}: {:?}: {}", s.code(), s.message()))?;
    Ok(())
}

/// Deletes every snapshot of a container (not timed: between cases).
pub async fn delete_all_snapshots(clients: &mut Clients, container: &str) -> Fallible<()> {
    loop {
        let page = clients
            .snapshots
            .list_snapshots(proto::ListSnapshotsRequest {
                container: container.into(),
                page_size: 1000,
                page_token: String::new(),
            })
            .await
            .map_err(|s| format!("ListSnapshots {container}: {:?}: {}", s.code(), s.message()))?
            .into_inner();
        if page.snapshots.is_empty() {
            return Ok(());
        }
        for snapshot in page.snapshots {
            delete_snapshot(clients, container, &snapshot.name).await?;
        }
    }
}

/// Resident memory of a process (`VmRSS` in /proc/<pid>/status), in MiB.
pub fn rss_mib(pid: u32) -> Fallible<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or("no VmRSS in /proc/<pid>/status")?;
    Ok(kib / 1024.0)
}

/// Free bytes on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> Fallible<u64> {
    let stat = nix::sys::statvfs::statvfs(path)?;
    Ok(stat.blocks_available() as u64 * stat.fragment_size() as u64)
}

/// Kernel, CPUs, memory, and the disk under the loop images.
pub fn machine() -> Value {
    let field = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
    };
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: u64 =
        field(&meminfo, "MemTotal").and_then(|v| v.trim_end_matches("kB").trim().parse().ok()).unwrap_or(0);
    let temp = std::env::temp_dir();
    let mounts = rollpoint::sys::mountinfo::read().unwrap_or_default();
    let temp_mount = fs::canonicalize(&temp).ok().and_then(|t| {
        rollpoint::sys::mountinfo::mount_of(&mounts, &t).map(|m| format!("{} ({})", m.source, m.fs_type))
    });
    let btrfs_progs = Command::new("/usr/bin/btrfs")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    json!({
        "kernel": fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|r| r.trim().to_string()),
        "arch": std::env::consts::ARCH,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": field(&cpuinfo, "model name"),
        "memory_gib": (memory_kib as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "temp_dir": temp.display().to_string(),
        "temp_dir_filesystem": temp_mount,
        "btrfs_progs": btrfs_progs,
        "load_average_at_start": fs::read_to_string("/proc/loadavg").ok().map(|l| l.trim().to_string()),
    })
}
