//! Read-only access to a snapshot's files at a folder of the user's choice:
//! a bind mount of the snapshot, remounted read-only, nosuid and nodev.
//!
//! Nothing is recorded: where a snapshot is mounted is what the kernel
//! says. On btrfs every subvolume has a device number of its own, so a
//! mount point whose device is a snapshot's is that snapshot's mount.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::error::{EngineError, EngineResult};
use super::Engine;
use crate::events::Event;
use crate::store::{ContainerRecord, SnapshotRecord, SnapshotState};

impl Engine {
    /// Mounts a snapshot read-only at `path` (an empty directory).
    pub fn mount_snapshot(
        &self,
        container: &str,
        reference: &str,
        path: &str,
        actor: &str,
    ) -> EngineResult<(SnapshotRecord, PathBuf)> {
        let container = self.container_for("container", container)?;
        super::names::snapshot_name("snapshot", reference)?;
        let path = mount_point("path", path)?;
        let _guard = self.locks.lock(&container.id, self.config.lock_wait)?;
        let snapshot = self.find_snapshot(&container, reference)?;
        super::snapshots::ensure_ready(&snapshot, "it cannot be mounted")?;
        if !snapshot.location.starts_with('/') {
            return Err(EngineError::FailedPrecondition {
                reason: format!("{} is not on btrfs; mounting LVM snapshots is not built", snapshot.resource_name()),
            });
        }
        for inside in [&container.volume, &container.snapshot_dir] {
            if path.starts_with(inside) {
                return Err(EngineError::invalid("path", format!("{} is inside {}", path.display(), inside.display())));
            }
        }
        let empty = std::fs::read_dir(&path).map(|mut entries| entries.next().is_none()).unwrap_or(false);
        if !empty {
            return Err(EngineError::invalid("path", format!("{} is not an empty directory", path.display())));
        }
        let failed = |what: &str, errno: nix::errno::Errno| EngineError::Internal {
            reason: format!("{what} {} at {}: {errno}", snapshot.location, path.display()),
        };
        mount(Some(Path::new(&snapshot.location)), &path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|errno| failed("bind-mounting", errno))?;
        let read_only =
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        if let Err(errno) = mount(None::<&str>, &path, None::<&str>, read_only, None::<&str>) {
            // Never left writable.
            let _ = umount2(&path, MntFlags::MNT_DETACH);
            return Err(failed("making read-only the mount of", errno));
        }
        self.emit(
            Event::new("snapshot.mounted", "ok")
                .container(&container.id)
                .snapshot(&snapshot.name)
                .actor(actor)
                .detail(path.display().to_string()),
        );
        self.store.make_durable()?;
        Ok((snapshot, path))
    }

    /// Unmounts the snapshot of `container` mounted at `path`; its name.
    pub fn unmount_snapshot(&self, container: &str, path: &str, actor: &str) -> EngineResult<String> {
        let container = self.container_for("container", container)?;
        let path = mount_point("path", path)?;
        let _guard = self.locks.lock(&container.id, self.config.lock_wait)?;
        let snapshot = self.snapshot_mounted_at(&container, &path)?.ok_or_else(|| {
            EngineError::not_found(format!("a snapshot of container {} mounted at {}", container.id, path.display()))
        })?;
        umount2(&path, MntFlags::empty()).map_err(|errno| EngineError::FailedPrecondition {
            reason: format!("unmounting {}: {errno} (is something using it?)", path.display()),
        })?;
        self.emit(
            Event::new("snapshot.unmounted", "ok")
                .container(&container.id)
                .snapshot(&snapshot)
                .actor(actor)
                .detail(path.display().to_string()),
        );
        self.store.make_durable()?;
        Ok(snapshot)
    }

    /// The snapshot of `container` whose mount `path` is, if it is one.
    fn snapshot_mounted_at(&self, container: &ContainerRecord, path: &Path) -> EngineResult<Option<String>> {
        let Ok(mounted) = std::fs::metadata(path) else { return Ok(None) };
        let is_mount_point = path
            .parent()
            .and_then(|parent| std::fs::metadata(parent).ok())
            .is_some_and(|parent| parent.dev() != mounted.dev());
        if !is_mount_point {
            return Ok(None);
        }
        Ok(self.store.snapshots_of(&container.id)?.into_iter().find_map(|snapshot| {
            let same = snapshot.state == SnapshotState::Ready
                && std::fs::metadata(&snapshot.location)
                    .is_ok_and(|meta| meta.dev() == mounted.dev() && meta.ino() == mounted.ino());
            same.then_some(snapshot.name)
        }))
    }
}

/// An absolute, existing directory, canonical.
fn mount_point(field: &'static str, path: &str) -> EngineResult<PathBuf> {
    if !path.starts_with('/') {
        return Err(EngineError::invalid(field, format!("{path:?} is not an absolute path")));
    }
    let canonical =
        std::fs::canonicalize(path).map_err(|error| EngineError::invalid(field, format!("{path}: {error}")))?;
    if !canonical.is_dir() {
        return Err(EngineError::invalid(field, format!("{path} is not a directory")));
    }
    Ok(canonical)
}
