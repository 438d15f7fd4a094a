//! Hooks: commands run inside a container around its snapshots and restores
//! (flush or checkpoint before the freeze, a lock held across it, a word to
//! the application after a restore).
//!
//! A hook runs in the namespaces (mount, UTS, IPC, network, PID) and root
//! directory of the container's main process, entered with `nsenter(1)` from
//! util-linux, as the user it names (resolved in the container's own
//! `/etc/passwd`), with a clean environment. It stays in the daemon's
//! cgroup, so freezing the container never freezes a hook (the hold hook
//! runs across the freeze), and its timeout is its own, never part of the
//! freeze budget. On timeout its whole process group is killed.

mod target;

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use crate::lifecycle::{spawn, LifecycleError, Program, Running};
use crate::store::{ContainerRecord, HookSpec};

pub use target::{credentials, main_process, Credentials};

/// Where `nsenter` is (util-linux, essential on Debian).
const NSENTER: &str = "/usr/bin/nsenter";
/// The hook's `PATH` inside the container.
const HOOK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How long a hold hook is given to finish once its input is closed.
pub const HOLD_RELEASE_WAIT: Duration = Duration::from_secs(10);

/// The moments a hook can run at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPoint {
    PreFreeze,
    PostThaw,
    PreRestore,
    PostRestore,
    Hold,
}

impl HookPoint {
    pub const ALL: [HookPoint; 5] =
        [HookPoint::PreFreeze, HookPoint::Hold, HookPoint::PostThaw, HookPoint::PreRestore, HookPoint::PostRestore];

    /// The name in configuration, events and errors (`pre_freeze`).
    pub fn name(self) -> &'static str {
        match self {
            HookPoint::PreFreeze => "pre_freeze",
            HookPoint::PostThaw => "post_thaw",
            HookPoint::PreRestore => "pre_restore",
            HookPoint::PostRestore => "post_restore",
            HookPoint::Hold => "hold",
        }
    }

    fn what(self) -> &'static str {
        match self {
            HookPoint::PreFreeze => "pre_freeze hook",
            HookPoint::PostThaw => "post_thaw hook",
            HookPoint::PreRestore => "pre_restore hook",
            HookPoint::PostRestore => "post_restore hook",
            HookPoint::Hold => "hold hook",
        }
    }

    /// This point's hook in a container's hooks, if it has one.
    pub fn of(self, hooks: &crate::store::Hooks) -> Option<&HookSpec> {
        match self {
            HookPoint::PreFreeze => hooks.pre_freeze.as_ref(),
            HookPoint::PostThaw => hooks.post_thaw.as_ref(),
            HookPoint::PreRestore => hooks.pre_restore.as_ref(),
            HookPoint::PostRestore => hooks.post_restore.as_ref(),
            HookPoint::Hold => hooks.hold.as_ref(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error(transparent)]
    Run(#[from] LifecycleError),
    #[error("no process runs in cgroup {} to run the hook in", cgroup.display())]
    NoProcess { cgroup: PathBuf },
    #[error("reading cgroup {}: {source}", cgroup.display())]
    Cgroup { cgroup: PathBuf, source: std::io::Error },
    #[error("user {user:?} is not in the container's /etc/passwd")]
    UnknownUser { user: String },
    #[error("hold hook {program:?} did not print its ready line within {timeout:?}; killed")]
    NotReady { program: String, timeout: Duration },
    #[error("hold hook {program:?} ended before it was released ({status}), so its hold did not span the snapshot: {output}")]
    EndedEarly { program: String, status: String, output: String },
}

/// Facts about the operation a hook runs for, given to it as environment.
#[derive(Debug, Clone, Default)]
pub struct HookContext {
    pub container: String,
    /// The snapshot taken or restored.
    pub snapshot: String,
    /// For restore hooks: the restore's key, the same on every run of a
    /// hook for one restore (a rerun after the daemon died mid-hook, a
    /// client's retry with the same request id), so a hook can tell.
    pub restore_id: Option<String>,
}

/// Runs `spec` inside `container` to completion within its timeout.
pub fn run(
    container: &ContainerRecord,
    point: HookPoint,
    spec: &HookSpec,
    context: &HookContext,
) -> Result<(), HookError> {
    let running = start(container, point, spec, context, Stdio::null(), None)?;
    Ok(running.wait(spec.timeout)?)
}

/// A hold hook that has said it is ready: its hold lasts until `release`.
pub struct Held {
    running: Option<Running>,
    stdin: Option<std::process::ChildStdin>,
}

/// Starts the hold hook and waits (up to its timeout) for its first line of
/// output, which says its hold (a lock, a paused writer) is in place.
pub fn hold(container: &ContainerRecord, spec: &HookSpec, context: &HookContext) -> Result<Held, HookError> {
    let mut running = start(container, HookPoint::Hold, spec, context, Stdio::piped(), Some(Stdio::piped()))?;
    let stdin = running.child.stdin.take();
    let stdout = running.child.stdout.take();
    let mut held = Held { running: Some(running), stdin };
    let (ready, said) = mpsc::sync_channel(1);
    if let Some(stdout) = stdout {
        // Reads the ready line, then drains the rest so that a chatty hook
        // never blocks on a full pipe; ends with the hook's output.
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok);
            let _ = ready.send(first.is_some());
            lines.for_each(drop);
        });
    }
    match said.recv_timeout(spec.timeout) {
        Ok(true) => Ok(held),
        Ok(false) => Err(held.ended_early()),
        Err(_) => {
            let program = held.program();
            held.kill();
            Err(HookError::NotReady { program, timeout: spec.timeout })
        }
    }
}

impl Held {
    /// Ends the hold: closes the hook's standard input and waits for it to
    /// exit. An error when it had ended before (its hold may not have
    /// spanned the snapshot) or fails now.
    pub fn release(mut self) -> Result<(), HookError> {
        if let Some(running) = self.running.as_mut() {
            if let Ok(Some(_)) = running.child.try_wait() {
                return Err(self.ended_early());
            }
        }
        self.stdin = None;
        match self.running.take() {
            Some(running) => Ok(running.wait(HOLD_RELEASE_WAIT)?),
            None => Ok(()),
        }
    }

    fn ended_early(&mut self) -> HookError {
        let program = self.program();
        let Some(running) = self.running.as_mut() else {
            return HookError::EndedEarly { program, status: "gone".into(), output: String::new() };
        };
        let status = running.child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
        let output = running.output_tail();
        self.running = None;
        HookError::EndedEarly { program, status, output }
    }

    fn program(&self) -> String {
        self.running.as_ref().map(|r| r.name().to_owned()).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut running) = self.running.take() {
            running.kill();
        }
    }
}

impl Drop for Held {
    /// A hold that is never released (the snapshot failed) is ended at once.
    fn drop(&mut self) {
        self.kill();
    }
}

fn start(
    container: &ContainerRecord,
    point: HookPoint,
    spec: &HookSpec,
    context: &HookContext,
    stdin: Stdio,
    stdout: Option<Stdio>,
) -> Result<Running, HookError> {
    let pid = main_process(&container.cgroup)?;
    let user = credentials(pid, &spec.user)?;
    let argv = nsenter_argv(pid, user, &spec.command);
    let mut env = vec![
        ("PATH".to_owned(), HOOK_PATH.to_owned()),
        ("HOME".to_owned(), "/".to_owned()),
        ("ROLLPOINT_HOOK".to_owned(), point.name().to_owned()),
        ("ROLLPOINT_CONTAINER".to_owned(), context.container.clone()),
        ("ROLLPOINT_SNAPSHOT".to_owned(), context.snapshot.clone()),
    ];
    if let Some(restore_id) = &context.restore_id {
        env.push(("ROLLPOINT_RESTORE_ID".to_owned(), restore_id.clone()));
    }
    Ok(spawn(&Program { what: point.what(), argv: &argv, env: &env, cgroup: None }, stdin, stdout)?)
}

/// `nsenter` entering the namespaces and root of `pid`, as `user`, to exec
/// `command` (looked up in the container's `PATH`).
fn nsenter_argv(pid: u32, user: Credentials, command: &[String]) -> Vec<String> {
    let root = format!("/proc/{pid}/root");
    let mut argv: Vec<String> = vec![
        NSENTER.into(),
        format!("--target={pid}"),
        "--mount".into(),
        "--uts".into(),
        "--ipc".into(),
        "--net".into(),
        "--pid".into(),
        format!("--root={root}"),
        format!("--wd={root}"),
    ];
    if user != (Credentials { uid: 0, gid: 0 }) {
        argv.push(format!("--setgid={}", user.gid));
        argv.push(format!("--setuid={}", user.uid));
    }
    argv.push("--".into());
    argv.extend(command.iter().cloned());
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nsenter_enters_every_namespace_and_the_root() {
        let argv = nsenter_argv(42, Credentials { uid: 0, gid: 0 }, &["psql".into(), "-c".into(), "CHECKPOINT".into()]);
        assert_eq!(argv[0], NSENTER);
        assert!(argv.contains(&"--target=42".to_owned()) && argv.contains(&"--root=/proc/42/root".to_owned()));
        assert!(!argv.iter().any(|a| a.starts_with("--setuid")));
        assert_eq!(&argv[argv.len() - 4..], ["--", "psql", "-c", "CHECKPOINT"]);
        let argv = nsenter_argv(42, Credentials { uid: 105, gid: 110 }, &["true".into()]);
        assert!(argv.contains(&"--setuid=105".to_owned()) && argv.contains(&"--setgid=110".to_owned()));
    }

    #[test]
    fn every_point_has_its_own_name() {
        let names: std::collections::HashSet<_> = HookPoint::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(names.len(), HookPoint::ALL.len());
    }
}
