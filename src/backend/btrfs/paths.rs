//! Where things live: names that may become path components, where a
//! volume's snapshot folder is, and how a location splits into the folder the
//! ioctls are issued on and the name they carry.

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use crate::backend::BackendError;
use crate::sys::mountinfo::Mount;

/// The folder, at the root of each btrfs mount, that holds the snapshots.
pub const SNAPSHOT_FOLDER: &str = ".rollpoint";

/// Checks that `name` can be used as one path component and as a btrfs
/// subvolume name: not empty, not `.`/`..`, no `/` or NUL, at most 255 bytes.
pub fn check_name(name: &str) -> Result<(), BackendError> {
    let reason = if name.is_empty() {
        Some("must not be empty")
    } else if name == "." || name == ".." {
        Some("must not be . or ..")
    } else if name.contains('/') {
        Some("must not contain '/'")
    } else if name.contains('\0') {
        Some("must not contain NUL")
    } else if name.len() > super::ioctl::BTRFS_VOL_NAME_MAX {
        Some("must be at most 255 bytes")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(BackendError::InvalidName { name: name.to_string(), reason }),
        None => Ok(()),
    }
}

/// Splits an absolute location into its parent folder and its last
/// component, which must be a valid name.
pub fn split_location(location: &str) -> Result<(&Path, &OsStr), BackendError> {
    let path = Path::new(location);
    if !path.is_absolute() {
        return Err(BackendError::NotAbsolute { path: path.to_path_buf() });
    }
    // `Path` quietly normalises a trailing `/` or `.` away; a location is
    // written by us, so it has to end with the name itself, and `..` has no
    // business in it.
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(BackendError::InvalidName { name: location.to_string(), reason: "must not contain '..'" });
    }
    let last = location.rsplit('/').next().unwrap_or("");
    let name = match path.components().next_back() {
        Some(Component::Normal(name)) if name == OsStr::new(last) => name,
        _ => return Err(BackendError::InvalidName { name: location.to_string(), reason: "must end with a name" }),
    };
    check_name(last)?;
    let parent = path.parent().unwrap_or(Path::new("/"));
    Ok((parent, name))
}

/// Whether a canonical path lies inside (or is) a snapshot folder.
pub fn inside_snapshot_folder(path: &Path) -> bool {
    path.components().any(|c| c == Component::Normal(OsStr::new(SNAPSHOT_FOLDER)))
}

/// The snapshot folder of `container` for a volume at canonical path
/// `volume`: `<mount point>/.rollpoint/<container>`, where the mount point is
/// that of the btrfs mount holding the volume. With `subvol=` the mount point
/// is still the right place: it is where the daemon can write.
pub fn snapshot_dir(mounts: &[Mount], volume: &Path, container: &str) -> Result<PathBuf, BackendError> {
    match crate::sys::mountinfo::mount_of(mounts, volume) {
        Some(mount) if mount.fs_type == "btrfs" => Ok(mount.mount_point.join(SNAPSHOT_FOLDER).join(container)),
        _ => Err(BackendError::NotBtrfs { path: volume.to_path_buf() }),
    }
}

/// Refuses a volume that is a mount point (the top-level subvolume mounted
/// there, or a subvolume bind-mounted): rename(2) cannot move a mount point,
/// so a restore could never exchange it with a snapshot.
pub fn check_not_mount_point(mounts: &[Mount], volume: &Path) -> Result<(), BackendError> {
    match mounts.iter().find(|m| m.mount_point == volume) {
        Some(mount) => Err(BackendError::CannotSwap {
            path: volume.to_path_buf(),
            reason: format!(
                "it is a mount point ({} mounted from {}{}); rename(2) cannot move a mount point, so the volume \
                 could not be exchanged with a snapshot; use a subvolume below the mount point",
                mount.fs_type,
                mount.source,
                if mount.root == Path::new("/") {
                    ", its top-level subvolume".to_owned()
                } else {
                    format!(" {}", mount.root.display())
                }
            ),
        }),
        None => Ok(()),
    }
}

/// Refuses a restore whose staging copy would land on another mount than
/// the volume: the exchange would fail with EXDEV after the stop.
pub fn check_same_mount(mounts: &[Mount], volume: &Path, staging_folder: &Path) -> Result<(), BackendError> {
    let volume_mount = crate::sys::mountinfo::mount_of(mounts, volume).map(|m| &m.mount_point);
    let staging_mount = crate::sys::mountinfo::mount_of(mounts, staging_folder).map(|m| &m.mount_point);
    if volume_mount == staging_mount {
        return Ok(());
    }
    Err(BackendError::CannotSwap {
        path: volume.to_path_buf(),
        reason: format!(
            "its snapshot folder {} is on another mount ({}) than the volume ({}); rename(2) cannot cross mounts",
            staging_folder.display(),
            staging_mount.map_or("none".into(), |p| p.display().to_string()),
            volume_mount.map_or("none".into(), |p| p.display().to_string()),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_components() {
        for good in ["db-1", "snap-2026-05-04", ".hidden", "a b", &"x".repeat(255)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "/", "a\0", &"x".repeat(256)] {
            assert!(matches!(check_name(bad), Err(BackendError::InvalidName { .. })), "{bad:?}");
        }
    }

    #[test]
    fn locations_split_into_folder_and_name() {
        let (parent, name) = split_location("/mnt/fs/.rollpoint/db-1/snap-1").expect("split");
        assert_eq!(parent, Path::new("/mnt/fs/.rollpoint/db-1"));
        assert_eq!(name, OsStr::new("snap-1"));
        assert!(matches!(split_location("rel/snap"), Err(BackendError::NotAbsolute { .. })));
        for bad in ["/", "/a/..", "/a/.", "/a/b/", "/a/../b"] {
            assert!(matches!(split_location(bad), Err(BackendError::InvalidName { .. })), "{bad}");
        }
    }

    #[test]
    fn snapshot_folder_is_at_the_btrfs_mount_point() {
        let mounts = crate::sys::mountinfo::parse(
            "22 1 8:1 / / rw - ext4 /dev/vda rw\n\
             50 22 7:0 /data /mnt/data rw,relatime shared:5 - btrfs /dev/loop0 rw,subvolid=256,subvol=/data\n",
        );
        let dir = snapshot_dir(&mounts, Path::new("/mnt/data/containers/db-1"), "db-1").expect("btrfs");
        assert_eq!(dir, PathBuf::from("/mnt/data/.rollpoint/db-1"));
        assert!(matches!(snapshot_dir(&mounts, Path::new("/srv/x"), "x"), Err(BackendError::NotBtrfs { .. })));
    }

    #[test]
    fn mount_points_cannot_be_swapped() {
        let mounts = crate::sys::mountinfo::parse(
            "22 1 8:1 / / rw - ext4 /dev/vda rw\n\
             50 22 7:0 / /mnt/data rw - btrfs /dev/loop0 rw,subvolid=5,subvol=/\n\
             51 22 7:0 /vol /srv/vol rw - btrfs /dev/loop0 rw,subvolid=256,subvol=/vol\n",
        );
        for refused in ["/mnt/data", "/srv/vol"] {
            let error = check_not_mount_point(&mounts, Path::new(refused)).expect_err(refused);
            assert!(error.to_string().contains("mount point"), "{error}");
        }
        assert!(check_not_mount_point(&mounts, Path::new("/mnt/data/vol")).is_ok());
        assert!(check_same_mount(&mounts, Path::new("/mnt/data/vol"), Path::new("/mnt/data/.rollpoint/c")).is_ok());
        assert!(check_same_mount(&mounts, Path::new("/srv/vol/x"), Path::new("/mnt/data/.rollpoint/c")).is_err());
    }

    #[test]
    fn detects_snapshot_folders_in_paths() {
        assert!(inside_snapshot_folder(Path::new("/mnt/fs/.rollpoint/db-1/snap")));
        assert!(inside_snapshot_folder(Path::new("/mnt/fs/.rollpoint")));
        assert!(!inside_snapshot_folder(Path::new("/mnt/fs/.rollpoints/db-1")));
        assert!(!inside_snapshot_folder(Path::new("/mnt/fs/vol")));
    }
}
