//! Reading the files of a thin volume or snapshot: a *view*, a writable
//! thin snapshot of it (`rp--view-<pid>-<n>`, tagged `rollpoint`), activated
//! and mounted read-only under [`VIEWS_DIR`], unmounted and removed when the
//! reader is done.
//!
//! Why a snapshot of the snapshot: a snapshot of a mounted ext4 carries a
//! journal that still needs replaying, and the kernel replays it at mount
//! time (even for a read-only mount) only on a writable device. Mounting
//! the read-only snapshot itself would need `noload`, which skips the
//! journal and shows metadata from before its last commits. The view takes
//! the replay's writes; the snapshot stays as it was taken. (XFS also
//! refuses a second filesystem with the origin's UUID: `nouuid`.)
//!
//! Views are made for one call (an export, a diff, a file restore). One a
//! stop left behind (the daemon killed while reading) is removed by the
//! next view made in the same VG: any view that no [`ReadableRoot`] of this
//! process holds is a leftover.
//!
//! `rollpoint snapshot mount` needs a view that outlives the call (and the
//! daemon): the *mount view* `rp--mount-<hash of the snapshot's LV>`, one
//! per snapshot, mounted read-only where the user asked (again at each
//! further mount of the same snapshot), removed with its last unmount or,
//! if it is mounted nowhere then, with its snapshot. A snapshot whose mount
//! view is mounted is not deleted.

use std::collections::BTreeSet;
use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::mount::MsFlags;
use parking_lot::Mutex;

use super::names::{LvName, OURS_TAG, PREFIX};
use super::report::LvRow;
use super::{mounts, LvmBackend};
use crate::backend::{BackendError, ReadableRoot};

/// Where views are mounted: `<VIEWS_DIR>/<vg>/<view LV>`.
pub const VIEWS_DIR: &str = "/run/rollpoint/lvm-views";

/// LV names of views start with this; `rp--` never begins a snapshot's
/// name (container ids do not start with `-`).
pub fn view_prefix() -> String {
    format!("{PREFIX}-view-")
}

/// LV name of the view behind the user's mounts of snapshot `lv`
/// (`rollpoint snapshot mount`): one per snapshot, kept while it is mounted
/// anywhere, so it outlives the daemon (and is not a leftover).
pub fn mount_view_name(lv: &str) -> String {
    format!("{PREFIX}-mount-{}", &crate::hex::encode(blake3::hash(lv.as_bytes()).as_bytes())[..24])
}

/// Views (`vg/lv`) this process holds open.
static OPEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

impl LvmBackend {
    /// Makes and mounts a view of the thin LV at `location`.
    pub(super) fn open_view(&self, location: &str) -> Result<ReadableRoot, BackendError> {
        static MADE: AtomicU64 = AtomicU64::new(0);
        let source = LvName::parse(location)?;
        let rows = self.settled_report(&source.vg)?;
        super::find(&rows, &source)?;
        self.remove_leftover_views(&source.vg, &rows);

        let view = source.sibling(&format!(
            "{}{}-{}",
            view_prefix(),
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        ));
        let full = view.full();
        let mount_point = Path::new(VIEWS_DIR).join(&view.vg).join(&view.lv);
        OPEN.lock().insert(full.clone());
        let opened = self.make_view(&source, &view).and_then(|device| {
            std::fs::create_dir_all(&mount_point).map_err(|err| BackendError::io("create", &mount_point, err))?;
            mount_read_only(&device, &mount_point)
        });
        if let Err(error) = opened {
            self.close_view(&view, &mount_point);
            return Err(error);
        }
        let backend = self.clone();
        Ok(ReadableRoot::with_release(mount_point.clone(), move || backend.close_view(&view, &mount_point)))
    }

    /// Makes the writable thin snapshot `view` of `source` (tagged ours,
    /// skipped by auto-activation) and activates it; its device.
    fn make_view(&self, source: &LvName, view: &LvName) -> Result<PathBuf, BackendError> {
        let (source_full, full) = (source.full(), view.full());
        let args = [
            "lvcreate",
            "--snapshot",
            "--name",
            &view.lv,
            "--setactivationskip",
            "y",
            "--permission",
            "rw",
            "--addtag",
            OURS_TAG,
            &source_full,
        ];
        self.run(&args, &full)?;
        self.activate(view)?;
        Ok(Self::device_path(view))
    }

    /// Mounts the snapshot at `location` read-only at `path`, through its
    /// mount view (made, or activated after a reboot, when needed).
    pub(super) fn mount_snapshot_at(&self, location: &str, path: &Path) -> Result<(), BackendError> {
        let source = LvName::parse(location)?;
        let rows = self.settled_report(&source.vg)?;
        super::find(&rows, &source)?;
        let view = source.sibling(&mount_view_name(&source.lv));
        let device = match rows.iter().find(|row| row.name == view.lv) {
            None => self.make_view(&source, &view)?,
            Some(_) => {
                self.activate(&view)?;
                Self::device_path(&view)
            }
        };
        let mounted = mount_read_only(&device, path);
        if mounted.is_err() {
            self.release_mount_view(&view);
        }
        mounted
    }

    /// Whether `path` is a mount of the snapshot at `location`'s mount view.
    pub(super) fn mount_view_mounted_at(&self, location: &str, path: &Path) -> bool {
        let Ok(source) = LvName::parse(location) else { return false };
        let device = Self::device_path(&source.sibling(&mount_view_name(&source.lv)));
        match (std::fs::metadata(&device), std::fs::metadata(path)) {
            (Ok(device), Ok(mounted)) => {
                device.file_type().is_block_device()
                    && mounted.dev() == device.rdev()
                    && crate::sys::mountinfo::is_mount_point(path)
            }
            _ => false,
        }
    }

    /// Unmounts `path`, a mount of the snapshot at `location`; the mount
    /// view goes with its last mount.
    pub(super) fn unmount_snapshot_at(&self, location: &str, path: &Path) -> Result<(), BackendError> {
        let source = LvName::parse(location)?;
        mounts::unmount(path)?;
        self.release_mount_view(&source.sibling(&mount_view_name(&source.lv)));
        Ok(())
    }

    /// Removes the mount view of the snapshot at `location` before the
    /// snapshot goes; refused while it is mounted somewhere.
    pub(super) fn remove_mount_view(&self, location: &LvName, rows: &[LvRow]) -> Result<(), BackendError> {
        let view = location.sibling(&mount_view_name(&location.lv));
        if !rows.iter().any(|row| row.name == view.lv) {
            return Ok(());
        }
        if let Some(mount) = self.mounts_of(&view).into_iter().next() {
            return Err(BackendError::Mounted { location: location.full(), at: mount.mount_point });
        }
        self.run(&["lvremove", "--yes", &view.full()], &view.full()).map(drop)
    }

    /// Removes a mount view that is mounted nowhere; what fails is logged
    /// (the view is removed with its snapshot at the latest).
    fn release_mount_view(&self, view: &LvName) {
        if !self.mounts_of(view).is_empty() {
            return;
        }
        let full = view.full();
        match self.run(&["lvremove", "--yes", &full], &full) {
            Ok(_) | Err(BackendError::NotFound { .. }) => {}
            Err(error) => tracing::warn!(view = %full, %error, "could not remove a mount view"),
        }
    }

    /// Where the active LV `lv` is mounted (nowhere when it is not active).
    fn mounts_of(&self, lv: &LvName) -> Vec<mounts::DeviceMount> {
        let Ok(device) = std::fs::metadata(Self::device_path(lv)) else { return Vec::new() };
        let rdev = device.rdev();
        let number = (nix::sys::stat::major(rdev) as u32, nix::sys::stat::minor(rdev) as u32);
        mounts::current_mounts(number).unwrap_or_default()
    }

    /// Unmounts and removes a view; what fails is logged (the next view made
    /// in the VG tries again).
    fn close_view(&self, view: &LvName, mount_point: &Path) {
        let full = view.full();
        if crate::sys::mountinfo::is_mount_point(mount_point) {
            if let Err(error) = mounts::unmount(mount_point) {
                tracing::warn!(view = %full, %error, "a view is busy; detaching it");
                let _ = nix::mount::umount2(mount_point, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        let _ = std::fs::remove_dir(mount_point);
        match self.run(&["lvremove", "--yes", &full], &full) {
            Ok(_) | Err(BackendError::NotFound { .. }) => {}
            Err(error) => tracing::warn!(view = %full, %error, "could not remove a view; removed with the next one"),
        }
        OPEN.lock().remove(&full);
    }

    /// Removes the views of `vg` that no reader of this process holds.
    fn remove_leftover_views(&self, vg: &str, rows: &[LvRow]) {
        let prefix = view_prefix();
        let leftovers: Vec<LvName> = rows
            .iter()
            .filter(|row| row.name.starts_with(&prefix) && row.has_tag(OURS_TAG))
            .map(|row| LvName { vg: vg.to_owned(), lv: row.name.clone() })
            .filter(|name| !OPEN.lock().contains(&name.full()))
            .collect();
        for view in leftovers {
            tracing::info!(view = %view.full(), "removing a view a stop left behind");
            let mount_point = Path::new(VIEWS_DIR).join(&view.vg).join(&view.lv);
            self.close_view(&view, &mount_point);
        }
    }
}

/// Mounts a view's `device` read-only (nosuid, nodev, noexec) at `path`.
fn mount_read_only(device: &Path, path: &Path) -> Result<(), BackendError> {
    let fs_type = filesystem_type(device)?;
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let data = (fs_type == "xfs").then_some("nouuid");
    nix::mount::mount(Some(device), path, Some(fs_type), flags, data)
        .map_err(|errno| BackendError::io("mount", path, errno.into()))
}

/// The filesystem on a block device, from its superblock's magic: the ones
/// a container volume is made with.
pub fn filesystem_type(device: &Path) -> Result<&'static str, BackendError> {
    let mut head = vec![0u8; 65_600 + 8];
    let mut file = std::fs::File::open(device).map_err(|err| BackendError::io("open", device, err))?;
    let mut read = 0;
    while read < head.len() {
        match file.read(&mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(err) => return Err(BackendError::io("read", device, err)),
        }
    }
    head.truncate(read);
    filesystem_of_superblock(&head).ok_or_else(|| BackendError::Lvm {
        command: "mount".into(),
        detail: format!("{}: no ext2/3/4, XFS or btrfs filesystem found on it", device.display()),
    })
}

/// The filesystem named by the first 64 KiB + a block of a device.
pub fn filesystem_of_superblock(head: &[u8]) -> Option<&'static str> {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if at(1080, &[0x53, 0xEF]) {
        Some("ext4")
    } else if at(0, b"XFSB") {
        Some("xfs")
    } else if at(65_536 + 64, b"_BHRfS_M") {
        Some("btrfs")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superblock_magics() {
        let mut ext4 = vec![0u8; 4096];
        ext4[1080] = 0x53;
        ext4[1081] = 0xEF;
        assert_eq!(filesystem_of_superblock(&ext4), Some("ext4"));
        let mut xfs = vec![0u8; 4096];
        xfs[..4].copy_from_slice(b"XFSB");
        assert_eq!(filesystem_of_superblock(&xfs), Some("xfs"));
        let mut btrfs = vec![0u8; 65_536 + 4096];
        btrfs[65_600..65_608].copy_from_slice(b"_BHRfS_M");
        assert_eq!(filesystem_of_superblock(&btrfs), Some("btrfs"));
        assert_eq!(filesystem_of_superblock(&[0u8; 100]), None);
        assert!(view_prefix().starts_with("rp--"));
    }
}
