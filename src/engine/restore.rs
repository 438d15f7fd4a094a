//! RestoreSnapshot: put a container back to a snapshot's state, keeping the
//! present as a pre-restore snapshot, so that the restore can be undone.
//!
//! Before anything: the volume's dirty data is written back while the
//! container still runs, so the downtime does not pay for it. Then each
//! step is recorded as an intent (durably) before it is taken:
//! 1. stopping: the container's lifecycle stops it; what is left in its
//!    cgroup is killed (`cgroup.kill`), so nothing writes the old state;
//! 2. cloning: a writable snapshot of the target is made next to the others
//!    (`staging`);
//! 3. exchanging: staging and the volume swap places in one atomic rename
//!    (RENAME_EXCHANGE): the volume path always holds the old state or the
//!    new one, never nothing; the swap is committed (metadata only: the
//!    filesystem's dirty file data stays in memory) and the new volume's
//!    generation read;
//! 4. starting: the lifecycle starts the container again; that ends the
//!    downtime;
//! 5. recording: the old state (now at `staging`) moves to its pre-restore
//!    name, becomes read-only, is written back and recorded.
//!
//! A daemon killed at any step finishes (from 3 on, when the exchange is
//! seen to have happened) or rolls back (before it) at its next start. The
//! stop and start commands run once per restore: recovery never runs a
//! stop, and starts the container only if its cgroup is empty (killed
//! before the stop ran, the container still runs; killed after the start
//! ran, it runs again already), so a start is never made twice.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::error::{EngineError, EngineResult};
use super::names;
use super::sidecars::Mirror;
use super::snapshots::{expiry_from, volume_of};
use super::Engine;
use crate::events::Event;
use crate::fault;
use crate::freezer::FreezerError;
use crate::hooks::HookPoint;
use crate::store::{
    ContainerRecord, Intent, IntentId, LastRestore, RestoreIntent, RestoreStep, SnapshotOrigin, SnapshotRecord,
    SnapshotState,
};

/// Longest client request id.
const MAX_REQUEST_ID: usize = 128;
/// How long the leftovers of a stopped container may take to die.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreOutcome {
    pub restored: SnapshotRecord,
    /// Holds the state from just before; empty when nothing was done.
    pub pre_restore_snapshot: String,
    pub total: Duration,
    /// From the start of the stop to the end of the start.
    pub downtime: Duration,
    /// Everything but stopping and starting.
    pub daemon_time: Duration,
    pub already_restored: bool,
    pub steps: Vec<(String, Duration)>,
}

/// Times the steps of one restore.
struct Steps {
    started: Instant,
    last: Instant,
    steps: Vec<(String, Duration)>,
    lifecycle_time: Duration,
}

impl Steps {
    fn new() -> Self {
        let now = Instant::now();
        Steps { started: now, last: now, steps: Vec::new(), lifecycle_time: Duration::ZERO }
    }

    fn done(&mut self, name: &str, lifecycle: bool) -> Duration {
        let took = self.last.elapsed();
        self.last = Instant::now();
        if lifecycle {
            self.lifecycle_time += took;
        }
        self.steps.push((name.to_owned(), took));
        took
    }
}

impl Engine {
    /// Restores `container` to the snapshot `reference` (a name or an alias).
    /// A repeat of the same `request_id` returns the first answer; restoring
    /// the snapshot last restored, with no writes since, changes nothing.
    /// Waits for another operation on the container (up to the lock wait),
    /// then refuses with ABORTED.
    pub fn restore_snapshot(
        &self,
        container: &str,
        reference: &str,
        request_id: &str,
        actor: &str,
    ) -> EngineResult<RestoreOutcome> {
        let container_id = container.to_owned();
        let result = self.restore_inner(container, reference, request_id, actor);
        if let Err(error) = &result {
            if !matches!(error, EngineError::InvalidArgument { .. } | EngineError::NotFound { .. }) {
                self.emit(
                    Event::new("restore.failed", "failed")
                        .container(&container_id)
                        .snapshot(reference)
                        .actor(actor)
                        .detail(error.to_string()),
                );
                let _ = self.store.make_durable();
            }
        }
        result
    }

    fn restore_inner(
        &self,
        container: &str,
        reference: &str,
        request_id: &str,
        actor: &str,
    ) -> EngineResult<RestoreOutcome> {
        let mut steps = Steps::new();
        let container = self.container_for("container", container)?;
        names::snapshot_name("snapshot", reference)?;
        if request_id.len() > MAX_REQUEST_ID || request_id.chars().any(char::is_control) {
            return Err(EngineError::invalid(
                "request_id",
                format!("at most {MAX_REQUEST_ID} characters, no control characters"),
            ));
        }
        let request_key = (!request_id.is_empty()).then(|| format!("{}/{request_id}", container.id));
        let _guard = self.locks.lock(&container.id, self.config.lock_wait)?;
        if let Some(key) = &request_key {
            if let Some(answer) = self.store.request_answer::<RestoreOutcome>(key)? {
                return Ok(answer);
            }
        }
        let container = self.container_for("container", &container.id)?;
        let target = self.find_snapshot(&container, reference)?;
        super::snapshots::ensure_ready(&target, "it cannot be restored")?;
        if let Some(outcome) = self.already_restored(&container, &target)? {
            return Ok(outcome);
        }

        let now = self.clock.now();
        let volume = volume_of(&container);
        let pre_restore_name = self.pre_restore_name(&container, now)?;
        let mut intent = RestoreIntent {
            container: container.id.clone(),
            target: target.name.clone(),
            pre_restore_name: pre_restore_name.clone(),
            volume: container.volume.clone(),
            staging: self
                .backend
                .location(&volume, &format!("{}{}", names::RESTORE_STAGING_PREFIX, now.timestamp_millis())),
            staging_uuid: String::new(),
            aside: self.backend.location(&volume, &pre_restore_name),
            cgroup: container.cgroup.clone(),
            step: RestoreStep::Stopping,
            request_id: request_id.to_owned(),
            generation: None,
            restore_id: match request_id {
                "" => format!("{}-{}", container.id, now.timestamp_millis()),
                given => given.to_owned(),
            },
            post_restore_ran: false,
        };
        // Everything that can be checked without touching the container,
        // before it is stopped: a restore that cannot swap leaves it running.
        self.backend.check_restore(&volume, &target.location, &intent.staging)?;
        self.run_restore_hook(&container, HookPoint::PreRestore, &intent, actor)?;
        // Written back while the container runs: inside the downtime only
        // what it writes from here to its stop is still dirty.
        self.backend.flush(&volume)?;
        self.emit(
            Event::new("restore.started", "ok")
                .container(&container.id)
                .snapshot(&target.name)
                .actor(actor)
                .detail(format!("previous state will be kept as {pre_restore_name}")),
        );
        let intent_id = self.store.begin_intent(&Intent::Restore(intent.clone()))?;
        fault::point("restore.stopping");
        let took = steps.done("prepare", false);
        self.emit_step(&container.id, "prepare", took);

        if let Err(error) = self.stop_container(&container) {
            self.roll_back_restore(intent_id, &container, &intent)?;
            return Err(EngineError::FailedPrecondition {
                reason: format!("stopping container {}: {error}", container.id),
            });
        }
        let took = steps.done("stop", true);
        self.emit_step(&container.id, "stop", took);

        let swapped = self.advance(intent_id, &mut intent, RestoreStep::Cloning).and_then(|()| {
            fault::point("restore.cloning");
            let staged = self.backend.create_snapshot(&target.location, &intent.staging, false)?;
            intent.staging_uuid = staged.uuid;
            self.advance(intent_id, &mut intent, RestoreStep::Exchanging)?;
            fault::point("restore.exchanging");
            self.backend.exchange(&intent.staging, &volume.path.to_string_lossy())?;
            fault::point("restore.exchanged");
            Ok(())
        });
        if let Err(error) = swapped {
            self.roll_back_restore(intent_id, &container, &intent)?;
            return Err(error);
        }
        intent.generation = Some(self.committed_generation(&container)?);
        self.advance(intent_id, &mut intent, RestoreStep::Starting)?;
        let took = steps.done("swap", false);
        self.emit_step(&container.id, "swap", took);

        fault::point("restore.starting");
        let started = self.lifecycle.start(&container);
        let took = steps.done("start", true);
        self.emit_step(&container.id, "start", took);
        let downtime = steps.started.elapsed().saturating_sub(steps.steps[0].1);
        fault::point("restore.started");

        self.advance(intent_id, &mut intent, RestoreStep::Recording)?;
        self.record_restore(&container, &intent, None)?;
        fault::point("restore.recorded");
        let took = steps.done("record", false);
        self.emit_step(&container.id, "record", took);
        let total = steps.started.elapsed();
        if started.is_ok() {
            self.post_restore_hook(&container, &intent, actor)?;
        }
        self.store.end_intent(intent_id)?;
        self.expiry_changed.notify_one();
        self.sizes_stale.notify_one();
        if let Err(error) = started {
            self.store.make_durable()?;
            return Err(EngineError::FailedPrecondition {
                reason: format!(
                    "container {} was restored to {} (previous state in {pre_restore_name}) but did not start: {error}",
                    container.id, target.name
                ),
            });
        }
        let outcome = RestoreOutcome {
            restored: target,
            pre_restore_snapshot: pre_restore_name,
            total,
            downtime,
            daemon_time: total.saturating_sub(steps.lifecycle_time),
            already_restored: false,
            steps: steps.steps,
        };
        if let Some(key) = &request_key {
            self.store.record_request_answer(key, &outcome)?;
        }
        self.emit(
            Event::new("restore.finished", "ok")
                .container(&container.id)
                .snapshot(&outcome.restored.name)
                .actor(actor)
                .duration(outcome.total)
                .detail(format!(
                    "previous state kept as {}; daemon {:.1} ms, down {:.1} ms",
                    outcome.pre_restore_snapshot,
                    outcome.daemon_time.as_secs_f64() * 1e3,
                    outcome.downtime.as_secs_f64() * 1e3
                )),
        );
        self.store.make_durable()?;
        tracing::info!(
            container = %container.id, snapshot = %outcome.restored.name, pre_restore = %outcome.pre_restore_snapshot,
            daemon_ms = outcome.daemon_time.as_secs_f64() * 1e3, "container restored"
        );
        Ok(outcome)
    }

    /// The answer for a restore to the snapshot the container runs from
    /// already, unwritten since: nothing to do.
    fn already_restored(
        &self,
        container: &ContainerRecord,
        target: &SnapshotRecord,
    ) -> EngineResult<Option<RestoreOutcome>> {
        let Some(last) = &container.last_restore else { return Ok(None) };
        if last.snapshot != target.name {
            return Ok(None);
        }
        // btrfs moves a subvolume's generation only when a transaction
        // commits (up to 30 s after a write): commit first, or a write made
        // just before this call goes unseen and the restore is skipped. (A
        // write updates the file's times, in the subvolume's tree, at once:
        // a commit is enough, its data need not be on disk.)
        self.backend.commit(&volume_of(container))?;
        let current = self.backend.details(&container.volume.to_string_lossy())?;
        if current.generation != last.generation {
            return Ok(None);
        }
        Ok(Some(RestoreOutcome {
            restored: target.clone(),
            pre_restore_snapshot: String::new(),
            total: Duration::ZERO,
            downtime: Duration::ZERO,
            daemon_time: Duration::ZERO,
            already_restored: true,
            steps: Vec::new(),
        }))
    }

    /// Records a finished step on the timeline, so that a client watching
    /// the events sees the restore progress as it happens.
    fn emit_step(&self, container: &str, step: &str, took: Duration) {
        self.emit(Event::new("restore.step", "ok").container(container).detail(step).duration(took));
    }

    fn advance(&self, id: IntentId, intent: &mut RestoreIntent, step: RestoreStep) -> EngineResult<()> {
        intent.step = step;
        Ok(self.store.advance_intent(id, &Intent::Restore(intent.clone()))?)
    }

    /// Stops the container through its lifecycle, then kills whatever is
    /// left in its cgroup so nothing writes the state being replaced.
    pub(super) fn stop_container(&self, container: &ContainerRecord) -> EngineResult<()> {
        self.lifecycle.stop(container).map_err(|e| EngineError::FailedPrecondition { reason: e.to_string() })?;
        match self.freezer.kill_all(&container.cgroup, KILL_TIMEOUT) {
            Ok(()) | Err(FreezerError::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Moves the old state (at `staging` after the exchange) to its
    /// pre-restore name, read-only, and records it and the restore. Safe to
    /// repeat after a crash.
    pub(super) fn record_restore(
        &self,
        container: &ContainerRecord,
        intent: &RestoreIntent,
        group: Option<&str>,
    ) -> EngineResult<()> {
        if self.backend.snapshot_exists(&intent.staging)? {
            self.backend.rename(&intent.staging, &intent.aside)?;
        }
        // The old state's data dirtied between the write-back before the
        // stop and the stop goes to disk before the answer: the pre-restore
        // snapshot is acknowledged with it.
        let aside = crate::backend::VolumeInfo {
            path: std::path::PathBuf::from(&intent.aside),
            snapshot_dir: volume_of(container).snapshot_dir,
        };
        self.backend.flush(&aside)?;
        let aside = self.backend.details(&intent.aside)?;
        if !aside.read_only {
            self.backend.set_read_only(&intent.aside, true)?;
        }
        let now = self.clock.now();
        if self.store.snapshot(&container.id, &intent.pre_restore_name)?.is_none() {
            let record = SnapshotRecord {
                container: container.id.clone(),
                name: intent.pre_restore_name.clone(),
                alias: None,
                create_time: now,
                expire_time: expiry_from(now, self.config.pre_restore_expiry_days),
                frozen_for: Duration::ZERO,
                duration: Duration::ZERO,
                state: SnapshotState::Ready,
                origin: SnapshotOrigin::PreRestore,
                read_only: true,
                location: intent.aside.clone(),
                uuid: aside.uuid,
                generation: aside.generation,
                comment: format!("state before the restore to {}", intent.target),
                sizes: None,
                hold: None,
                group: group.map(str::to_owned),
            };
            self.store.put_snapshots(&[&record])?;
            self.mirror(container, Mirror::Snapshots(&[&record]))?;
        }
        let generation = match intent.generation {
            Some(generation) => generation,
            None => self.committed_generation(container)?,
        };
        let mut container = container.clone();
        container.last_restore = Some(LastRestore {
            snapshot: intent.target.clone(),
            generation,
            pre_restore_snapshot: intent.pre_restore_name.clone(),
            time: now,
        });
        self.store.put_container(&container)?;
        self.store.make_durable()?;
        Ok(())
    }

    /// The volume's generation once the exchange, which changed it (its root
    /// folder's ctime) in a transaction not yet committed, is committed: the
    /// one `already_restored` will read while nothing writes. Read before
    /// the container starts; a commit, not a write-back of file data.
    fn committed_generation(&self, container: &ContainerRecord) -> EngineResult<u64> {
        self.backend.commit(&volume_of(container))?;
        Ok(self.backend.details(&container.volume.to_string_lossy())?.generation)
    }

    /// Undoes a restore that did not swap and forgets its intent.
    fn roll_back_restore(&self, id: IntentId, container: &ContainerRecord, intent: &RestoreIntent) -> EngineResult<()> {
        self.undo_unswapped(container, intent)?;
        self.store.end_intent(id)?;
        self.store.make_durable()?;
        Ok(())
    }

    /// Undoes a restore that did not swap: the staging copy goes, and the
    /// container is started again, unless it still runs (the stop never
    /// happened or failed): starting it would start a second copy.
    pub(super) fn undo_unswapped(&self, container: &ContainerRecord, intent: &RestoreIntent) -> EngineResult<()> {
        self.backend.delete_snapshot(&intent.staging)?;
        let _ = self.start_unless_running(container, "again after a failed restore");
        Ok(())
    }

    /// Starts the container unless its cgroup has processes: then the stop
    /// never happened (or failed), or the start already ran, and a start
    /// would make a second copy. A cgroup that is gone counts as empty.
    /// A start that fails is logged (`when` says after what) and returned.
    pub(super) fn start_unless_running(
        &self,
        container: &ContainerRecord,
        when: &str,
    ) -> Result<(), crate::lifecycle::LifecycleError> {
        if let Ok(true) = self.freezer.populated(&container.cgroup) {
            tracing::info!(container = %container.id, "the container runs; not started {when}");
            return Ok(());
        }
        self.lifecycle.start(container).inspect_err(|error| {
            tracing::error!(container = %container.id, %error, "could not start the container {when}");
        })
    }

    /// Finishes or rolls back a restore found in an intent at start-up;
    /// returns whether it was finished (true) or rolled back (false).
    pub(super) fn recover_restore(&self, id: IntentId, intent: &RestoreIntent) -> EngineResult<bool> {
        let Some(container) = self.store.container(&intent.container)? else {
            self.store.end_intent(id)?;
            return Ok(false);
        };
        let swapped = match intent.step {
            RestoreStep::Stopping | RestoreStep::Cloning => false,
            RestoreStep::Exchanging => self.has_swapped(intent)?,
            RestoreStep::Recording | RestoreStep::Starting => true,
        };
        if !swapped {
            self.roll_back_restore(id, &container, intent)?;
            return Ok(false);
        }
        self.record_restore(&container, intent, None)?;
        if self.start_unless_running(&container, "after finishing its restore").is_ok() {
            self.post_restore_hook(&container, intent, "daemon")?;
        }
        self.store.end_intent(id)?;
        Ok(true)
    }

    /// Runs the `post_restore` hook of a restored, started container. The
    /// intent ends only after the hook (a group's intent records each
    /// member's as it runs), so recovery runs a hook the daemon died before:
    /// at least once per restore, and once unless the daemon dies while it
    /// runs (the rerun gets the same `ROLLPOINT_RESTORE_ID`, for the hook to
    /// tell).
    pub(super) fn post_restore_hook(
        &self,
        container: &ContainerRecord,
        restore: &RestoreIntent,
        actor: &str,
    ) -> EngineResult<()> {
        self.run_restore_hook(container, HookPoint::PostRestore, restore, actor)
    }
}

impl Engine {
    /// Whether the volume holds the staging copy now (the exchange happened).
    pub(super) fn has_swapped(&self, intent: &RestoreIntent) -> EngineResult<bool> {
        Ok(!intent.staging_uuid.is_empty()
            && self.backend.details(&intent.volume.to_string_lossy())?.uuid == intent.staging_uuid)
    }

    /// The name of the next pre-restore snapshot of `container`:
    /// `pre-restore-YYYY-MM-DD[-N]`, free in the store and on disk.
    pub(super) fn pre_restore_name(
        &self,
        container: &crate::store::ContainerRecord,
        now: chrono::DateTime<chrono::Utc>,
    ) -> EngineResult<String> {
        self.free_default_name("pre-restore", std::slice::from_ref(container), now)
    }

    /// The first default name `<prefix>-YYYY-MM-DD[-N]` free in every one of
    /// `containers`, in the store and on disk.
    pub(super) fn free_default_name(
        &self,
        prefix: &str,
        containers: &[ContainerRecord],
        now: chrono::DateTime<chrono::Utc>,
    ) -> EngineResult<String> {
        let base = names::default_name_base(prefix, now);
        let mut taken = std::collections::HashSet::new();
        for container in containers {
            taken.extend(self.store.snapshot_names_starting_with(&container.id, &base)?);
        }
        let volumes: Vec<_> = containers.iter().map(volume_of).collect();
        Ok(names::default_name_with_prefix(prefix, now, |n| {
            volumes.iter().any(|volume| self.name_taken(&taken, volume, n))
        }))
    }
}
