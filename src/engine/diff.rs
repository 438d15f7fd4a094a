//! What changed between two snapshots of a container, path by path: added,
//! changed (data or only metadata), deleted, renamed, from what the
//! filesystem says changed (btrfs: the send stream with a parent, without
//! file data), never by walking both trees. Sizes are read with one lstat
//! per listed path. Where the filesystem cannot say (LVM thin volumes),
//! both trees are mounted read-only and walked (`tree_changes`): slower, an
//! lstat per entry of each tree.
//!
//! The send stream is a recipe, not a list: new inodes appear under
//! temporary names (`o257-12-0`) and are renamed into place, folders are
//! renamed with everything under them, deleted folders may be renamed away
//! before their removal. [`fold`] replays the recipe on the names only and
//! keeps, for each path touched, where it came from in the parent.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::error::{EngineError, EngineResult};
use super::snapshots::ensure_ready;
use super::Engine;
use crate::backend::PathChange;

/// How a path differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DiffKind {
    Added,
    /// Its data changed (and maybe its metadata).
    Changed,
    /// Only its metadata (mode, owner, xattrs) changed.
    Metadata,
    Deleted,
    /// Moved from `from`; `data`/`metadata` say what else changed.
    Renamed,
}

impl DiffKind {
    pub fn name(self) -> &'static str {
        match self {
            DiffKind::Added => "added",
            DiffKind::Changed => "changed",
            DiffKind::Metadata => "metadata",
            DiffKind::Deleted => "deleted",
            DiffKind::Renamed => "renamed",
        }
    }
}

/// One path of a diff. Paths are relative to the volume's root, as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathDiff {
    pub kind: DiffKind,
    pub path: Vec<u8>,
    /// Where a renamed path was in the older snapshot.
    pub from: Option<Vec<u8>>,
    /// A new hard link: the path it shares its file with.
    pub link_to: Option<Vec<u8>>,
    /// Its data changed (renamed paths: besides the move).
    pub data: bool,
    /// Bytes of file data written (changed extents); 0 when none.
    pub changed_bytes: u64,
    /// Its size in the newer snapshot (the older one for a deleted path).
    pub size: Option<u64>,
}

/// A path as the replay knows it.
#[derive(Debug, Clone, Default)]
struct Tracked {
    /// Where it was in the parent; none when it is new.
    origin: Option<Vec<u8>>,
    data: bool,
    metadata: bool,
    bytes: u64,
    link_to: Option<Vec<u8>>,
    /// Where the file it links to was in the parent.
    link_origin: Option<Vec<u8>>,
}

/// The replay: current path -> what is known of it.
#[derive(Default)]
struct Replay {
    paths: BTreeMap<Vec<u8>, Tracked>,
    deleted: Vec<Vec<u8>>,
}

/// Whether `path` is under `folder`.
fn is_under(path: &[u8], folder: &[u8]) -> bool {
    path.len() > folder.len() && path.starts_with(folder) && path[folder.len()] == b'/'
}

impl Replay {
    /// Where `path` (a current name) was in the parent: its own entry, or
    /// the nearest tracked folder's origin plus the rest; none when new.
    fn origin_of(&self, path: &[u8]) -> Option<Vec<u8>> {
        if let Some(tracked) = self.paths.get(path) {
            return tracked.origin.clone();
        }
        let mut end = path.len();
        while let Some(slash) = path[..end].iter().rposition(|&b| b == b'/') {
            if let Some(folder) = self.paths.get(&path[..slash]) {
                return folder.origin.as_ref().map(|origin| [origin.as_slice(), &path[slash..]].concat());
            }
            end = slash;
        }
        Some(path.to_vec())
    }

    fn entry(&mut self, path: &[u8]) -> &mut Tracked {
        if !self.paths.contains_key(path) {
            let origin = self.origin_of(path);
            self.paths.insert(path.to_vec(), Tracked { origin, ..Tracked::default() });
        }
        self.paths.get_mut(path).expect("inserted above")
    }

    /// `path` and everything tracked under it, taken out.
    fn take_tree(&mut self, path: &[u8]) -> Vec<(Vec<u8>, Tracked)> {
        let under: Vec<Vec<u8>> = self
            .paths
            .range(path.to_vec()..)
            .take_while(|(key, _)| key.starts_with(path))
            .filter(|(key, _)| key.as_slice() == path || is_under(key, path))
            .map(|(key, _)| key.clone())
            .collect();
        under.into_iter().filter_map(|key| self.paths.remove(&key).map(|tracked| (key, tracked))).collect()
    }

    fn apply(&mut self, change: &PathChange) {
        match change {
            PathChange::Touched { path, data, bytes } => {
                let entry = self.entry(path);
                entry.data |= *data;
                entry.metadata |= !*data;
                entry.bytes += *bytes;
            }
            PathChange::Times { .. } => {}
            PathChange::Rename { from, to } => {
                let origin = self.origin_of(from);
                let moved = self.take_tree(from);
                if !moved.iter().any(|(key, _)| key == from) {
                    self.paths.insert(to.clone(), Tracked { origin, ..Tracked::default() });
                }
                for (key, tracked) in moved {
                    let renamed = [to.as_slice(), &key[from.len()..]].concat();
                    self.paths.insert(renamed, tracked);
                }
            }
            PathChange::Link { path, target } => {
                let link_origin = self.origin_of(target);
                self.paths.insert(
                    path.clone(),
                    Tracked { origin: None, link_to: Some(target.clone()), link_origin, ..Tracked::default() },
                );
            }
            PathChange::Remove { path } => {
                let origin = self.origin_of(path);
                let removed = self.take_tree(path);
                if removed.is_empty() {
                    self.deleted.extend(origin);
                } else {
                    // What was in the parent is deleted; what was new leaves no trace.
                    self.deleted.extend(removed.into_iter().filter_map(|(_, tracked)| tracked.origin));
                }
            }
        }
    }
}

/// The changes, replayed, as a diff sorted by path; `in_parent` says
/// whether a path exists in the older snapshot (a name the stream first
/// touched may be new there: created in place, or under a temporary name).
pub fn fold(changes: &[PathChange], in_parent: impl Fn(&[u8]) -> bool) -> Vec<PathDiff> {
    let mut replay = Replay::default();
    for change in changes {
        replay.apply(change);
    }
    // A file moved to another folder may come as a new link and the old
    // name's removal: that is a rename.
    let mut deleted: Vec<Vec<u8>> = Vec::new();
    for path in replay.deleted {
        if in_parent(&path) && !deleted.contains(&path) {
            deleted.push(path);
        }
    }
    for tracked in replay.paths.values_mut() {
        let moved = tracked.link_origin.as_ref().and_then(|target| deleted.iter().position(|d| d == target));
        if let (None, Some(index)) = (&tracked.origin, moved) {
            tracked.origin = Some(deleted.remove(index));
            tracked.link_to = None;
        }
    }
    let mut diff: Vec<PathDiff> = Vec::new();
    for (path, tracked) in replay.paths {
        let origin = tracked.origin.filter(|origin| in_parent(origin));
        let kind = match &origin {
            None => DiffKind::Added,
            Some(origin) if *origin != path => DiffKind::Renamed,
            Some(_) if tracked.data => DiffKind::Changed,
            Some(_) if tracked.metadata => DiffKind::Metadata,
            // Touched by nothing but a move of its folder and back.
            Some(_) => continue,
        };
        diff.push(PathDiff {
            kind,
            from: origin.filter(|_| kind == DiffKind::Renamed),
            link_to: tracked.link_to,
            data: tracked.data,
            changed_bytes: tracked.bytes,
            size: None,
            path,
        });
    }
    for path in deleted {
        diff.push(PathDiff {
            kind: DiffKind::Deleted,
            path,
            from: None,
            link_to: None,
            data: false,
            changed_bytes: 0,
            size: None,
        });
    }
    diff.sort_by(|a, b| a.path.cmp(&b.path).then(a.kind.cmp(&b.kind)));
    diff
}

fn newer_name(newer: &Option<crate::store::SnapshotRecord>) -> &str {
    newer.as_ref().map_or("the live volume", |n| n.name.as_str())
}

fn lstat_size(root: &Path, path: &[u8]) -> Option<u64> {
    std::fs::symlink_metadata(root.join(std::ffi::OsStr::from_bytes(path))).ok().map(|m| m.len())
}

/// A read-only view of a container's volume as it is now; deleted on drop,
/// and at start if a stop left one (`names::LIVE_VIEW_PREFIX`).
struct LiveView<'a> {
    engine: &'a Engine,
    location: String,
}

impl Drop for LiveView<'_> {
    fn drop(&mut self) {
        if let Err(error) = self.engine.backend.delete_snapshot(&self.location) {
            tracing::warn!(location = %self.location, %error, "deleting the live view of a diff; removed at next start");
        }
    }
}

impl Engine {
    /// Takes a read-only snapshot of the live volume (not frozen: a diff
    /// needs no consistency across files, only one instant per file).
    fn live_view(&self, container: &str) -> EngineResult<LiveView<'_>> {
        static TAKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let record = self.container(container)?;
        let volume = super::snapshots::volume_of(&record);
        let unique = TAKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{}{}-{unique}", super::names::LIVE_VIEW_PREFIX, self.clock.now().timestamp_millis());
        let location = self.backend.location(&volume, &name);
        self.backend.take_snapshot(&volume.path.to_string_lossy(), &location, true)?;
        Ok(LiveView { engine: self, location })
    }

    /// What changed from snapshot `from` to snapshot `to` of `container`
    /// (names or aliases; `from` older than `to` or not, as given); an
    /// empty `to` is the live container.
    pub fn diff_snapshots(&self, container: &str, from: &str, to: &str) -> EngineResult<Vec<PathDiff>> {
        let older = self.snapshot(container, from)?;
        let newer = if to.is_empty() { None } else { Some(self.snapshot(container, to)?) };
        for snapshot in std::iter::once(&older).chain(&newer) {
            ensure_ready(snapshot, "nothing to compare")?;
        }
        // Dropped last (locals go in reverse order): after the views read from it.
        let (newer_location, _live) = match &newer {
            Some(newer) => (newer.location.clone(), None),
            None => {
                let live = self.live_view(container)?;
                (live.location.clone(), Some(live))
            }
        };
        let _pins = (self.pin_snapshot(&older.location)?, self.pin_snapshot(&newer_location)?);
        let new_root = self.backend.readable_root(&newer_location)?;
        let old_root = self.backend.readable_root(&older.location)?;
        let changes = match self.backend.changes_between(Some(&older.location), &newer_location)? {
            Some(changes) => changes,
            // The filesystem cannot say (LVM thin): both trees are walked.
            None => super::tree_changes::walk_changes(&old_root, &new_root).map_err(|error| EngineError::Internal {
                reason: format!("comparing the trees of {} and {}: {error}", older.name, newer_name(&newer)),
            })?,
        };
        let mut diff = fold(&changes, |path| lstat_size(&old_root, path).is_some());
        for entry in &mut diff {
            let root = if entry.kind == DiffKind::Deleted { &old_root } else { &new_root };
            entry.size = lstat_size(root, &entry.path);
        }
        Ok(diff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(text: &str) -> Vec<u8> {
        text.as_bytes().to_vec()
    }

    fn touched(path: &str, bytes: u64) -> PathChange {
        PathChange::Touched { path: b(path), data: true, bytes }
    }

    fn kinds(diff: &[PathDiff]) -> Vec<(String, &'static str, Option<String>)> {
        diff.iter()
            .map(|d| {
                let text = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
                (text(&d.path), d.kind.name(), d.from.as_deref().or(d.link_to.as_deref()).map(text))
            })
            .collect()
    }

    #[test]
    fn the_send_recipe_becomes_one_line_per_path() {
        // As btrfs send writes it: new files under temporary names then
        // moved into place, a folder renamed with its files, a removal.
        let parent = ["dir", "dir/old", "dir/kept", "gone", "tree", "tree/a", "tree/b", "attrs", "moved"];
        let changes = vec![
            touched("o300-9-0", 0),
            PathChange::Rename { from: b("o300-9-0"), to: b("dir/new") },
            touched("dir/new", 5),
            touched("dir/old", 4096),
            PathChange::Link { path: b("dir/link"), target: b("dir/new") },
            PathChange::Remove { path: b("gone") },
            PathChange::Rename { from: b("tree"), to: b("o301-7-0") },
            PathChange::Remove { path: b("o301-7-0/a") },
            PathChange::Remove { path: b("o301-7-0/b") },
            PathChange::Remove { path: b("o301-7-0") },
            PathChange::Touched { path: b("attrs"), data: false, bytes: 0 },
            PathChange::Rename { from: b("moved"), to: b("dir/moved-here") },
            touched("dir/moved-here", 10),
            // Moved to another folder as send may write it: link, unlink.
            PathChange::Link { path: b("dir/kept-too"), target: b("dir/kept") },
            PathChange::Remove { path: b("dir/kept") },
            PathChange::Times { path: b("dir") },
        ];
        let diff = fold(&changes, |path| parent.iter().any(|p| p.as_bytes() == path));
        assert_eq!(
            kinds(&diff),
            [
                ("attrs".into(), "metadata", None),
                ("dir/kept-too".into(), "renamed", Some("dir/kept".into())),
                ("dir/link".into(), "added", Some("dir/new".into())),
                ("dir/moved-here".into(), "renamed", Some("moved".into())),
                ("dir/new".into(), "added", None),
                ("dir/old".into(), "changed", None),
                ("gone".into(), "deleted", None),
                ("tree".into(), "deleted", None),
                ("tree/a".into(), "deleted", None),
                ("tree/b".into(), "deleted", None),
            ]
        );
        let new = diff.iter().find(|d| d.path == b("dir/new")).unwrap();
        assert_eq!(new.changed_bytes, 5);
        let moved = diff.iter().find(|d| d.path == b("dir/moved-here")).unwrap();
        assert!(moved.data && moved.changed_bytes == 10);
    }

    #[test]
    fn a_renamed_folder_carries_its_files_and_their_origins() {
        let parent = ["a", "a/x", "a/y"];
        let changes = vec![
            PathChange::Rename { from: b("a"), to: b("b") },
            touched("b/x", 7),
            PathChange::Remove { path: b("b/y") },
            touched("b/z", 1),
        ];
        let diff = fold(&changes, |path| parent.iter().any(|p| p.as_bytes() == path));
        assert_eq!(
            kinds(&diff),
            [
                ("a/y".into(), "deleted", None),
                ("b".into(), "renamed", Some("a".into())),
                ("b/x".into(), "renamed", Some("a/x".into())),
                ("b/z".into(), "added", None),
            ]
        );
    }

    #[test]
    fn a_path_created_and_removed_in_between_leaves_no_trace() {
        let changes =
            vec![touched("o400-1-0", 3), PathChange::Remove { path: b("o400-1-0") }, PathChange::Times { path: b("") }];
        assert!(fold(&changes, |_| false).is_empty());
    }
}
