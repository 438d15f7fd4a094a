//! What changed between two trees, found by walking both: for backends
//! whose filesystem cannot say (LVM thin volumes hold any filesystem; the
//! pool knows blocks, not paths). Slower than btrfs's send stream: every
//! entry of both trees is read (one lstat each), no file data.
//!
//! Both trees are snapshots of one filesystem, so an inode number names the
//! same file in both: a file or folder found under another name with the
//! same inode is a rename (checked with the inode's generation where the
//! filesystem has one, since a freed inode number is soon given to a new
//! file). A file's data changed when its size or mtime did; then the whole
//! file counts as changed bytes (a walk cannot tell which ranges).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::fd::AsRawFd as _;
use std::path::Path;

use crate::backend::PathChange;
use crate::fstree::{join, parent_of, walk, FsTreeError, Kind, Metadata};

type Tree = BTreeMap<Vec<u8>, Metadata>;

/// The changes from the tree at `old_root` to the one at `new_root`, in an
/// order [`super::diff::fold`] replays: removals (old names), renames (old
/// name to new), then what was created or changed (new names).
pub fn walk_changes(old_root: &Path, new_root: &Path) -> Result<Vec<PathChange>, FsTreeError> {
    let old: Tree = walk(old_root)?.into_iter().filter(|(path, _)| !path.is_empty()).collect();
    let new: Tree = walk(new_root)?.into_iter().filter(|(path, _)| !path.is_empty()).collect();
    let same_entry = |path: &[u8], meta: &Metadata| {
        old.get(path).is_some_and(|before| before.ino == meta.ino && before.kind == meta.kind)
    };

    // Inodes with one name in the old tree: rename candidates.
    let mut old_by_ino: HashMap<u64, Option<&Vec<u8>>> = HashMap::new();
    for (path, meta) in &old {
        old_by_ino.entry(meta.ino).and_modify(|seen| *seen = None).or_insert(Some(path));
    }
    let mut renamed_from: BTreeMap<&Vec<u8>, &Vec<u8>> = BTreeMap::new();
    for (path, meta) in &new {
        if same_entry(path, meta) || (meta.kind == Kind::File && meta.nlink > 1) {
            continue;
        }
        let Some(Some(before)) = old_by_ino.get(&meta.ino) else { continue };
        let still_there = new.get(*before).is_some_and(|m| m.ino == meta.ino);
        if old[*before].kind == meta.kind
            && !still_there
            && same_file(&join(old_root, before), &join(new_root, path), &old[*before], meta)
        {
            renamed_from.insert(path, before);
        }
    }
    let moved_away: HashSet<&Vec<u8>> = renamed_from.values().copied().collect();

    let mut changes = Vec::new();
    for (path, meta) in &old {
        let kept = new.get(path).is_some_and(|now| now.ino == meta.ino && now.kind == meta.kind);
        if !kept && !moved_away.contains(path) {
            changes.push(PathChange::Remove { path: path.clone() });
        }
    }
    for (&to, &from) in &renamed_from {
        // Implied by its folder's move: the folder's rename carries it.
        let implied = base_name(to) == base_name(from)
            && renamed_from.get(&parent_of(to).to_vec()).is_some_and(|folder| folder.as_slice() == parent_of(from));
        if !implied {
            changes.push(PathChange::Rename { from: from.clone(), to: to.clone() });
        }
    }
    for (path, meta) in &new {
        let before = match renamed_from.get(path) {
            Some(from) => old.get(*from),
            None => old.get(path).filter(|_| same_entry(path, meta)),
        };
        let Some(before) = before else {
            changes.push(match hard_link_target(&old, &new, path, meta) {
                Some(target) => PathChange::Link { path: path.clone(), target },
                None => {
                    PathChange::Touched { path: path.clone(), data: meta.kind == Kind::File, bytes: file_bytes(meta) }
                }
            });
            continue;
        };
        let data = match meta.kind {
            Kind::File => before.size != meta.size || before.mtime_ns != meta.mtime_ns,
            Kind::Symlink => before.symlink_target != meta.symlink_target,
            Kind::CharDevice | Kind::BlockDevice => before.rdev != meta.rdev,
            _ => false,
        };
        let metadata = before.mode != meta.mode
            || before.uid != meta.uid
            || before.gid != meta.gid
            || before.xattrs != meta.xattrs;
        if data {
            changes.push(PathChange::Touched { path: path.clone(), data: true, bytes: file_bytes(meta) });
        } else if metadata {
            changes.push(PathChange::Touched { path: path.clone(), data: false, bytes: 0 });
        }
    }
    Ok(changes)
}

fn file_bytes(meta: &Metadata) -> u64 {
    if meta.kind == Kind::File {
        meta.size
    } else {
        0
    }
}

/// A new name of a file that has another name present in both trees.
fn hard_link_target(old: &Tree, new: &Tree, path: &[u8], meta: &Metadata) -> Option<Vec<u8>> {
    if meta.kind != Kind::File || meta.nlink < 2 {
        return None;
    }
    new.iter()
        .find(|(other, m)| {
            other.as_slice() != path && m.ino == meta.ino && old.get(*other).is_some_and(|o| o.ino == meta.ino)
        })
        .map(|(other, _)| other.clone())
}

fn base_name(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|b| *b == b'/') {
        Some(slash) => &path[slash + 1..],
        None => path,
    }
}

/// Whether two entries with the same inode number are one file: the same
/// inode generation where the filesystem keeps one (ext4, XFS, btrfs), else
/// the same size and mtime (what a rename keeps).
fn same_file(old_path: &Path, new_path: &Path, old: &Metadata, new: &Metadata) -> bool {
    match (generation(old_path, old.kind), generation(new_path, new.kind)) {
        (Some(a), Some(b)) => a == b,
        _ => old.size == new.size && old.mtime_ns == new.mtime_ns,
    }
}

/// The inode's generation (FS_IOC_GETVERSION), for files and folders.
fn generation(path: &Path, kind: Kind) -> Option<u64> {
    if !matches!(kind, Kind::File | Kind::Dir) {
        return None;
    }
    let file = std::fs::File::open(path).ok()?;
    // _IOR('v', 1, long)
    const FS_IOC_GETVERSION: libc::c_ulong = 0x8008_7601;
    let mut version: libc::c_long = 0;
    // SAFETY: the descriptor is open for the call; the kernel writes one
    // `long` into `version`, which lives across the call.
    let status = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_GETVERSION, &mut version as *mut libc::c_long) };
    (status == 0).then_some(version as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_paths() {
        assert_eq!(base_name(b"a/b/c"), b"c");
        assert_eq!(base_name(b"c"), b"c");
        assert_eq!(parent_of(b"a/b/c"), b"a/b");
    }
}
