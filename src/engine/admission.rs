//! Admission: past the in-flight limit a call waits its turn instead of being
//! turned away, because a whole fleet's nightly entries fire in the same
//! second and a refused snapshot is a rollback point that silently does not
//! exist. The queue is FIFO (tokio's semaphore hands out permits in the order
//! they were asked for), bounded, and a wait never outlives the call's own
//! deadline. A waiter whose future is dropped (client gone, deadline passed)
//! leaves the queue at once and its call never runs.
//!
//! Calls for one container also take that container's turn first, in arrival
//! order, so two calls for one container run in the order they arrived: the
//! container lock alone would let whichever blocking thread runs first win.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::error::{EngineError, EngineResult};

/// What a refused caller is told to wait before trying again. The queue
/// drains at the pace of the operations in flight, which are metadata
/// operations of a few milliseconds each, so a second is ample.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Bounds of one admission queue.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionLimits {
    pub max_in_flight: usize,
    pub max_queued: usize,
    /// How long a call without a deadline of its own may wait.
    pub default_wait: Duration,
}

pub struct Admission {
    limits: AdmissionLimits,
    slots: Arc<Semaphore>,
    queued: AtomicUsize,
    turns: Arc<ContainerTurns>,
}

/// Held while an admitted call runs; dropping it lets the next one in.
pub struct Admitted {
    _turn: Option<ContainerTurn>,
    _slot: OwnedSemaphorePermit,
    /// How long the call waited in the queue.
    pub waited: Duration,
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Self {
        Admission {
            slots: Arc::new(Semaphore::new(limits.max_in_flight.max(1))),
            limits,
            queued: AtomicUsize::new(0),
            turns: Arc::default(),
        }
    }

    /// Calls waiting for a slot or for their container's turn.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// The bounds this queue was made with.
    pub fn limits(&self) -> AdmissionLimits {
        self.limits
    }

    /// Calls holding a slot.
    pub fn in_flight(&self) -> usize {
        self.limits.max_in_flight.max(1).saturating_sub(self.slots.available_permits())
    }

    /// Waits for a slot (and the container's turn) up to `deadline`, or the
    /// default wait when the call has none. A full queue is refused at once
    /// and an expired default wait with RESOURCE_EXHAUSTED (`Overloaded`); a
    /// passed deadline with DEADLINE_EXCEEDED.
    pub async fn admit(&self, container: Option<&str>, deadline: Option<Duration>) -> EngineResult<Admitted> {
        let arrived = Instant::now();
        let mut turn = container.map(|container| ContainerTurn::claim(&self.turns, container));
        if turn.as_mut().is_none_or(ContainerTurn::try_take) {
            if let Ok(slot) = self.slots.clone().try_acquire_owned() {
                return Ok(Admitted { _turn: turn, _slot: slot, waited: Duration::ZERO });
            }
        }
        let _place = self.reserve_place()?;
        let wait = deadline.unwrap_or(self.limits.default_wait);
        let slot = tokio::time::timeout(wait, async {
            if let Some(turn) = turn.as_mut() {
                turn.take().await;
            }
            self.slots.clone().acquire_owned().await
        })
        .await;
        match slot {
            Ok(Ok(slot)) => Ok(Admitted { _turn: turn, _slot: slot, waited: arrived.elapsed() }),
            Ok(Err(closed)) => Err(EngineError::Internal { reason: format!("admission: {closed}") }),
            Err(_elapsed) if deadline.is_some() => Err(EngineError::DeadlineExceeded {
                reason: format!(
                    "the call's deadline ({wait:?}) passed while it waited for one of the {} operation slots; it was not run",
                    self.limits.max_in_flight
                ),
            }),
            Err(_elapsed) => Err(EngineError::Overloaded {
                reason: format!(
                    "waited {wait:?} (admission_wait_ms) for one of the {} operation slots; it was not run",
                    self.limits.max_in_flight
                ),
                retry_after: RETRY_AFTER,
            }),
        }
    }

    fn reserve_place(&self) -> EngineResult<QueuePlace<'_>> {
        let max = self.limits.max_queued;
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| (queued < max).then_some(queued + 1))
            .map_err(|_| EngineError::Overloaded {
                reason: format!(
                    "{max} calls are already waiting for one of the {} operation slots (max_queued_operations)",
                    self.limits.max_in_flight
                ),
                retry_after: RETRY_AFTER,
            })?;
        Ok(QueuePlace { queued: &self.queued })
    }
}

/// A place in the queue, given back however the wait ends.
struct QueuePlace<'a> {
    queued: &'a AtomicUsize,
}

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One fair (FIFO) lock per container with calls in the queue or running,
/// with how many such calls there are, so that the entry goes away with the
/// last of them instead of growing with every name ever asked for.
#[derive(Default)]
struct ContainerTurns {
    by_container: Mutex<HashMap<String, TurnEntry>>,
}

/// A container's turn lock and how many calls hold or wait for it.
type TurnEntry = (Arc<tokio::sync::Mutex<()>>, usize);

struct ContainerTurn {
    turns: Arc<ContainerTurns>,
    container: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    held: Option<OwnedMutexGuard<()>>,
}

impl ContainerTurn {
    fn claim(turns: &Arc<ContainerTurns>, container: &str) -> Self {
        let lock = {
            let mut by_container = turns.by_container.lock();
            let (lock, users) = by_container.entry(container.to_owned()).or_default();
            *users += 1;
            lock.clone()
        };
        ContainerTurn { turns: turns.clone(), container: container.to_owned(), lock, held: None }
    }

    fn try_take(&mut self) -> bool {
        self.held = self.lock.clone().try_lock_owned().ok();
        self.held.is_some()
    }

    async fn take(&mut self) {
        if self.held.is_none() {
            self.held = Some(self.lock.clone().lock_owned().await);
        }
    }
}

impl Drop for ContainerTurn {
    fn drop(&mut self) {
        let mut by_container = self.turns.by_container.lock();
        self.held = None;
        if let Some((_, users)) = by_container.get_mut(&self.container) {
            *users -= 1;
            if *users == 0 {
                by_container.remove(&self.container);
            }
        }
    }
}

#[cfg(test)]
impl Admission {
    /// Containers with calls queued or running, to check nothing is left.
    pub fn containers_with_turns(&self) -> usize {
        self.turns.by_container.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE_SLOT: AdmissionLimits =
        AdmissionLimits { max_in_flight: 1, max_queued: 10, default_wait: Duration::from_secs(60) };

    type AdmittedNames = Arc<parking_lot::Mutex<Vec<&'static str>>>;

    /// Starts a call named `name` that records itself once admitted, and
    /// returns when it is queued (so calls queue in the order started).
    async fn queue_call(
        admission: &Arc<Admission>,
        container: Option<&'static str>,
        name: &'static str,
        admitted: &AdmittedNames,
    ) -> tokio::task::JoinHandle<EngineResult<()>> {
        let queued_before = admission.queued();
        let (queue, admitted) = (admission.clone(), admitted.clone());
        let call = tokio::spawn(async move {
            let _slot = queue.admit(container, None).await?;
            admitted.lock().push(name);
            Ok(())
        });
        while admission.queued() == queued_before {
            tokio::task::yield_now().await;
        }
        call
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_calls_are_admitted_in_arrival_order() {
        let admission = Arc::new(Admission::new(ONE_SLOT));
        let admitted = AdmittedNames::default();
        let holder = admission.admit(None, None).await.unwrap();
        let mut calls = Vec::new();
        for name in ["first", "second", "third", "fourth"] {
            calls.push(queue_call(&admission, None, name, &admitted).await);
        }
        assert!(admitted.lock().is_empty(), "nobody passes the call holding the only slot");
        drop(holder);
        for call in calls {
            call.await.unwrap().unwrap();
        }
        assert_eq!(*admitted.lock(), ["first", "second", "third", "fourth"]);
        assert_eq!(admission.queued(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_refuses_at_once_and_says_when_to_retry() {
        let limits = AdmissionLimits { max_queued: 2, ..ONE_SLOT };
        let admission = Arc::new(Admission::new(limits));
        let admitted = AdmittedNames::default();
        let holder = admission.admit(None, None).await.unwrap();
        let waiting =
            [queue_call(&admission, None, "a", &admitted).await, queue_call(&admission, None, "b", &admitted).await];
        let before = Instant::now();
        let refused = admission.admit(None, None).await.err().expect("refused");
        assert!(
            matches!(&refused, EngineError::Overloaded { retry_after, .. } if *retry_after == RETRY_AFTER),
            "{refused}"
        );
        assert_eq!(Instant::now(), before, "refused without waiting");
        assert!(refused.to_string().contains("max_queued_operations"), "{refused}");
        drop(holder);
        for call in waiting {
            call.await.unwrap().unwrap();
        }
        assert_eq!(*admitted.lock(), ["a", "b"], "the queued calls still run");
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_that_passes_in_the_queue_is_deadline_exceeded_and_leaves_it() {
        let admission = Admission::new(ONE_SLOT);
        let _holder = admission.admit(None, None).await.unwrap();
        let before = Instant::now();
        let late = admission.admit(None, Some(Duration::from_millis(50))).await.err().expect("refused");
        assert!(matches!(late, EngineError::DeadlineExceeded { .. }), "{late}");
        assert_eq!(Instant::now() - before, Duration::from_millis(50), "waited exactly its deadline");
        assert_eq!(admission.queued(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_deadline_the_wait_ends_at_admission_wait_with_retry_info() {
        let admission = Admission::new(ONE_SLOT);
        let _holder = admission.admit(None, None).await.unwrap();
        let before = Instant::now();
        let refused = admission.admit(None, None).await.err().expect("refused");
        assert!(matches!(refused, EngineError::Overloaded { .. }), "{refused}");
        assert_eq!(Instant::now() - before, ONE_SLOT.default_wait);
        assert_eq!(admission.queued(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_gone_while_waiting_leaves_the_queue_and_never_runs() {
        let admission = Arc::new(Admission::new(ONE_SLOT));
        let admitted = AdmittedNames::default();
        let holder = admission.admit(Some("db-1"), None).await.unwrap();
        let gone = queue_call(&admission, Some("db-1"), "gone", &admitted).await;
        let stays = queue_call(&admission, Some("db-1"), "stays", &admitted).await;
        gone.abort();
        assert!(gone.await.unwrap_err().is_cancelled());
        assert_eq!(admission.queued(), 1, "only the caller still there waits");
        drop(holder);
        stays.await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(*admitted.lock(), ["stays"]);
        assert_eq!(admission.containers_with_turns(), 0, "no turn is left behind");
    }

    #[tokio::test(start_paused = true)]
    async fn calls_for_one_container_run_in_arrival_order_others_go_past() {
        let limits = AdmissionLimits { max_in_flight: 4, ..ONE_SLOT };
        let admission = Arc::new(Admission::new(limits));
        let admitted = AdmittedNames::default();
        let holder = admission.admit(Some("db-1"), None).await.unwrap();
        let first = queue_call(&admission, Some("db-1"), "db-1 first", &admitted).await;
        let second = queue_call(&admission, Some("db-1"), "db-1 second", &admitted).await;
        // A free slot and a free container: admitted without queueing.
        let _other = admission.admit(Some("web-1"), None).await.unwrap();
        assert!(admitted.lock().is_empty(), "db-1's calls wait for the call before them");
        drop(holder);
        first.await.unwrap().unwrap();
        second.await.unwrap().unwrap();
        assert_eq!(*admitted.lock(), ["db-1 first", "db-1 second"]);
        assert_eq!(admission.containers_with_turns(), 1, "web-1 still runs");
    }
}
