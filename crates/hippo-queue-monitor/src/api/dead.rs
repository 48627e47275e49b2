//! Dead letters, and retrying them (what Flower never had): list a queue's dead
//! letters; send back one, several, those whose reason matches, or all; retry a task
//! whose message was dead-lettered (rejected, lost with its worker, delivered too
//! often) from its id.
//!
//! A retry forgets the task's final record first (a final record is never replaced,
//! so the task would not run again), then moves the message back to its queue in one
//! script. A task whose message was acknowledged (an ordinary FAILURE) cannot be
//! retried: its arguments are not kept.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use hippo_queue_core::backend::inspection::RETRY_SCAN;
use hippo_queue_core::backend::{DeadLetter, ResultBackend};
use serde_json::{Value, json};

use crate::actor::Actor;
use crate::api::control::Params;
use crate::api::workers::truthy;
use crate::error::ApiError;
use crate::state::Shared;

/// The most dead letters listed at once.
pub const MAX_LISTED: usize = 1000;

/// Which dead letters a retry request names: `id` (repeatable, or comma-separated),
/// `reason` (a substring of the reason), or `all=true`; one of them is required.
pub fn select(dead: &[DeadLetter], p: &HashMap<String, String>) -> Result<Vec<String>, ApiError> {
    let ids: Vec<&str> = p
        .get("id")
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let reason = p.get("reason").map(|r| r.trim()).filter(|r| !r.is_empty());
    let all = truthy(p.get("all").map(String::as_str));
    if ids.is_empty() && reason.is_none() && !all {
        return Err(ApiError::BadRequest(
            "name the dead letters to retry: id=<task id>[,…], reason=<text> or all=true".into(),
        ));
    }
    Ok(dead
        .iter()
        .filter(|d| !d.id.is_empty())
        .filter(|d| {
            all || ids.contains(&d.id.as_str()) || reason.is_some_and(|r| d.reason.contains(r))
        })
        .map(|d| d.id.clone())
        .collect())
}

async fn retry(
    s: &Shared,
    actor: &Actor,
    queue: &str,
    ids: Vec<String>,
) -> Result<Vec<String>, ApiError> {
    for id in &ids {
        ResultBackend::forget(s.source.as_ref(), id).await?;
    }
    let moved = s.source.requeue_dead_letters(queue, &ids).await?;
    for id in &moved {
        actor
            .record(
                s,
                "retry",
                Some(id),
                None,
                format!("dead letter of queue {queue} sent back"),
            )
            .await;
    }
    Ok(moved)
}

/// `GET /api/queue/dead-letters/{queue}?limit=100`.
pub(crate) async fn list(
    State(s): State<Shared>,
    Path(queue): Path<String>,
    Query(p): Params,
) -> Result<Json<Value>, ApiError> {
    let limit = crate::api::control::count_param(&p, "limit", Some(100))?.min(MAX_LISTED);
    let dead = s.source.dead_letters(&queue, limit).await?;
    let items: Vec<Value> = dead
        .iter()
        .map(|d| json!({"id": d.id, "queue": d.queue, "reason": d.reason, "size": d.payload.len()}))
        .collect();
    Ok(Json(json!({"queue": queue, "dead_letters": items})))
}

/// `POST /api/queue/dead-letters/{queue}/retry?id=…|reason=…|all=true`.
pub(crate) async fn retry_queue(
    State(s): State<Shared>,
    actor: Actor,
    Path(queue): Path<String>,
    Query(p): Params,
) -> Result<Json<Value>, ApiError> {
    let dead = s.source.dead_letters(&queue, RETRY_SCAN).await?;
    let ids = select(&dead, &p)?;
    let moved = retry(&s, &actor, &queue, ids).await?;
    Ok(Json(json!({
        "message": format!("Retried {} dead letters of '{queue}'", moved.len()),
        "retried": moved,
    })))
}

/// `POST /api/task/retry/{id}`: the task's message must be among its queue's dead
/// letters.
pub(crate) async fn retry_task(
    State(s): State<Shared>,
    actor: Actor,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let Some(meta) = s.source.get(&id).await? else {
        return Err(ApiError::NotFound(format!("Unknown task '{id}'")));
    };
    let queue = meta.queue.clone().unwrap_or_default();
    let dead = s.source.dead_letters(&queue, RETRY_SCAN).await?;
    if !dead.iter().any(|d| d.id == id) {
        return Err(ApiError::Conflict(format!(
            "task '{id}' ({}) cannot be retried: its message is not among the dead letters of \
             '{queue}' (an acknowledged task's arguments are not kept)",
            meta.state.as_str()
        )));
    }
    let moved = retry(&s, &actor, &queue, vec![id.clone()]).await?;
    if moved.is_empty() {
        return Err(ApiError::Conflict(format!(
            "task '{id}' left the dead letters meanwhile"
        )));
    }
    Ok(Json(
        json!({"message": format!("Retrying '{id}'"), "task-id": id}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dl(id: &str, reason: &str) -> DeadLetter {
        DeadLetter {
            id: id.into(),
            queue: "q".into(),
            reason: reason.into(),
            payload: Vec::new(),
        }
    }

    fn p(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn retries_name_what_they_move() {
        let dead = [
            dl("a", "rejected"),
            dl("b", "worker lost"),
            dl("", "corrupt record"),
        ];
        assert!(select(&dead, &p(&[])).is_err());
        assert_eq!(select(&dead, &p(&[("id", "b, x")])).unwrap(), ["b"]);
        assert_eq!(select(&dead, &p(&[("reason", "lost")])).unwrap(), ["b"]);
        assert_eq!(select(&dead, &p(&[("all", "true")])).unwrap(), ["a", "b"]);
    }
}
