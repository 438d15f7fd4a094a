//! How a container is stopped and started around a restore, as chosen at
//! registration: `none` (nothing to run: the engine kills what is in the
//! cgroup and the container's supervisor restarts it), `command` (argv
//! programs, no shell, each with a timeout), `systemd` (a unit over D-Bus).

mod command;
pub mod systemd;

use std::time::Duration;

use crate::store::{ContainerRecord, LifecycleSpec};

pub use command::{run_command, spawn, Program, Running};

/// Podman's program when a Podman lifecycle names none.
pub const DEFAULT_PODMAN: &str = "/usr/bin/podman";

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("{what} {program:?}: {source}")]
    Spawn { what: &'static str, program: String, source: std::io::Error },
    #[error("{what} {program:?} did not finish within {timeout:?}; killed")]
    Timeout { what: &'static str, program: String, timeout: Duration },
    #[error("{what} {program:?} failed ({status}): {output}")]
    Failed { what: &'static str, program: String, status: String, output: String },
    #[error("systemd unit {unit}: {reason}")]
    Systemd { unit: String, reason: String },
}

/// Stops and starts containers. The engine sees only this trait, so restore
/// logic is tested with a fake.
pub trait Lifecycle: Send + Sync + 'static {
    fn stop(&self, container: &ContainerRecord) -> Result<(), LifecycleError>;
    fn start(&self, container: &ContainerRecord) -> Result<(), LifecycleError>;
}

/// The real lifecycle: runs what the container's registration says.
#[derive(Debug, Default)]
pub struct HostLifecycle;

impl Lifecycle for HostLifecycle {
    fn stop(&self, container: &ContainerRecord) -> Result<(), LifecycleError> {
        match &container.lifecycle {
            LifecycleSpec::None => Ok(()),
            LifecycleSpec::Command { stop, timeout, .. } => run_command("stop command", stop, *timeout, None),
            LifecycleSpec::Systemd { unit, timeout } => systemd::run_unit_job(systemd::Verb::Stop, unit, *timeout),
            LifecycleSpec::Podman { command, container, timeout } => {
                run_command("podman stop", &podman_argv(command, container, *timeout, "stop"), *timeout, None)
            }
        }
    }

    fn start(&self, container: &ContainerRecord) -> Result<(), LifecycleError> {
        match &container.lifecycle {
            LifecycleSpec::None => Ok(()),
            // The start command runs inside the container's cgroup, so what
            // it leaves running belongs to the container (and is frozen with
            // it at the next snapshot).
            LifecycleSpec::Command { start, timeout, .. } => {
                run_command("start command", start, *timeout, Some(&container.cgroup))
            }
            LifecycleSpec::Systemd { unit, timeout } => systemd::run_unit_job(systemd::Verb::Start, unit, *timeout),
            LifecycleSpec::Podman { command, container, timeout } => {
                run_command("podman start", &podman_argv(command, container, *timeout, "start"), *timeout, None)
            }
        }
    }
}

/// The argv of a Podman lifecycle's `verb` ("stop" or "start").
/// `podman stop` is given two thirds of the `timeout` for the container's
/// own shutdown (then Podman kills it), keeping a margin for Podman.
fn podman_argv(command: &[String], container: &str, timeout: Duration, verb: &str) -> Vec<String> {
    let mut argv = command.to_vec();
    argv.push(verb.to_owned());
    if verb == "stop" {
        let grace = timeout.as_secs().saturating_mul(2) / 3;
        argv.extend(["--time".to_owned(), grace.max(1).to_string()]);
    }
    argv.push(container.to_owned());
    argv
}
