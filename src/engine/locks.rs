//! One lock per container: operations on one container are serialized,
//! operations on different containers run in parallel. A container whose
//! unfinished operation start-up recovery could not settle stays held: every
//! operation on it is refused with the reason until a later start settles it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::error::{EngineError, EngineResult};

#[derive(Default)]
pub struct ContainerLocks {
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Containers recovery could not settle, with what went wrong.
    unsettled: Mutex<BTreeMap<String, String>>,
}

/// Held while an operation works on a container.
pub struct ContainerGuard {
    _guard: parking_lot::lock_api::ArcMutexGuard<parking_lot::RawMutex, ()>,
}

impl ContainerLocks {
    /// Waits up to `wait` for the container's lock; `Busy` (ABORTED) after.
    /// Refused with `FailedPrecondition` while the container is unsettled.
    pub fn lock(&self, container: &str, wait: Duration) -> EngineResult<ContainerGuard> {
        if let Some(reason) = self.unsettled.lock().get(container) {
            return Err(EngineError::FailedPrecondition {
                reason: format!(
                    "container {container}: start-up recovery could not settle its unfinished operation ({reason}); \
                     see `rollpoint events --container {container}`, fix the cause and restart rollpointd"
                ),
            });
        }
        let lock = {
            let mut locks = self.locks.lock();
            locks.entry(container.to_owned()).or_default().clone()
        };
        match lock.try_lock_arc_for(wait) {
            Some(guard) => Ok(ContainerGuard { _guard: guard }),
            None => Err(EngineError::Busy { container: container.to_owned() }),
        }
    }

    /// Holds the container until the daemon restarts: recovery could not
    /// settle what it was doing.
    pub fn hold_unsettled(&self, container: &str, reason: String) {
        self.unsettled.lock().insert(container.to_owned(), reason);
    }

    /// Forgets the lock of a container that is gone.
    pub fn forget(&self, container: &str) {
        self.locks.lock().remove(container);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsettled_container_refuses_operations_with_the_reason() {
        let locks = ContainerLocks::default();
        locks.hold_unsettled("db-1", "mount busy".into());
        let refused = locks.lock("db-1", Duration::ZERO).err().expect("refused");
        assert!(
            matches!(&refused, EngineError::FailedPrecondition { reason } if reason.contains("mount busy")),
            "{refused}"
        );
        assert!(locks.lock("web-1", Duration::ZERO).is_ok(), "other containers go on");
    }
}
