//! Flower's HTTP API: the routes, one module per resource.

pub(crate) mod apply;
pub(crate) mod beat;
pub(crate) mod control;
pub(crate) mod dead;
pub(crate) mod queues;
pub(crate) mod tasks;
pub(crate) mod workers;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

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

/// The content type of the OpenMetrics text exposition.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the Prometheus text format, as Flower serves it.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`: Flower's metrics and the queues' (see the `metrics` module), in
/// OpenMetrics to a client asking for it (Prometheus does), else in the Prometheus
/// text format, as Flower.
pub(crate) async fn metrics(
    State(s): State<Shared>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let body = s.metrics.scrape(s.source.as_ref()).await?;
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    Ok(if openmetrics {
        ([(header::CONTENT_TYPE, OPENMETRICS)], body).into_response()
    } else {
        let text = crate::metrics::to_prometheus_text(&body);
        ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], text).into_response()
    })
}

/// Refuses every mutating route in read-only mode.
pub(crate) async fn read_only(
    State(s): State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if s.config.is_read_only() {
        return ApiError::Forbidden("Read only mode is enabled".into()).into_response();
    }
    next.run(req).await
}
