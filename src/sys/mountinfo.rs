//! Parsing of `/proc/self/mountinfo` (proc(5)): where cgroup hierarchies and
//! filesystems are mounted. Never hard-code `/sys/fs/cgroup`: on a hybrid host
//! cgroup v2 is at `/sys/fs/cgroup/unified`.

use std::path::{Path, PathBuf};

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Root of the mount within its filesystem (field 4).
    pub root: PathBuf,
    /// Mount point (field 5).
    pub mount_point: PathBuf,
    /// Filesystem type (first field after the ` - ` separator).
    pub fs_type: String,
    /// Mount source (device).
    pub source: String,
    /// Per-superblock options (e.g. `rw,freezer` for a cgroup v1 hierarchy).
    pub super_options: String,
}

/// Reads and parses `/proc/self/mountinfo`.
pub fn read() -> std::io::Result<Vec<Mount>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(parse(&text))
}

/// Whether something is mounted at `path` (canonical), per this process's
/// mountinfo.
pub fn is_mount_point(path: &Path) -> bool {
    read().map(|mounts| mounts.iter().any(|mount| mount.mount_point == path)).unwrap_or(false)
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let fields: Vec<&str> = before.split(' ').collect();
    if fields.len() < 6 {
        return None;
    }
    let mut tail = after.split(' ');
    let fs_type = tail.next()?.to_string();
    let source = unescape(tail.next().unwrap_or(""));
    let super_options = tail.next().unwrap_or("").to_string();
    Some(Mount {
        root: PathBuf::from(unescape(fields[3])),
        mount_point: PathBuf::from(unescape(fields[4])),
        fs_type,
        source,
        super_options,
    })
}

/// Undoes the octal escapes (`\040` for a space...) the kernel writes.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let value =
                (bytes[i + 1] - b'0') as u32 * 64 + (bytes[i + 2] - b'0') as u32 * 8 + (bytes[i + 3] - b'0') as u32;
            out.push(u8::try_from(value).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup v2 mount point, if any. When the hierarchy is mounted more
/// than once (a chroot or container with `/sys` bound in), the first mount
/// of its root is the host's own.
pub fn cgroup2_mount(mounts: &[Mount]) -> Option<PathBuf> {
    first_root_mount(mounts, |m| m.fs_type == "cgroup2")
}

/// The cgroup v1 hierarchy that carries the freezer controller, if any
/// (the first mount of its root, as for v2).
pub fn cgroup1_freezer_mount(mounts: &[Mount]) -> Option<PathBuf> {
    first_root_mount(mounts, |m| m.fs_type == "cgroup" && m.super_options.split(',').any(|o| o == "freezer"))
}

fn first_root_mount(mounts: &[Mount], wanted: impl Fn(&Mount) -> bool) -> Option<PathBuf> {
    let candidates = || mounts.iter().filter(|m| wanted(m));
    candidates().find(|m| m.root == Path::new("/")).or_else(|| candidates().next()).map(|m| m.mount_point.clone())
}

/// The mount that holds `path` (an absolute, canonical path): the one with the
/// longest mount point that is a prefix of it.
pub fn mount_of<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    mounts.iter().filter(|m| path.starts_with(&m.mount_point)).max_by_key(|m| m.mount_point.components().count())
}

/// Where the tree at `path` (absolute, canonical) is mounted again, by a
/// bind mount of it or of a folder inside it: those mount points.
pub fn mounts_showing<'a>(mounts: &'a [Mount], path: &Path) -> Vec<&'a Path> {
    let Some(holder) = mount_of(mounts, path) else { return Vec::new() };
    let Ok(rest) = path.strip_prefix(&holder.mount_point) else { return Vec::new() };
    let tree = holder.root.join(rest);
    mounts
        .iter()
        .filter(|m| m.source == holder.source && m.fs_type == holder.fs_type && m.root.starts_with(&tree))
        .filter(|m| m.mount_point != path)
        .map(|m| m.mount_point.as_path())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 7:0 /data /mnt/my\\040disk rw,relatime shared:5 - btrfs /dev/loop0 rw,space_cache=v2,subvolid=256,subvol=/data
";

    #[test]
    fn finds_cgroup_mounts_on_a_hybrid_host() {
        let mounts = parse(HYBRID);
        assert_eq!(cgroup2_mount(&mounts), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(cgroup1_freezer_mount(&mounts), Some(PathBuf::from("/sys/fs/cgroup/freezer")));
    }

    #[test]
    fn a_second_mount_of_the_hierarchy_does_not_win() {
        let text = format!("{HYBRID}60 23 0:38 / /srv/chroot/sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n");
        assert_eq!(cgroup2_mount(&parse(&text)), Some(PathBuf::from("/sys/fs/cgroup/unified")));
    }

    #[test]
    fn unescapes_and_finds_the_longest_prefix() {
        let mounts = parse(HYBRID);
        let m = mount_of(&mounts, Path::new("/mnt/my disk/vol")).expect("mount");
        assert_eq!(m.fs_type, "btrfs");
        assert_eq!(m.root, PathBuf::from("/data"));
        assert_eq!(m.source, "/dev/loop0");
        assert!(mount_of(&mounts, Path::new("/mnt/other")).is_none());
    }

    #[test]
    fn finds_the_bind_mounts_of_a_tree() {
        let text = format!(
            "{HYBRID}61 23 7:0 /data/.rollpoint/db/s1 /mnt/then ro - btrfs /dev/loop0 rw,subvol=/data/.rollpoint/db/s1\n\
             62 23 7:0 /data/.rollpoint/db/s1/etc /mnt/etc ro - btrfs /dev/loop0 rw\n\
             63 23 7:1 /data/.rollpoint/db/s1 /mnt/other ro - btrfs /dev/loop1 rw\n\
             64 23 7:0 /data/.rollpoint/db/s10 /mnt/s10 ro - btrfs /dev/loop0 rw\n"
        );
        let mounts = parse(&text);
        let showing = mounts_showing(&mounts, Path::new("/mnt/my disk/.rollpoint/db/s1"));
        assert_eq!(showing, [Path::new("/mnt/then"), Path::new("/mnt/etc")]);
        assert!(mounts_showing(&mounts, Path::new("/mnt/my disk/.rollpoint/db/s2")).is_empty());
    }

    #[test]
    fn optional_fields_do_not_shift_the_parse() {
        let m = &parse(HYBRID)[3];
        assert_eq!(m.mount_point, PathBuf::from("/mnt/my disk"));
        assert!(m.super_options.contains("subvolid=256"));
    }
}
