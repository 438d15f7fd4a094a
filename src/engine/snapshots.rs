//! Creating, reading, relabelling, deleting and expiring snapshots.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::error::{EngineError, EngineResult};
use super::names;
use super::paging::{page_of, Page, PageRequest};
use super::sidecars::Mirror;
use super::Engine;
use crate::backend::{BackendError, VolumeInfo};
use crate::events::Event;
use crate::fault;
use crate::store::{ContainerRecord, Intent, SnapshotHold, SnapshotOrigin, SnapshotRecord, SnapshotState};

#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub container: String,
    /// Empty: the default `snap-YYYY-MM-DD[-N]`.
    pub name: String,
    /// Empty: no alias.
    pub alias: String,
    /// 0: never expires.
    pub expiry_days: u32,
    pub comment: String,
    pub origin: SnapshotOrigin,
    /// Who asked, for the timeline (`uid:0`, `token:ci`, `schedule`).
    pub actor: String,
}

/// Which fields of a snapshot to change.
#[derive(Debug, Clone, Default)]
pub struct UpdateRequest {
    /// `Some("")` removes the alias.
    pub alias: Option<String>,
    /// `Some(0)` makes it never expire; counted from now otherwise.
    pub expiry_days: Option<u32>,
    /// `Some(reason)` holds the snapshot; `Some("")` releases it.
    pub hold: Option<String>,
    /// Who asked, recorded with a hold.
    pub actor: String,
}

impl Engine {
    /// Whether a snapshot name is in use: by a record (as a name or an
    /// alias, in `taken`), or by a volume on disk that no record knows (a
    /// leftover that recovery reported; never overwritten).
    pub(super) fn name_taken(&self, taken: &HashSet<String>, volume: &VolumeInfo, name: &str) -> bool {
        taken.contains(name) || self.location_in_use(volume, name)
    }

    /// Whether a volume sits where a snapshot called `name` would go (or
    /// whether that cannot be told, which counts as in use).
    pub(super) fn location_in_use(&self, volume: &VolumeInfo, name: &str) -> bool {
        self.backend.snapshot_exists(&self.backend.location(volume, name)).unwrap_or(true)
    }

    /// Writes `record`, taking its alias away from the snapshot of the
    /// container that held it, in the same atomic write. The container's
    /// lock must be held.
    pub(super) fn save_with_alias(&self, record: &SnapshotRecord) -> EngineResult<()> {
        let mut moved = None;
        if let Some(alias) = &record.alias {
            if let Some(mut holder) = self.store.snapshot_by_alias(&record.container, alias)? {
                if holder.name != record.name {
                    holder.alias = None;
                    moved = Some(holder);
                }
            }
        }
        let mut batch: Vec<&SnapshotRecord> = moved.iter().collect();
        batch.push(record);
        self.store.put_snapshots(&batch)?;
        self.mirror_snapshots(&record.container, &batch)?;
        Ok(())
    }

    /// Looks a snapshot up by name or alias.
    pub fn snapshot(&self, container: &str, reference: &str) -> EngineResult<SnapshotRecord> {
        let container = self.container_for("container", container)?;
        self.find_snapshot(&container, reference)
    }

    /// A snapshot by name or alias as GetSnapshot shows it: its record, and
    /// how many bytes of storage only it holds, where the backend can tell.
    /// The figure is read from the backend on each call (for LVM a pass over
    /// the pool's metadata), which is why listings leave it out. It is extra
    /// information: failing to read it is logged and gives `None`, never a
    /// failed lookup. No lock is taken, so a read never waits behind a
    /// restore; a snapshot deleted meanwhile is just a failed read.
    pub fn snapshot_with_exclusive_bytes(
        &self,
        container: &str,
        reference: &str,
    ) -> EngineResult<(SnapshotRecord, Option<u64>)> {
        let record = self.snapshot(container, reference)?;
        if record.state != SnapshotState::Ready {
            return Ok((record, None));
        }
        let exclusive_bytes = match self.backend.exclusive_bytes(&record.location) {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::warn!(
                    container = %record.container, snapshot = %record.name, %error,
                    "could not read the snapshot's exclusive bytes"
                );
                None
            }
        };
        Ok((record, exclusive_bytes))
    }

    pub(super) fn find_snapshot(&self, container: &ContainerRecord, reference: &str) -> EngineResult<SnapshotRecord> {
        names::snapshot_name("snapshot", reference)?;
        if let Some(found) = self.store.snapshot(&container.id, reference)? {
            return Ok(found);
        }
        self.store
            .snapshot_by_alias(&container.id, reference)?
            .ok_or_else(|| EngineError::not_found(format!("snapshot {reference:?} of container {}", container.id)))
    }

    /// The snapshots of a container, oldest first ([`SnapshotRecord::sort_key`],
    /// also the page token). A page is read from the store's time index: its
    /// cost is the page's, not the container's.
    pub fn list_snapshots(
        &self,
        container: &str,
        page_size: i32,
        page_token: &str,
    ) -> EngineResult<Page<SnapshotRecord>> {
        let container = self.container_for("container", container)?;
        let request = PageRequest::new(page_size, page_token)?;
        let items = self.store.snapshots_after(&container.id, request.after, request.read_ahead())?;
        Ok(page_of(items, &request, SnapshotRecord::sort_key))
    }

    /// Changes the alias and/or the expiry of a snapshot.
    pub fn update_snapshot(
        &self,
        container: &str,
        reference: &str,
        update: UpdateRequest,
    ) -> EngineResult<SnapshotRecord> {
        let container = self.container_for("container", container)?;
        if let Some(alias) = update.alias.as_deref().filter(|a| !a.is_empty()) {
            names::snapshot_name("alias", alias)?;
        }
        if let Some(days) = update.expiry_days {
            names::expiry_days(days)?;
        }
        if let Some(reason) = &update.hold {
            names::free_text("hold_reason", reason)?;
        }
        let _guard = self.locks.lock(&container.id, self.config.lock_wait)?;
        let mut snapshot = self.find_snapshot(&container, reference)?;
        if let Some(alias) = update.alias {
            if alias != snapshot.name && self.store.has_snapshot(&container.id, &alias)? {
                return Err(EngineError::invalid("alias", format!("{alias:?} is the name of another snapshot")));
            }
            snapshot.alias = Some(alias).filter(|a| !a.is_empty());
        }
        if let Some(days) = update.expiry_days {
            snapshot.expire_time = expiry_from(self.clock.now(), days);
        }
        if let Some(reason) = update.hold {
            snapshot.hold = (!reason.is_empty()).then(|| SnapshotHold {
                reason: reason.clone(),
                actor: update.actor.clone(),
                time: self.clock.now(),
            });
            self.emit(
                Event::new(if reason.is_empty() { "snapshot.released" } else { "snapshot.held" }, "ok")
                    .container(&container.id)
                    .snapshot(&snapshot.name)
                    .actor(&update.actor)
                    .detail(reason),
            );
        }
        self.save_with_alias(&snapshot)?;
        self.store.make_durable()?;
        self.expiry_changed.notify_one();
        Ok(snapshot)
    }

    /// Deletes a snapshot (by name or alias) from disk and from the record.
    pub fn delete_snapshot(&self, container: &str, reference: &str, actor: &str) -> EngineResult<SnapshotRecord> {
        let container = self.container_for("container", container)?;
        let _guard = self.locks.lock(&container.id, self.config.lock_wait)?;
        let snapshot = self.find_snapshot(&container, reference)?;
        self.delete_locked(&container, snapshot, Event::new("snapshot.deleted", "ok").actor(actor))
    }

    /// Deletes with the container's lock held: intent, mark, remove, forget;
    /// `event` (kind and actor) is completed and recorded.
    pub(super) fn delete_locked(
        &self,
        container: &ContainerRecord,
        mut snapshot: SnapshotRecord,
        event: Event,
    ) -> EngineResult<SnapshotRecord> {
        super::prune::refuse_held(&snapshot)?;
        self.check_not_pinned(&snapshot)?;
        let intent = Intent::Delete {
            container: container.id.clone(),
            name: snapshot.name.clone(),
            location: snapshot.location.clone(),
        };
        let before = std::mem::replace(&mut snapshot.state, SnapshotState::Deleting);
        self.store.put_snapshots(&[&snapshot])?;
        let intent_id = self.store.begin_intent(&intent)?;
        fault::point("delete.intent");
        if let Err(error) = self.backend.delete_snapshot(&snapshot.location) {
            if matches!(error, BackendError::Mounted { .. }) {
                // Refused before anything was removed: the snapshot stays.
                snapshot.state = before;
                self.store.put_snapshots(&[&snapshot])?;
                self.store.end_intent(intent_id)?;
            }
            return Err(error.into());
        }
        fault::point("delete.removed");
        self.store.remove_snapshot(&container.id, &snapshot.name)?;
        self.mirror(container, Mirror::SnapshotGone(&snapshot.name))?;
        self.store.end_intent(intent_id)?;
        self.emit(event.container(&container.id).snapshot(&snapshot.name));
        self.store.make_durable()?;
        self.sizes_stale.notify_one();
        tracing::info!(container = %container.id, snapshot = %snapshot.name, "snapshot deleted");
        Ok(snapshot)
    }
}

/// FAILED_PRECONDITION unless `snapshot` is ready to be read (`for_what`:
/// what the caller wanted to do with it).
pub(super) fn ensure_ready(snapshot: &SnapshotRecord, for_what: &str) -> EngineResult<()> {
    if snapshot.state == SnapshotState::Ready {
        return Ok(());
    }
    Err(EngineError::FailedPrecondition {
        reason: format!("{} is {:?}, not ready: {for_what}", snapshot.resource_name(), snapshot.state),
    })
}

pub(super) fn volume_of(container: &ContainerRecord) -> VolumeInfo {
    VolumeInfo { path: container.volume.clone(), snapshot_dir: container.snapshot_dir.clone() }
}

pub(super) fn expiry_from(now: DateTime<Utc>, days: u32) -> Option<DateTime<Utc>> {
    (days > 0).then(|| now + chrono::Duration::days(i64::from(days)))
}

/// The schedule entry behind a snapshot, for the timeline.
pub(super) fn origin_entry(origin: &SnapshotOrigin) -> &str {
    match origin {
        SnapshotOrigin::Schedule { entry } => entry,
        _ => "",
    }
}
