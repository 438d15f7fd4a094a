use std::path::PathBuf;
use std::time::Duration;

/// Errors of the freezer layer. I/O errors carry the operation and the path.
#[derive(Debug, thiserror::Error)]
pub enum FreezerError {
    #[error("cgroup {cgroup}: does not exist")]
    NotFound { cgroup: String },
    #[error("cgroup {cgroup}: not inside a cgroup mount (v2 at {v2_mount:?})")]
    OutsideHierarchy { cgroup: String, v2_mount: Option<PathBuf> },
    #[error("cgroup {cgroup}: cannot be frozen ({reason})")]
    NotFreezable { cgroup: String, reason: String },
    #[error("no cgroup v2 mount and no v1 freezer mount found in /proc/self/mountinfo")]
    NoHierarchy,
    #[error("cgroup {cgroup}: not frozen after {waited:?}")]
    Timeout { cgroup: PathBuf, waited: Duration },
    #[error("cgroup {cgroup}: processes still present {waited:?} after killing")]
    NotEmpty { cgroup: PathBuf, waited: Duration },
    #[error("{path}: unexpected content {content:?}")]
    Parse { path: PathBuf, content: String },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl FreezerError {
    /// Builds a `map_err` adapter that tags an I/O error with what was being
    /// done and to which file.
    pub(crate) fn io<'a>(op: &'static str, path: &'a std::path::Path) -> impl FnOnce(std::io::Error) -> Self + 'a {
        move |source| FreezerError::Io { op, path: path.to_path_buf(), source }
    }
}
