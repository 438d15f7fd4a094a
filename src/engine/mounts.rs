//! Read-only access to a snapshot's files at a folder of the user's choice
//! (btrfs: a bind mount of the snapshot; LVM thin: its mount view, see
//! `backend::lvm::views`), read-only, nosuid and nodev.
//!
//! Nothing is recorded: where a snapshot is mounted is what the kernel
//! says, asked through the backend.

use std::path::{Path, PathBuf};

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
        let volume = super::snapshots::volume_of(&container);
        let live = self.backend.live_root(&volume).ok();
        for inside in [Some(&container.volume), Some(&container.snapshot_dir), live.as_ref()].into_iter().flatten() {
            if inside.is_absolute() && path.starts_with(inside) {
                return Err(EngineError::invalid("path", format!("{} is inside {}", path.display(), inside.display())));
            }
        }
        let empty = std::fs::read_dir(&path).map(|mut entries| entries.next().is_none()).unwrap_or(false);
        if !empty {
            return Err(EngineError::invalid("path", format!("{} is not an empty directory", path.display())));
        }
        self.backend.mount_snapshot(&snapshot.location, &path)?;
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
        self.backend
            .unmount_snapshot(&snapshot.location, &path)
            .map_err(|error| EngineError::FailedPrecondition { reason: format!("{error} (is something using it?)") })?;
        self.emit(
            Event::new("snapshot.unmounted", "ok")
                .container(&container.id)
                .snapshot(&snapshot.name)
                .actor(actor)
                .detail(path.display().to_string()),
        );
        self.store.make_durable()?;
        Ok(snapshot.name)
    }

    /// The snapshot of `container` whose mount `path` is, if it is one.
    fn snapshot_mounted_at(&self, container: &ContainerRecord, path: &Path) -> EngineResult<Option<SnapshotRecord>> {
        Ok(self.store.snapshots_of(&container.id)?.into_iter().find(|snapshot| {
            snapshot.state == SnapshotState::Ready && self.backend.snapshot_mounted_at(&snapshot.location, path)
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
