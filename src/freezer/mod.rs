//! Freezer layer: stops and resumes every process of a container's cgroup.
//!
//! cgroup v2 (`cgroup.freeze` / `cgroup.events`) first, cgroup v1
//! (`freezer.state`) as a fallback. The engine only sees the [`Freezer`] trait,
//! so its logic is unit-tested against an in-memory fake.

use std::path::{Path, PathBuf};
use std::time::Duration;

mod cgroup;
mod cgroup_v1;
mod cgroup_v2;
mod control_files;
mod error;
pub use cgroup::CgroupFreezer;
pub use error::FreezerError;

/// What a cgroup's freezer says right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezeState {
    /// Every task runs.
    Thawed,
    /// A freeze was asked for and not every task has stopped yet.
    Freezing,
    /// Every task is stopped.
    Frozen,
}

/// Freezes and thaws cgroups.
///
/// All calls are blocking and bounded: they never wait longer than the
/// timeout they are given.
pub trait Freezer: Send + Sync + 'static {
    /// Resolves a cgroup as given by an operator (absolute, or relative to the
    /// cgroup v2 mount) to the absolute directory, checking that it exists and
    /// can be frozen. Never returns a path outside the cgroup mounts.
    fn resolve(&self, cgroup: &str) -> Result<PathBuf, FreezerError>;

    /// Reads the freezer state of a resolved cgroup.
    fn state(&self, cgroup: &Path) -> Result<FreezeState, FreezerError>;

    /// Freezes the cgroup and waits (on change notifications, not by polling
    /// in a loop) until every task is stopped, or `timeout` runs out. On a
    /// timeout the cgroup is thawed again before the error is returned.
    fn freeze(&self, cgroup: &Path, timeout: Duration) -> Result<(), FreezerError>;

    /// Thaws the cgroup. Thawing a thawed cgroup is a no-op.
    fn thaw(&self, cgroup: &Path) -> Result<(), FreezerError>;

    /// Kills every process in the cgroup (`cgroup.kill` on v2; SIGKILL to each
    /// pid in `cgroup.procs` of a frozen group on v1) and waits up to
    /// `timeout` for it to be empty.
    fn kill_all(&self, cgroup: &Path, timeout: Duration) -> Result<(), FreezerError>;

    /// Whether any process is in the cgroup (v2: in it or below it). A
    /// cgroup that does not exist (systemd removes a stopped unit's) is
    /// empty.
    fn populated(&self, cgroup: &Path) -> Result<bool, FreezerError>;
}
