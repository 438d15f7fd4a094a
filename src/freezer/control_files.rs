//! Reading and writing cgroup control files, and ending a freeze attempt:
//! what the v1 and v2 freezers share. A leaf: it imports neither of them.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use super::FreezerError;

/// The whole of a control file.
pub(super) fn read_file(path: &Path) -> Result<String, FreezerError> {
    std::fs::read_to_string(path).map_err(FreezerError::io("read", path))
}

/// Ends a freeze attempt of either flavour: frozen is done; not frozen in
/// time is thawed and a timeout; a failed wait is thawed too, so a group is
/// never left frozen by an attempt that did not succeed.
pub(super) fn settle_freeze(
    cgroup: &Path,
    started: std::time::Instant,
    outcome: Result<bool, FreezerError>,
    thaw: fn(&Path) -> Result<(), FreezerError>,
) -> Result<(), FreezerError> {
    match outcome {
        Ok(true) => Ok(()),
        Ok(false) => {
            thaw(cgroup)?;
            Err(FreezerError::Timeout { cgroup: cgroup.to_path_buf(), waited: started.elapsed() })
        }
        Err(error) => {
            let _ = thaw(cgroup);
            Err(error)
        }
    }
}

/// One write(2) to an existing control file (never creates it).
pub(super) fn write_file(path: &Path, content: &str) -> Result<(), FreezerError> {
    let mut file = OpenOptions::new().write(true).open(path).map_err(FreezerError::io("open", path))?;
    file.write_all(content.as_bytes()).map_err(FreezerError::io("write", path))
}
