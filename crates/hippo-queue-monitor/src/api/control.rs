//! Flower's mutating control routes: worker pool, consumers and shutdown; task
//! revoke, time limits and rate limits. Each one is recorded in the event stream with
//! who asked and from where.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use hippo_queue_core::control::{Command, RateLimit, ReplyBody};
use serde_json::{Value, json};

use crate::actor::Actor;
use crate::error::ApiError;
use crate::state::{INSPECT_TIMEOUT, Shared};

/// Query parameters, by name.
pub(crate) type Params = Query<HashMap<String, String>>;

/// A whole-number parameter of at least 1 (`default` when absent).
pub fn count_param(
    p: &HashMap<String, String>,
    name: &str,
    default: Option<usize>,
) -> Result<usize, ApiError> {
    match p.get(name).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => default.ok_or_else(|| ApiError::BadRequest(format!("{name}: required"))),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(ApiError::BadRequest(format!(
                "{name}: expected a whole number of at least 1 (got {s:?})"
            ))),
        },
    }
}

/// A required text parameter.
pub fn text_param<'a>(p: &'a HashMap<String, String>, name: &str) -> Result<&'a str, ApiError> {
    p.get(name)
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::BadRequest(format!("{name}: required")))
}

/// A time limit in seconds (`None` when absent).
pub fn seconds_param(p: &HashMap<String, String>, name: &str) -> Result<Option<f64>, ApiError> {
    match p.get(name).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s.parse::<f64>().map(Some).map_err(|_| {
            ApiError::BadRequest(format!("{name}: expected a number of seconds (got {s:?})"))
        }),
    }
}

/// Sends `command` to one live worker and turns its answer into Flower's response.
async fn to_worker(
    s: &Shared,
    actor: &Actor,
    worker: &str,
    command: Command,
    success: String,
) -> Result<Json<Value>, ApiError> {
    let action = command.name().replace('_', "-");
    command
        .validate()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if !s.source.workers().await?.iter().any(|w| w.id == worker) {
        return Err(ApiError::NotFound(format!("Unknown worker '{worker}'")));
    }
    let detail = format!("{command:?}");
    let target = [worker.to_string()];
    let replies = s
        .app
        .control()
        .call(Some(&target), command, INSPECT_TIMEOUT)
        .await?;
    match replies.into_iter().next().map(|r| r.body) {
        Some(ReplyBody::Error(e)) => {
            actor
                .record(
                    s,
                    &action,
                    None,
                    Some(worker),
                    format!("{detail}: refused: {e}"),
                )
                .await;
            Err(ApiError::Forbidden(format!(
                "'{worker}' refused {action}: {e}"
            )))
        }
        Some(_) => {
            actor.record(s, &action, None, Some(worker), detail).await;
            Ok(Json(json!({"message": success})))
        }
        None => {
            actor
                .record(
                    s,
                    &action,
                    None,
                    Some(worker),
                    format!("{detail}: no answer"),
                )
                .await;
            Err(ApiError::NoReply(format!(
                "'{worker}' did not answer {action} within {} s",
                INSPECT_TIMEOUT.as_secs_f64()
            )))
        }
    }
}

/// `POST /api/worker/shutdown/{workername}`.
pub(crate) async fn shutdown(
    State(s): State<Shared>,
    actor: Actor,
    Path(worker): Path<String>,
) -> Result<Json<Value>, ApiError> {
    to_worker(
        &s,
        &actor,
        &worker,
        Command::Shutdown,
        "Shutting down!".into(),
    )
    .await
}

/// `POST /api/worker/pool/restart/{workername}`.
pub(crate) async fn pool_restart(
    State(s): State<Shared>,
    actor: Actor,
    Path(worker): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let msg = format!("Restarting '{worker}' worker's pool");
    to_worker(&s, &actor, &worker, Command::PoolRestart, msg).await
}

/// `POST /api/worker/pool/grow/{workername}?n=1`.
pub(crate) async fn pool_grow(
    State(s): State<Shared>,
    actor: Actor,
    Path(worker): Path<String>,
    Query(p): Params,
) -> Result<Json<Value>, ApiError> {
    let n = count_param(&p, "n", Some(1))?;
    let msg = format!("Growing '{worker}' worker's pool by {n}");
    to_worker(&s, &actor, &worker, Command::PoolGrow(n), msg).await
}

/// `POST /api/worker/pool/shrink/{workername}?n=1`.
pub(crate) async fn pool_shrink(
    State(s): State<Shared>,
    actor: Actor,
    Path(worker): Path<String>,
    Query(p): Params,
) -> Result<Json<Value>, ApiError> {
    let n = count_param(&p, "n", Some(1))?;
    let msg = format!("Shrinking '{worker}' worker's pool by {n}");
    to_worker(&s, &actor, &worker, Command::PoolShrink(n), msg).await
}

/// `POST /api/worker/pool/autoscale/{workername}?min&max`.
pub(crate) async fn autoscale(
    State(s): State<Shared>,
    actor: Actor,
    Path(worker): Path<String>,
    Query(p): Params,
) -> Result<Json<Value>, ApiError> {
    let min = count_param(&p, "min", None)?;
    let max = count_param(&p, "max", None)?;
    let msg = format!("Autoscaling '{worker}' worker (min={min}, max={max})");
    to_worker(&s, &actor, &worker, Command::Autoscale { max, min }, msg).await
}

/// `POST /api/worker/queue/add-consumer/{workername}?queue`.
pub(crate) async fn add_consumer(
    State(s): State<Shared>,
    actor: Actor,
    Path(worker): Path<String>,
    Query(p): Params,
) -> Result<Json<Value>, ApiError> {
    let queue = text_param(&p, "queue")?.to_string();
    let msg = format!("add consumer {queue}");
    to_worker(&s, &actor, &worker, Command::AddConsumer(queue), msg).await
}

/// `POST /api/worker/queue/cancel-consumer/{workername}?queue`.
pub(crate) async fn cancel_consumer(
    State(s): State<Shared>,
    actor: Actor,
    Path(worker): Path<String>,
    Query(p): Params,
) -> Result<Json<Value>, ApiError> {
    let queue = text_param(&p, "queue")?.to_string();
    let msg = format!("no longer consuming from {queue}");
    to_worker(&s, &actor, &worker, Command::CancelConsumer(queue), msg).await
}

/// `POST /api/task/timeout/{taskname}?workername&soft&hard`.
pub(crate) async fn timeout(
    State(s): State<Shared>,
    actor: Actor,
    Path(task): Path<String>,
    Query(p): Params,
) -> Result<Json<Value>, ApiError> {
    let worker = text_param(&p, "workername")?.to_string();
    let soft = seconds_param(&p, "soft")?;
    let hard = seconds_param(&p, "hard")?;
    let msg = format!("time limits set successfully for '{task}'");
    to_worker(
        &s,
        &actor,
        &worker,
        Command::TimeLimit { task, soft, hard },
        msg,
    )
    .await
}

/// Reads `ratelimit`: `N/s`, `N/m`, `N/h`; empty or `0` clears the limit.
pub fn rate_param(p: &HashMap<String, String>) -> Result<Option<RateLimit>, ApiError> {
    match p.get("ratelimit").map(|s| s.trim()) {
        None => Err(ApiError::BadRequest(
            "ratelimit: required (N/s, N/m or N/h; 0 to clear)".into(),
        )),
        Some("") | Some("0") => Ok(None),
        Some(r) => r
            .parse::<RateLimit>()
            .map(Some)
            .map_err(|e| ApiError::BadRequest(format!("ratelimit: {e}"))),
    }
}

/// `POST /api/task/rate-limit/{taskname}?workername&ratelimit`. The limit is kept in
/// Redis and enforced by every worker.
pub(crate) async fn rate_limit(
    State(s): State<Shared>,
    actor: Actor,
    Path(task): Path<String>,
    Query(p): Params,
) -> Result<Json<Value>, ApiError> {
    let worker = text_param(&p, "workername")?.to_string();
    let rate = rate_param(&p)?;
    let msg = match rate {
        Some(r) => format!("new rate limit set successfully: {r} for '{task}'"),
        None => format!("rate limit disabled for '{task}'"),
    };
    to_worker(&s, &actor, &worker, Command::RateLimit { task, rate }, msg).await
}

/// `POST /api/task/revoke/{taskid}?terminate&signal`: durable; with `terminate` the
/// task is aborted where it runs (`signal` is accepted and has no other effect: tasks
/// are aborted, not signalled).
pub(crate) async fn revoke(
    State(s): State<Shared>,
    actor: Actor,
    Path(id): Path<String>,
    Query(p): Params,
) -> Result<Json<Value>, ApiError> {
    let terminate = crate::api::workers::truthy(p.get("terminate").map(String::as_str));
    s.app.revoke(&id, terminate).await?;
    actor
        .record(
            &s,
            "revoke",
            Some(&id),
            None,
            format!("terminate={terminate}"),
        )
        .await;
    Ok(Json(json!({"message": format!("Revoked '{id}'")})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parameters_are_checked_and_named() {
        assert_eq!(count_param(&params(&[]), "n", Some(1)).unwrap(), 1);
        assert_eq!(
            count_param(&params(&[("n", "3")]), "n", Some(1)).unwrap(),
            3
        );
        for bad in ["0", "-2", "x"] {
            let e = count_param(&params(&[("n", bad)]), "n", Some(1)).unwrap_err();
            assert!(e.to_string().starts_with("n:"), "{e}");
        }
        assert!(
            count_param(&params(&[]), "min", None)
                .unwrap_err()
                .to_string()
                .contains("min")
        );
        assert!(text_param(&params(&[("queue", " ")]), "queue").is_err());
        assert_eq!(
            seconds_param(&params(&[("soft", "2.5")]), "soft").unwrap(),
            Some(2.5)
        );
        assert!(seconds_param(&params(&[("soft", "soon")]), "soft").is_err());
        assert_eq!(rate_param(&params(&[("ratelimit", "0")])).unwrap(), None);
        assert_eq!(
            rate_param(&params(&[("ratelimit", "10/m")])).unwrap(),
            Some(RateLimit {
                count: 10,
                per_secs: 60
            })
        );
        assert!(
            rate_param(&params(&[("ratelimit", "fast")]))
                .unwrap_err()
                .to_string()
                .contains("ratelimit")
        );
        assert!(rate_param(&params(&[])).is_err());
    }
}
