use std::path::{Path, PathBuf};

/// Errors of the file-tree layer; I/O errors carry the call and the path.
#[derive(Debug, thiserror::Error)]
pub enum FsTreeError {
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    /// A path from a manifest that could write outside the target.
    #[error("{}: refused: {reason}", String::from_utf8_lossy(.path))]
    BadPath { path: Vec<u8>, reason: &'static str },
}

impl FsTreeError {
    /// A mapper for `map_err`.
    pub fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> FsTreeError + 'a {
        move |source| FsTreeError::Io { op, path: path.to_owned(), source }
    }

    /// The errno behind the error, where there is one (ENOSPC...).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            FsTreeError::Io { source, .. } => source.raw_os_error(),
            FsTreeError::BadPath { .. } => None,
        }
    }
}
