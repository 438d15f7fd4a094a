//! Fixtures for the tests and benchmarks of off-host copies: a tree with
//! every kind of entry and metadata, export and import over the real API,
//! and a throw-away ext4 filesystem on a loop device.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use tokio_stream::StreamExt as _;

use super::loop_btrfs::{program, run, LOSETUP};
use crate::api::client::Clients;
use crate::api::proto;

/// Deterministic bytes that do not compress (xorshift).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("no NUL in test paths")
}

/// Fills `root` with `files` small files in folders of ten
/// (`data/dNN/fNNN`, 1-20 kB each), five files of 1-3 MB, a sparse file
/// (20 MiB with data at 0 and at 10 MiB), a symlink, a hard link, a fifo, a
/// character device (1,3), xattrs, other owners, a setuid file, an empty
/// file and an empty folder.
pub fn make_mixed_tree(root: &Path, files: usize) {
    for i in 0..files {
        let dir = root.join(format!("data/d{:02}", i / 10));
        std::fs::create_dir_all(&dir).unwrap();
        let size = 1000 + (i * 7919) % 19_000;
        std::fs::write(dir.join(format!("f{:03}", i % 10)), pseudo_random(size, i as u64)).unwrap();
    }
    std::fs::create_dir_all(root.join("big")).unwrap();
    for i in 0..5u64 {
        std::fs::write(root.join(format!("big/b{i}")), pseudo_random(1_000_000 + 500_000 * i as usize, 100 + i))
            .unwrap();
    }
    let sparse = std::fs::OpenOptions::new().create(true).write(true).truncate(true).open(root.join("sparse")).unwrap();
    sparse.set_len(20 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&sparse, &pseudo_random(100_000, 5), 0).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&sparse, &pseudo_random(100_000, 6), 10 << 20).unwrap();
    drop(sparse);
    std::os::unix::fs::symlink("data/d00/f001", root.join("link-to-f001")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", root.join("dangling")).unwrap();
    std::fs::hard_link(root.join("big/b0"), root.join("hard-link-to-b0")).unwrap();
    nix::unistd::mkfifo(&root.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o640)).unwrap();
    nix::sys::stat::mknod(
        &root.join("null-device"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    set_xattr(&root.join("data/d00/f002"), "user.origin", b"rollpoint test");
    set_xattr(&root.join("big"), "user.folder", b"yes");
    let owned = root.join("data/d01/f001");
    std::os::unix::fs::chown(&owned, Some(1000), Some(1001)).unwrap();
    std::os::unix::fs::lchown(root.join("dangling"), Some(1002), Some(1002)).unwrap();
    let setuid = root.join("data/d01/f002");
    std::fs::set_permissions(&setuid, std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::create_dir(root.join("empty-dir")).unwrap();
    std::fs::set_permissions(root.join("empty-dir"), std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let path = c_path(path);
    let name = CString::new(name).unwrap();
    // SAFETY: both strings are NUL-terminated and live for the call; `value`
    // is a valid buffer of `value.len()` bytes, only read; the result is
    // checked.
    let result = unsafe { libc::lsetxattr(path.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    assert_eq!(result, 0, "lsetxattr: {}", io::Error::last_os_error());
}

/// Exports over the API; the stream's last message is the result.
pub async fn export(
    clients: &mut Clients,
    container: &str,
    snapshot: &str,
    remote: &str,
) -> Result<proto::ExportResult, tonic::Status> {
    let request =
        proto::ExportSnapshotRequest { container: container.into(), snapshot: snapshot.into(), remote: remote.into() };
    let mut stream = clients.remotes.export_snapshot(request).await?.into_inner();
    while let Some(update) = stream.next().await {
        if let Some(proto::export_snapshot_response::Update::Result(result)) = update?.update {
            return Ok(result);
        }
    }
    Err(tonic::Status::internal("the export stream ended without a result"))
}

/// Imports over the API, to `target` or (None) as a snapshot of the container.
pub async fn import(
    clients: &mut Clients,
    container: &str,
    snapshot: &str,
    remote: &str,
    target: Option<&Path>,
) -> Result<proto::ImportResult, tonic::Status> {
    let request = proto::ImportSnapshotRequest {
        remote: remote.into(),
        container: container.into(),
        snapshot: snapshot.into(),
        target_path: target.map(|t| t.display().to_string()).unwrap_or_default(),
    };
    let mut stream = clients.remotes.import_snapshot(request).await?.into_inner();
    while let Some(update) = stream.next().await {
        if let Some(proto::import_snapshot_response::Update::Result(result)) = update?.update {
            return Ok(result);
        }
    }
    Err(tonic::Status::internal("the import stream ended without a result"))
}

const MKFS_EXT4: &[&str] = &["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"];

/// An ext4 filesystem on a loop device in a temp folder; dropping it
/// unmounts, detaches and removes everything.
pub struct ExtFs {
    dir: PathBuf,
    device: String,
    mount_point: PathBuf,
    mounted: bool,
}

impl ExtFs {
    pub fn create(size_bytes: u64) -> io::Result<ExtFs> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rollpoint-loop-ext4-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir)?;
        let image = dir.join("image");
        std::fs::File::create(&image)?.set_len(size_bytes)?;
        let image_text = image.to_str().expect("utf-8 temp path").to_owned();
        let device = run(program(LOSETUP)?, &["--find", "--show", &image_text])?.trim().to_owned();
        let mut fs = ExtFs { mount_point: dir.join("mnt"), dir, device, mounted: false };
        run(program(MKFS_EXT4)?, &["-q", "-F", &fs.device])?;
        std::fs::create_dir(&fs.mount_point)?;
        nix::mount::mount(
            Some(Path::new(&fs.device)),
            &fs.mount_point,
            Some("ext4"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(io::Error::from)?;
        fs.mounted = true;
        Ok(fs)
    }

    pub fn mount_point(&self) -> &Path {
        &self.mount_point
    }
}

impl Drop for ExtFs {
    fn drop(&mut self) {
        if self.mounted {
            let _ = nix::mount::umount2(&self.mount_point, nix::mount::MntFlags::MNT_DETACH);
        }
        if let Ok(losetup) = program(LOSETUP) {
            let _ = run(losetup, &["--detach", &self.device]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A host for the remote tests: a btrfs filesystem with a subvolume `app`,
/// a cgroup, and a daemon of its own with `config`. Field order is drop
/// order: the daemon goes first, the filesystem last.
pub struct RemoteHost {
    pub daemon: super::daemon::TestDaemon,
    pub clients: Clients,
    pub cgroup: super::cgroup::TestCgroup,
    pub volume: PathBuf,
    pub fs: super::loop_btrfs::LoopBtrfs,
}

impl RemoteHost {
    /// Starts it; `daemon_binary` is the rollpointd to run.
    pub async fn start(daemon_binary: &Path, prefix: &str, config: &str) -> RemoteHost {
        let fs = super::loop_btrfs::LoopBtrfs::create(1 << 30).expect("loop btrfs");
        let volume = fs.create_subvolume("app").expect("subvolume");
        let cgroup = super::cgroup::TestCgroup::create(prefix).expect("cgroup");
        let daemon = super::daemon::TestDaemon::start_with(
            daemon_binary,
            super::daemon::DaemonOptions::default().config(config),
        )
        .await
        .expect("start rollpointd");
        let clients = daemon.clients().await.expect("connect");
        RemoteHost { daemon, clients, cgroup, volume, fs }
    }
}
