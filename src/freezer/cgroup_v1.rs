//! cgroup v1 freezer: `freezer.state` takes `FROZEN` / `THAWED` and reads back
//! `THAWED`, `FREEZING` or `FROZEN`.
//!
//! v1 sends no notification when a freeze completes (`freezer.state` is not
//! pollable), so waiting is a bounded backoff re-read: 100 µs doubling to
//! 10 ms. Reading the file is what makes the kernel re-check whether every
//! task has stopped, and re-writing `FROZEN` retries tasks that were busy
//! (Documentation/admin-guide/cgroup-v1/freezer-subsystem.rst).

use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::control_files::{read_file, settle_freeze, write_file};
use super::{FreezeState, FreezerError};

pub(super) const STATE_FILE: &str = "freezer.state";
const PROCS_FILE: &str = "cgroup.procs";

/// Parses `freezer.state`.
pub(super) fn parse_state(text: &str) -> Option<FreezeState> {
    match text.trim() {
        "THAWED" => Some(FreezeState::Thawed),
        "FREEZING" => Some(FreezeState::Freezing),
        "FROZEN" => Some(FreezeState::Frozen),
        _ => None,
    }
}

pub(super) fn state(cgroup: &Path) -> Result<FreezeState, FreezerError> {
    let path = cgroup.join(STATE_FILE);
    let text = read_file(&path)?;
    parse_state(&text).ok_or(FreezerError::Parse { path, content: text })
}

pub(super) fn freeze(cgroup: &Path, timeout: Duration) -> Result<(), FreezerError> {
    let started = Instant::now();
    let path = cgroup.join(STATE_FILE);
    let frozen = wait_with_backoff(started + timeout, || {
        write_file(&path, "FROZEN")?;
        Ok(state(cgroup)? == FreezeState::Frozen)
    });
    settle_freeze(cgroup, started, frozen, thaw)
}

pub(super) fn thaw(cgroup: &Path) -> Result<(), FreezerError> {
    write_file(&cgroup.join(STATE_FILE), "THAWED")
}

pub(super) fn populated(cgroup: &Path) -> Result<bool, FreezerError> {
    Ok(!read_file(&cgroup.join(PROCS_FILE))?.trim().is_empty())
}

/// Freezes the subtree so nothing forks past us, SIGKILLs every pid in it,
/// thaws so the kills are delivered, then waits for it to empty. If the
/// freeze does not complete (a task stuck in the kernel), the kills are
/// repeated until the subtree is empty instead.
pub(super) fn kill_all(cgroup: &Path, timeout: Duration) -> Result<(), FreezerError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let frozen = freeze(cgroup, timeout / 2).is_ok();
    let killed = kill_subtree(cgroup);
    if frozen {
        thaw(cgroup)?;
    }
    killed?;
    let empty =
        wait_with_backoff(
            deadline,
            || {
                if frozen {
                    Ok(subtree_pids(cgroup)?.is_empty())
                } else {
                    kill_subtree(cgroup)
                }
            },
        )?;
    if empty {
        Ok(())
    } else {
        Err(FreezerError::NotEmpty { cgroup: cgroup.to_path_buf(), waited: started.elapsed() })
    }
}

/// SIGKILLs every process of the subtree; true if there was none.
fn kill_subtree(cgroup: &Path) -> Result<bool, FreezerError> {
    let pids = subtree_pids(cgroup)?;
    for &pid in &pids {
        match kill(Pid::from_raw(pid), Signal::SIGKILL) {
            Ok(()) | Err(Errno::ESRCH) => {} // already gone
            Err(errno) => return Err(FreezerError::io("kill", &cgroup.join(PROCS_FILE))(errno.into())),
        }
    }
    Ok(pids.is_empty())
}

/// Pids in `cgroup.procs` of the cgroup and all its descendants.
fn subtree_pids(cgroup: &Path) -> Result<Vec<i32>, FreezerError> {
    let procs_path = cgroup.join(PROCS_FILE);
    let text = read_file(&procs_path)?;
    let mut pids = parse_pids(&text).ok_or(FreezerError::Parse { path: procs_path, content: text })?;
    let entries = std::fs::read_dir(cgroup).map_err(FreezerError::io("list", cgroup))?;
    for entry in entries {
        let entry = entry.map_err(FreezerError::io("list", cgroup))?;
        if entry.file_type().map_err(FreezerError::io("stat", &entry.path()))?.is_dir() {
            pids.extend(subtree_pids(&entry.path())?);
        }
    }
    Ok(pids)
}

pub(super) fn parse_pids(text: &str) -> Option<Vec<i32>> {
    text.split_whitespace().map(|pid| pid.parse().ok()).collect()
}

/// Calls `check` until it returns true or the deadline passes, sleeping
/// 100 µs, 200 µs, ... up to 10 ms in between (never past the deadline).
/// Checks once more at the deadline.
fn wait_with_backoff(
    deadline: Instant,
    mut check: impl FnMut() -> Result<bool, FreezerError>,
) -> Result<bool, FreezerError> {
    let mut pause = Duration::from_micros(100);
    loop {
        if check()? {
            return Ok(true);
        }
        let Some(remaining) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
            return Ok(false);
        };
        std::thread::sleep(pause.min(remaining));
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::freezer::{CgroupFreezer, Freezer};
    use crate::testkit::cgroup::TestCgroup;
    use crate::testkit::root_or_skip;
    use std::process::Command;

    #[test]
    fn parses_freezer_state() {
        assert_eq!(parse_state("THAWED\n"), Some(FreezeState::Thawed));
        assert_eq!(parse_state("FREEZING\n"), Some(FreezeState::Freezing));
        assert_eq!(parse_state("FROZEN\n"), Some(FreezeState::Frozen));
        assert_eq!(parse_state("frozen\n"), None);
        assert_eq!(parse_state(""), None);
    }

    #[test]
    fn parses_pids() {
        assert_eq!(parse_pids("12\n345\n"), Some(vec![12, 345]));
        assert_eq!(parse_pids(""), Some(vec![]));
        assert_eq!(parse_pids("12\nx\n"), None);
    }

    #[test]
    fn backoff_checks_once_more_at_the_deadline_and_stays_bounded() {
        let started = Instant::now();
        let mut checks = 0;
        let done = wait_with_backoff(started + Duration::from_millis(50), || {
            checks += 1;
            Ok(false)
        })
        .unwrap();
        assert!(!done);
        assert!(started.elapsed() >= Duration::from_millis(50) && started.elapsed() < Duration::from_secs(1));
        // 0.1+0.2+...+6.4 ms, then 10 ms steps: about a dozen checks, no spinning.
        assert!((5..=30).contains(&checks), "{checks} checks");
        assert!(wait_with_backoff(Instant::now(), || Ok(true)).unwrap());
    }

    #[test]
    fn freezes_a_fake_group_that_reports_frozen() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), "THAWED\n").unwrap();
        freeze(dir.path(), Duration::ZERO).unwrap();
        assert_eq!(state(dir.path()).unwrap(), FreezeState::Frozen);
        thaw(dir.path()).unwrap();
        assert_eq!(state(dir.path()).unwrap(), FreezeState::Thawed);
    }

    // ---- root tests on the v1 freezer hierarchy, skipped where it is absent ----

    const TIMEOUT: Duration = Duration::from_secs(5);

    /// A v1 test cgroup, or `None` (test skipped) without root or without a
    /// v1 freezer hierarchy on this host.
    fn v1_cgroup(test: &str) -> Option<TestCgroup> {
        if !root_or_skip(test) {
            return None;
        }
        match TestCgroup::create_v1_freezer(test) {
            Ok(cgroup) => Some(cgroup),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("skipping {test}: no v1 freezer hierarchy ({e})");
                None
            }
            Err(e) => panic!("{test}: {e}"),
        }
    }

    fn cpu_ticks_during(cgroup: &TestCgroup, window: Duration) -> u64 {
        let before = cgroup.cpu_ticks().expect("cpu ticks");
        std::thread::sleep(window);
        cgroup.cpu_ticks().expect("cpu ticks") - before
    }

    #[test]
    fn v1_freeze_stops_busy_processes_and_thaw_resumes_them() {
        let Some(cgroup) = v1_cgroup("v1-busy") else { return };
        let freezer = CgroupFreezer::from_mountinfo().unwrap();
        let _children = cgroup.spawn_busy_loops(10).expect("spawn");
        let path = freezer.resolve(cgroup.path().to_str().unwrap()).expect("resolve");
        assert_eq!(path, cgroup.path());

        let started = Instant::now();
        freezer.freeze(&path, TIMEOUT).expect("freeze");
        eprintln!("v1 freeze of 10 busy loops: {:?}", started.elapsed());
        assert!(cgroup.is_frozen().unwrap());
        assert_eq!(freezer.state(&path).unwrap(), FreezeState::Frozen);
        assert_eq!(cpu_ticks_during(&cgroup, Duration::from_millis(300)), 0);

        freezer.thaw(&path).expect("thaw");
        assert_eq!(freezer.state(&path).unwrap(), FreezeState::Thawed);
        assert!(cpu_ticks_during(&cgroup, Duration::from_millis(300)) > 0);
        freezer.thaw(&path).expect("thawing a thawed group is a no-op");
    }

    #[test]
    fn v1_empty_group_freezes_at_once() {
        let Some(cgroup) = v1_cgroup("v1-empty") else { return };
        let freezer = CgroupFreezer::from_mountinfo().unwrap();
        freezer.freeze(cgroup.path(), TIMEOUT).expect("freeze");
        assert_eq!(freezer.state(cgroup.path()).unwrap(), FreezeState::Frozen);
        freezer.thaw(cgroup.path()).expect("thaw");
    }

    #[test]
    fn v1_kill_all_empties_the_subtree() {
        let Some(cgroup) = v1_cgroup("v1-kill") else { return };
        let freezer = CgroupFreezer::from_mountinfo().unwrap();
        let mut children = cgroup.spawn_busy_loops(3).expect("spawn");
        children
            .push(cgroup.spawn(Command::new("/bin/sh").args(["-c", "while :; do /bin/true; done"])).expect("spawn"));
        // One process in a sub-cgroup: kill_all covers the whole subtree.
        let sub = cgroup.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let nested = cgroup.spawn(Command::new("/bin/sleep").arg("1000")).expect("spawn");
        std::fs::write(sub.join("cgroup.procs"), nested.id().to_string()).unwrap();
        children.push(nested);

        freezer.kill_all(cgroup.path(), TIMEOUT).expect("kill_all");
        assert_eq!(cgroup.pids().unwrap(), Vec::<u32>::new());
        assert_eq!(std::fs::read_to_string(sub.join("cgroup.procs")).unwrap(), "");
        assert_eq!(freezer.state(cgroup.path()).unwrap(), FreezeState::Thawed);
        for mut child in children {
            let status = child.wait().expect("wait");
            assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
        }
    }
}
