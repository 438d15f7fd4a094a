//! What an entry is, read with lstat and the l*xattr calls (symlinks are
//! never followed).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::FsTreeError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

/// Everything a restore needs to recreate an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub kind: Kind,
    /// `st_mode & 0o7777` (setuid, setgid and sticky included).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Nanoseconds since the epoch.
    pub atime_ns: i64,
    pub mtime_ns: i64,
    /// Regular files: `st_size`; 0 otherwise.
    pub size: u64,
    /// Character and block devices; 0 otherwise.
    pub rdev: u64,
    pub symlink_target: Option<Vec<u8>>,
    /// Sorted by name.
    pub xattrs: Xattrs,
    /// The source's inode (hard links share it); not restored.
    pub ino: u64,
    /// Not restored.
    pub nlink: u64,
    /// Not restored; lets a caller notice a change.
    pub ctime_ns: i64,
}

/// A time as nanoseconds since the epoch, from `stat`'s two fields.
pub(crate) fn nanos(seconds: i64, nanos: i64) -> i64 {
    seconds.saturating_mul(1_000_000_000).saturating_add(nanos)
}

pub(crate) fn c_path(path: &Path) -> Result<CString, FsTreeError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| FsTreeError::BadPath { path: path.as_os_str().as_bytes().to_vec(), reason: "holds a NUL byte" })
}

fn kind_of(file_type: std::fs::FileType) -> Kind {
    use std::os::unix::fs::FileTypeExt as _;
    if file_type.is_symlink() {
        Kind::Symlink
    } else if file_type.is_dir() {
        Kind::Dir
    } else if file_type.is_char_device() {
        Kind::CharDevice
    } else if file_type.is_block_device() {
        Kind::BlockDevice
    } else if file_type.is_fifo() {
        Kind::Fifo
    } else if file_type.is_socket() {
        Kind::Socket
    } else {
        Kind::File
    }
}

/// Metadata of an `lstat` result and the entry's extended attributes.
pub(crate) fn from_std(path: &Path, stat: &std::fs::Metadata) -> Result<Metadata, FsTreeError> {
    let kind = kind_of(stat.file_type());
    let symlink_target = if kind == Kind::Symlink {
        Some(std::fs::read_link(path).map_err(FsTreeError::io("readlink", path))?.as_os_str().as_bytes().to_vec())
    } else {
        None
    };
    Ok(Metadata {
        kind,
        mode: stat.mode() & 0o7777,
        uid: stat.uid(),
        gid: stat.gid(),
        atime_ns: nanos(stat.atime(), stat.atime_nsec()),
        mtime_ns: nanos(stat.mtime(), stat.mtime_nsec()),
        size: if kind == Kind::File { stat.size() } else { 0 },
        rdev: if matches!(kind, Kind::CharDevice | Kind::BlockDevice) { stat.rdev() } else { 0 },
        symlink_target,
        xattrs: read_xattrs(path)?,
        ino: stat.ino(),
        nlink: stat.nlink(),
        ctime_ns: nanos(stat.ctime(), stat.ctime_nsec()),
    })
}

/// Metadata of `root/rel` (`rel` = b"" for the root itself).
pub fn read_metadata(root: &Path, rel: &[u8]) -> Result<Metadata, FsTreeError> {
    let path = super::join(root, rel);
    let stat = std::fs::symlink_metadata(&path).map_err(FsTreeError::io("lstat", &path))?;
    from_std(&path, &stat)
}

/// Calls a size-probing xattr function twice: once for the size, once to
/// fill a buffer of that size (again if it grew in between).
fn with_buffer(mut call: impl FnMut(*mut libc::c_void, usize) -> isize) -> std::io::Result<Vec<u8>> {
    loop {
        let size = call(std::ptr::null_mut(), 0);
        if size < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut buffer = vec![0u8; size as usize];
        if buffer.is_empty() {
            return Ok(buffer);
        }
        let got = call(buffer.as_mut_ptr().cast(), buffer.len());
        if got >= 0 {
            buffer.truncate(got as usize);
            return Ok(buffer);
        }
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::ERANGE) {
            return Err(error);
        }
    }
}

/// Extended attributes as (name, value), sorted by name.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

fn read_xattrs(path: &Path) -> Result<Xattrs, FsTreeError> {
    let c = c_path(path)?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call; the
    // buffer pointer and length come from `with_buffer` and describe a live,
    // writable allocation (or null with length 0 to ask the size); the
    // result is checked there.
    let names = match with_buffer(|buffer, len| unsafe { libc::llistxattr(c.as_ptr(), buffer.cast(), len) }) {
        Ok(names) => names,
        Err(error) if matches!(error.raw_os_error(), Some(libc::ENOTSUP)) => return Ok(Vec::new()),
        Err(error) => return Err(FsTreeError::Io { op: "llistxattr", path: path.to_owned(), source: error }),
    };
    let mut xattrs = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let c_name = CString::new(name).expect("split on NUL");
        // SAFETY: as above; `c_name` is NUL-terminated and outlives the call.
        let value = with_buffer(|buffer, len| unsafe { libc::lgetxattr(c.as_ptr(), c_name.as_ptr(), buffer, len) });
        match value {
            Ok(value) => xattrs.push((name.to_vec(), value)),
            // Removed between the list and the read.
            Err(error) if error.raw_os_error() == Some(libc::ENODATA) => {}
            Err(source) => return Err(FsTreeError::Io { op: "lgetxattr", path: path.to_owned(), source }),
        }
    }
    xattrs.sort();
    Ok(xattrs)
}
