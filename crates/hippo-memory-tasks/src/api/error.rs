//! [`ApiError`]: an error answer, `{"error": message}` with its status code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::wire::ErrorBody;
use crate::client::ClientError;
use crate::store::StoreError;

/// An error answer: 400 for malformed JSON or query strings, 422 for a missing or
/// invalid field, 404 for an unknown task, user, memory or migration, 409 for a
/// migration that already ended, 503 when Redis or the store cannot be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An answer with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400: the request cannot be read.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 422: a field is missing or invalid.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 503: something the API needs cannot be reached.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
        };
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::InvalidArgument(m) => ApiError::invalid(m),
            ClientError::NoMigration(id) => ApiError::not_found(format!("no migration {id:?}")),
            ClientError::Queue(e) => ApiError::unavailable(format!("the queue failed: {e}")),
            ClientError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(m) => ApiError::invalid(m),
            other => ApiError::unavailable(other.to_string()),
        }
    }
}

impl From<hippo_queue_core::Error> for ApiError {
    fn from(e: hippo_queue_core::Error) -> Self {
        ApiError::unavailable(format!("the queue failed: {e}"))
    }
}
