//! REST errors: the gRPC status of the shared service layer, answered as
//! `{"code", "message", "field"}` with the HTTP status that matches its code.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Serialize;
use tonic::Code;
use tonic_types::StatusExt;

/// A refusal or failure, as a REST client sees it.
#[derive(Debug)]
pub struct RestError {
    status: StatusCode,
    body: ErrorBody,
}

/// The JSON body of every REST error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The gRPC code's name: `INVALID_ARGUMENT`, `NOT_FOUND`, ...
    pub code: String,
    pub message: String,
    /// The request field at fault, when there is one.
    pub field: Option<String>,
}

impl RestError {
    pub fn new(status: StatusCode, code: Code, message: impl Into<String>, field: Option<&str>) -> RestError {
        RestError {
            status,
            body: ErrorBody {
                code: code_name(code).to_owned(),
                message: message.into(),
                field: field.map(str::to_owned),
            },
        }
    }

    /// The request body could not be used.
    pub fn bad_body(message: impl Into<String>) -> RestError {
        RestError::new(StatusCode::BAD_REQUEST, Code::InvalidArgument, message, Some("body"))
    }

    pub fn timeout(limit: std::time::Duration) -> RestError {
        RestError::new(
            StatusCode::REQUEST_TIMEOUT,
            Code::DeadlineExceeded,
            format!("the request was not complete within {:.1} s (rest_request_timeout_ms)", limit.as_secs_f64()),
            None,
        )
    }
}

impl From<tonic::Status> for RestError {
    fn from(status: tonic::Status) -> RestError {
        let code = status.code();
        // INVALID_ARGUMENT messages read "field: reason" (EngineError::invalid).
        let field = (code == Code::InvalidArgument)
            .then(|| status.message().split_once(": ").map(|(field, _)| field))
            .flatten()
            .filter(|field| field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.'));
        let http = match code {
            Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists | Code::Aborted | Code::FailedPrecondition => StatusCode::CONFLICT,
            // Overloaded (it says when to retry) against out of space.
            Code::ResourceExhausted if status.get_details_retry_info().is_some() => StatusCode::TOO_MANY_REQUESTS,
            Code::ResourceExhausted => StatusCode::INSUFFICIENT_STORAGE,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            Code::Ok | Code::Cancelled | Code::Unknown | Code::Internal | Code::DataLoss => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        RestError::new(http, code, status.message(), field)
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineError;

    #[test]
    fn invalid_argument_is_400_and_names_its_field() {
        let error = RestError::from(crate::api::status::from_engine(EngineError::invalid("alias", "is too long")));
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(error.body.field.as_deref(), Some("alias"));
        assert_eq!(error.body.code, "INVALID_ARGUMENT");
    }

    #[test]
    fn overload_is_429_and_no_space_507() {
        let overloaded =
            EngineError::Overloaded { reason: "full".into(), retry_after: std::time::Duration::from_secs(1) };
        assert_eq!(RestError::from(crate::api::status::from_engine(overloaded)).status, StatusCode::TOO_MANY_REQUESTS);
        let no_space = tonic::Status::resource_exhausted("no space left");
        assert_eq!(RestError::from(no_space).status, StatusCode::INSUFFICIENT_STORAGE);
    }
}
