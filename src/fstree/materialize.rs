//! Recreating a tree under an empty folder, on any filesystem. Paths come
//! from a remote: each is checked, and an entry is only ever created inside
//! a folder this materialiser created itself, so no path (not even through
//! a symlink the tree holds) can reach outside the target.

use std::collections::HashSet;
use std::fs::File;
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use super::error::FsTreeError;
use super::metadata::{c_path, Kind, Metadata};

pub struct Materializer {
    root: PathBuf,
    /// Folders created here (b"" is the root).
    dirs: HashSet<Vec<u8>>,
    /// Regular files created here: what a hard link may point at.
    files: HashSet<Vec<u8>>,
    /// Folders' metadata, applied last (their mtimes would move as their
    /// content is created).
    dir_metadata: Vec<(Vec<u8>, Metadata)>,
}

/// Refuses what could leave the target: absolute paths, `.` and `..`,
/// empty components, NUL.
fn check_path(rel: &[u8]) -> Result<(), FsTreeError> {
    let refuse = |reason| Err(FsTreeError::BadPath { path: rel.to_vec(), reason });
    if rel.contains(&0) {
        return refuse("holds a NUL byte");
    }
    if rel.starts_with(b"/") {
        return refuse("is absolute");
    }
    for component in rel.split(|b| *b == b'/') {
        match component {
            b"" => return refuse("has an empty component"),
            b"." | b".." => return refuse("has a . or .. component"),
            _ => {}
        }
    }
    Ok(())
}

/// The folder part of a relative path (empty at the top).
pub fn parent_of(rel: &[u8]) -> &[u8] {
    match rel.iter().rposition(|b| *b == b'/') {
        Some(slash) => &rel[..slash],
        None => b"",
    }
}

fn timespec(nanos: i64) -> libc::timespec {
    libc::timespec { tv_sec: nanos.div_euclid(1_000_000_000), tv_nsec: nanos.rem_euclid(1_000_000_000) }
}

fn last_error(op: &'static str, path: &Path) -> FsTreeError {
    FsTreeError::Io { op, path: path.to_owned(), source: std::io::Error::last_os_error() }
}

/// Owner, mode, xattrs and times of an entry that is not a regular file,
/// by path, symlinks not followed. Owner before mode (chown clears setuid).
fn apply_by_path(path: &Path, meta: &Metadata) -> Result<(), FsTreeError> {
    let c = c_path(path)?;
    for (name, value) in &meta.xattrs {
        set_xattr_by_path(path, &c, name, value)?;
    }
    // SAFETY: `c` is a NUL-terminated path that outlives the call; lchown
    // does not follow a symlink; the result is checked.
    if unsafe { libc::lchown(c.as_ptr(), meta.uid, meta.gid) } != 0 {
        return Err(last_error("lchown", path));
    }
    if meta.kind != Kind::Symlink {
        // SAFETY: as above; the entry is not a symlink (chmod follows them).
        if unsafe { libc::chmod(c.as_ptr(), meta.mode) } != 0 {
            return Err(last_error("chmod", path));
        }
    }
    let times = [timespec(meta.atime_ns), timespec(meta.mtime_ns)];
    // SAFETY: `c` as above; `times` is a live array of two timespecs, only
    // read; AT_SYMLINK_NOFOLLOW keeps a symlink's own times; checked.
    if unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        return Err(last_error("utimensat", path));
    }
    Ok(())
}

fn set_xattr_by_path(path: &Path, c: &std::ffi::CStr, name: &[u8], value: &[u8]) -> Result<(), FsTreeError> {
    let c_name = std::ffi::CString::new(name)
        .map_err(|_| FsTreeError::BadPath { path: name.to_vec(), reason: "an xattr name holds a NUL byte" })?;
    // SAFETY: both strings are NUL-terminated and outlive the call; `value`
    // is a live buffer of `value.len()` bytes, only read; checked.
    if unsafe { libc::lsetxattr(c.as_ptr(), c_name.as_ptr(), value.as_ptr().cast(), value.len(), 0) } != 0 {
        return Err(xattr_error(path, name));
    }
    Ok(())
}

fn xattr_error(path: &Path, name: &[u8]) -> FsTreeError {
    let source = std::io::Error::last_os_error();
    FsTreeError::Io {
        op: "setxattr",
        path: path.to_owned(),
        source: std::io::Error::new(source.kind(), format!("{} ({source})", String::from_utf8_lossy(name))),
    }
}

impl Materializer {
    /// Writes under `root`, an existing empty folder.
    pub fn new(root: &Path) -> Result<Materializer, FsTreeError> {
        let mut entries = std::fs::read_dir(root).map_err(FsTreeError::io("read_dir", root))?;
        if entries.next().is_some() {
            return Err(FsTreeError::Io {
                op: "materialise into",
                path: root.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "the folder is not empty"),
            });
        }
        Ok(Materializer {
            root: root.to_owned(),
            dirs: HashSet::from([Vec::new()]),
            files: HashSet::new(),
            dir_metadata: Vec::new(),
        })
    }

    /// Creates the entry at `rel` (b"" = the root: its metadata only). A
    /// regular file that is not a hard link comes back open, to be filled
    /// and handed to [`Materializer::finish_file`]; `hardlink_to` names an
    /// earlier file of this materialiser to link to instead.
    pub fn create(
        &mut self,
        rel: &[u8],
        meta: &Metadata,
        hardlink_to: Option<&[u8]>,
    ) -> Result<Option<File>, FsTreeError> {
        if rel.is_empty() {
            if meta.kind != Kind::Dir {
                return Err(FsTreeError::BadPath { path: Vec::new(), reason: "the root must be a folder" });
            }
            self.dir_metadata.push((Vec::new(), meta.clone()));
            return Ok(None);
        }
        check_path(rel)?;
        if !self.dirs.contains(parent_of(rel)) {
            return Err(FsTreeError::BadPath {
                path: rel.to_vec(),
                reason: "its folder was not created before it (or is not a folder)",
            });
        }
        let path = super::join(&self.root, rel);
        if let Some(target) = hardlink_to {
            if !self.files.contains(target) {
                return Err(FsTreeError::BadPath {
                    path: rel.to_vec(),
                    reason: "links to a file not created before it",
                });
            }
            std::fs::hard_link(super::join(&self.root, target), &path).map_err(FsTreeError::io("link", &path))?;
            return Ok(None);
        }
        match meta.kind {
            Kind::Dir => {
                std::fs::DirBuilder::new().mode(0o700).create(&path).map_err(FsTreeError::io("mkdir", &path))?;
                self.dirs.insert(rel.to_vec());
                self.dir_metadata.push((rel.to_vec(), meta.clone()));
                Ok(None)
            }
            Kind::File => {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(FsTreeError::io("create", &path))?;
                self.files.insert(rel.to_vec());
                Ok(Some(file))
            }
            Kind::Symlink => {
                let target = meta.symlink_target.as_deref().unwrap_or_default();
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), &path)
                    .map_err(FsTreeError::io("symlink", &path))?;
                apply_by_path(&path, meta)?;
                Ok(None)
            }
            Kind::CharDevice | Kind::BlockDevice | Kind::Fifo | Kind::Socket => {
                let kind = match meta.kind {
                    Kind::CharDevice => libc::S_IFCHR,
                    Kind::BlockDevice => libc::S_IFBLK,
                    Kind::Fifo => libc::S_IFIFO,
                    _ => libc::S_IFSOCK,
                };
                let c = c_path(&path)?;
                // SAFETY: `c` is a NUL-terminated path that outlives the
                // call; mknod creates a node and reads nothing else; checked.
                if unsafe { libc::mknod(c.as_ptr(), kind | 0o600, meta.rdev) } != 0 {
                    return Err(last_error("mknod", &path));
                }
                apply_by_path(&path, meta)?;
                Ok(None)
            }
        }
    }

    /// Sets the length (a trailing hole), xattrs, owner, mode and times of
    /// a file from [`Materializer::create`], once its data is written.
    pub fn finish_file(&mut self, rel: &[u8], file: File, meta: &Metadata) -> Result<(), FsTreeError> {
        let path = super::join(&self.root, rel);
        file.set_len(meta.size).map_err(FsTreeError::io("truncate", &path))?;
        let fd = file.as_fd().as_raw_fd();
        for (name, value) in &meta.xattrs {
            let c_name = std::ffi::CString::new(name.as_slice())
                .map_err(|_| FsTreeError::BadPath { path: name.clone(), reason: "an xattr name holds a NUL byte" })?;
            // SAFETY: `fd` is open for the call (borrowed from `file`);
            // `c_name` is NUL-terminated, `value` a live buffer of its
            // length, both only read; checked.
            if unsafe { libc::fsetxattr(fd, c_name.as_ptr(), value.as_ptr().cast(), value.len(), 0) } != 0 {
                return Err(xattr_error(&path, name));
            }
        }
        // SAFETY: `fd` as above; fchown and fchmod change only the inode's
        // owner and mode; owner first, as chown clears setuid; checked.
        if unsafe { libc::fchown(fd, meta.uid, meta.gid) } != 0 {
            return Err(last_error("fchown", &path));
        }
        // SAFETY: as above.
        if unsafe { libc::fchmod(fd, meta.mode) } != 0 {
            return Err(last_error("fchmod", &path));
        }
        let times = [timespec(meta.atime_ns), timespec(meta.mtime_ns)];
        // SAFETY: `fd` as above; `times` is a live array of two timespecs,
        // only read; checked.
        if unsafe { libc::futimens(fd, times.as_ptr()) } != 0 {
            return Err(last_error("futimens", &path));
        }
        Ok(())
    }

    /// Applies the folders' metadata, deepest first, and makes everything
    /// written durable (syncfs).
    pub fn finish(self) -> Result<(), FsTreeError> {
        for (rel, meta) in self.dir_metadata.iter().rev() {
            apply_by_path(&super::join(&self.root, rel), meta)?;
        }
        let root = File::open(&self.root).map_err(FsTreeError::io("open", &self.root))?;
        nix::unistd::syncfs(&root).map_err(|errno| FsTreeError::Io {
            op: "syncfs",
            path: self.root.clone(),
            source: errno.into(),
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_could_leave_the_target_are_refused() {
        for bad in [&b"/etc/passwd"[..], b"../x", b"a/../../x", b"a//b", b"./a", b"a\0b", b"a/"] {
            assert!(check_path(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(check_path(b"a/b.c/..d").is_ok());
    }
}
