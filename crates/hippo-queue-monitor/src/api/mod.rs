//! Flower's HTTP API: the routes, one module per resource.

pub(crate) mod queues;
pub(crate) mod tasks;
pub(crate) mod workers;

use axum::extract::State;
use axum::http::StatusCode;

use crate::state::Shared;

/// `GET /healthcheck`: `OK` while Redis answers, 503 otherwise. Needs no credentials
/// and tells nothing else.
pub(crate) async fn healthcheck(State(s): State<Shared>) -> (StatusCode, &'static str) {
    match s.source.rate_limits().await {
        Ok(_) => (StatusCode::OK, "OK"),
        Err(e) => {
            tracing::warn!(error = %e, "healthcheck: the backend does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "backend unavailable")
        }
    }
}
