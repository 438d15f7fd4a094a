//! The freeze window: freeze the cgroup, snapshot, thaw, as short as it can be.
//!
//! What the backend can do before or after the snapshot stays out of it:
//! [`Backend::prepare_snapshot`] runs before the freeze, only
//! [`Backend::take_snapshot`] inside, [`Backend::details`] after the thaw.
//!
//! The sequence runs on its own OS thread raised to SCHED_FIFO, so that busy
//! processes of the container (once thawed) or of the host cannot hold the
//! container frozen by preempting the daemon between freeze and thaw. The
//! caller waits with a deadline (the freeze budget) on a plain channel, not
//! on the async runtime: when the budget runs out the caller thaws the
//! container itself and abandons the snapshot, which the worker deletes if
//! its backend call ever returns.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::error::{EngineError, EngineResult};
use crate::backend::{Backend, SnapshotDetails};
use crate::fault;
use crate::freezer::Freezer;

/// What happened inside the window.
#[derive(Debug, Clone)]
pub struct FrozenSnapshot {
    /// Each snapshot's details, in the order of [`Window::snapshots`].
    pub details: Vec<SnapshotDetails>,
    /// From the first freeze request to the last thaw; zero when the daemon
    /// froze nothing (every cgroup was frozen by someone else already).
    pub frozen_for: Duration,
}

/// A cgroup to hold still inside a window.
#[derive(Debug, Clone)]
pub struct Freeze {
    pub cgroup: PathBuf,
    /// False when the cgroup was already frozen by someone else: then the
    /// daemon neither freezes nor thaws it.
    pub freeze: bool,
}

/// One or more snapshots taken at one instant: every cgroup frozen (in the
/// order given; a group's members sorted, so two windows never wait on each
/// other), every snapshot taken, every cgroup thawed (in reverse), all
/// within one budget. All or nothing: a snapshot that fails removes those
/// already taken.
pub struct Window {
    pub freezer: Arc<dyn Freezer>,
    pub backend: Arc<dyn Backend>,
    pub cgroups: Vec<Freeze>,
    /// (source volume, snapshot location) of each snapshot.
    pub snapshots: Vec<(String, String)>,
    /// Upper bound on how long the containers may stay frozen.
    pub budget: Duration,
}

#[derive(Debug)]
enum Phase {
    Running,
    /// The caller gave up; the worker cleans up what it made.
    Abandoned,
    Finished,
}

impl Window {
    /// Runs the window; blocks the calling thread at most about `budget`
    /// (besides the backend's preparation before it and reading the
    /// snapshots' details after).
    pub fn run(self) -> EngineResult<FrozenSnapshot> {
        for (source, location) in &self.snapshots {
            self.backend.prepare_snapshot(source, location)?;
        }
        let backend = self.backend.clone();
        let locations: Vec<String> = self.snapshots.iter().map(|(_, location)| location.clone()).collect();
        let frozen_for = self.hold()?;
        // A snapshot that cannot be read back is not recorded: none is kept.
        let details = locations.iter().map(|location| backend.details(location)).collect::<Result<Vec<_>, _>>();
        let details = details.inspect_err(|_| delete_all(backend.as_ref(), &locations))?;
        Ok(FrozenSnapshot { details, frozen_for })
    }

    /// Freeze, snapshot, thaw on the worker thread, under the watchdog; how
    /// long the containers were frozen.
    fn hold(self) -> EngineResult<Duration> {
        let phase = Arc::new(Mutex::new(Phase::Running));
        let (sender, receiver) = mpsc::sync_channel(1);
        let budget = self.budget;
        let freezer = self.freezer.clone();
        let cgroups = self.cgroups.clone();
        let worker_phase = phase.clone();
        std::thread::Builder::new()
            .name("rollpoint-freeze".into())
            .spawn(move || {
                raise_priority();
                let result = self.work();
                let mut phase = worker_phase.lock();
                match *phase {
                    Phase::Abandoned => self.clean_up_abandoned(&result),
                    _ => {
                        *phase = Phase::Finished;
                        let _ = sender.send(result);
                    }
                }
            })
            .map_err(|e| EngineError::Internal { reason: format!("cannot start the freeze thread: {e}") })?;

        match receiver.recv_timeout(budget) {
            Ok(result) => result,
            Err(_) => {
                let mut phase = phase.lock();
                if let Phase::Finished = *phase {
                    drop(phase);
                    return receiver.recv().unwrap_or_else(|_| {
                        Err(EngineError::Internal { reason: "freeze thread ended without an answer".into() })
                    });
                }
                *phase = Phase::Abandoned;
                drop(phase);
                for Freeze { cgroup, .. } in cgroups.iter().rev().filter(|c| c.freeze) {
                    if let Err(error) = freezer.thaw(cgroup) {
                        tracing::error!(cgroup = %cgroup.display(), %error, "watchdog could not thaw");
                    }
                }
                Err(EngineError::DeadlineExceeded {
                    reason: format!(
                        "the freeze budget of {budget:?} ran out before the snapshot was taken; the container was thawed and the snapshot abandoned"
                    ),
                })
            }
        }
    }

    fn work(&self) -> EngineResult<Duration> {
        let started = Instant::now();
        let mut frozen = Vec::new();
        let mut outcome = Ok(());
        for Freeze { cgroup, freeze } in &self.cgroups {
            if !freeze {
                continue;
            }
            // A cgroup that would not freeze has no consistent instant to give.
            if let Err(error) = self.freezer.freeze(cgroup, self.budget) {
                outcome = Err(EngineError::from(error));
                // Half-frozen on a timeout: thawed with the others.
                frozen.push(cgroup);
                break;
            }
            frozen.push(cgroup);
        }
        let mut taken = Vec::new();
        if outcome.is_ok() {
            fault::point("create.frozen");
            for (source, location) in &self.snapshots {
                if let Err(error) = self.backend.take_snapshot(source, location, true) {
                    outcome = Err(error.into());
                    break;
                }
                taken.push(location.clone());
            }
        }
        let mut thawed = Ok(());
        for cgroup in frozen.iter().rev() {
            if let Err(error) = self.freezer.thaw(cgroup) {
                thawed = thawed.and(Err(EngineError::from(error)));
            }
        }
        let frozen_for = if frozen.is_empty() { Duration::ZERO } else { started.elapsed() };
        match outcome.and(thawed) {
            Ok(()) => Ok(frozen_for),
            Err(error) => {
                delete_all(self.backend.as_ref(), &taken);
                Err(error)
            }
        }
    }

    fn clean_up_abandoned(&self, result: &EngineResult<Duration>) {
        if result.is_ok() {
            let locations: Vec<String> = self.snapshots.iter().map(|(_, location)| location.clone()).collect();
            delete_all(self.backend.as_ref(), &locations);
        }
    }
}

/// Deletes snapshots a failed window made; a failure is logged (recovery's
/// reconciliation reports what is left).
fn delete_all(backend: &dyn Backend, locations: &[String]) {
    for location in locations {
        if let Err(error) = backend.delete_snapshot(location) {
            tracing::error!(%location, %error, "could not delete a snapshot of a failed window");
        }
    }
}

/// Raises the calling thread to SCHED_FIFO. Without CAP_SYS_NICE this fails,
/// and the window still works, only with less protection against preemption.
fn raise_priority() {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: pid 0 names the calling thread; `param` is a valid, initialised
    // sched_param that outlives the call; the return value is checked.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "freeze thread stays at normal priority");
    }
}
