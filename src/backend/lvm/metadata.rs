//! Where the records kept beside the data (`store::sidecar`) live for thin
//! volumes: a small ext4 thin volume per VG, `rp--meta` (tagged
//! `rp-meta`), made in the pool of the first container that needs it,
//! activated at boot like any thin volume and mounted by the daemon at
//! `<META_DIR>/<vg>`. Its layout is a btrfs filesystem's: `.rollpoint/
//! <container>/` holds `_container.json` and one `.<snapshot>.json` per
//! snapshot, so every sidecar reader serves both backends. It lives in the
//! pool beside the snapshots it describes: a state directory lost with a
//! root disk leaves it, and `rollpoint recover` (given the VG in
//! `volume_groups`) finds it.

use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use super::names::{LvName, PREFIX};
use super::{run_tool, LvmBackend};
use crate::backend::BackendError;

/// Where metadata volumes are mounted: `<META_DIR>/<vg>`.
pub const META_DIR: &str = "/run/rollpoint/lvm-meta";
/// Tag of a metadata volume.
pub const META_TAG: &str = "rp-meta";
/// Virtual size: thin, so only what the records take is allocated.
const META_SIZE: &str = "64m";
/// e2fsprogs' mkfs, from its fixed path.
const MKE2FS: &str = "/usr/sbin/mke2fs";

/// The metadata volume's LV name; `rp--` never begins a snapshot's name.
pub fn meta_lv() -> String {
    format!("{PREFIX}-meta")
}

/// One caller at a time makes or mounts a metadata volume.
static MAKING: Mutex<()> = Mutex::new(());

impl LvmBackend {
    /// The mount point of `vg`'s metadata volume, mounted now; made in the
    /// thin pool of `volume` when there is none and `volume` is given.
    /// `None` when the VG has none and none is to be made.
    pub fn metadata_mount(&self, vg: &str, volume: Option<&LvName>) -> Result<Option<PathBuf>, BackendError> {
        let mount_point = Path::new(META_DIR).join(vg);
        // The common case, without running lvm: mounted already.
        if crate::sys::mountinfo::is_mount_point(&mount_point) {
            return Ok(Some(mount_point));
        }
        let _one = MAKING.lock();
        if crate::sys::mountinfo::is_mount_point(&mount_point) {
            return Ok(Some(mount_point));
        }
        let meta = LvName { vg: vg.to_owned(), lv: meta_lv() };
        let rows = self.settled_report(vg)?;
        let row = match rows.iter().find(|row| row.name == meta.lv) {
            Some(row) => row.clone(),
            None => {
                let Some(volume) = volume else { return Ok(None) };
                let pool = super::find(&rows, volume)?.pool.clone();
                let full = meta.full();
                self.run(
                    &[
                        "lvcreate",
                        "--yes",
                        "--type",
                        "thin",
                        "--virtualsize",
                        META_SIZE,
                        "--thinpool",
                        &format!("{vg}/{pool}"),
                        "--name",
                        &meta.lv,
                        "--addtag",
                        META_TAG,
                    ],
                    &full,
                )?;
                let device = Self::device_path(&meta);
                let made = run_tool(MKE2FS, &["-q", "-t", "ext4", "-L", "rollpoint-meta", &device.to_string_lossy()]);
                if let Err(error) = made {
                    let _ = self.run(&["lvremove", "--yes", &full], &full);
                    return Err(error);
                }
                tracing::info!(volume = %full, "made the metadata volume for the records beside thin snapshots");
                let rows = self.report(vg)?;
                super::find(&rows, &meta)?.clone()
            }
        };
        if row.device.is_none() {
            self.activate(&meta)?;
        }
        std::fs::create_dir_all(&mount_point).map_err(|err| BackendError::io("create", &mount_point, err))?;
        let flags = nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV | nix::mount::MsFlags::MS_NOEXEC;
        nix::mount::mount(Some(&Self::device_path(&meta)), &mount_point, Some("ext4"), flags, None::<&str>)
            .map_err(|errno| BackendError::io("mount", &mount_point, errno.into()))?;
        Ok(Some(mount_point))
    }
}
