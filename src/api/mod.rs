//! API layer: gRPC services (tonic) and REST beside them (`rest`), thin: check who is calling, translate
//! messages to engine calls and engine errors to status codes.

pub mod auth;
pub mod client;
mod containers;
pub mod convert;
mod daemon_service;
mod deadline;
mod events;
pub mod groups;
pub mod metrics;
pub mod proto;
mod remotes;
pub mod rest;
pub mod retry;
mod schedules;
pub mod server;
mod snapshots;
pub mod status;
mod token_service;

use std::sync::Arc;

use deadline::admission_deadline;

use crate::engine::{CallKind, Engine, EngineError, EngineResult};

/// Makes ring the process's TLS crypto provider. Two are compiled in (ring
/// for tonic, aws-lc-rs for the S3 client), and rustls refuses to guess
/// between them; a provider installed already is kept.
pub fn use_ring_for_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Runs a blocking engine call that only reads on the blocking thread pool,
/// once admitted, and maps its error.
async fn blocking<T, F>(engine: &Arc<Engine>, call: F) -> Result<T, tonic::Status>
where
    T: Send + 'static,
    F: FnOnce(&Engine) -> EngineResult<T> + Send + 'static,
{
    admitted(engine, CallKind::Read, None, call).await
}

/// Runs a blocking engine call that changes something, once admitted within
/// the caller's `deadline` (`admission_deadline` of its metadata); calls for one
/// `container` run in the order they arrived.
async fn changing<T, F>(
    engine: &Arc<Engine>,
    deadline: Option<std::time::Duration>,
    container: Option<&str>,
    call: F,
) -> Result<T, tonic::Status>
where
    T: Send + 'static,
    F: FnOnce(&Engine) -> EngineResult<T> + Send + 'static,
{
    admitted(engine, CallKind::Change { container }, deadline, call).await
}

async fn admitted<T, F>(
    engine: &Arc<Engine>,
    kind: CallKind<'_>,
    deadline: Option<std::time::Duration>,
    call: F,
) -> Result<T, tonic::Status>
where
    T: Send + 'static,
    F: FnOnce(&Engine) -> EngineResult<T> + Send + 'static,
{
    // Dropped with this future if the caller goes away while it waits: the
    // waiter leaves the queue and `call` never runs.
    let admission = engine.admit(kind, deadline).await.map_err(status::from_engine)?;
    on_blocking_thread(engine, Some(admission), call).await
}

/// Runs a blocking engine call that holds no operation slot: the run of a
/// command entry, whose command's own calls (`curl $SNAP_URL`) take theirs
/// and must not wait for the slot their run would hold.
async fn unadmitted<T, F>(engine: &Arc<Engine>, call: F) -> Result<T, tonic::Status>
where
    T: Send + 'static,
    F: FnOnce(&Engine) -> EngineResult<T> + Send + 'static,
{
    on_blocking_thread(engine, None, call).await
}

async fn on_blocking_thread<T, F>(
    engine: &Arc<Engine>,
    admission: Option<crate::engine::Admitted>,
    call: F,
) -> Result<T, tonic::Status>
where
    T: Send + 'static,
    F: FnOnce(&Engine) -> EngineResult<T> + Send + 'static,
{
    let engine = engine.clone();
    // Held by the blocking thread: a call that has started holds its slot
    // and its container's turn until it ends, even if the caller left.
    match tokio::task::spawn_blocking(move || {
        let _admission = admission;
        call(&engine)
    })
    .await
    {
        Ok(result) => result.map_err(status::from_engine),
        Err(join) => Err(status::from_engine(EngineError::Internal { reason: format!("engine task failed: {join}") })),
    }
}
