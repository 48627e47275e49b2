//! `GET /api/workers`: the live workers of the registry, each inspected now (Flower's
//! `?refresh`, always: the monitor keeps no cache), and the workers that stopped
//! within [`WORKER_SEEN_FOR`](hippo_queue_core::backend::WORKER_SEEN_FOR) (their heartbeats stopped, or they left), with their
//! last record and `status: false`, as Flower shows offline workers. Both lists are
//! read from the backend's registry: the monitor remembers nothing.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, State};
use hippo_queue_core::control::{Command, Reply, ReplyBody, TaskInfo};
use hippo_queue_core::events::WorkerInfo;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::state::{INSPECT_TIMEOUT, Shared};
use crate::task_view::seconds;

/// Query parameters (Flower's `refresh` is accepted and changes nothing: inspection
/// always runs).
#[derive(Debug, Default, Deserialize)]
pub struct WorkerParams {
    /// Only this worker (404 if it is neither live nor seen lately).
    pub workername: Option<String>,
    /// `{worker: true}` only.
    pub status: Option<String>,
}

/// Flower's boolean parameters: `true`, `1`, `yes`, `on` (any case).
pub fn truthy(v: Option<&str>) -> bool {
    v.is_some_and(|s| {
        matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "true" | "1" | "yes" | "on"
        )
    })
}

fn task_json(worker: &WorkerInfo, t: &TaskInfo, scheduled: bool) -> Value {
    let request = json!({
        "id": t.id,
        "name": t.name,
        "type": t.name,
        "args": Value::Null,
        "kwargs": Value::Null,
        "hostname": worker.id,
        "time_start": if scheduled { Value::Null } else { json!(t.time.map(seconds)) },
        "acknowledged": false,
        "delivery_info": {
            "exchange": "",
            "routing_key": t.queue,
            "priority": t.priority,
            "redelivered": Value::Null,
        },
        "worker_pid": worker.pid,
    });
    if scheduled {
        json!({"eta": t.time.map(seconds), "priority": t.priority, "request": request})
    } else {
        request
    }
}

/// The replies of one command, by worker.
fn by_worker(replies: Vec<Reply>) -> BTreeMap<String, ReplyBody> {
    replies.into_iter().map(|r| (r.worker, r.body)).collect()
}

/// The workers seen lately that are not live: those that stopped, by id.
pub fn offline_workers(live: &[WorkerInfo], seen: Vec<WorkerInfo>) -> Vec<WorkerInfo> {
    let live: std::collections::BTreeSet<&str> = live.iter().map(|w| w.id.as_str()).collect();
    let mut out: Vec<WorkerInfo> = seen
        .into_iter()
        .filter(|w| !live.contains(w.id.as_str()))
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// One worker as Flower shows it, from its registry record and whatever it answered;
/// `online` is Flower's `status`.
fn worker_json(
    info: &WorkerInfo,
    online: bool,
    answers: &[(&str, &BTreeMap<String, ReplyBody>)],
) -> Value {
    let mut w = Map::new();
    let mut stats = json!({
        "hostname": info.hostname,
        "pid": info.pid,
        "clock": "0",
        "prefetch_count": info.concurrency.saturating_mul(info.prefetch_multiplier),
        "pool": {
            "max-concurrency": info.concurrency,
            "implementation": info.pool,
            "processes": [],
        },
        "broker": {"transport": "redis"},
        "total": {},
        "uptime": Value::Null,
        "rusage": {},
    });
    let mut active_queues: Vec<Value> = info
        .queues
        .iter()
        .map(|q| json!({"name": q, "routing_key": q}))
        .collect();
    let mut lists: BTreeMap<&str, Value> =
        ["registered", "active", "reserved", "scheduled", "revoked"]
            .into_iter()
            .map(|k| (k, json!([])))
            .collect();
    for (what, replies) in answers {
        match (replies.get(&info.id), *what) {
            (Some(ReplyBody::Stats(s)), _) => {
                let mut total: BTreeMap<&str, u64> = BTreeMap::new();
                for (name, n) in s.succeeded_by_task.iter().chain(&s.failed_by_task) {
                    *total.entry(name).or_default() += n;
                }
                stats["total"] = json!(total);
                stats["uptime"] = json!(s.uptime);
                stats["rusage"] = json!({"maxrss": s.memory_rss / 1024});
                if let Some((max, min)) = s.autoscale {
                    stats["autoscaler"] = json!({"max": max, "min": min});
                }
            }
            (Some(ReplyBody::Queues(qs)), _) => {
                active_queues = qs
                    .iter()
                    .map(|q| json!({"name": q.name, "routing_key": q.routing_key, "priority": q.priority}))
                    .collect();
            }
            (Some(ReplyBody::Names(names)), key) => {
                lists.insert(key, json!(names));
            }
            (Some(ReplyBody::Tasks(tasks)), key) => {
                let scheduled = key == "scheduled";
                let items: Vec<Value> = tasks
                    .iter()
                    .map(|t| task_json(info, t, scheduled))
                    .collect();
                lists.insert(key, json!(items));
            }
            _ => {}
        }
    }
    w.insert("stats".into(), stats);
    w.insert("active_queues".into(), json!(active_queues));
    for (k, v) in lists {
        w.insert(k.into(), v);
    }
    w.insert("conf".into(), json!({}));
    w.insert("timestamp".into(), json!(seconds(info.heartbeat_at)));
    w.insert("status".into(), json!(online));
    w.insert("registry".into(), json!(info));
    Value::Object(w)
}

/// `GET /api/workers`.
pub(crate) async fn list(
    State(s): State<Shared>,
    Query(p): Query<WorkerParams>,
) -> Result<Json<Value>, ApiError> {
    let (workers, seen) = tokio::try_join!(s.source.workers(), s.source.workers_seen())?;
    let mut offline = offline_workers(&workers, seen);
    let mut workers = workers;
    if let Some(name) = p.workername.as_deref().filter(|n| !n.is_empty()) {
        workers.retain(|w| w.id == name);
        offline.retain(|w| w.id == name);
        if workers.is_empty() && offline.is_empty() {
            return Err(ApiError::NotFound(format!("Unknown worker '{name}'")));
        }
    }
    if truthy(p.status.as_deref()) {
        let status: Map<String, Value> = workers
            .iter()
            .map(|w| (w.id.clone(), json!(true)))
            .chain(offline.iter().map(|w| (w.id.clone(), json!(false))))
            .collect();
        return Ok(Json(Value::Object(status)));
    }
    let mut out: Map<String, Value> = offline
        .iter()
        .map(|w| (w.id.clone(), worker_json(w, false, &[])))
        .collect();
    if workers.is_empty() {
        return Ok(Json(Value::Object(out)));
    }
    let ids: Vec<String> = workers.iter().map(|w| w.id.clone()).collect();
    let control = s.app.control();
    let ask = |c: Command| {
        let control = control.clone();
        let ids = ids.clone();
        async move {
            control
                .call(Some(&ids), c, INSPECT_TIMEOUT)
                .await
                .map(by_worker)
        }
    };
    let (stats, queues, registered, active, reserved, scheduled, revoked) = tokio::try_join!(
        ask(Command::Stats),
        ask(Command::ActiveQueues),
        ask(Command::Registered),
        ask(Command::Active),
        ask(Command::Reserved),
        ask(Command::Scheduled),
        ask(Command::Revoked),
    )?;
    let answers = [
        ("stats", &stats),
        ("active_queues", &queues),
        ("registered", &registered),
        ("active", &active),
        ("reserved", &reserved),
        ("scheduled", &scheduled),
        ("revoked", &revoked),
    ];
    out.extend(
        workers
            .iter()
            .map(|w| (w.id.clone(), worker_json(w, true, &answers))),
    );
    Ok(Json(Value::Object(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flower_booleans() {
        for t in ["true", "True", "1", "yes", "on"] {
            assert!(truthy(Some(t)), "{t}");
        }
        for f in ["false", "0", "", "no"] {
            assert!(!truthy(Some(f)), "{f}");
        }
        assert!(!truthy(None));
    }

    #[test]
    fn a_worker_that_did_not_answer_shows_its_registry_record() {
        let mut info = WorkerInfo::named("w1");
        info.queues = vec!["default".into()];
        info.concurrency = 4;
        info.prefetch_multiplier = 2;
        let w = worker_json(&info, true, &[]);
        assert_eq!(w["stats"]["pool"]["max-concurrency"], 4);
        assert_eq!(w["stats"]["prefetch_count"], 8);
        assert_eq!(w["active_queues"][0]["name"], "default");
        assert_eq!(w["registered"], json!([]));
        assert_eq!(w["status"], true);
        assert_eq!(worker_json(&info, false, &[])["status"], false);
    }

    #[test]
    fn offline_workers_are_those_seen_and_not_live() {
        let live = vec![WorkerInfo::named("a"), WorkerInfo::named("c")];
        let seen = vec![
            WorkerInfo::named("d"),
            WorkerInfo::named("c"),
            WorkerInfo::named("b"),
            WorkerInfo::named("a"),
        ];
        let ids: Vec<String> = offline_workers(&live, seen)
            .into_iter()
            .map(|w| w.id)
            .collect();
        assert_eq!(ids, ["b", "d"]);
        assert!(offline_workers(&live, Vec::new()).is_empty());
    }
}
