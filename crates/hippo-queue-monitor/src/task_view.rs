//! A task record as Flower shows it (`/api/tasks`, `/api/task/info`): the same field
//! names, seconds since the epoch as floats, `null` for what is not known.
//!
//! The record carries the time of its latest write (`date_done`), so the time field
//! of the state it is in is that time: `succeeded` for SUCCESS, `failed` for FAILURE,
//! and so on. `received` is that time too until records carry when a worker got them.

use hippo_queue_core::codec::from_msgpack;
use hippo_queue_core::{TaskMeta, TaskState};
use serde_json::{Map, Value, json};

/// Seconds since the epoch, as Flower writes times.
pub fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// A task's output as JSON (`null` when it has none or it cannot be read).
pub fn result_value(meta: &TaskMeta) -> Value {
    meta.result
        .as_deref()
        .and_then(|bytes| from_msgpack::<Value>(bytes).ok())
        .unwrap_or(Value::Null)
}

/// The error as Flower's `exception` field: `Kind('message')`.
pub fn exception(meta: &TaskMeta) -> Value {
    meta.error.as_ref().map_or(Value::Null, |e| {
        json!(format!("{}({:?})", e.kind, e.message))
    })
}

/// The record as Flower's task dictionary.
pub fn task_dict(meta: &TaskMeta) -> Value {
    let at = json!(seconds(meta.date_done));
    let when = |s: TaskState| {
        if meta.state == s {
            at.clone()
        } else {
            Value::Null
        }
    };
    let result = match result_value(meta) {
        Value::Null => Value::Null,
        v => Value::String(v.to_string()),
    };
    let mut m = Map::new();
    m.insert("uuid".into(), json!(meta.task_id));
    m.insert("name".into(), json!(meta.name));
    m.insert("state".into(), json!(meta.state.as_str()));
    m.insert("args".into(), Value::Null);
    m.insert("kwargs".into(), Value::Null);
    m.insert("result".into(), result);
    m.insert("received".into(), at.clone());
    m.insert("sent".into(), Value::Null);
    m.insert("started".into(), when(TaskState::Started));
    m.insert("succeeded".into(), when(TaskState::Success));
    m.insert("failed".into(), when(TaskState::Failure));
    m.insert("retried".into(), when(TaskState::Retry));
    m.insert("revoked".into(), when(TaskState::Revoked));
    m.insert("rejected".into(), when(TaskState::Rejected));
    m.insert("runtime".into(), Value::Null);
    m.insert("retries".into(), json!(meta.retries));
    m.insert("worker".into(), json!(meta.worker));
    m.insert("eta".into(), Value::Null);
    m.insert("expires".into(), Value::Null);
    m.insert("exception".into(), exception(meta));
    m.insert(
        "traceback".into(),
        meta.error
            .as_ref()
            .map_or(Value::Null, |e| json!(e.traceback())),
    );
    m.insert("exchange".into(), Value::Null);
    m.insert("routing_key".into(), json!(meta.queue));
    m.insert("queue".into(), json!(meta.queue));
    m.insert("client".into(), Value::Null);
    m.insert("clock".into(), json!(0));
    m.insert("timestamp".into(), at);
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hippo_queue_core::TaskFailure;
    use hippo_queue_core::codec::to_msgpack;

    #[test]
    fn a_success_shows_its_result_as_text_and_its_time_as_succeeded() {
        let mut m = TaskMeta::new("t1", "add", TaskState::Success);
        m.result = Some(to_msgpack(&7).unwrap());
        m.date_done = 1_500;
        m.worker = Some("w1".into());
        let d = task_dict(&m);
        assert_eq!(d["result"], "7");
        assert_eq!(d["succeeded"], 1.5);
        assert_eq!(d["failed"], Value::Null);
        assert_eq!(d["worker"], "w1");
        assert_eq!(d["state"], "SUCCESS");
        assert_eq!(d["uuid"], "t1");
    }

    #[test]
    fn a_failure_shows_exception_and_traceback() {
        let mut m = TaskMeta::new("t2", "div", TaskState::Failure);
        m.error = Some(TaskFailure::new("ZeroDivision", "division by zero"));
        let d = task_dict(&m);
        assert_eq!(d["exception"], "ZeroDivision(\"division by zero\")");
        assert_eq!(d["traceback"], "ZeroDivision: division by zero");
        assert_eq!(d["result"], Value::Null);
    }
}
