//! Metadata beside the data: a small record of each container and snapshot,
//! kept in the container's snapshot folder on its own filesystem, so that
//! the store can be checked against the disks at start and rebuilt from
//! them (`rollpoint recover`) when it is damaged, lost or old.
//!
//! Layout (btrfs; the folder is `<mount point>/.rollpoint/<container>/`):
//! - `_container.json`: the container ([`ContainerSidecar`]);
//! - `.<snapshot name>.json`: one per snapshot ([`SnapshotSidecar`]), beside
//!   the snapshot subvolume `<snapshot name>`. Snapshot names start with a
//!   letter or digit, so a sidecar's name never is one.
//!
//! Both are JSON objects with `"version": 1` and the store `generation`
//! that wrote them: the store counts its changes, and a sidecar carrying a
//! higher count than the store proves the store older than the disks. Each
//! file is written atomically (a temporary file, fsync, rename, fsync of the
//! folder), after the store change it mirrors is durable; start-up recovery
//! rewrites any sidecar a crash left behind its record.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    ContainerRecord, Discovered, GroupMembership, Hooks, LifecycleSpec, Retention, SnapshotHold, SnapshotOrigin,
    SnapshotRecord, SnapshotState, StoreError,
};

/// Format version of both sidecars.
pub const SIDECAR_VERSION: u32 = 1;
/// The container's sidecar, in its snapshot folder.
/// Starts with `_`: neither a snapshot name nor a snapshot's sidecar.
pub const CONTAINER_SIDECAR: &str = "_container.json";

/// File name of the sidecar of snapshot `name`.
pub fn snapshot_sidecar_name(name: &str) -> String {
    format!(".{name}.json")
}

/// The snapshot a sidecar file name belongs to, if it is one.
fn snapshot_of_sidecar(file_name: &str) -> Option<&str> {
    let name = file_name.strip_prefix('.')?.strip_suffix(".json")?;
    (name.starts_with(|c: char| c.is_ascii_alphanumeric())).then_some(name)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSidecar {
    pub version: u32,
    /// The store generation of the change this mirrors.
    pub generation: u64,
    pub id: String,
    pub cgroup: PathBuf,
    pub volume: PathBuf,
    pub backend: String,
    pub lifecycle: LifecycleSpec,
    pub labels: BTreeMap<String, String>,
    pub create_time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Hooks::is_empty")]
    pub hooks: Hooks,
    #[serde(default, skip_serializing_if = "Retention::is_default")]
    pub retention: Retention,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovered: Option<Discovered>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupMembership>,
}

impl ContainerSidecar {
    pub fn of(record: &ContainerRecord, generation: u64) -> Self {
        ContainerSidecar {
            version: SIDECAR_VERSION,
            generation,
            id: record.id.clone(),
            cgroup: record.cgroup.clone(),
            volume: record.volume.clone(),
            backend: record.backend.clone(),
            lifecycle: record.lifecycle.clone(),
            labels: record.labels.clone(),
            create_time: record.create_time,
            hooks: record.hooks.clone(),
            retention: record.retention,
            discovered: record.discovered.clone(),
            group: record.group.clone(),
        }
    }

    /// The record this sidecar describes, whose snapshots are at
    /// `snapshot_dir` (btrfs: the folder the sidecar is in).
    pub fn record(&self, snapshot_dir: &Path) -> ContainerRecord {
        ContainerRecord {
            id: self.id.clone(),
            cgroup: self.cgroup.clone(),
            volume: self.volume.clone(),
            backend: self.backend.clone(),
            snapshot_dir: snapshot_dir.to_path_buf(),
            lifecycle: self.lifecycle.clone(),
            labels: self.labels.clone(),
            create_time: self.create_time,
            last_restore: None,
            hooks: self.hooks.clone(),
            retention: self.retention,
            discovered: self.discovered.clone(),
            group: self.group.clone(),
        }
    }

    /// Whether the two describe the same container, generations aside.
    pub fn same_as(&self, other: &ContainerSidecar) -> bool {
        ContainerSidecar { generation: other.generation, ..self.clone() } == *other
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotSidecar {
    pub version: u32,
    /// The store generation of the change this mirrors.
    pub generation: u64,
    pub container: String,
    pub name: String,
    pub alias: Option<String>,
    pub create_time: DateTime<Utc>,
    pub expire_time: Option<DateTime<Utc>>,
    pub frozen_for: Duration,
    pub duration: Duration,
    pub origin: SnapshotOrigin,
    pub comment: String,
    pub read_only: bool,
    /// The subvolume's uuid when it was made: a different one at the same
    /// place is another snapshot.
    pub uuid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<SnapshotHold>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl SnapshotSidecar {
    pub fn of(record: &SnapshotRecord, generation: u64) -> Self {
        SnapshotSidecar {
            version: SIDECAR_VERSION,
            generation,
            container: record.container.clone(),
            name: record.name.clone(),
            alias: record.alias.clone(),
            create_time: record.create_time,
            expire_time: record.expire_time,
            frozen_for: record.frozen_for,
            duration: record.duration,
            origin: record.origin.clone(),
            comment: record.comment.clone(),
            read_only: record.read_only,
            uuid: record.uuid.clone(),
            hold: record.hold.clone(),
            group: record.group.clone(),
        }
    }

    /// The record this sidecar describes, at `location`, with the volume's
    /// generation read back from the backend.
    pub fn record(&self, location: String, volume_generation: u64) -> SnapshotRecord {
        SnapshotRecord {
            container: self.container.clone(),
            name: self.name.clone(),
            alias: self.alias.clone(),
            create_time: self.create_time,
            expire_time: self.expire_time,
            frozen_for: self.frozen_for,
            duration: self.duration,
            state: SnapshotState::Ready,
            origin: self.origin.clone(),
            read_only: self.read_only,
            location,
            uuid: self.uuid.clone(),
            generation: volume_generation,
            comment: self.comment.clone(),
            // Measured again in the background.
            sizes: None,
            hold: self.hold.clone(),
            group: self.group.clone(),
        }
    }

    /// Whether the two describe the same snapshot, generations aside.
    pub fn same_as(&self, other: &SnapshotSidecar) -> bool {
        SnapshotSidecar { generation: other.generation, ..self.clone() } == *other
    }
}

/// What one container folder holds.
#[derive(Debug, Clone, Default)]
pub struct FolderSidecars {
    pub folder: PathBuf,
    pub container: Option<ContainerSidecar>,
    pub snapshots: Vec<SnapshotSidecar>,
    /// `path: error` of sidecars that could not be read or decoded.
    pub unreadable: Vec<String>,
}

impl FolderSidecars {
    /// The highest generation any sidecar of the folder carries.
    pub fn highest_generation(&self) -> u64 {
        let snapshots = self.snapshots.iter().map(|s| s.generation);
        self.container.iter().map(|c| c.generation).chain(snapshots).max().unwrap_or(0)
    }
}

fn io_error(op: &'static str, path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io { op, path: path.to_path_buf(), source }
}

/// Writes `value` as `folder/name` atomically and durably; the folder is
/// made (0700) when missing.
pub fn write<T: Serialize>(folder: &Path, name: &str, value: &T) -> Result<(), StoreError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(folder)
        .map_err(|err| io_error("create", folder, err))?;
    let mut bytes = serde_json::to_vec_pretty(value).map_err(StoreError::Encode)?;
    bytes.push(b'\n');
    let path = folder.join(name);
    let temporary = folder.join(format!("{name}.tmp"));
    let mut file = std::fs::File::create(&temporary).map_err(|err| io_error("create", &temporary, err))?;
    file.write_all(&bytes).map_err(|err| io_error("write", &temporary, err))?;
    file.sync_all().map_err(|err| io_error("fsync", &temporary, err))?;
    drop(file);
    std::fs::rename(&temporary, &path).map_err(|err| io_error("rename", &path, err))?;
    sync_folder(folder)
}

/// Removes `folder/name`; a missing file is fine.
pub fn remove(folder: &Path, name: &str) -> Result<(), StoreError> {
    let path = folder.join(name);
    match std::fs::remove_file(&path) {
        Ok(()) => sync_folder(folder),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(io_error("remove", &path, err)),
    }
}

fn sync_folder(folder: &Path) -> Result<(), StoreError> {
    std::fs::File::open(folder).and_then(|dir| dir.sync_all()).map_err(|err| io_error("fsync", folder, err))
}

/// Reads the sidecars of one container folder; a missing folder holds none.
pub fn read_folder(folder: &Path) -> Result<FolderSidecars, StoreError> {
    let mut found = FolderSidecars { folder: folder.to_path_buf(), ..Default::default() };
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(err) => return Err(io_error("list", folder, err)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| io_error("list", folder, err))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    names.sort();
    for name in names {
        let path = folder.join(&name);
        if name == CONTAINER_SIDECAR {
            match read_json::<ContainerSidecar>(&path) {
                Ok(sidecar) => found.container = Some(sidecar),
                Err(error) => found.unreadable.push(format!("{}: {error}", path.display())),
            }
        } else if let Some(snapshot) = snapshot_of_sidecar(&name) {
            match read_json::<SnapshotSidecar>(&path) {
                Ok(sidecar) if sidecar.name == snapshot => found.snapshots.push(sidecar),
                Ok(sidecar) => found.unreadable.push(format!(
                    "{}: names snapshot {:?}, not {snapshot:?}",
                    path.display(),
                    sidecar.name
                )),
                Err(error) => found.unreadable.push(format!("{}: {error}", path.display())),
            }
        }
    }
    Ok(found)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let bytes = std::fs::read(path).map_err(|err| err.to_string())?;
    let version: serde_json::Value = serde_json::from_slice(&bytes).map_err(|err| err.to_string())?;
    match version.get("version").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(SIDECAR_VERSION) => {}
        other => return Err(format!("sidecar version {other:?}, this rollpoint reads {SIDECAR_VERSION}")),
    }
    serde_json::from_value(version).map_err(|err| err.to_string())
}

/// Every container folder under `<root>/.rollpoint/` with its sidecars.
pub fn scan_root(root: &Path) -> Result<Vec<FolderSidecars>, StoreError> {
    let top = root.join(crate::backend::btrfs::SNAPSHOT_FOLDER);
    let entries = match std::fs::read_dir(&top) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(io_error("list", &top, err)),
    };
    let mut folders = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| io_error("list", &top, err))?;
        if entry.file_type().map_err(|err| io_error("stat", &entry.path(), err))?.is_dir() {
            folders.push(entry.path());
        }
    }
    folders.sort();
    folders.iter().map(|folder| read_folder(folder)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(name: &str) -> SnapshotRecord {
        SnapshotRecord {
            container: "db-1".into(),
            name: name.into(),
            alias: Some("rollback-point".into()),
            create_time: Utc::now(),
            expire_time: None,
            frozen_for: Duration::from_millis(3),
            duration: Duration::from_millis(9),
            state: SnapshotState::Ready,
            origin: SnapshotOrigin::Schedule { entry: "users/root/entries/nightly".into() },
            read_only: true,
            location: format!("/fs/.rollpoint/db-1/{name}"),
            uuid: "u".into(),
            generation: 7,
            comment: "before the migration".into(),
            sizes: None,
            hold: Some(SnapshotHold { reason: "legal hold".into(), actor: "uid:0".into(), time: Utc::now() }),
            group: Some("shop".into()),
        }
    }

    #[test]
    fn sidecars_round_trip_and_are_found_by_name() {
        let folder = tempfile::tempdir().expect("temp dir");
        let record = snapshot("snap-2026-05-04");
        write(folder.path(), &snapshot_sidecar_name(&record.name), &SnapshotSidecar::of(&record, 12)).expect("write");
        std::fs::write(folder.path().join(".other.json"), b"{\"version\": 9}").expect("write a future version");
        let found = read_folder(folder.path()).expect("read");
        assert_eq!(found.snapshots.len(), 1);
        assert_eq!(found.snapshots[0].record(record.location.clone(), 7), record);
        assert_eq!(found.highest_generation(), 12);
        assert_eq!(found.unreadable.len(), 1, "{:?}", found.unreadable);
        assert!(found.unreadable[0].contains("version"));
        remove(folder.path(), &snapshot_sidecar_name(&record.name)).expect("remove");
        remove(folder.path(), &snapshot_sidecar_name(&record.name)).expect("remove again");
        assert!(read_folder(folder.path()).expect("read").snapshots.is_empty());
    }

    #[test]
    fn only_sidecar_names_are_read_as_sidecars() {
        assert_eq!(snapshot_of_sidecar(".snap-1.json"), Some("snap-1"));
        assert_eq!(snapshot_of_sidecar(CONTAINER_SIDECAR), None);
        assert_eq!(snapshot_of_sidecar(".snap-1.json.tmp"), None);
        assert_eq!(snapshot_of_sidecar("snap-1"), None);
    }
}
