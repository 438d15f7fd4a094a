//! Errors of the remote layer, each naming the remote and the object.

use std::path::PathBuf;

/// What went wrong with a remote. `class` maps each variant to the kind of
/// failure a caller reports (the engine turns it into a gRPC code).
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The remote's configuration is wrong (bad url, missing credentials).
    #[error("remote {remote}: {message}")]
    Config { remote: String, message: String },
    /// The object store refused our credentials.
    #[error("remote {remote}: access denied ({message}); check its credentials")]
    AccessDenied { remote: String, message: String },
    /// The bucket, or the directory of a file:// remote, does not exist.
    #[error("remote {remote}: {message}")]
    NoSuchBucket { remote: String, message: String },
    /// The object store could not be reached or failed the request.
    #[error("remote {remote}: {message}")]
    Unavailable { remote: String, message: String },
    /// No repository was initialised at the remote's url.
    #[error("remote {remote}: no repository there yet; create it with `rollpoint remote init {remote}`")]
    NotInitialized { remote: String },
    /// `init` on a remote that already holds a repository.
    #[error("remote {remote}: a repository already exists there")]
    AlreadyInitialized { remote: String },
    /// An object that should be there is not.
    #[error("remote {remote}: {object} not found")]
    NotFound { remote: String, object: String },
    /// An object failed its check (seal, id, format): the data is damaged or
    /// was not written by this repository's key.
    #[error("remote {remote}: {object} is damaged: {message}")]
    Corrupt { remote: String, object: String, message: String },
    /// The key file cannot open the repository's key.
    #[error("remote {remote}: the key file {path} does not open this repository's key")]
    WrongKey { remote: String, path: PathBuf },
    /// Reading the snapshot's files, or writing the restored tree.
    #[error(transparent)]
    Files(#[from] crate::fstree::FsTreeError),
    /// A local file (key file, credentials file) could not be used.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The kind of failure, for the layers above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    InvalidConfig,
    PermissionDenied,
    NotFound,
    AlreadyExists,
    Unavailable,
    DataLoss,
    /// A local filesystem is full.
    NoSpace,
    Internal,
}

impl RemoteError {
    pub fn class(&self) -> ErrorClass {
        match self {
            RemoteError::Config { .. } => ErrorClass::InvalidConfig,
            RemoteError::AccessDenied { .. } | RemoteError::WrongKey { .. } => ErrorClass::PermissionDenied,
            RemoteError::NoSuchBucket { .. } | RemoteError::NotInitialized { .. } | RemoteError::NotFound { .. } => {
                ErrorClass::NotFound
            }
            RemoteError::AlreadyInitialized { .. } => ErrorClass::AlreadyExists,
            RemoteError::Unavailable { .. } => ErrorClass::Unavailable,
            RemoteError::Corrupt { .. } => ErrorClass::DataLoss,
            RemoteError::Io { source, .. }
                if matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
                    || source.to_string().contains("No space left") =>
            {
                ErrorClass::NoSpace
            }
            RemoteError::Io { .. } => ErrorClass::Internal,
            RemoteError::Files(error) if matches!(error.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)) => {
                ErrorClass::NoSpace
            }
            RemoteError::Files(crate::fstree::FsTreeError::BadPath { .. }) => ErrorClass::DataLoss,
            RemoteError::Files(_) => ErrorClass::Internal,
        }
    }

    pub(crate) fn corrupt(remote: &str, object: &str, message: impl Into<String>) -> Self {
        RemoteError::Corrupt { remote: remote.to_owned(), object: object.to_owned(), message: message.into() }
    }
}

pub type RemoteResult<T> = Result<T, RemoteError>;
