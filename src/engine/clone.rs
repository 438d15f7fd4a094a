//! Clones: a new container whose volume is a writable snapshot of one of
//! another container's snapshots (sharing every extent or block until
//! written; on LVM thin an untagged, active thin snapshot), registered under its own id with its own cgroup and no
//! lifecycle until it is given one. For a test copy of production data, or
//! to look around a rollback point while the original runs on.

use std::path::PathBuf;

use super::containers::RegisterRequest;
use super::error::{EngineError, EngineResult};
use super::names;
use super::snapshots::ensure_ready;
use super::Engine;
use crate::events::Event;
use crate::store::ContainerRecord;

/// Label naming where a clone came from: `CONTAINER/SNAPSHOT`.
pub const CLONED_FROM: &str = "rollpoint/cloned-from";

#[derive(Debug, Clone, Default)]
pub struct CloneRequest {
    /// The container and snapshot (name or alias) to clone.
    pub container: String,
    pub snapshot: String,
    /// The new container's id.
    pub id: String,
    /// Its cgroup (as for registering).
    pub cgroup: String,
    /// Where its volume goes (absolute; must not exist); empty: beside the
    /// source container's volume, named after the new id.
    pub subvolume: String,
    pub actor: String,
}

impl Engine {
    pub fn clone_snapshot(&self, request: CloneRequest) -> EngineResult<ContainerRecord> {
        names::container_id("id", &request.id)?;
        if request.cgroup.is_empty() {
            return Err(EngineError::invalid("cgroup", "must not be empty: the clone's processes run there"));
        }
        if self.store.container(&request.id)?.is_some() {
            return Err(EngineError::AlreadyExists { what: format!("container {}", request.id) });
        }
        let source = self.container_for("container", &request.container)?;
        let snapshot = self.snapshot(&request.container, &request.snapshot)?;
        ensure_ready(&snapshot, "it cannot be cloned")?;
        let volume = if request.subvolume.is_empty() {
            source.volume.parent().map_or_else(|| PathBuf::from("/"), PathBuf::from).join(&request.id)
        } else {
            PathBuf::from(&request.subvolume)
        };
        // btrfs volumes are absolute paths; LVM ones `vg/lv` names (in the
        // source's VG, which lvcreate checks, as it checks the name is free).
        if source.volume.is_absolute() {
            if !volume.is_absolute() {
                return Err(EngineError::invalid("subvolume", format!("{} is not an absolute path", volume.display())));
            }
            if std::fs::symlink_metadata(&volume).is_ok() {
                return Err(EngineError::AlreadyExists { what: format!("{} (the clone's volume)", volume.display()) });
            }
        }
        let location = volume.to_string_lossy().into_owned();
        {
            let _pin = self.pin_snapshot(&snapshot.location)?;
            self.backend.create_clone(&snapshot.location, &location)?;
        }
        let from = format!("{}/{}", source.id, snapshot.name);
        let registered = self.register_container(RegisterRequest {
            id: request.id.clone(),
            cgroup: request.cgroup,
            subvolume: location.clone(),
            lifecycle: Default::default(),
            labels: [(CLONED_FROM.to_owned(), from.clone())].into(),
            hooks: Default::default(),
            actor: request.actor.clone(),
            discovered: None,
        });
        let record = match registered {
            Ok(record) => record,
            Err(error) => {
                // Nothing half-made stays behind.
                if let Err(cleanup) = self.backend.remove_clone(&location) {
                    tracing::warn!(%location, %cleanup, "removing the volume of a clone that could not be registered");
                }
                return Err(error);
            }
        };
        self.emit(
            Event::new("container.cloned", "ok")
                .container(&record.id)
                .snapshot(&snapshot.name)
                .actor(&request.actor)
                .detail(format!("from {from}, volume {}", record.volume.display())),
        );
        Ok(record)
    }
}
