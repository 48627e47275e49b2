//! `/api/v1/tasks/...`: submit the memory tasks, follow and revoke them.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use hippo_queue_core::Task;

use super::{ApiResult, known_user, queue_of};
use crate::api::error::ApiError;
use crate::api::extract::{self, QueryMap, json_body, user_id};
use crate::api::state::ApiState;
use crate::api::wire::{
    ConsolidationRequest, DeduplicationRequest, ErrorBody, OptionalUserRequest, Revoked, Submitted,
    SummarizationRequest, UserRequest,
};
use crate::client::TaskStatus;
use crate::tasks::{
    AutoSummarizationTask, CompressionTask, ConsolidationTask, DeduplicationTask,
    ExpireMemoriesTask, HealthCheckTask,
};

/// The answers to a task submission, for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // never built: it describes what `submitted` and `ApiError` answer
enum SubmitAnswers {
    /// The task is queued.
    #[response(status = 202, description = "submitted")]
    Queued(Submitted),
    /// The finished task.
    #[response(status = 200, description = "with \"async\": false, the finished task")]
    Finished(TaskStatus),
    /// The body is not JSON.
    #[response(status = 400, description = "not JSON")]
    NotJson(ErrorBody),
    /// No memories are stored for the user.
    #[response(status = 404, description = "unknown user")]
    UnknownUser(ErrorBody),
    /// A field is missing or invalid.
    #[response(status = 422, description = "a field is missing or invalid")]
    Invalid(ErrorBody),
    /// Redis or the store cannot be reached.
    #[response(status = 503, description = "the queue or the store is unreachable")]
    Unavailable(ErrorBody),
}

/// Records a submitted task and answers: 202 [`Submitted`], or, with `"async": false`,
/// 200 and the task's status once it has finished.
pub(super) async fn submitted<T: Task>(
    s: &ApiState,
    task_id: String,
    run_async: bool,
) -> ApiResult {
    if let Err(e) = s.inner.tasks.record(&task_id, T::NAME).await {
        tracing::warn!(task_id, task_name = T::NAME, error = %e, "task id not recorded");
    }
    tracing::info!(task_id, task_name = T::NAME, "task submitted");
    if run_async {
        let body = Submitted {
            task_id,
            status: "PENDING".into(),
            queue: queue_of::<T>(),
        };
        Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
    } else {
        let status = s.inner.client.wait(&task_id, s.inner.sync_wait).await?;
        Ok(axum::Json(status).into_response())
    }
}

/// The user of a task that runs for one user or for everyone.
async fn optional_user(s: &ApiState, user: Option<String>) -> Result<Option<String>, ApiError> {
    match user {
        Some(u) => {
            let u = user_id(Some(u), "in the body")?;
            known_user(s, &u).await?;
            Ok(Some(u))
        }
        None => Ok(None),
    }
}

/// Find and merge duplicate memories (`deduplication_task`, queue `memory_ops`).
#[utoipa::path(post, path = "/api/v1/tasks/deduplication", tag = "tasks",
    request_body = DeduplicationRequest,
    responses(SubmitAnswers))]
pub(super) async fn submit_deduplication(State(s): State<ApiState>, body: Bytes) -> ApiResult {
    let r: DeduplicationRequest = json_body(&body)?;
    let user = user_id(r.user_id, "in the body")?;
    let t = extract::threshold(r.similarity_threshold)?;
    known_user(&s, &user).await?;
    let id = s
        .inner
        .client
        .submit_deduplication_task(&user, t, r.dry_run)
        .await?;
    submitted::<DeduplicationTask>(&s, id, r.run_async).await
}

/// Consolidate related memories (`consolidation_task`, queue `memory_ops`).
#[utoipa::path(post, path = "/api/v1/tasks/consolidation", tag = "tasks",
    request_body = ConsolidationRequest,
    responses(SubmitAnswers))]
pub(super) async fn submit_consolidation(State(s): State<ApiState>, body: Bytes) -> ApiResult {
    let r: ConsolidationRequest = json_body(&body)?;
    let user = user_id(r.user_id, "in the body")?;
    let t = extract::threshold(r.similarity_threshold)?;
    known_user(&s, &user).await?;
    let id = s.inner.client.submit_consolidation_task(&user, t).await?;
    submitted::<ConsolidationTask>(&s, id, r.run_async).await
}

/// A health report (`health_check_task`, queue `background`); every user without
/// `user_id`.
#[utoipa::path(post, path = "/api/v1/tasks/health-check", tag = "tasks",
    request_body = OptionalUserRequest,
    responses(SubmitAnswers))]
pub(super) async fn submit_health_check(State(s): State<ApiState>, body: Bytes) -> ApiResult {
    let r: OptionalUserRequest = json_body(&body)?;
    let user = optional_user(&s, r.user_id).await?;
    let id = s
        .inner
        .client
        .submit_health_check_task(user.as_deref())
        .await?;
    submitted::<HealthCheckTask>(&s, id, r.run_async).await
}

/// Delete expired memories (`expire_memories_task`, queue `scheduled`); every user
/// without `user_id`.
#[utoipa::path(post, path = "/api/v1/tasks/expiration", tag = "tasks",
    request_body = OptionalUserRequest,
    responses(SubmitAnswers))]
pub(super) async fn submit_expiration(State(s): State<ApiState>, body: Bytes) -> ApiResult {
    let r: OptionalUserRequest = json_body(&body)?;
    let user = optional_user(&s, r.user_id).await?;
    let id = s
        .inner
        .client
        .submit_expiration_task(user.as_deref())
        .await?;
    submitted::<ExpireMemoriesTask>(&s, id, r.run_async).await
}

/// Summarise old memories (`auto_summarization_task`, queue `background`).
#[utoipa::path(post, path = "/api/v1/tasks/summarization", tag = "tasks",
    request_body = SummarizationRequest,
    responses(SubmitAnswers))]
pub(super) async fn submit_summarization(State(s): State<ApiState>, body: Bytes) -> ApiResult {
    let r: SummarizationRequest = json_body(&body)?;
    let user = user_id(r.user_id, "in the body")?;
    known_user(&s, &user).await?;
    let id = s
        .inner
        .client
        .submit_summarization_task(&user, r.min_age_days)
        .await?;
    submitted::<AutoSummarizationTask>(&s, id, r.run_async).await
}

/// Compress old memories, keeping their originals (`compression_task`, queue
/// `background`).
#[utoipa::path(post, path = "/api/v1/tasks/compression", tag = "tasks",
    request_body = UserRequest,
    responses(SubmitAnswers))]
pub(super) async fn submit_compression(State(s): State<ApiState>, body: Bytes) -> ApiResult {
    let r: UserRequest = json_body(&body)?;
    let user = user_id(r.user_id, "in the body")?;
    known_user(&s, &user).await?;
    let id = s.inner.client.submit_compression_task(&user).await?;
    submitted::<CompressionTask>(&s, id, r.run_async).await
}

/// 404 for an id that is neither stored in the result backend nor was submitted here.
async fn check_known_task(s: &ApiState, task_id: &str, state: &str) -> Result<(), ApiError> {
    if state != "PENDING" {
        return Ok(());
    }
    match s.inner.tasks.contains(task_id).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(ApiError::not_found(format!(
            "unknown task id {task_id:?}: no task with this id was submitted, or its result has expired"
        ))),
        Err(e) => Err(ApiError::unavailable(format!("the task log failed: {e}"))),
    }
}

/// A task's state and result.
#[utoipa::path(get, path = "/api/v1/tasks/{task_id}/status", tag = "tasks",
    params(("task_id" = String, Path, description = "the task id")),
    responses(
        (status = 200, description = "the task", body = TaskStatus),
        (status = 404, description = "unknown task", body = ErrorBody),
        (status = 503, description = "the result backend is unreachable", body = ErrorBody)))]
pub(super) async fn task_status(
    State(s): State<ApiState>,
    Path(task_id): Path<String>,
) -> ApiResult {
    let status = s.inner.client.get_task_status(&task_id).await?;
    check_known_task(&s, &task_id, &status.state).await?;
    Ok(axum::Json(status).into_response())
}

/// Revoke a task (a running one is terminated unless `terminate=false`).
#[utoipa::path(delete, path = "/api/v1/tasks/{task_id}", tag = "tasks",
    params(
        ("task_id" = String, Path, description = "the task id"),
        ("terminate" = Option<bool>, Query, description = "abort it if it runs (default true)")),
    responses(
        (status = 200, description = "revoked", body = Revoked),
        (status = 404, description = "unknown task", body = ErrorBody),
        (status = 422, description = "terminate is not a boolean", body = ErrorBody),
        (status = 503, description = "the queue is unreachable", body = ErrorBody)))]
pub(super) async fn revoke_task(
    State(s): State<ApiState>,
    Path(task_id): Path<String>,
    q: QueryMap,
) -> ApiResult {
    let q = extract::query(q)?;
    let terminate = extract::terminate(q.get("terminate"))?;
    let before = s.inner.client.get_task_status(&task_id).await?;
    check_known_task(&s, &task_id, &before.state).await?;
    s.inner.client.revoke_task(&task_id, terminate).await?;
    tracing::info!(task_id, terminate, "task revoked");
    Ok(axum::Json(Revoked {
        task_id,
        revoked: true,
        terminate,
        state: before.state,
    })
    .into_response())
}
