//! `POST /api/task/apply|async-apply|send-task/{taskname}`: send a task by name, with
//! Flower's body: `{"args": [...], "kwargs": {...}, "countdown": s, "eta": "…",
//! "expires": s or "…", "queue": "…", "priority": n}`.
//!
//! The arguments reach the task as one MessagePack value: `arguments` (any JSON, this
//! monitor's own field) when given; else `kwargs` when not empty (a task whose
//! arguments are a struct); else the single element of a one-element `args`; else the
//! `args` list (a tuple). `apply` waits for the result (`?timeout`, seconds, default
//! [`APPLY_WAIT`]).

use std::time::{Duration, SystemTime};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use chrono::NaiveDateTime;
use hippo_queue_core::SendOptions;
use hippo_queue_core::codec::to_msgpack;
use serde_json::{Map, Value, json};

use crate::actor::Actor;
use crate::api::tasks::{ResultParams, result_json, result_timeout};
use crate::error::ApiError;
use crate::state::Shared;

/// How long `apply` waits for the result when no `?timeout` is given.
pub const APPLY_WAIT: Duration = Duration::from_secs(60);
/// Flower's date format of `eta` and `expires` (UTC).
pub const DATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.f";

/// A checked send request.
#[derive(Debug)]
pub struct SendRequest {
    /// The arguments as the task receives them.
    pub arguments: Value,
    /// Countdown, eta, expiry, queue, priority.
    pub options: SendOptions,
}

fn date(name: &str, s: &str) -> Result<SystemTime, ApiError> {
    NaiveDateTime::parse_from_str(s, DATE_FORMAT)
        .map(|t| SystemTime::from(t.and_utc()))
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "{name}: expected a UTC date as YYYY-MM-DD HH:MM:SS.ffffff (got {s:?})"
            ))
        })
}

fn seconds(name: &str, v: &Value) -> Result<Duration, ApiError> {
    let n = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    n.filter(|n| n.is_finite() && *n >= 0.0 && *n <= 366.0 * 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{name}: expected seconds from 0 to a year (got {v})"
            ))
        })
}

/// Reads a request body (empty: no arguments, default options).
pub fn parse_body(body: &[u8]) -> Result<SendRequest, ApiError> {
    let mut o: Map<String, Value> = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        match serde_json::from_slice(body) {
            Ok(Value::Object(o)) => o,
            Ok(_) => {
                return Err(ApiError::BadRequest(
                    "the body must be a JSON object".into(),
                ));
            }
            Err(e) => return Err(ApiError::BadRequest(format!("the body is not JSON: {e}"))),
        }
    };
    let args = match o.remove("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(ApiError::BadRequest("args must be an array".into())),
    };
    let kwargs = match o.remove("kwargs") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(k)) => k,
        Some(_) => return Err(ApiError::BadRequest("kwargs must be an object".into())),
    };
    let arguments = match o.remove("arguments") {
        Some(v) => v,
        None if !kwargs.is_empty() => {
            if !args.is_empty() {
                return Err(ApiError::BadRequest(
                    "args and kwargs together: a task takes one value; send `arguments` instead"
                        .into(),
                ));
            }
            Value::Object(kwargs)
        }
        None if args.len() == 1 => args.into_iter().next().unwrap_or(Value::Null),
        None if args.is_empty() => Value::Null,
        None => Value::Array(args),
    };
    let mut options = SendOptions::new();
    for (k, v) in o {
        options = match (k.as_str(), &v) {
            ("countdown", v) => options.countdown(seconds("countdown", v)?),
            ("eta", Value::String(s)) => options.eta(date("eta", s)?),
            ("expires", Value::String(s)) if s.contains('-') => {
                options.expires_at(date("expires", s)?)
            }
            ("expires", v) => options.expires_in(seconds("expires", v)?),
            ("queue", Value::String(q)) if !q.trim().is_empty() => options.queue(q.trim()),
            ("priority", Value::Number(n)) => match n.as_u64() {
                Some(p) if p <= 9 => options.priority(p as u8),
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "priority: expected 0 to 9 (got {n})"
                    )));
                }
            },
            (k, v) => {
                return Err(ApiError::BadRequest(format!(
                    "unknown or malformed option {k}={v} (expected args, kwargs, arguments, \
                     countdown, eta, expires, queue, priority)"
                )));
            }
        };
    }
    Ok(SendRequest { arguments, options })
}

async fn send(
    s: &Shared,
    actor: &Actor,
    action: &str,
    name: &str,
    body: &[u8],
) -> Result<String, ApiError> {
    let req = parse_body(body)?;
    let args =
        to_msgpack(&req.arguments).map_err(|e| ApiError::BadRequest(format!("arguments: {e}")))?;
    let id = s.app.send_by_name(name, args, req.options).await?;
    actor
        .record(
            s,
            action,
            Some(&id),
            None,
            format!("{name}({})", req.arguments),
        )
        .await;
    Ok(id)
}

/// `POST /api/task/apply/{taskname}`: sends and waits; `{task-id, state, result}`.
pub(crate) async fn apply(
    State(s): State<Shared>,
    actor: Actor,
    Path(name): Path<String>,
    Query(p): Query<ResultParams>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let wait = result_timeout(p.timeout.as_deref())?.unwrap_or(APPLY_WAIT);
    let id = send(&s, &actor, "apply", &name, &body).await?;
    let meta = s.source.wait(&id, wait).await?;
    Ok(Json(result_json(&id, meta.as_ref())))
}

/// `POST /api/task/async-apply/{taskname}`: `{task-id, state}`.
pub(crate) async fn async_apply(
    State(s): State<Shared>,
    actor: Actor,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let id = send(&s, &actor, "async-apply", &name, &body).await?;
    Ok(Json(json!({"task-id": id, "state": "PENDING"})))
}

/// `POST /api/task/send-task/{taskname}`: `{task-id, state}`.
pub(crate) async fn send_task(
    State(s): State<Shared>,
    actor: Actor,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let id = send(&s, &actor, "send-task", &name, &body).await?;
    Ok(Json(json!({"task-id": id, "state": "PENDING"})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_follow_the_documented_rule() {
        let a = |b: &str| parse_body(b.as_bytes()).unwrap().arguments;
        assert_eq!(a(""), Value::Null);
        assert_eq!(a(r#"{"args": [1, 2]}"#), json!([1, 2]));
        assert_eq!(a(r#"{"args": [7]}"#), json!(7));
        assert_eq!(a(r#"{"kwargs": {"user": "u1"}}"#), json!({"user": "u1"}));
        assert_eq!(a(r#"{"args": [1], "arguments": [[1]]}"#), json!([[1]]));
    }

    #[test]
    fn bad_bodies_are_named() {
        for (body, named) in [
            ("[1]", "JSON object"),
            ("{", "not JSON"),
            (r#"{"args": 3}"#, "args"),
            (r#"{"kwargs": []}"#, "kwargs"),
            (r#"{"args": [1], "kwargs": {"a": 1}}"#, "arguments"),
            (r#"{"countdown": -1}"#, "countdown"),
            (r#"{"eta": "tomorrow"}"#, "eta"),
            (r#"{"priority": 12}"#, "priority"),
            (r#"{"routing": "x"}"#, "routing"),
        ] {
            let e = parse_body(body.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(named), "{body}: {e}");
        }
        assert!(
            parse_body(br#"{"eta": "2030-01-02 03:04:05.000001", "queue": "q", "expires": 60}"#)
                .is_ok()
        );
    }
}
