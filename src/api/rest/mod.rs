//! REST/JSON beside gRPC, on the same listeners (the page's curl lines:
//! `POST /api/v1/containers/{id}/snapshots`, `PATCH .../snapshots/{name}` to
//! restore, `GET /api/v1/events`). Thin over the gRPC services: each handler
//! turns its path, query and body into the gRPC request message and calls
//! the same service method, so authorization, validation and engine calls
//! are written once. Who calls is decided by the same [`Gate`] as for gRPC.
//! Replies are the CLI's `--json` views (`cli::views`).

mod body;
mod error;
mod groups;
mod handlers;
pub mod openapi;
mod tokens;

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tonic::transport::server::UdsConnectInfo;

pub use error::RestError;

use super::auth::Gate;
use super::containers::Containers;
use super::events::Events;
use super::server::MAX_MESSAGE_BYTES;
use super::snapshots::Snapshots;

/// Longest a REST call (reading its body included) may take by default
/// (`rest_request_timeout_ms`), the live event stream excepted: a client
/// that never finishes its request is answered 408 and its slot freed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// What the handlers call: the gRPC services themselves.
#[derive(Clone)]
pub struct RestState {
    pub(super) gate: Gate,
    pub(super) containers: std::sync::Arc<Containers>,
    pub(super) snapshots: std::sync::Arc<Snapshots>,
    pub(super) events: std::sync::Arc<Events>,
    pub(super) schedules: std::sync::Arc<super::schedules::Schedules>,
    pub(super) engine: std::sync::Arc<crate::engine::Engine>,
    pub(super) metrics: std::sync::Arc<super::metrics::Metrics>,
    pub(super) daemon: std::sync::Arc<super::daemon_service::Daemon>,
    pub(super) tokens: std::sync::Arc<super::token_service::Tokens>,
    /// How long a request may take ([`REQUEST_TIMEOUT`] by default).
    pub(super) request_timeout: Duration,
}

/// The REST routes, to be merged with tonic's gRPC routes.
pub fn router(state: RestState) -> axum::Router {
    let calls = axum::Router::new()
        .route("/api/v1/containers", get(handlers::list_containers).post(handlers::register_container))
        .route(
            "/api/v1/containers/{id}",
            get(handlers::get_container).patch(handlers::patch_container).delete(handlers::unregister_container),
        )
        .route("/api/v1/containers/{id}/prune", axum::routing::post(handlers::prune_snapshots))
        .route("/api/v1/containers/{id}/snapshots", get(handlers::list_snapshots).post(handlers::create_snapshot))
        .route(
            "/api/v1/containers/{id}/snapshots/{snapshot}",
            get(handlers::get_snapshot).patch(handlers::patch_snapshot).delete(handlers::delete_snapshot),
        )
        .route(
            "/api/v1/containers/{id}/entries",
            get(handlers::list_container_entries).post(handlers::create_container_entry),
        )
        .route("/api/v1/containers/{id}/diff", get(handlers::diff_snapshots))
        .route("/api/v1/containers/{id}/restore-files", axum::routing::post(handlers::restore_files))
        .route("/api/v1/users/{user}/entries", get(handlers::list_entries).post(handlers::create_entry))
        .route(
            "/api/v1/users/{user}/entries/{entry}",
            get(handlers::get_entry)
                .patch(handlers::update_entry)
                .delete(handlers::delete_entry)
                .post(handlers::run_entry),
        )
        .route("/api/v1/groups", get(groups::list_groups))
        .route("/api/v1/groups/{name}", get(groups::get_group).put(groups::put_group).delete(groups::delete_group))
        .route("/api/v1/groups/{name}/snapshots", axum::routing::post(groups::create_group_snapshot))
        .route("/api/v1/groups/{name}/snapshots/{snapshot}", axum::routing::patch(groups::restore_group))
        .route("/api/v1/tokens", get(tokens::list_tokens).post(tokens::create_token))
        .route("/api/v1/tokens/{name}", axum::routing::delete(tokens::revoke_token))
        .route("/api/v1/events", get(handlers::events))
        .route("/api/v1/status", get(handlers::status))
        .route("/metrics", get(handlers::metrics))
        .layer(axum::middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES));
    axum::Router::new()
        .route("/healthz", get(handlers::healthz))
        .route("/api/v1/openapi.json", get(openapi_json))
        .merge(calls)
        .layer(axum::middleware::from_fn_with_state(state.request_timeout, time_limit))
        .with_state(state)
}

/// The routes of the metrics listener (`metrics_listen`): `/metrics` and
/// `/healthz`, no credentials; anything else is a 404.
pub fn metrics_router(state: RestState) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(handlers::open_metrics))
        .route("/healthz", get(handlers::healthz))
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(state.request_timeout, time_limit))
        .with_state(state)
}

/// The routes of the run listener: what a command run's `$SNAP_URL` may
/// do (take and read snapshots of its container), for its credential only.
/// Anything else is 403, whatever the path.
pub fn run_router(state: RestState) -> axum::Router {
    axum::Router::new()
        .route("/api/v1/containers/{id}/snapshots", get(handlers::list_snapshots).post(handlers::create_snapshot))
        .route("/api/v1/containers/{id}/snapshots/{snapshot}", get(handlers::get_snapshot))
        .fallback(beyond_a_run)
        .method_not_allowed_fallback(beyond_a_run)
        .layer(axum::middleware::from_fn_with_state(state.clone(), authenticate_run))
        .layer(DefaultBodyLimit::max(MAX_MESSAGE_BYTES))
        .layer(axum::middleware::from_fn_with_state(state.request_timeout, time_limit))
        .with_state(state)
}

async fn beyond_a_run(request: Request) -> Response {
    RestError::from(tonic::Status::permission_denied(format!(
        "{} {}: a run's credential may only take (POST) and read (GET) snapshots of its container",
        request.method(),
        request.uri().path()
    )))
    .into_response()
}

/// The run listener's gate: a loopback peer with the credential of a run
/// in progress, or 401/403.
async fn authenticate_run(
    State(state): State<RestState>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let caller = state
        .gate
        .authenticate_run(peer, request.headers().get(http::header::AUTHORIZATION).map(|value| value.as_bytes()));
    match caller {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(status) => RestError::from(status).into_response(),
    }
}

/// `GET /api/v1/openapi.json`: no credentials, it says nothing of the host.
async fn openapi_json() -> Response {
    ([(http::header::CONTENT_TYPE, "application/json")], openapi::document()).into_response()
}

/// Answers requests that no route takes: gRPC's UNIMPLEMENTED to a gRPC
/// client (by its content type), a JSON 404 to anyone else.
pub async fn fallback(request: Request) -> Response {
    let grpc = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"));
    if grpc {
        let (parts, ()) = tonic::Status::unimplemented("").into_http::<()>().into_parts();
        return Response::from_parts(parts, axum::body::Body::empty());
    }
    RestError::from(tonic::Status::not_found(format!("no such path: {} {}", request.method(), request.uri().path())))
        .into_response()
}

/// Puts the [`Caller`](super::auth::Caller) the gate found into the request,
/// or answers with the gate's refusal.
async fn authenticate(State(state): State<RestState>, mut request: Request, next: Next) -> Response {
    let caller = state.gate.authenticate(
        request.extensions().get::<UdsConnectInfo>(),
        request.headers().get(http::header::AUTHORIZATION).map(|value| value.as_bytes()),
    );
    match caller {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(status) => RestError::from(status).into_response(),
    }
}

/// Ends a request that has not been answered within `limit`; the live
/// event stream is answered at once and lives on.
async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => RestError::timeout(limit).into_response(),
    }
}
