//! One lock per container: operations on one container are serialized,
//! operations on different containers run in parallel.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::error::{EngineError, EngineResult};

#[derive(Default)]
pub struct ContainerLocks {
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

/// Held while an operation works on a container.
pub struct ContainerGuard {
    _guard: parking_lot::lock_api::ArcMutexGuard<parking_lot::RawMutex, ()>,
}

impl ContainerLocks {
    /// Waits up to `wait` for the container's lock; `Busy` (ABORTED) after.
    pub fn lock(&self, container: &str, wait: Duration) -> EngineResult<ContainerGuard> {
        let lock = {
            let mut locks = self.locks.lock();
            locks.entry(container.to_owned()).or_default().clone()
        };
        match lock.try_lock_arc_for(wait) {
            Some(guard) => Ok(ContainerGuard { _guard: guard }),
            None => Err(EngineError::Busy { container: container.to_owned() }),
        }
    }

    /// Forgets the lock of a container that is gone.
    pub fn forget(&self, container: &str) {
        self.locks.lock().remove(container);
    }
}
