//! `GET /api/queues/length`: the queues live workers consume, with Flower's
//! `messages` (waiting, every priority) and the rest of each queue's lengths.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use hippo_queue_core::backend::QueueStats;
use serde_json::{Value, json};

use axum::extract::Path;

use crate::actor::Actor;
use crate::error::ApiError;
use crate::state::Shared;

/// One queue as listed: Flower's `name` and `messages`, then the details.
pub fn queue_json(s: &QueueStats) -> Value {
    json!({
        "name": s.queue,
        "messages": s.waiting(),
        "waiting_by_priority": s.waiting_by_priority,
        "delayed": s.delayed,
        "reserved": s.reserved,
        "dead_letter": s.dead_letter,
        "paused": s.paused,
    })
}

/// The queues to show: those every live worker consumes.
pub(crate) async fn names(s: &Shared) -> Result<Vec<String>, ApiError> {
    let workers = s.source.workers().await?;
    let names: BTreeSet<String> = workers.into_iter().flat_map(|w| w.queues).collect();
    Ok(names.into_iter().collect())
}

/// `GET /api/queues/length`.
pub(crate) async fn length(State(s): State<Shared>) -> Result<Json<Value>, ApiError> {
    let names = names(&s).await?;
    let stats = s.source.queue_stats(&names).await?;
    let queues: Vec<Value> = stats.iter().map(queue_json).collect();
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
    fn messages_count_every_priority() {
        let mut s = QueueStats {
            queue: "default".into(),
            ..Default::default()
        };
        s.waiting_by_priority[0] = 2;
        s.waiting_by_priority[9] = 3;
        s.delayed = 1;
        let j = queue_json(&s);
        assert_eq!(j["messages"], 5);
        assert_eq!(j["delayed"], 1);
        assert_eq!(j["name"], "default");
    }
}
