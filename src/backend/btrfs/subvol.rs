//! Safe wrappers over the btrfs ioctls in `ioctl.rs`, on open file
//! descriptors. Every `unsafe` block of the btrfs backend is in this file.
//!
//! Errors are plain `io::Error`s (errno kept); `mod.rs` gives them meaning.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::sys::statfs::{fstatfs, BTRFS_SUPER_MAGIC};

use super::ioctl;

/// What a path turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The file is not on a btrfs filesystem.
    NotBtrfs,
    /// On btrfs, but not the root directory of a subvolume.
    Other,
    /// The root directory of a subvolume.
    Subvolume,
}

/// Opens a directory for ioctls: read-only is enough for every btrfs ioctl
/// used here (the kernel checks the mount's writability, not the fd's mode).
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?)
}

/// Whether `fd` is on btrfs and whether it is a subvolume root. A subvolume
/// root is the only directory with inode number `BTRFS_FIRST_FREE_OBJECTID`
/// (the placeholder a snapshot keeps for a nested subvolume has inode 2).
pub fn kind_of_fd(fd: impl AsFd) -> io::Result<Kind> {
    let stat = nix::sys::stat::fstat(&fd)?;
    if fstatfs(&fd)?.filesystem_type() != BTRFS_SUPER_MAGIC {
        return Ok(Kind::NotBtrfs);
    }
    Ok(kind_of_stat(&stat))
}

/// Same as [`kind_of_fd`] for a path; a symlink is looked at, not followed.
pub fn kind_of_path(path: &Path) -> io::Result<Kind> {
    let stat = nix::sys::stat::lstat(path)?;
    if nix::sys::statfs::statfs(path)?.filesystem_type() != BTRFS_SUPER_MAGIC {
        return Ok(Kind::NotBtrfs);
    }
    Ok(kind_of_stat(&stat))
}

/// What the entry `name` of the folder `dir` is, without following a
/// symlink; `None` when there is no such entry.
pub fn kind_at(dir: impl AsFd, name: &OsStr) -> io::Result<Option<Kind>> {
    let stat = match nix::sys::stat::fstatat(&dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(nix::errno::Errno::ENOENT) => return Ok(None),
        Err(errno) => return Err(errno.into()),
    };
    if fstatfs(&dir)?.filesystem_type() != BTRFS_SUPER_MAGIC {
        return Ok(Some(Kind::NotBtrfs));
    }
    Ok(Some(kind_of_stat(&stat)))
}

fn kind_of_stat(stat: &FileStat) -> Kind {
    let is_dir = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
    if is_dir && stat.st_ino == ioctl::BTRFS_FIRST_FREE_OBJECTID {
        Kind::Subvolume
    } else {
        Kind::Other
    }
}

/// Fills the `name` field: a single path component, NUL-terminated, that
/// fits (the caller has validated it; checked again here because the ioctl
/// relies on it).
fn vol_args_with_name(name: &OsStr) -> io::Result<Box<ioctl::VolArgsV2>> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > ioctl::BTRFS_SUBVOL_NAME_MAX || bytes.contains(&0) || bytes.contains(&b'/') {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut args = Box::new(ioctl::VolArgsV2::zeroed());
    // The rest of `name` stays zero, so the name is NUL-terminated.
    args.name[..bytes.len()].copy_from_slice(bytes);
    Ok(args)
}

/// Snapshots the subvolume `source` as `name` inside the directory `parent`
/// (`BTRFS_IOC_SNAP_CREATE_V2`). btrfs commits the transaction before the
/// ioctl returns, so the snapshot is durable when this returns `Ok`.
pub fn snapshot(source: impl AsFd, parent: impl AsFd, name: &OsStr, read_only: bool) -> io::Result<()> {
    let mut args = vol_args_with_name(name)?;
    args.fd = i64::from(source.as_fd().as_raw_fd());
    if read_only {
        args.flags = ioctl::BTRFS_SUBVOL_RDONLY;
    }
    // SAFETY: `parent` and `source` are open fds borrowed for the whole call;
    // `args` is a live, fully initialised 4096-byte `btrfs_ioctl_vol_args_v2`
    // (layout checked at compile time) that outlives the call, with a
    // NUL-terminated name that fits; the kernel only reads it. The return
    // value is checked by nix (`-1` becomes the errno).
    unsafe { ioctl::snap_create_v2(parent.as_fd().as_raw_fd(), &raw const *args) }?;
    Ok(())
}

/// Creates an empty subvolume `name` inside the directory `parent`
/// (`BTRFS_IOC_SUBVOL_CREATE_V2`).
pub fn create(parent: impl AsFd, name: &OsStr) -> io::Result<()> {
    let args = vol_args_with_name(name)?;
    // SAFETY: `parent` is an open fd borrowed for the call; `args` is a live,
    // fully initialised `btrfs_ioctl_vol_args_v2` with flags 0 (no qgroup
    // inheritance) and a NUL-terminated name that fits; it outlives the call
    // and is only read. The return value is checked by nix.
    unsafe { ioctl::subvol_create_v2(parent.as_fd().as_raw_fd(), &raw const *args) }?;
    Ok(())
}

/// Deletes the subvolume `name` inside the directory `parent`
/// (`BTRFS_IOC_SNAP_DESTROY_V2`, by name). A subvolume that holds nested
/// subvolumes fails with `ENOTEMPTY`.
pub fn destroy(parent: impl AsFd, name: &OsStr) -> io::Result<()> {
    let args = vol_args_with_name(name)?;
    // SAFETY: `parent` is an open fd borrowed for the call; `args` is a live,
    // fully initialised `btrfs_ioctl_vol_args_v2` with flags 0 (delete by
    // name) and a NUL-terminated name that fits; it outlives the call and is
    // only read. The return value is checked by nix.
    unsafe { ioctl::snap_destroy_v2(parent.as_fd().as_raw_fd(), &raw const *args) }?;
    Ok(())
}

/// Writes the send stream of the read-only subvolume `fd` into `out`
/// (`BTRFS_IOC_SEND`), as changes from the read-only subvolume with tree id
/// `parent_root` (or, without one, the whole subvolume as new), without
/// file data. Blocks until the stream is written: someone must read the
/// other end of `out` meanwhile.
pub fn send_without_data(fd: impl AsFd, out: impl AsFd, parent_root: Option<u64>) -> io::Result<()> {
    let clone_sources = [parent_root.unwrap_or(0)];
    let args = ioctl::SendArgs {
        send_fd: i64::from(out.as_fd().as_raw_fd()),
        clone_sources_count: u64::from(parent_root.is_some()),
        clone_sources: clone_sources.as_ptr(),
        parent_root: parent_root.unwrap_or(0),
        flags: ioctl::BTRFS_SEND_FLAG_NO_FILE_DATA,
        version: 0,
        reserved: [0; 28],
    };
    // SAFETY: `fd` and `out` are open fds borrowed for the whole call;
    // `args` is a live, fully initialised `btrfs_ioctl_send_args` (layout
    // checked at compile time) whose `clone_sources` points at
    // `clone_sources`, one u64 that outlives the call; the kernel only reads
    // both. The return value is checked by nix.
    unsafe { ioctl::send(fd.as_fd().as_raw_fd(), &raw const args) }?;
    Ok(())
}

/// What `BTRFS_IOC_GET_SUBVOL_INFO` tells about a subvolume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubvolInfo {
    /// Subvolume (tree) id.
    pub id: u64,
    /// Id of the subvolume that holds this one (0 for the top level).
    pub parent_id: u64,
    pub uuid: [u8; ioctl::BTRFS_UUID_SIZE],
    /// Uuid of the subvolume this one is a snapshot of (all zero if none).
    pub parent_uuid: [u8; ioctl::BTRFS_UUID_SIZE],
    /// Latest transaction id that changed this subvolume.
    pub generation: u64,
    /// Transaction id that created the subvolume.
    pub otransid: u64,
    pub read_only: bool,
}

/// Reads the info of the subvolume that holds `fd`.
pub fn subvol_info(fd: impl AsFd) -> io::Result<SubvolInfo> {
    let mut args = Box::new(ioctl::GetSubvolInfoArgs::zeroed());
    // SAFETY: `fd` is an open fd borrowed for the call; `args` points to a
    // live, writable 504-byte `btrfs_ioctl_get_subvol_info_args` (layout
    // checked at compile time) that outlives the call; every bit pattern is a
    // valid value of its integer and byte-array fields. The return value is
    // checked by nix.
    unsafe { ioctl::get_subvol_info(fd.as_fd().as_raw_fd(), &raw mut *args) }?;
    Ok(SubvolInfo {
        id: args.treeid,
        parent_id: args.parent_id,
        uuid: args.uuid,
        parent_uuid: args.parent_uuid,
        generation: args.generation,
        otransid: args.otransid,
        read_only: args.flags & ioctl::BTRFS_ROOT_SUBVOL_RDONLY != 0,
    })
}

/// Reads the `BTRFS_SUBVOL_*` flags of the subvolume whose root is `fd`.
pub fn get_flags(fd: impl AsFd) -> io::Result<u64> {
    let mut flags: u64 = 0;
    // SAFETY: `fd` is an open fd borrowed for the call; `flags` is a live u64
    // the kernel writes once; the return value is checked by nix.
    unsafe { ioctl::subvol_getflags(fd.as_fd().as_raw_fd(), &raw mut flags) }?;
    Ok(flags)
}

/// Sets the `BTRFS_SUBVOL_*` flags of the subvolume whose root is `fd`.
pub fn set_flags(fd: impl AsFd, flags: u64) -> io::Result<()> {
    // SAFETY: `fd` is an open fd borrowed for the call; `flags` is a live u64
    // the kernel only reads; the return value is checked by nix.
    unsafe { ioctl::subvol_setflags(fd.as_fd().as_raw_fd(), &raw const flags) }?;
    Ok(())
}

/// Makes the subvolume whose root is `fd` read-only or writable; a no-op
/// when it already is. Returns whether anything changed.
pub fn set_read_only(fd: impl AsFd, read_only: bool) -> io::Result<bool> {
    let flags = get_flags(&fd)?;
    let wanted = if read_only { flags | ioctl::BTRFS_SUBVOL_RDONLY } else { flags & !ioctl::BTRFS_SUBVOL_RDONLY };
    if wanted == flags {
        return Ok(false);
    }
    set_flags(&fd, wanted)?;
    Ok(true)
}

/// The canonical text form of a uuid: 8-4-4-4-12 lowercase hex digits.
pub fn format_uuid(uuid: &[u8; ioctl::BTRFS_UUID_SIZE]) -> String {
    let mut text = String::with_capacity(36);
    for (i, byte) in uuid.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        let _ = write!(text, "{byte:02x}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_uuids_canonically() {
        let uuid = [0x12, 0x3e, 0x45, 0x67, 0xe8, 0x9b, 0x12, 0xd3, 0xa4, 0x56, 0x42, 0x66, 0x14, 0x17, 0x40, 0x00];
        assert_eq!(format_uuid(&uuid), "123e4567-e89b-12d3-a456-426614174000");
        assert_eq!(format_uuid(&[0; 16]), "00000000-0000-0000-0000-000000000000");
        assert_eq!(format_uuid(&[0xff; 16]).len(), 36);
    }

    #[test]
    fn names_that_do_not_fit_the_ioctl_are_refused_before_it() {
        for bad in ["", "a/b", "a\0b"] {
            let err = vol_args_with_name(OsStr::new(bad)).err().expect(bad);
            assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
        }
        let long = "x".repeat(ioctl::BTRFS_SUBVOL_NAME_MAX + 1);
        assert!(vol_args_with_name(OsStr::new(&long)).is_err());
        let fits = "x".repeat(ioctl::BTRFS_SUBVOL_NAME_MAX);
        let args = vol_args_with_name(OsStr::new(&fits)).expect("fits");
        assert_eq!(args.name[ioctl::BTRFS_SUBVOL_NAME_MAX], 0);
    }

    #[test]
    fn a_plain_tmp_dir_is_not_btrfs_or_at_least_not_a_subvolume() {
        let kind = kind_of_path(&std::env::temp_dir()).expect("stat temp dir");
        assert_ne!(kind, Kind::Subvolume);
        let kind = kind_of_fd(open_dir(Path::new("/proc")).expect("open /proc")).expect("stat /proc");
        assert_eq!(kind, Kind::NotBtrfs);
    }
}
