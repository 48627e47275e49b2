//! `GET /api/queues/length`: the queues live workers consume, with Flower's
//! `messages` (waiting, every priority) and the rest of each queue's lengths, and how
//! long the oldest waiting message of each priority has waited.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use hippo_queue_core::BackendError;
use hippo_queue_core::backend::{OldestWaiting, QueueStats};
use hippo_queue_core::events::WorkerInfo;
use serde_json::{Value, json};

use axum::extract::Path;

use crate::actor::Actor;
use crate::error::ApiError;
use crate::state::{Shared, Source};

/// One queue as listed: Flower's `name` and `messages`, then the details, with the
/// ages (seconds at `now_ms`) of the oldest waiting messages from `oldest` when it is
/// this queue's (`null` where none waits).
pub fn queue_json(s: &QueueStats, oldest: Option<&OldestWaiting>, now_ms: u64) -> Value {
    let ages: [Option<f64>; 10] = oldest
        .filter(|o| o.queue == s.queue)
        .map_or([None; 10], |o| {
            o.ages_ms(now_ms).map(|a| a.map(|ms| ms as f64 / 1000.0))
        });
    let oldest_age = ages.iter().flatten().copied().reduce(f64::max);
    json!({
        "name": s.queue,
        "messages": s.waiting(),
        "waiting_by_priority": s.waiting_by_priority,
        "delayed": s.delayed,
        "reserved": s.reserved,
        "dead_letter": s.dead_letter,
        "paused": s.paused,
        "oldest_waiting_seconds": oldest_age,
        "oldest_waiting_seconds_by_priority": ages,
    })
}

/// The queues the given workers consume, each once, by name.
pub fn consumed<'a>(workers: impl IntoIterator<Item = &'a WorkerInfo>) -> Vec<String> {
    let names: BTreeSet<&str> = workers
        .into_iter()
        .flat_map(|w| w.queues.iter().map(String::as_str))
        .collect();
    names.into_iter().map(str::to_string).collect()
}

/// The queues to show: those the live workers consume, and those of the workers seen
/// lately (a queue whose workers all stopped is where messages pile up).
pub(crate) async fn names(source: &dyn Source) -> Result<Vec<String>, BackendError> {
    let (live, seen) = tokio::try_join!(source.workers(), source.workers_seen())?;
    Ok(consumed(live.iter().chain(&seen)))
}

/// `GET /api/queues/length`.
pub(crate) async fn length(State(s): State<Shared>) -> Result<Json<Value>, ApiError> {
    let names = names(s.source.as_ref()).await?;
    let (stats, oldest) = tokio::try_join!(
        s.source.queue_stats(&names),
        s.source.oldest_waiting(&names)
    )?;
    let now = hippo_queue_core::time::now_ms();
    let queues: Vec<Value> = stats
        .iter()
        .enumerate()
        .map(|(i, q)| queue_json(q, oldest.get(i), now))
        .collect();
    Ok(Json(json!({"active_queues": queues})))
}

async fn set_paused(
    s: &Shared,
    actor: &Actor,
    queue: &str,
    paused: bool,
) -> Result<Json<Value>, ApiError> {
    let changed = s.source.set_paused(queue, paused).await?;
    let (action, verb) = if paused {
        ("pause", "Paused")
    } else {
        ("resume", "Resumed")
    };
    let detail = if changed { "changed" } else { "already so" };
    actor
        .record(s, action, None, None, format!("queue {queue}: {detail}"))
        .await;
    Ok(Json(
        json!({"message": format!("{verb} '{queue}'"), "changed": changed}),
    ))
}

/// `POST /api/queue/pause/{queue}`: durable; workers lease nothing from it.
pub(crate) async fn pause(
    State(s): State<Shared>,
    actor: Actor,
    Path(queue): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_paused(&s, &actor, &queue, true).await
}

/// `POST /api/queue/resume/{queue}`.
pub(crate) async fn resume(
    State(s): State<Shared>,
    actor: Actor,
    Path(queue): Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_paused(&s, &actor, &queue, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_are_listed_once_by_name() {
        let mut a = WorkerInfo::named("a");
        a.queues = vec!["default".into(), "images".into()];
        let mut b = WorkerInfo::named("b");
        b.queues = vec!["default".into(), "emails".into()];
        assert_eq!(consumed([&a, &b]), ["default", "emails", "images"]);
    }

    #[test]
    fn messages_count_every_priority() {
        let mut s = QueueStats {
            queue: "default".into(),
            ..Default::default()
        };
        s.waiting_by_priority[0] = 2;
        s.waiting_by_priority[9] = 3;
        s.delayed = 1;
        let j = queue_json(&s, None, 0);
        assert_eq!(j["messages"], 5);
        assert_eq!(j["delayed"], 1);
        assert_eq!(j["name"], "default");
        assert_eq!(j["oldest_waiting_seconds"], Value::Null);
    }

    #[test]
    fn ages_are_seconds_per_priority_and_the_oldest_overall() {
        let s = QueueStats {
            queue: "default".into(),
            ..Default::default()
        };
        let mut o = OldestWaiting::new("default");
        o.since_by_priority[0] = Some(10_000);
        o.since_by_priority[9] = Some(7_500);
        let j = queue_json(&s, Some(&o), 12_000);
        assert_eq!(j["oldest_waiting_seconds_by_priority"][0], 2.0);
        assert_eq!(j["oldest_waiting_seconds_by_priority"][9], 4.5);
        assert_eq!(j["oldest_waiting_seconds_by_priority"][5], Value::Null);
        assert_eq!(j["oldest_waiting_seconds"], 4.5);
        // another queue's ages are not this one's
        let other = OldestWaiting::new("other");
        assert_eq!(
            queue_json(&s, Some(&other), 12_000)["oldest_waiting_seconds"],
            Value::Null
        );
    }
}
