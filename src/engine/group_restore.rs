//! RestoreGroup: put every member of a group back to one group snapshot,
//! keeping the present as one group pre-restore snapshot (the undo is a
//! group restore of that name).
//!
//! Phases, each recorded in one intent (durably) before it is taken:
//! stopping (members in reverse start order), cloning (a writable copy of
//! each member's target), exchanging (each volume swapped with its copy),
//! recording (each old state becomes the member's pre-restore snapshot),
//! starting (members in start order). A failure or a crash before the
//! exchanges rolls every member back; from the exchanges on, every member is
//! swapped (the exchanges left are made at the next start): no member is
//! ever left restored without the others.

use std::time::{Duration, Instant};

use super::error::{EngineError, EngineResult};
use super::names;
use super::snapshots::{ensure_ready, volume_of};
use super::Engine;
use crate::events::Event;
use crate::fault;
use crate::hooks::HookPoint;
use crate::store::{
    ContainerRecord, GroupRestoreIntent, GroupRestorePhase, Intent, IntentId, RestoreIntent, RestoreStep,
    SnapshotRecord,
};

/// What a group restore did.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRestoreOutcome {
    pub group: String,
    /// The group snapshot restored.
    pub snapshot: String,
    /// The group snapshot holding the state from just before (restore it to undo).
    pub pre_restore_snapshot: String,
    /// The members, in start order.
    pub members: Vec<String>,
    pub total: Duration,
    /// From the first stop to the last start.
    pub downtime: Duration,
}

impl Engine {
    /// Restores every member of `group` to its snapshot `reference` (a name
    /// or alias of a group snapshot of this group).
    pub fn restore_group(&self, group: &str, reference: &str, actor: &str) -> EngineResult<GroupRestoreOutcome> {
        let result = self.restore_group_inner(group, reference, actor);
        if let Err(error) = &result {
            if !matches!(error, EngineError::InvalidArgument { .. } | EngineError::NotFound { .. }) {
                if let Ok(found) = self.group(group) {
                    for member in &found.members {
                        self.emit(
                            Event::new("restore.failed", "failed")
                                .container(&member.id)
                                .snapshot(reference)
                                .actor(actor)
                                .detail(format!("group {group}: {error}")),
                        );
                    }
                    let _ = self.store.make_durable();
                }
            }
        }
        result
    }

    fn restore_group_inner(&self, group: &str, reference: &str, actor: &str) -> EngineResult<GroupRestoreOutcome> {
        let started = Instant::now();
        names::snapshot_name("snapshot", reference)?;
        let (_guards, members) = self.lock_group(group)?;
        let ids: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
        let targets = self.group_targets(group, &members, reference)?;
        let now = self.clock.now();
        let pre_restore_name = self.free_default_name("pre-restore", &members, now)?;
        let restore_id = format!("group-{group}-{}", now.timestamp_millis());
        let mut intent = GroupRestoreIntent {
            group: group.to_owned(),
            target: targets[0].name.clone(),
            pre_restore_name: pre_restore_name.clone(),
            phase: GroupRestorePhase::Stopping,
            members: members
                .iter()
                .zip(&targets)
                .map(|(member, target)| {
                    let volume = volume_of(member);
                    let staging = format!("{}{}", names::RESTORE_STAGING_PREFIX, now.timestamp_millis());
                    RestoreIntent {
                        container: member.id.clone(),
                        target: target.name.clone(),
                        pre_restore_name: pre_restore_name.clone(),
                        volume: member.volume.clone(),
                        staging: self.backend.location(&volume, &staging),
                        staging_uuid: String::new(),
                        aside: self.backend.location(&volume, &pre_restore_name),
                        cgroup: member.cgroup.clone(),
                        step: RestoreStep::Stopping,
                        request_id: String::new(),
                        generation: None,
                        restore_id: restore_id.clone(),
                        post_restore_ran: false,
                    }
                })
                .collect(),
        };
        // Everything that can be checked before anything is stopped.
        for ((member, target), part) in members.iter().zip(&targets).zip(&intent.members) {
            self.backend.check_restore(&volume_of(member), &target.location, &part.staging)?;
        }
        for (member, part) in members.iter().zip(&intent.members) {
            self.run_restore_hook(member, HookPoint::PreRestore, part, actor)?;
        }
        for member in &members {
            self.emit(
                Event::new("restore.started", "ok")
                    .container(&member.id)
                    .snapshot(&intent.target)
                    .actor(actor)
                    .detail(format!("group {group}; previous state will be kept as {pre_restore_name}")),
            );
        }
        let id = self.store.begin_intent(&Intent::GroupRestore(intent.clone()))?;
        fault::point("group-restore.stopping");

        let down = Instant::now();
        for member in members.iter().rev() {
            if let Err(error) = self.stop_container(member) {
                self.roll_back_group(id, &members, &intent)?;
                return Err(EngineError::FailedPrecondition {
                    reason: format!("group {group}: stopping member {}: {error}", member.id),
                });
            }
        }
        fault::point("group-restore.stopped");

        self.advance_group(id, &mut intent, GroupRestorePhase::Cloning)?;
        for (i, target) in targets.iter().enumerate() {
            let staged = self.backend.create_snapshot(&target.location, &intent.members[i].staging, false);
            match staged {
                Ok(staged) => intent.members[i].staging_uuid = staged.uuid,
                Err(error) => {
                    self.roll_back_group(id, &members, &intent)?;
                    return Err(EngineError::from(error));
                }
            }
            self.store.advance_intent(id, &Intent::GroupRestore(intent.clone()))?;
        }
        fault::point("group-restore.cloned");

        self.advance_group(id, &mut intent, GroupRestorePhase::Exchanging)?;
        for (i, part) in intent.members.iter().enumerate() {
            if let Err(error) = self.backend.exchange(&part.staging, &part.volume.to_string_lossy()) {
                // Swap back those already swapped, then roll back.
                for done in &intent.members[..i] {
                    self.backend.exchange(&done.staging, &done.volume.to_string_lossy())?;
                }
                self.roll_back_group(id, &members, &intent)?;
                return Err(EngineError::from(error));
            }
            fault::point("group-restore.exchanged-one");
        }

        let downtime = self.finish_group(id, &mut intent, &members, actor)? - down;
        for (member, target) in members.iter().zip(&targets) {
            self.emit(
                Event::new("restore.finished", "ok")
                    .container(&member.id)
                    .snapshot(&target.name)
                    .actor(actor)
                    .duration(started.elapsed())
                    .detail(format!("group {group}; previous state kept as {pre_restore_name}")),
            );
        }
        self.store.make_durable()?;
        self.expiry_changed.notify_one();
        self.sizes_stale.notify_one();
        tracing::info!(%group, snapshot = %intent.target, pre_restore = %pre_restore_name, "group restored");
        Ok(GroupRestoreOutcome {
            group: group.to_owned(),
            snapshot: intent.target,
            pre_restore_snapshot: pre_restore_name,
            members: ids,
            total: started.elapsed(),
            downtime,
        })
    }

    /// Each member's snapshot `reference`: ready, and all one group
    /// snapshot of `group` (the same name in every member).
    fn group_targets(
        &self,
        group: &str,
        members: &[ContainerRecord],
        reference: &str,
    ) -> EngineResult<Vec<SnapshotRecord>> {
        let mut targets = Vec::with_capacity(members.len());
        for member in members {
            let target = self.find_snapshot(member, reference)?;
            ensure_ready(&target, "it cannot be restored")?;
            if target.group.as_deref() != Some(group) {
                return Err(EngineError::FailedPrecondition {
                    reason: format!(
                        "snapshot {} of member {} was not taken with group {group} (rollpoint group snapshot {group})",
                        target.name, member.id
                    ),
                });
            }
            targets.push(target);
        }
        if targets.iter().any(|t| t.name != targets[0].name) {
            return Err(EngineError::FailedPrecondition {
                reason: format!("{reference:?} names different snapshots in the members of group {group}"),
            });
        }
        Ok(targets)
    }

    /// From the exchanges on: every member swapped (those left now), its
    /// old state recorded, every member started in order; the intent ends.
    fn finish_group(
        &self,
        id: IntentId,
        intent: &mut GroupRestoreIntent,
        members: &[ContainerRecord],
        actor: &str,
    ) -> EngineResult<Instant> {
        if intent.phase == GroupRestorePhase::Exchanging {
            for part in &intent.members {
                if !self.has_swapped(part)? {
                    self.backend.exchange(&part.staging, &part.volume.to_string_lossy())?;
                }
            }
        }
        if intent.phase != GroupRestorePhase::Starting {
            self.advance_group(id, intent, GroupRestorePhase::Recording)?;
            for (member, part) in members.iter().zip(&intent.members) {
                self.record_restore(member, part, Some(&intent.group))?;
            }
            fault::point("group-restore.recorded");
            self.advance_group(id, intent, GroupRestorePhase::Starting)?;
        }
        let mut failed = Vec::new();
        let mut started = Vec::with_capacity(members.len());
        for member in members {
            // Killed after some starts ran, recovery starts only the rest.
            let start = self.start_unless_running(member, "as a restored group member");
            if let Err(error) = &start {
                failed.push(format!("{}: {error}", member.id));
            }
            started.push(start.is_ok());
        }
        let all_started = Instant::now();
        // Each member's post_restore hook once, recorded in the intent as it
        // runs (see `post_restore_hook`).
        for (i, member) in members.iter().enumerate() {
            if started[i] && !intent.members[i].post_restore_ran {
                self.post_restore_hook(member, &intent.members[i], actor)?;
                intent.members[i].post_restore_ran = true;
                self.store.advance_intent(id, &Intent::GroupRestore(intent.clone()))?;
            }
        }
        self.store.end_intent(id)?;
        self.store.make_durable()?;
        if failed.is_empty() {
            Ok(all_started)
        } else {
            Err(EngineError::FailedPrecondition {
                reason: format!(
                    "group {} was restored to {} (previous state in {}) but members did not start: {}",
                    intent.group,
                    intent.target,
                    intent.pre_restore_name,
                    failed.join("; ")
                ),
            })
        }
    }

    /// Before any exchange: every member's copy goes, every member stopped
    /// is started again; the intent ends.
    fn roll_back_group(
        &self,
        id: IntentId,
        members: &[ContainerRecord],
        intent: &GroupRestoreIntent,
    ) -> EngineResult<()> {
        for (member, part) in members.iter().zip(&intent.members) {
            self.undo_unswapped(member, part)?;
        }
        self.store.end_intent(id)?;
        self.store.make_durable()?;
        Ok(())
    }

    fn advance_group(
        &self,
        id: IntentId,
        intent: &mut GroupRestoreIntent,
        phase: GroupRestorePhase,
    ) -> EngineResult<()> {
        intent.phase = phase;
        Ok(self.store.advance_intent(id, &Intent::GroupRestore(intent.clone()))?)
    }

    /// Settles a group restore found at start-up: rolled back before its
    /// exchanges (false), finished from them on (true).
    pub(super) fn recover_group_restore(&self, id: IntentId, mut intent: GroupRestoreIntent) -> EngineResult<bool> {
        let mut members = Vec::with_capacity(intent.members.len());
        for part in &intent.members {
            match self.store.container(&part.container)? {
                Some(member) => members.push(member),
                None => {
                    // Unregistered since: nothing to settle for the group.
                    self.store.end_intent(id)?;
                    return Ok(false);
                }
            }
        }
        match intent.phase {
            GroupRestorePhase::Stopping | GroupRestorePhase::Cloning => {
                self.roll_back_group(id, &members, &intent)?;
                Ok(false)
            }
            GroupRestorePhase::Exchanging | GroupRestorePhase::Recording | GroupRestorePhase::Starting => {
                if let Err(error) = self.finish_group(id, &mut intent, &members, "daemon") {
                    match error {
                        // The members that did not start are logged; the
                        // restore itself is finished.
                        EngineError::FailedPrecondition { .. } => {}
                        other => return Err(other),
                    }
                }
                Ok(true)
            }
        }
    }
}
