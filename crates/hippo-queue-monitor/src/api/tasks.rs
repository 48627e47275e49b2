//! `GET /api/tasks`, `/api/task/types`, `/api/task/info/{id}`, `/api/task/result/{id}`:
//! read from the stored task records (the history index), never from memory.
//!
//! A listing walks the history newest first, one page of records at a time, and keeps
//! only what it returns (a sorted listing: at most [`MAX_SORT_WINDOW`] records).
//!
//! [`MAX_SORT_WINDOW`]: crate::query::MAX_SORT_WINDOW

use std::collections::BTreeSet;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use hippo_queue_core::control::{Command, ReplyBody};
use hippo_queue_core::{TaskMeta, TaskState};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::query::{TaskParams, TaskQuery};
use crate::state::{INSPECT_TIMEOUT, Shared};
use crate::task_view::{exception, result_value, task_dict};

/// Records read per history page.
const PAGE: usize = 1000;
/// The most records one listing reads: a filter matching little stops there.
pub const MAX_SCAN: usize = 200_000;
/// How many of the newest records name the task types seen (besides the names
/// workers registered).
const TYPES_SCAN: usize = 1000;
/// The longest `?timeout` of `/api/task/result`, seconds.
pub const MAX_RESULT_TIMEOUT: f64 = 3600.0;

/// The records a query selects, in its order.
pub(crate) async fn select(s: &Shared, q: &TaskQuery) -> Result<Vec<TaskMeta>, ApiError> {
    let want = q.offset.saturating_add(q.limit);
    let page = if q.sort.is_none() && q.search.is_none() && q.state.is_none() {
        want.clamp(100, PAGE)
    } else {
        PAGE
    };
    let mut cursor: Option<String> = None;
    let mut kept: Vec<TaskMeta> = Vec::new();
    let mut skipped = 0;
    let mut scanned = 0;
    loop {
        let batch = s.source.task_history(cursor.as_deref(), page).await?;
        for m in batch.tasks {
            scanned += 1;
            if !q.matches(&m) {
                continue;
            }
            if q.sort.is_some() {
                kept.push(m);
                if kept.len() >= want.saturating_mul(2).max(PAGE) {
                    kept.sort_by(|a, b| q.order(a, b));
                    kept.truncate(want);
                }
            } else if skipped < q.offset {
                skipped += 1;
            } else {
                kept.push(m);
                if kept.len() >= q.limit {
                    return Ok(kept);
                }
            }
        }
        match batch.next {
            Some(next) if scanned < MAX_SCAN => cursor = Some(next),
            _ => break,
        }
    }
    if q.sort.is_some() {
        kept.sort_by(|a, b| q.order(a, b));
        kept = kept.into_iter().skip(q.offset).take(q.limit).collect();
    }
    Ok(kept)
}

/// A JSON object keeping the order of `entries` (task id -> task).
fn ordered_object(entries: &[TaskMeta]) -> Result<String, ApiError> {
    let mut out = String::from("{");
    for (i, m) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let key = serde_json::to_string(&m.task_id)
            .map_err(|e| ApiError::BadRequest(format!("task id: {e}")))?;
        let value = serde_json::to_string(&task_dict(m))
            .map_err(|e| ApiError::BadRequest(format!("task {}: {e}", m.task_id)))?;
        out.push_str(&key);
        out.push(':');
        out.push_str(&value);
    }
    out.push('}');
    Ok(out)
}

/// `GET /api/tasks`: `{task id: task}` in the listing's order.
pub(crate) async fn list(
    State(s): State<Shared>,
    Query(p): Query<TaskParams>,
) -> Result<Response, ApiError> {
    let q = TaskQuery::from_params(&p).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let tasks = select(&s, &q).await?;
    let body = ordered_object(&tasks)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `GET /api/task/types`: the names live workers registered and those of the newest
/// records.
pub(crate) async fn types(State(s): State<Shared>) -> Result<Json<Value>, ApiError> {
    let mut names = BTreeSet::new();
    let replies = s
        .app
        .control()
        .call(None, Command::Registered, INSPECT_TIMEOUT)
        .await?;
    for r in replies {
        if let ReplyBody::Names(n) = r.body {
            names.extend(n);
        }
    }
    let page = s.source.task_history(None, TYPES_SCAN).await?;
    names.extend(page.tasks.into_iter().map(|m| m.name));
    Ok(Json(json!({"task-types": names})))
}

/// `GET /api/task/info/{id}`: 404 for an unknown task.
pub(crate) async fn info(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match s.source.get(&id).await? {
        Some(m) => Ok(Json(task_dict(&m))),
        None => Err(ApiError::NotFound(format!("Unknown task '{id}'"))),
    }
}

/// `GET /api/task/timeline/{id}`: the task's events and the operator actions on it,
/// oldest first, from the newest part of the event stream ([`crate::timeline`]).
pub(crate) async fn timeline(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let t = crate::timeline::read(s.source.as_ref(), &id).await?;
    Ok(Json(crate::timeline::timeline_json(&id, &t)))
}

/// `GET /api/task/stats`: success and failure rates and runtime histograms per task
/// type, from the newest part of the event stream ([`crate::task_stats`]).
pub(crate) async fn stats(State(s): State<Shared>) -> Result<Json<Value>, ApiError> {
    let now = hippo_queue_core::time::now_ms();
    let stats = crate::task_stats::read(s.source.as_ref(), now).await?;
    Ok(Json(stats.to_json(now)))
}

/// `/api/task/result` query parameters.
#[derive(Debug, Default, Deserialize)]
pub struct ResultParams {
    /// Wait up to this many seconds for the task to finish.
    pub timeout: Option<String>,
}

/// Reads `?timeout`: seconds above 0 and at most [`MAX_RESULT_TIMEOUT`].
pub fn result_timeout(v: Option<&str>) -> Result<Option<Duration>, ApiError> {
    let Some(s) = v.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    match s.parse::<f64>() {
        Ok(t) if t.is_finite() && t > 0.0 && t <= MAX_RESULT_TIMEOUT => {
            Ok(Some(Duration::from_secs_f64(t)))
        }
        _ => Err(ApiError::BadRequest(format!(
            "timeout: expected seconds above 0 and at most {MAX_RESULT_TIMEOUT} (got {s:?})"
        ))),
    }
}

/// Flower's result response: `task-id` and `state`, and `result` (with `traceback`
/// for a failure) once the task is ready.
pub fn result_json(id: &str, meta: Option<&TaskMeta>) -> Value {
    let state = meta.map_or(TaskState::Pending, |m| m.state);
    let mut out = json!({"task-id": id, "state": state.as_str()});
    if let Some(m) = meta.filter(|m| m.state.is_ready()) {
        if m.state == TaskState::Success {
            out["result"] = result_value(m);
        } else {
            out["result"] = exception(m);
            out["traceback"] = m
                .error
                .as_ref()
                .map_or(Value::Null, |e| json!(e.traceback()));
        }
    }
    out
}

/// `GET /api/task/result/{id}`.
pub(crate) async fn result(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Query(p): Query<ResultParams>,
) -> Result<Json<Value>, ApiError> {
    let meta = match result_timeout(p.timeout.as_deref())? {
        Some(t) => s.source.wait(&id, t).await?,
        None => s.source.get(&id).await?,
    };
    Ok(Json(result_json(&id, meta.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hippo_queue_core::TaskFailure;
    use hippo_queue_core::codec::to_msgpack;

    #[test]
    fn result_shapes_follow_the_state() {
        assert_eq!(
            result_json("t", None),
            json!({"task-id": "t", "state": "PENDING"})
        );
        let mut ok = TaskMeta::new("t", "add", TaskState::Success);
        ok.result = Some(to_msgpack(&3).unwrap());
        assert_eq!(
            result_json("t", Some(&ok)),
            json!({"task-id": "t", "state": "SUCCESS", "result": 3})
        );
        let mut bad = TaskMeta::new("t", "add", TaskState::Failure);
        bad.error = Some(TaskFailure::new("Boom", "no"));
        let j = result_json("t", Some(&bad));
        assert_eq!(j["traceback"], "Boom: no");
        assert_eq!(j["result"], "Boom(\"no\")");
    }

    #[test]
    fn result_timeouts_are_checked() {
        assert_eq!(result_timeout(None).unwrap(), None);
        assert_eq!(
            result_timeout(Some("1.5")).unwrap(),
            Some(Duration::from_millis(1500))
        );
        for bad in ["0", "-1", "nan", "x", "99999"] {
            assert!(result_timeout(Some(bad)).is_err(), "{bad}");
        }
    }
}
