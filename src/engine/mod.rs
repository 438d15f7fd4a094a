//! Engine layer: create / restore / delete / expire, one lock per container.
//!
//! The engine sees the backend and the freezer only through their traits, so
//! its logic is unit-tested against in-memory fakes (`fakes`), and the real
//! btrfs backend and cgroup freezer are tested as root. Every call is
//! blocking; the API layer runs them on blocking threads.

mod clock;
mod containers;
pub mod entries;
mod error;
pub mod fault;
mod freeze_window;
mod locks;
pub mod names;
mod paging;
mod recovery;
pub mod remotes;
mod restore;
mod schedule_fire;
mod snapshots;

#[cfg(test)]
mod fakes;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

pub use clock::{Clock, SystemClock};
pub use containers::RegisterRequest;
pub use error::{EngineError, EngineResult};
pub use paging::Page;
pub use recovery::RecoveryReport;
pub use restore::RestoreOutcome;
pub use schedule_fire::FireResult;
pub use snapshots::{CreateRequest, UpdateRequest};

use crate::backend::Backend;
use crate::events::{Event, EventLog};
use crate::freezer::Freezer;
use crate::lifecycle::Lifecycle;
use crate::store::Store;
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
    /// Most engine calls in flight at once; past it calls are refused with
    /// RESOURCE_EXHAUSTED instead of queueing without bound.
    pub max_concurrent_operations: usize,
    /// Remotes for off-host copies, by name.
    pub remotes: std::collections::BTreeMap<String, crate::remote::RemoteConfig>,
    /// Where remotes' key files live by default (`<state_dir>/keys`).
    pub state_dir: std::path::PathBuf,
    /// This host's name, written into the manifests it exports.
    pub host: String,
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
    admission: Arc<tokio::sync::Semaphore>,
    /// Woken whenever the earliest expiry may have changed.
    expiry_changed: tokio::sync::Notify,
    /// Woken whenever schedule entries change.
    entries_changed: tokio::sync::Notify,
    /// Snapshot locations being read by an export: not deleted meanwhile.
    pinned: parking_lot::Mutex<std::collections::HashMap<String, usize>>,
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
        let admission = Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_operations));
        Engine {
            store,
            backend,
            freezer,
            lifecycle,
            clock,
            config,
            locks: ContainerLocks::default(),
            events,
            admission,
            expiry_changed: tokio::sync::Notify::new(),
            entries_changed: tokio::sync::Notify::new(),
            pinned: parking_lot::Mutex::new(std::collections::HashMap::new()),
        }
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

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A place among the operations in flight, or RESOURCE_EXHAUSTED.
    pub fn admit(&self) -> EngineResult<tokio::sync::OwnedSemaphorePermit> {
        self.admission.clone().try_acquire_owned().map_err(|_| EngineError::ResourceExhausted {
            reason: format!(
                "{} operations are in flight, the most this daemon takes at once; retry shortly",
                self.config.max_concurrent_operations
            ),
        })
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
