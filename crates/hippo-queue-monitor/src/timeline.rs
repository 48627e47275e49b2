//! A task's timeline: every event of one task in the event stream (sent, received,
//! started, retried, succeeded, failed, revoked, rejected) and the operator actions
//! on it (who, from where, what, when), oldest first by their time.
//!
//! The stream has no index by task, so the newest [`TIMELINE_SCAN`] events are read,
//! newest first, in batches of [`TIMELINE_BATCH`], and at most [`TIMELINE_MAX`] of the
//! task's are kept: the cost of a timeline is bounded whatever the stream's length.
//! The answer says whether the scan reached the oldest event kept (`complete`), so a
//! task older than the scan shows as such rather than as having no history.

use hippo_queue_core::BackendError;
use hippo_queue_core::events::{Event, EventKind};
use serde_json::{Value, json};

use crate::state::Source;
use crate::task_view::seconds;

/// Most events read from the stream for one timeline.
pub const TIMELINE_SCAN: usize = 20_000;
/// Events read per round trip.
pub const TIMELINE_BATCH: usize = 2_000;
/// Most events of one task kept (the newest).
pub const TIMELINE_MAX: usize = 200;

/// The events of one task found in the newest part of the stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    /// The task's events, oldest first.
    pub events: Vec<Event>,
    /// Events read to find them.
    pub scanned: usize,
    /// Whether the scan reached the oldest event the stream keeps.
    pub complete: bool,
}

/// Keeps the events of `task_id` from a batch read newest first, up to
/// [`TIMELINE_MAX`] in `found` (newest first too).
pub fn keep_task_events(found: &mut Vec<Event>, batch: &[(String, Event)], task_id: &str) {
    for (_, e) in batch {
        if found.len() >= TIMELINE_MAX {
            return;
        }
        if e.task_id.as_deref() == Some(task_id) {
            found.push(e.clone());
        }
    }
}

/// Orders a task's events (in stream order) by their time, oldest first; events of
/// the same millisecond keep their stream order. Workers write task events through a
/// batch, so the stream can hold an operator's revoke before the task-started event
/// that preceded it.
pub fn oldest_first(events: &mut [Event]) {
    events.sort_by_key(|e| e.timestamp);
}

/// Reads the timeline of `task_id`.
pub(crate) async fn read(source: &dyn Source, task_id: &str) -> Result<Timeline, BackendError> {
    let mut found = Vec::new();
    let mut cursor: Option<String> = None;
    let mut scanned = 0;
    let mut complete = false;
    while scanned < TIMELINE_SCAN && found.len() < TIMELINE_MAX {
        let want = TIMELINE_BATCH.min(TIMELINE_SCAN - scanned);
        let batch = source.events_before(cursor.as_deref(), want).await?;
        scanned += batch.len();
        keep_task_events(&mut found, &batch, task_id);
        match batch.last() {
            Some((c, _)) if batch.len() == want => cursor = Some(c.clone()),
            _ => {
                complete = true;
                break;
            }
        }
    }
    found.reverse();
    oldest_first(&mut found);
    Ok(Timeline {
        events: found,
        scanned,
        complete,
    })
}

/// One event as a timeline row: its Celery type, time (seconds), worker, and what
/// the event carries (retries, runtime, the error, the operator's action).
pub fn event_json(e: &Event) -> Value {
    let mut v = json!({
        "type": e.kind.as_str(),
        "timestamp": seconds(e.timestamp),
        "worker": e.worker,
        "queue": e.queue,
        "retries": e.retries,
        "runtime": e.runtime,
        "exception": e.error.as_ref().map(|f| format!("{}({:?})", f.kind, f.message)),
    });
    if let Some(op) = &e.operator {
        v["operator"] = json!({
            "action": op.action,
            "who": op.who,
            "from": op.from,
            "detail": op.detail,
        });
    }
    v
}

/// The answer of `GET /api/task/timeline/{id}`: every event, and the operator
/// actions apart.
pub fn timeline_json(task_id: &str, t: &Timeline) -> Value {
    let events: Vec<Value> = t.events.iter().map(event_json).collect();
    let actions: Vec<Value> = t
        .events
        .iter()
        .filter(|e| e.kind == EventKind::OperatorAction)
        .map(event_json)
        .collect();
    json!({
        "task-id": task_id,
        "events": events,
        "actions": actions,
        "scanned": t.scanned,
        "complete": t.complete,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hippo_queue_core::TaskFailure;
    use hippo_queue_core::events::OperatorAction;

    fn ev(kind: EventKind, id: &str, at: u64) -> (String, Event) {
        let mut e = Event::task(kind, id, "add");
        e.timestamp = at;
        (at.to_string(), e)
    }

    #[test]
    fn only_the_tasks_events_are_kept_and_at_most_the_cap() {
        let batch = vec![
            ev(EventKind::TaskSucceeded, "a", 3),
            ev(EventKind::TaskStarted, "b", 2),
            ev(EventKind::TaskReceived, "a", 1),
        ];
        let mut found = Vec::new();
        keep_task_events(&mut found, &batch, "a");
        assert_eq!(
            found.iter().map(|e| e.kind).collect::<Vec<_>>(),
            [EventKind::TaskSucceeded, EventKind::TaskReceived]
        );
        let many: Vec<(String, Event)> = (0..TIMELINE_MAX as u64 + 10)
            .map(|i| ev(EventKind::TaskRetried, "a", i))
            .collect();
        let mut found = Vec::new();
        keep_task_events(&mut found, &many, "a");
        assert_eq!(found.len(), TIMELINE_MAX);
    }

    #[test]
    fn events_are_ordered_by_time_then_stream_order() {
        let mut events: Vec<Event> = [
            ev(EventKind::TaskReceived, "a", 10),
            ev(EventKind::TaskRevoked, "a", 30),
            ev(EventKind::TaskStarted, "a", 20),
            ev(EventKind::TaskSucceeded, "a", 30),
        ]
        .into_iter()
        .map(|(_, e)| e)
        .collect();
        oldest_first(&mut events);
        let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                EventKind::TaskReceived,
                EventKind::TaskStarted,
                EventKind::TaskRevoked,
                EventKind::TaskSucceeded
            ]
        );
    }

    #[test]
    fn rows_carry_the_error_and_the_operator() {
        let (_, mut failed) = ev(EventKind::TaskFailed, "a", 1_500);
        failed.error = Some(TaskFailure::new("Boom", "it broke"));
        failed.worker = Some("w1".into());
        let action = Event::operator(
            OperatorAction::new("revoke", "admin", "127.0.0.1", "terminate=false"),
            Some("a"),
            None,
        );
        let t = Timeline {
            events: vec![failed, action],
            scanned: 7,
            complete: true,
        };
        let j = timeline_json("a", &t);
        assert_eq!(j["events"][0]["type"], "task-failed");
        assert_eq!(j["events"][0]["timestamp"], 1.5);
        assert_eq!(j["events"][0]["worker"], "w1");
        assert_eq!(j["events"][0]["exception"], "Boom(\"it broke\")");
        assert_eq!(j["events"][1]["operator"]["who"], "admin");
        assert_eq!(j["actions"].as_array().map(Vec::len), Some(1));
        assert_eq!(j["actions"][0]["operator"]["action"], "revoke");
        assert_eq!(j["scanned"], 7);
        assert_eq!(j["complete"], true);
    }
}
