//! The btrfs backend: snapshots are read-only (or writable) subvolume
//! snapshots made with ioctls, never by running `btrfs`.
//!
//! Snapshots of a container live in `<btrfs mount point>/.rollpoint/<container>/`,
//! a folder the daemon creates with mode 0700 on the volume's filesystem, so
//! that every snapshot is a cheap copy-on-write metadata operation.

use std::io;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{renameat2, RenameFlags};

use super::{Backend, BackendError, SnapshotDetails, VolumeInfo};
use subvol::Kind;

mod ioctl;
mod paths;
pub mod send;
mod subvol;

pub use paths::SNAPSHOT_FOLDER;

use super::WRITE_BACK_PREFIX;

/// The btrfs implementation of [`Backend`]. Stateless: everything it knows
/// is read back from the filesystem.
#[derive(Debug, Clone, Copy, Default)]
pub struct BtrfsBackend;

/// Below this much unwritten file data on the host, [`Backend::flush`]
/// writes nothing back first.
pub const WORTH_WRITING_BACK: u64 = 4 << 20;

impl BtrfsBackend {
    pub fn new() -> Self {
        BtrfsBackend
    }
}

/// An I/O error on `path`, with `ENOENT` meaning [`BackendError::NotFound`]
/// and `ENOSPC`/`EDQUOT` meaning [`BackendError::NoSpace`].
/// renameat2(2) with `flags`, then fsyncs both folders so the move is durable
/// before the caller records it.
fn rename_durably(from: &str, to: &str, flags: RenameFlags) -> Result<(), BackendError> {
    let (from_parent, from_name) = paths::split_location(from)?;
    let (to_parent, to_name) = paths::split_location(to)?;
    let from_dir = subvol::open_dir(from_parent).map_err(|err| fs_error("open", from_parent, err))?;
    let to_dir = subvol::open_dir(to_parent).map_err(|err| fs_error("open", to_parent, err))?;
    renameat2(&from_dir, from_name, &to_dir, to_name, flags).map_err(|errno| match errno {
        Errno::EEXIST => BackendError::AlreadyExists { path: PathBuf::from(to) },
        Errno::ENOENT => BackendError::NotFound { path: PathBuf::from(from) },
        _ => BackendError::io("rename", from, errno.into()),
    })?;
    nix::unistd::fsync(&to_dir).map_err(|errno| BackendError::io("fsync", to_parent, errno.into()))?;
    if from_parent != to_parent {
        nix::unistd::fsync(&from_dir).map_err(|errno| BackendError::io("fsync", from_parent, errno.into()))?;
    }
    Ok(())
}

fn fs_error(op: &'static str, path: &Path, err: io::Error) -> BackendError {
    if err.raw_os_error() == Some(libc::ENOENT) {
        BackendError::NotFound { path: path.to_path_buf() }
    } else {
        BackendError::io(op, path, err)
    }
}

/// The folder that is to hold a new subvolume, created (0700) when
/// missing, open for ioctls.
fn make_parent(parent: &Path) -> Result<std::os::fd::OwnedFd, BackendError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)
        .map_err(|err| BackendError::io("create folder", parent, err))?;
    subvol::open_dir(parent).map_err(|err| fs_error("open", parent, err))
}

fn read_mounts() -> Result<Vec<crate::sys::mountinfo::Mount>, BackendError> {
    crate::sys::mountinfo::read().map_err(|err| BackendError::io("read", "/proc/self/mountinfo", err))
}

/// The subvolume id of a btrfs filesystem's top-level subvolume
/// (`BTRFS_FS_TREE_OBJECTID`).
const TOP_LEVEL_SUBVOLUME: u64 = 5;

/// Least free space a restore asks for before it stops anything: the clone
/// of the target needs a little metadata room.
const RESTORE_FREE_BYTES: u64 = 1 << 20;

/// Refuses a volume a restore could never exchange with a snapshot: a mount
/// point, or the filesystem's top-level subvolume (which cannot be renamed).
fn check_swappable(mounts: &[crate::sys::mountinfo::Mount], path: &Path) -> Result<(), BackendError> {
    paths::check_not_mount_point(mounts, path)?;
    let fd = open_subvolume(path)?;
    let info = subvol::subvol_info(&fd).map_err(|err| BackendError::io("get subvolume info", path, err))?;
    if info.id == TOP_LEVEL_SUBVOLUME {
        return Err(BackendError::CannotSwap {
            path: path.to_path_buf(),
            reason: "it is the filesystem's top-level subvolume, which cannot be renamed, so the volume could not \
                     be exchanged with a snapshot; use a subvolume inside it"
                .into(),
        });
    }
    Ok(())
}

/// Requires `path` to be the root of a subvolume, open for ioctls.
fn open_subvolume(path: &Path) -> Result<std::os::fd::OwnedFd, BackendError> {
    if !path.is_absolute() {
        return Err(BackendError::NotAbsolute { path: path.to_path_buf() });
    }
    let fd = subvol::open_dir(path).map_err(|err| match err.raw_os_error() {
        Some(libc::ENOTDIR) => BackendError::NotSubvolume { path: path.to_path_buf() },
        _ => fs_error("open", path, err),
    })?;
    match subvol::kind_of_fd(&fd).map_err(|err| fs_error("stat", path, err))? {
        Kind::Subvolume => Ok(fd),
        Kind::Other => Err(BackendError::NotSubvolume { path: path.to_path_buf() }),
        Kind::NotBtrfs => Err(BackendError::NotBtrfs { path: path.to_path_buf() }),
    }
}

/// Whether [`delete_subvolume`] looks for mounts of the subvolume first.
#[derive(Clone, Copy)]
enum MountCheck {
    /// Refuse while any mount shows it (a snapshot the user mounted).
    RefuseMounted,
    /// Delete without reading the mount table (the write-back's throw-away).
    Skip,
}

/// Deletes the subvolume at `location`: `Ok(false)` when nothing is there,
/// an error when something else is (never a plain folder).
fn delete_subvolume(location: &str, check: MountCheck) -> Result<bool, BackendError> {
    let (parent, name) = paths::split_location(location)?;
    let parent_fd = match subvol::open_dir(parent) {
        Ok(fd) => fd,
        Err(err) if err.raw_os_error() == Some(libc::ENOENT) => return Ok(false),
        Err(err) => return Err(BackendError::io("open", parent, err)),
    };
    // Only ever delete subvolumes: a plain folder or a symlink there is
    // not ours.
    match subvol::kind_at(&parent_fd, name).map_err(|err| BackendError::io("stat", location, err))? {
        None => return Ok(false),
        Some(Kind::Subvolume) => {}
        Some(Kind::Other) => return Err(BackendError::NotSubvolume { path: PathBuf::from(location) }),
        Some(Kind::NotBtrfs) => return Err(BackendError::NotBtrfs { path: PathBuf::from(location) }),
    }
    // btrfs deletes a subvolume that is bind-mounted somewhere (the
    // mount then shows an empty tree): a snapshot the user mounted stays.
    if let (MountCheck::RefuseMounted, Ok(mounts)) = (check, crate::sys::mountinfo::read()) {
        if let Some(at) = crate::sys::mountinfo::mounts_showing(&mounts, Path::new(location)).first() {
            return Err(BackendError::Mounted { location: location.to_owned(), at: at.to_path_buf() });
        }
    }
    // btrfs refuses (EPERM) to delete a subvolume while a send reads it:
    // the daemon's own size measurement (send without data, a moment)
    // or a `btrfs send` by someone else. Wait for it, a bounded while.
    let mut pause = std::time::Duration::from_millis(10);
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match subvol::destroy(&parent_fd, name) {
            Ok(()) => return Ok(true),
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => return Ok(false),
            Err(err) if err.raw_os_error() == Some(libc::EPERM) && std::time::Instant::now() < give_up => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(500));
            }
            Err(err) => return Err(BackendError::io("delete subvolume", location, err)),
        }
    }
}

impl Backend for BtrfsBackend {
    fn kind(&self) -> &'static str {
        "btrfs"
    }

    fn inspect(&self, volume: &str, container: &str) -> Result<VolumeInfo, BackendError> {
        let given = Path::new(volume);
        if !given.is_absolute() {
            return Err(BackendError::NotAbsolute { path: given.to_path_buf() });
        }
        paths::check_name(container)?;
        let path = std::fs::canonicalize(given).map_err(|err| fs_error("resolve", given, err))?;
        if path.to_str().is_none() {
            return Err(BackendError::InvalidName {
                name: path.to_string_lossy().into_owned(),
                reason: "must be valid UTF-8",
            });
        }
        match subvol::kind_of_path(&path).map_err(|err| fs_error("stat", &path, err))? {
            Kind::Subvolume => {}
            Kind::Other => return Err(BackendError::NotSubvolume { path }),
            Kind::NotBtrfs => return Err(BackendError::NotBtrfs { path }),
        }
        if paths::inside_snapshot_folder(&path) {
            return Err(BackendError::InsideSnapshotFolder { path });
        }
        let mounts = read_mounts()?;
        check_swappable(&mounts, &path)?;
        let snapshot_dir = paths::snapshot_dir(&mounts, &path, container)?;
        Ok(VolumeInfo { path, snapshot_dir })
    }

    /// Writes back this subvolume's dirty data and no other's: a read-only
    /// snapshot of it, deleted at once. The snapshot ioctl writes back the
    /// source subvolume's pending data and waits for it before it commits;
    /// a syncfs would write every container's dirty data on the filesystem
    /// (seconds, beside busy neighbours). The snapshot is named with
    /// [`WRITE_BACK_PREFIX`] in the volume's snapshot folder.
    ///
    /// Skipped when the whole host has less than [`WORTH_WRITING_BACK`]
    /// unwritten: the snapshot that follows writes back what its source
    /// has anyway, and that little costs its window less than a snapshot
    /// and a delete more in the transaction it waits for (a burst of 100
    /// snapshots made 200 creations and 100 deletions otherwise).
    fn flush(&self, volume: &VolumeInfo) -> Result<(), BackendError> {
        if crate::sys::meminfo::unwritten_bytes().is_some_and(|bytes| bytes < WORTH_WRITING_BACK) {
            return Ok(());
        }
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{WRITE_BACK_PREFIX}{}-{n}", std::process::id());
        let location = volume.snapshot_dir.join(name).to_string_lossy().into_owned();
        self.take_snapshot(&volume.path.to_string_lossy(), &location, true)?;
        // Nobody mounts a snapshot that lives for a moment: no mount table.
        delete_subvolume(&location, MountCheck::Skip).map(drop)
    }

    /// One transaction commit (BTRFS_IOC_START_SYNC, then WAIT_SYNC for its
    /// transid): the file data still in the page cache stays there.
    fn commit(&self, volume: &VolumeInfo) -> Result<(), BackendError> {
        let fd = subvol::open_dir(&volume.path).map_err(|err| fs_error("open", &volume.path, err))?;
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        let mut transid: u64 = 0;
        // SAFETY: START_SYNC writes one u64 through the pointer, which points
        // at `transid`, alive for the call; `fd` is open for its length.
        unsafe { ioctl::start_sync(raw, &mut transid) }
            .map_err(|errno| BackendError::io("BTRFS_IOC_START_SYNC", &volume.path, errno.into()))?;
        // SAFETY: WAIT_SYNC reads one u64 through the pointer, which points
        // at `transid`, alive for the call; `fd` is open for its length.
        unsafe { ioctl::wait_sync(raw, &transid) }
            .map(drop)
            .map_err(|errno| BackendError::io("BTRFS_IOC_WAIT_SYNC", &volume.path, errno.into()))
    }

    fn reclaim(&self, volume: &VolumeInfo) -> Result<(), BackendError> {
        let fd = subvol::open_dir(&volume.path).map_err(|err| fs_error("open", &volume.path, err))?;
        // SAFETY: BTRFS_IOC_SYNC takes no argument; `fd` is an open directory
        // of the filesystem for the length of the call.
        unsafe { ioctl::sync(std::os::fd::AsRawFd::as_raw_fd(&fd)) }
            .map(drop)
            .map_err(|errno| BackendError::io("BTRFS_IOC_SYNC", &volume.path, errno.into()))
    }

    fn location(&self, volume: &VolumeInfo, name: &str) -> String {
        volume.snapshot_dir.join(name).to_string_lossy().into_owned()
    }

    fn metadata_dir(&self, volume: &VolumeInfo) -> Option<PathBuf> {
        Some(volume.snapshot_dir.clone())
    }

    /// The target is a subvolume, the staging name is free and on the
    /// volume's mount, the volume can be renamed, and there is room.
    fn check_restore(&self, volume: &VolumeInfo, target: &str, staging: &str) -> Result<(), BackendError> {
        open_subvolume(Path::new(target))?;
        let (staging_folder, _) = paths::split_location(staging)?;
        let mounts = read_mounts()?;
        check_swappable(&mounts, &volume.path)?;
        paths::check_same_mount(&mounts, &volume.path, staging_folder)?;
        if self.snapshot_exists(staging)? {
            return Err(BackendError::AlreadyExists { path: PathBuf::from(staging) });
        }
        let stats = nix::sys::statvfs::statvfs(&volume.path)
            .map_err(|errno| BackendError::io("statvfs", &volume.path, errno.into()))?;
        if stats.blocks_available().saturating_mul(stats.fragment_size()) < RESTORE_FREE_BYTES {
            return Err(BackendError::NoSpace { op: "restore", path: volume.path.clone() });
        }
        Ok(())
    }

    fn take_snapshot(&self, source: &str, location: &str, read_only: bool) -> Result<(), BackendError> {
        let (parent, name) = paths::split_location(location)?;
        let source_fd = open_subvolume(Path::new(source))?;
        let parent_fd = make_parent(parent)?;
        if subvol::kind_at(&parent_fd, name).map_err(|err| BackendError::io("stat", location, err))?.is_some() {
            return Err(BackendError::AlreadyExists { path: PathBuf::from(location) });
        }
        subvol::snapshot(&source_fd, &parent_fd, name, read_only).map_err(|err| match err.raw_os_error() {
            Some(libc::EEXIST) => BackendError::AlreadyExists { path: PathBuf::from(location) },
            _ => BackendError::io("snapshot", location, err),
        })
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), BackendError> {
        // RENAME_NOREPLACE: the check that `to` is free and the move are one
        // step, so a racing create cannot be overwritten.
        rename_durably(from, to, RenameFlags::RENAME_NOREPLACE)
    }

    fn exchange(&self, a: &str, b: &str) -> Result<(), BackendError> {
        rename_durably(a, b, RenameFlags::RENAME_EXCHANGE)
    }

    fn details(&self, location: &str) -> Result<SnapshotDetails, BackendError> {
        let fd = open_subvolume(Path::new(location))?;
        let info = subvol::subvol_info(&fd).map_err(|err| BackendError::io("get subvolume info", location, err))?;
        Ok(SnapshotDetails {
            location: location.to_string(),
            uuid: subvol::format_uuid(&info.uuid),
            generation: info.generation,
            read_only: info.read_only,
        })
    }

    fn set_read_only(&self, location: &str, read_only: bool) -> Result<(), BackendError> {
        let fd = open_subvolume(Path::new(location))?;
        subvol::set_read_only(&fd, read_only).map_err(|err| BackendError::io("set subvolume flags", location, err))?;
        Ok(())
    }

    fn delete_snapshot(&self, location: &str) -> Result<bool, BackendError> {
        delete_subvolume(location, MountCheck::RefuseMounted)
    }

    fn snapshot_exists(&self, location: &str) -> Result<bool, BackendError> {
        let path = Path::new(location);
        if !path.is_absolute() {
            return Err(BackendError::NotAbsolute { path: path.to_path_buf() });
        }
        match subvol::kind_of_path(path) {
            Ok(kind) => Ok(kind == Kind::Subvolume),
            Err(err) if matches!(err.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => Ok(false),
            Err(err) => Err(BackendError::io("stat", path, err)),
        }
    }

    fn list_snapshots(&self, volume: &VolumeInfo) -> Result<Vec<String>, BackendError> {
        let dir = &volume.snapshot_dir;
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(BackendError::io("list", dir, err)),
        };
        let mut found = Vec::new();
        for entry in entries {
            let path = entry.map_err(|err| BackendError::io("list", dir, err))?.path();
            // A name that is not UTF-8 cannot be one of ours (locations are text).
            let Some(location) = path.to_str() else { continue };
            match subvol::kind_of_path(&path) {
                Ok(Kind::Subvolume) => found.push(location.to_string()),
                Ok(_) => {}
                Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {}
                Err(err) => return Err(BackendError::io("stat", &path, err)),
            }
        }
        found.sort();
        Ok(found)
    }

    /// Never known: btrfs can tell a subvolume's exclusive bytes only through
    /// quota groups, which are usually off (and costly to keep on with many
    /// snapshots), and the daemon does not turn them on.
    fn exclusive_bytes(&self, _location: &str) -> Result<Option<u64>, BackendError> {
        Ok(None)
    }

    /// A snapshot's files are under its location.
    fn readable_root(&self, location: &str) -> Result<super::ReadableRoot, BackendError> {
        open_subvolume(Path::new(location))?;
        Ok(super::ReadableRoot::plain(PathBuf::from(location)))
    }

    /// A bind mount of the snapshot, remounted read-only, nosuid and nodev.
    fn mount_snapshot(&self, location: &str, path: &Path) -> Result<(), BackendError> {
        use nix::mount::{mount, umount2, MntFlags, MsFlags};
        open_subvolume(Path::new(location))?;
        mount(Some(Path::new(location)), path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|errno| BackendError::io("bind-mount", path, errno.into()))?;
        let read_only =
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        mount(None::<&str>, path, None::<&str>, read_only, None::<&str>).map_err(|errno| {
            // Never left writable.
            let _ = umount2(path, MntFlags::MNT_DETACH);
            BackendError::io("remount read-only", path, errno.into())
        })
    }

    /// Every subvolume has a device number of its own: a mount point with
    /// the snapshot's device and inode is its mount.
    fn snapshot_mounted_at(&self, location: &str, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        match (std::fs::metadata(location), std::fs::metadata(path)) {
            (Ok(snapshot), Ok(mounted)) => {
                snapshot.dev() == mounted.dev()
                    && snapshot.ino() == mounted.ino()
                    && crate::sys::mountinfo::is_mount_point(path)
            }
            _ => false,
        }
    }

    fn unmount_snapshot(&self, _location: &str, path: &Path) -> Result<(), BackendError> {
        nix::mount::umount2(path, nix::mount::MntFlags::empty())
            .map_err(|errno| BackendError::io("unmount", path, errno.into()))
    }

    /// The send stream without data, parent to snapshot (both read-only).
    fn changes_between(
        &self,
        parent: Option<&str>,
        location: &str,
    ) -> Result<Option<Vec<super::PathChange>>, BackendError> {
        if let Some(parent) = parent {
            open_subvolume(Path::new(parent))?;
        }
        open_subvolume(Path::new(location))?;
        send::path_changes(parent.map(Path::new), Path::new(location)).map(Some)
    }

    fn create_volume(&self, location: &str) -> Result<(), BackendError> {
        let (parent, name) = paths::split_location(location)?;
        let parent_fd = make_parent(parent)?;
        subvol::create(&parent_fd, name).map_err(|err| match err.raw_os_error() {
            Some(libc::EEXIST) => BackendError::AlreadyExists { path: PathBuf::from(location) },
            Some(libc::ENOTTY | libc::EXDEV) => BackendError::NotBtrfs { path: parent.to_path_buf() },
            _ => BackendError::io("create subvolume", location, err),
        })
    }
}

/// Whether `path` lies on a btrfs filesystem.
pub fn is_on_btrfs(path: &Path) -> bool {
    subvol::kind_of_path(path).is_ok_and(|kind| kind != Kind::NotBtrfs)
}

#[cfg(test)]
mod tests;
