//! Applying retention: each container's snapshots and its pre-restore
//! snapshots, each under their own policy (the container's, or the
//! daemon's default), with holds, explicit expiry and the minimum count
//! (`retention`). One failed delete never stops a pass: it is an event, and
//! it is tried again after a pause.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::error::{EngineError, EngineResult};
use super::retention::{self, Candidate, Decision, Drop, Keep, Policy, Verdict};
use super::Engine;
use crate::events::Event;
use crate::store::{ContainerRecord, SnapshotOrigin, SnapshotRecord, SnapshotState};

/// How long a snapshot whose delete failed (or that was being read) is left
/// alone before the next try.
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// One snapshot's fate in a pass.
#[derive(Debug, Clone)]
pub struct Pruned {
    pub container: String,
    pub decision: Decision,
    /// What this pass deleted (never in a dry run).
    pub deleted: Option<SnapshotRecord>,
    /// Why a delete it called for failed.
    pub error: Option<String>,
}

impl Engine {
    /// The policies for a container's snapshots and its pre-restore ones.
    pub fn policies(&self, container: &ContainerRecord) -> (Policy, Policy) {
        (
            container.retention.snapshots.unwrap_or(self.config.retention),
            container.retention.pre_restore.unwrap_or(self.config.pre_restore_retention),
        )
    }

    /// What retention decides for the ready snapshots of `container` at
    /// `now`: both classes, newest first. A part of a group snapshot goes
    /// only when every member still holding its part would let it go too
    /// (each member's pass then deletes its own part): a group snapshot is
    /// kept or pruned as a unit.
    fn plan_of(&self, container: &ContainerRecord, snapshots: &[SnapshotRecord], now: DateTime<Utc>) -> Vec<Decision> {
        let mut decisions = self.own_plan(container, snapshots, now);
        for decision in &mut decisions {
            if !matches!(decision.verdict, Verdict::Drop(Drop::NotKept | Drop::Expired { .. })) {
                continue;
            }
            let Some(group) = snapshots.iter().find(|s| s.name == decision.name).and_then(|s| s.group.clone()) else {
                continue;
            };
            if let Some(member) = self.member_keeping(container, &group, &decision.name, now) {
                decision.verdict = Verdict::Keep(vec![Keep::WithGroup { group, member }]);
            }
        }
        decisions
    }

    /// Another member of `group` whose own policy keeps its part `name`.
    fn member_keeping(
        &self,
        container: &ContainerRecord,
        group: &str,
        name: &str,
        now: DateTime<Utc>,
    ) -> Option<String> {
        let members = self.store.containers().ok()?;
        members
            .iter()
            .filter(|member| member.id != container.id && member.group.as_ref().is_some_and(|g| g.name == group))
            .find(|member| {
                let Ok(theirs) = self.store.snapshots_of(&member.id) else { return false };
                let holds_part = theirs.iter().any(|s| s.name == name && s.group.as_deref() == Some(group));
                holds_part && self.own_plan(member, &theirs, now).iter().any(|d| d.name == name && d.keeps())
            })
            .map(|member| member.id.clone())
    }

    /// [`Engine::plan_of`] for the container alone.
    fn own_plan(&self, container: &ContainerRecord, snapshots: &[SnapshotRecord], now: DateTime<Utc>) -> Vec<Decision> {
        let (policy, pre_restore_policy) = self.policies(container);
        let mut decisions = retention::plan(&policy, &candidates(snapshots, false), now);
        decisions.extend(retention::plan(&pre_restore_policy, &candidates(snapshots, true), now));
        decisions.extend(snapshots.iter().filter(|s| s.state == SnapshotState::Deleting).map(|s| Decision {
            name: s.name.clone(),
            create_time: s.create_time,
            verdict: Verdict::Drop(Drop::Unfinished),
        }));
        decisions.sort_by(|a, b| (b.create_time, &b.name).cmp(&(a.create_time, &a.name)));
        decisions
    }

    /// Applies retention to one container (`Some`) or all; with `dry_run`,
    /// only says what it would do. In a pass over all, containers busy with
    /// another operation are skipped (the next pass has them).
    pub fn prune(&self, container: Option<&str>, dry_run: bool, actor: &str) -> EngineResult<Vec<Pruned>> {
        let container_given = container.is_some();
        let containers = match container {
            Some(id) => vec![self.container_for("container", id)?],
            None => self.store.containers()?,
        };
        let mut all = Vec::new();
        for container in containers {
            let guard = match (dry_run, container_given) {
                (true, _) => None,
                // Asked for by name: wait for it as any call does.
                (false, true) => Some(self.locks.lock(&container.id, self.config.lock_wait)?),
                (false, false) => match self.locks.lock(&container.id, Duration::from_millis(100)) {
                    Ok(guard) => Some(guard),
                    Err(_) => continue,
                },
            };
            all.extend(self.prune_container(&container, dry_run, actor)?);
            drop(guard);
        }
        Ok(all)
    }

    /// One container's pass; its lock is held unless `dry_run`.
    fn prune_container(&self, container: &ContainerRecord, dry_run: bool, actor: &str) -> EngineResult<Vec<Pruned>> {
        let snapshots = self.store.snapshots_of(&container.id)?;
        let decisions = self.plan_of(container, &snapshots, self.clock.now());
        let mut pruned = Vec::with_capacity(decisions.len());
        for decision in decisions {
            let mut outcome = Pruned { container: container.id.clone(), decision, deleted: None, error: None };
            if let (Verdict::Drop(why), false) = (&outcome.decision.verdict, dry_run) {
                let Some(snapshot) = snapshots.iter().find(|s| s.name == outcome.decision.name) else { continue };
                if self.backing_off(&snapshot.location) {
                    pruned.push(outcome);
                    continue;
                }
                let event = match why {
                    Drop::Expired { .. } => Event::new("snapshot.expired", "ok"),
                    Drop::NotKept => Event::new("snapshot.pruned", "ok")
                        .detail(format!("{why} of {}", self.policy_text(container, snapshot))),
                    Drop::Unfinished => Event::new("snapshot.deleted", "ok").detail(why.to_string()),
                };
                match self.delete_locked(container, snapshot.clone(), event.actor(actor)) {
                    Ok(record) => outcome.deleted = Some(record),
                    Err(error) => {
                        self.back_off(&snapshot.location);
                        tracing::warn!(container = %container.id, snapshot = %snapshot.name, %error, "retention could not delete");
                        self.emit(
                            Event::new("snapshot.prune_failed", "failed")
                                .container(&container.id)
                                .snapshot(&snapshot.name)
                                .actor(actor)
                                .detail(format!("{error}; tried again in {} s", RETRY_AFTER.as_secs())),
                        );
                        self.store.make_durable()?;
                        outcome.error = Some(error.to_string());
                    }
                }
            }
            pruned.push(outcome);
        }
        Ok(pruned)
    }

    fn policy_text(&self, container: &ContainerRecord, snapshot: &SnapshotRecord) -> String {
        let (policy, pre_restore) = self.policies(container);
        match snapshot.origin {
            SnapshotOrigin::PreRestore => format!("pre-restore policy {pre_restore}"),
            _ => format!("policy {policy}"),
        }
    }

    fn backing_off(&self, location: &str) -> bool {
        let mut failures = self.prune_failures.lock();
        failures.retain(|_, at| at.elapsed() < RETRY_AFTER);
        failures.contains_key(location)
    }

    fn back_off(&self, location: &str) {
        self.prune_failures.lock().insert(location.to_owned(), Instant::now());
    }

    /// When retention has something to do next: now when a pass would
    /// delete something, else the earliest expiry still to come.
    pub fn next_expiry(&self) -> EngineResult<Option<DateTime<Utc>>> {
        let now = self.clock.now();
        let mut next: Option<DateTime<Utc>> = None;
        for container in self.store.containers()? {
            let snapshots = self.store.snapshots_of(&container.id)?;
            for decision in self.plan_of(&container, &snapshots, now) {
                let Some(snapshot) = snapshots.iter().find(|s| s.name == decision.name) else { continue };
                let due = match decision.verdict {
                    Verdict::Drop(_) if self.backing_off(&snapshot.location) => {
                        self.prune_failures.lock().get(&snapshot.location).map(|at| {
                            now + chrono::Duration::from_std(RETRY_AFTER.saturating_sub(at.elapsed()))
                                .unwrap_or_default()
                        })
                    }
                    Verdict::Drop(_) => Some(now),
                    Verdict::Keep(_) => snapshot.expire_time.filter(|t| *t > now && snapshot.hold.is_none()),
                };
                next = match (next, due) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        Ok(next)
    }

    /// Runs a retention pass over every container (the daemon's timer);
    /// the snapshots it deleted.
    pub fn expire_due(&self) -> EngineResult<Vec<SnapshotRecord>> {
        Ok(self.prune(None, false, "daemon")?.into_iter().filter_map(|p| p.deleted).collect())
    }
}

/// The ready snapshots of one class (pre-restore ones, or the others), as
/// retention sees them.
pub(super) fn candidates(snapshots: &[SnapshotRecord], pre_restore: bool) -> Vec<Candidate> {
    snapshots
        .iter()
        .filter(|s| s.state == SnapshotState::Ready && (s.origin == SnapshotOrigin::PreRestore) == pre_restore)
        .map(|s| Candidate {
            name: s.name.clone(),
            create_time: s.create_time,
            expire_time: s.expire_time,
            held: s.hold.is_some(),
        })
        .collect()
}

/// FAILED_PRECONDITION for deleting a held snapshot.
pub(super) fn refuse_held(snapshot: &SnapshotRecord) -> EngineResult<()> {
    match &snapshot.hold {
        Some(hold) => Err(EngineError::FailedPrecondition {
            reason: format!(
                "{} is held ({}, by {}); release it first (rollpoint snapshot release)",
                snapshot.resource_name(),
                hold.reason,
                hold.actor
            ),
        }),
        None => Ok(()),
    }
}
