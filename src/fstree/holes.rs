//! Where a file holds data and where it has holes (SEEK_DATA / SEEK_HOLE).

use std::fs::File;
use std::os::fd::AsRawFd as _;

use super::error::FsTreeError;

/// `(offset, length)` of each data extent of a regular file of `size`
/// bytes, holes left out. A filesystem that does not know holes answers the
/// whole file as one extent; an empty file has none.
pub fn data_ranges(file: &File, size: u64) -> Result<Vec<(u64, u64)>, FsTreeError> {
    let size = i64::try_from(size).unwrap_or(i64::MAX);
    let mut ranges = Vec::new();
    let mut offset: i64 = 0;
    while offset < size {
        let data = match seek(file, offset, libc::SEEK_DATA)? {
            Some(data) if data < size => data,
            _ => break, // only a hole is left
        };
        let hole = seek(file, data, libc::SEEK_HOLE)?.unwrap_or(size).min(size);
        if hole > data {
            ranges.push((data as u64, (hole - data) as u64));
        }
        offset = hole;
    }
    Ok(ranges)
}

/// lseek(2); `None` for ENXIO (no data at or after `offset`).
fn seek(file: &File, offset: i64, whence: libc::c_int) -> Result<Option<i64>, FsTreeError> {
    // SAFETY: the fd is open and borrowed from `file` for the call; lseek
    // only moves the file offset, and the result is checked.
    let result = unsafe { libc::lseek(file.as_raw_fd(), offset, whence) };
    if result >= 0 {
        return Ok(Some(result));
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::ENXIO) => Ok(None),
        // A filesystem without SEEK_DATA support: all data.
        Some(libc::EINVAL) if whence == libc::SEEK_DATA => Ok(Some(offset)),
        _ => Err(FsTreeError::Io { op: "lseek", path: format!("fd {}", file.as_raw_fd()).into(), source: error }),
    }
}
