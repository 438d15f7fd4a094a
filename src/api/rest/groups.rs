//! REST for groups, beside the containers' routes: `PUT/GET/DELETE
//! /api/v1/groups/{name}`, `GET /api/v1/groups`, `POST
//! /api/v1/groups/{name}/snapshots` (the body of a container's snapshot),
//! and `PATCH /api/v1/groups/{name}/snapshots/{snapshot}` (no body) to
//! restore the group, as for a container.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use http::HeaderMap;
use serde::Deserialize;

use super::body;
use super::error::ErrorBody;
use super::handlers::{request, CreateSnapshotBody, Reply};
use super::RestState;
use crate::api::auth::Caller;
use crate::api::proto;
use crate::api::proto::container_service_server::ContainerService;
use crate::api::proto::snapshot_service_server::SnapshotService;
use crate::cli::views::{GroupRestoreView, GroupSnapshotView, GroupView, SnapshotView};

/// `PUT /api/v1/groups/{name}`: `{"members": ["shop-db", "shop-app"]}`, in start order.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutGroupBody {
    members: Vec<String>,
}

#[utoipa::path(put, path = "/api/v1/groups/{name}", params(("name" = String, Path)), request_body = PutGroupBody, responses((status = 200, body = GroupView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn put_group(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply<GroupView> {
    let body: Option<PutGroupBody> = body::parse(&headers, body)?;
    let members = body.map(|b| b.members).unwrap_or_default();
    let reply = state.containers.set_group(request(caller, proto::SetGroupRequest { name, members })).await?;
    Ok(Json(reply.into_inner().into()))
}

#[utoipa::path(get, path = "/api/v1/groups/{name}", params(("name" = String, Path)), responses((status = 200, body = GroupView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_group(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Reply<GroupView> {
    let reply = state.containers.get_group(request(caller, proto::GetGroupRequest { name })).await?;
    Ok(Json(reply.into_inner().into()))
}

#[utoipa::path(get, path = "/api/v1/groups", responses((status = 200, body = Vec<GroupView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_groups(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
) -> Reply<Vec<GroupView>> {
    let reply = state.containers.list_groups(request(caller, proto::ListGroupsRequest {})).await?;
    Ok(Json(reply.into_inner().groups.into_iter().map(GroupView::from).collect()))
}

#[utoipa::path(delete, path = "/api/v1/groups/{name}", params(("name" = String, Path)), responses((status = 200, body = GroupView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_group(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Reply<GroupView> {
    state.containers.delete_group(request(caller, proto::DeleteGroupRequest { name: name.clone() })).await?;
    Ok(Json(GroupView { name, members: Vec::new() }))
}

#[utoipa::path(post, path = "/api/v1/groups/{name}/snapshots", params(("name" = String, Path)), request_body(content = CreateSnapshotBody, content_type = "application/json"), responses((status = 200, body = GroupSnapshotView), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody), (status = 507, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_group_snapshot(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Path(group): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply<GroupSnapshotView> {
    let body: CreateSnapshotBody = body::parse(&headers, body)?.unwrap_or_default();
    let message = proto::CreateGroupSnapshotRequest {
        group: group.clone(),
        name: body.name.unwrap_or_default(),
        alias: body.alias.unwrap_or_default(),
        expiry_days: body.expiry.map(|expiry| expiry.days(chrono::Utc::now())).transpose()?.unwrap_or(0),
        comment: body.comment.unwrap_or_default(),
    };
    let reply = state.snapshots.create_group_snapshot(request(caller, message)).await?.into_inner();
    Ok(Json(GroupSnapshotView { group, snapshots: reply.snapshots.into_iter().map(SnapshotView::from).collect() }))
}

#[utoipa::path(patch, path = "/api/v1/groups/{name}/snapshots/{snapshot}", params(("name" = String, Path), ("snapshot" = String, Path, description = "name or alias of a group snapshot")), responses((status = 200, body = GroupRestoreView), (status = 409, body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn restore_group(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Path((group, snapshot)): Path<(String, String)>,
) -> Reply<GroupRestoreView> {
    let reply = state.snapshots.restore_group(request(caller, proto::RestoreGroupRequest { group, snapshot })).await?;
    Ok(Json(reply.into_inner().into()))
}
