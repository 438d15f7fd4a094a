use crate::backend::BackendError;
use crate::freezer::FreezerError;
use crate::remote::RemoteError;
use crate::store::StoreError;

/// Errors of the engine. The API layer maps each variant to one gRPC code in
/// one place (`api::status`).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Bad input; `field` names the request field.
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{what} already exists")]
    AlreadyExists { what: String },
    #[error("{reason}")]
    FailedPrecondition { reason: String },
    /// Another operation holds the container.
    #[error("container {container} is busy with another operation; try again")]
    Busy { container: String },
    #[error("{reason}")]
    DeadlineExceeded { reason: String },
    #[error("{reason}")]
    ResourceExhausted { reason: String },
    /// The admission queue is full or the wait for a slot ran out: the call
    /// was not run and may be repeated after `retry_after`.
    #[error("{reason}; retry in {retry_after:?}")]
    Overloaded { reason: String, retry_after: std::time::Duration },
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Freezer(#[from] FreezerError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("{reason}")]
    Internal { reason: String },
}

impl EngineError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        EngineError::InvalidArgument { field, reason: reason.into() }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        EngineError::NotFound { what: what.into() }
    }
}

pub type EngineResult<T> = Result<T, EngineError>;
