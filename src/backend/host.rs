//! The backends of a host behind one [`Backend`]: each call goes to btrfs or
//! LVM by the shape of the volume or location it is about. btrfs volumes and
//! snapshots are absolute paths; LVM ones are `vg/lv` names, which never
//! start with `/`.

use std::path::Path;

use super::btrfs::BtrfsBackend;
use super::lvm::LvmBackend;
use super::{Backend, BackendError, SnapshotDetails, VolumeInfo};

pub struct HostBackends {
    pub btrfs: BtrfsBackend,
    pub lvm: LvmBackend,
}

impl HostBackends {
    fn for_volume(&self, volume: &str) -> &dyn Backend {
        if is_lvm_name(volume) {
            &self.lvm
        } else {
            // Absolute paths, and anything else: btrfs explains what is wrong
            // with a relative path.
            &self.btrfs
        }
    }

    fn for_info(&self, volume: &VolumeInfo) -> &dyn Backend {
        self.for_volume(&volume.path.to_string_lossy())
    }
}

/// `vg/lv`: two non-empty parts of LVM's name characters, neither starting
/// with a dot (so `./x` and `../x` are paths, not names).
fn is_lvm_name(volume: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty() && !p.starts_with('.') && p.chars().all(|c| c.is_ascii_alphanumeric() || "+_.-".contains(c))
    };
    matches!(volume.split_once('/'), Some((vg, lv)) if part(vg) && part(lv))
}

impl Backend for HostBackends {
    fn kind(&self) -> &'static str {
        "host"
    }

    fn kind_of(&self, volume: &VolumeInfo) -> &'static str {
        self.for_info(volume).kind()
    }

    fn inspect(&self, volume: &str, container: &str) -> Result<VolumeInfo, BackendError> {
        self.for_volume(volume).inspect(volume, container)
    }

    fn flush(&self, volume: &VolumeInfo) -> Result<(), BackendError> {
        self.for_info(volume).flush(volume)
    }

    fn commit(&self, volume: &VolumeInfo) -> Result<(), BackendError> {
        self.for_info(volume).commit(volume)
    }

    fn reclaim(&self, volume: &VolumeInfo) -> Result<(), BackendError> {
        self.for_info(volume).reclaim(volume)
    }

    fn free_space(&self, volume: &VolumeInfo) -> Result<super::FreeSpace, BackendError> {
        self.for_info(volume).free_space(volume)
    }

    fn location(&self, volume: &VolumeInfo, name: &str) -> String {
        self.for_info(volume).location(volume, name)
    }

    fn metadata_dir(&self, volume: &VolumeInfo) -> Option<std::path::PathBuf> {
        self.for_info(volume).metadata_dir(volume)
    }

    fn metadata_roots(&self, volume_groups: &[String]) -> Vec<std::path::PathBuf> {
        self.lvm.metadata_roots(volume_groups)
    }

    fn check_restore(&self, volume: &VolumeInfo, target: &str, staging: &str) -> Result<(), BackendError> {
        self.for_info(volume).check_restore(volume, target, staging)
    }

    fn prepare_snapshot(&self, source: &str, location: &str) -> Result<(), BackendError> {
        self.for_volume(source).prepare_snapshot(source, location)
    }

    fn take_snapshot(&self, source: &str, location: &str, read_only: bool) -> Result<(), BackendError> {
        self.for_volume(source).take_snapshot(source, location, read_only)
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), BackendError> {
        self.for_volume(from).rename(from, to)
    }

    fn exchange(&self, a: &str, b: &str) -> Result<(), BackendError> {
        self.for_volume(a).exchange(a, b)
    }

    fn details(&self, location: &str) -> Result<SnapshotDetails, BackendError> {
        self.for_volume(location).details(location)
    }

    fn set_read_only(&self, location: &str, read_only: bool) -> Result<(), BackendError> {
        self.for_volume(location).set_read_only(location, read_only)
    }

    fn delete_snapshot(&self, location: &str) -> Result<bool, BackendError> {
        self.for_volume(location).delete_snapshot(location)
    }

    fn snapshot_exists(&self, location: &str) -> Result<bool, BackendError> {
        self.for_volume(location).snapshot_exists(location)
    }

    fn list_snapshots(&self, volume: &VolumeInfo) -> Result<Vec<String>, BackendError> {
        self.for_info(volume).list_snapshots(volume)
    }

    fn readable_root(&self, location: &str) -> Result<super::ReadableRoot, BackendError> {
        self.for_volume(location).readable_root(location)
    }

    fn mount_snapshot(&self, location: &str, path: &Path) -> Result<(), BackendError> {
        self.for_volume(location).mount_snapshot(location, path)
    }

    fn snapshot_mounted_at(&self, location: &str, path: &Path) -> bool {
        self.for_volume(location).snapshot_mounted_at(location, path)
    }

    fn unmount_snapshot(&self, location: &str, path: &Path) -> Result<(), BackendError> {
        self.for_volume(location).unmount_snapshot(location, path)
    }

    fn create_clone(&self, location: &str, volume: &str) -> Result<(), BackendError> {
        self.for_volume(location).create_clone(location, volume)
    }

    fn remove_clone(&self, volume: &str) -> Result<(), BackendError> {
        self.for_volume(volume).remove_clone(volume)
    }

    fn create_volume(&self, location: &str) -> Result<(), BackendError> {
        self.for_volume(location).create_volume(location)
    }

    fn live_root(&self, volume: &VolumeInfo) -> Result<std::path::PathBuf, BackendError> {
        self.for_info(volume).live_root(volume)
    }

    fn delta_bytes(&self, parent: Option<&str>, location: &str) -> Result<Option<u64>, BackendError> {
        self.for_volume(location).delta_bytes(parent, location)
    }

    fn changes_between(
        &self,
        parent: Option<&str>,
        location: &str,
    ) -> Result<Option<Vec<super::PathChange>>, BackendError> {
        self.for_volume(location).changes_between(parent, location)
    }

    fn exclusive_bytes(&self, location: &str) -> Result<Option<u64>, BackendError> {
        self.for_volume(location).exclusive_bytes(location)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_go_to_the_backend_their_shape_names() {
        let host = HostBackends { btrfs: BtrfsBackend::new(), lvm: LvmBackend::new() };
        let btrfs = VolumeInfo { path: "/srv/db-1".into(), snapshot_dir: "/srv/.rollpoint/db-1".into() };
        let lvm = VolumeInfo { path: "vg0/db-1".into(), snapshot_dir: "vg0/rp-db-1.".into() };
        assert_eq!(host.kind_of(&btrfs), "btrfs");
        assert_eq!(host.kind_of(&lvm), LvmBackend::new().kind());
        assert!(is_lvm_name("vg0/db-1"));
        for path in ["/srv/db-1", "./db-1", "../x/y", "a/b/c", "vg0/", "db-1"] {
            assert!(!is_lvm_name(path), "{path}");
        }
    }
}
