//! How a request fails: a status and `{"error": "<what went wrong>"}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hippo_queue_core::BackendError;

/// A failed request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// A parameter or body was refused (400).
    #[error("{0}")]
    BadRequest(String),
    /// No such task or worker (404).
    #[error("{0}")]
    NotFound(String),
    /// Refused: read-only mode, or a worker refused the command (403).
    #[error("{0}")]
    Forbidden(String),
    /// The request does not fit the task's state (409).
    #[error("{0}")]
    Conflict(String),
    /// The worker addressed did not answer in time (504).
    #[error("{0}")]
    NoReply(String),
    /// Too many of something at once (503).
    #[error("{0}")]
    Busy(String),
    /// Redis could not be read or written (503).
    #[error("the backend failed: {0}")]
    Backend(#[from] BackendError),
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::NoReply(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Backend(_) | ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<hippo_queue_core::Error> for ApiError {
    fn from(e: hippo_queue_core::Error) -> Self {
        match e {
            hippo_queue_core::Error::Backend(b) => ApiError::Backend(b),
            other => ApiError::BadRequest(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Backend(e) = &self {
            tracing::warn!(error = %e, "monitor request failed on the backend");
        }
        (
            self.status(),
            Json(serde_json::json!({"error": self.to_string()})),
        )
            .into_response()
    }
}
