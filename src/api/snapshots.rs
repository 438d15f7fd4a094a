//! `rollpoint.v1.SnapshotService`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth::{authorize, Caller};
use super::groups::authorize_group;
use super::proto::snapshot_service_server::SnapshotService;
use super::proto::*;
use super::{admission_deadline, blocking, changing, convert};
use crate::engine::tokens::Scope;
use crate::engine::{CreateRequest, Engine, EngineError, UpdateRequest};

pub struct Snapshots {
    pub engine: Arc<Engine>,
    /// Restore downtimes are observed here: no event carries them as a number.
    pub metrics: Arc<super::metrics::Metrics>,
}

#[tonic::async_trait]
impl SnapshotService for Snapshots {
    async fn create_snapshot(
        &self,
        request: Request<CreateSnapshotRequest>,
    ) -> Result<Response<CreateSnapshotResponse>, Status> {
        let caller = authorize(&request, Scope::Snapshot, Some(&request.get_ref().container))?;
        let deadline = admission_deadline(request.metadata());
        let request = request.into_inner();
        let container = request.container.clone();
        let record = changing(&self.engine, deadline, Some(&container), move |engine| {
            let fields = (request.name, request.alias, request.expiry_days, request.comment);
            engine.create_snapshot(create_request(&caller, request.container, fields))
        })
        .await?;
        Ok(Response::new(CreateSnapshotResponse { snapshot: Some(convert::snapshot(&record)) }))
    }

    async fn get_snapshot(
        &self,
        request: Request<GetSnapshotRequest>,
    ) -> Result<Response<GetSnapshotResponse>, Status> {
        authorize(&request, Scope::Read, Some(&request.get_ref().container))?;
        let request = request.into_inner();
        let (record, exclusive_bytes) = blocking(&self.engine, move |engine| {
            engine.snapshot_with_exclusive_bytes(&request.container, &request.snapshot)
        })
        .await?;
        Ok(Response::new(GetSnapshotResponse {
            snapshot: Some(convert::snapshot_with_exclusive_bytes(&record, exclusive_bytes)),
        }))
    }

    async fn list_snapshots(
        &self,
        request: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        authorize(&request, Scope::Read, Some(&request.get_ref().container))?;
        let request = request.into_inner();
        let page = blocking(&self.engine, move |engine| {
            engine.list_snapshots(&request.container, request.page_size, &request.page_token)
        })
        .await?;
        Ok(Response::new(ListSnapshotsResponse {
            snapshots: page.items.iter().map(convert::snapshot).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_snapshot(
        &self,
        request: Request<UpdateSnapshotRequest>,
    ) -> Result<Response<UpdateSnapshotResponse>, Status> {
        let actor = authorize(&request, Scope::Snapshot, Some(&request.get_ref().container))?.actor();
        let deadline = admission_deadline(request.metadata());
        let request = request.into_inner();
        let update = UpdateRequest { actor, ..update_from_mask(&request).map_err(super::status::from_engine)? };
        let container = request.container.clone();
        let record = changing(&self.engine, deadline, Some(&container), move |engine| {
            engine.update_snapshot(&request.container, &request.snapshot, update)
        })
        .await?;
        Ok(Response::new(UpdateSnapshotResponse { snapshot: Some(convert::snapshot(&record)) }))
    }

    async fn delete_snapshot(
        &self,
        request: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<DeleteSnapshotResponse>, Status> {
        let actor = authorize(&request, Scope::Snapshot, Some(&request.get_ref().container))?.actor();
        let deadline = admission_deadline(request.metadata());
        let request = request.into_inner();
        let container = request.container.clone();
        let record = changing(&self.engine, deadline, Some(&container), move |engine| {
            engine.delete_snapshot(&request.container, &request.snapshot, &actor)
        })
        .await?;
        Ok(Response::new(DeleteSnapshotResponse { snapshot: Some(convert::snapshot(&record)) }))
    }

    async fn mount_snapshot(
        &self,
        request: Request<MountSnapshotRequest>,
    ) -> Result<Response<MountSnapshotResponse>, Status> {
        // It changes the host's mounts: admin (root on the socket).
        let actor = authorize(&request, Scope::Admin, Some(&request.get_ref().container))?.actor();
        let deadline = admission_deadline(request.metadata());
        let request = request.into_inner();
        let container = request.container.clone();
        let (record, path) = changing(&self.engine, deadline, Some(&container), move |engine| {
            engine.mount_snapshot(&request.container, &request.snapshot, &request.path, &actor)
        })
        .await?;
        Ok(Response::new(MountSnapshotResponse {
            snapshot: Some(convert::snapshot(&record)),
            path: path.display().to_string(),
        }))
    }

    async fn unmount_snapshot(
        &self,
        request: Request<UnmountSnapshotRequest>,
    ) -> Result<Response<UnmountSnapshotResponse>, Status> {
        let actor = authorize(&request, Scope::Admin, Some(&request.get_ref().container))?.actor();
        let deadline = admission_deadline(request.metadata());
        let request = request.into_inner();
        let container = request.container.clone();
        let snapshot = changing(&self.engine, deadline, Some(&container), move |engine| {
            engine.unmount_snapshot(&request.container, &request.path, &actor)
        })
        .await?;
        Ok(Response::new(UnmountSnapshotResponse { snapshot }))
    }

    async fn prune_snapshots(
        &self,
        request: Request<PruneSnapshotsRequest>,
    ) -> Result<Response<PruneSnapshotsResponse>, Status> {
        let container = Some(request.get_ref().container.clone()).filter(|c| !c.is_empty());
        // Looking is reading; deleting one container's snapshots needs the
        // snapshot scope on it, and every container's, admin.
        let scope = match (request.get_ref().dry_run, &container) {
            (true, _) => Scope::Read,
            (false, Some(_)) => Scope::Snapshot,
            (false, None) => Scope::Admin,
        };
        let actor = authorize(&request, scope, container.as_deref())?.actor();
        let deadline = admission_deadline(request.metadata());
        let dry_run = request.get_ref().dry_run;
        let prune = move |engine: &crate::engine::Engine| engine.prune(container.as_deref(), dry_run, &actor);
        let pruned = if dry_run {
            blocking(&self.engine, prune).await?
        } else {
            let target = request.get_ref().container.clone();
            changing(&self.engine, deadline, Some(&target).filter(|t| !t.is_empty()).map(String::as_str), prune).await?
        };
        Ok(Response::new(PruneSnapshotsResponse { decisions: pruned.iter().map(convert::pruned).collect() }))
    }

    async fn diff_snapshots(
        &self,
        request: Request<DiffSnapshotsRequest>,
    ) -> Result<Response<DiffSnapshotsResponse>, Status> {
        authorize(&request, Scope::Read, Some(&request.get_ref().container))?;
        let request = request.into_inner();
        let diff =
            blocking(&self.engine, move |engine| engine.diff_snapshots(&request.container, &request.from, &request.to))
                .await?;
        Ok(Response::new(DiffSnapshotsResponse { paths: diff.iter().map(convert::path_diff).collect() }))
    }

    async fn restore_files(
        &self,
        request: Request<RestoreFilesRequest>,
    ) -> Result<Response<RestoreFilesResponse>, Status> {
        let caller = authorize(&request, Scope::Restore, Some(&request.get_ref().container))?;
        if !request.get_ref().to.is_empty() {
            // Files written anywhere on the host, as root: root's call only.
            match &caller {
                Caller::Local { uid: 0 } => {}
                Caller::Token(_) => {
                    authorize(&request, Scope::Admin, None)?;
                }
                _ => return Err(Status::permission_denied("to: only root (or an admin token) writes to host folders")),
            }
        }
        let actor = caller.actor();
        let deadline = admission_deadline(request.metadata());
        let request = request.into_inner();
        let container = request.container.clone();
        let restored = changing(&self.engine, deadline, Some(&container), move |engine| {
            let to = (!request.to.is_empty()).then(|| std::path::PathBuf::from(&request.to));
            engine.restore_files(&request.container, &request.snapshot, &request.paths, to.as_deref(), &actor)
        })
        .await?;
        Ok(Response::new(RestoreFilesResponse {
            paths: restored.paths,
            pre_restore_snapshot: restored.pre_restore_snapshot.unwrap_or_default(),
            written_to: restored.written_to.to_string_lossy().into_owned(),
        }))
    }

    async fn restore_snapshot(
        &self,
        request: Request<RestoreSnapshotRequest>,
    ) -> Result<Response<RestoreSnapshotResponse>, Status> {
        let actor = authorize(&request, Scope::Restore, Some(&request.get_ref().container))?.actor();
        let deadline = admission_deadline(request.metadata());
        let request = request.into_inner();
        let container = request.container.clone();
        let outcome = changing(&self.engine, deadline, Some(&container), move |engine| {
            engine.restore_with_remote(
                &request.container,
                &request.snapshot,
                &request.remote,
                &request.request_id,
                &actor,
            )
        })
        .await?;
        if !outcome.already_restored {
            self.metrics.observe_restore_downtime(outcome.downtime);
        }
        Ok(Response::new(convert::restore(&outcome)))
    }

    async fn create_group_snapshot(
        &self,
        request: Request<CreateGroupSnapshotRequest>,
    ) -> Result<Response<CreateGroupSnapshotResponse>, Status> {
        let caller = authorize_group(&request, &self.engine, &request.get_ref().group, Scope::Snapshot)?;
        let deadline = admission_deadline(request.metadata());
        let request = request.into_inner();
        let records = changing(&self.engine, deadline, None, move |engine| {
            let fields = (request.name, request.alias, request.expiry_days, request.comment);
            engine.create_group_snapshot(&request.group, create_request(&caller, String::new(), fields))
        })
        .await?;
        Ok(Response::new(CreateGroupSnapshotResponse { snapshots: records.iter().map(convert::snapshot).collect() }))
    }

    async fn restore_group(
        &self,
        request: Request<RestoreGroupRequest>,
    ) -> Result<Response<RestoreGroupResponse>, Status> {
        let actor = authorize_group(&request, &self.engine, &request.get_ref().group, Scope::Restore)?.actor();
        let deadline = admission_deadline(request.metadata());
        let request = request.into_inner();
        let outcome = changing(&self.engine, deadline, None, move |engine| {
            engine.restore_group(&request.group, &request.snapshot, &actor)
        })
        .await?;
        self.metrics.observe_restore_downtime(outcome.downtime);
        Ok(Response::new(RestoreGroupResponse {
            group: outcome.group,
            snapshot: outcome.snapshot,
            pre_restore_snapshot: outcome.pre_restore_snapshot,
            members: outcome.members,
            total: Some(convert::duration(outcome.total)),
            downtime: Some(convert::duration(outcome.downtime)),
        }))
    }
}

/// The engine's request for a snapshot `caller` asked for, with its
/// (name, alias, expiry days, comment).
fn create_request(caller: &Caller, container: String, fields: (String, String, u32, String)) -> CreateRequest {
    let (name, alias, expiry_days, comment) = fields;
    CreateRequest { container, name, alias, expiry_days, comment, origin: caller.origin(), actor: caller.actor() }
}

/// Which fields an update changes: those named in `update_mask`, or, with no
/// mask, those that are set.
fn update_from_mask(request: &UpdateSnapshotRequest) -> Result<UpdateRequest, EngineError> {
    if request.update_mask.is_empty() {
        let update = UpdateRequest {
            alias: Some(request.alias.clone()).filter(|a| !a.is_empty()),
            expiry_days: Some(request.expiry_days).filter(|d| *d > 0),
            hold: Some(request.hold_reason.clone()).filter(|r| !r.is_empty()),
            actor: String::new(),
        };
        if update.alias.is_none() && update.expiry_days.is_none() && update.hold.is_none() {
            return Err(EngineError::invalid(
                "update_mask",
                "nothing to change: set alias, expiry_days or hold_reason, or name them in update_mask",
            ));
        }
        return Ok(update);
    }
    let mut update = UpdateRequest::default();
    for field in &request.update_mask {
        match field.as_str() {
            "alias" => update.alias = Some(request.alias.clone()),
            "expiry_days" => update.expiry_days = Some(request.expiry_days),
            "hold" | "hold_reason" => update.hold = Some(request.hold_reason.clone()),
            other => {
                return Err(EngineError::invalid(
                    "update_mask",
                    format!("{other:?} cannot be updated; only alias, expiry_days and hold"),
                ))
            }
        }
    }
    Ok(update)
}
