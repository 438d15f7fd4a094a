//! The scheduler loop: plan, record, fire, sleep until the next due entry.
//!
//! It sleeps until the earliest next occurrence (no polling), but never
//! longer than `max_sleep` (default 60 s): tokio sleeps on the monotonic
//! clock, so a wall-clock jump is noticed at the next wake at the latest and
//! the planner's rules for jumps apply. `SchedulerHandle::entries_changed`
//! wakes it at once to re-plan.
//!
//! Fires run as spawned tasks, so a long action delays nothing else; the
//! loop tracks which entries are running for the overlap rule. On shutdown
//! the loop stops planning and waits for running fires to finish (their own
//! timeouts bound that; a snapshot must not be cut off mid-freeze).
//!
//! The loop keeps the cursors it moved until the host reports a different
//! value than the one the decision was based on, so a host that fails to
//! persist a cursor cannot make an occurrence fire twice.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::planner::{self, Decision, EntryId, EntryState, Fire, Policy};

/// Wall-clock time, injected so tests can move and jump it.
pub trait WallClock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemWallClock;

impl WallClock for SystemWallClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A fire's action, spawned on the runtime.
pub type FireFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What the scheduler drives: the store, the engine and the timeline.
pub trait SchedulerHost: Send + Sync + 'static {
    /// Every entry, with its cursor (`last_due`) as last recorded. Called at
    /// every wake (about once a minute at least): keep the parsed schedules
    /// rather than parsing each time (`CronSchedule` clones are cheap).
    fn entries(&self) -> Vec<EntryState>;

    /// A decision was taken: persist `decision.cursor()` as the entry's
    /// `last_due` and append it to the timeline. Called for a fire before its
    /// action starts, so a crash mid-action does not fire it again.
    fn record(&self, decision: &Decision);

    /// The action of a fire (take a snapshot, run a command). The future may
    /// take long, must bound itself (timeouts), and reports its own outcome.
    fn fire(&self, fire: &Fire) -> FireFuture;
}

#[derive(Debug, Clone, Copy)]
pub struct SchedulerConfig {
    pub policy: Policy,
    /// The longest sleep between two plans, so wall-clock jumps are noticed.
    pub max_sleep: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig { policy: Policy::default(), max_sleep: Duration::from_secs(60) }
    }
}

/// Wakes the scheduler to re-plan; cheap to clone.
#[derive(Clone)]
pub struct SchedulerHandle(Arc<Notify>);

impl SchedulerHandle {
    /// Entries were added, removed, edited, enabled or disabled.
    pub fn entries_changed(&self) {
        self.0.notify_one();
    }
}

pub struct Scheduler {
    host: Arc<dyn SchedulerHost>,
    clock: Arc<dyn WallClock>,
    config: SchedulerConfig,
    changed: Arc<Notify>,
    running: Arc<Mutex<HashSet<EntryId>>>,
    cursors: Cursors,
}

impl Scheduler {
    pub fn new(host: Arc<dyn SchedulerHost>, clock: Arc<dyn WallClock>, config: SchedulerConfig) -> Scheduler {
        Scheduler {
            host,
            clock,
            config,
            changed: Arc::new(Notify::new()),
            running: Arc::default(),
            cursors: Cursors::default(),
        }
    }

    pub fn handle(&self) -> SchedulerHandle {
        SchedulerHandle(self.changed.clone())
    }

    /// Runs until `shutdown` completes, then waits for running fires.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut fires = JoinSet::new();
        let mut last_plan: Option<(DateTime<Utc>, tokio::time::Instant)> = None;
        loop {
            if let Some((wall, monotonic)) = last_plan {
                self.note_clock_jump(wall, monotonic);
            }
            let next_wake = self.plan_once(&mut fires);
            let now = self.clock.now();
            last_plan = Some((now, tokio::time::Instant::now()));
            let until_due = next_wake.map(|wake| (wake - now).to_std().unwrap_or(Duration::ZERO));
            let sleep = until_due.map_or(self.config.max_sleep, |until| until.min(self.config.max_sleep));
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(sleep) => {}
                () = self.changed.notified() => {}
                Some(joined) = fires.join_next(), if !fires.is_empty() => log_join(joined),
            }
        }
        tracing::info!(running = fires.len(), "scheduler stopping; waiting for running fires");
        while let Some(joined) = fires.join_next().await {
            log_join(joined);
        }
    }

    /// Plans at the current time, records every decision and spawns the
    /// fires; returns when to wake next.
    fn plan_once(&mut self, fires: &mut JoinSet<()>) -> Option<DateTime<Utc>> {
        let mut entries = self.host.entries();
        let reported = self.cursors.overlay(&mut entries);
        let running = self.running.lock().clone();
        let plan = planner::plan(&entries, &running, self.clock.now(), &self.config.policy);
        for decision in plan.decisions {
            log_decision(&decision);
            self.host.record(&decision);
            if let Some(&host_value) = reported.get(decision.entry()) {
                self.cursors.advance(decision.entry(), host_value, decision.cursor());
            }
            if let Decision::Fire(fire) = decision {
                self.spawn_fire(fire, fires);
            }
        }
        plan.next_wake
    }

    fn spawn_fire(&self, fire: Fire, fires: &mut JoinSet<()>) {
        self.running.lock().insert(fire.entry.clone());
        // Clears the running mark however the task ends, panics included.
        let mark = RunningMark { running: self.running.clone(), entry: fire.entry.clone() };
        let host = self.host.clone();
        fires.spawn(async move {
            let _mark = mark;
            host.fire(&fire).await;
        });
    }

    /// Logs a wall-clock jump since the last plan (the planner handles it).
    fn note_clock_jump(&self, wall: DateTime<Utc>, monotonic: tokio::time::Instant) {
        let expected = TimeDelta::from_std(monotonic.elapsed()).map_or(wall, |elapsed| wall + elapsed);
        let jump = self.clock.now() - expected;
        if jump.abs() > TimeDelta::seconds(1) {
            tracing::warn!(jump_ms = jump.num_milliseconds(), "wall clock jumped; re-planning");
        }
    }
}

struct RunningMark {
    running: Arc<Mutex<HashSet<EntryId>>>,
    entry: EntryId,
}

impl Drop for RunningMark {
    fn drop(&mut self) {
        self.running.lock().remove(&self.entry);
    }
}

/// Cursors the loop moved, kept until the host reports something else than
/// the value the move was based on (it persisted ours, or the entry was
/// edited): then the host's value wins again.
#[derive(Default)]
struct Cursors(HashMap<EntryId, MovedCursor>);

struct MovedCursor {
    host_value: DateTime<Utc>,
    cursor: DateTime<Utc>,
}

impl Cursors {
    /// Applies our moves to the host's entries; returns the host's values.
    fn overlay(&mut self, entries: &mut [EntryState]) -> HashMap<EntryId, DateTime<Utc>> {
        let reported: HashMap<EntryId, DateTime<Utc>> =
            entries.iter().map(|entry| (entry.id.clone(), entry.last_due)).collect();
        self.0.retain(|id, moved| reported.get(id) == Some(&moved.host_value));
        for entry in entries {
            if let Some(moved) = self.0.get(&entry.id) {
                entry.last_due = moved.cursor;
            }
        }
        reported
    }

    fn advance(&mut self, entry: &EntryId, host_value: DateTime<Utc>, cursor: DateTime<Utc>) {
        self.0.insert(entry.clone(), MovedCursor { host_value, cursor });
    }
}

fn log_decision(decision: &Decision) {
    match decision {
        Decision::Fire(fire) => tracing::info!(
            entry = %fire.entry, due = %fire.due, lateness_ms = fire.lateness.num_milliseconds(),
            kind = ?fire.kind, "schedule entry fires"
        ),
        Decision::Skip(skipped) => {
            tracing::warn!(entry = %skipped.entry, due = %skipped.due, "skipped: previous fire still running")
        }
        Decision::Miss(missed) => tracing::warn!(
            entry = %missed.entry, first_due = %missed.first_due, last_due = %missed.last_due, "missed fires"
        ),
        Decision::Rebase(rebased) => tracing::warn!(
            entry = %rebased.entry, from = %rebased.from, to = %rebased.to,
            "last fire is far in the future (clock went back): resuming from now"
        ),
    }
}

fn log_join(joined: Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined {
        tracing::error!(%error, "a schedule fire task failed");
    }
}

#[cfg(test)]
mod tests;
