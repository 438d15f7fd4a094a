//! The records beside the data (`store::sidecar`), kept in step with the
//! store, and the start-up check that the store is not older than them.
//!
//! Each change is counted (the store's generation) and made durable before
//! the sidecar that mirrors it is written, so a sidecar never carries a
//! generation the store has not reached; a crash between the two leaves the
//! sidecar behind, and start-up recovery writes it again from the store.
//! A sidecar carrying a higher generation than the store, or a container
//! folder the store does not know, means the store lost changes: the
//! daemon refuses to start and names `rollpoint recover`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::error::{EngineError, EngineResult};
use super::snapshots::volume_of;
use super::Engine;
use crate::events::Event;
use crate::store::sidecar::{self, ContainerSidecar, SnapshotSidecar, CONTAINER_SIDECAR};
use crate::store::{ContainerRecord, SnapshotRecord, SnapshotState};

/// A store change to mirror beside the data.
pub(super) enum Mirror<'a> {
    /// The container was registered.
    Container(&'a ContainerRecord),
    /// The container was forgotten (its snapshots' sidecars stay with them).
    ContainerGone,
    /// Snapshot records were written.
    Snapshots(&'a [&'a SnapshotRecord]),
    /// A snapshot record was removed.
    SnapshotGone(&'a str),
}

impl Engine {
    /// The folder holding the sidecars of a container, where its backend
    /// keeps them.
    fn sidecar_folder(&self, container: &ContainerRecord) -> Option<PathBuf> {
        self.backend.metadata_dir(&volume_of(container))
    }

    /// After a store change of `container`: counts it, makes the store
    /// durable, then writes what mirrors it. A sidecar that cannot be
    /// written is logged and recorded as an event, not a failure of the
    /// change (the store holds it; start-up recovery writes it again).
    pub(super) fn mirror(&self, container: &ContainerRecord, change: Mirror<'_>) -> EngineResult<()> {
        let Some(folder) = self.sidecar_folder(container) else { return Ok(()) };
        let generation = self.store.next_generation()?;
        self.store.make_durable()?;
        crate::fault::point("mirror.durable");
        let written = match change {
            Mirror::Container(record) => {
                sidecar::write(&folder, CONTAINER_SIDECAR, &ContainerSidecar::of(record, generation))
            }
            Mirror::ContainerGone => sidecar::remove(&folder, CONTAINER_SIDECAR),
            Mirror::Snapshots(records) => records.iter().try_for_each(|record| {
                sidecar::write(
                    &folder,
                    &sidecar::snapshot_sidecar_name(&record.name),
                    &SnapshotSidecar::of(record, generation),
                )
            }),
            Mirror::SnapshotGone(name) => sidecar::remove(&folder, &sidecar::snapshot_sidecar_name(name)),
        };
        if let Err(error) = written {
            tracing::error!(container = %container.id, %error, "could not write the record beside the data");
            self.emit(
                Event::new("sidecar.failed", "failed")
                    .container(&container.id)
                    .actor("daemon")
                    .detail(format!("the record beside the data is behind the store until the next start: {error}")),
            );
        }
        Ok(())
    }

    /// Mirrors snapshot records of the container `container_id`.
    pub(super) fn mirror_snapshots(&self, container_id: &str, records: &[&SnapshotRecord]) -> EngineResult<()> {
        match self.store.container(container_id)? {
            Some(container) => self.mirror(&container, Mirror::Snapshots(records)),
            None => Ok(()),
        }
    }

    /// Refuses to go on with a store older than the disks: a sidecar with a
    /// higher generation, or a container folder (with its sidecar) the
    /// store does not know, in the configured filesystems or those of the
    /// store's containers. Runs before anything is written from the store.
    pub(super) fn check_store_against_disks(&self) -> EngineResult<()> {
        let generation = self.store.generation()?;
        let containers = self.store.containers()?;
        let known: BTreeSet<&str> = containers.iter().map(|c| c.id.as_str()).collect();
        let mut folders: BTreeSet<PathBuf> = BTreeSet::new();
        let mut found = Vec::new();
        let lvm_roots = self.backend.metadata_roots(&self.config.volume_groups);
        for root in self.config.filesystems.iter().chain(&lvm_roots) {
            for folder in sidecar::scan_root(root)? {
                if folders.insert(folder.folder.clone()) {
                    found.push(folder);
                }
            }
        }
        for container in &containers {
            if let Some(folder) = self.sidecar_folder(container) {
                if folders.insert(folder.clone()) {
                    found.push(sidecar::read_folder(&folder)?);
                }
            }
        }
        let mut problems = Vec::new();
        for folder in &found {
            let highest = folder.highest_generation();
            if highest > generation {
                problems.push(format!(
                    "{} holds records of generation {highest}, the store is at {generation}",
                    folder.folder.display()
                ));
            } else if let Some(container) = folder.container.as_ref().filter(|c| !known.contains(c.id.as_str())) {
                problems.push(format!(
                    "{} describes container {:?}, which the store does not know",
                    folder.folder.display(),
                    container.id
                ));
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(EngineError::FailedPrecondition { reason: store_behind_message(self.store.dir(), &problems) })
    }

    /// Writes every sidecar of `container` that is missing or differs from
    /// its record, and removes those of snapshots gone from both the store
    /// and the disk (a delete or a rolled-back create caught by a crash).
    /// Sidecars of snapshots still on disk are left, recorded or not.
    pub(super) fn sync_sidecars(&self, container: &ContainerRecord) -> EngineResult<()> {
        let Some(folder) = self.sidecar_folder(container) else { return Ok(()) };
        let on_disk = sidecar::read_folder(&folder)?;
        let generation = self.store.generation()?;
        let wanted = ContainerSidecar::of(container, generation);
        if !on_disk.container.as_ref().is_some_and(|c| c.same_as(&wanted)) {
            sidecar::write(&folder, CONTAINER_SIDECAR, &wanted)?;
        }
        let records = self.store.snapshots_of(&container.id)?;
        for record in records.iter().filter(|r| r.state == SnapshotState::Ready) {
            let wanted = SnapshotSidecar::of(record, generation);
            if !on_disk.snapshots.iter().any(|s| s.same_as(&wanted)) {
                sidecar::write(&folder, &sidecar::snapshot_sidecar_name(&record.name), &wanted)?;
            }
        }
        let volume = volume_of(container);
        for stale in &on_disk.snapshots {
            let recorded = records.iter().any(|r| r.name == stale.name);
            if !recorded && !self.backend.snapshot_exists(&self.backend.location(&volume, &stale.name))? {
                sidecar::remove(&folder, &sidecar::snapshot_sidecar_name(&stale.name))?;
            }
        }
        Ok(())
    }
}

/// Why the daemon will not serve, and what to do.
fn store_behind_message(store: &Path, problems: &[String]) -> String {
    format!(
        "the store in {} is older than the disks ({}): it was damaged, lost or put back from an old copy, and \
         serving from it would hide snapshots. Stop rollpointd, run `rollpoint recover` to see what it would bring \
         back, then `rollpoint recover --apply`, and start rollpointd again",
        store.display(),
        problems.join("; ")
    )
}
