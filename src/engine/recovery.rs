//! Start-up recovery, run before the daemon reports SERVING.
//!
//! 1. Intents left by a crash are finished or rolled back: a container the
//!    daemon was freezing is thawed; a half-made snapshot is removed (it was
//!    never confirmed to anyone); a half-done delete is finished.
//! 2. The store is reconciled with the filesystem: a record whose volume is
//!    gone is marked LOST; a subvolume in a container's snapshot folder that
//!    no record knows is reported and left where it is (the rule: the daemon
//!    never deletes what it cannot account for; an operator may adopt it by
//!    hand or delete it).

use super::error::EngineResult;
use super::Engine;
use crate::freezer::{FreezeState, FreezerError};
use crate::store::{Intent, SnapshotState};

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
}

impl Engine {
    pub fn recover(&self) -> EngineResult<RecoveryReport> {
        let mut report = RecoveryReport::default();
        for (id, intent) in self.store.intents()? {
            match intent {
                Intent::Create { container, name, location, cgroup, freezes } => {
                    if freezes {
                        match self.freezer.state(&cgroup) {
                            Ok(FreezeState::Thawed) | Err(FreezerError::NotFound { .. }) => {}
                            Ok(_) => {
                                self.freezer.thaw(&cgroup)?;
                                report.thawed.push(cgroup.display().to_string());
                            }
                            Err(error) => return Err(error.into()),
                        }
                    }
                    let recorded =
                        self.store.snapshot(&container, &name)?.is_some_and(|s| s.state == SnapshotState::Ready);
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
                    continue;
                }
            }
            self.store.end_intent(id)?;
        }
        self.reconcile(&mut report)?;
        self.store.make_durable()?;
        log_report(&report);
        Ok(report)
    }

    fn reconcile(&self, report: &mut RecoveryReport) -> EngineResult<()> {
        for container in self.store.containers()? {
            let mut records = self.store.snapshots_of(&container.id)?;
            for record in &mut records {
                if record.state != SnapshotState::Lost && !self.backend.snapshot_exists(&record.location)? {
                    record.state = SnapshotState::Lost;
                    self.store.put_snapshots(&[record])?;
                    report.lost.push(record.resource_name());
                }
            }
            let volume = super::snapshots::volume_of(&container);
            for location in self.backend.list_snapshots(&volume)? {
                if !records.iter().any(|r| r.location == location) {
                    report.unknown.push(location);
                }
            }
        }
        Ok(())
    }
}

fn log_report(report: &RecoveryReport) {
    for cgroup in &report.thawed {
        tracing::warn!(cgroup = %cgroup, "recovery: thawed a cgroup the daemon had frozen before it stopped");
    }
    for snapshot in &report.rolled_back {
        tracing::warn!(snapshot = %snapshot, "recovery: removed a snapshot that was never confirmed");
    }
    for snapshot in &report.completed {
        tracing::info!(snapshot = %snapshot, "recovery: kept a snapshot recorded just before the stop");
    }
    for snapshot in &report.deletes_finished {
        tracing::info!(snapshot = %snapshot, "recovery: finished a delete");
    }
    for restore in &report.restores_finished {
        tracing::warn!(restore = %restore, "recovery: finished a restore that had swapped");
    }
    for restore in &report.restores_rolled_back {
        tracing::warn!(restore = %restore, "recovery: rolled back a restore that had not swapped");
    }
    for snapshot in &report.lost {
        tracing::error!(snapshot = %snapshot, "recovery: recorded snapshot has no volume; marked LOST");
    }
    for location in &report.unknown {
        tracing::warn!(location = %location, "recovery: snapshot volume without a record; left in place");
    }
}
