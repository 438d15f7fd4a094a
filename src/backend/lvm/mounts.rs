//! Where an LV is mounted (by device number, from /proc/self/mountinfo),
//! and taking a mount down and putting it back the same way around an
//! exchange.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use crate::backend::BackendError;

/// A mount of a block device, with what it takes to mount it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceMount {
    pub mount_point: PathBuf,
    pub fs_type: String,
    /// The per-mount flags (ro, nosuid, nodev, noexec, atime handling).
    pub flags: u64,
    /// The filesystem's own options (without rw/ro), passed back as `data`.
    pub data: String,
}

/// Every mount of device `major:minor` in mountinfo `text`.
pub fn mounts_of_device(text: &str, device: (u32, u32)) -> Vec<DeviceMount> {
    let wanted = format!("{}:{}", device.0, device.1);
    let mut found = Vec::new();
    for line in text.lines() {
        let mut fields = line.split(' ');
        if fields.nth(2) != Some(wanted.as_str()) {
            continue;
        }
        let Some(mount) = crate::sys::mountinfo::parse(line).into_iter().next() else { continue };
        // Only whole-filesystem mounts: a bind mount of a sub-folder is a
        // view into it, not the container's root.
        if mount.root != Path::new("/") {
            continue;
        }
        let per_mount = line.split(' ').nth(5).unwrap_or("");
        found.push(DeviceMount {
            mount_point: mount.mount_point,
            fs_type: mount.fs_type,
            flags: mount_flags(per_mount).bits(),
            data: mount.super_options.split(',').filter(|o| *o != "rw" && *o != "ro").collect::<Vec<_>>().join(","),
        });
    }
    found
}

/// mount(2) flags for the per-mount options of a mountinfo line.
pub fn mount_flags(options: &str) -> MsFlags {
    let mut flags = MsFlags::empty();
    for option in options.split(',') {
        flags |= match option {
            "ro" => MsFlags::MS_RDONLY,
            "nosuid" => MsFlags::MS_NOSUID,
            "nodev" => MsFlags::MS_NODEV,
            "noexec" => MsFlags::MS_NOEXEC,
            "sync" => MsFlags::MS_SYNCHRONOUS,
            "dirsync" => MsFlags::MS_DIRSYNC,
            "noatime" => MsFlags::MS_NOATIME,
            "nodiratime" => MsFlags::MS_NODIRATIME,
            "relatime" => MsFlags::MS_RELATIME,
            "strictatime" => MsFlags::MS_STRICTATIME,
            "lazytime" => MsFlags::MS_LAZYTIME,
            _ => MsFlags::empty(),
        };
    }
    flags
}

/// The mounts of a device on this host.
pub fn current_mounts(device: (u32, u32)) -> Result<Vec<DeviceMount>, BackendError> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|err| BackendError::io("read", "/proc/self/mountinfo", err))?;
    Ok(mounts_of_device(&text, device))
}

/// Writes back a mounted filesystem's dirty data.
pub fn sync_filesystem(mount_point: &Path) -> Result<(), BackendError> {
    let dir = std::fs::File::open(mount_point).map_err(|err| BackendError::io("open", mount_point, err))?;
    nix::unistd::syncfs(&dir).map_err(|errno| BackendError::io("syncfs", mount_point, errno.into()))
}

/// Unmounts (never lazily: a busy filesystem is an error, so nothing keeps
/// writing to a volume that is being swapped out).
pub fn unmount(mount_point: &Path) -> Result<(), BackendError> {
    nix::mount::umount2(mount_point, nix::mount::MntFlags::empty())
        .map_err(|errno| BackendError::io("unmount", mount_point, errno.into()))
}

/// Mounts `device` the way `mount` describes. When the filesystem refuses
/// the recorded options, tries once more without them.
pub fn mount(device: &Path, mount: &DeviceMount) -> Result<(), BackendError> {
    let flags = MsFlags::from_bits_truncate(mount.flags);
    let data = (!mount.data.is_empty()).then_some(mount.data.as_str());
    let result = nix::mount::mount(Some(device), &mount.mount_point, Some(mount.fs_type.as_str()), flags, data);
    match result {
        Err(nix::errno::Errno::EINVAL) if data.is_some() => {
            nix::mount::mount(Some(device), &mount.mount_point, Some(mount.fs_type.as_str()), flags, None::<&str>)
        }
        other => other,
    }
    .map_err(|errno| BackendError::io("mount", &mount.mount_point, errno.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime - ext4 /dev/vda1 rw\n\
60 22 254:4 / /srv/db\\0401 rw,nosuid,noatime shared:7 - ext4 /dev/mapper/vg0-db--1 rw,errors=remount-ro\n\
61 22 254:4 /data /srv/view rw - ext4 /dev/mapper/vg0-db--1 rw\n\
62 22 254:5 / /srv/other ro,relatime - xfs /dev/mapper/vg0-other ro,attr2,inode64\n";

    #[test]
    fn finds_whole_mounts_of_a_device() {
        let mounts = mounts_of_device(MOUNTINFO, (254, 4));
        assert_eq!(mounts.len(), 1, "{mounts:?}");
        let mount = &mounts[0];
        assert_eq!(mount.mount_point, PathBuf::from("/srv/db 1"));
        assert_eq!(mount.fs_type, "ext4");
        assert_eq!(MsFlags::from_bits_truncate(mount.flags), MsFlags::MS_NOSUID | MsFlags::MS_NOATIME);
        assert_eq!(mount.data, "errors=remount-ro");
        let other = mounts_of_device(MOUNTINFO, (254, 5));
        assert_eq!(MsFlags::from_bits_truncate(other[0].flags), MsFlags::MS_RDONLY | MsFlags::MS_RELATIME);
        assert_eq!(other[0].data, "attr2,inode64");
        assert!(mounts_of_device(MOUNTINFO, (254, 9)).is_empty());
    }
}
