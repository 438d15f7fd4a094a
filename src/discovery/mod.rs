//! Finding the containers a host runs, from their managers: systemd-machined
//! over the system bus, and Podman through its JSON output. A leaf layer: it
//! says what each manager reports (name, cgroup, candidate volumes, how to
//! stop and start it); whether that can be registered is the engine's call,
//! since only the freezer and the backend know.

pub mod machined;
pub mod podman;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::LifecycleSpec;

/// A container manager discovery asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Machined,
    Podman,
}

impl Source {
    pub const ALL: [Source; 2] = [Source::Machined, Source::Podman];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Machined => "machined",
            Source::Podman => "podman",
        }
    }

    pub fn parse(name: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|source| source.as_str() == name)
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One container as its manager reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub source: Source,
    /// The manager's name for it (machine name, Podman container name).
    pub name: String,
    /// A rollpoint container id made from the name (`names::container_id`
    /// rules: a-z, 0-9, '-').
    pub suggested_id: String,
    pub running: bool,
    /// Its cgroup v2 group as /proc/PID/cgroup prints it; `None` when it
    /// runs nothing or sits in no v2 group (`problem` says which).
    pub cgroup: Option<String>,
    /// Paths that may hold its data, the most likely first (a machine's
    /// root; a Podman container's root on the btrfs driver, then the
    /// sources of its volumes and bind mounts).
    pub volumes: Vec<PathBuf>,
    pub lifecycle: LifecycleSpec,
    /// Why the manager's own report rules it out (not running, a virtual
    /// machine, cgroup v1 only, ...).
    pub problem: Option<String>,
}

/// Where and how to look.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveryConfig {
    pub sources: Vec<Source>,
    /// Podman's argv before its verb (absolute program path).
    pub podman: Vec<String>,
    /// Time allowed to each stop and start of a found container.
    pub lifecycle_timeout: Duration,
    /// Time allowed to one manager's answer.
    pub timeout: Duration,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            sources: Source::ALL.to_vec(),
            podman: vec![crate::lifecycle::DEFAULT_PODMAN.to_owned()],
            lifecycle_timeout: Duration::from_secs(30),
            timeout: Duration::from_secs(20),
        }
    }
}

/// What a scan found, and the managers that could not be asked (absent,
/// not running, refusing) with why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    pub found: Vec<Found>,
    pub unavailable: Vec<(Source, String)>,
}

impl Scan {
    /// Whether `source` answered (so what it did not list is gone).
    pub fn answered(&self, source: Source) -> bool {
        !self.unavailable.iter().any(|(s, _)| *s == source)
    }
}

/// Asks each configured manager, all at once, each within the timeout.
pub async fn scan(config: &DiscoveryConfig) -> Scan {
    let machined = async {
        if !config.sources.contains(&Source::Machined) {
            return None;
        }
        Some(within(config.timeout, machined::list(config)).await.map_err(|e| (Source::Machined, e)))
    };
    let podman = async {
        if !config.sources.contains(&Source::Podman) {
            return None;
        }
        Some(within(config.timeout, podman::list(config)).await.map_err(|e| (Source::Podman, e)))
    };
    let (machined, podman) = tokio::join!(machined, podman);
    let mut scan = Scan::default();
    for outcome in [machined, podman].into_iter().flatten() {
        match outcome {
            Ok(found) => scan.found.extend(found),
            Err(unavailable) => scan.unavailable.push(unavailable),
        }
    }
    scan.found.sort_by(|a, b| (a.source, &a.name).cmp(&(b.source, &b.name)));
    scan
}

async fn within<T>(timeout: Duration, work: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::time::timeout(timeout, work).await.unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
}

/// A container id from a manager's name: lower case, every run of other
/// characters than a-z and 0-9 one '-', at most 63 characters, trimmed of
/// '-' at both ends; "container" if nothing is left.
pub fn suggested_id(name: &str) -> String {
    let mut id = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            id.push(c);
        } else if !id.ends_with('-') {
            id.push('-');
        }
    }
    let id: String = id.trim_matches('-').chars().take(63).collect();
    let id = id.trim_end_matches('-');
    if id.is_empty() {
        "container".to_owned()
    } else {
        id.to_owned()
    }
}

/// The cgroup of `pid` for a found container, or why there is none.
fn cgroup_of(pid: u32) -> Result<String, String> {
    match crate::sys::proc_cgroup::v2_cgroup_of(pid) {
        Ok(Some(group)) => Ok(group),
        Ok(None) => Err(format!("process {pid} is in no cgroup v2 group (cgroup v1 only)")),
        Err(error) => Err(format!("cannot read the cgroup of process {pid}: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_names() {
        assert_eq!(suggested_id("db-1"), "db-1");
        assert_eq!(suggested_id("My_App.v2"), "my-app-v2");
        assert_eq!(suggested_id("__x__"), "x");
        assert_eq!(suggested_id("..."), "container");
        assert_eq!(suggested_id(&"a".repeat(80)).len(), 63);
        assert_eq!(suggested_id(&format!("{}_b", "a".repeat(62))), "a".repeat(62));
    }

    #[test]
    fn sources_have_names() {
        for source in Source::ALL {
            assert_eq!(Source::parse(source.as_str()), Some(source));
        }
        assert_eq!(Source::parse("docker"), None);
    }
}
