//! The "run a command" action: `/bin/sh -c COMMAND` as the entry's user.
//!
//! Like cron: the user's uid, primary gid and supplementary groups, HOME and
//! working directory = the user's home, and a clean environment (HOME, USER,
//! LOGNAME, SHELL=/bin/sh, PATH=/usr/local/bin:/usr/bin:/bin) plus the
//! variables the action carries (the entry's own and rollpoint's). Unlike cron,
//! the command runs in its own session with a timeout: when it runs out,
//! the whole process group gets SIGTERM, then SIGKILL after `term_grace`.
//!
//! stdout and stderr are captured through pipes, the first `output_limit`
//! bytes of each; the rest is read and dropped (so the command never blocks
//! on a full pipe) and flagged `truncated`. When the shell exits we read
//! what is already in the pipes for up to `DRAIN_WINDOW` and then stop: a
//! background process that keeps the pipes open cannot hold us up (it is
//! left running; after a timeout it is killed with its group).
//!
//! This is blocking code: call it from `tokio::task::spawn_blocking`.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::{geteuid, getgrouplist, Gid, Pid, Uid, User};

/// How often the wait loop looks at the child and the clock.
const POLL_SLICE: Duration = Duration::from_millis(50);
/// How long to keep reading the pipes after the shell exited.
const DRAIN_WINDOW: Duration = Duration::from_millis(100);
const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandAction {
    pub command: String,
    /// Set on top of the clean environment, in this order.
    pub environment: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy)]
pub struct CommandLimits {
    pub timeout: Duration,
    /// Kept bytes per stream.
    pub output_limit: usize,
    /// Between SIGTERM and SIGKILL on timeout.
    pub term_grace: Duration,
}

impl Default for CommandLimits {
    fn default() -> Self {
        CommandLimits {
            timeout: Duration::from_secs(3600),
            output_limit: 64 * 1024,
            term_grace: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapturedOutput {
    pub bytes: Vec<u8>,
    /// The stream had more than the limit.
    pub truncated: bool,
}

#[derive(Debug, Clone)]
pub struct CommandOutcome {
    pub status: ExitStatus,
    pub stdout: CapturedOutput,
    pub stderr: CapturedOutput,
    pub duration: Duration,
    pub timed_out: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("user `{user}` does not exist")]
    UnknownUser { user: String },
    #[error("looking up user `{user}`: {source}")]
    UserLookup { user: String, source: nix::Error },
    #[error("only root can run commands as `{user}` (running as uid {euid})")]
    NotPermitted { user: String, euid: u32 },
    #[error("running the command of `{user}`: {source}")]
    Io { user: String, source: io::Error },
}

/// Runs `action` as `user` within `limits`; blocks until it is done.
pub fn run_as_user(action: &CommandAction, user: &str, limits: &CommandLimits) -> Result<CommandOutcome, CommandError> {
    let io_error = |source| CommandError::Io { user: user.to_owned(), source };
    let identity = Identity::look_up(user)?;
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(&action.command)
        .env_clear()
        .env("HOME", &identity.home_path)
        .env("USER", user)
        .env("LOGNAME", user)
        .env("SHELL", "/bin/sh")
        .env("PATH", PATH)
        .envs(action.environment.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed. It makes raw system calls
    // through nix wrappers that do not allocate, on data prepared before
    // the fork (`identity` is moved in; the CStr path is used as is).
    unsafe {
        command.pre_exec(move || identity.enter());
    }
    let started = Instant::now();
    let mut child = command.spawn().map_err(io_error)?;
    let outcome = supervise(&mut child, started, limits);
    if outcome.is_err() {
        // Do not leave a command running that nobody watches.
        signal_group(&child, Signal::SIGKILL);
        let _ = child.wait();
    }
    outcome.map_err(io_error)
}

/// Who to become, worked out before the fork.
struct Identity {
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
    home: CString,
    home_path: std::path::PathBuf,
    /// False when we already are that user (and not root).
    switch: bool,
}

impl Identity {
    fn look_up(user: &str) -> Result<Identity, CommandError> {
        let account = User::from_name(user)
            .map_err(|source| CommandError::UserLookup { user: user.to_owned(), source })?
            .ok_or_else(|| CommandError::UnknownUser { user: user.to_owned() })?;
        let euid = geteuid();
        if !euid.is_root() && account.uid != euid {
            return Err(CommandError::NotPermitted { user: user.to_owned(), euid: euid.as_raw() });
        }
        let name = CString::new(user).map_err(|_| CommandError::UnknownUser { user: user.to_owned() })?;
        let groups = if euid.is_root() {
            getgrouplist(&name, account.gid)
                .map_err(|source| CommandError::UserLookup { user: user.to_owned(), source })?
        } else {
            Vec::new()
        };
        let home = CString::new(account.dir.as_os_str().as_encoded_bytes())
            .map_err(|_| CommandError::UnknownUser { user: user.to_owned() })?;
        Ok(Identity {
            uid: account.uid,
            gid: account.gid,
            groups,
            home,
            home_path: account.dir,
            switch: euid.is_root(),
        })
    }

    /// In the child: own session (so the timeout reaches the whole group),
    /// then groups, gid, uid in that order (each step needs the privileges
    /// the next one drops), then the home directory, entered as the user.
    fn enter(&self) -> io::Result<()> {
        nix::unistd::setsid()?;
        if self.switch {
            nix::unistd::setgroups(&self.groups)?;
            nix::unistd::setgid(self.gid)?;
            nix::unistd::setuid(self.uid)?;
        }
        nix::unistd::chdir(self.home.as_c_str())?;
        Ok(())
    }
}

/// Waits for the child within the timeout while capturing its output.
fn supervise(child: &mut Child, started: Instant, limits: &CommandLimits) -> io::Result<CommandOutcome> {
    let pipe = |fd: Option<OwnedFd>| Capture::new(fd.expect("stdout and stderr are piped"), limits.output_limit);
    let mut stdout = pipe(child.stdout.take().map(OwnedFd::from))?;
    let mut stderr = pipe(child.stderr.take().map(OwnedFd::from))?;
    let deadline = started + limits.timeout;
    let mut timed_out = false;
    let mut kill_at = None;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let now = Instant::now();
        if !timed_out && now >= deadline {
            timed_out = true;
            signal_group(child, Signal::SIGTERM);
            kill_at = Some(now + limits.term_grace);
        }
        if kill_at.is_some_and(|at| now >= at) {
            signal_group(child, Signal::SIGKILL);
            kill_at = None;
        }
        pump(&mut [&mut stdout, &mut stderr], POLL_SLICE)?;
    };
    let duration = started.elapsed();
    if timed_out {
        // Whatever survived SIGTERM in the group, background jobs included.
        signal_group(child, Signal::SIGKILL);
    }
    let drain_until = Instant::now() + DRAIN_WINDOW;
    while stdout.is_open() || stderr.is_open() {
        let left = drain_until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        pump(&mut [&mut stdout, &mut stderr], left)?;
    }
    Ok(CommandOutcome { status, stdout: stdout.output, stderr: stderr.output, duration, timed_out })
}

/// The child leads its own process group (it called setsid).
fn signal_group(child: &Child, signal: Signal) {
    let Ok(group) = i32::try_from(child.id()) else { return };
    if let Err(error) = killpg(Pid::from_raw(group), signal) {
        // ESRCH: the group is already gone.
        tracing::debug!(%error, ?signal, "signalling the command's process group");
    }
}

/// One output pipe, read without blocking, keeping the first `limit` bytes.
struct Capture {
    pipe: Option<File>,
    output: CapturedOutput,
    limit: usize,
}

impl Capture {
    fn new(fd: OwnedFd, limit: usize) -> io::Result<Capture> {
        fcntl(&fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        Ok(Capture { pipe: Some(File::from(fd)), output: CapturedOutput::default(), limit })
    }

    fn is_open(&self) -> bool {
        self.pipe.is_some()
    }

    /// One read; the poll loop comes back for more, so a fast writer
    /// cannot keep us from watching the clock.
    fn read_once(&mut self) -> io::Result<()> {
        let Some(pipe) = &mut self.pipe else { return Ok(()) };
        let mut buffer = [0u8; 16 * 1024];
        match pipe.read(&mut buffer) {
            Ok(0) => self.pipe = None,
            Ok(read) => {
                let room = self.limit.saturating_sub(self.output.bytes.len());
                self.output.bytes.extend_from_slice(&buffer[..read.min(room)]);
                self.output.truncated |= read > room;
            }
            Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
            Err(error) => return Err(error),
        }
        Ok(())
    }
}

/// Waits up to `timeout` for output on the open pipes and reads it.
fn pump(captures: &mut [&mut Capture], timeout: Duration) -> io::Result<()> {
    let open: Vec<usize> = (0..captures.len()).filter(|&index| captures[index].is_open()).collect();
    if open.is_empty() {
        std::thread::sleep(timeout);
        return Ok(());
    }
    let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    let ready: Vec<bool> = {
        let mut fds: Vec<PollFd> = open
            .iter()
            .map(|&index| PollFd::new(captures[index].pipe.as_ref().expect("open").as_fd(), PollFlags::POLLIN))
            .collect();
        match poll(&mut fds, timeout) {
            Ok(_) => fds.iter().map(|fd| fd.revents().is_some_and(|events| !events.is_empty())).collect(),
            Err(nix::errno::Errno::EINTR) => return Ok(()),
            Err(error) => return Err(error.into()),
        }
    };
    for (&index, ready) in open.iter().zip(ready) {
        if ready {
            captures[index].read_once()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
