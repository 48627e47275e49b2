//! `GET /health` and `GET /openapi.json`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::api::state::ApiState;
use crate::api::wire::Health;

/// Broker and store reachability, and live workers.
#[utoipa::path(get, path = "/health", tag = "service",
    responses(
        (status = 200, description = "everything answers", body = Health),
        (status = 503, description = "the broker or the store is unreachable", body = Health)))]
pub(super) async fn health(State(s): State<ApiState>) -> Response {
    let broker = s.inner.app.broker().workers().await;
    let store = s.inner.store.ping().await;
    let ok = broker.is_ok() && store.is_ok();
    let body = Health {
        status: if ok { "ok" } else { "unavailable" }.into(),
        mode: s.inner.mode.clone(),
        broker: broker
            .as_ref()
            .map_or_else(|e| e.to_string(), |_| "ok".to_string()),
        store: store
            .as_ref()
            .map_or_else(|e| e.to_string(), |_| "ok".to_string()),
        workers: broker.as_ref().map_or(0, Vec::len),
    };
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

/// This API's OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "service",
    responses((status = 200, description = "the OpenAPI document")))]
pub(super) async fn openapi_json() -> Response {
    axum::Json(crate::api::openapi()).into_response()
}
