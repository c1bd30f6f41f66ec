//! The one path from a failure to a gRPC status.

use cronhook_core::{ErrorKind, ValidationError};

/// A failed API call: a kind (mapped to a code by `cronhook-proto`) and a message safe to
/// show the caller. Internal details are logged, never returned.
#[derive(Debug)]
pub struct ApiError {
    kind: ErrorKind,
    message: String,
}

impl ApiError {
    /// An invalid argument naming `field`.
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        ValidationError::new(field, reason).into()
    }

    /// A field this release does not support yet.
    pub fn unimplemented(field: &str, what: &str) -> Self {
        Self { kind: ErrorKind::Unimplemented, message: format!("{field}: {what} is not supported yet") }
    }

    /// A state that does not allow the call.
    pub fn precondition(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::FailedPrecondition, message: message.into() }
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self { kind: ErrorKind::InvalidArgument, message: e.to_string() }
    }
}

impl From<cronhook_store::Error> for ApiError {
    fn from(e: cronhook_store::Error) -> Self {
        let kind = e.kind();
        let message = match kind {
            ErrorKind::Internal => {
                tracing::error!(error = %e, "internal error");
                "internal error (logged on the server)".to_owned()
            }
            ErrorKind::Unavailable => {
                tracing::warn!(error = %e, "store unavailable");
                "the database is unavailable; retry later".to_owned()
            }
            _ => e.to_string(),
        };
        Self { kind, message }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        tonic::Status::new(cronhook_proto::grpc_code(e.kind), e.message)
    }
}

/// Result of API handlers.
pub type ApiResult<T> = Result<T, ApiError>;
