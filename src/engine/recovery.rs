//! Start-up recovery, run before the daemon reports SERVING.
//!
//! 0. The store is checked against the records beside the data
//!    (`sidecars`): older than the disks, the daemon refuses to start.
//! 1. Intents left by a crash are finished or rolled back: a container the
//!    daemon was freezing is thawed; a half-made snapshot is removed (it was
//!    never confirmed to anyone); a half-done delete is finished.
//! 2. The store is reconciled with the filesystem: a record whose volume is
//!    gone is marked LOST; a subvolume in a container's snapshot folder that
//!    no record knows is reported and left where it is (the rule: the daemon
//!    never deletes what it cannot account for; an operator may adopt it by
//!    hand or delete it). The records beside the data are brought in step
//!    with the store.

use super::error::{EngineError, EngineResult};
use super::Engine;
use crate::events::Event;
use crate::freezer::{FreezeState, FreezerError};
use crate::store::{ContainerRecord, Intent, SnapshotState};

/// What recovery did, for the log and the events.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Cgroups an intent said the daemon froze, thawed now.
    pub thawed: Vec<String>,
    /// Snapshots being made at the crash, removed.
    pub rolled_back: Vec<String>,
    /// Snapshots made and recorded just before the crash, kept.
    pub completed: Vec<String>,
    /// Deletes finished.
    pub deletes_finished: Vec<String>,
    /// Restores past their swap at the crash, finished.
    pub restores_finished: Vec<String>,
    /// Restores caught before their swap, rolled back.
    pub restores_rolled_back: Vec<String>,
    /// Records whose volume is gone, now marked LOST.
    pub lost: Vec<String>,
    /// Snapshot volumes no record knows, left in place.
    pub unknown: Vec<String>,
    /// `container: error` of intents recovery could not settle: kept for the
    /// next start, the container refuses operations until then.
    pub unsettled: Vec<String>,
    /// `container: error` of containers whose volumes could not be checked.
    pub unchecked: Vec<String>,
}

impl Engine {
    /// Runs recovery. An intent that cannot be settled (the backend or the
    /// freezer fails) does not stop the daemon: it stays recorded, to be
    /// tried again at the next start, and its container refuses operations
    /// until then (reported in `unsettled`, logged, and an event). Only a
    /// failing store is fatal.
    pub fn recover(&self) -> EngineResult<RecoveryReport> {
        self.check_store_against_disks()?;
        let mut report = RecoveryReport::default();
        for (id, intent) in self.store.intents()? {
            let containers: Vec<String> = intent.containers().into_iter().map(str::to_owned).collect();
            match self.recover_intent(id, intent, &mut report) {
                Ok(()) => {}
                Err(EngineError::Store(error)) => return Err(EngineError::Store(error)),
                Err(error) => {
                    for container in &containers {
                        tracing::error!(container = %container, %error, "recovery: could not settle an unfinished operation");
                        self.emit(Event::new("recovery", "failed").container(container).actor("daemon").detail(
                            format!(
                                "could not settle an unfinished operation; the container refuses changes until a \
                                 restart settles it: {error}"
                            ),
                        ));
                        self.locks.hold_unsettled(container, error.to_string());
                        report.unsettled.push(format!("{container}: {error}"));
                    }
                }
            }
        }
        *self.unrecorded.lock() = Vec::new();
        self.reconcile(&mut report)?;
        self.record_report(&report);
        self.store.make_durable()?;
        Ok(report)
    }

    /// Settles one intent and ends it (a restore ends its own).
    fn recover_intent(&self, id: u64, intent: Intent, report: &mut RecoveryReport) -> EngineResult<()> {
        match intent {
            Intent::Create { container, name, location, cgroup, freezes } => {
                self.thaw_what_it_froze(&cgroup, freezes, report)?;
                let recorded = self.store.snapshot(&container, &name)?.is_some_and(|s| s.state == SnapshotState::Ready);
                if recorded {
                    report.completed.push(format!("{container}/{name}"));
                } else {
                    self.backend.delete_snapshot(&location)?;
                    report.rolled_back.push(format!("{container}/{name}"));
                }
            }
            Intent::Delete { container, name, location } => {
                self.backend.delete_snapshot(&location)?;
                self.store.remove_snapshot(&container, &name)?;
                report.deletes_finished.push(format!("{container}/{name}"));
            }
            Intent::Restore(restore) => {
                let what = format!("{}/{}", restore.container, restore.target);
                if self.recover_restore(id, &restore)? {
                    report.restores_finished.push(what);
                } else {
                    report.restores_rolled_back.push(what);
                }
                return Ok(());
            }
            Intent::GroupCreate(create) => {
                for member in &create.members {
                    self.thaw_what_it_froze(&member.cgroup, member.freezes, report)?;
                }
                let mut recorded = Vec::with_capacity(create.members.len());
                for member in &create.members {
                    let record = self.store.snapshot(&member.container, &create.name)?;
                    recorded.push(record.is_some_and(|s| s.state == SnapshotState::Ready));
                }
                let every = recorded.iter().all(|r| *r);
                // All or nothing: a group snapshot some members lack is undone.
                for (member, recorded) in create.members.iter().zip(recorded) {
                    let what = format!("{}/{}", member.container, create.name);
                    if every {
                        report.completed.push(what);
                        continue;
                    }
                    if recorded {
                        self.store.remove_snapshot(&member.container, &create.name)?;
                        if let Some(container) = self.store.container(&member.container)? {
                            self.mirror(&container, super::sidecars::Mirror::SnapshotGone(&create.name))?;
                        }
                    }
                    self.backend.delete_snapshot(&member.location)?;
                    report.rolled_back.push(what);
                }
            }
            Intent::GroupRestore(restore) => {
                let what = format!("group {}/{}", restore.group, restore.target);
                if self.recover_group_restore(id, restore)? {
                    report.restores_finished.push(what);
                } else {
                    report.restores_rolled_back.push(what);
                }
                return Ok(());
            }
        }
        self.store.end_intent(id)?;
        Ok(())
    }

    /// Thaws `cgroup` if the daemon was freezing it (`freezes`) and it is
    /// not thawed.
    fn thaw_what_it_froze(
        &self,
        cgroup: &std::path::Path,
        freezes: bool,
        report: &mut RecoveryReport,
    ) -> EngineResult<()> {
        if !freezes {
            return Ok(());
        }
        match self.freezer.state(cgroup) {
            Ok(FreezeState::Thawed) | Err(FreezerError::NotFound { .. }) => Ok(()),
            Ok(_) => {
                self.freezer.thaw(cgroup)?;
                report.thawed.push(cgroup.display().to_string());
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Checks every container's records against its volumes. A container
    /// whose volumes cannot be read (a VG that is not there yet...) is
    /// reported and skipped, not fatal.
    fn reconcile(&self, report: &mut RecoveryReport) -> EngineResult<()> {
        for container in self.store.containers()? {
            match self.reconcile_container(&container, report) {
                Ok(()) => {}
                Err(EngineError::Store(error)) => return Err(EngineError::Store(error)),
                Err(error) => {
                    tracing::warn!(container = %container.id, %error, "recovery: could not check the snapshots' volumes");
                    report.unchecked.push(format!("{}: {error}", container.id));
                }
            }
        }
        Ok(())
    }

    fn reconcile_container(&self, container: &ContainerRecord, report: &mut RecoveryReport) -> EngineResult<()> {
        let mut records = self.store.snapshots_of(&container.id)?;
        for record in &mut records {
            if record.state != SnapshotState::Lost && !self.backend.snapshot_exists(&record.location)? {
                record.state = SnapshotState::Lost;
                self.store.put_snapshots(&[record])?;
                report.lost.push(record.resource_name());
            }
        }
        let volume = super::snapshots::volume_of(container);
        for location in self.backend.list_snapshots(&volume)? {
            let name = location.rsplit('/').next().unwrap_or_default();
            if super::names::is_disposable_volume(name) {
                self.backend.delete_snapshot(&location)?;
            } else if !records.iter().any(|r| r.location == location) {
                self.unrecorded.lock().push((container.id.clone(), location.clone()));
                report.unknown.push(location);
            }
        }
        self.sync_sidecars(container)
    }
}

impl Engine {
    /// Snapshot volumes found on disk at start that no record knows (never
    /// deleted: `rollpoint recover` can bring their records back), less
    /// those recorded or removed since.
    pub fn unrecorded_volumes(&self) -> Vec<String> {
        let mut found = self.unrecorded.lock();
        found.retain(|(container, location)| {
            let recorded = self
                .store
                .snapshots_of(container)
                .is_ok_and(|records| records.iter().any(|record| &record.location == location));
            !recorded && self.backend.snapshot_exists(location).unwrap_or(true)
        });
        found.iter().map(|(_, location)| location.clone()).collect()
    }

    /// Logs each recovery action and records it as a `recovery` event.
    fn record_report(&self, report: &RecoveryReport) {
        let groups: [(&Vec<String>, &str, &str); 9] = [
            (&report.thawed, "ok", "thawed a cgroup the daemon had frozen before it stopped"),
            (&report.rolled_back, "ok", "removed a snapshot that was never confirmed"),
            (&report.completed, "ok", "kept a snapshot recorded just before the stop"),
            (&report.deletes_finished, "ok", "finished a delete"),
            (&report.restores_finished, "ok", "finished a restore that had swapped"),
            (&report.restores_rolled_back, "ok", "rolled back a restore that had not swapped"),
            (&report.lost, "failed", "recorded snapshot has no volume; marked LOST"),
            (&report.unknown, "failed", "snapshot volume without a record; left in place"),
            (&report.unchecked, "failed", "could not check a container's snapshot volumes"),
        ];
        for (items, outcome, what) in groups {
            for item in items {
                tracing::warn!(subject = %item, "recovery: {what}");
                self.emit(Event::new("recovery", outcome).actor("daemon").detail(format!("{what}: {item}")));
            }
        }
    }
}
