//! Running a lifecycle command: argv, no shell, no PATH lookup, a clean
//! environment, output captured (bounded) into a memfd so that a background
//! process the command leaves behind cannot hold a pipe open, a timeout after
//! which the command is killed.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::LifecycleError;

/// How much of a failed command's output is kept for the error.
const OUTPUT_LIMIT: u64 = 4096;
/// How often a running command is checked for its exit.
const WAIT_STEP: Duration = Duration::from_millis(5);

/// A program to run: argv (no shell, no PATH lookup), a clean environment
/// with `PATH` and `env`, and optionally the cgroup it joins before it execs.
pub struct Program<'a> {
    pub what: &'static str,
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub cgroup: Option<&'a Path>,
}

/// A started program: the child, in a process group of its own, and the
/// memfd its standard error (and output, unless piped) goes to.
pub struct Running {
    pub child: std::process::Child,
    output: std::fs::File,
    what: &'static str,
    program: String,
}

/// Runs `argv` to completion within `timeout`; with `cgroup`, the process
/// joins that cgroup before it execs.
pub fn run_command(
    what: &'static str,
    argv: &[String],
    timeout: Duration,
    cgroup: Option<&Path>,
) -> Result<(), LifecycleError> {
    spawn(&Program { what, argv, env: &[], cgroup }, Stdio::null(), None)?.wait(timeout)
}

/// Starts `program` with `stdin`, and its standard output piped back when
/// `stdout` says so (else it goes with standard error to the memfd).
pub fn spawn(program: &Program<'_>, stdin: Stdio, stdout: Option<Stdio>) -> Result<Running, LifecycleError> {
    let what = program.what;
    let name = program.argv.first().cloned().unwrap_or_default();
    let spawn_error = |source| LifecycleError::Spawn { what, program: name.clone(), source };
    let output = memfd(what).map_err(spawn_error)?;
    let mut command = Command::new(&name);
    command
        .args(program.argv.get(1..).unwrap_or_default())
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(program.env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .stdin(stdin)
        .stdout(match stdout {
            Some(stdout) => stdout,
            None => output.try_clone().map_err(spawn_error)?.into(),
        })
        .stderr(output.try_clone().map_err(spawn_error)?)
        .process_group(0);
    let procs = match program.cgroup {
        Some(cgroup) => {
            Some(std::fs::OpenOptions::new().write(true).open(cgroup.join("cgroup.procs")).map_err(spawn_error)?)
        }
        None => None,
    };
    if let Some(procs) = &procs {
        let procs_fd = std::os::fd::AsRawFd::as_raw_fd(procs);
        // SAFETY: the closure runs in the child between fork and exec; it only
        // calls write(2) on a file descriptor opened before the fork (kept
        // open by `procs`, which outlives the spawn), with a static buffer:
        // async-signal-safe, no allocation, no locks.
        unsafe {
            command.pre_exec(move || {
                // Writing "0" to cgroup.procs moves the writing process.
                if libc::write(procs_fd, b"0".as_ptr().cast(), 1) == 1 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    let child = command.spawn().map_err(spawn_error)?;
    drop(procs);
    Ok(Running { child, output, what, program: name })
}

impl Running {
    /// Waits for the program to exit within `timeout`; past it, kills its
    /// whole process group. A failure carries the end of its output.
    pub fn wait(mut self, timeout: Duration) -> Result<(), LifecycleError> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(WAIT_STEP),
                Ok(None) => {
                    self.kill();
                    return Err(LifecycleError::Timeout { what: self.what, program: self.program, timeout });
                }
                Err(source) => return Err(LifecycleError::Spawn { what: self.what, program: self.program, source }),
            }
        };
        if status.success() {
            return Ok(());
        }
        Err(self.failed(status))
    }

    /// The error for an exit with `status`, with the end of the output.
    pub fn failed(&mut self, status: std::process::ExitStatus) -> LifecycleError {
        LifecycleError::Failed {
            what: self.what,
            program: self.program.clone(),
            status: status.to_string(),
            output: self.output_tail(),
        }
    }

    /// The last few KiB of what the program wrote, trimmed.
    pub fn output_tail(&mut self) -> String {
        let length = self.output.seek(SeekFrom::End(0)).unwrap_or(0);
        let _ = self.output.seek(SeekFrom::Start(length.saturating_sub(OUTPUT_LIMIT)));
        let mut bytes = Vec::new();
        let _ = self.output.by_ref().take(OUTPUT_LIMIT).read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).trim().to_owned()
    }

    /// Kills the program's process group (what it started too) and reaps it.
    pub fn kill(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn name(&self) -> &str {
        &self.program
    }
}

fn memfd(name: &str) -> std::io::Result<std::fs::File> {
    let fd =
        nix::sys::memfd::memfd_create(name, nix::sys::memfd::MFdFlags::MFD_CLOEXEC).map_err(std::io::Error::from)?;
    Ok(std::fs::File::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn success_failure_and_output() {
        run_command("start command", &argv(&["/bin/true"]), Duration::from_secs(5), None).unwrap();
        let error = run_command(
            "stop command",
            &argv(&["/bin/sh", "-c", "echo nope >&2; exit 3"]),
            Duration::from_secs(5),
            None,
        )
        .unwrap_err();
        let text = error.to_string();
        assert!(text.contains("nope") && text.contains("3"), "{text}");
    }

    #[test]
    fn a_command_that_hangs_is_killed_at_its_timeout() {
        let error =
            run_command("stop command", &argv(&["/bin/sleep", "30"]), Duration::from_millis(100), None).unwrap_err();
        assert!(matches!(error, LifecycleError::Timeout { .. }), "{error}");
    }

    #[test]
    fn a_background_child_does_not_hold_the_command_open() {
        // The shell exits at once, leaving a sleeper with its stdout.
        let started = Instant::now();
        run_command("start command", &argv(&["/bin/sh", "-c", "/bin/sleep 3 & exit 0"]), Duration::from_secs(10), None)
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn missing_programs_are_named() {
        let error = run_command("start command", &argv(&["/nonexistent/x"]), Duration::from_secs(1), None).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/x"));
    }
}
