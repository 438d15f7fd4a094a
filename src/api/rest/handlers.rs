//! One handler per REST call: path, query and body become the gRPC request
//! message, the gRPC service method runs as for a gRPC client, its reply
//! becomes the CLI's JSON view.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::StreamExt;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::body::{self, Expiry};
use super::error::ErrorBody;
use super::{RestError, RestState};
use crate::api::auth::Caller;
use crate::api::proto;
use crate::api::proto::container_service_server::ContainerService;
use crate::api::proto::event_service_server::EventService;
use crate::api::proto::schedule_service_server::ScheduleService;
use crate::api::proto::snapshot_service_server::SnapshotService;
use crate::cli::views::{
    ContainerView, DeletedEntryView, EntryView, EventView, FilesRestoredView, LifecycleView, PathDiffView,
    PruneDecisionView, PruneView, RestoreView, RunView, SnapshotView, StatusView, UnregisterView,
};
use crate::engine::tokens::Scope;
use crate::engine::views::RetentionPolicy;

pub(super) type Reply<T> = Result<Json<T>, RestError>;

/// A gRPC request as the gate would have passed it on: the message, with
/// who calls in its extensions.
pub(super) fn request<T>(caller: Caller, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.extensions_mut().insert(caller);
    request
}

/// `GET /healthz`: what gRPC health says of the daemon as a whole (SERVING
/// once start-up recovery is done), without credentials, as gRPC health.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn healthz(State(state): State<RestState>) -> Response {
    if state.gate.ready.load(Ordering::Acquire) {
        (StatusCode::OK, Json(Health { status: "SERVING" })).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(Health { status: "NOT_SERVING" })).into_response()
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    status: &'static str,
}

/// `GET /metrics`: any caller let in on the socket; on TCP a token with
/// the `metrics:read` scope (or admin).
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn metrics(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, RestError> {
    crate::api::auth::authorize(&request(caller, ()), Scope::MetricsRead, None)?;
    open_metrics(State(state)).await
}

/// `GET /metrics` on the metrics listener (`metrics_listen`, loopback
/// only), which asks for no credentials.
pub async fn open_metrics(State(state): State<RestState>) -> Result<Response, RestError> {
    let text = tokio::task::spawn_blocking(move || state.metrics.render(&state.engine))
        .await
        .map_err(|join| tonic::Status::internal(format!("metrics task failed: {join}")))?
        .map_err(crate::api::status::from_engine)?;
    Ok(([(http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
        .into_response())
}

/// Paging of every list: `?page_size=&page_token=`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Paging {
    #[serde(default)]
    page_size: i32,
    #[serde(default)]
    page_token: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ContainerPage {
    containers: Vec<ContainerView>,
    /// Pass as `page_token` for the next page; null on the last.
    next_page_token: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SnapshotPage {
    snapshots: Vec<SnapshotView>,
    /// Pass as `page_token` for the next page; null on the last.
    next_page_token: Option<String>,
}

fn token(next: String) -> Option<String> {
    Some(next).filter(|token| !token.is_empty())
}

/// `POST /api/v1/containers`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    id: String,
    cgroup: String,
    subvolume: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// How a restore stops and starts it; absent: `{"kind": "none"}`.
    #[serde(default)]
    lifecycle: Option<LifecycleView>,
    /// Its hooks, as in `PATCH /api/v1/containers/{id}`.
    #[serde(default)]
    hooks: Option<BTreeMap<String, HookBody>>,
}

#[utoipa::path(post, path = "/api/v1/containers", request_body = RegisterBody, responses((status = 200, body = ContainerView), (status = 409, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn register_container(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply<ContainerView> {
    let body: RegisterBody = body::parse(&headers, body)?.ok_or_else(|| RestError::bad_body("body: required"))?;
    let message = proto::RegisterContainerRequest {
        hooks: hooks_to_proto(body.hooks)?,
        id: body.id,
        cgroup: body.cgroup,
        subvolume: body.subvolume,
        lifecycle: body.lifecycle.map(proto::Lifecycle::from),
        labels: body.labels.into_iter().collect(),
    };
    let reply = state.containers.register_container(request(caller, message)).await?.into_inner();
    Ok(Json(reply.container.unwrap_or_default().into()))
}

#[utoipa::path(get, path = "/api/v1/containers", params(("page_size" = Option<i32>, Query), ("page_token" = Option<String>, Query)), responses((status = 200, body = ContainerPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_containers(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Query(paging): Query<Paging>,
) -> Reply<ContainerPage> {
    let message = proto::ListContainersRequest { page_size: paging.page_size, page_token: paging.page_token };
    let reply = state.containers.list_containers(request(caller, message)).await?.into_inner();
    Ok(Json(ContainerPage {
        containers: reply.containers.into_iter().map(ContainerView::from).collect(),
        next_page_token: token(reply.next_page_token),
    }))
}

#[utoipa::path(get, path = "/api/v1/containers/{id}", params(("id" = String, Path)), responses((status = 200, body = ContainerView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_container(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Reply<ContainerView> {
    let reply = state.containers.get_container(request(caller, proto::GetContainerRequest { id })).await?.into_inner();
    Ok(Json(reply.container.unwrap_or_default().into()))
}

/// `PATCH /api/v1/containers/{id}`: what is given changes.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchContainerBody {
    /// Replaces all the hooks (`{}` removes them): by moment (`pre_freeze`,
    /// `hold`, `post_thaw`, `pre_restore`, `post_restore`).
    hooks: Option<BTreeMap<String, HookBody>>,
    /// The container's own retention, as rules: `last=3,daily=7,min=2`.
    retention: Option<String>,
    pre_restore_retention: Option<String>,
    /// Back to the daemon's default policies.
    #[serde(default)]
    default_retention: bool,
}

/// One hook: argv run inside the container.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HookBody {
    command: Vec<String>,
    #[serde(default)]
    user: String,
    /// 0 or absent: 30 s.
    #[serde(default)]
    timeout_seconds: u32,
    /// `abort` (default) or `continue`.
    #[serde(default)]
    on_failure: Option<String>,
}

impl PatchContainerBody {
    fn into_request(self, id: String) -> Result<proto::UpdateContainerRequest, RestError> {
        let policy = |field: &'static str, text: Option<String>| {
            text.map(|text| {
                RetentionPolicy::parse(&text)
                    .map(crate::api::convert::policy_to_proto)
                    .map_err(|reason| RestError::bad_body(format!("{field}: {reason}")))
            })
            .transpose()
        };
        Ok(proto::UpdateContainerRequest {
            id,
            hooks: hooks_to_proto(self.hooks)?,
            retention: policy("retention", self.retention)?,
            pre_restore_retention: policy("pre_restore_retention", self.pre_restore_retention)?,
            default_retention: self.default_retention,
        })
    }
}

/// The hooks of a register or update body, by moment (`pre_freeze`, `hold`,
/// `post_thaw`, `pre_restore`, `post_restore`).
fn hooks_to_proto(hooks: Option<BTreeMap<String, HookBody>>) -> Result<Option<proto::Hooks>, RestError> {
    let Some(hooks) = hooks else { return Ok(None) };
    let mut message = proto::Hooks::default();
    for (point, hook) in hooks {
        let slot = match point.as_str() {
            "pre_freeze" => &mut message.pre_freeze,
            "post_thaw" => &mut message.post_thaw,
            "pre_restore" => &mut message.pre_restore,
            "post_restore" => &mut message.post_restore,
            "hold" => &mut message.hold,
            other => return Err(RestError::bad_body(format!("hooks: no moment {other:?}"))),
        };
        let on_failure = match hook.on_failure.as_deref() {
            None | Some("abort") => proto::HookFailure::Abort,
            Some("continue") => proto::HookFailure::Continue,
            Some(other) => {
                return Err(RestError::bad_body(format!(
                    "hooks.{point}.on_failure: {other:?} is not abort or continue"
                )))
            }
        };
        *slot = Some(proto::Hook {
            command: hook.command,
            user: hook.user,
            timeout_seconds: hook.timeout_seconds,
            on_failure: on_failure as i32,
        });
    }
    Ok(Some(message))
}

#[utoipa::path(patch, path = "/api/v1/containers/{id}", params(("id" = String, Path)), request_body = PatchContainerBody, responses((status = 200, body = ContainerView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn patch_container(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply<ContainerView> {
    let body: PatchContainerBody = body::parse(&headers, body)?.ok_or_else(|| RestError::bad_body("body: required"))?;
    let message = body.into_request(id)?;
    let reply = state.containers.update_container(request(caller, message)).await?.into_inner();
    Ok(Json(reply.container.unwrap_or_default().into()))
}

/// `POST /api/v1/containers/{id}/prune`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PruneBody {
    /// Only say what would go and which rule keeps the rest.
    #[serde(default)]
    dry_run: bool,
}

#[utoipa::path(post, path = "/api/v1/containers/{id}/prune", params(("id" = String, Path)), request_body(content = Option<PruneBody>, description = "none: prune now"), responses((status = 200, body = PruneView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn prune_snapshots(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Path(container): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply<PruneView> {
    let body: PruneBody = body::parse(&headers, body)?.unwrap_or_default();
    let message = proto::PruneSnapshotsRequest { container, dry_run: body.dry_run };
    let reply = state.snapshots.prune_snapshots(request(caller, message)).await?.into_inner();
    let decisions = reply.decisions.into_iter().map(PruneDecisionView::from).collect();
    Ok(Json(PruneView { dry_run: body.dry_run, decisions }))
}

/// `DELETE /api/v1/containers/{id}?delete_snapshots=&keep_snapshots=`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnregisterQuery {
    #[serde(default)]
    delete_snapshots: bool,
    #[serde(default)]
    keep_snapshots: bool,
}

#[utoipa::path(delete, path = "/api/v1/containers/{id}", params(("id" = String, Path), ("delete_snapshots" = Option<bool>, Query), ("keep_snapshots" = Option<bool>, Query)), responses((status = 200, body = UnregisterView), (status = 409, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn unregister_container(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(query): Query<UnregisterQuery>,
) -> Reply<UnregisterView> {
    let message = proto::UnregisterContainerRequest {
        id: id.clone(),
        delete_snapshots: query.delete_snapshots,
        keep_snapshots: query.keep_snapshots,
    };
    let reply = state.containers.unregister_container(request(caller, message)).await?.into_inner();
    Ok(Json(UnregisterView { id, snapshots_deleted: reply.snapshots_deleted }))
}

/// `POST /api/v1/containers/{id}/snapshots`: the page's
/// `{"alias": "rollback-point", "expiry": 7}`; every field may be left out.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSnapshotBody {
    pub(super) name: Option<String>,
    pub(super) alias: Option<String>,
    pub(super) expiry: Option<Expiry>,
    pub(super) comment: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/containers/{id}/snapshots", params(("id" = String, Path)), request_body(content = CreateSnapshotBody, content_type = "application/json", description = "JSON; also accepted under application/x-www-form-urlencoded (curl -d)"), responses((status = 200, body = SnapshotView), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 429, body = ErrorBody), (status = 507, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_snapshot(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Path(container): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply<SnapshotView> {
    let body: CreateSnapshotBody = body::parse(&headers, body)?.unwrap_or_default();
    let message = proto::CreateSnapshotRequest {
        container,
        name: body.name.unwrap_or_default(),
        alias: body.alias.unwrap_or_default(),
        expiry_days: body.expiry.map(|expiry| expiry.days(chrono::Utc::now())).transpose()?.unwrap_or(0),
        comment: body.comment.unwrap_or_default(),
    };
    let reply = state.snapshots.create_snapshot(request(caller, message)).await?.into_inner();
    Ok(Json(reply.snapshot.unwrap_or_default().into()))
}

#[utoipa::path(get, path = "/api/v1/containers/{id}/snapshots", params(("id" = String, Path), ("page_size" = Option<i32>, Query), ("page_token" = Option<String>, Query)), responses((status = 200, body = SnapshotPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_snapshots(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Path(container): Path<String>,
    Query(paging): Query<Paging>,
) -> Reply<SnapshotPage> {
    let message = proto::ListSnapshotsRequest { container, page_size: paging.page_size, page_token: paging.page_token };
    let reply = state.snapshots.list_snapshots(request(caller, message)).await?.into_inner();
    Ok(Json(SnapshotPage {
        snapshots: reply.snapshots.into_iter().map(SnapshotView::from).collect(),
        next_page_token: token(reply.next_page_token),
    }))
}

#[utoipa::path(get, path = "/api/v1/containers/{id}/snapshots/{snapshot}", params(("id" = String, Path), ("snapshot" = String, Path, description = "name or alias")), responses((status = 200, body = SnapshotView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_snapshot(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Path((container, snapshot)): Path<(String, String)>,
) -> Reply<SnapshotView> {
    let message = proto::GetSnapshotRequest { container, snapshot };
    let reply = state.snapshots.get_snapshot(request(caller, message)).await?.into_inner();
    Ok(Json(reply.snapshot.unwrap_or_default().into()))
}

/// `GET /api/v1/status`: as `rollpoint --json status`.
#[utoipa::path(get, path = "/api/v1/status", responses((status = 200, body = StatusView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn status(State(state): State<RestState>, Extension(caller): Extension<Caller>) -> Reply<StatusView> {
    use crate::api::proto::daemon_service_server::DaemonService;
    let reply = state.daemon.get_status(request(caller, proto::GetStatusRequest {})).await?.into_inner();
    Ok(Json(reply.into()))
}

/// `{"snapshot": "rollback-point", "paths": ["etc/app.conf"], "to": "/root/x"}`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreFilesBody {
    snapshot: String,
    paths: Vec<String>,
    /// An absolute folder of the host to write them under instead (root only).
    #[serde(default)]
    to: String,
}

/// `POST /api/v1/containers/{id}/restore-files`.
#[utoipa::path(post, path = "/api/v1/containers/{id}/restore-files", params(("id" = String, Path)), request_body(content = RestoreFilesBody, content_type = "application/json"), responses((status = 200, body = FilesRestoredView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn restore_files(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Path(container): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply<FilesRestoredView> {
    let body: RestoreFilesBody = body::parse(&headers, body)?.ok_or_else(|| RestError::bad_body("body: required"))?;
    let message = proto::RestoreFilesRequest { container, snapshot: body.snapshot, paths: body.paths, to: body.to };
    Ok(Json(state.snapshots.restore_files(request(caller, message)).await?.into_inner().into()))
}

/// `?from=&to=` of a diff.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiffQuery {
    from: String,
    /// Absent: the live container.
    #[serde(default)]
    to: String,
}

/// What changed between two snapshots, path by path.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DiffPage {
    paths: Vec<PathDiffView>,
}

/// `GET /api/v1/containers/{id}/diff?from=A&to=B` (names or aliases).
#[utoipa::path(get, path = "/api/v1/containers/{id}/diff", params(("id" = String, Path), ("from" = String, Query, description = "the older snapshot, name or alias"), ("to" = Option<String>, Query, description = "the newer snapshot, name or alias; absent: the live container")), responses((status = 200, body = DiffPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn diff_snapshots(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Path(container): Path<String>,
    Query(query): Query<DiffQuery>,
) -> Reply<DiffPage> {
    let message = proto::DiffSnapshotsRequest { container, from: query.from, to: query.to };
    let reply = state.snapshots.diff_snapshots(request(caller, message)).await?.into_inner();
    Ok(Json(DiffPage { paths: reply.paths.into_iter().map(PathDiffView::from).collect() }))
}

#[utoipa::path(delete, path = "/api/v1/containers/{id}/snapshots/{snapshot}", params(("id" = String, Path), ("snapshot" = String, Path, description = "name or alias")), responses((status = 200, body = SnapshotView), (status = 409, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_snapshot(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Path((container, snapshot)): Path<(String, String)>,
) -> Reply<SnapshotView> {
    let message = proto::DeleteSnapshotRequest { container, snapshot };
    let reply = state.snapshots.delete_snapshot(request(caller, message)).await?.into_inner();
    Ok(Json(reply.snapshot.unwrap_or_default().into()))
}

/// `PATCH /api/v1/containers/{id}/snapshots/{name-or-alias}`: no body (or
/// `{"restore": true}`) restores, as the page's runbook line; `alias` and/or
/// `expiry` update those instead. Both at once is refused.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchSnapshotBody {
    #[serde(default)]
    restore: bool,
    /// Restore retried with the same id is answered as the first time.
    request_id: Option<String>,
    alias: Option<String>,
    expiry: Option<Expiry>,
    /// Holds the snapshot with this reason; `""` releases it.
    hold: Option<String>,
}

/// What a PATCH answers: the restore's result, or the updated snapshot.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Patched {
    Restored(RestoreView),
    Updated(SnapshotView),
}

#[utoipa::path(patch, path = "/api/v1/containers/{id}/snapshots/{snapshot}", params(("id" = String, Path), ("snapshot" = String, Path, description = "name or alias")), request_body(content = Option<PatchSnapshotBody>, description = "none: restore; alias/expiry/hold: update"), responses((status = 200, body = Patched), (status = 409, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn patch_snapshot(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Path((container, snapshot)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply<Patched> {
    let body: PatchSnapshotBody = body::parse(&headers, body)?.unwrap_or_default();
    let updates = body.alias.is_some() || body.expiry.is_some() || body.hold.is_some();
    if updates && (body.restore || body.request_id.is_some()) {
        return Err(RestError::new(
            StatusCode::BAD_REQUEST,
            tonic::Code::InvalidArgument,
            "restore: a PATCH either restores (no body, or restore/request_id) or updates alias/expiry/hold, not both",
            Some("restore"),
        ));
    }
    if !updates {
        let message = proto::RestoreSnapshotRequest {
            container: container.clone(),
            snapshot,
            request_id: body.request_id.unwrap_or_default(),
            remote: String::new(),
        };
        let reply = state.snapshots.restore_snapshot(request(caller, message)).await?.into_inner();
        return Ok(Json(Patched::Restored(RestoreView::new(&container, reply))));
    }
    let mut update_mask = Vec::new();
    if body.alias.is_some() {
        update_mask.push("alias".to_owned());
    }
    let expiry_days = match body.expiry {
        Some(expiry) => {
            update_mask.push("expiry_days".to_owned());
            expiry.days(chrono::Utc::now())?
        }
        None => 0,
    };
    if body.hold.is_some() {
        update_mask.push("hold".to_owned());
    }
    let message = proto::UpdateSnapshotRequest {
        container,
        snapshot,
        alias: body.alias.unwrap_or_default(),
        expiry_days,
        update_mask,
        hold_reason: body.hold.unwrap_or_default(),
    };
    let reply = state.snapshots.update_snapshot(request(caller, message)).await?.into_inner();
    Ok(Json(Patched::Updated(reply.snapshot.unwrap_or_default().into())))
}

/// `GET /api/v1/events?after=&container=&limit=`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Events after this sequence number (the `next` of the last page).
    #[serde(default)]
    after: u64,
    #[serde(default)]
    container: String,
    /// Only the events of this schedule entry (`users/{user}/entries/{id}`).
    #[serde(default)]
    entry: String,
    /// At most this many (default 100, at most 1000).
    #[serde(default)]
    limit: i32,
}

/// A page of the timeline, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventPage {
    events: Vec<EventView>,
    /// Pass as `after` for the next page; null when this page is the last.
    next: Option<u64>,
}

/// The timeline as JSON, or live as Server-Sent Events when the client
/// accepts `text/event-stream` (each event's `id` is its sequence, so a
/// client that reconnects passes the last as `after`).
#[utoipa::path(get, path = "/api/v1/events", params(("after" = Option<u64>, Query), ("container" = Option<String>, Query), ("entry" = Option<String>, Query), ("limit" = Option<i32>, Query)), responses((status = 200, body = EventPage, description = "JSON; with Accept: text/event-stream, Server-Sent Events of EventView"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn events(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, RestError> {
    let wants_stream = headers
        .get(http::header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"));
    if wants_stream {
        let message =
            proto::WatchEventsRequest { after_sequence: query.after, container: query.container, entry: query.entry };
        let stream = state.events.watch_events(request(caller, message)).await?.into_inner();
        let events = stream.map(|event| {
            Ok::<_, Infallible>(match event {
                Ok(event) => {
                    let id = event.sequence.to_string();
                    let view = EventView::from(event);
                    SseEvent::default().id(id).event(view.kind.clone()).json_data(&view).unwrap_or_default()
                }
                Err(status) => SseEvent::default().event("error").data(status.message()),
            })
        });
        return Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response());
    }
    let message = proto::ListEventsRequest {
        container: query.container,
        entry: query.entry,
        page_size: query.limit,
        page_token: if query.after == 0 { String::new() } else { query.after.to_string() },
        oldest_first: true,
        ..Default::default()
    };
    let reply = state.events.list_events(request(caller, message)).await?.into_inner();
    Ok(Json(EventPage {
        next: reply.next_page_token.parse().ok(),
        events: reply.events.into_iter().map(EventView::from).collect(),
    })
    .into_response())
}

/// The snapshot action of an entry: `{"container", "alias", "expiry", "export_to"}`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotActionBody {
    /// Required, except under `/api/v1/containers/{id}/entries` (that one).
    #[serde(default)]
    container: String,
    #[serde(default)]
    alias: String,
    expiry: Option<Expiry>,
    #[serde(default)]
    export_to: String,
    /// Instead of `container`: a snapshot of every member of this group at one instant.
    #[serde(default)]
    group: String,
}

/// A schedule entry as the page writes it: `{"schedule": "55 2 * * *",
/// "command": "...", "comment": "..."}`, or with `"snapshot": {...}` in place
/// of `command`. On PATCH, only the fields given change.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryBody {
    id: Option<String>,
    schedule: Option<String>,
    time_zone: Option<String>,
    command: Option<String>,
    timeout_seconds: Option<u32>,
    snapshot: Option<SnapshotActionBody>,
    comment: Option<String>,
    enabled: Option<bool>,
    random_delay_seconds: Option<u32>,
    /// The container a command entry is bound to (its runs get `SNAP_URL`);
    /// under `/api/v1/containers/{id}/entries`, that one.
    container: Option<String>,
    /// Variables the command gets, like a crontab's `NAME=value` lines.
    environment: Option<BTreeMap<String, String>>,
}

impl EntryBody {
    /// Binds the entry to `container` (a path's): a command entry's runs get
    /// its `SNAP_URL`, a snapshot entry snapshots it.
    fn bind(&mut self, container: &str) -> Result<(), RestError> {
        if self.container.as_deref().is_some_and(|given| given != container) {
            return Err(RestError::new(
                StatusCode::BAD_REQUEST,
                tonic::Code::InvalidArgument,
                format!("container: the path names {container}; leave the field out or give the same"),
                Some("container"),
            ));
        }
        if let Some(snapshot) = &mut self.snapshot {
            if snapshot.container.is_empty() {
                snapshot.container = container.to_owned();
            }
        }
        self.container = Some(container.to_owned());
        Ok(())
    }

    fn action(&mut self) -> Result<Option<proto::entry::Action>, RestError> {
        match (self.command.take(), self.snapshot.take()) {
            (Some(_), Some(_)) => Err(RestError::new(
                StatusCode::BAD_REQUEST,
                tonic::Code::InvalidArgument,
                "command: an entry runs a command or takes a snapshot, not both",
                Some("command"),
            )),
            (Some(command), None) => Ok(Some(proto::entry::Action::Command(proto::CommandAction {
                command,
                timeout_seconds: self.timeout_seconds.unwrap_or(0),
            }))),
            (None, Some(snapshot)) => Ok(Some(proto::entry::Action::Snapshot(proto::SnapshotAction {
                container: snapshot.container,
                alias: snapshot.alias,
                expiry_days: snapshot.expiry.map(|expiry| expiry.days(chrono::Utc::now())).transpose()?.unwrap_or(0),
                export_to: snapshot.export_to,
                group: snapshot.group,
            }))),
            (None, None) => Ok(None),
        }
    }

    /// The entry message and the names of the fields that were given.
    fn into_entry(mut self) -> Result<(proto::Entry, Vec<String>), RestError> {
        let action = self.action()?;
        let mut given = Vec::new();
        let mut mark = |field: &str, present: bool| {
            if present {
                given.push(field.to_owned());
            }
        };
        mark("schedule", self.schedule.is_some());
        mark("time_zone", self.time_zone.is_some());
        mark("action", action.is_some());
        mark("comment", self.comment.is_some());
        mark("enabled", self.enabled.is_some());
        mark("random_delay_seconds", self.random_delay_seconds.is_some());
        mark("container", self.container.is_some());
        mark("environment", self.environment.is_some());
        let entry = proto::Entry {
            id: self.id.unwrap_or_default(),
            schedule: self.schedule.unwrap_or_default(),
            time_zone: self.time_zone.unwrap_or_default(),
            action,
            comment: self.comment.unwrap_or_default(),
            enabled: self.enabled,
            random_delay_seconds: self.random_delay_seconds.unwrap_or(0),
            container: self.container.unwrap_or_default(),
            environment: self.environment.unwrap_or_default(),
            ..Default::default()
        };
        Ok((entry, given))
    }
}

fn entry_name(user: &str, entry: &str) -> String {
    format!("users/{user}/entries/{entry}")
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EntryPage {
    entries: Vec<EntryView>,
    /// Pass as `page_token` for the next page; null on the last.
    next_page_token: Option<String>,
}

/// `POST /api/v1/users/{user}/entries`.
#[utoipa::path(post, path = "/api/v1/users/{user}/entries", params(("user" = String, Path)), request_body = EntryBody, responses((status = 200, body = EntryView), (status = 409, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_entry(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Path(user): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply<EntryView> {
    let body: EntryBody = body::parse(&headers, body)?.ok_or_else(|| RestError::bad_body("body: required"))?;
    let (entry, _) = body.into_entry()?;
    let message = proto::CreateEntryRequest { user, entry: Some(entry) };
    Ok(Json(state.schedules.create_entry(request(caller, message)).await?.into_inner().into()))
}

#[utoipa::path(get, path = "/api/v1/users/{user}/entries", params(("user" = String, Path), ("page_size" = Option<i32>, Query), ("page_token" = Option<String>, Query)), responses((status = 200, body = EntryPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_entries(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Path(user): Path<String>,
    Query(paging): Query<Paging>,
) -> Reply<EntryPage> {
    let message = proto::ListEntriesRequest {
        user,
        page_size: paging.page_size,
        page_token: paging.page_token,
        container: String::new(),
    };
    entry_page(&state, caller, message).await
}

async fn entry_page(state: &RestState, caller: Caller, message: proto::ListEntriesRequest) -> Reply<EntryPage> {
    let reply = state.schedules.list_entries(request(caller, message)).await?.into_inner();
    Ok(Json(EntryPage {
        entries: reply.entries.into_iter().map(EntryView::from).collect(),
        next_page_token: token(reply.next_page_token),
    }))
}

/// `?user=` of the entries of a container: whose entry it is.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryOwner {
    user: Option<String>,
}

/// Whose a new entry under a container is by default: the caller's own user
/// on the socket, root for a token (which may create snapshot entries only).
fn caller_user(caller: &Caller) -> Result<String, RestError> {
    match caller {
        Caller::Local { uid } => nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(*uid))
            .ok()
            .flatten()
            .map(|user| user.name)
            .ok_or_else(|| {
                RestError::new(
                    StatusCode::BAD_REQUEST,
                    tonic::Code::InvalidArgument,
                    format!("user: uid {uid} has no user name; give ?user="),
                    Some("user"),
                )
            }),
        Caller::Token(_) | Caller::Run(_) => Ok("root".to_owned()),
    }
}

/// `POST /api/v1/containers/{id}/entries`: the page's entry body as is,
/// bound to that container (`$SNAP_URL` in its command names it).
#[utoipa::path(post, path = "/api/v1/containers/{id}/entries", params(("id" = String, Path), ("user" = Option<String>, Query, description = "whose entry; default: the caller's user on the socket, root for a token")), request_body(content = EntryBody, content_type = "application/json"), responses((status = 200, body = EntryView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_container_entry(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Path(container): Path<String>,
    Query(owner): Query<EntryOwner>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply<EntryView> {
    let mut body: EntryBody = body::parse(&headers, body)?.ok_or_else(|| RestError::bad_body("body: required"))?;
    body.bind(&container)?;
    let user = owner.user.map_or_else(|| caller_user(&caller), Ok)?;
    let (entry, _) = body.into_entry()?;
    let message = proto::CreateEntryRequest { user, entry: Some(entry) };
    Ok(Json(state.schedules.create_entry(request(caller, message)).await?.into_inner().into()))
}

/// `GET /api/v1/containers/{id}/entries`: every user's entries about it.
#[utoipa::path(get, path = "/api/v1/containers/{id}/entries", params(("id" = String, Path), ("page_size" = Option<i32>, Query), ("page_token" = Option<String>, Query)), responses((status = 200, body = EntryPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_container_entries(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Path(container): Path<String>,
    Query(paging): Query<Paging>,
) -> Reply<EntryPage> {
    let message = proto::ListEntriesRequest {
        user: String::new(),
        page_size: paging.page_size,
        page_token: paging.page_token,
        container,
    };
    entry_page(&state, caller, message).await
}

#[utoipa::path(get, path = "/api/v1/users/{user}/entries/{entry}", params(("user" = String, Path), ("entry" = String, Path)), responses((status = 200, body = EntryView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_entry(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Path((user, entry)): Path<(String, String)>,
) -> Reply<EntryView> {
    let message = proto::GetEntryRequest { name: entry_name(&user, &entry) };
    Ok(Json(state.schedules.get_entry(request(caller, message)).await?.into_inner().into()))
}

#[utoipa::path(patch, path = "/api/v1/users/{user}/entries/{entry}", params(("user" = String, Path), ("entry" = String, Path)), request_body = EntryBody, responses((status = 200, body = EntryView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_entry(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Path((user, entry)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply<EntryView> {
    let body: EntryBody = body::parse(&headers, body)?.ok_or_else(|| RestError::bad_body("body: required"))?;
    let (update, update_mask) = body.into_entry()?;
    let message = proto::UpdateEntryRequest { name: entry_name(&user, &entry), entry: Some(update), update_mask };
    Ok(Json(state.schedules.update_entry(request(caller, message)).await?.into_inner().into()))
}

#[utoipa::path(delete, path = "/api/v1/users/{user}/entries/{entry}", params(("user" = String, Path), ("entry" = String, Path)), responses((status = 200, body = DeletedEntryView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_entry(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Path((user, entry)): Path<(String, String)>,
) -> Reply<DeletedEntryView> {
    let name = entry_name(&user, &entry);
    state.schedules.delete_entry(request(caller, proto::DeleteEntryRequest { name: name.clone() })).await?;
    Ok(Json(DeletedEntryView { name }))
}

/// `POST /api/v1/users/{user}/entries/{entry}:run`: fires the entry now.
#[utoipa::path(post, path = "/api/v1/users/{user}/entries/{entry}:run", params(("user" = String, Path), ("entry" = String, Path)), responses((status = 200, body = RunView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn run_entry(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Path((user, entry)): Path<(String, String)>,
) -> Reply<RunView> {
    let Some(entry) = entry.strip_suffix(":run") else {
        return Err(RestError::from(tonic::Status::not_found(format!(
            "POST {}: to fire an entry, POST .../entries/{entry}:run",
            entry_name(&user, &entry)
        ))));
    };
    let name = entry_name(&user, entry);
    let reply = state.schedules.run_entry(request(caller, proto::RunEntryRequest { name: name.clone() })).await?;
    Ok(Json(RunView::new(&name, reply.into_inner())))
}
