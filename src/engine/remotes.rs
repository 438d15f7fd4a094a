//! Off-host copies: remotes, export, import, verify and prune, over the
//! remote layer. Export reads a read-only snapshot and never freezes the
//! container; import writes a new volume that is recorded only once it is
//! complete (an intent removes a half-made one after a crash).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use super::error::{EngineError, EngineResult};
use super::names;
use super::snapshots::volume_of;
use super::Engine;
use crate::backend::PathChange;
use crate::events::Event;
use crate::remote::export::{self, Change, Exported, Parent, Progress, SnapshotInfo};
use crate::remote::import::{self, ImportProgress, Imported};
use crate::remote::manifest::Manifest;
use crate::remote::prune::{PrunePolicy, PruneReport};
use crate::remote::read::list_manifests;
use crate::remote::repository::InitReport;
use crate::remote::verify::VerifyReport;
use crate::remote::{self as remote_layer, Id, Objects, RemoteConfig, Repository};
use crate::store::{ContainerRecord, Intent, SnapshotOrigin, SnapshotRecord, SnapshotState};
use crate::units::bytes;

/// A remote as configured.
#[derive(Debug, Clone)]
pub struct RemoteSummary {
    pub name: String,
    pub url: String,
    pub key_file: PathBuf,
    pub key_file_present: bool,
}

/// What `check` found at a remote.
#[derive(Debug, Clone)]
pub struct RemoteCheck {
    pub name: String,
    pub repository_id: String,
    pub snapshots: usize,
    pub packs: usize,
    pub stored_bytes: u64,
    pub blobs: usize,
}

/// An exported snapshot in a remote.
#[derive(Debug, Clone)]
pub struct RemoteSnapshot {
    pub id: Id,
    pub manifest: Manifest,
}

#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub container: String,
    /// Name or alias.
    pub snapshot: String,
    pub remote: String,
    pub actor: String,
}

/// Where an import puts the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportTarget {
    /// A new snapshot of the registered container of the same id.
    Snapshot,
    /// A new volume at this path: a btrfs subvolume when its parent folder
    /// is on btrfs, a plain directory on any other filesystem.
    Path(PathBuf),
}

#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub remote: String,
    pub container: String,
    /// The exported snapshot's name or alias, or its manifest id (hex).
    pub snapshot: String,
    pub target: ImportTarget,
    pub actor: String,
}

#[derive(Debug, Clone)]
pub struct ImportResult {
    pub manifest_id: Id,
    pub manifest: Manifest,
    /// The snapshot recorded, for [`ImportTarget::Snapshot`].
    pub snapshot: Option<SnapshotRecord>,
    pub path: PathBuf,
    pub imported: Imported,
}

impl Engine {
    fn remote_config(&self, name: &str) -> EngineResult<&RemoteConfig> {
        remote_layer::config::check_name(name).map_err(|reason| EngineError::invalid("remote", reason))?;
        self.config.remotes.get(name).ok_or_else(|| {
            let configured = if self.config.remotes.is_empty() {
                "none".to_owned()
            } else {
                self.config.remotes.keys().cloned().collect::<Vec<_>>().join(", ")
            };
            EngineError::invalid(
                "remote",
                format!(
                    "{name:?} is not a configured remote (configured: {configured}); add [remotes.{name}] to the \
                     daemon's configuration and restart it"
                ),
            )
        })
    }

    fn key_file(&self, name: &str, config: &RemoteConfig) -> PathBuf {
        config.key_file(name, &self.config.state_dir)
    }

    fn open_repository(&self, name: &str) -> EngineResult<Repository> {
        let config = self.remote_config(name)?;
        let objects = Objects::open(name, config)?;
        Ok(Repository::open(objects, &self.key_file(name, config))?)
    }

    pub fn list_remotes(&self) -> Vec<RemoteSummary> {
        self.config
            .remotes
            .iter()
            .map(|(name, config)| {
                let key_file = self.key_file(name, config);
                RemoteSummary {
                    name: name.clone(),
                    url: config.url.clone(),
                    key_file_present: key_file.exists(),
                    key_file,
                }
            })
            .collect()
    }

    /// Creates the repository of a configured remote.
    pub fn init_remote(&self, name: &str, actor: &str) -> EngineResult<InitReport> {
        let config = self.remote_config(name)?;
        let objects = Objects::open(name, config)?;
        let result = Repository::init(objects, &self.key_file(name, config)).map(|(_, report)| report);
        let event = Event::new("remote.init", if result.is_ok() { "ok" } else { "failed" }).actor(actor);
        match &result {
            Ok(report) => self.emit(event.detail(format!(
                "remote {name}: repository {} created; key file {}",
                report.repository_id,
                report.key_file.display()
            ))),
            Err(error) => self.emit(event.detail(error.to_string())),
        }
        Ok(result?)
    }

    /// Opens a remote's repository and reads its listing: credentials,
    /// bucket, repository and key checked in one go.
    pub fn check_remote(&self, name: &str) -> EngineResult<RemoteCheck> {
        let repository = self.open_repository(name)?;
        let index = repository.load_index()?;
        let snapshots = repository.objects().list("snapshots")?.len();
        Ok(RemoteCheck {
            name: name.to_owned(),
            repository_id: repository.config().id.clone(),
            snapshots,
            packs: index.packs.len(),
            stored_bytes: index.pack_sizes.iter().sum(),
            blobs: index.len(),
        })
    }

    /// The snapshots exported to a remote, oldest export first; only those
    /// of `container` unless it is empty.
    pub fn remote_snapshots(&self, name: &str, container: &str) -> EngineResult<Vec<RemoteSnapshot>> {
        let repository = self.open_repository(name)?;
        Ok(list_manifests(&repository)?
            .into_iter()
            .filter(|(_, m)| container.is_empty() || m.container == container)
            .map(|(id, manifest)| RemoteSnapshot { id, manifest })
            .collect())
    }

    /// Copies a snapshot to a remote, incrementally from the newest earlier
    /// export of the container. Exporting a snapshot that is there already
    /// answers with that export.
    pub fn export_snapshot(
        &self,
        request: &ExportRequest,
        progress: &mut dyn FnMut(&Progress),
        cancel: &AtomicBool,
    ) -> EngineResult<Exported> {
        let started = Instant::now();
        let container = self.container_for("container", &request.container)?;
        let snapshot = self.find_snapshot(&container, &request.snapshot)?;
        let result = self.export_found(&container, &snapshot, &request.remote, progress, cancel);
        let event = Event::new("snapshot.exported", if result.is_ok() { "ok" } else { "failed" })
            .container(&container.id)
            .snapshot(&snapshot.name)
            .actor(&request.actor)
            .duration(started.elapsed());
        match &result {
            Ok(exported) => self.emit(event.detail(format!(
                "to remote {}: {} new of {} ({} files; {}){}",
                request.remote,
                bytes(exported.manifest.added_bytes),
                bytes(exported.manifest.logical_bytes),
                exported.manifest.files,
                exported.method.as_str(),
                if exported.already_there { "; it was there already" } else { "" }
            ))),
            Err(error) => self.emit(event.detail(error.to_string())),
        }
        let _ = self.store.make_durable();
        result
    }

    fn export_found(
        &self,
        container: &ContainerRecord,
        snapshot: &SnapshotRecord,
        remote: &str,
        progress: &mut dyn FnMut(&Progress),
        cancel: &AtomicBool,
    ) -> EngineResult<Exported> {
        super::snapshots::ensure_ready(snapshot, "nothing to export")?;
        let root = self.backend.readable_root(&snapshot.location)?;
        let repository = self.open_repository(remote)?;
        let mut earlier: Vec<(Id, Manifest)> =
            list_manifests(&repository)?.into_iter().filter(|(_, m)| m.container == container.id).collect();
        earlier.sort_by(|a, b| a.1.snapshot_created.cmp(&b.1.snapshot_created));
        if let Some((id, manifest)) =
            earlier.iter().find(|(_, m)| m.source_uuid == snapshot.uuid && !m.source_uuid.is_empty())
        {
            return Ok(Exported {
                id: *id,
                manifest: manifest.clone(),
                method: export::Method::ChangesFromFilesystem,
                already_there: true,
                duration: std::time::Duration::ZERO,
            });
        }
        let parent = self.choose_parent(container, snapshot, &earlier);
        let info = SnapshotInfo {
            host: self.config.host.clone(),
            container: container.id.clone(),
            snapshot: snapshot.name.clone(),
            alias: snapshot.alias.clone().unwrap_or_default(),
            created: snapshot.create_time.to_rfc3339(),
            backend: container.backend.clone(),
            uuid: snapshot.uuid.clone(),
            generation: snapshot.generation,
        };
        let _pin = self.pin_snapshot(&snapshot.location)?;
        Ok(export::export(&repository, &root, info, parent, progress, cancel)?)
    }

    /// The export to build on: the newest one of the container whose
    /// snapshot is still here (the filesystem then says what changed), else
    /// the newest one (its tree is compared with a walk).
    fn choose_parent(
        &self,
        container: &ContainerRecord,
        snapshot: &SnapshotRecord,
        earlier: &[(Id, Manifest)],
    ) -> Option<Parent> {
        for (id, manifest) in earlier.iter().rev() {
            let Ok(Some(local)) = self.store.snapshot(&container.id, &manifest.snapshot) else { continue };
            if local.uuid != manifest.source_uuid || local.state != SnapshotState::Ready || local.name == snapshot.name
            {
                continue;
            }
            match self.backend.changes_between(Some(&local.location), &snapshot.location) {
                Ok(Some(changes)) => {
                    return Some(Parent { id: *id, manifest: manifest.clone(), changes: Some(to_changes(changes)) })
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(container = %container.id, parent = %local.name, %error,
                        "export: the filesystem could not tell what changed; walking the tree instead");
                    break;
                }
            }
        }
        earlier.last().map(|(id, manifest)| Parent { id: *id, manifest: manifest.clone(), changes: None })
    }

    /// Brings an exported snapshot back: as a new snapshot of its container,
    /// or as a new volume at a path.
    pub fn import_snapshot(
        &self,
        request: &ImportRequest,
        progress: &mut dyn FnMut(&ImportProgress),
        cancel: &AtomicBool,
    ) -> EngineResult<ImportResult> {
        let started = Instant::now();
        names::container_id("container", &request.container)?;
        let result = self.import_inner(request, progress, cancel);
        let event = Event::new("snapshot.imported", if result.is_ok() { "ok" } else { "failed" })
            .container(&request.container)
            .snapshot(&request.snapshot)
            .actor(&request.actor)
            .duration(started.elapsed());
        match &result {
            Ok(imported) => self.emit(event.detail(format!(
                "from remote {} to {}: {} written, {} downloaded, {} entries",
                request.remote,
                imported.path.display(),
                bytes(imported.imported.bytes_written),
                bytes(imported.imported.bytes_downloaded),
                imported.imported.entries
            ))),
            Err(error) => self.emit(event.detail(error.to_string())),
        }
        let _ = self.store.make_durable();
        result
    }

    fn find_manifest(&self, repository: &Repository, container: &str, reference: &str) -> EngineResult<(Id, Manifest)> {
        let manifests = list_manifests(repository)?;
        let by_id = Id::from_hex(reference);
        manifests
            .into_iter()
            .rev()
            .find(|(id, m)| {
                Some(*id) == by_id || m.container == container && (m.snapshot == reference || m.alias == reference)
            })
            .ok_or_else(|| {
                EngineError::not_found(format!(
                    "snapshot {reference:?} of container {container} in remote {}",
                    repository.remote()
                ))
            })
    }

    fn import_inner(
        &self,
        request: &ImportRequest,
        progress: &mut dyn FnMut(&ImportProgress),
        cancel: &AtomicBool,
    ) -> EngineResult<ImportResult> {
        let repository = self.open_repository(&request.remote)?;
        let (manifest_id, manifest) = self.find_manifest(&repository, &request.container, &request.snapshot)?;
        match &request.target {
            ImportTarget::Path(path) => {
                let path = self.prepare_import_path(path)?;
                let imported = import::import(&repository, &manifest, &path, progress, cancel);
                match imported {
                    Ok(imported) => Ok(ImportResult { manifest_id, manifest, snapshot: None, path, imported }),
                    Err(error) => {
                        self.remove_import_path(&path);
                        Err(error.into())
                    }
                }
            }
            ImportTarget::Snapshot => {
                let container = self.container_for("container", &request.container)?;
                let _guard = self.locks.lock(&container.id, self.config.lock_wait)?;
                let (record, imported) =
                    self.import_as_snapshot(&container, &repository, &manifest, &request.remote, progress, cancel)?;
                let path = PathBuf::from(&record.location);
                Ok(ImportResult { manifest_id, manifest, snapshot: Some(record), path, imported })
            }
        }
    }

    /// With the container's lock held: a new volume in the container's
    /// snapshot folder, filled, made read-only, then recorded.
    pub(super) fn import_as_snapshot(
        &self,
        container: &ContainerRecord,
        repository: &Repository,
        manifest: &Manifest,
        remote: &str,
        progress: &mut dyn FnMut(&ImportProgress),
        cancel: &AtomicBool,
    ) -> EngineResult<(SnapshotRecord, Imported)> {
        let started = Instant::now();
        if self.store.snapshot_name_in_use(&container.id, &manifest.snapshot)? {
            return Err(EngineError::AlreadyExists {
                what: format!("snapshot {:?} of container {} (here already)", manifest.snapshot, container.id),
            });
        }
        let volume = volume_of(container);
        let location = self.backend.location(&volume, &manifest.snapshot);
        let intent = Intent::Create {
            container: container.id.clone(),
            name: manifest.snapshot.clone(),
            location: location.clone(),
            cgroup: container.cgroup.clone(),
            freezes: false,
        };
        let intent_id = self.store.begin_intent(&intent)?;
        self.store.make_durable()?;
        let filled = self.backend.create_volume(&location).map_err(EngineError::from).and_then(|()| {
            let root = self.backend.readable_root(&location)?;
            let imported = import::import(repository, manifest, &root, progress, cancel)?;
            self.backend.set_read_only(&location, true)?;
            let details = self.backend.details(&location)?;
            Ok((imported, details))
        });
        let (imported, details) = match filled {
            Ok(filled) => filled,
            Err(error) => {
                if let Err(cleanup) = self.backend.delete_snapshot(&location) {
                    tracing::error!(%location, error = %cleanup, "could not remove a half-imported snapshot");
                }
                self.store.end_intent(intent_id)?;
                self.store.make_durable()?;
                return Err(error);
            }
        };
        let now = self.clock.now();
        let alias = Some(manifest.alias.clone())
            .filter(|a| !a.is_empty())
            .filter(|a| self.store.snapshot_by_alias(&container.id, a).ok().flatten().is_none());
        let record = SnapshotRecord {
            container: container.id.clone(),
            name: manifest.snapshot.clone(),
            alias,
            create_time: chrono::DateTime::parse_from_rfc3339(&manifest.snapshot_created)
                .map(|t| t.with_timezone(&chrono::Utc))
                .unwrap_or(now),
            expire_time: None,
            frozen_for: std::time::Duration::ZERO,
            duration: started.elapsed(),
            state: SnapshotState::Ready,
            origin: SnapshotOrigin::Import { remote: remote.to_owned() },
            read_only: details.read_only,
            location,
            uuid: details.uuid,
            generation: details.generation,
            comment: format!("imported from remote {remote} (exported by {} at {})", manifest.host, manifest.exported),
            sizes: None,
            hold: None,
            group: None,
        };
        self.store.put_snapshots(&[&record])?;
        self.mirror_snapshots(&record.container, &[&record])?;
        self.store.end_intent(intent_id)?;
        self.store.make_durable()?;
        self.sizes_stale.notify_one();
        Ok((record, imported))
    }

    /// Checks an import path and makes the empty volume there.
    fn prepare_import_path(&self, path: &Path) -> EngineResult<PathBuf> {
        if !path.is_absolute() {
            return Err(EngineError::invalid("target", format!("{}: give an absolute path", path.display())));
        }
        let parent = path.parent().filter(|p| p.is_dir()).ok_or_else(|| {
            EngineError::invalid("target", format!("{}: its parent folder does not exist", path.display()))
        })?;
        if path.symlink_metadata().is_ok() {
            return Err(EngineError::AlreadyExists { what: format!("{}", path.display()) });
        }
        let location = path.to_string_lossy().into_owned();
        if crate::backend::btrfs::is_on_btrfs(parent) {
            self.backend.create_volume(&location)?;
        } else {
            std::fs::create_dir(path)
                .map_err(|e| EngineError::invalid("target", format!("{}: {e}", path.display())))?;
        }
        Ok(path.to_owned())
    }

    fn remove_import_path(&self, path: &Path) {
        let location = path.to_string_lossy().into_owned();
        let removed = match self.backend.delete_snapshot(&location) {
            Ok(true) => Ok(()),
            _ => std::fs::remove_dir_all(path),
        };
        if let Err(error) = removed {
            tracing::error!(path = %path.display(), %error, "could not remove a half-imported tree");
        }
    }

    /// Restores a container to a snapshot; when `remote` is given and the
    /// snapshot is not here (never was, expired, deleted, lost), it is
    /// imported from the remote first, then restored as any other (the same
    /// undo, the same idempotence).
    pub fn restore_with_remote(
        &self,
        container: &str,
        reference: &str,
        remote: &str,
        request_id: &str,
        actor: &str,
    ) -> EngineResult<super::RestoreOutcome> {
        if remote.is_empty() {
            return self.restore_snapshot(container, reference, request_id, actor);
        }
        let record = self.container_for("container", container)?;
        if let Ok(local) = self.find_snapshot(&record, reference) {
            if local.state == SnapshotState::Ready {
                return self.restore_snapshot(container, reference, request_id, actor);
            }
        }
        let repository = self.open_repository(remote)?;
        let (_, manifest) = self.find_manifest(&repository, container, reference)?;
        {
            let _guard = self.locks.lock(&record.id, self.config.lock_wait)?;
            if let Some(lost) = self.store.snapshot(&record.id, &manifest.snapshot)? {
                if lost.state != SnapshotState::Lost {
                    return Err(EngineError::FailedPrecondition {
                        reason: format!("{} is {:?} here; try again", lost.resource_name(), lost.state),
                    });
                }
                // Its volume is gone: the remote copy takes its place.
                self.store.remove_snapshot(&record.id, &lost.name)?;
            }
            let started = Instant::now();
            let (imported, _) =
                self.import_as_snapshot(&record, &repository, &manifest, remote, &mut |_| {}, &AtomicBool::new(false))?;
            self.emit(
                Event::new("snapshot.imported", "ok")
                    .container(&record.id)
                    .snapshot(&imported.name)
                    .actor(actor)
                    .duration(started.elapsed())
                    .detail(format!("from remote {remote}, to restore it")),
            );
        }
        self.restore_snapshot(container, &manifest.snapshot, request_id, actor)
    }

    /// Reads a remote back and checks every object it can.
    pub fn verify_remote(&self, name: &str, actor: &str) -> EngineResult<VerifyReport> {
        let started = Instant::now();
        let repository = self.open_repository(name)?;
        let report = remote_layer::verify::verify(&repository)?;
        self.emit(
            Event::new("remote.verified", if report.problems.is_empty() { "ok" } else { "failed" })
                .actor(actor)
                .duration(started.elapsed())
                .detail(format!("remote {name}: {}", report.summary())),
        );
        let _ = self.store.make_durable();
        Ok(report)
    }

    /// Forgets exports by retention and collects what nothing references.
    pub fn prune_remote(&self, name: &str, policy: &PrunePolicy, actor: &str) -> EngineResult<PruneReport> {
        let started = Instant::now();
        let repository = self.open_repository(name)?;
        let result = remote_layer::prune::prune(&repository, policy, chrono::Utc::now());
        let event = Event::new("remote.pruned", if result.is_ok() { "ok" } else { "failed" })
            .actor(actor)
            .duration(started.elapsed());
        match &result {
            Ok(report) => self.emit(event.detail(format!("remote {name}: {}", report.summary()))),
            Err(error) => self.emit(event.detail(error.to_string())),
        }
        let _ = self.store.make_durable();
        Ok(result?)
    }
}

fn to_changes(changes: Vec<PathChange>) -> Vec<Change> {
    changes
        .into_iter()
        .map(|change| match change {
            PathChange::Rename { from, to } => Change::Rename { from, to },
            PathChange::Remove { path } => Change::Remove { path },
            PathChange::Link { path, target } => Change::Link { path, target },
            PathChange::Touched { path, data, .. } => Change::Touched { path, data },
            PathChange::Times { path } => Change::Touched { path, data: false },
        })
        .collect()
}
