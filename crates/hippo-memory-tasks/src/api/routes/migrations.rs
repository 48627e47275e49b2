//! `/v1/admin/embeddings/...`: re-encode every memory with another embedding model.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use hippo_queue_core::Task;

use super::{ApiResult, queue_of};
use crate::api::error::ApiError;
use crate::api::extract::{json_body, required_text};
use crate::api::state::ApiState;
use crate::api::wire::{ErrorBody, MigrateRequest, MigrationStartedBody};
use crate::model::Migration;
use crate::tasks::MigrateEmbeddingsTask;

/// The vector size a migration to `model` makes, checked against the models the API
/// knows (with none configured, `dimension` must be given).
fn dimension_of(
    models: &[(String, usize)],
    model: &str,
    dimension: Option<usize>,
) -> Result<usize, ApiError> {
    if models.is_empty() {
        return match dimension {
            Some(d) if d > 0 => Ok(d),
            Some(_) => Err(ApiError::invalid("new_dimension must be at least 1")),
            None => Err(ApiError::invalid(
                "new_dimension is required: this API has no list of known models",
            )),
        };
    }
    let Some(&(_, known)) = models.iter().find(|(n, _)| n == model) else {
        let names: Vec<String> = models.iter().map(|(n, d)| format!("{n} ({d})")).collect();
        return Err(ApiError::invalid(format!(
            "unknown embedding model {model:?}; known models: {}",
            names.join(", ")
        )));
    };
    match dimension {
        Some(d) if d != known => Err(ApiError::invalid(format!(
            "model {model} makes {known}-dimensional vectors, not {d}"
        ))),
        _ => Ok(known),
    }
}

/// Re-encode every memory with a new embedding model (`migrate_embeddings_task`).
#[utoipa::path(post, path = "/v1/admin/embeddings/migrate", tag = "migrations",
    request_body = MigrateRequest,
    responses(
        (status = 202, description = "the migration record, with migration_id and task_id", body = MigrationStartedBody),
        (status = 400, description = "not JSON", body = ErrorBody),
        (status = 422, description = "unknown model or wrong dimension", body = ErrorBody),
        (status = 503, description = "the queue or the store is unreachable", body = ErrorBody)))]
pub(super) async fn start_migration(State(s): State<ApiState>, body: Bytes) -> ApiResult {
    let r: MigrateRequest = json_body(&body)?;
    let model = required_text(r.new_model, "new_model")?;
    let dim = dimension_of(&s.inner.models, &model, r.new_dimension)?;
    let started = s
        .inner
        .client
        .start_embedding_migration(&model, dim)
        .await?;
    let task_name = MigrateEmbeddingsTask::NAME;
    if let Err(e) = s.inner.tasks.record(&started.task_id, task_name).await {
        tracing::warn!(task_id = started.task_id, task_name, error = %e, "task id not recorded");
    }
    let record = s.inner.client.get_migration(&started.migration_id).await?;
    tracing::info!(
        migration = started.migration_id,
        task_id = started.task_id,
        task_name,
        model,
        "migration started"
    );
    let body = MigrationStartedBody {
        migration_id: started.migration_id,
        task_id: started.task_id,
        queue: queue_of::<MigrateEmbeddingsTask>(),
        record,
    };
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}

/// A migration record.
#[utoipa::path(get, path = "/v1/admin/embeddings/migration/{id}", tag = "migrations",
    params(("id" = String, Path, description = "the migration id")),
    responses(
        (status = 200, description = "the record", body = Migration),
        (status = 404, description = "no such migration", body = ErrorBody)))]
pub(super) async fn get_migration(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult {
    let record = s.inner.client.get_migration(&id).await?;
    Ok(axum::Json(record).into_response())
}

/// Cancel a migration (it stops before its next batch).
#[utoipa::path(post, path = "/v1/admin/embeddings/migration/{id}/cancel", tag = "migrations",
    params(("id" = String, Path, description = "the migration id")),
    responses(
        (status = 200, description = "the record", body = Migration),
        (status = 404, description = "no such migration", body = ErrorBody),
        (status = 409, description = "it has already ended", body = ErrorBody)))]
pub(super) async fn cancel_migration(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult {
    let record = s.inner.client.get_migration(&id).await?;
    if record.status.is_final() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "migration {id} has already ended: {}",
                record.status.as_str()
            ),
        ));
    }
    let record = s.inner.client.cancel_migration(&id).await?;
    tracing::info!(migration = id, "migration cancellation requested");
    Ok(axum::Json(record).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimension_comes_from_the_known_models() {
        let models = vec![("a".to_string(), 384), ("b".to_string(), 768)];
        assert_eq!(dimension_of(&models, "b", None).unwrap(), 768);
        assert_eq!(dimension_of(&models, "b", Some(768)).unwrap(), 768);
        let e = dimension_of(&models, "b", Some(384)).unwrap_err();
        assert_eq!(
            e.message(),
            "model b makes 768-dimensional vectors, not 384"
        );
        let e = dimension_of(&models, "c", None).unwrap_err();
        assert!(
            e.message().contains("known models: a (384), b (768)"),
            "{e}"
        );
    }

    #[test]
    fn without_known_models_the_dimension_is_required() {
        assert_eq!(dimension_of(&[], "any", Some(10)).unwrap(), 10);
        assert!(dimension_of(&[], "any", None).is_err());
        assert!(dimension_of(&[], "any", Some(0)).is_err());
    }
}
