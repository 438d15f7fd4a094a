//! REST for bearer tokens, through the gRPC TokenService (the same
//! authorization: root on the socket, the `admin` scope on TCP):
//! `POST /api/v1/tokens` `{"name": "ci", "scopes": ["snapshot:write"],
//! "containers": ["db-1"]}` answers the token with its secret (shown this
//! once), `GET /api/v1/tokens` lists them without secrets, `DELETE
//! /api/v1/tokens/{name}` revokes one.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use http::HeaderMap;
use serde::Deserialize;

use super::body;
use super::error::{ErrorBody, RestError};
use super::handlers::{request, Reply};
use super::RestState;
use crate::api::auth::Caller;
use crate::api::proto;
use crate::api::proto::token_service_server::TokenService;
use crate::cli::views::{RevokedTokenView, TokenCreatedView, TokenView};

/// `POST /api/v1/tokens`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenBody {
    name: String,
    scopes: Vec<String>,
    /// The containers the token may act on; none: every container.
    #[serde(default)]
    containers: Vec<String>,
}

#[utoipa::path(post, path = "/api/v1/tokens", request_body = CreateTokenBody, responses((status = 200, body = TokenCreatedView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_token(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply<TokenCreatedView> {
    let body: CreateTokenBody = body::parse(&headers, body)?.ok_or_else(|| RestError::bad_body("body: required"))?;
    let message = proto::CreateTokenRequest { name: body.name, scopes: body.scopes, containers: body.containers };
    let reply = state.tokens.create_token(request(caller, message)).await?.into_inner();
    Ok(Json(TokenCreatedView { token: reply.token.unwrap_or_default().into(), secret: reply.secret, endpoint: None }))
}

#[utoipa::path(get, path = "/api/v1/tokens", responses((status = 200, body = Vec<TokenView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_tokens(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
) -> Reply<Vec<TokenView>> {
    let reply = state.tokens.list_tokens(request(caller, proto::ListTokensRequest {})).await?.into_inner();
    Ok(Json(reply.tokens.into_iter().map(TokenView::from).collect()))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{name}", params(("name" = String, Path)), responses((status = 200, body = RevokedTokenView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_token(
    State(state): State<RestState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Reply<RevokedTokenView> {
    state.tokens.revoke_token(request(caller, proto::RevokeTokenRequest { name: name.clone() })).await?;
    Ok(Json(RevokedTokenView { name }))
}
