use std::path::PathBuf;

/// Errors of the backend layer. I/O errors carry the operation and the path.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{path}: not on a btrfs filesystem")]
    NotBtrfs { path: PathBuf },
    #[error("{path}: not a btrfs subvolume")]
    NotSubvolume { path: PathBuf },
    #[error("{path}: volume path must be absolute")]
    NotAbsolute { path: PathBuf },
    #[error("{path}: does not exist")]
    NotFound { path: PathBuf },
    #[error("{path}: already exists")]
    AlreadyExists { path: PathBuf },
    #[error("{name:?}: invalid name: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("{path}: a restore could never swap this volume: {reason}")]
    CannotSwap { path: PathBuf, reason: String },
    #[error("{path}: lies inside a snapshot folder (.rollpoint)")]
    InsideSnapshotFolder { path: PathBuf },
    #[error("{op} {path}: no space left on the filesystem")]
    NoSpace { op: &'static str, path: PathBuf },
    #[error(
        "thin pool {pool} is {data_percent:.1}% full (data) and {metadata_percent:.1}% full (metadata), above the \
         {threshold:.1}% threshold: snapshot refused; extend the pool or delete snapshots"
    )]
    PoolFull { pool: String, data_percent: f64, metadata_percent: f64, threshold: f64 },
    #[error("{volume}: not an LVM thin volume: {reason}")]
    NotThinVolume { volume: String, reason: String },
    #[error("{location}: not a snapshot made by rollpoint (no rollpoint tag); left alone")]
    NotOurs { location: String },
    #[error("{location} is mounted at {at}: unmount it first (rollpoint snapshot unmount)")]
    Mounted { location: String, at: PathBuf },
    #[error("{command}: {detail}")]
    Lvm { command: String, detail: String },
    #[error("this backend does not support {what}")]
    Unsupported { what: String },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BackendError {
    /// Wraps an I/O error, turning ENOSPC into [`BackendError::NoSpace`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.raw_os_error() == Some(libc::ENOSPC) || source.raw_os_error() == Some(libc::EDQUOT) {
            BackendError::NoSpace { op, path }
        } else {
            BackendError::Io { op, path, source }
        }
    }
}
