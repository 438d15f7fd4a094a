//! Reads the API serves straight from the record, through the engine like
//! every other call: counts for the status, pages of the timeline and the
//! catch-up of a watch, what the metrics tally.

use super::error::EngineResult;
use super::event_pages::{self, EventFilter};
use super::Engine;
use crate::store::{ContainerRecord, EventRecord, SnapshotRecord};

/// How much the daemon keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub containers: usize,
    pub snapshots: usize,
    pub entries: usize,
}

impl Engine {
    /// Containers, snapshots and schedule entries on record.
    pub fn counts(&self) -> EngineResult<Counts> {
        let containers = self.store.containers()?;
        let mut snapshots = 0;
        for container in &containers {
            snapshots += self.store.snapshot_count(&container.id)?;
        }
        Ok(Counts { containers: containers.len(), snapshots, entries: self.store.entries("")?.len() })
    }

    /// One page of the timeline and the token of the next (empty on the last).
    pub fn list_events(
        &self,
        filter: &EventFilter,
        page_size: i32,
        page_token: &str,
        oldest_first: bool,
    ) -> EngineResult<(Vec<EventRecord>, String)> {
        event_pages::list(&self.store, filter, page_size, page_token, oldest_first)
    }

    /// Up to `limit` events after sequence number `after`, oldest first.
    pub fn events_after(&self, after: u64, limit: usize) -> EngineResult<Vec<EventRecord>> {
        Ok(self.store.events_after(after, limit)?)
    }

    /// Every container on record.
    pub fn all_containers(&self) -> EngineResult<Vec<ContainerRecord>> {
        Ok(self.store.containers()?)
    }

    /// Every snapshot of a container on record, in any state.
    pub fn all_snapshots_of(&self, container: &str) -> EngineResult<Vec<SnapshotRecord>> {
        Ok(self.store.snapshots_of(container)?)
    }

    /// A number that changes whenever a snapshot record does (to know when
    /// tallies of them must be made again).
    pub fn snapshot_changes(&self) -> u64 {
        self.store.snapshot_changes()
    }

    /// Bytes the store takes on disk.
    pub fn store_bytes(&self) -> EngineResult<u64> {
        Ok(self.store.size_on_disk()?)
    }
}
