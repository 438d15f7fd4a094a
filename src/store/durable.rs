//! Makes sled's files durable with real `fsync`s (see the store module doc).

use std::fs::File;
use std::path::Path;

use super::StoreError;

/// `fsync`s every file and folder under `dir`, folders after their content.
/// sled keeps a handful of files (`conf`, `db`, `snap.*`, `blobs/`), so this
/// is a few system calls; for a file the kernel has already written back it
/// is only a journal commit.
pub fn fsync_tree(dir: &Path) -> Result<(), StoreError> {
    fn io<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> StoreError + 'p {
        move |source| StoreError::Io { op, path: path.to_owned(), source }
    }
    for entry in std::fs::read_dir(dir).map_err(io("read folder", dir))? {
        let entry = entry.map_err(io("read folder", dir))?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(io("stat", &path))?;
        if file_type.is_dir() {
            fsync_tree(&path)?;
        } else if file_type.is_file() {
            File::open(&path).and_then(|f| f.sync_data()).map_err(io("fsync", &path))?;
        }
    }
    File::open(dir).and_then(|f| f.sync_all()).map_err(io("fsync", dir))
}
