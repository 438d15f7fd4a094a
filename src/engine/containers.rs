//! Registering, reading and forgetting containers.

use std::collections::BTreeMap;

use super::error::{EngineError, EngineResult};
use super::names;
use super::paging::{paginate, Page};
use super::sidecars::Mirror;
use super::Engine;
use crate::events::Event;
use crate::store::{ContainerRecord, Discovered, Hooks, LifecycleSpec, Retention, RetentionPolicy};

#[derive(Debug, Clone, Default)]
pub struct RegisterRequest {
    pub id: String,
    pub cgroup: String,
    pub subvolume: String,
    pub lifecycle: LifecycleSpec,
    pub labels: BTreeMap<String, String>,
    pub hooks: Hooks,
    /// Who asked, for the timeline.
    pub actor: String,
    /// The manager discovery found it in, if it did.
    pub discovered: Option<Discovered>,
}

/// What an update of a container changes: the fields that are set.
#[derive(Debug, Clone, Default)]
pub struct ContainerUpdate {
    pub hooks: Option<Hooks>,
    /// The container's own retention of its snapshots.
    pub retention: Option<RetentionPolicy>,
    /// The container's own retention of its pre-restore snapshots.
    pub pre_restore_retention: Option<RetentionPolicy>,
    /// Back to the daemon's default policies.
    pub default_retention: bool,
}

/// Longest argv of a lifecycle command, in arguments and in bytes.
const MAX_COMMAND_ARGS: usize = 64;
const MAX_COMMAND_BYTES: usize = 4096;

impl Engine {
    /// Registers a container after checking that its cgroup can be frozen and
    /// its volume snapshotted. ALREADY_EXISTS when the id is taken (even with
    /// the same settings: registration is not silently idempotent).
    pub fn register_container(&self, request: RegisterRequest) -> EngineResult<ContainerRecord> {
        names::container_id("id", &request.id)?;
        if request.cgroup.is_empty() {
            return Err(EngineError::invalid("cgroup", "must not be empty"));
        }
        if request.subvolume.is_empty() {
            return Err(EngineError::invalid("subvolume", "must not be empty"));
        }
        names::labels(request.labels.iter())?;
        check_lifecycle(&request.lifecycle)?;
        super::hooks::check_hooks(&request.hooks)?;
        let cgroup = self.freezer.resolve(&request.cgroup)?;
        let volume = self.backend.inspect(&request.subvolume, &request.id)?;
        if let Some(other) = self.store.containers()?.into_iter().find(|c| c.volume == volume.path) {
            return Err(EngineError::AlreadyExists {
                what: format!("a container ({}) with subvolume {}", other.id, volume.path.display()),
            });
        }
        let request_actor = request.actor;
        let backend = self.backend.kind_of(&volume).to_owned();
        let record = ContainerRecord {
            id: request.id,
            cgroup,
            volume: volume.path,
            backend,
            snapshot_dir: volume.snapshot_dir,
            lifecycle: request.lifecycle,
            labels: request.labels,
            create_time: self.clock.now(),
            last_restore: None,
            hooks: request.hooks,
            retention: Default::default(),
            discovered: request.discovered,
            group: None,
        };
        if !self.store.insert_container(&record)? {
            return Err(EngineError::AlreadyExists { what: format!("container {}", record.id) });
        }
        self.mirror(&record, Mirror::Container(&record))?;
        self.emit(
            Event::new("container.registered", "ok").container(&record.id).actor(&request_actor).detail(format!(
                "cgroup {}, subvolume {}",
                record.cgroup.display(),
                record.volume.display()
            )),
        );
        self.store.make_durable()?;
        tracing::info!(container = %record.id, cgroup = %record.cgroup.display(), volume = %record.volume.display(), "container registered");
        Ok(record)
    }

    /// Changes the settings of a registered container that may change.
    pub fn update_container(&self, id: &str, update: ContainerUpdate, actor: &str) -> EngineResult<ContainerRecord> {
        self.container(id)?;
        if let Some(hooks) = &update.hooks {
            super::hooks::check_hooks(hooks)?;
        }
        let _guard = self.locks.lock(id, self.config.lock_wait)?;
        let mut record = self.container(id)?;
        let mut changed = Vec::new();
        if let Some(hooks) = update.hooks {
            record.hooks = hooks;
            changed.push("hooks".to_owned());
        }
        if update.default_retention {
            record.retention = Retention::default();
            changed.push("retention: the default".to_owned());
        }
        if let Some(policy) = update.retention {
            record.retention.snapshots = Some(policy);
            changed.push(format!("retention {policy}"));
        }
        if let Some(policy) = update.pre_restore_retention {
            record.retention.pre_restore = Some(policy);
            changed.push(format!("pre-restore retention {policy}"));
        }
        self.store.put_container(&record)?;
        self.mirror(&record, Mirror::Container(&record))?;
        self.emit(
            Event::new("container.updated", "ok")
                .container(id)
                .actor(actor)
                .detail(format!("changed: {}", changed.join(", "))),
        );
        self.store.make_durable()?;
        // A new policy may let snapshots go: the retention timer looks again.
        self.expiry_changed.notify_one();
        Ok(record)
    }

    pub fn container(&self, id: &str) -> EngineResult<ContainerRecord> {
        names::container_id("id", id)?;
        self.store.container(id)?.ok_or_else(|| EngineError::not_found(format!("container {id:?}")))
    }

    /// The container a snapshot request names, checked and looked up.
    pub(super) fn container_for(&self, field: &'static str, id: &str) -> EngineResult<ContainerRecord> {
        names::container_id(field, id)?;
        self.store.container(id)?.ok_or_else(|| EngineError::not_found(format!("container {id:?}")))
    }

    pub fn list_containers(&self, page_size: i32, page_token: &str) -> EngineResult<Page<ContainerRecord>> {
        paginate(self.store.containers()?, |c| c.id.clone(), page_size, page_token)
    }

    /// Number of snapshots recorded for a container.
    pub fn snapshot_count(&self, id: &str) -> EngineResult<usize> {
        Ok(self.store.snapshot_count(id)?)
    }

    /// Forgets a container. With snapshots recorded, the caller must say
    /// whether to delete them (`delete_snapshots`) or leave them on disk
    /// (`keep_snapshots`); returns how many were deleted.
    pub fn unregister_container(
        &self,
        id: &str,
        delete_snapshots: bool,
        keep_snapshots: bool,
        actor: &str,
    ) -> EngineResult<u32> {
        let container = self.container(id)?;
        if delete_snapshots && keep_snapshots {
            return Err(EngineError::invalid("delete_snapshots", "cannot be set together with keep_snapshots"));
        }
        let _guard = self.locks.lock(id, self.config.lock_wait)?;
        let snapshots = self.store.snapshots_of(id)?;
        if !snapshots.is_empty() && !delete_snapshots && !keep_snapshots {
            return Err(EngineError::FailedPrecondition {
                reason: format!(
                    "container {id} has {} snapshots; set delete_snapshots to delete them or keep_snapshots to leave them on disk",
                    snapshots.len()
                ),
            });
        }
        let mut deleted = 0;
        for snapshot in snapshots {
            if delete_snapshots {
                self.delete_locked(&container, snapshot, Event::new("snapshot.deleted", "ok").actor(actor))?;
                deleted += 1;
            } else {
                self.store.remove_snapshot(id, &snapshot.name)?;
            }
        }
        self.store.remove_container(id)?;
        self.mirror(&container, Mirror::ContainerGone)?;
        self.emit(
            Event::new("container.unregistered", "ok")
                .container(id)
                .actor(actor)
                .detail(format!("{deleted} snapshots deleted")),
        );
        self.store.make_durable()?;
        self.locks.forget(id);
        tracing::info!(container = %id, snapshots_deleted = deleted, "container unregistered");
        Ok(deleted)
    }
}

fn check_lifecycle(lifecycle: &LifecycleSpec) -> EngineResult<()> {
    match lifecycle {
        LifecycleSpec::Podman { command, container, .. } => {
            check_argv("lifecycle.podman.command", command, true)?;
            let valid = !container.is_empty()
                && container.len() <= 255
                && !container.starts_with('-')
                && container.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if valid {
                Ok(())
            } else {
                Err(EngineError::invalid(
                    "lifecycle.podman.container",
                    format!("{container:?} is not a Podman container name or id"),
                ))
            }
        }
        LifecycleSpec::None => Ok(()),
        LifecycleSpec::Command { stop, start, .. } => {
            check_argv("lifecycle.command.stop", stop, true)?;
            check_argv("lifecycle.command.start", start, true)
        }
        LifecycleSpec::Systemd { unit, .. } => {
            let valid = !unit.is_empty()
                && unit.len() <= 255
                && unit.contains('.')
                && unit.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '\\' | '@'));
            if valid {
                Ok(())
            } else {
                Err(EngineError::invalid(
                    "lifecycle.systemd.unit",
                    format!("{unit:?} is not a systemd unit name (e.g. db-1.service)"),
                ))
            }
        }
    }
}

/// Checks a command's argv: a program (an absolute path when `absolute`:
/// no PATH lookup on the host), bounded, no NUL.
pub(super) fn check_argv(field: &'static str, argv: &[String], absolute: bool) -> EngineResult<()> {
    let first = argv.first().ok_or_else(|| EngineError::invalid(field, "needs a program and its arguments"))?;
    if first.is_empty() || absolute && !first.starts_with('/') {
        return Err(EngineError::invalid(
            field,
            format!("program {first:?} must be an absolute path (no PATH lookup)"),
        ));
    }
    let bytes: usize = argv.iter().map(String::len).sum();
    if argv.len() > MAX_COMMAND_ARGS || bytes > MAX_COMMAND_BYTES || argv.iter().any(|a| a.contains('\0')) {
        return Err(EngineError::invalid(
            field,
            format!("at most {MAX_COMMAND_ARGS} arguments, {MAX_COMMAND_BYTES} bytes, no NUL"),
        ));
    }
    Ok(())
}
