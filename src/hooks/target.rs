//! Which process of a container a hook enters, and who it runs as there.

use std::path::{Path, PathBuf};

use super::HookError;

/// The container's main process: the oldest process anywhere in its cgroup
/// tree (its init, or the first process its manager started), whose
/// namespaces and root are the container's. Processes in a mount namespace
/// of their own come first: a manager that keeps its supervisor in the
/// container's unit (systemd-nspawn's `supervisor` beside `payload`)
/// started before the container, in the host's namespaces.
pub fn main_process(cgroup: &Path) -> Result<u32, HookError> {
    let host_namespace = mount_namespace("self");
    // (in the host's namespace, start time, pid): the smallest wins.
    let mut best: Option<(bool, u64, u32)> = None;
    let mut folders = vec![cgroup.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let procs = std::fs::read_to_string(folder.join("cgroup.procs"))
            .map_err(|source| HookError::Cgroup { cgroup: folder.clone(), source })?;
        for pid in procs.lines().filter_map(|line| line.trim().parse::<u32>().ok()) {
            // A process that has exited meanwhile is simply skipped.
            if let Some(started) = start_time(pid) {
                let on_host = host_namespace.is_some() && mount_namespace(&pid.to_string()) == host_namespace;
                let candidate = (on_host, started, pid);
                if best.is_none_or(|best| candidate < best) {
                    best = Some(candidate);
                }
            }
        }
        folders.extend(child_cgroups(&folder));
    }
    best.map(|(_, _, pid)| pid).ok_or_else(|| HookError::NoProcess { cgroup: cgroup.to_path_buf() })
}

/// The mount namespace of `/proc/<process>` (`mnt:[4026531841]`).
fn mount_namespace(process: &str) -> Option<std::ffi::OsString> {
    std::fs::read_link(format!("/proc/{process}/ns/mnt")).ok().map(PathBuf::into_os_string)
}

fn child_cgroups(folder: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(folder) else { return Vec::new() };
    entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()).collect()
}

/// When the process started, in clock ticks since boot (`/proc/PID/stat`
/// field 22); `None` once it is gone.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count the
    // fields after its closing parenthesis.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// A user as the hook runs: uid and primary gid inside the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
}

/// Resolves `user` (a name from the container's own `/etc/passwd`, a uid,
/// or `uid:gid`) as seen by the process `pid`; empty: root.
pub fn credentials(pid: u32, user: &str) -> Result<Credentials, HookError> {
    if user.is_empty() {
        return Ok(Credentials { uid: 0, gid: 0 });
    }
    if let Some((uid, gid)) = user.split_once(':') {
        if let (Ok(uid), Ok(gid)) = (uid.parse(), gid.parse()) {
            return Ok(Credentials { uid, gid });
        }
    }
    let passwd = std::fs::read_to_string(format!("/proc/{pid}/root/etc/passwd")).unwrap_or_default();
    if let Some(found) = lookup(&passwd, user) {
        return Ok(found);
    }
    match user.parse::<u32>() {
        Ok(uid) => Ok(Credentials { uid, gid: uid }),
        Err(_) => Err(HookError::UnknownUser { user: user.to_owned() }),
    }
}

/// `name` (or a uid) in the text of a passwd file.
fn lookup(passwd: &str, name: &str) -> Option<Credentials> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let (entry, _, uid, gid) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
        (entry == name || uid == name).then(|| Some(Credentials { uid: uid.parse().ok()?, gid: gid.parse().ok()? }))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_read_from_the_passwd_text() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\npostgres:x:105:110::/var/lib/postgresql:/bin/sh\nbad line\n";
        assert_eq!(lookup(passwd, "postgres"), Some(Credentials { uid: 105, gid: 110 }));
        assert_eq!(lookup(passwd, "105"), Some(Credentials { uid: 105, gid: 110 }));
        assert_eq!(lookup(passwd, "nobody"), None);
    }

    #[test]
    fn ids_need_no_passwd() {
        let me = std::process::id();
        assert_eq!(credentials(me, "").unwrap(), Credentials { uid: 0, gid: 0 });
        assert_eq!(credentials(me, "7:8").unwrap(), Credentials { uid: 7, gid: 8 });
        assert!(matches!(credentials(me, "no-such-user-here"), Err(HookError::UnknownUser { .. })));
    }

    #[test]
    fn the_start_time_survives_odd_command_names() {
        assert!(start_time(std::process::id()).is_some());
        assert_eq!(start_time(u32::MAX), None);
    }
}
