//! What each snapshot costs: its delta against the previous snapshot of its
//! container (the bytes of file data written in between), measured in the
//! background from what the filesystem says changed (btrfs: the send stream
//! without file data; LVM thin: the pool's block mappings) and kept in the
//! snapshot's record, so listings cost nothing more.

use std::time::Duration;

use super::error::EngineResult;
use super::Engine;
use crate::store::{SnapshotRecord, SnapshotSizes, SnapshotState};

/// How long a measurement waits for the container's lock to save its
/// figures; a busy container is measured again on the next pass.
const SAVE_WAIT: Duration = Duration::from_secs(5);

impl Engine {
    /// Measures every ready snapshot whose sizes are not known, or were
    /// counted from a snapshot that is no longer the one before it (deleted
    /// since). Returns how many were measured. A snapshot the backend cannot
    /// measure is logged and skipped; the next pass (after the next create
    /// or delete, or at start) tries again.
    pub fn measure_sizes(&self) -> EngineResult<usize> {
        let mut measured = 0;
        for container in self.store.containers()? {
            let mut ready: Vec<SnapshotRecord> = self
                .store
                .snapshots_of(&container.id)?
                .into_iter()
                .filter(|s| s.state == SnapshotState::Ready)
                .collect();
            ready.sort_by_key(SnapshotRecord::sort_key);
            for (index, snapshot) in ready.iter().enumerate() {
                let parent = index.checked_sub(1).map(|before| &ready[before]);
                let parent_name = parent.map(|p| p.name.clone());
                if snapshot.sizes.as_ref().is_some_and(|sizes| sizes.delta_parent == parent_name) {
                    continue;
                }
                let Some(sizes) = self.measure(snapshot, parent) else { continue };
                let Ok(_guard) = self.locks.lock(&container.id, SAVE_WAIT) else { continue };
                // Re-read under the lock: it may have changed or gone meanwhile.
                match self.store.snapshot(&container.id, &snapshot.name)? {
                    Some(mut current) if current.location == snapshot.location => {
                        current.sizes = Some(sizes);
                        self.store.put_snapshots(&[&current])?;
                        measured += 1;
                    }
                    _ => {}
                }
            }
        }
        Ok(measured)
    }

    fn measure(&self, snapshot: &SnapshotRecord, parent: Option<&SnapshotRecord>) -> Option<SnapshotSizes> {
        let delta_bytes = match self.backend.delta_bytes(parent.map(|p| p.location.as_str()), &snapshot.location) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return None,
            Err(error) => {
                tracing::warn!(
                    snapshot = %snapshot.resource_name(), parent = ?parent.map(|p| &p.name), %error,
                    "could not measure the snapshot's delta"
                );
                return None;
            }
        };
        let exclusive_bytes = self.backend.exclusive_bytes(&snapshot.location).unwrap_or_else(|error| {
            tracing::warn!(snapshot = %snapshot.resource_name(), %error, "could not read the snapshot's exclusive bytes");
            None
        });
        Some(SnapshotSizes { delta_bytes, delta_parent: parent.map(|p| p.name.clone()), exclusive_bytes })
    }

    /// Resolves when snapshots were created or deleted since the last call,
    /// so sizes may need measuring.
    pub async fn sizes_stale(&self) {
        self.sizes_stale.notified().await
    }
}
