//! `rollpoint.v1.RemoteService`: off-host copies. Export and import stream
//! their progress; a client that goes away cancels them.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::auth::authorize;
use super::proto::remote_service_server::RemoteService;
use super::proto::*;
use super::{admission_deadline, blocking, changing, convert, status};
use crate::engine::remotes::{ExportRequest, ImportRequest, ImportTarget, RemoteSnapshot as EngineRemoteSnapshot};
use crate::engine::tokens::Scope;
use crate::engine::{CallKind, Engine, EngineError};
use crate::remote::prune::PrunePolicy;

pub struct Remotes {
    pub engine: Arc<Engine>,
}

fn time(text: &str) -> Option<prost_types::Timestamp> {
    chrono::DateTime::parse_from_rfc3339(text).ok().map(|t| convert::timestamp(t.with_timezone(&chrono::Utc)))
}

pub fn remote_snapshot(snapshot: &EngineRemoteSnapshot) -> super::proto::RemoteSnapshot {
    let m = &snapshot.manifest;
    super::proto::RemoteSnapshot {
        id: snapshot.id.to_hex(),
        container: m.container.clone(),
        snapshot: m.snapshot.clone(),
        alias: m.alias.clone(),
        host: m.host.clone(),
        create_time: time(&m.snapshot_created),
        export_time: time(&m.exported),
        logical_bytes: m.logical_bytes,
        added_bytes: m.added_bytes,
        files: m.files,
        entries: m.entries,
        parent_id: m.parent.map(|p| p.to_hex()).unwrap_or_default(),
        backend: m.backend.clone(),
    }
}

type Updates<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Runs a long engine call on a blocking thread and streams what it
/// reports: progress (skipped while the client is slow: the next one says
/// more), then the result. A client that goes away cancels the call.
async fn stream_call<T, F>(
    engine: &Arc<Engine>,
    kind: CallKind<'_>,
    deadline: Option<Duration>,
    progress_update: fn(TransferProgress) -> T,
    call: F,
) -> Result<Updates<T>, Status>
where
    T: Send + 'static,
    F: FnOnce(&Engine, &mut dyn FnMut(TransferProgress), &AtomicBool) -> Result<T, EngineError> + Send + 'static,
{
    let admission = engine.admit(kind, deadline).await.map_err(status::from_engine)?;
    let engine = engine.clone();
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<T, Status>>(8);
    tokio::task::spawn_blocking(move || {
        let _admission = admission;
        let cancel = AtomicBool::new(false);
        let mut report = |progress: TransferProgress| {
            if sender.is_closed() {
                cancel.store(true, Ordering::Relaxed);
            }
            let _ = sender.try_send(Ok(progress_update(progress)));
        };
        let result = call(&engine, &mut report, &cancel);
        let _ = sender.blocking_send(result.map_err(status::from_engine));
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver)))
}

#[tonic::async_trait]
impl RemoteService for Remotes {
    async fn list_remotes(
        &self,
        request: Request<ListRemotesRequest>,
    ) -> Result<Response<ListRemotesResponse>, Status> {
        authorize(&request, Scope::Read, None)?;
        let remotes = self
            .engine
            .list_remotes()
            .into_iter()
            .map(|r| Remote {
                name: r.name,
                url: r.url,
                key_file: r.key_file.display().to_string(),
                key_file_present: r.key_file_present,
            })
            .collect();
        Ok(Response::new(ListRemotesResponse { remotes }))
    }

    async fn init_remote(&self, request: Request<InitRemoteRequest>) -> Result<Response<InitRemoteResponse>, Status> {
        let actor = authorize(&request, Scope::Admin, None)?.actor();
        let deadline = admission_deadline(request.metadata());
        let remote = request.into_inner().remote;
        let report = changing(&self.engine, deadline, None, move |engine| engine.init_remote(&remote, &actor)).await?;
        Ok(Response::new(InitRemoteResponse {
            repository_id: report.repository_id,
            key_file: report.key_file.display().to_string(),
            key_file_created: report.key_file_created,
        }))
    }

    async fn check_remote(
        &self,
        request: Request<CheckRemoteRequest>,
    ) -> Result<Response<CheckRemoteResponse>, Status> {
        authorize(&request, Scope::Read, None)?;
        let remote = request.into_inner().remote;
        let check = blocking(&self.engine, move |engine| engine.check_remote(&remote)).await?;
        Ok(Response::new(CheckRemoteResponse {
            repository_id: check.repository_id,
            snapshots: u32::try_from(check.snapshots).unwrap_or(u32::MAX),
            packs: u32::try_from(check.packs).unwrap_or(u32::MAX),
            stored_bytes: check.stored_bytes,
            blobs: check.blobs as u64,
        }))
    }

    async fn list_remote_snapshots(
        &self,
        request: Request<ListRemoteSnapshotsRequest>,
    ) -> Result<Response<ListRemoteSnapshotsResponse>, Status> {
        let container = request.get_ref().container.clone();
        authorize(&request, Scope::Read, (!container.is_empty()).then_some(container.as_str()))?;
        let request = request.into_inner();
        let snapshots =
            blocking(&self.engine, move |engine| engine.remote_snapshots(&request.remote, &request.container)).await?;
        Ok(Response::new(ListRemoteSnapshotsResponse { snapshots: snapshots.iter().map(remote_snapshot).collect() }))
    }

    type ExportSnapshotStream = Updates<ExportSnapshotResponse>;

    async fn export_snapshot(
        &self,
        request: Request<ExportSnapshotRequest>,
    ) -> Result<Response<Self::ExportSnapshotStream>, Status> {
        let actor = authorize(&request, Scope::Snapshot, Some(&request.get_ref().container))?.actor();
        let deadline = admission_deadline(request.metadata());
        let request = request.into_inner();
        let request =
            ExportRequest { container: request.container, snapshot: request.snapshot, remote: request.remote, actor };
        // A read: an export only reads a snapshot, and must not hold back
        // the container's next snapshot while it uploads.
        let stream = stream_call(
            &self.engine,
            CallKind::Read,
            deadline,
            |progress| ExportSnapshotResponse { update: Some(export_snapshot_response::Update::Progress(progress)) },
            move |engine, report, cancel| {
                let exported = engine.export_snapshot(
                    &request,
                    &mut |p| {
                        report(TransferProgress {
                            phase: p.phase.clone(),
                            files_total: p.files_total,
                            files_done: p.files_done,
                            bytes_total: p.bytes_total,
                            bytes_done: p.bytes_read,
                            bytes_new: p.bytes_new,
                            bytes_transferred: p.bytes_uploaded,
                        })
                    },
                    cancel,
                )?;
                let snapshot = EngineRemoteSnapshot { id: exported.id, manifest: exported.manifest.clone() };
                Ok(ExportSnapshotResponse {
                    update: Some(export_snapshot_response::Update::Result(ExportResult {
                        snapshot: Some(remote_snapshot(&snapshot)),
                        method: exported.method.as_str().into(),
                        already_exported: exported.already_there,
                        duration: Some(convert::duration(exported.duration)),
                        bytes_read: exported.manifest.read_bytes,
                    })),
                })
            },
        )
        .await?;
        Ok(Response::new(stream))
    }

    type ImportSnapshotStream = Updates<ImportSnapshotResponse>;

    async fn import_snapshot(
        &self,
        request: Request<ImportSnapshotRequest>,
    ) -> Result<Response<Self::ImportSnapshotStream>, Status> {
        let actor = authorize(&request, Scope::Restore, Some(&request.get_ref().container))?.actor();
        let deadline = admission_deadline(request.metadata());
        let request = request.into_inner();
        let container = request.container.clone();
        let request = ImportRequest {
            remote: request.remote,
            container: request.container,
            snapshot: request.snapshot,
            target: if request.target_path.is_empty() {
                ImportTarget::Snapshot
            } else {
                ImportTarget::Path(request.target_path.into())
            },
            actor,
        };
        // Into a container's snapshots it is a change of that container;
        // into a path of its own it changes nothing the daemon keeps.
        let kind = match request.target {
            ImportTarget::Snapshot => CallKind::Change { container: Some(&container) },
            ImportTarget::Path(_) => CallKind::Read,
        };
        let stream = stream_call(
            &self.engine,
            kind,
            deadline,
            |progress| ImportSnapshotResponse { update: Some(import_snapshot_response::Update::Progress(progress)) },
            move |engine, report, cancel| {
                let result = engine.import_snapshot(
                    &request,
                    &mut |p| {
                        report(TransferProgress {
                            phase: p.phase.clone(),
                            bytes_total: p.bytes_total,
                            bytes_done: p.bytes_written,
                            bytes_transferred: p.bytes_downloaded,
                            ..Default::default()
                        })
                    },
                    cancel,
                )?;
                let source = EngineRemoteSnapshot { id: result.manifest_id, manifest: result.manifest.clone() };
                Ok(ImportSnapshotResponse {
                    update: Some(import_snapshot_response::Update::Result(ImportResult {
                        source: Some(remote_snapshot(&source)),
                        snapshot: result.snapshot.as_ref().map(convert::snapshot),
                        path: result.path.display().to_string(),
                        entries: result.imported.entries,
                        bytes_written: result.imported.bytes_written,
                        bytes_downloaded: result.imported.bytes_downloaded,
                        duration: Some(convert::duration(result.imported.duration)),
                    })),
                })
            },
        )
        .await?;
        Ok(Response::new(stream))
    }

    async fn verify_remote(
        &self,
        request: Request<VerifyRemoteRequest>,
    ) -> Result<Response<VerifyRemoteResponse>, Status> {
        let actor = authorize(&request, Scope::Admin, None)?.actor();
        let remote = request.into_inner().remote;
        let report = blocking(&self.engine, move |engine| engine.verify_remote(&remote, &actor)).await?;
        Ok(Response::new(VerifyRemoteResponse {
            packs: report.packs,
            blobs: report.blobs,
            bytes: report.bytes,
            snapshots: report.snapshots,
            problems: report.problems,
            damaged_snapshots: report.damaged_snapshots,
            unindexed_packs: report.unindexed_packs,
        }))
    }

    async fn prune_remote(
        &self,
        request: Request<PruneRemoteRequest>,
    ) -> Result<Response<PruneRemoteResponse>, Status> {
        let actor = authorize(&request, Scope::Admin, None)?.actor();
        let deadline = admission_deadline(request.metadata());
        let request = request.into_inner();
        let policy = PrunePolicy {
            keep_last: request.keep_last,
            keep_within_days: request.keep_within_days,
            container: request.container,
            grace: if request.grace_seconds == 0 {
                PrunePolicy::default().grace
            } else {
                Duration::from_secs(u64::from(request.grace_seconds))
            },
            dry_run: request.dry_run,
        };
        let remote = request.remote;
        let report =
            changing(&self.engine, deadline, None, move |engine| engine.prune_remote(&remote, &policy, &actor)).await?;
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(Response::new(PruneRemoteResponse {
            forgotten: report.forgotten,
            kept: count(report.kept),
            marked: count(report.marked),
            unmarked: count(report.unmarked),
            waiting: count(report.waiting),
            deleted_packs: count(report.deleted_packs),
            freed_bytes: report.freed_bytes,
        }))
    }
}
