//! Every entry of a tree in path byte order (the order of a `BTreeMap`
//! keyed by path), hence parents before their children, one folder listing
//! held at a time per level: a tree of any size is walked in the memory of
//! its deepest branch.

use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use super::error::FsTreeError;
use super::metadata::{from_std, Metadata};

/// What the walk keeps of each entry, from its path and `lstat`.
pub type Describe<T> = fn(&Path, &std::fs::Metadata) -> Result<T, FsTreeError>;

enum Step<T> {
    /// An entry to yield.
    Entry(Vec<u8>, T),
    /// A folder to list, at the place its content sorts (its path and '/').
    Enter(Vec<u8>),
}

/// The walk under `root`: `root` itself first as b"", then every entry in
/// path byte order. A folder on another filesystem or subvolume (another
/// `st_dev`: a mount, a nested btrfs subvolume) is listed but not entered;
/// an entry gone between a listing and its `lstat` (a live tree) is skipped.
pub struct SortedWalk<T> {
    root: PathBuf,
    device: u64,
    describe: Describe<T>,
    /// A listing per folder being walked, each sorted so that `pop` gives
    /// the next step.
    stack: Vec<Vec<Step<T>>>,
}

impl<T> SortedWalk<T> {
    pub fn new(root: &Path, describe: Describe<T>) -> Result<SortedWalk<T>, FsTreeError> {
        let stat = std::fs::symlink_metadata(root).map_err(FsTreeError::io("lstat", root))?;
        let first = Step::Entry(Vec::new(), describe(root, &stat)?);
        let mut stack = vec![vec![first]];
        if stat.is_dir() {
            // Popped after the root's own entry.
            stack[0].insert(0, Step::Enter(Vec::new()));
        }
        Ok(SortedWalk { root: root.to_owned(), device: stat.dev(), describe, stack })
    }

    /// One folder's steps, last first.
    fn list(&self, dir: &[u8]) -> Result<Vec<Step<T>>, FsTreeError> {
        let dir_path = super::join(&self.root, dir);
        let mut steps = Vec::new();
        for entry in std::fs::read_dir(&dir_path).map_err(FsTreeError::io("read_dir", &dir_path))? {
            let name = entry.map_err(FsTreeError::io("read_dir", &dir_path))?.file_name();
            let rel = if dir.is_empty() { name.as_bytes().to_vec() } else { [dir, b"/", name.as_bytes()].concat() };
            let path = super::join(&self.root, &rel);
            let stat = match std::fs::symlink_metadata(&path) {
                Ok(stat) => stat,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(FsTreeError::Io { op: "lstat", path, source }),
            };
            if stat.is_dir() && stat.dev() == self.device {
                steps.push(Step::Enter(rel.clone()));
            }
            steps.push(Step::Entry(rel, (self.describe)(&path, &stat)?));
        }
        // A folder's content sorts right after "name/": after its siblings
        // "name-x" or "name.x", before "name0".
        let key = |step: &Step<T>| match step {
            Step::Entry(rel, _) => rel.clone(),
            Step::Enter(rel) => [rel.as_slice(), b"/"].concat(),
        };
        steps.sort_by_cached_key(|step| std::cmp::Reverse(key(step)));
        Ok(steps)
    }
}

impl<T> Iterator for SortedWalk<T> {
    type Item = Result<(Vec<u8>, T), FsTreeError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let listing = self.stack.last_mut()?;
            match listing.pop() {
                None => {
                    self.stack.pop();
                }
                Some(Step::Entry(rel, value)) => return Some(Ok((rel, value))),
                Some(Step::Enter(dir)) => match self.list(&dir) {
                    Ok(steps) => self.stack.push(steps),
                    Err(error) => {
                        self.stack.clear();
                        return Some(Err(error));
                    }
                },
            }
        }
    }
}

/// Every entry under `root` with all its metadata, in path byte order, as
/// the walk goes.
pub fn entries(root: &Path) -> Result<SortedWalk<Metadata>, FsTreeError> {
    SortedWalk::new(root, from_std)
}

/// Every entry under `root` with all its metadata, in path byte order.
pub fn walk(root: &Path) -> Result<Vec<(Vec<u8>, Metadata)>, FsTreeError> {
    entries(root)?.collect()
}
