//! [`TestDaemon`]: a real `rollpointd` process for integration tests and
//! benchmarks, in a fresh temp folder (state, socket, config, log), started
//! and awaited until its health service says SERVING, and SIGKILLed, reaped
//! and removed on drop, even when the test panicked.
//!
//! The daemon's path comes from the caller, because `CARGO_BIN_EXE_*` only
//! exists when tests and benchmarks are compiled:
//! `TestDaemon::start(Path::new(env!("CARGO_BIN_EXE_rollpointd"))).await`.
//!
//! The daemon is only ever signalled by the pid of the child we spawned and
//! have not reaped yet, so the signal cannot reach a recycled pid.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::api::client::{self, Clients, ConnectError, Target};

/// How long [`TestDaemon::start`] waits for SERVING.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause between two health checks while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Longest single connect + health check attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// The variable the daemon reads its fault point from.
pub const FAULT_ENV: &str = "ROLLPOINT_FAULT";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// How to start a [`TestDaemon`] beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct DaemonOptions {
    /// Extra environment variables for the daemon (e.g. `ROLLPOINT_FAULT`).
    pub env: Vec<(OsString, OsString)>,
    /// Extra command-line arguments, after `--config`, `--state-dir` and
    /// `--socket`.
    pub args: Vec<OsString>,
    /// Contents of the configuration file; `None` leaves it absent (the
    /// defaults).
    pub config: Option<String>,
    /// State folder to use (and keep on drop) instead of a fresh one inside
    /// the daemon's temp folder: for a daemon that takes over another's state.
    pub state_dir: Option<PathBuf>,
}

impl DaemonOptions {
    /// Arms the fault point `point` (see `fault`): the daemon
    /// SIGKILLs itself when it gets there.
    #[must_use]
    pub fn fault(point: &str) -> DaemonOptions {
        DaemonOptions::default().env(FAULT_ENV, point)
    }

    #[must_use]
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> DaemonOptions {
        self.env.push((key.into(), value.into()));
        self
    }

    #[must_use]
    pub fn arg(mut self, arg: impl Into<OsString>) -> DaemonOptions {
        self.args.push(arg.into());
        self
    }

    #[must_use]
    pub fn config(mut self, toml: impl Into<String>) -> DaemonOptions {
        self.config = Some(toml.into());
        self
    }

    #[must_use]
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> DaemonOptions {
        self.state_dir = Some(dir.into());
        self
    }
}

/// A running `rollpointd` with its own folder (`state/`, `rollpointd.sock`,
/// `rollpointd.toml`, `rollpointd.log`).
#[derive(Debug)]
pub struct TestDaemon {
    binary: PathBuf,
    dir: PathBuf,
    state_dir: PathBuf,
    socket: PathBuf,
    config: PathBuf,
    log: PathBuf,
    options: DaemonOptions,
    child: Option<Child>,
    /// Starts so far, numbering the sections of the log.
    starts: u32,
}

impl TestDaemon {
    /// Starts the daemon at `binary` with the defaults and waits until it
    /// serves.
    pub async fn start(binary: &Path) -> io::Result<TestDaemon> {
        Self::start_with(binary, DaemonOptions::default()).await
    }

    /// Starts the daemon at `binary` with `options` and waits until it serves.
    pub async fn start_with(binary: &Path, options: DaemonOptions) -> io::Result<TestDaemon> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        // Short: the socket path must fit in sun_path (108 bytes).
        let dir = std::env::temp_dir().join(format!(
            "rollpointd-test-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            nanos % 1_000_000_000
        ));
        std::fs::create_dir(&dir).map_err(|e| with_path(e, "mkdir", &dir))?;
        // From here on, dropping `daemon` removes the folder.
        let mut daemon = TestDaemon {
            binary: binary.to_path_buf(),
            state_dir: options.state_dir.clone().unwrap_or_else(|| dir.join("state")),
            socket: dir.join("rollpointd.sock"),
            config: dir.join("rollpointd.toml"),
            log: dir.join("rollpointd.log"),
            dir,
            options,
            child: None,
            starts: 0,
        };
        daemon.launch().await?;
        Ok(daemon)
    }

    /// The daemon's Unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Where to connect to the daemon.
    pub fn target(&self) -> Target {
        Target::Unix(self.socket.clone())
    }

    /// The daemon's state folder (the store, the token key).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The daemon's temp folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options the daemon runs (or last ran) with.
    pub fn options(&self) -> &DaemonOptions {
        &self.options
    }

    /// A fresh connection with every service's client.
    pub async fn clients(&self) -> Result<Clients, ConnectError> {
        Clients::connect(&self.target()).await
    }

    /// Pid of the daemon, while we have a child not yet reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the daemon process still runs (reaps it when it ended).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_)) | Err(_)) | None => false,
        }
    }

    /// SIGKILLs the daemon (by the pid of our child) and reaps it. Returns its
    /// exit status, `None` when no daemon was running.
    pub fn kill9(&mut self) -> io::Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else { return Ok(None) };
        let status = match child.try_wait()? {
            Some(status) => status,
            None => {
                // Child::kill sends SIGKILL to the pid of this unreaped child.
                child.kill()?;
                child.wait()?
            }
        };
        // Forgotten only once reaped: on an error above, drop tries again.
        self.child = None;
        Ok(Some(status))
    }

    /// Waits (bounded) for the daemon to end by itself, e.g. after a fault
    /// point killed it, and reaps it. `Ok(None)` when it still runs at the
    /// deadline (it is left running). Blocks the calling thread, with short
    /// sleeps.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(child) = self.child.as_mut() else { return Ok(None) };
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the daemon with SIGKILL if it runs, starts it again on the same
    /// state folder and socket with the same options, and waits for SERVING.
    pub async fn restart(&mut self) -> io::Result<()> {
        self.kill9()?;
        self.launch().await
    }

    /// Like [`TestDaemon::restart`], with other options (the state folder
    /// stays the same): e.g. `DaemonOptions::default()` to disarm a fault.
    pub async fn restart_with(&mut self, options: DaemonOptions) -> io::Result<()> {
        self.kill9()?;
        self.options = DaemonOptions { state_dir: self.options.state_dir.clone(), ..options };
        self.launch().await
    }

    /// Everything the daemon wrote to stderr and stdout, every start so far.
    /// Only the start markers where the daemon logs to journald instead
    /// (when `/run/systemd/journal/socket` exists).
    pub fn log(&self) -> String {
        std::fs::read(&self.log).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default()
    }

    /// Prints the log to stderr, framed (shown by the test harness for a
    /// failed test).
    pub fn print_log(&self) {
        eprintln!("----- rollpointd log ({}) -----\n{}----- end of log -----", self.log.display(), self.log());
    }

    async fn launch(&mut self) -> io::Result<()> {
        self.starts += 1;
        match &self.options.config {
            Some(text) => std::fs::write(&self.config, text).map_err(|e| with_path(e, "write", &self.config))?,
            None => match std::fs::remove_file(&self.config) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(with_path(e, "remove", &self.config)),
            },
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| with_path(e, "open", &self.log))?;
        let fault = self.options.env.iter().find(|(k, _)| k == FAULT_ENV).map(|(_, v)| v.to_string_lossy());
        writeln!(log, "===== start {} (fault: {}) =====", self.starts, fault.as_deref().unwrap_or("none"))?;
        let mut command = Command::new(&self.binary);
        command
            .arg("--config")
            .arg(&self.config)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--socket")
            .arg(&self.socket)
            .args(&self.options.args)
            .env_remove(FAULT_ENV)
            // Not ours to notify when the tests run under systemd; and a
            // plain-text log.
            .env_remove("NOTIFY_SOCKET")
            .env("NO_COLOR", "1")
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = command.spawn().map_err(|e| with_path(e, "spawn", &self.binary))?;
        self.child = Some(child);
        self.wait_serving().await
    }

    /// Waits until the health service says SERVING; an error (with the log)
    /// when the daemon exits or the time runs out.
    async fn wait_serving(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::from("no attempt yet");
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    return Err(io::Error::other(format!(
                        "rollpointd exited before serving ({status}); log:\n{}",
                        self.log()
                    )));
                }
            }
            if self.socket.exists() {
                match tokio::time::timeout(ATTEMPT_TIMEOUT, health_check(&self.target())).await {
                    Ok(Ok(ServingStatus::Serving)) => return Ok(()),
                    Ok(Ok(status)) => last = format!("health: {status:?}"),
                    Ok(Err(error)) => last = error,
                    Err(_) => last = "health check timed out".into(),
                }
            }
            if Instant::now() >= deadline {
                // Leave nothing half-started behind.
                let _ = self.kill9();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("rollpointd not SERVING after {START_TIMEOUT:?} ({last}); log:\n{}", self.log()),
                ));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// One `grpc.health.v1.Health/Check` of the whole server (service "").
async fn health_check(target: &Target) -> Result<ServingStatus, String> {
    let channel = client::connect(target, None).await.map_err(|e| e.to_string())?;
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest { service: String::new() })
        .await
        .map_err(|status| format!("health: {:?}: {}", status.code(), status.message()))?;
    ServingStatus::try_from(reply.into_inner().status).map_err(|e| e.to_string())
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_log();
        }
        if let Err(error) = self.kill9() {
            eprintln!("TestDaemon: killing rollpointd: {error}");
        }
        if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("TestDaemon: remove {}: {error}", self.dir.display());
        }
    }
}

fn with_path(error: io::Error, op: &str, path: &Path) -> io::Error {
    io::Error::new(error.kind(), format!("{op} {}: {error}", path.display()))
}

/// The fault points of `fault`, as placed in
/// `engine/snapshots.rs` and `engine/freeze_window.rs`: the create points in
/// the order a create reaches them, then the delete points.
pub const CREATE_FAULT_POINTS: [&str; 5] =
    ["create.intent", "create.flushed", "create.frozen", "create.snapshotted", "create.recorded"];
pub const DELETE_FAULT_POINTS: [&str; 2] = ["delete.intent", "delete.removed"];
/// The points a group snapshot passes (`engine/create.rs`): before the
/// freeze, inside it, after the first member's record, after all.
pub const GROUP_CREATE_FAULT_POINTS: [&str; 4] =
    ["create.intent", "create.frozen", "create.recorded-one", "create.recorded"];
/// The group restore fault points of `engine/group_restore.rs`, in order:
/// before the stops, after them, after the copies, after the first
/// exchange, after the records.
pub const GROUP_RESTORE_FAULT_POINTS: [&str; 5] = [
    "group-restore.stopping",
    "group-restore.stopped",
    "group-restore.cloned",
    "group-restore.exchanged-one",
    "group-restore.recorded",
];
/// The restore fault points of `engine/restore.rs`, in the order a restore
/// reaches them: before the stop, before the clone, before the exchange,
/// right after it, before the start, after it, after the record.
pub const RESTORE_FAULT_POINTS: [&str; 7] = [
    "restore.stopping",
    "restore.cloning",
    "restore.exchanging",
    "restore.exchanged",
    "restore.starting",
    "restore.started",
    "restore.recorded",
];
