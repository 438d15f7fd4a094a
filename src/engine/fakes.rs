//! In-memory fakes of the backend and the freezer, for the engine's logic
//! tests (no root). They record what was asked of them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;

use super::Clock;
use crate::backend::{Backend, BackendError, FreeSpace, SnapshotDetails, VolumeInfo};
use crate::freezer::{FreezeState, Freezer, FreezerError};
use crate::lifecycle::{Lifecycle, LifecycleError};
use crate::store::ContainerRecord;

/// A volume of the fake backend: its content is a string, its uuid a
/// number given at creation, its generation bumped by each write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeVolume {
    pub read_only: bool,
    pub content: String,
    pub uuid: u64,
    pub generation: u64,
}

#[derive(Default)]
pub struct FakeBackend {
    pub volumes: Mutex<BTreeMap<String, FakeVolume>>,
    /// Calls, in order ("flush", "snapshot <loc>", "delete <loc>"...).
    pub calls: Mutex<Vec<String>>,
    /// When set, create_snapshot sleeps this long (a hanging backend).
    pub snapshot_delay: Mutex<Option<Duration>>,
    /// What exclusive_bytes answers, by location (`None` when absent).
    pub exclusive: Mutex<BTreeMap<String, u64>>,
    /// When set, exclusive_bytes fails (a pool whose metadata cannot be read).
    pub fail_exclusive: Mutex<bool>,
    /// When set, prepare_snapshot refuses (a thin pool above its threshold).
    pub pool_full: Mutex<bool>,
    /// Locations whose delete fails (a volume still in use).
    pub busy: Mutex<BTreeSet<String>>,
    /// What `free_space` answers (plenty, unless a test says otherwise).
    pub free_space: Mutex<FreeSpace>,
    /// Bytes each delete gives back to `free_space`.
    pub freed_per_delete: Mutex<u64>,
    next_uuid: Mutex<u64>,
}

impl FakeBackend {
    pub fn with_volume(path: &str) -> Arc<Self> {
        let backend = FakeBackend::default();
        backend.volumes.lock().insert(path.to_owned(), FakeVolume::default());
        Arc::new(backend)
    }

    pub fn exists(&self, location: &str) -> bool {
        self.volumes.lock().contains_key(location)
    }

    /// A container writing its volume.
    pub fn write(&self, location: &str, content: &str) {
        let mut volumes = self.volumes.lock();
        let volume = volumes.get_mut(location).expect("volume");
        assert!(!volume.read_only, "write to a read-only volume");
        volume.content = content.into();
        volume.generation += 1;
    }

    pub fn content(&self, location: &str) -> String {
        self.volumes.lock()[location].content.clone()
    }

    pub fn add(&self, location: &str, volume: FakeVolume) {
        self.volumes.lock().insert(location.into(), volume);
    }

    fn details_of(location: &str, volume: &FakeVolume) -> SnapshotDetails {
        SnapshotDetails {
            location: location.into(),
            uuid: format!("uuid-{}", volume.uuid),
            generation: volume.generation,
            read_only: volume.read_only,
        }
    }
}

impl Backend for FakeBackend {
    fn kind(&self) -> &'static str {
        "fake"
    }

    fn inspect(&self, volume: &str, container: &str) -> Result<VolumeInfo, BackendError> {
        if !self.exists(volume) {
            return Err(BackendError::NotSubvolume { path: volume.into() });
        }
        Ok(VolumeInfo { path: volume.into(), snapshot_dir: PathBuf::from("/fake/.rollpoint").join(container) })
    }

    fn flush(&self, _volume: &VolumeInfo) -> Result<(), BackendError> {
        self.calls.lock().push("flush".into());
        Ok(())
    }

    fn free_space(&self, _volume: &VolumeInfo) -> Result<FreeSpace, BackendError> {
        Ok(*self.free_space.lock())
    }

    fn location(&self, volume: &VolumeInfo, name: &str) -> String {
        volume.snapshot_dir.join(name).to_string_lossy().into_owned()
    }

    fn prepare_snapshot(&self, _source: &str, location: &str) -> Result<(), BackendError> {
        self.calls.lock().push(format!("prepare {location}"));
        if *self.pool_full.lock() {
            return Err(BackendError::PoolFull {
                pool: "vg0/pool".into(),
                data_percent: 95.0,
                metadata_percent: 10.0,
                threshold: 90.0,
            });
        }
        Ok(())
    }

    fn take_snapshot(&self, source: &str, location: &str, read_only: bool) -> Result<(), BackendError> {
        let delay = *self.snapshot_delay.lock();
        if let Some(delay) = delay {
            std::thread::sleep(delay);
        }
        self.calls.lock().push(format!("snapshot {location}"));
        let uuid = {
            let mut next = self.next_uuid.lock();
            *next += 1;
            *next
        };
        let mut volumes = self.volumes.lock();
        let source = volumes.get(source).ok_or_else(|| BackendError::NotFound { path: source.into() })?;
        let copy = FakeVolume { read_only, content: source.content.clone(), uuid, generation: source.generation };
        if volumes.contains_key(location) {
            return Err(BackendError::AlreadyExists { path: location.into() });
        }
        volumes.insert(location.to_owned(), copy);
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), BackendError> {
        self.calls.lock().push(format!("rename {from} {to}"));
        let mut volumes = self.volumes.lock();
        if volumes.contains_key(to) {
            return Err(BackendError::AlreadyExists { path: to.into() });
        }
        let volume = volumes.remove(from).ok_or_else(|| BackendError::NotFound { path: from.into() })?;
        volumes.insert(to.into(), volume);
        Ok(())
    }

    fn exchange(&self, a: &str, b: &str) -> Result<(), BackendError> {
        self.calls.lock().push(format!("exchange {a} {b}"));
        let mut volumes = self.volumes.lock();
        if !volumes.contains_key(a) || !volumes.contains_key(b) {
            return Err(BackendError::NotFound { path: a.into() });
        }
        let first = volumes.remove(a).expect("checked");
        let second = volumes.insert(b.into(), first).expect("checked");
        volumes.insert(a.into(), second);
        Ok(())
    }

    fn details(&self, location: &str) -> Result<SnapshotDetails, BackendError> {
        let volumes = self.volumes.lock();
        let volume = volumes.get(location).ok_or_else(|| BackendError::NotFound { path: location.into() })?;
        Ok(Self::details_of(location, volume))
    }

    fn set_read_only(&self, location: &str, read_only: bool) -> Result<(), BackendError> {
        let mut volumes = self.volumes.lock();
        let volume = volumes.get_mut(location).ok_or_else(|| BackendError::NotFound { path: location.into() })?;
        volume.read_only = read_only;
        Ok(())
    }

    fn delete_snapshot(&self, location: &str) -> Result<bool, BackendError> {
        self.calls.lock().push(format!("delete {location}"));
        if self.busy.lock().contains(location) {
            return Err(BackendError::Lvm { command: "delete".into(), detail: format!("{location} is in use") });
        }
        let removed = self.volumes.lock().remove(location).is_some();
        if removed {
            self.free_space.lock().free_bytes += *self.freed_per_delete.lock();
        }
        Ok(removed)
    }

    fn snapshot_exists(&self, location: &str) -> Result<bool, BackendError> {
        Ok(self.exists(location))
    }

    fn list_snapshots(&self, volume: &VolumeInfo) -> Result<Vec<String>, BackendError> {
        let prefix = volume.snapshot_dir.to_string_lossy().into_owned() + "/";
        Ok(self.volumes.lock().keys().filter(|k| k.starts_with(&prefix)).cloned().collect())
    }

    fn exclusive_bytes(&self, location: &str) -> Result<Option<u64>, BackendError> {
        self.calls.lock().push(format!("exclusive {location}"));
        if *self.fail_exclusive.lock() {
            return Err(BackendError::Lvm { command: "thin_ls".into(), detail: "device or resource busy".into() });
        }
        Ok(self.exclusive.lock().get(location).copied())
    }
}

/// Records stops and starts; can be told to fail.
#[derive(Default)]
pub struct FakeLifecycle {
    pub calls: Mutex<Vec<String>>,
    pub fail_stop: Mutex<bool>,
}

impl Lifecycle for FakeLifecycle {
    fn stop(&self, container: &ContainerRecord) -> Result<(), LifecycleError> {
        self.calls.lock().push(format!("stop {}", container.id));
        if *self.fail_stop.lock() {
            return Err(LifecycleError::Failed {
                what: "stop command",
                program: "/fake".into(),
                status: "exit status: 1".into(),
                output: "refused".into(),
            });
        }
        Ok(())
    }

    fn start(&self, container: &ContainerRecord) -> Result<(), LifecycleError> {
        self.calls.lock().push(format!("start {}", container.id));
        Ok(())
    }
}

#[derive(Default)]
pub struct FakeFreezer {
    pub states: Mutex<BTreeMap<PathBuf, FreezeState>>,
    /// Cgroups with processes in them (none unless a test says so).
    pub running: Mutex<BTreeSet<PathBuf>>,
    /// "freeze <cg>" / "thaw <cg>", in order.
    pub calls: Mutex<Vec<String>>,
}

impl FakeFreezer {
    pub fn with_cgroup(path: &str) -> Arc<Self> {
        let freezer = FakeFreezer::default();
        freezer.states.lock().insert(path.into(), FreezeState::Thawed);
        Arc::new(freezer)
    }

    pub fn state_of(&self, path: &str) -> FreezeState {
        self.states.lock()[Path::new(path)]
    }

    pub fn set(&self, path: &str, state: FreezeState) {
        self.states.lock().insert(path.into(), state);
    }
}

impl Freezer for FakeFreezer {
    fn resolve(&self, cgroup: &str) -> Result<PathBuf, FreezerError> {
        let path = PathBuf::from(cgroup);
        if self.states.lock().contains_key(&path) {
            Ok(path)
        } else {
            Err(FreezerError::NotFound { cgroup: cgroup.into() })
        }
    }

    fn state(&self, cgroup: &Path) -> Result<FreezeState, FreezerError> {
        self.states
            .lock()
            .get(cgroup)
            .copied()
            .ok_or_else(|| FreezerError::NotFound { cgroup: cgroup.display().to_string() })
    }

    fn freeze(&self, cgroup: &Path, _timeout: Duration) -> Result<(), FreezerError> {
        self.calls.lock().push(format!("freeze {}", cgroup.display()));
        self.states.lock().insert(cgroup.into(), FreezeState::Frozen);
        Ok(())
    }

    fn thaw(&self, cgroup: &Path) -> Result<(), FreezerError> {
        self.calls.lock().push(format!("thaw {}", cgroup.display()));
        self.states.lock().insert(cgroup.into(), FreezeState::Thawed);
        Ok(())
    }

    fn kill_all(&self, cgroup: &Path, _timeout: Duration) -> Result<(), FreezerError> {
        self.calls.lock().push(format!("kill {}", cgroup.display()));
        self.running.lock().remove(cgroup);
        Ok(())
    }

    fn populated(&self, cgroup: &Path) -> Result<bool, FreezerError> {
        Ok(self.running.lock().contains(cgroup))
    }
}

/// A clock the test moves by hand.
pub struct FakeClock(pub Mutex<DateTime<Utc>>);

impl FakeClock {
    pub fn at(time: DateTime<Utc>) -> Arc<Self> {
        Arc::new(FakeClock(Mutex::new(time)))
    }

    pub fn advance(&self, by: chrono::Duration) {
        *self.0.lock() += by;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock()
    }
}
