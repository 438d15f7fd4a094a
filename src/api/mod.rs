//! API layer: gRPC services (tonic), thin: check who is calling, translate
//! messages to engine calls and engine errors to status codes.

pub mod auth;
pub mod client;
mod containers;
pub mod convert;
mod events;
pub mod proto;
mod remotes;
mod schedules;
pub mod server;
mod snapshots;
pub mod status;
mod token_service;
pub mod tokens;

use std::sync::Arc;

use crate::engine::{Engine, EngineError, EngineResult};

/// Runs a blocking engine call on the blocking thread pool and maps its error.
async fn blocking<T, F>(engine: &Arc<Engine>, call: F) -> Result<T, tonic::Status>
where
    T: Send + 'static,
    F: FnOnce(&Engine) -> EngineResult<T> + Send + 'static,
{
    let permit = engine.admit().map_err(status::from_engine)?;
    let engine = engine.clone();
    match tokio::task::spawn_blocking(move || {
        let _permit = permit;
        call(&engine)
    })
    .await
    {
        Ok(result) => result.map_err(status::from_engine),
        Err(join) => Err(status::from_engine(EngineError::Internal { reason: format!("engine task failed: {join}") })),
    }
}
