//! The daemon's configuration: a TOML file (default
//! `/etc/rollpoint/rollpointd.toml`), every setting optional, overridable by
//! command-line flags. A missing or empty file means the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::discovery::{DiscoveryConfig, Source};
use crate::engine::EngineConfig;
use crate::remote::config::check_name;
use crate::remote::RemoteConfig;

pub const DEFAULT_CONFIG: &str = "/etc/rollpoint/rollpointd.toml";
pub const DEFAULT_SOCKET: &str = "/run/rollpoint/rollpointd.sock";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/rollpoint";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Unix socket the daemon listens on (mode 0660).
    pub socket: PathBuf,
    /// Where the store lives.
    pub state_dir: PathBuf,
    /// TCP address to listen on as well; none by default.
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain and key for TLS on the TCP listener.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Listen on a non-loopback address without TLS. Off: such a listener is
    /// refused, since bearer tokens would cross the network in clear.
    pub insecure_listen: bool,
    /// A snapshot on an LVM thin pool filled above this percentage (data or
    /// metadata) is refused with RESOURCE_EXHAUSTED: a full thin pool turns
    /// its filesystems read-only.
    pub lvm_pool_threshold_percent: f64,
    /// Members of this group may use the Unix socket, besides root.
    pub socket_group: String,
    /// More uids allowed on the Unix socket.
    pub allowed_uids: Vec<u32>,
    /// Longest time a container may stay frozen, in milliseconds.
    pub freeze_budget_ms: u64,
    /// How long an operation waits for another on the same container before
    /// it is refused as busy, in milliseconds.
    pub lock_wait_ms: u64,
    /// Expiry of pre-restore snapshots, in days (0 = never).
    pub pre_restore_expiry_days: u32,
    /// A schedule occurrence missed (daemon down, clock jump) fires once,
    /// late, if it is at most this old (seconds); older ones are recorded as
    /// missed.
    pub schedule_grace_seconds: u64,
    /// Most operations in flight at once (reads and changes each); more wait
    /// their turn, first come first served.
    pub max_concurrent_operations: usize,
    /// Most calls waiting for a turn (reads and changes each); more are
    /// refused with RESOURCE_EXHAUSTED. Each waiting call holds its request
    /// and its HTTP/2 stream, a few KiB.
    pub max_queued_operations: usize,
    /// How long a call without a deadline of its own (`grpc-timeout`) waits
    /// for its turn before it is refused with RESOURCE_EXHAUSTED, in
    /// milliseconds.
    pub admission_wait_ms: u64,
    /// Longest a REST request may take, reading its body included (the live
    /// event stream excepted), in milliseconds: past it the client is
    /// answered 408 and the connection's slot freed.
    pub rest_request_timeout_ms: u64,
    /// Events older than this many days are pruned (0 = keep forever).
    pub event_retention_days: u32,
    /// Most events the timeline keeps: past it the oldest are pruned (every
    /// minute), whatever their age (0 = no limit). Bounds the store, and the
    /// daemon's memory with it, on a busy host.
    pub event_limit: u64,
    /// This host's name in the manifests it exports; default: the kernel's
    /// host name.
    pub host_name: Option<String>,
    /// Remotes for off-host copies: `[remotes.NAME]` tables (see
    /// `remote::config`).
    pub remotes: BTreeMap<String, RemoteConfig>,
    /// btrfs mount points whose `.rollpoint` folders hold containers: at
    /// start their records beside the data are checked against the store,
    /// and `rollpoint recover` scans them (besides the filesystems of the
    /// containers the store knows). Name them all, so that a lost store is
    /// noticed.
    pub filesystems: Vec<PathBuf>,
    /// LVM volume groups holding thin-volume containers: their metadata
    /// volumes (`rp--meta`, the records beside the snapshots) are checked
    /// at start and scanned by `rollpoint recover`, as `filesystems` are.
    pub volume_groups: Vec<String>,
    /// Loopback address of the run listener, where the command of a schedule
    /// entry bound to a container reaches the daemon through its `$SNAP_URL`
    /// (port 0: one the kernel picks at each start); `off`: no run listener,
    /// and runs get no `SNAP_URL`.
    pub schedule_listen: String,
    /// Loopback address of a listener that serves only `GET /metrics` and
    /// `GET /healthz`, without credentials, for a local Prometheus (or its
    /// agent) that holds no token; `off` (the default): none. The socket
    /// and the TCP listener (with the `metrics:read` scope) serve
    /// `/metrics` either way.
    pub metrics_listen: String,
    /// Retention of the snapshots of containers without a policy of their
    /// own: `[retention]` with `last`, `hourly`, `daily`, `weekly`,
    /// `monthly`, `yearly`, `min` (counts; see README "Retention"). Empty:
    /// only each snapshot's expiry removes it.
    pub retention: crate::store::RetentionPolicy,
    /// Retention of pre-restore snapshots, likewise (`[pre_restore_retention]`);
    /// they also expire after `pre_restore_expiry_days`.
    pub pre_restore_retention: crate::store::RetentionPolicy,
    /// Free space a filesystem (or thin pool) keeps, in percent of its
    /// size: below it, retention prunes the oldest snapshots beyond each
    /// policy's minimum, and a new snapshot that cannot be made room for is
    /// refused with RESOURCE_EXHAUSTED. 0 turns the guard off.
    pub space_floor_percent: f64,
    /// Finding containers from their managers: `[discovery]` (see
    /// [`DiscoverySettings`]).
    pub discovery: DiscoverySettings,
    /// The store's page cache, in MiB (at least 1): more keeps more of a
    /// large store's records in memory, less keeps the daemon smaller.
    pub store_cache_mib: u64,
}

/// `[discovery]`: which managers `rollpoint discover` asks, and which of
/// them the daemon follows by itself.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoverySettings {
    /// Managers asked: "machined" (systemd-machined on the system bus),
    /// "podman". One that is absent is reported as unavailable, not an error.
    pub sources: Vec<String>,
    /// Podman's command line before its verb; the first word an absolute path.
    pub podman: Vec<String>,
    /// Managers whose containers the daemon registers by itself (at start
    /// and every `interval_seconds`), marking those that vanish; none by default.
    pub auto_register: Vec<String>,
    /// Seconds between two scans of the `auto_register` managers.
    pub interval_seconds: u64,
    /// Time allowed to each stop and start of a discovered container, in seconds.
    pub lifecycle_timeout_seconds: u64,
}

impl Default for DiscoverySettings {
    fn default() -> Self {
        let defaults = DiscoveryConfig::default();
        DiscoverySettings {
            sources: Source::ALL.iter().map(|s| s.as_str().to_owned()).collect(),
            podman: defaults.podman,
            auto_register: Vec::new(),
            interval_seconds: 60,
            lifecycle_timeout_seconds: defaults.lifecycle_timeout.as_secs(),
        }
    }
}

impl DiscoverySettings {
    /// The scan settings, checked.
    pub fn scan(&self) -> Result<DiscoveryConfig, String> {
        let sources = sources("discovery.sources", &self.sources)?;
        if !self.podman.first().is_some_and(|program| program.starts_with('/')) {
            return Err("discovery.podman: the first word must be an absolute path (e.g. /usr/bin/podman)".into());
        }
        if !(1..=3600).contains(&self.lifecycle_timeout_seconds) {
            return Err("discovery.lifecycle_timeout_seconds: must be between 1 and 3600".into());
        }
        Ok(DiscoveryConfig {
            sources,
            podman: self.podman.clone(),
            lifecycle_timeout: Duration::from_secs(self.lifecycle_timeout_seconds),
            ..DiscoveryConfig::default()
        })
    }

    /// The managers followed by the daemon, and how often they are scanned.
    pub fn following(&self) -> Result<(Vec<Source>, Duration), String> {
        let followed = sources("discovery.auto_register", &self.auto_register)?;
        if !followed.is_empty() && self.interval_seconds < 5 {
            return Err("discovery.interval_seconds: must be at least 5".into());
        }
        Ok((followed, Duration::from_secs(self.interval_seconds)))
    }
}

fn sources(field: &str, names: &[String]) -> Result<Vec<Source>, String> {
    names
        .iter()
        .map(|name| Source::parse(name).ok_or_else(|| format!("{field}: {name:?} is not a manager (machined, podman)")))
        .collect()
}

/// `schedule_listen = "off"`, `metrics_listen = "off"`.
pub const LISTENER_OFF: &str = "off";

impl Default for Config {
    fn default() -> Self {
        let engine = EngineConfig::default();
        Config {
            socket: DEFAULT_SOCKET.into(),
            state_dir: DEFAULT_STATE_DIR.into(),
            listen: None,
            tls_cert: None,
            tls_key: None,
            insecure_listen: false,
            lvm_pool_threshold_percent: 90.0,
            socket_group: "rollpoint".into(),
            allowed_uids: Vec::new(),
            freeze_budget_ms: millis(engine.freeze_budget),
            lock_wait_ms: millis(engine.lock_wait),
            pre_restore_expiry_days: engine.pre_restore_expiry_days,
            event_retention_days: 90,
            event_limit: 100_000,
            schedule_grace_seconds: 3600,
            max_concurrent_operations: engine.max_concurrent_operations,
            host_name: None,
            remotes: BTreeMap::new(),
            filesystems: Vec::new(),
            volume_groups: Vec::new(),
            max_queued_operations: engine.max_queued_operations,
            admission_wait_ms: millis(engine.admission_wait),
            rest_request_timeout_ms: millis(crate::api::rest::REQUEST_TIMEOUT),
            schedule_listen: "127.0.0.1:0".into(),
            metrics_listen: LISTENER_OFF.into(),
            retention: engine.retention,
            pre_restore_retention: engine.pre_restore_retention,
            space_floor_percent: engine.space_floor_percent,
            discovery: DiscoverySettings::default(),
            store_cache_mib: crate::store::DEFAULT_CACHE_BYTES >> 20,
        }
    }
}

/// A loopback `address:port` of the setting `field`, or none for `off`;
/// `why` says why only loopback is taken.
fn loopback_listener(field: &str, value: &str, why: &str) -> Result<Option<SocketAddr>, String> {
    if value == LISTENER_OFF {
        return Ok(None);
    }
    let address: SocketAddr =
        value.parse().map_err(|_| format!("{field}: {value:?} is not an address:port (or \"off\")"))?;
    if !address.ip().is_loopback() {
        return Err(format!("{field}: {address} is not a loopback address ({why})"));
    }
    Ok(Some(address))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
}

impl Config {
    /// Reads `path`; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text).map_err(|message| ConfigError::Parse { path: path.to_owned(), message }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read { path: path.to_owned(), source }),
        }
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        if config.tls_cert.is_some() != config.tls_key.is_some() {
            return Err("tls_cert and tls_key: give both or neither".into());
        }
        if !(1.0..=100.0).contains(&config.lvm_pool_threshold_percent) {
            return Err("lvm_pool_threshold_percent: must be between 1 and 100".into());
        }
        for (name, remote) in &config.remotes {
            check_name(name).map_err(|reason| format!("remotes.{name}: {reason}"))?;
            remote.location().map_err(|reason| format!("remotes.{name}: {reason}"))?;
        }
        if !(0.0..=90.0).contains(&config.space_floor_percent) {
            return Err("space_floor_percent: must be between 0 and 90".into());
        }
        if !(1..=1 << 20).contains(&config.store_cache_mib) {
            return Err("store_cache_mib: must be between 1 and 1048576".into());
        }
        if !(100..=3_600_000).contains(&config.rest_request_timeout_ms) {
            return Err("rest_request_timeout_ms: must be between 100 and 3600000".into());
        }
        if config.freeze_budget_ms == 0 {
            return Err("freeze_budget_ms: must be at least 1".into());
        }
        config.run_listener()?;
        config.metrics_listener()?;
        config.discovery.scan()?;
        config.discovery.following()?;
        Ok(config)
    }

    /// The address of the run listener; none when `schedule_listen = "off"`.
    pub fn run_listener(&self) -> Result<Option<SocketAddr>, String> {
        loopback_listener("schedule_listen", &self.schedule_listen, "runs' credentials stay on this host")
    }

    /// The address of the metrics listener; none when `metrics_listen = "off"`.
    pub fn metrics_listener(&self) -> Result<Option<SocketAddr>, String> {
        loopback_listener("metrics_listen", &self.metrics_listen, "it serves without credentials")
    }

    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            freeze_budget: Duration::from_millis(self.freeze_budget_ms),
            lock_wait: Duration::from_millis(self.lock_wait_ms),
            pre_restore_expiry_days: self.pre_restore_expiry_days,
            max_concurrent_operations: self.max_concurrent_operations.max(1),
            remotes: self.remotes.clone(),
            state_dir: self.state_dir.clone(),
            host: self.host_name.clone().unwrap_or_else(crate::engine::host_name),
            max_queued_operations: self.max_queued_operations,
            admission_wait: Duration::from_millis(self.admission_wait_ms),
            filesystems: self.filesystems.clone(),
            volume_groups: self.volume_groups.clone(),
            retention: self.retention,
            pre_restore_retention: self.pre_restore_retention,
            space_floor_percent: self.space_floor_percent,
            // Checked at load; the defaults for a config made in code.
            discovery: self.discovery.scan().unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_means_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn the_shipped_example_parses() {
        let text = include_str!("../packaging/rollpointd.toml");
        Config::parse(text).unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        assert!(Config::parse("frezee_budget_ms = 3").unwrap_err().contains("frezee_budget_ms"));
        assert!(Config::parse("freeze_budget_ms = 0").unwrap_err().contains("freeze_budget_ms"));
        assert!(Config::parse("store_cache_mib = 0").unwrap_err().contains("store_cache_mib"));
        assert_eq!(Config::parse("store_cache_mib = 64").unwrap().store_cache_mib, 64);
        assert!(Config::parse("listen = \"nowhere\"").unwrap_err().contains("listen"));
        assert!(Config::parse("schedule_listen = \"0.0.0.0:80\"").unwrap_err().contains("loopback"));
        assert!(Config::parse("schedule_listen = \"nope\"").unwrap_err().contains("schedule_listen"));
        assert_eq!(Config::parse("").unwrap().metrics_listener(), Ok(None));
        let local = Config::parse("metrics_listen = \"127.0.0.1:9947\"").unwrap().metrics_listener();
        assert_eq!(local, Ok(Some("127.0.0.1:9947".parse().unwrap())));
        let error = Config::parse("metrics_listen = \"0.0.0.0:9947\"").unwrap_err();
        assert!(error.contains("metrics_listen") && error.contains("loopback"), "{error}");
        assert_eq!(Config::parse("schedule_listen = \"off\"").unwrap().run_listener(), Ok(None));
        assert_eq!(Config::default().run_listener(), Ok(Some(SocketAddr::from(([127, 0, 0, 1], 0)))));
    }

    #[test]
    fn retention_and_the_space_floor() {
        let config = Config::parse(
            "space_floor_percent = 15.0\n[retention]\ndaily = 7\nmin = 2\n[pre_restore_retention]\nlast = 1\n",
        )
        .unwrap();
        let engine = config.engine();
        assert_eq!((engine.retention.daily, engine.retention.min, engine.pre_restore_retention.last), (7, 2, 1));
        assert_eq!(engine.space_floor_percent, 15.0);
        assert_eq!(Config::default().space_floor_percent, 10.0);
        assert!(Config::parse("[retention]\ndayly = 7\n").unwrap_err().contains("dayly"));
        assert!(Config::parse("space_floor_percent = 95.0").unwrap_err().contains("space_floor_percent"));
    }

    #[test]
    fn discovery_settings_are_checked() {
        let config = Config::parse("[discovery]\nsources = [\"podman\"]\nauto_register = [\"podman\"]\n").unwrap();
        assert_eq!(config.discovery.scan().unwrap().sources, [Source::Podman]);
        assert_eq!(config.discovery.following().unwrap(), (vec![Source::Podman], Duration::from_secs(60)));
        assert!(Config::parse("[discovery]\nsources = [\"docker\"]\n").unwrap_err().contains("discovery.sources"));
        assert!(Config::parse("[discovery]\npodman = [\"podman\"]\n").unwrap_err().contains("absolute"));
        let fast = "[discovery]\nauto_register = [\"machined\"]\ninterval_seconds = 1\n";
        assert!(Config::parse(fast).unwrap_err().contains("interval_seconds"));
    }

    #[test]
    fn remotes_are_tables_checked_at_load() {
        let config = Config::parse(
            "[remotes.offsite]\nurl = \"s3://bucket/p\"\nendpoint = \"http://127.0.0.1:9\"\nallow_http = true\n",
        )
        .unwrap();
        assert_eq!(config.remotes["offsite"].endpoint.as_deref(), Some("http://127.0.0.1:9"));
        assert!(Config::parse("[remotes.x]\nurl = \"ftp://a\"\n").unwrap_err().contains("remotes.x"));
        assert!(Config::parse("[remotes.x]\nurl = \"s3://a\"\nendpoitn = \"b\"\n").unwrap_err().contains("endpoitn"));
        assert!(Config::parse("[remotes.\"a b\"]\nurl = \"s3://a\"\n").unwrap_err().contains("remotes.a b"));
    }
}
