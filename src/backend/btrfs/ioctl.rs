//! Raw btrfs ioctls and the structs they carry, transcribed from the kernel
//! UAPI header `include/uapi/linux/btrfs.h` (and `btrfs_tree.h` for root item
//! flags). Sizes and field offsets are checked at compile time against the C
//! layout; the request numbers are checked in the tests against the values
//! the C macros produce.
//!
//! Nothing here is safe to call directly: `subvol.rs` wraps each call.

use std::mem::{offset_of, size_of};

/// `BTRFS_IOCTL_MAGIC`.
pub const BTRFS_IOCTL_MAGIC: u8 = 0x94;

/// `BTRFS_SUBVOL_RDONLY` (1 << 1): in `btrfs_ioctl_vol_args_v2.flags` and in
/// the value of `BTRFS_IOC_SUBVOL_{GET,SET}FLAGS`.
pub const BTRFS_SUBVOL_RDONLY: u64 = 1 << 1;

/// `BTRFS_ROOT_SUBVOL_RDONLY` (1 << 0), from `btrfs_tree.h`: the root item
/// flag that `BTRFS_IOC_GET_SUBVOL_INFO` reports in its `flags` field. Not the
/// same bit as [`BTRFS_SUBVOL_RDONLY`].
pub const BTRFS_ROOT_SUBVOL_RDONLY: u64 = 1 << 0;

/// `BTRFS_FIRST_FREE_OBJECTID`: the inode number of every subvolume's root
/// directory, and of no other directory.
pub const BTRFS_FIRST_FREE_OBJECTID: u64 = 256;

/// `BTRFS_SUBVOL_NAME_MAX`: the longest name `btrfs_ioctl_vol_args_v2` holds.
pub const BTRFS_SUBVOL_NAME_MAX: usize = 4039;

/// `BTRFS_VOL_NAME_MAX`.
pub const BTRFS_VOL_NAME_MAX: usize = 255;

/// `BTRFS_UUID_SIZE`.
pub const BTRFS_UUID_SIZE: usize = 16;

/// `struct btrfs_ioctl_vol_args_v2` (4096 bytes):
/// ```c
/// struct btrfs_ioctl_vol_args_v2 {
///     __s64 fd;
///     __u64 transid;
///     __u64 flags;
///     union {
///         struct { __u64 size; struct btrfs_qgroup_inherit *qgroup_inherit; };
///         __u64 unused[4];
///     };
///     union {
///         char name[BTRFS_SUBVOL_NAME_MAX + 1];
///         __u64 devid;
///         __u64 subvolid;
///     };
/// };
/// ```
/// The first union is always zero here (no qgroup inheritance); the second
/// is used as `name` only (`devid`/`subvolid` are the first 8 bytes of it,
/// which keep the union 8-aligned: so does the struct's `fd` field).
#[repr(C)]
#[derive(Clone)]
pub struct VolArgsV2 {
    pub fd: i64,
    pub transid: u64,
    pub flags: u64,
    pub unused: [u64; 4],
    pub name: [u8; BTRFS_SUBVOL_NAME_MAX + 1],
}

const _: () = assert!(size_of::<VolArgsV2>() == 4096);
const _: () = assert!(offset_of!(VolArgsV2, flags) == 16);
const _: () = assert!(offset_of!(VolArgsV2, name) == 56);

impl VolArgsV2 {
    pub const fn zeroed() -> Self {
        VolArgsV2 { fd: 0, transid: 0, flags: 0, unused: [0; 4], name: [0; BTRFS_SUBVOL_NAME_MAX + 1] }
    }
}

/// `struct btrfs_ioctl_timespec { __u64 sec; __u32 nsec; }`: 16 bytes, the
/// last 4 are padding in C as in `repr(C)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoctlTimespec {
    pub sec: u64,
    pub nsec: u32,
}

const _: () = assert!(size_of::<IoctlTimespec>() == 16);

/// `struct btrfs_ioctl_get_subvol_info_args` (504 bytes):
/// ```c
/// struct btrfs_ioctl_get_subvol_info_args {
///     __u64 treeid;
///     char name[BTRFS_VOL_NAME_MAX + 1];
///     __u64 parent_id;
///     __u64 dirid;
///     __u64 generation;
///     __u64 flags;
///     __u8 uuid[BTRFS_UUID_SIZE];
///     __u8 parent_uuid[BTRFS_UUID_SIZE];
///     __u8 received_uuid[BTRFS_UUID_SIZE];
///     __u64 ctransid, otransid, stransid, rtransid;
///     struct btrfs_ioctl_timespec ctime, otime, stime, rtime;
///     __u64 reserved[8];
/// };
/// ```
#[repr(C)]
#[derive(Clone)]
pub struct GetSubvolInfoArgs {
    pub treeid: u64,
    pub name: [u8; BTRFS_VOL_NAME_MAX + 1],
    pub parent_id: u64,
    pub dirid: u64,
    pub generation: u64,
    pub flags: u64,
    pub uuid: [u8; BTRFS_UUID_SIZE],
    pub parent_uuid: [u8; BTRFS_UUID_SIZE],
    pub received_uuid: [u8; BTRFS_UUID_SIZE],
    pub ctransid: u64,
    pub otransid: u64,
    pub stransid: u64,
    pub rtransid: u64,
    pub ctime: IoctlTimespec,
    pub otime: IoctlTimespec,
    pub stime: IoctlTimespec,
    pub rtime: IoctlTimespec,
    pub reserved: [u64; 8],
}

const _: () = assert!(size_of::<GetSubvolInfoArgs>() == 504);
const _: () = assert!(offset_of!(GetSubvolInfoArgs, parent_id) == 264);
const _: () = assert!(offset_of!(GetSubvolInfoArgs, generation) == 280);
const _: () = assert!(offset_of!(GetSubvolInfoArgs, flags) == 288);
const _: () = assert!(offset_of!(GetSubvolInfoArgs, uuid) == 296);
const _: () = assert!(offset_of!(GetSubvolInfoArgs, ctransid) == 344);
const _: () = assert!(offset_of!(GetSubvolInfoArgs, ctime) == 376);
const _: () = assert!(offset_of!(GetSubvolInfoArgs, reserved) == 440);

impl GetSubvolInfoArgs {
    pub const fn zeroed() -> Self {
        const ZERO_TIME: IoctlTimespec = IoctlTimespec { sec: 0, nsec: 0 };
        GetSubvolInfoArgs {
            treeid: 0,
            name: [0; BTRFS_VOL_NAME_MAX + 1],
            parent_id: 0,
            dirid: 0,
            generation: 0,
            flags: 0,
            uuid: [0; BTRFS_UUID_SIZE],
            parent_uuid: [0; BTRFS_UUID_SIZE],
            received_uuid: [0; BTRFS_UUID_SIZE],
            ctransid: 0,
            otransid: 0,
            stransid: 0,
            rtransid: 0,
            ctime: ZERO_TIME,
            otime: ZERO_TIME,
            stime: ZERO_TIME,
            rtime: ZERO_TIME,
            reserved: [0; 8],
        }
    }
}

/// `BTRFS_SEND_FLAG_NO_FILE_DATA`: the stream says where data changed
/// (`UPDATE_EXTENT`) without carrying it.
pub const BTRFS_SEND_FLAG_NO_FILE_DATA: u64 = 0x1;

/// `struct btrfs_ioctl_send_args` (72 bytes):
/// ```c
/// struct btrfs_ioctl_send_args {
///     __s64 send_fd;
///     __u64 clone_sources_count;
///     __u64 __user *clone_sources;
///     __u64 parent_root;
///     __u64 flags;
///     __u32 version;
///     __u8  reserved[28];
/// };
/// ```
#[repr(C)]
#[derive(Clone)]
pub struct SendArgs {
    pub send_fd: i64,
    pub clone_sources_count: u64,
    pub clone_sources: *const u64,
    pub parent_root: u64,
    pub flags: u64,
    pub version: u32,
    pub reserved: [u8; 28],
}

const _: () = assert!(size_of::<SendArgs>() == 72);
const _: () = assert!(offset_of!(SendArgs, parent_root) == 24);
const _: () = assert!(offset_of!(SendArgs, flags) == 32);
const _: () = assert!(offset_of!(SendArgs, version) == 40);

// include/uapi/linux/btrfs.h: #define BTRFS_IOC_SEND _IOW(BTRFS_IOCTL_MAGIC, 38, struct btrfs_ioctl_send_args)
// Issued on the root directory of the (read-only) subvolume to send; the
// kernel writes the stream into `send_fd`.
nix::ioctl_write_ptr!(send, BTRFS_IOCTL_MAGIC, 38, SendArgs);

// include/uapi/linux/btrfs.h: #define BTRFS_IOC_SNAP_CREATE_V2 _IOW(BTRFS_IOCTL_MAGIC, 23, struct btrfs_ioctl_vol_args_v2)
// Issued on the destination's parent directory; `fd` = the source subvolume.
nix::ioctl_write_ptr!(snap_create_v2, BTRFS_IOCTL_MAGIC, 23, VolArgsV2);

// include/uapi/linux/btrfs.h: #define BTRFS_IOC_SUBVOL_CREATE_V2 _IOW(BTRFS_IOCTL_MAGIC, 24, struct btrfs_ioctl_vol_args_v2)
// Issued on the new subvolume's parent directory; `name` = the new subvolume.
nix::ioctl_write_ptr!(subvol_create_v2, BTRFS_IOCTL_MAGIC, 24, VolArgsV2);

// include/uapi/linux/btrfs.h: #define BTRFS_IOC_SNAP_DESTROY_V2 _IOW(BTRFS_IOCTL_MAGIC, 63, struct btrfs_ioctl_vol_args_v2)
// Issued on the parent directory; `name` = the subvolume to delete.
nix::ioctl_write_ptr!(snap_destroy_v2, BTRFS_IOCTL_MAGIC, 63, VolArgsV2);

// include/uapi/linux/btrfs.h: #define BTRFS_IOC_GET_SUBVOL_INFO _IOR(BTRFS_IOCTL_MAGIC, 60, struct btrfs_ioctl_get_subvol_info_args)
// Issued on any file of the subvolume; fills the whole struct.
nix::ioctl_read!(get_subvol_info, BTRFS_IOCTL_MAGIC, 60, GetSubvolInfoArgs);

// include/uapi/linux/btrfs.h: #define BTRFS_IOC_SUBVOL_GETFLAGS _IOR(BTRFS_IOCTL_MAGIC, 25, __u64)
// Issued on the subvolume's root directory; writes BTRFS_SUBVOL_* bits.
nix::ioctl_read!(subvol_getflags, BTRFS_IOCTL_MAGIC, 25, u64);

// include/uapi/linux/btrfs.h: #define BTRFS_IOC_SUBVOL_SETFLAGS _IOW(BTRFS_IOCTL_MAGIC, 26, __u64)
// Issued on the subvolume's root directory; only BTRFS_SUBVOL_RDONLY is accepted.
nix::ioctl_write_ptr!(subvol_setflags, BTRFS_IOCTL_MAGIC, 26, u64);

// include/uapi/linux/btrfs.h: #define BTRFS_IOC_SYNC _IO(BTRFS_IOCTL_MAGIC, 8)
// Issued on any file of the filesystem: commits, and pokes the cleaner
// thread that frees the space of deleted subvolumes.
nix::ioctl_none!(sync, BTRFS_IOCTL_MAGIC, 8);

// include/uapi/linux/btrfs.h: #define BTRFS_IOC_START_SYNC _IOR(BTRFS_IOCTL_MAGIC, 24, __u64)
// Starts committing the running transaction (if any) without writing back
// file data first (unless mounted flushoncommit); writes its transid.
nix::ioctl_read!(start_sync, BTRFS_IOCTL_MAGIC, 24, u64);

// include/uapi/linux/btrfs.h: #define BTRFS_IOC_WAIT_SYNC _IOW(BTRFS_IOCTL_MAGIC, 22, __u64)
// Waits until the transaction `*transid` has committed.
nix::ioctl_write_ptr!(wait_sync, BTRFS_IOCTL_MAGIC, 22, u64);

#[cfg(test)]
mod tests {
    use super::*;

    /// The request numbers the C macros produce on `x86_64` and `aarch64` (printed
    /// by a C program that includes <linux/btrfs.h>).
    #[test]
    fn request_numbers_match_the_kernel_header() {
        assert_eq!(nix::request_code_write!(BTRFS_IOCTL_MAGIC, 23, size_of::<VolArgsV2>()) as u64, 0x5000_9417);
        assert_eq!(nix::request_code_write!(BTRFS_IOCTL_MAGIC, 24, size_of::<VolArgsV2>()) as u64, 0x5000_9418);
        assert_eq!(nix::request_code_write!(BTRFS_IOCTL_MAGIC, 38, size_of::<SendArgs>()) as u64, 0x4048_9426);
        assert_eq!(nix::request_code_write!(BTRFS_IOCTL_MAGIC, 63, size_of::<VolArgsV2>()) as u64, 0x5000_943f);
        assert_eq!(nix::request_code_read!(BTRFS_IOCTL_MAGIC, 60, size_of::<GetSubvolInfoArgs>()) as u64, 0x81f8_943c);
        assert_eq!(nix::request_code_read!(BTRFS_IOCTL_MAGIC, 25, size_of::<u64>()) as u64, 0x8008_9419);
        assert_eq!(nix::request_code_write!(BTRFS_IOCTL_MAGIC, 26, size_of::<u64>()) as u64, 0x4008_941a);
        assert_eq!(nix::request_code_none!(BTRFS_IOCTL_MAGIC, 8), 0x9408);
        assert_eq!(nix::request_code_read!(BTRFS_IOCTL_MAGIC, 24, size_of::<u64>()) as u64, 0x8008_9418);
        assert_eq!(nix::request_code_write!(BTRFS_IOCTL_MAGIC, 22, size_of::<u64>()) as u64, 0x4008_9416);
    }

    #[test]
    fn zeroed_structs_are_all_zero() {
        let args = VolArgsV2::zeroed();
        assert!(args.fd == 0 && args.flags == 0 && args.name.iter().all(|b| *b == 0));
        let info = GetSubvolInfoArgs::zeroed();
        assert!(info.treeid == 0 && info.uuid == [0; 16] && info.reserved == [0; 8]);
    }
}
