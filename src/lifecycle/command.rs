//! Running a lifecycle command: argv, no shell, no PATH lookup, a clean
//! environment, output captured (bounded) into a memfd so that a background
//! process the command leaves behind cannot hold a pipe open, a timeout after
//! which the command is killed.

use std::io::{Read, Seek};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::LifecycleError;

/// How much of a failed command's output is kept for the error.
const OUTPUT_LIMIT: u64 = 4096;
/// How often a running command is checked for its exit.
const WAIT_STEP: Duration = Duration::from_millis(5);

/// Runs `argv` to completion within `timeout`; with `cgroup`, the process
/// joins that cgroup before it execs.
pub fn run_command(
    what: &'static str,
    argv: &[String],
    timeout: Duration,
    cgroup: Option<&Path>,
) -> Result<(), LifecycleError> {
    let program = argv.first().cloned().unwrap_or_default();
    let spawn_error = |source| LifecycleError::Spawn { what, program: program.clone(), source };
    let output = memfd(what).map_err(spawn_error)?;
    let mut command = Command::new(&program);
    command
        .args(&argv[1..])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(output.try_clone().map_err(spawn_error)?)
        .stderr(output.try_clone().map_err(spawn_error)?)
        .process_group(0);
    if let Some(cgroup) = cgroup {
        let procs = std::fs::OpenOptions::new().write(true).open(cgroup.join("cgroup.procs")).map_err(spawn_error)?;
        let procs_fd = std::os::fd::AsRawFd::as_raw_fd(&procs);
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
        let mut child = command.spawn().map_err(spawn_error)?;
        drop(procs);
        return finish(what, &program, &mut child, timeout, output);
    }
    let mut child = command.spawn().map_err(spawn_error)?;
    finish(what, &program, &mut child, timeout, output)
}

fn finish(
    what: &'static str,
    program: &str,
    child: &mut std::process::Child,
    timeout: Duration,
    mut output: std::fs::File,
) -> Result<(), LifecycleError> {
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(WAIT_STEP),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LifecycleError::Timeout { what, program: program.to_owned(), timeout });
            }
            Err(source) => return Err(LifecycleError::Spawn { what, program: program.to_owned(), source }),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut text = String::new();
    let _ = output.rewind();
    let _ = output.by_ref().take(OUTPUT_LIMIT).read_to_string(&mut text);
    Err(LifecycleError::Failed {
        what,
        program: program.to_owned(),
        status: status.to_string(),
        output: text.trim().to_owned(),
    })
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
