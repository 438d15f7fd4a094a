//! Engine layer: create / restore / delete / expire, one lock per container.
//!
//! The engine sees the backend and the freezer only through their traits, so
//! its logic is unit-tested against in-memory fakes (`fakes`), and the real
//! btrfs backend and cgroup freezer are tested as root. Every call is
//! blocking; the API layer runs them on blocking threads.

mod admission;
mod clock;
pub mod clone;
mod containers;
mod create;
pub mod diff;
pub mod discovery;
pub mod entries;
mod error;
pub mod event_pages;
mod freeze_window;
pub mod group_restore;
pub mod groups;
mod hooks;
mod locks;
mod mounts;
pub mod names;
mod paging;
pub mod prune;
mod reads;
mod recovery;
pub mod remotes;
mod restore;
pub mod restore_files;
pub mod retention;
pub mod run_grants;
mod schedule_fire;
mod sidecars;
mod sizes;
mod snapshots;
pub mod space;
pub mod tokens;
pub mod tree_changes;
pub mod views;

#[cfg(test)]
mod fakes;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

pub use admission::Admitted;
pub use clock::{Clock, SystemClock};
pub use containers::{ContainerUpdate, RegisterRequest};
pub use error::{EngineError, EngineResult};
pub use paging::Page;
pub use reads::Counts;
pub use recovery::RecoveryReport;
pub use restore::RestoreOutcome;
pub use schedule_fire::FireResult;
pub use snapshots::{CreateRequest, UpdateRequest};

use crate::backend::Backend;
use crate::events::{Event, EventLog};
use crate::freezer::Freezer;
use crate::lifecycle::Lifecycle;
use crate::store::Store;
use admission::{Admission, AdmissionLimits};
use locks::ContainerLocks;

/// Tunables of the engine, from the daemon's configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Longest time a container may stay frozen.
    pub freeze_budget: Duration,
    /// How long an operation waits for another one on the same container
    /// before it is refused as busy (ABORTED).
    pub lock_wait: Duration,
    /// Expiry of pre-restore snapshots, in days (0 = never).
    pub pre_restore_expiry_days: u32,
    /// Most engine calls in flight at once (per kind of call: reads and
    /// changes each have their own slots); past it calls wait their turn.
    pub max_concurrent_operations: usize,
    /// Remotes for off-host copies, by name.
    pub remotes: std::collections::BTreeMap<String, crate::remote::RemoteConfig>,
    /// Where remotes' key files live by default (`<state_dir>/keys`).
    pub state_dir: std::path::PathBuf,
    /// This host's name, written into the manifests it exports.
    pub host: String,
    /// Most calls waiting for a slot (per kind of call); past it calls are
    /// refused with RESOURCE_EXHAUSTED.
    pub max_queued_operations: usize,
    /// How long a call without a deadline of its own waits for a slot.
    pub admission_wait: Duration,
    /// Filesystems whose records beside the data are checked at start.
    pub filesystems: Vec<std::path::PathBuf>,
    /// LVM volume groups whose metadata volumes are checked at start.
    pub volume_groups: Vec<String>,
    /// Retention of containers' snapshots without a policy of their own.
    pub retention: retention::Policy,
    /// Retention of pre-restore snapshots, likewise.
    pub pre_restore_retention: retention::Policy,
    /// Free space kept on each filesystem, in percent (0: no guard).
    pub space_floor_percent: f64,
    /// Where and how discovery looks for containers.
    pub discovery: crate::discovery::DiscoveryConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            freeze_budget: Duration::from_secs(2),
            lock_wait: Duration::from_secs(30),
            pre_restore_expiry_days: 7,
            max_concurrent_operations: 64,
            remotes: std::collections::BTreeMap::new(),
            state_dir: crate::config::DEFAULT_STATE_DIR.into(),
            host: host_name(),
            max_queued_operations: 10_000,
            admission_wait: Duration::from_secs(60),
            filesystems: Vec::new(),
            volume_groups: Vec::new(),
            retention: retention::Policy::default(),
            pre_restore_retention: retention::Policy::default(),
            space_floor_percent: 10.0,
            discovery: Default::default(),
        }
    }
}

/// Waits longer than this are logged, to explain a slow answer.
const LONG_ADMISSION_WAIT: Duration = Duration::from_secs(1);

/// Told of each admission: the kind of call and how long it waited.
pub type AdmissionObserver = Box<dyn Fn(&'static str, Duration) + Send + Sync>;

/// What a call does, for admission.
#[derive(Debug, Clone, Copy)]
pub enum CallKind<'a> {
    /// Only reads the store.
    Read,
    /// Changes something; calls for one container run in arrival order.
    Change { container: Option<&'a str> },
}

impl CallKind<'_> {
    /// The kinds' names, as metrics and the status label them.
    pub const NAMES: [&'static str; 2] = ["read", "change"];

    pub fn name(&self) -> &'static str {
        match self {
            CallKind::Read => Self::NAMES[0],
            CallKind::Change { .. } => Self::NAMES[1],
        }
    }
}

pub struct Engine {
    store: Arc<Store>,
    backend: Arc<dyn Backend>,
    freezer: Arc<dyn Freezer>,
    lifecycle: Arc<dyn Lifecycle>,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    locks: ContainerLocks,
    events: EventLog,
    /// Reads have their own queue, so that a burst of changes does not keep
    /// the daemon from answering them.
    read_admission: Admission,
    change_admission: Admission,
    /// Woken whenever the earliest expiry may have changed.
    expiry_changed: tokio::sync::Notify,
    /// Woken whenever schedule entries change.
    entries_changed: tokio::sync::Notify,
    /// Woken whenever snapshots were created or deleted (sizes to measure).
    sizes_stale: tokio::sync::Notify,
    /// Snapshot locations being read by an export: not deleted meanwhile.
    pinned: parking_lot::Mutex<std::collections::HashMap<String, usize>>,
    /// Credentials of the command runs in progress (`$SNAP_URL`).
    run_grants: Arc<run_grants::RunGrants>,
    /// Told of every admission and how long it waited (the metrics).
    admission_observer: std::sync::OnceLock<AdmissionObserver>,
    /// `http://127.0.0.1:PORT` of the loopback listener that takes run
    /// credentials, once the daemon serves it; unset: runs get no SNAP_URL.
    run_url_base: std::sync::OnceLock<String>,
    /// Snapshot locations whose retention delete failed, and when.
    prune_failures: parking_lot::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Containers whose filesystem was last seen near the space floor.
    space_warned: parking_lot::Mutex<std::collections::HashSet<String>>,
    /// Snapshot volumes on disk that no record knows, as start-up recovery
    /// found them: (container, location).
    unrecorded: parking_lot::Mutex<Vec<(String, String)>>,
}

/// Keeps a snapshot from being deleted while it is read; unpins on drop.
pub(crate) struct Pin<'a> {
    engine: &'a Engine,
    location: String,
}

impl Drop for Pin<'_> {
    fn drop(&mut self) {
        let mut pinned = self.engine.pinned.lock();
        if let Some(count) = pinned.get_mut(&self.location) {
            *count -= 1;
            if *count == 0 {
                pinned.remove(&self.location);
            }
        }
    }
}

/// The host's name (`/proc/sys/kernel/hostname`), or `localhost`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl Engine {
    pub fn new(
        store: Arc<Store>,
        backend: Arc<dyn Backend>,
        freezer: Arc<dyn Freezer>,
        lifecycle: Arc<dyn Lifecycle>,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Self {
        let events = EventLog::new(store.clone());
        let limits = AdmissionLimits {
            max_in_flight: config.max_concurrent_operations,
            max_queued: config.max_queued_operations,
            default_wait: config.admission_wait,
        };
        Engine {
            store,
            backend,
            freezer,
            lifecycle,
            clock,
            config,
            locks: ContainerLocks::default(),
            events,
            read_admission: Admission::new(limits),
            change_admission: Admission::new(limits),
            expiry_changed: tokio::sync::Notify::new(),
            entries_changed: tokio::sync::Notify::new(),
            sizes_stale: tokio::sync::Notify::new(),
            pinned: parking_lot::Mutex::new(std::collections::HashMap::new()),
            run_grants: Arc::default(),
            run_url_base: std::sync::OnceLock::new(),
            prune_failures: parking_lot::Mutex::new(std::collections::HashMap::new()),
            space_warned: parking_lot::Mutex::new(std::collections::HashSet::new()),
            unrecorded: parking_lot::Mutex::new(Vec::new()),
            admission_observer: std::sync::OnceLock::new(),
        }
    }

    /// From now on, `observer` is told the kind of call (`read`, `change`)
    /// and the wait of every admission. Set once, by the metrics.
    pub fn observe_admissions(&self, observer: AdmissionObserver) {
        if self.admission_observer.set(observer).is_err() {
            tracing::warn!("admissions are already observed; keeping the first observer");
        }
    }

    /// From now on, runs of entries bound to a container get a `SNAP_URL`
    /// on `base` (`http://127.0.0.1:PORT`), where [`Engine::run_grants`]
    /// are accepted. Set once, by the daemon, when it listens there.
    pub fn serve_run_urls(&self, base: String) {
        if self.run_url_base.set(base).is_err() {
            tracing::warn!("run URLs were already served; keeping the first listener");
        }
    }

    /// The credentials of the runs in progress.
    pub fn run_grants(&self) -> &Arc<run_grants::RunGrants> {
        &self.run_grants
    }

    /// Pins a snapshot's location while it is read (an export).
    pub(crate) fn pin_snapshot(&self, location: &str) -> EngineResult<Pin<'_>> {
        *self.pinned.lock().entry(location.to_owned()).or_insert(0) += 1;
        Ok(Pin { engine: self, location: location.to_owned() })
    }

    /// Refuses to delete a pinned snapshot.
    pub(crate) fn check_not_pinned(&self, snapshot: &crate::store::SnapshotRecord) -> EngineResult<()> {
        if self.pinned.lock().contains_key(&snapshot.location) {
            return Err(EngineError::FailedPrecondition {
                reason: format!("{} is being exported; try again when the export ends", snapshot.resource_name()),
            });
        }
        Ok(())
    }

    /// The store, for the daemon that hosts the engine (its schedule host,
    /// event pruning, readiness probe); the API goes through the engine's
    /// calls (`tests/layers.rs`).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A place among the operations in flight, waited for in arrival order
    /// up to `deadline` (the caller's own) or `admission_wait`; see
    /// `admission` for the refusals. Hold the result while the call runs.
    pub async fn admit(&self, call: CallKind<'_>, deadline: Option<Duration>) -> EngineResult<Admitted> {
        let admitted = match call {
            CallKind::Read => self.read_admission.admit(None, deadline).await?,
            CallKind::Change { container } => self.change_admission.admit(container, deadline).await?,
        };
        if let Some(observe) = self.admission_observer.get() {
            observe(call.name(), admitted.waited);
        }
        if admitted.waited > LONG_ADMISSION_WAIT {
            tracing::info!(waited = ?admitted.waited, ?call, "call waited long for an operation slot");
            let (reads, changes) = self.queued_calls();
            let mut event = Event::new("admission.waited", "ok").detail(format!(
                "waited {:.1} s for an operation slot; {} calls still queued",
                admitted.waited.as_secs_f64(),
                reads + changes
            ));
            if let CallKind::Change { container: Some(container) } = call {
                event = event.container(container);
            }
            self.emit(event);
        }
        Ok(admitted)
    }

    /// Calls waiting for a slot: reads, changes.
    pub fn queued_calls(&self) -> (usize, usize) {
        (self.read_admission.queued(), self.change_admission.queued())
    }

    /// Per kind of call (`read`, `change`): calls waiting, calls running.
    pub fn admission_load(&self) -> [(&'static str, usize, usize); 2] {
        [
            (CallKind::NAMES[0], self.read_admission.queued(), self.read_admission.in_flight()),
            (CallKind::NAMES[1], self.change_admission.queued(), self.change_admission.in_flight()),
        ]
    }

    /// Most calls running and waiting, per kind (the same for both kinds).
    pub fn admission_limits(&self) -> (usize, usize) {
        let limits = self.change_admission.limits();
        (limits.max_in_flight.max(1), limits.max_queued)
    }

    /// The base URL of the run listener, when it is served.
    pub fn run_url_base(&self) -> Option<&str> {
        self.run_url_base.get().map(String::as_str)
    }

    /// The audit timeline.
    pub fn events(&self) -> &EventLog {
        &self.events
    }

    /// Appends an event to the timeline; a failure to record is logged, not
    /// turned into a failure of the action it records.
    pub(crate) fn emit(&self, event: Event) {
        if let Err(error) = self.events.append(event, self.clock.now()) {
            tracing::error!(%error, "could not record an event");
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Resolves when the earliest expiry may have changed.
    pub async fn expiry_changed(&self) {
        self.expiry_changed.notified().await
    }
}
