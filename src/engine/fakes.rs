//! In-memory fakes of the backend and the freezer, for the engine's logic
//! tests (no root). They record what was asked of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;

use super::Clock;
use crate::backend::{Backend, BackendError, SnapshotDetails, VolumeInfo};
use crate::freezer::{FreezeState, Freezer, FreezerError};

#[derive(Default)]
pub struct FakeBackend {
    /// location -> read-only flag
    pub volumes: Mutex<BTreeMap<String, bool>>,
    /// Calls, in order ("flush", "snapshot <loc>", "delete <loc>").
    pub calls: Mutex<Vec<String>>,
    /// When set, create_snapshot sleeps this long (a hanging backend).
    pub snapshot_delay: Mutex<Option<Duration>>,
}

impl FakeBackend {
    pub fn with_volume(path: &str) -> Arc<Self> {
        let backend = FakeBackend::default();
        backend.volumes.lock().insert(path.to_owned(), false);
        Arc::new(backend)
    }

    pub fn exists(&self, location: &str) -> bool {
        self.volumes.lock().contains_key(location)
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

    fn location(&self, volume: &VolumeInfo, name: &str) -> String {
        volume.snapshot_dir.join(name).to_string_lossy().into_owned()
    }

    fn create_snapshot(&self, source: &str, location: &str, read_only: bool) -> Result<SnapshotDetails, BackendError> {
        let delay = *self.snapshot_delay.lock();
        if let Some(delay) = delay {
            std::thread::sleep(delay);
        }
        self.calls.lock().push(format!("snapshot {location}"));
        let mut volumes = self.volumes.lock();
        if !volumes.contains_key(source) {
            return Err(BackendError::NotFound { path: source.into() });
        }
        if volumes.insert(location.to_owned(), read_only).is_some() {
            return Err(BackendError::AlreadyExists { path: location.into() });
        }
        Ok(SnapshotDetails { location: location.into(), uuid: "fake-uuid".into(), generation: 1, read_only })
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), BackendError> {
        let mut volumes = self.volumes.lock();
        let flag = volumes.remove(from).ok_or_else(|| BackendError::NotFound { path: from.into() })?;
        volumes.insert(to.into(), flag);
        Ok(())
    }

    fn set_read_only(&self, location: &str, read_only: bool) -> Result<(), BackendError> {
        let mut volumes = self.volumes.lock();
        let flag = volumes.get_mut(location).ok_or_else(|| BackendError::NotFound { path: location.into() })?;
        *flag = read_only;
        Ok(())
    }

    fn delete_snapshot(&self, location: &str) -> Result<bool, BackendError> {
        self.calls.lock().push(format!("delete {location}"));
        Ok(self.volumes.lock().remove(location).is_some())
    }

    fn snapshot_exists(&self, location: &str) -> Result<bool, BackendError> {
        Ok(self.exists(location))
    }

    fn list_snapshots(&self, volume: &VolumeInfo) -> Result<Vec<String>, BackendError> {
        let prefix = volume.snapshot_dir.to_string_lossy().into_owned() + "/";
        Ok(self.volumes.lock().keys().filter(|k| k.starts_with(&prefix)).cloned().collect())
    }
}

#[derive(Default)]
pub struct FakeFreezer {
    pub states: Mutex<BTreeMap<PathBuf, FreezeState>>,
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
        Ok(())
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
