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
use super::fault;
use crate::backend::{Backend, SnapshotDetails};
use crate::freezer::Freezer;

/// What happened inside the window.
#[derive(Debug, Clone)]
pub struct FrozenSnapshot {
    pub details: SnapshotDetails,
    /// From the freeze request to the thaw; zero when the daemon did not
    /// freeze (the cgroup was frozen by someone else already).
    pub frozen_for: Duration,
}

/// One snapshot to take inside a freeze window.
pub struct Window {
    pub freezer: Arc<dyn Freezer>,
    pub backend: Arc<dyn Backend>,
    pub cgroup: PathBuf,
    /// False when the cgroup was already frozen by someone else: then the
    /// daemon neither freezes nor thaws it.
    pub freeze: bool,
    pub source: String,
    pub location: String,
    /// Upper bound on how long the container may stay frozen.
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
    /// snapshot's details after).
    pub fn run(self) -> EngineResult<FrozenSnapshot> {
        self.backend.prepare_snapshot(&self.source, &self.location)?;
        let backend = self.backend.clone();
        let location = self.location.clone();
        let frozen_for = self.hold()?;
        // A snapshot that cannot be read back is not recorded: not kept either.
        let details = backend.details(&location).inspect_err(|_| {
            let _ = backend.delete_snapshot(&location);
        })?;
        Ok(FrozenSnapshot { details, frozen_for })
    }

    /// Freeze, snapshot, thaw on the worker thread, under the watchdog; how
    /// long the container was frozen.
    fn hold(self) -> EngineResult<Duration> {
        let phase = Arc::new(Mutex::new(Phase::Running));
        let (sender, receiver) = mpsc::sync_channel(1);
        let budget = self.budget;
        let freezer = self.freezer.clone();
        let cgroup = self.cgroup.clone();
        let froze = self.freeze;
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
                if froze {
                    if let Err(error) = freezer.thaw(&cgroup) {
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
        if self.freeze {
            self.freezer.freeze(&self.cgroup, self.budget)?;
        }
        fault::point("create.frozen");
        let snapshot = self.backend.take_snapshot(&self.source, &self.location, true);
        let thawed = if self.freeze { self.freezer.thaw(&self.cgroup) } else { Ok(()) };
        let frozen_for = if self.freeze { started.elapsed() } else { Duration::ZERO };
        match (snapshot, thawed) {
            (Ok(()), Ok(())) => Ok(frozen_for),
            (Err(error), _) => Err(error.into()),
            (Ok(()), Err(error)) => {
                let _ = self.backend.delete_snapshot(&self.location);
                Err(error.into())
            }
        }
    }

    fn clean_up_abandoned(&self, result: &EngineResult<Duration>) {
        if result.is_ok() {
            if let Err(error) = self.backend.delete_snapshot(&self.location) {
                tracing::error!(location = %self.location, %error, "could not delete an abandoned snapshot");
            }
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
