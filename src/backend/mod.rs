//! Backend layer: block-level copy-on-write snapshots of a container's volume.
//!
//! The engine only sees the [`Backend`] trait; `btrfs` is the real
//! implementation (ioctls), and the engine's unit tests use an in-memory fake.

use std::path::{Path, PathBuf};

pub mod btrfs;
mod error;
pub mod host;
pub mod lvm;
pub use error::BackendError;

/// Name prefix of the short-lived volumes a backend makes in a snapshot
/// folder for its own use (btrfs: the snapshot a write-back takes and
/// deletes at once); one a crash left behind is removed at the next start.
pub const WRITE_BACK_PREFIX: &str = "write-back-";

/// A container volume the backend accepted at registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    /// Canonical absolute path of the volume (the btrfs subvolume).
    pub path: PathBuf,
    /// Where this container's snapshots live: a folder the daemon owns, on the
    /// same filesystem (e.g. `<fs>/.rollpoint/<container>`).
    pub snapshot_dir: PathBuf,
}

/// Free space where a volume's snapshots go (a total of 0: not known,
/// taken as all free).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FreeSpace {
    pub free_bytes: u64,
    pub total_bytes: u64,
}

impl FreeSpace {
    /// What statvfs(2) says of the filesystem holding `path` (the blocks an
    /// unprivileged writer may still use).
    pub fn of_filesystem(path: &std::path::Path) -> std::io::Result<FreeSpace> {
        let stat = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
        let unit = stat.fragment_size().max(1);
        Ok(FreeSpace { free_bytes: stat.blocks_available() * unit, total_bytes: stat.blocks() * unit })
    }

    pub fn percent(&self) -> f64 {
        if self.total_bytes == 0 {
            return 100.0;
        }
        self.free_bytes as f64 * 100.0 / self.total_bytes as f64
    }
}

/// A directory where the files of a volume or snapshot can be read, for as
/// long as this value lives: on btrfs the snapshot itself; on LVM thin a
/// mount that is taken down (and its temporary volume removed) when this
/// is dropped.
pub struct ReadableRoot {
    path: PathBuf,
    release: Option<Box<dyn FnOnce() + Send>>,
}

impl ReadableRoot {
    /// A folder that is there anyway; nothing to release.
    pub fn plain(path: PathBuf) -> ReadableRoot {
        ReadableRoot { path, release: None }
    }

    /// A folder made for the reader; `release` takes it down.
    pub fn with_release(path: PathBuf, release: impl FnOnce() + Send + 'static) -> ReadableRoot {
        ReadableRoot { path, release: Some(Box::new(release)) }
    }
}

impl std::ops::Deref for ReadableRoot {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for ReadableRoot {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl std::fmt::Debug for ReadableRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadableRoot").field("path", &self.path).field("mounted", &self.release.is_some()).finish()
    }
}

impl Drop for ReadableRoot {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

/// What the backend can tell about a snapshot it made.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotDetails {
    /// Backend-specific location (for btrfs: the snapshot subvolume's path).
    pub location: String,
    /// Subvolume uuid as text, where the backend has one.
    pub uuid: String,
    /// Transaction generation at snapshot time, where the backend has one.
    pub generation: u64,
    pub read_only: bool,
}

/// Copy-on-write snapshots of a volume. All calls are blocking.
pub trait Backend: Send + Sync + 'static {
    /// Short name of the backend, for records and messages ("btrfs").
    fn kind(&self) -> &'static str;

    /// The backend that serves `volume` ("btrfs", "lvm-thin"); the same as
    /// [`Backend::kind`] for a single backend.
    fn kind_of(&self, _volume: &VolumeInfo) -> &'static str {
        self.kind()
    }

    /// Checks that `volume` is a volume this backend can snapshot (for btrfs:
    /// an absolute path to a subvolume on a btrfs filesystem), and says where
    /// the snapshots of `container` will live. Does not create anything.
    fn inspect(&self, volume: &str, container: &str) -> Result<VolumeInfo, BackendError>;

    /// Writes back the volume's dirty data (its own: not the rest of its
    /// filesystem, where the backend can tell them apart), so that the
    /// freeze window that follows only covers the last instant's writes.
    fn flush(&self, volume: &VolumeInfo) -> Result<(), BackendError>;

    /// Makes the metadata changes made so far durable (a rename, a new
    /// snapshot) without writing back file data: what a restore needs while
    /// the container is down, where a flush would write every dirty page of
    /// the filesystem. By default a flush.
    fn commit(&self, volume: &VolumeInfo) -> Result<(), BackendError> {
        self.flush(volume)
    }

    /// Commits, and has the space of deleted snapshots given back to the
    /// filesystem as soon as it can (btrfs frees it in the background).
    fn reclaim(&self, volume: &VolumeInfo) -> Result<(), BackendError> {
        self.flush(volume)
    }

    /// Free space where the volume's snapshots take theirs: by default the
    /// filesystem the volume is on.
    fn free_space(&self, volume: &VolumeInfo) -> Result<FreeSpace, BackendError> {
        FreeSpace::of_filesystem(&volume.path).map_err(|error| BackendError::io("statvfs", &volume.path, error))
    }

    /// The location a snapshot called `name` of this volume has (nothing is
    /// created): for btrfs `<snapshot_dir>/<name>`.
    fn location(&self, volume: &VolumeInfo, name: &str) -> String;

    /// Takes a copy-on-write snapshot of `source` (the volume's path, or the
    /// location of another snapshot) at `location`, which must not exist; the
    /// folder that holds it is created when missing. The three steps below
    /// in a row; a freeze window runs them apart, so that only
    /// [`Backend::take_snapshot`] holds the container frozen.
    fn create_snapshot(&self, source: &str, location: &str, read_only: bool) -> Result<SnapshotDetails, BackendError> {
        self.prepare_snapshot(source, location)?;
        self.take_snapshot(source, location, read_only)?;
        self.details(location)
    }

    /// Everything a snapshot can check and settle before it is taken (the
    /// source can be snapshotted, `location` is free, there is room), done
    /// before the container is frozen. Nothing by default.
    fn prepare_snapshot(&self, _source: &str, _location: &str) -> Result<(), BackendError> {
        Ok(())
    }

    /// The folder where the records of the volume's container and of its
    /// snapshots are kept beside them (`store::sidecar`), where the backend
    /// has one: btrfs, the snapshot folder; LVM thin, a folder on the VG's
    /// metadata volume. None by default.
    fn metadata_dir(&self, _volume: &VolumeInfo) -> Option<PathBuf> {
        None
    }

    /// Folders laid out as a btrfs filesystem's (`.rollpoint/<container>/`
    /// with the records kept beside the data) that the backend keeps outside
    /// any filesystem the configuration names: LVM thin, the metadata
    /// volumes of `volume_groups`. Mounted by this call; none by default.
    fn metadata_roots(&self, _volume_groups: &[String]) -> Vec<PathBuf> {
        Vec::new()
    }

    /// Everything a restore of `volume` to the snapshot at `target` can
    /// check before the container is stopped: the target can be cloned to
    /// `staging`, and `staging` can then be swapped with the volume (same
    /// filesystem, the volume is not a mount point, there is room). By
    /// default what [`Backend::prepare_snapshot`] checks.
    fn check_restore(&self, _volume: &VolumeInfo, target: &str, staging: &str) -> Result<(), BackendError> {
        self.prepare_snapshot(target, staging)
    }

    /// The snapshot itself and nothing else: what runs while the container
    /// is frozen. Still refuses a taken `location`, and what it finds wrong.
    fn take_snapshot(&self, source: &str, location: &str, read_only: bool) -> Result<(), BackendError>;

    /// Moves a volume or snapshot from `from` to `to` atomically (rename(2) on
    /// btrfs). `to` must not exist. Used by the restore swap.
    fn rename(&self, from: &str, to: &str) -> Result<(), BackendError>;

    /// Swaps the volumes at `a` and `b` in one atomic step (renameat2 with
    /// RENAME_EXCHANGE on btrfs): a crash leaves either both as they were or
    /// both swapped, and each path always holds a volume.
    fn exchange(&self, a: &str, b: &str) -> Result<(), BackendError>;

    /// Reads back what the backend knows of the volume or snapshot at
    /// `location` (uuid, generation, read-only flag).
    fn details(&self, location: &str) -> Result<SnapshotDetails, BackendError>;

    /// Makes the volume or snapshot at `location` read-only or writable.
    fn set_read_only(&self, location: &str, read_only: bool) -> Result<(), BackendError>;

    /// Deletes the snapshot at `location`. Deleting one that is not there is
    /// `Ok(false)`; `Ok(true)` when something was deleted.
    fn delete_snapshot(&self, location: &str) -> Result<bool, BackendError>;

    /// Whether a snapshot exists at `location`.
    fn snapshot_exists(&self, location: &str) -> Result<bool, BackendError>;

    /// Locations of every snapshot found in the volume's snapshot folder
    /// (for start-up reconciliation).
    fn list_snapshots(&self, volume: &VolumeInfo) -> Result<Vec<String>, BackendError>;

    /// How many bytes of storage only the snapshot at `location` holds (what
    /// deleting it would give back), where the backend can tell; `Ok(None)`
    /// where it cannot, which is the default. May be costly (LVM reads the
    /// whole pool's metadata): for one snapshot on request, not for listings.
    fn exclusive_bytes(&self, _location: &str) -> Result<Option<u64>, BackendError> {
        Ok(None)
    }

    /// Where the live volume's files are (for btrfs: the subvolume itself;
    /// LVM thin: where the LV is mounted, which it must be, once).
    fn live_root(&self, volume: &VolumeInfo) -> Result<PathBuf, BackendError> {
        Ok(volume.path.clone())
    }

    /// What the page calls the snapshot's delta: the bytes that turned the
    /// snapshot at `parent` into the one at `location` (without a parent,
    /// all of it), where the backend can tell. By default the file data
    /// [`Backend::changes_between`] says was written.
    fn delta_bytes(&self, parent: Option<&str>, location: &str) -> Result<Option<u64>, BackendError> {
        Ok(self.changes_between(parent, location)?.map(|changes| changed_bytes(&changes)))
    }

    /// A directory where the files of the volume or snapshot at `location`
    /// can be read while the returned value lives (for btrfs: the location
    /// itself; LVM thin: a read-only mount of a throwaway snapshot of it).
    /// Export, diff and file restore read snapshots through it; an import
    /// writes into the new volume through it.
    fn readable_root(&self, location: &str) -> Result<ReadableRoot, BackendError> {
        Err(BackendError::Unsupported { what: format!("reading the files of {location} (export and import)") })
    }

    /// Mounts the snapshot at `location` read-only, nosuid and nodev, at
    /// `path` (an empty directory), for the user to read until
    /// [`Backend::unmount_snapshot`] (`rollpoint snapshot mount`).
    fn mount_snapshot(&self, location: &str, _path: &Path) -> Result<(), BackendError> {
        Err(BackendError::Unsupported { what: format!("mounting {location}") })
    }

    /// Whether the mount at `path` is one [`Backend::mount_snapshot`] made of
    /// the snapshot at `location`.
    fn snapshot_mounted_at(&self, _location: &str, _path: &Path) -> bool {
        false
    }

    /// Unmounts `path`, a mount of the snapshot at `location`, and lets go
    /// of what that mount held.
    fn unmount_snapshot(&self, location: &str, _path: &Path) -> Result<(), BackendError> {
        Err(BackendError::Unsupported { what: format!("unmounting {location}") })
    }

    /// Makes `volume` (which must not exist), a new writable volume with
    /// the contents of the snapshot at `location`: a clone, the user's own
    /// volume from then on, as a registered container's is.
    fn create_clone(&self, location: &str, volume: &str) -> Result<(), BackendError> {
        self.take_snapshot(location, volume, false)
    }

    /// Removes a clone [`Backend::create_clone`] just made (its container
    /// could not be registered).
    fn remove_clone(&self, volume: &str) -> Result<(), BackendError> {
        self.delete_snapshot(volume).map(drop)
    }

    /// Creates an empty, writable volume at `location` (which must not
    /// exist), to be filled by an import and then made read-only.
    fn create_volume(&self, location: &str) -> Result<(), BackendError> {
        Err(BackendError::Unsupported { what: format!("creating a volume at {location} (import)") })
    }

    /// What turned the snapshot at `parent` into the one at `location`, as
    /// path changes in order, where the backend can tell without reading
    /// file data (btrfs: the send stream without data); `Ok(None)` where it
    /// cannot, which is the default. Without a parent: everything in
    /// `location`, as new.
    fn changes_between(&self, _parent: Option<&str>, _location: &str) -> Result<Option<Vec<PathChange>>, BackendError> {
        Ok(None)
    }
}

/// One step of what turned a parent snapshot's tree into another's, in
/// order. Paths are relative to the volume's root, as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathChange {
    /// `from` (and everything under it) is now at `to`.
    Rename { from: Vec<u8>, to: Vec<u8> },
    /// `path` was unlinked or removed.
    Remove { path: Vec<u8> },
    /// A new hard link `path` to the file now at `target`.
    Link { path: Vec<u8>, target: Vec<u8> },
    /// `path` was created or changed: its data too when `data`, `bytes` of
    /// it (the length of the changed range; 0 when none or not known).
    Touched { path: Vec<u8>, data: bool, bytes: u64 },
    /// Only the times of `path` changed (as every folder whose entries
    /// changed does).
    Times { path: Vec<u8> },
}

/// The bytes of file data the changes wrote: what the page calls a
/// snapshot's delta against its parent.
pub fn changed_bytes(changes: &[PathChange]) -> u64 {
    changes.iter().map(|change| if let PathChange::Touched { bytes, .. } = change { *bytes } else { 0 }).sum()
}
