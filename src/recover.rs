//! `rollpoint recover`: rebuilds the store from the records kept beside the
//! data (`store::sidecar`), with the daemon stopped.
//!
//! It reads every container folder under `<fs>/.rollpoint/` of the
//! filesystems named (the configuration's `filesystems`, `--filesystem`,
//! and those of the containers the store still knows) and of the metadata
//! volumes of the LVM volume groups named (`volume_groups`,
//! `--volume-group`), and compares each
//! sidecar whose volume is on disk with the store:
//! - a container or snapshot the store lacks is re-created, with its
//!   name, alias, expiry, origin and comment;
//! - a record that differs from a sidecar written after the store's last
//!   change (the store is older) is brought up to the sidecar;
//! - any other difference is a conflict: listed, never overwritten.
//!
//! A dry run (the default) works on a copy of the store and changes
//! nothing. An unreadable store is moved aside (`db.damaged-<time>`) and a
//! new one is built; an empty state directory (a new root disk) is fine.
//! Subvolumes without a sidecar and sidecars without a subvolume are listed
//! and left alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::backend::{Backend, VolumeInfo};
use crate::store::sidecar::{self, ContainerSidecar, FolderSidecars, SnapshotSidecar};
use crate::store::{ContainerRecord, SnapshotRecord, Store, StoreError};

/// What to scan and whether to write.
#[derive(Debug, Clone)]
pub struct RecoverOptions {
    pub state_dir: PathBuf,
    pub filesystems: Vec<PathBuf>,
    /// LVM volume groups whose metadata volumes are scanned too.
    pub volume_groups: Vec<String>,
    pub apply: bool,
}

/// What recover found and did (or would do, in a dry run).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecoverReport {
    /// How the store was found.
    pub store: String,
    /// Container folders read.
    pub folders: Vec<String>,
    /// Containers re-created.
    pub containers: Vec<String>,
    /// Snapshots re-created (`containers/{id}/snapshots/{name}`).
    pub snapshots: Vec<String>,
    /// Records brought up to a newer sidecar.
    pub updated: Vec<String>,
    /// Differences left for the user.
    pub conflicts: Vec<String>,
    /// What was left alone, and why.
    pub skipped: Vec<String>,
    /// Whether the changes were written.
    pub applied: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the store in {path} is in use (is rollpointd running? stop it first): {source}")]
    InUse { path: PathBuf, source: StoreError },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RecoverError + 'a {
    move |source| RecoverError::Io { op, path: path.to_path_buf(), source }
}

/// Runs recover; see the module doc.
pub fn recover(options: &RecoverOptions, backend: &dyn Backend) -> Result<RecoverReport, RecoverError> {
    let mut report = RecoverReport { applied: options.apply, ..Default::default() };
    // A dry run opens a copy: sled may repair its log when it opens it.
    let copy = Scratch(scratch_dir()?);
    let store_dir = if options.apply { options.state_dir.clone() } else { copy_store(&options.state_dir, &copy.0)? };
    let store = open_store(&store_dir, options.apply, &mut report)?;
    let generation = store.generation()?;
    report.store.push_str(&format!(", generation {generation}"));

    let mut containers: BTreeMap<String, ContainerRecord> =
        store.containers()?.into_iter().map(|c| (c.id.clone(), c)).collect();
    let mut folders: BTreeMap<PathBuf, FolderSidecars> = BTreeMap::new();
    let lvm_roots = backend.metadata_roots(&options.volume_groups);
    for root in options.filesystems.iter().chain(&lvm_roots) {
        for folder in sidecar::scan_root(root)? {
            folders.insert(folder.folder.clone(), folder);
        }
    }
    for container in containers.values() {
        if let Some(folder) = backend.metadata_dir(&volume_of(container)) {
            if let std::collections::btree_map::Entry::Vacant(slot) = folders.entry(folder) {
                let read = sidecar::read_folder(slot.key())?;
                slot.insert(read);
            }
        }
    }

    let mut highest = generation;
    let mut new_snapshots: Vec<SnapshotRecord> = Vec::new();
    for (path, folder) in &folders {
        report.folders.push(path.display().to_string());
        highest = highest.max(folder.highest_generation());
        for unreadable in &folder.unreadable {
            report.skipped.push(format!("{unreadable} (unreadable; left alone)"));
        }
        let Some(container) = settle_container(backend, folder, &mut containers, generation, &mut report) else {
            for snapshot in &folder.snapshots {
                report.skipped.push(format!(
                    "{}: snapshot {} of container {:?}, which has no _container.json here; left alone",
                    path.display(),
                    snapshot.name,
                    snapshot.container
                ));
            }
            continue;
        };
        let volume = volume_of(&container);
        let mut records: BTreeMap<String, SnapshotRecord> =
            store.snapshots_of(&container.id)?.into_iter().map(|r| (r.name.clone(), r)).collect();
        let mut sidecars: Vec<&SnapshotSidecar> = folder.snapshots.iter().collect();
        sidecars.sort_by_key(|s| s.generation);
        for found in sidecars {
            settle_snapshot(backend, &volume, found, &mut records, generation, &mut report, &mut new_snapshots)?;
        }
        for location in backend.list_snapshots(&volume).unwrap_or_default() {
            let name = location.rsplit('/').next().unwrap_or_default();
            if !records.contains_key(name) && !crate::engine::names::is_temporary_volume(name) {
                report.skipped.push(format!("{location}: a volume without a record beside it; left alone"));
            }
        }
    }

    if options.apply {
        for container in containers.values() {
            if report.containers.contains(&container.id) || report.updated.contains(&container_name(&container.id)) {
                store.put_container(container)?;
            }
        }
        let batch: Vec<&SnapshotRecord> = new_snapshots.iter().collect();
        store.put_snapshots(&batch)?;
        store.raise_generation(highest)?;
        store.make_durable()?;
    }
    Ok(report)
}

fn container_name(id: &str) -> String {
    format!("containers/{id}")
}

fn volume_of(container: &ContainerRecord) -> VolumeInfo {
    VolumeInfo { path: container.volume.clone(), snapshot_dir: container.snapshot_dir.clone() }
}

/// The container a folder belongs to, re-created or updated from its
/// sidecar when the store lacks it or is older; None when neither the
/// store nor a sidecar names one.
fn settle_container(
    backend: &dyn Backend,
    folder: &FolderSidecars,
    containers: &mut BTreeMap<String, ContainerRecord>,
    generation: u64,
    report: &mut RecoverReport,
) -> Option<ContainerRecord> {
    let Some(found) = &folder.container else {
        return containers.values().find(|c| c.snapshot_dir == folder.folder).cloned();
    };
    // Where its snapshots are: the folder itself on btrfs; on LVM thin the
    // folder is on the VG's metadata volume and the backend says.
    let snapshot_dir = if found.volume.is_absolute() {
        folder.folder.clone()
    } else {
        backend
            .inspect(&found.volume.to_string_lossy(), &found.id)
            .map_or_else(|_| folder.folder.clone(), |v| v.snapshot_dir)
    };
    match containers.get_mut(&found.id) {
        None => {
            let record = found.record(&snapshot_dir);
            report.containers.push(record.id.clone());
            containers.insert(record.id.clone(), record.clone());
            Some(record)
        }
        Some(known) if ContainerSidecar::of(known, found.generation).same_as(found) => Some(known.clone()),
        Some(known) if found.generation > generation && known.snapshot_dir == snapshot_dir => {
            let last_restore = known.last_restore.take();
            *known = ContainerRecord { last_restore, ..found.record(&snapshot_dir) };
            report.updated.push(container_name(&known.id));
            Some(known.clone())
        }
        Some(known) => {
            report.conflicts.push(format!(
                "container {}: the store and {} differ (store: {:?}; beside the data: {:?}); the store is kept",
                known.id,
                folder.folder.join(sidecar::CONTAINER_SIDECAR).display(),
                ContainerSidecar::of(known, 0),
                found
            ));
            Some(known.clone())
        }
    }
}

/// Compares one snapshot sidecar with the store's record.
fn settle_snapshot(
    backend: &dyn Backend,
    volume: &VolumeInfo,
    found: &SnapshotSidecar,
    records: &mut BTreeMap<String, SnapshotRecord>,
    generation: u64,
    report: &mut RecoverReport,
    changes: &mut Vec<SnapshotRecord>,
) -> Result<(), RecoverError> {
    let location = backend.location(volume, &found.name);
    let resource = format!("containers/{}/snapshots/{}", found.container, found.name);
    if !backend.snapshot_exists(&location).unwrap_or(false) {
        report.skipped.push(format!("{resource}: its record is beside the data but its volume {location} is gone"));
        return Ok(());
    }
    let details = match backend.details(&location) {
        Ok(details) => details,
        Err(error) => {
            report.skipped.push(format!("{resource}: cannot read {location}: {error}"));
            return Ok(());
        }
    };
    if !found.uuid.is_empty() && found.uuid != details.uuid {
        report.conflicts.push(format!(
            "{resource}: {location} holds volume {}, its record beside it names {}; left alone",
            details.uuid, found.uuid
        ));
        return Ok(());
    }
    let newer = found.generation > generation;
    let mut wanted = found.record(location, details.generation);
    match records.get(&found.name) {
        None => report.snapshots.push(resource.clone()),
        Some(known) if SnapshotSidecar::of(known, found.generation).same_as(found) => return Ok(()),
        Some(_) if newer => report.updated.push(resource.clone()),
        Some(known) => {
            report.conflicts.push(format!(
                "{resource}: the store and the record beside the data differ (store: alias {:?}, expires {:?}, \
                 origin {:?}; beside the data: alias {:?}, expires {:?}, origin {:?}); the store is kept",
                known.alias, known.expire_time, known.origin, found.alias, found.expire_time, found.origin
            ));
            return Ok(());
        }
    }
    if let Some(alias) = &wanted.alias {
        let holder = records.values().find(|r| r.name != wanted.name && r.alias.as_deref() == Some(alias)).cloned();
        if let Some(mut holder) = holder {
            if newer {
                report
                    .updated
                    .push(format!("containers/{}/snapshots/{} (alias {alias} moved)", holder.container, holder.name));
                holder.alias = None;
                records.insert(holder.name.clone(), holder.clone());
                upsert(changes, holder);
            } else {
                report.conflicts.push(format!(
                    "{resource}: alias {alias} is held by {} in the store; re-created without it",
                    holder.name
                ));
                wanted.alias = None;
            }
        }
    }
    records.insert(wanted.name.clone(), wanted.clone());
    upsert(changes, wanted);
    Ok(())
}

fn upsert(changes: &mut Vec<SnapshotRecord>, record: SnapshotRecord) {
    changes.retain(|r| !(r.container == record.container && r.name == record.name));
    changes.push(record);
}

/// A dry run's copy of the store, removed when done.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch_dir() -> Result<PathBuf, RecoverError> {
    let dir = std::env::temp_dir().join(format!("rollpoint-recover-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io_error("remove", &dir))?;
    }
    Ok(dir)
}

/// Copies `<state_dir>/db` into `copy` (a dry run's scratch store).
fn copy_store(state_dir: &Path, copy: &Path) -> Result<PathBuf, RecoverError> {
    let source = state_dir.join("db");
    let target = copy.join("db");
    std::fs::create_dir_all(&target).map_err(io_error("create", &target))?;
    if source.is_dir() {
        copy_tree(&source, &target)?;
    }
    Ok(copy.to_path_buf())
}

fn copy_tree(source: &Path, target: &Path) -> Result<(), RecoverError> {
    for entry in std::fs::read_dir(source).map_err(io_error("list", source))? {
        let entry = entry.map_err(io_error("list", source))?;
        let to = target.join(entry.file_name());
        if entry.file_type().map_err(io_error("stat", &entry.path()))?.is_dir() {
            std::fs::create_dir_all(&to).map_err(io_error("create", &to))?;
            copy_tree(&entry.path(), &to)?;
        } else {
            std::fs::copy(entry.path(), &to).map_err(io_error("copy", &entry.path()))?;
        }
    }
    Ok(())
}

/// Opens the store in `dir`; an unreadable one is moved aside (applying)
/// or replaced by an empty copy (dry run).
fn open_store(dir: &Path, apply: bool, report: &mut RecoverReport) -> Result<Store, RecoverError> {
    match Store::open(dir) {
        Ok(store) => {
            report.store = format!("{} readable", dir.join("db").display());
            Ok(store)
        }
        Err(error) if is_locked(&error) => Err(RecoverError::InUse { path: dir.to_path_buf(), source: error }),
        Err(error) => {
            let db = dir.join("db");
            let aside = dir.join(format!("db.damaged-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%.9fZ")));
            std::fs::rename(&db, &aside).map_err(io_error("move aside", &db))?;
            report.store = if apply {
                format!("{} unreadable ({error}); moved to {} and rebuilt", db.display(), aside.display())
            } else {
                format!("{} unreadable ({error}); would be moved aside and rebuilt", db.display())
            };
            Ok(Store::open(dir)?)
        }
    }
}

/// sled refuses a second opener with an I/O error saying it could not
/// acquire its lock.
fn is_locked(error: &StoreError) -> bool {
    error.to_string().contains("lock")
}
