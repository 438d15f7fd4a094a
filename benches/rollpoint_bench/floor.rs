//! The raw floor: the fewest steps that take the same snapshot or make the
//! same swap, measured directly, in the same run and on the same container
//! as the daemon's figures, so that each figure reads as a ratio to it.
//!
//! - Snapshot: `syncfs` of the volume, then, on a thread raised to
//!   SCHED_FIFO like the daemon's freeze thread: write `1` to
//!   `cgroup.freeze` and wait for `frozen 1` on `cgroup.events`
//!   (notifications, not a sleep loop), `BTRFS_IOC_SNAP_CREATE_V2`
//!   read-only, write `0` to `cgroup.freeze`. This is the library's
//!   [`CgroupFreezer`] and [`BtrfsBackend`]: that is the minimal path, with no
//!   gRPC, no store, no intent, no fsync of records.
//! - Revert: a writable snapshot of the target, `renameat2(RENAME_EXCHANGE)`
//!   with the volume, fsync of the folders.
//!
//! What the floor makes is deleted afterwards, outside the timing.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use rollpoint::backend::btrfs::BtrfsBackend;
use rollpoint::backend::Backend;
use rollpoint::freezer::{CgroupFreezer, Freezer};

use crate::setup::Fallible;

/// The freeze budget the daemon uses by default.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(2);

/// One floor snapshot.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotFloor {
    /// syncfs of the volume (dirty data written back before the freeze).
    pub flush: Duration,
    /// From the freeze request to the end of the thaw: the daemon's `frozen_for`.
    pub window: Duration,
}

impl SnapshotFloor {
    pub fn total(&self) -> Duration {
        self.flush + self.window
    }
}

pub struct Floor {
    freezer: CgroupFreezer,
    backend: BtrfsBackend,
    counter: AtomicU64,
}

impl Floor {
    pub fn new() -> Fallible<Floor> {
        Ok(Floor {
            freezer: CgroupFreezer::from_mountinfo()?,
            backend: BtrfsBackend::new(),
            counter: AtomicU64::new(0),
        })
    }

    /// Snapshots `volume` with its cgroup (`cgroup`, relative to the cgroup
    /// v2 mount) frozen, into `scratch/` (made on first use, on the same
    /// filesystem), then deletes the snapshot.
    pub fn snapshot(&self, cgroup: &str, volume: &Path, scratch: &Path) -> Fallible<SnapshotFloor> {
        let cgroup = self.freezer.resolve(cgroup)?;
        let source = volume.to_str().ok_or("volume path is not UTF-8")?.to_string();
        let location = self.location(scratch, "snap")?;
        let (freezer, backend, target) = (self.freezer.clone(), self.backend, location.clone());
        let sample = std::thread::spawn(move || take(&freezer, backend, &cgroup, &source, &target))
            .join()
            .map_err(|_| "floor thread panicked")??;
        self.backend.delete_snapshot(&location)?;
        Ok(sample)
    }

    /// The floor of a burst: every `(cgroup, volume)` snapshotted at once,
    /// one thread each, released together; the time until the last is done.
    pub fn snapshot_all(&self, containers: &[(&str, &Path)], scratch: &Path) -> Fallible<Duration> {
        let barrier = Arc::new(Barrier::new(containers.len() + 1));
        let mut threads = Vec::with_capacity(containers.len());
        let mut locations = Vec::with_capacity(containers.len());
        for (cgroup, volume) in containers {
            let cgroup = self.freezer.resolve(cgroup)?;
            let source = volume.to_str().ok_or("volume path is not UTF-8")?.to_string();
            let location = self.location(scratch, "snap")?;
            locations.push(location.clone());
            let (freezer, backend, barrier) = (self.freezer.clone(), self.backend, barrier.clone());
            threads.push(std::thread::spawn(move || {
                barrier.wait();
                take(&freezer, backend, &cgroup, &source, &location).map(|_| Instant::now())
            }));
        }
        barrier.wait();
        let started = Instant::now();
        let mut last = started;
        let mut first_error = None;
        for thread in threads {
            match thread.join().map_err(|_| "floor thread panicked".into()).and_then(|r| r) {
                Ok(done) => last = last.max(done),
                Err(error) => first_error = first_error.or(Some(error)),
            }
        }
        for location in &locations {
            self.backend.delete_snapshot(location)?;
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(last - started),
        }
    }

    /// Replaces `volume` with a writable snapshot of `target` (a read-only
    /// snapshot path) by one exchange, as a restore's swap does, and with
    /// `sync` then a `syncfs` of its filesystem inside the timing (two
    /// renames' worth of swap and a sync: the least a restore that makes
    /// its swap durable can do); the old volume is deleted afterwards.
    pub fn revert(&self, target: &str, volume: &Path, scratch: &Path, sync: bool) -> Fallible<Duration> {
        let volume_text = volume.to_str().ok_or("volume path is not UTF-8")?;
        let staging = self.location(scratch, "stage")?;
        let started = Instant::now();
        self.backend.create_snapshot(target, &staging, false)?;
        self.backend.exchange(&staging, volume_text)?;
        if sync {
            crate::setup::sync_fs(volume)?;
        }
        let took = started.elapsed();
        self.backend.delete_snapshot(&staging)?;
        Ok(took)
    }

    fn location(&self, scratch: &Path, prefix: &str) -> Fallible<String> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        Ok(scratch.join(format!("{prefix}-{n}")).to_str().ok_or("scratch path is not UTF-8")?.to_string())
    }
}

/// syncfs, then freeze, snapshot, thaw at SCHED_FIFO; runs on its own thread.
fn take(
    freezer: &CgroupFreezer,
    backend: BtrfsBackend,
    cgroup: &Path,
    source: &str,
    location: &str,
) -> Fallible<SnapshotFloor> {
    let started = Instant::now();
    crate::setup::sync_fs(Path::new(source))?;
    let flush = started.elapsed();
    raise_priority();
    let started = Instant::now();
    freezer.freeze(cgroup, FREEZE_TIMEOUT)?;
    let snapshot = backend.create_snapshot(source, location, true);
    freezer.thaw(cgroup)?;
    let window = started.elapsed();
    snapshot?;
    Ok(SnapshotFloor { flush, window })
}

/// SCHED_FIFO priority 10, as the daemon's freeze thread; without it (no
/// CAP_SYS_NICE) the floor is only less protected from preemption.
fn raise_priority() {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param
    // that outlives the call; a failure only leaves the priority as it was.
    let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
}
