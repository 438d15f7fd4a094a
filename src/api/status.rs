//! The one place where engine errors become gRPC status codes.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::backend::BackendError;
use crate::engine::EngineError;
use crate::freezer::FreezerError;
use crate::remote::ErrorClass;

pub fn from_engine(error: EngineError) -> Status {
    let code = code_of(&error);
    if code == Code::Internal {
        let mut chain = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            chain.push_str(": ");
            chain.push_str(&cause.to_string());
            source = cause.source();
        }
        tracing::error!(error = %chain, "internal error");
    }
    if let EngineError::Overloaded { retry_after, .. } = &error {
        // google.rpc.RetryInfo, which gRPC clients and proxies read to pace retries.
        return Status::with_error_details(code, error.to_string(), ErrorDetails::with_retry_info(Some(*retry_after)));
    }
    Status::new(code, error.to_string())
}

fn code_of(error: &EngineError) -> Code {
    match error {
        EngineError::InvalidArgument { .. } => Code::InvalidArgument,
        EngineError::NotFound { .. } => Code::NotFound,
        EngineError::AlreadyExists { .. } => Code::AlreadyExists,
        EngineError::FailedPrecondition { .. } => Code::FailedPrecondition,
        EngineError::Busy { .. } => Code::Aborted,
        EngineError::DeadlineExceeded { .. } => Code::DeadlineExceeded,
        EngineError::ResourceExhausted { .. } | EngineError::Overloaded { .. } => Code::ResourceExhausted,
        EngineError::Backend(backend) => match backend {
            BackendError::NotBtrfs { .. }
            | BackendError::NotSubvolume { .. }
            | BackendError::NotFound { .. }
            | BackendError::InsideSnapshotFolder { .. }
            | BackendError::CannotSwap { .. }
            | BackendError::NotThinVolume { .. }
            | BackendError::NotOurs { .. }
            | BackendError::Mounted { .. }
            | BackendError::Unsupported { .. } => Code::FailedPrecondition,
            BackendError::NotAbsolute { .. } | BackendError::InvalidName { .. } => Code::InvalidArgument,
            BackendError::AlreadyExists { .. } => Code::AlreadyExists,
            BackendError::NoSpace { .. } | BackendError::PoolFull { .. } => Code::ResourceExhausted,
            _ => Code::Internal,
        },
        EngineError::Freezer(freezer) => match freezer {
            FreezerError::NotFound { .. }
            | FreezerError::NotFreezable { .. }
            | FreezerError::OutsideHierarchy { .. } => Code::FailedPrecondition,
            FreezerError::Timeout { .. } => Code::DeadlineExceeded,
            _ => Code::Internal,
        },
        EngineError::Remote(remote) => match remote.class() {
            ErrorClass::InvalidConfig => Code::FailedPrecondition,
            ErrorClass::PermissionDenied => Code::PermissionDenied,
            ErrorClass::NotFound => Code::NotFound,
            ErrorClass::AlreadyExists => Code::AlreadyExists,
            ErrorClass::Unavailable => Code::Unavailable,
            ErrorClass::DataLoss => Code::DataLoss,
            ErrorClass::NoSpace => Code::ResourceExhausted,
            ErrorClass::Internal => Code::Internal,
        },
        EngineError::Store(_) | EngineError::Internal { .. } => Code::Internal,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn invalid_argument_names_the_field() {
        let status = from_engine(EngineError::invalid("name", "must not contain '/'"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with("name: "));
    }

    #[test]
    fn a_snapshot_given_as_volume_is_a_failed_precondition() {
        let error = EngineError::Backend(BackendError::InsideSnapshotFolder { path: "/fs/.rollpoint/db/s".into() });
        assert_eq!(from_engine(error).code(), Code::FailedPrecondition);
    }

    #[test]
    fn an_overloaded_daemon_says_when_to_retry() {
        let error = EngineError::Overloaded { reason: "queue full".into(), retry_after: Duration::from_millis(1500) };
        let status = from_engine(error);
        assert_eq!(status.code(), Code::ResourceExhausted);
        let retry = status.get_details_retry_info().expect("RetryInfo in the details");
        assert_eq!(retry.retry_delay, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn no_space_is_resource_exhausted() {
        let error = EngineError::Backend(BackendError::NoSpace { op: "snapshot", path: "/x".into() });
        assert_eq!(from_engine(error).code(), Code::ResourceExhausted);
    }
}
