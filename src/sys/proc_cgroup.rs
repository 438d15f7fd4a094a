//! The cgroup of a process, as `/proc/PID/cgroup` prints it.

/// The v2 line ("0::/path"), else the v1 freezer line ("N:freezer:/path").
pub fn cgroup_in_proc_file(text: &str) -> Option<String> {
    let lines: Vec<(&str, &str)> =
        text.lines().filter_map(|line| line.split_once(':')).filter_map(|(_, rest)| rest.split_once(':')).collect();
    let unified = lines.iter().find(|(controllers, _)| controllers.is_empty());
    let freezer = lines.iter().find(|(controllers, _)| controllers.split(',').any(|c| c == "freezer"));
    unified.or(freezer).map(|(_, path)| (*path).to_owned())
}

/// The cgroup v2 group of process `pid` ("/machine.slice/x.scope"); `None`
/// when the process is in no v2 group but the root (a host with cgroup v1
/// only, or a manager that left the unified hierarchy alone).
pub fn v2_cgroup_of(pid: u32) -> std::io::Result<Option<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .filter(|path| *path != "/" && !path.is_empty())
        .map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_process_can_be_read() {
        assert!(v2_cgroup_of(std::process::id()).is_ok());
    }
}
