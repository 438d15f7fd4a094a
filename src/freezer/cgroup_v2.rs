//! cgroup v2 freezer: `cgroup.freeze` to ask, `cgroup.events` to learn.
//!
//! The kernel signals every change of `cgroup.events` to pollers with
//! `POLLPRI` (kernfs_notify), so waiting for `frozen 1` or `populated 0` is a
//! poll(2) on the open file, never a sleep-and-re-read loop. A read records
//! which notification the open file has seen, so a change between our read
//! and our poll still wakes the poll at once: no event can be missed.
//!
//! The kernel sends at most one `cgroup.events` notification per 10 ms per
//! file (`cgroup_file_notify`), deferring the rest: a freeze that completes
//! within 10 ms of the group's previous event (a thaw, a process exiting)
//! is seen up to 10 ms late. Measured here: ~70-150 µs for ten busy loops
//! otherwise.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::control_files::{read_file, settle_freeze, write_file};
use super::{FreezeState, FreezerError};

pub(super) const FREEZE_FILE: &str = "cgroup.freeze";
const EVENTS_FILE: &str = "cgroup.events";
const KILL_FILE: &str = "cgroup.kill";

/// The keys of `cgroup.events` we act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CgroupEvents {
    /// Some process lives in this cgroup or a descendant.
    pub populated: bool,
    /// Every task of the subtree is stopped (own or an ancestor's freeze).
    pub frozen: bool,
}

/// Parses `cgroup.events` (`populated 0|1`, `frozen 0|1`, one key a line).
pub(super) fn parse_events(text: &str) -> Option<CgroupEvents> {
    let mut populated = None;
    let mut frozen = None;
    let flag = |value: &str| match value.trim() {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    };
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("populated", value)) => populated = Some(flag(value)?),
            Some(("frozen", value)) => frozen = Some(flag(value)?),
            _ => {} // newer kernels may add keys
        }
    }
    Some(CgroupEvents { populated: populated?, frozen: frozen? })
}

/// Parses `cgroup.freeze` (`0` or `1`).
pub(super) fn parse_freeze(text: &str) -> Option<bool> {
    match text.trim() {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

pub(super) fn state(cgroup: &Path) -> Result<FreezeState, FreezerError> {
    let freeze_path = cgroup.join(FREEZE_FILE);
    let text = read_file(&freeze_path)?;
    let asked = parse_freeze(&text).ok_or(FreezerError::Parse { path: freeze_path, content: text })?;
    let events = EventsFile::open(cgroup)?.read()?;
    Ok(match (asked, events.frozen) {
        (_, true) => FreezeState::Frozen,
        (true, false) => FreezeState::Freezing,
        (false, false) => FreezeState::Thawed,
    })
}

pub(super) fn freeze(cgroup: &Path, timeout: Duration) -> Result<(), FreezerError> {
    let started = Instant::now();
    // Opened before the write so that the change it causes is seen.
    let mut events = EventsFile::open(cgroup)?;
    write_file(&cgroup.join(FREEZE_FILE), "1")?;
    let outcome = events.wait_until(started + timeout, |e| e.frozen);
    settle_freeze(cgroup, started, outcome, thaw)
}

/// Thawing is immediate in the kernel (`frozen` drops with the write), so
/// there is nothing to wait for.
pub(super) fn thaw(cgroup: &Path) -> Result<(), FreezerError> {
    write_file(&cgroup.join(FREEZE_FILE), "0")
}

pub(super) fn kill_all(cgroup: &Path, timeout: Duration) -> Result<(), FreezerError> {
    let started = Instant::now();
    let mut events = EventsFile::open(cgroup)?;
    write_file(&cgroup.join(KILL_FILE), "1")?;
    if events.wait_until(started + timeout, |e| !e.populated)? {
        Ok(())
    } else {
        Err(FreezerError::NotEmpty { cgroup: cgroup.to_path_buf(), waited: started.elapsed() })
    }
}

pub(super) fn populated(cgroup: &Path) -> Result<bool, FreezerError> {
    Ok(EventsFile::open(cgroup)?.read()?.populated)
}

/// An open `cgroup.events`, re-read from the start after each notification.
struct EventsFile {
    file: File,
    path: PathBuf,
    text: String,
}

impl EventsFile {
    fn open(cgroup: &Path) -> Result<Self, FreezerError> {
        let path = cgroup.join(EVENTS_FILE);
        let file = File::open(&path).map_err(FreezerError::io("open", &path))?;
        Ok(Self { file, path, text: String::new() })
    }

    fn read(&mut self) -> Result<CgroupEvents, FreezerError> {
        self.text.clear();
        self.file.seek(SeekFrom::Start(0)).map_err(FreezerError::io("seek", &self.path))?;
        self.file.read_to_string(&mut self.text).map_err(FreezerError::io("read", &self.path))?;
        parse_events(&self.text)
            .ok_or_else(|| FreezerError::Parse { path: self.path.clone(), content: self.text.clone() })
    }

    /// Re-reads on each change notification until `done` holds (true) or the
    /// deadline passes (false). Checks once more after the last wait.
    fn wait_until(&mut self, deadline: Instant, done: impl Fn(&CgroupEvents) -> bool) -> Result<bool, FreezerError> {
        loop {
            if done(&self.read()?) {
                return Ok(true);
            }
            let Some(remaining) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
                return Ok(false);
            };
            let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLPRI)];
            match poll(&mut fds, poll_timeout(remaining)) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(errno) => return Err(FreezerError::io("poll", &self.path)(errno.into())),
            }
        }
    }
}

/// Milliseconds for poll(2), rounded up so that a sub-millisecond remainder
/// sleeps instead of spinning.
fn poll_timeout(remaining: Duration) -> PollTimeout {
    let millis = i32::try_from(remaining.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX);
    PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::freezer::{CgroupFreezer, Freezer};
    use crate::testkit::cgroup::TestCgroup;
    use crate::testkit::root_or_skip;
    use std::process::Command;

    #[test]
    fn parses_cgroup_events() {
        assert_eq!(parse_events("populated 1\nfrozen 0\n"), Some(CgroupEvents { populated: true, frozen: false }));
        assert_eq!(parse_events("frozen 1\npopulated 0"), Some(CgroupEvents { populated: false, frozen: true }));
        assert_eq!(
            parse_events("populated 0\nsomething_new 7 8\nfrozen 1\n"),
            Some(CgroupEvents { populated: false, frozen: true }),
            "keys a newer kernel adds are skipped"
        );
        assert_eq!(parse_events("populated 1\n"), None, "pre-5.2 kernels have no frozen key");
        assert_eq!(parse_events(""), None);
        assert_eq!(parse_events("populated yes\nfrozen 0\n"), None);
    }

    #[test]
    fn parses_cgroup_freeze() {
        assert_eq!(parse_freeze("0\n"), Some(false));
        assert_eq!(parse_freeze("1\n"), Some(true));
        assert_eq!(parse_freeze("2\n"), None);
    }

    /// A fake cgroup dir: regular files never signal POLLPRI, so the wait
    /// runs into its deadline and the timeout path is taken without root.
    fn fake_cgroup(events: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FREEZE_FILE), "0\n").unwrap();
        std::fs::write(dir.path().join(EVENTS_FILE), events).unwrap();
        std::fs::write(dir.path().join(KILL_FILE), "").unwrap();
        dir
    }

    #[test]
    fn a_freeze_that_times_out_thaws_again() {
        let dir = fake_cgroup("populated 1\nfrozen 0\n");
        let started = Instant::now();
        match freeze(dir.path(), Duration::from_millis(30)) {
            Err(FreezerError::Timeout { cgroup, waited }) => {
                assert_eq!(cgroup, dir.path());
                assert!(waited >= Duration::from_millis(30), "{waited:?}");
            }
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(std::fs::read_to_string(dir.path().join(FREEZE_FILE)).unwrap().trim(), "0");
    }

    #[test]
    fn an_already_frozen_group_needs_no_wait() {
        let dir = fake_cgroup("populated 1\nfrozen 1\n");
        freeze(dir.path(), Duration::ZERO).expect("frozen at the first read");
        assert_eq!(std::fs::read_to_string(dir.path().join(FREEZE_FILE)).unwrap().trim(), "1");
        assert_eq!(state(dir.path()).unwrap(), FreezeState::Frozen);
    }

    #[test]
    fn kill_all_reports_a_group_that_stays_populated() {
        let dir = fake_cgroup("populated 1\nfrozen 0\n");
        assert!(matches!(kill_all(dir.path(), Duration::from_millis(10)), Err(FreezerError::NotEmpty { .. })));
        assert_eq!(std::fs::read_to_string(dir.path().join(KILL_FILE)).unwrap(), "1");
    }

    #[test]
    fn malformed_events_are_a_parse_error() {
        let dir = fake_cgroup("garbage");
        assert!(matches!(state(dir.path()), Err(FreezerError::Parse { .. })));
    }

    // ---- root tests: real cgroups, real processes ----

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn real_freezer() -> CgroupFreezer {
        CgroupFreezer::from_mountinfo().expect("cgroup mounts")
    }

    /// CPU time of the group over `window`: zero when it is frozen.
    fn cpu_ticks_during(cgroup: &TestCgroup, window: Duration) -> u64 {
        let before = cgroup.cpu_ticks().expect("cpu ticks");
        std::thread::sleep(window);
        cgroup.cpu_ticks().expect("cpu ticks") - before
    }

    #[test]
    fn freeze_stops_busy_processes_and_thaw_resumes_them() {
        if !root_or_skip("freeze_stops_busy_processes_and_thaw_resumes_them") {
            return;
        }
        let freezer = real_freezer();
        let cgroup = TestCgroup::create("v2-busy").expect("test cgroup");
        let _children = cgroup.spawn_busy_loops(10).expect("spawn");
        let path = freezer.resolve(cgroup.relative_name()).expect("resolve");
        assert_eq!(path, cgroup.path());
        assert_eq!(freezer.state(&path).unwrap(), FreezeState::Thawed);

        freezer.freeze(&path, TIMEOUT).expect("freeze");
        assert!(cgroup.is_frozen().unwrap(), "kernel says frozen as soon as freeze returns");
        assert_eq!(freezer.state(&path).unwrap(), FreezeState::Frozen);
        assert_eq!(cpu_ticks_during(&cgroup, Duration::from_millis(300)), 0, "frozen processes used CPU");
        freezer.freeze(&path, TIMEOUT).expect("freezing a frozen group is a no-op");

        freezer.thaw(&path).expect("thaw");
        assert!(!cgroup.is_frozen().unwrap());
        assert_eq!(freezer.state(&path).unwrap(), FreezeState::Thawed);
        assert!(cpu_ticks_during(&cgroup, Duration::from_millis(300)) > 0, "thawed processes did not run");
        freezer.thaw(&path).expect("thawing a thawed group is a no-op");
        assert_eq!(cgroup.pids().unwrap().len(), 10);
    }

    #[test]
    fn an_empty_group_freezes_at_once() {
        if !root_or_skip("an_empty_group_freezes_at_once") {
            return;
        }
        let freezer = real_freezer();
        let cgroup = TestCgroup::create("v2-empty").expect("test cgroup");
        let started = Instant::now();
        freezer.freeze(cgroup.path(), TIMEOUT).expect("freeze");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(freezer.state(cgroup.path()).unwrap(), FreezeState::Frozen);
        freezer.thaw(cgroup.path()).expect("thaw");
        assert_eq!(freezer.state(cgroup.path()).unwrap(), FreezeState::Thawed);
    }

    #[test]
    fn a_process_entering_a_frozen_group_is_frozen_too() {
        if !root_or_skip("a_process_entering_a_frozen_group_is_frozen_too") {
            return;
        }
        let freezer = real_freezer();
        let cgroup = TestCgroup::create("v2-late").expect("test cgroup");
        // Spawned elsewhere: a child spawned into a frozen group would freeze
        // before its exec, and spawn would wait for that exec forever.
        let elsewhere = TestCgroup::create("v2-late-src").expect("test cgroup");
        let children = elsewhere.spawn_busy_loops(2).expect("spawn");
        freezer.freeze(cgroup.path(), TIMEOUT).expect("freeze");
        for child in &children {
            std::fs::write(cgroup.path().join("cgroup.procs"), child.id().to_string()).expect("migrate");
        }
        assert_eq!(cgroup.pids().unwrap().len(), 2);
        assert_eq!(cpu_ticks_during(&cgroup, Duration::from_millis(200)), 0);
        assert_eq!(freezer.state(cgroup.path()).unwrap(), FreezeState::Frozen);
    }

    #[test]
    fn kill_all_empties_the_group_even_when_frozen() {
        if !root_or_skip("kill_all_empties_the_group_even_when_frozen") {
            return;
        }
        let freezer = real_freezer();
        for frozen_first in [false, true] {
            let cgroup = TestCgroup::create("v2-kill").expect("test cgroup");
            let mut children = cgroup.spawn_busy_loops(3).expect("spawn");
            children.push(cgroup.spawn(Command::new("/bin/sleep").arg("1000")).expect("spawn"));
            // Forks forever: killing must not race with new children.
            children.push(
                cgroup.spawn(Command::new("/bin/sh").args(["-c", "while :; do /bin/true; done"])).expect("spawn"),
            );
            if frozen_first {
                freezer.freeze(cgroup.path(), TIMEOUT).expect("freeze");
            }
            freezer.kill_all(cgroup.path(), TIMEOUT).expect("kill_all");
            assert_eq!(cgroup.pids().unwrap(), Vec::<u32>::new());
            for mut child in children {
                let status = child.wait().expect("wait");
                assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
            }
            freezer.thaw(cgroup.path()).expect("thaw");
        }
    }

    #[test]
    fn resolve_refuses_escapes_missing_groups_and_the_root() {
        if !root_or_skip("resolve_refuses_escapes_missing_groups_and_the_root") {
            return;
        }
        let freezer = real_freezer();
        let cgroup = TestCgroup::create("v2-resolve").expect("test cgroup");
        let mount = freezer.v2_mount().expect("v2 mount").to_path_buf();
        let escape = format!("{}/../..", cgroup.relative_name());
        assert!(matches!(freezer.resolve(&escape), Err(FreezerError::OutsideHierarchy { .. })), "{escape}");
        assert!(matches!(freezer.resolve("../../../etc"), Err(FreezerError::OutsideHierarchy { .. })));
        assert!(matches!(freezer.resolve("/proc/self"), Err(FreezerError::OutsideHierarchy { .. })));
        // As /proc/PID/cgroup prints it: from the hierarchy's root.
        let as_proc_prints = format!("/{}", cgroup.relative_name());
        assert_eq!(freezer.resolve(&as_proc_prints).unwrap(), cgroup.path());
        let missing = format!("{}/missing", cgroup.relative_name());
        assert!(matches!(freezer.resolve(&missing), Err(FreezerError::NotFound { cgroup }) if cgroup == missing));
        assert!(matches!(freezer.resolve(""), Err(FreezerError::NotFreezable { .. })));
        assert!(matches!(freezer.resolve(mount.to_str().unwrap()), Err(FreezerError::NotFreezable { .. })));
        let absolute = cgroup.path().to_str().unwrap().to_string();
        assert_eq!(freezer.resolve(&absolute).unwrap(), cgroup.path());
    }

    /// A zero timeout: either the group was frozen by the first check, or the
    /// call timed out, and then the group must be thawed again.
    #[test]
    fn a_timed_out_freeze_leaves_the_group_thawed() {
        if !root_or_skip("a_timed_out_freeze_leaves_the_group_thawed") {
            return;
        }
        let freezer = real_freezer();
        let cgroup = TestCgroup::create("v2-zero").expect("test cgroup");
        let _children = cgroup.spawn_busy_loops(10).expect("spawn");
        let mut timeouts = 0;
        for _ in 0..20 {
            match freezer.freeze(cgroup.path(), Duration::ZERO) {
                Ok(()) => assert_eq!(freezer.state(cgroup.path()).unwrap(), FreezeState::Frozen),
                Err(FreezerError::Timeout { .. }) => {
                    timeouts += 1;
                    assert_eq!(freezer.state(cgroup.path()).unwrap(), FreezeState::Thawed);
                }
                Err(other) => panic!("{other}"),
            }
            freezer.thaw(cgroup.path()).expect("thaw");
        }
        eprintln!("zero-timeout freezes that timed out: {timeouts}/20");
        assert!(cpu_ticks_during(&cgroup, Duration::from_millis(200)) > 0);
    }

    /// A task frozen by the v1 freezer never reaches the v2 freezer's trap,
    /// so a v2 freeze of its group cannot complete: a real timeout.
    #[test]
    #[allow(clippy::zombie_processes, reason = "TestCgroup reaps what it spawned")]
    fn a_freeze_that_cannot_complete_times_out_and_thaws() {
        if !root_or_skip("a_freeze_that_cannot_complete_times_out_and_thaws") {
            return;
        }
        let freezer = real_freezer();
        let v2 = TestCgroup::create("v2-stuck").expect("test cgroup");
        // Declared after v2, so dropped (thawed) first.
        let v1 = match TestCgroup::create_v1_freezer("v2-stuck") {
            Ok(v1) => v1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("skipping: no v1 freezer hierarchy ({e})");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let child = v2.spawn(Command::new("/bin/sleep").arg("1000")).expect("spawn");
        std::fs::write(v1.path().join("cgroup.procs"), child.id().to_string()).expect("move into v1 group");
        freezer.freeze(v1.path(), TIMEOUT).expect("v1 freeze");

        let started = Instant::now();
        match freezer.freeze(v2.path(), Duration::from_millis(200)) {
            Err(FreezerError::Timeout { waited, .. }) => assert!(waited >= Duration::from_millis(200)),
            other => panic!("expected a timeout: {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(freezer.state(v2.path()).unwrap(), FreezeState::Thawed);
        freezer.thaw(v1.path()).expect("v1 thaw");
    }

    /// Not a check: prints how long freezing ten busy loops takes.
    #[test]
    fn freeze_latency() {
        if !root_or_skip("freeze_latency") {
            return;
        }
        let freezer = real_freezer();
        let cgroup = TestCgroup::create("v2-latency").expect("test cgroup");
        let _children = cgroup.spawn_busy_loops(10).expect("spawn");
        let mut freezes = Vec::new();
        let mut thaws = Vec::new();
        for _ in 0..50 {
            let started = Instant::now();
            freezer.freeze(cgroup.path(), TIMEOUT).expect("freeze");
            freezes.push(started.elapsed());
            let started = Instant::now();
            freezer.thaw(cgroup.path()).expect("thaw");
            thaws.push(started.elapsed());
            // cgroup.events notifications are rate-limited to one per 10 ms
            // (cgroup_file_notify): leave the thaw's notification behind us.
            std::thread::sleep(Duration::from_millis(25));
        }
        freezes.sort();
        thaws.sort();
        eprintln!(
            "v2 freeze of 10 busy loops: min {:?} median {:?} max {:?}; thaw median {:?}",
            freezes[0],
            freezes[freezes.len() / 2],
            freezes[freezes.len() - 1],
            thaws[thaws.len() / 2]
        );
    }
}
