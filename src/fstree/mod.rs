//! A file tree with every piece of metadata a restore needs: read it
//! (`walk`, `read_metadata`, `data_ranges` for holes), recreate it on any
//! filesystem (`Materializer`), compare two trees (`compare_trees`). Paths
//! are bytes (Linux file names need not be UTF-8), relative to a root,
//! without a leading '/'. A leaf: it knows nothing of the layers above.

mod compare;
mod error;
mod holes;
mod materialize;
mod metadata;
mod walk;

use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

pub use compare::compare_trees;
pub use error::FsTreeError;
pub use holes::data_ranges;
pub use materialize::{parent_of, Materializer};
pub(crate) use metadata::nanos;
pub use metadata::{read_metadata, Kind, Metadata};
pub use walk::{entries, walk, Describe, SortedWalk};

/// Opens a regular file to read its data without moving its atime
/// (O_NOATIME, allowed to its owner and to root) or following a symlink.
pub fn open_for_reading(path: &Path) -> Result<std::fs::File, FsTreeError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let open = |flags| std::fs::OpenOptions::new().read(true).custom_flags(flags).open(path);
    match open(libc::O_NOFOLLOW | libc::O_NOATIME) {
        // Neither owner nor root: plain, the atime may move.
        Err(error) if error.raw_os_error() == Some(libc::EPERM) => open(libc::O_NOFOLLOW),
        other => other,
    }
    .map_err(FsTreeError::io("open", path))
}

/// `root/rel`, or `root` for b"".
pub fn join(root: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        root.to_owned()
    } else {
        root.join(std::ffi::OsStr::from_bytes(rel))
    }
}

#[cfg(test)]
mod tests;
