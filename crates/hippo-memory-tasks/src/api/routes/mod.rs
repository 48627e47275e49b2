//! The routes, one file per resource; [`router`] puts them together.

pub(super) mod health;
pub(super) mod memories;
pub(super) mod migrations;
pub(super) mod rules;
pub(super) mod tasks;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::middleware;
use axum::response::Response;
use axum::routing::{delete, get, post};
use hippo_queue_core::Task;

use super::access;
use super::error::ApiError;
use super::state::ApiState;

/// What a handler answers.
pub(super) type ApiResult = Result<Response, ApiError>;

/// The guide's HTTP API over `state`, to serve or to mount in a host application's
/// router (its paths are absolute: nest it under a prefix with [`Router::nest`]).
///
/// Every request goes through [`access::check`](super::access) first: the `Host`
/// allow-list, the bearer tokens, a JSON body within the limit.
pub fn router(state: ApiState) -> Router {
    let body_limit = state.inner.access.body_limit;
    Router::new()
        .route("/health", get(health::health))
        .route("/openapi.json", get(health::openapi_json))
        .route(
            "/api/v1/tasks/deduplication",
            post(tasks::submit_deduplication),
        )
        .route(
            "/api/v1/tasks/consolidation",
            post(tasks::submit_consolidation),
        )
        .route(
            "/api/v1/tasks/health-check",
            post(tasks::submit_health_check),
        )
        .route(
            "/api/v1/tasks/summarization",
            post(tasks::submit_summarization),
        )
        .route("/api/v1/tasks/compression", post(tasks::submit_compression))
        .route("/api/v1/tasks/expiration", post(tasks::submit_expiration))
        .route("/api/v1/tasks/{task_id}/status", get(tasks::task_status))
        .route("/api/v1/tasks/{task_id}", delete(tasks::revoke_task))
        .route(
            "/v1/admin/embeddings/migrate",
            post(migrations::start_migration),
        )
        .route(
            "/v1/admin/embeddings/migration/{id}",
            get(migrations::get_migration),
        )
        .route(
            "/v1/admin/embeddings/migration/{id}/cancel",
            post(migrations::cancel_migration),
        )
        .route("/v1/procedural/consolidate", post(rules::consolidate_rules))
        .route(
            "/v1/procedural/rules",
            post(rules::add_rule).get(rules::list_rules),
        )
        .route(
            "/v1/memories",
            post(memories::add_memory).get(memories::list_memories),
        )
        .route(
            "/v1/memories/{id}",
            get(memories::get_memory).delete(memories::delete_memory),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), access::check))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; the endpoints are listed at GET /openapi.json")
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} is not allowed on {}; the endpoints are listed at GET /openapi.json",
            uri.path()
        ),
    )
}

/// The queue a task is routed to by its options.
fn queue_of<T: Task>() -> String {
    T::options().queue.unwrap_or_else(|| "default".into())
}

/// 404 unless the user has memories.
async fn known_user(s: &ApiState, user: &str) -> Result<(), ApiError> {
    if s.inner.store.user_exists(user).await? {
        Ok(())
    } else {
        Err(ApiError::not_found(format!(
            "unknown user {user:?}: no memories are stored for this user (add some with POST /v1/memories)"
        )))
    }
}
