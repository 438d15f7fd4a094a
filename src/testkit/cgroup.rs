//! [`TestCgroup`]: a throw-away cgroup for root tests and benchmarks, with
//! real processes in it, removed on drop even when the test panicked.
//!
//! Deliberately independent of `crate::freezer` (only the mounts come from
//! `crate::sys::mountinfo`), so tests of the freezer do not check it with
//! itself.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::sys::mountinfo;

/// Every test cgroup's name starts with this, so leftovers are easy to find.
pub const NAME_PREFIX: &str = "rollpoint-test";

/// How long drop waits for the killed processes to leave.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Which hierarchy a [`TestCgroup`] lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hierarchy {
    /// Directly under the cgroup v2 mount.
    V2,
    /// Directly under the cgroup v1 hierarchy carrying the freezer controller.
    V1Freezer,
}

/// A uniquely named cgroup (`rollpoint-test-<prefix>-<pid>-<n>`) directly
/// under a cgroup mount. Drop thaws it, kills everything in it, reaps the
/// children it spawned and removes it (and any sub-cgroups a test made).
#[derive(Debug)]
pub struct TestCgroup {
    hierarchy: Hierarchy,
    path: PathBuf,
    relative_name: String,
    spawned: Mutex<Vec<Pid>>,
}

impl TestCgroup {
    /// Creates a cgroup under the cgroup v2 mount.
    pub fn create(prefix: &str) -> io::Result<TestCgroup> {
        Self::create_in(Hierarchy::V2, prefix)
    }

    /// Creates a cgroup under the v1 freezer hierarchy; `NotFound` if this
    /// host has none (callers skip the test then).
    pub fn create_v1_freezer(prefix: &str) -> io::Result<TestCgroup> {
        Self::create_in(Hierarchy::V1Freezer, prefix)
    }

    fn create_in(hierarchy: Hierarchy, prefix: &str) -> io::Result<TestCgroup> {
        if prefix.contains('/') || prefix.starts_with('.') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad test cgroup prefix {prefix:?}")));
        }
        let mounts = mountinfo::read()?;
        let mount = match hierarchy {
            Hierarchy::V2 => mountinfo::cgroup2_mount(&mounts),
            Hierarchy::V1Freezer => mountinfo::cgroup1_freezer_mount(&mounts),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no {hierarchy:?} cgroup mount")))?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let relative_name = match prefix {
            "" => format!("{NAME_PREFIX}-{}-{n}", std::process::id()),
            _ => format!("{NAME_PREFIX}-{prefix}-{}-{n}", std::process::id()),
        };
        let path = mount.join(&relative_name);
        std::fs::create_dir(&path).map_err(|e| with_path(e, "mkdir", &path))?;
        Ok(TestCgroup { hierarchy, path, relative_name, spawned: Mutex::new(Vec::new()) })
    }

    /// Absolute path of the cgroup directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The name relative to the mount (what an operator would configure).
    pub fn relative_name(&self) -> &str {
        &self.relative_name
    }

    pub fn hierarchy(&self) -> Hierarchy {
        self.hierarchy
    }

    /// Spawns `cmd` with the child already in this cgroup when it execs, so
    /// not one instruction of the program runs outside it.
    ///
    /// Refuses while the cgroup is frozen: the child would freeze before its
    /// exec, and `Command::spawn` waits for that exec. Spawn elsewhere and
    /// migrate the pid instead.
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<Child> {
        if self.is_frozen()? {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is frozen: spawn would hang", self.path.display()),
            ));
        }
        let procs = self.path.join("cgroup.procs");
        // Allocated before the fork: the child may only make raw syscalls.
        let procs_c = CString::new(procs.as_os_str().as_bytes())?;
        // SAFETY: the closure runs in the forked child before exec, where only
        // async-signal-safe calls are allowed. It makes only open/write/close
        // syscalls on a C string allocated before the fork, and builds its
        // error with `last_os_error`, which does not allocate. Writing "0"
        // to cgroup.procs moves the writing process itself (cgroup-v2.rst,
        // same on v1). The path is opened here, not before the fork, so a
        // `cmd` reused after this cgroup is gone fails instead of writing to
        // a recycled descriptor.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs_c.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                let result = if written == 1 { Ok(()) } else { Err(io::Error::last_os_error()) };
                libc::close(fd);
                result
            });
        }
        let child = cmd.spawn().map_err(|e| with_path(e, "spawn into", &self.path))?;
        let pid = i32::try_from(child.id()).expect("pid fits pid_t");
        self.spawned.lock().unwrap_or_else(|e| e.into_inner()).push(Pid::from_raw(pid));
        Ok(child)
    }

    /// Spawns `count` shell busy loops (`while :; do :; done`): pure CPU, no
    /// forks, so a group that is not frozen visibly uses CPU time.
    pub fn spawn_busy_loops(&self, count: usize) -> io::Result<Vec<Child>> {
        (0..count).map(|_| self.spawn(Command::new("/bin/sh").args(["-c", "while :; do :; done"]))).collect()
    }

    /// Pids in this cgroup's `cgroup.procs` (not its sub-cgroups).
    pub fn pids(&self) -> io::Result<Vec<u32>> {
        read_pids(&self.path)
    }

    /// CPU time (user + system, in clock ticks) used so far by the processes
    /// now in the cgroup: a frozen group's total does not advance. Processes
    /// that exit meanwhile are skipped.
    pub fn cpu_ticks(&self) -> io::Result<u64> {
        let mut total = 0;
        for pid in self.pids()? {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            // Fields after the command name, which may itself hold spaces: state
            // is the 3rd field of stat(5), utime and stime the 14th and 15th.
            let fields: Vec<&str> = stat.rsplit_once(") ").map_or(vec![], |(_, rest)| rest.split(' ').collect());
            let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
            match (tick(11), tick(12)) {
                (Some(user), Some(system)) => total += user + system,
                _ => return Err(io::Error::new(io::ErrorKind::InvalidData, format!("/proc/{pid}/stat: {stat:?}"))),
            }
        }
        Ok(total)
    }

    /// Whether the kernel reports the cgroup frozen (v2 `frozen 1` in
    /// `cgroup.events`, v1 `FROZEN` in `freezer.state`).
    pub fn is_frozen(&self) -> io::Result<bool> {
        Ok(match self.hierarchy {
            Hierarchy::V2 => read(&self.path.join("cgroup.events"))?.lines().any(|l| l == "frozen 1"),
            Hierarchy::V1Freezer => read(&self.path.join("freezer.state"))?.trim() == "FROZEN",
        })
    }

    /// Thaw, kill, wait (bounded) until empty, reap, remove. Best effort:
    /// every step runs even if an earlier one failed; failures are printed.
    fn clean_up(&mut self) {
        let report = |what: &str, error: io::Error| eprintln!("TestCgroup {}: {what}: {error}", self.path.display());
        let thaw = match self.hierarchy {
            Hierarchy::V2 => write(&self.path.join("cgroup.freeze"), "0"),
            Hierarchy::V1Freezer => write(&self.path.join("freezer.state"), "THAWED"),
        };
        if let Err(e) = thaw {
            report("thaw", e);
        }
        let deadline = Instant::now() + CLEANUP_TIMEOUT;
        loop {
            match self.kill_everything() {
                Ok(true) => break,
                Ok(false) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
                Ok(false) => {
                    report("kill", io::Error::new(io::ErrorKind::TimedOut, "processes left"));
                    break;
                }
                Err(e) => {
                    report("kill", e);
                    break;
                }
            }
        }
        for pid in std::mem::take(&mut *self.spawned.lock().unwrap_or_else(|e| e.into_inner())) {
            reap(pid);
        }
        if let Err(e) = remove_tree(&self.path) {
            report("rmdir", e);
        }
    }

    /// Kills what is left in the subtree; true once it is empty.
    fn kill_everything(&self) -> io::Result<bool> {
        match self.hierarchy {
            Hierarchy::V2 => {
                if !read(&self.path.join("cgroup.events"))?.lines().any(|l| l == "populated 1") {
                    return Ok(true);
                }
                write(&self.path.join("cgroup.kill"), "1")?;
                Ok(false)
            }
            Hierarchy::V1Freezer => {
                let pids = subtree_pids(&self.path)?;
                for &pid in &pids {
                    let pid = Pid::from_raw(i32::try_from(pid).expect("pid fits pid_t"));
                    // Only processes in our own cgroup, hence started by us.
                    let _ = kill(pid, Signal::SIGKILL);
                }
                Ok(pids.is_empty())
            }
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        self.clean_up();
    }
}

/// Reaps a child we spawned, unless its `Child` was already waited for. A
/// pid is never reused before it is reaped, so `WNOHANG` telling us it is
/// still ours makes the kill safe.
fn reap(pid: Pid) {
    match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) => {
            // Left the cgroup somehow: it is still our child, so end it.
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
        Ok(_) | Err(Errno::ECHILD) => {}
        Err(errno) => eprintln!("TestCgroup: waitpid {pid}: {errno}"),
    }
}

/// Removes the sub-cgroups first, then the cgroup. rmdir of a cgroup whose
/// last process just exited can briefly fail with EBUSY, hence the retries.
fn remove_tree(path: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    let mut attempts = 0;
    loop {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempts < 100 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(with_path(e, "rmdir", path)),
        }
    }
}

fn subtree_pids(path: &Path) -> io::Result<Vec<u32>> {
    let mut pids = read_pids(path)?;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            pids.extend(subtree_pids(&entry.path())?);
        }
    }
    Ok(pids)
}

fn read_pids(cgroup: &Path) -> io::Result<Vec<u32>> {
    let path = cgroup.join("cgroup.procs");
    read(&path)?
        .split_whitespace()
        .map(|pid| pid.parse().map_err(|e| with_path(io::Error::new(io::ErrorKind::InvalidData, e), "parse", &path)))
        .collect()
}

fn read(path: &Path) -> io::Result<String> {
    std::fs::read_to_string(path).map_err(|e| with_path(e, "read", path))
}

fn write(path: &Path, content: &str) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).open(path).map_err(|e| with_path(e, "open", path))?;
    file.write_all(content.as_bytes()).map_err(|e| with_path(e, "write", path))
}

fn with_path(error: io::Error, op: &str, path: &Path) -> io::Error {
    io::Error::new(error.kind(), format!("{op} {}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::root_or_skip;

    #[test]
    #[allow(clippy::zombie_processes, reason = "TestCgroup reaps what it spawned")]
    fn drop_kills_reaps_and_removes() {
        if !root_or_skip("drop_kills_reaps_and_removes") {
            return;
        }
        let cgroup = TestCgroup::create("testkit").expect("create");
        assert!(cgroup.relative_name().starts_with("rollpoint-test-testkit-"));
        let path = cgroup.path().to_path_buf();
        let mut children = Vec::new();
        for _ in 0..3 {
            children.push(cgroup.spawn(Command::new("/bin/sleep").arg("1000")).expect("spawn"));
        }
        // A grandchild the fixture did not spawn must go too.
        cgroup.spawn(Command::new("/bin/sh").args(["-c", "/bin/sleep 1000 & wait"])).expect("spawn sh");
        let mut pids = cgroup.pids().expect("pids");
        let deadline = Instant::now() + Duration::from_secs(5);
        while pids.len() < 5 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            pids = cgroup.pids().expect("pids");
        }
        assert_eq!(pids.len(), 5, "3 sleeps, sh and its sleep: {pids:?}");
        for child in &children {
            assert!(pids.contains(&child.id()));
        }
        drop(cgroup);
        assert!(!path.exists(), "{} left behind", path.display());
        // Our children are reaped; the orphaned grandchild is init's to reap,
        // so it may linger briefly as a zombie.
        let dead = |pid: &u32| match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
            Err(_) => true,
        };
        for pid in &pids {
            assert!(dead(pid), "pid {pid} survived");
        }
        for child in &children {
            let status = std::fs::read_to_string(format!("/proc/{}/stat", child.id()));
            assert!(status.is_err(), "child {} not reaped: {status:?}", child.id());
        }
    }

    #[test]
    fn a_panicking_test_leaves_nothing_behind_even_frozen() {
        if !root_or_skip("a_panicking_test_leaves_nothing_behind_even_frozen") {
            return;
        }
        let cgroup = TestCgroup::create("testkit-panic").expect("create");
        let path = cgroup.path().to_path_buf();
        let children = cgroup.spawn_busy_loops(2).expect("spawn");
        let pids: Vec<u32> = children.iter().map(Child::id).collect();
        let outcome = std::panic::catch_unwind(move || {
            let cgroup = cgroup;
            write(&cgroup.path().join("cgroup.freeze"), "1").expect("freeze");
            let deadline = Instant::now() + Duration::from_secs(5);
            while !cgroup.is_frozen().expect("events") && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(cgroup.spawn(&mut Command::new("/bin/true")).is_err(), "spawn into a frozen group must refuse");
            panic!("test failure while frozen");
        });
        assert!(outcome.is_err());
        assert!(!path.exists(), "{} left behind", path.display());
        for pid in pids {
            assert!(std::fs::metadata(format!("/proc/{pid}")).is_err(), "child {pid} not reaped");
        }
        drop(children);
    }
}
