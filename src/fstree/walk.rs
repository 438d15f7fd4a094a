//! Every entry of a tree, parents before their children.

use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use super::error::FsTreeError;
use super::metadata::{from_std, Kind, Metadata};

/// Every entry under `root`, `root` itself first as b"", each folder before
/// what it holds (a folder's entries, in byte order, then its subfolders'). A folder on
/// another filesystem or subvolume (another `st_dev`: a mount, a nested
/// btrfs subvolume) is listed but not entered.
pub fn walk(root: &Path) -> Result<Vec<(Vec<u8>, Metadata)>, FsTreeError> {
    let root_stat = std::fs::symlink_metadata(root).map_err(FsTreeError::io("lstat", root))?;
    let device = root_stat.dev();
    let mut entries = vec![(Vec::new(), from_std(root, &root_stat)?)];
    // Folders still to list, deepest last: popping them keeps the order a
    // depth-first walk would give.
    let mut pending: Vec<Vec<u8>> = vec![Vec::new()];
    while let Some(dir) = pending.pop() {
        let dir_path = super::join(root, &dir);
        let mut names: Vec<Vec<u8>> = std::fs::read_dir(&dir_path)
            .map_err(FsTreeError::io("read_dir", &dir_path))?
            .map(|entry| entry.map(|e| e.file_name().as_bytes().to_vec()))
            .collect::<Result<_, _>>()
            .map_err(FsTreeError::io("read_dir", &dir_path))?;
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let rel = if dir.is_empty() { name } else { [dir.as_slice(), b"/", name.as_slice()].concat() };
            let path = super::join(root, &rel);
            let stat = match std::fs::symlink_metadata(&path) {
                Ok(stat) => stat,
                // Gone since the listing (a live tree): not part of it.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(FsTreeError::Io { op: "lstat", path, source }),
            };
            let meta = from_std(&path, &stat)?;
            if meta.kind == Kind::Dir && stat.dev() == device {
                subdirs.push(rel.clone());
            }
            entries.push((rel, meta));
        }
        pending.extend(subdirs.into_iter().rev());
    }
    Ok(entries)
}
