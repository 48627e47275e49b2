//! Success and failure rates and runtime histograms per task type, for the
//! dashboard's charts (`GET /api/task/stats`), counted from the newest part of the
//! event stream: at most [`STATS_SCAN`] events are read, newest first, and the
//! answer says how far back they reach.
//!
//! Counting is [`TaskStats::add`], a pure function of the events, so the charts'
//! numbers are tested without a stream.

use std::collections::BTreeMap;

use hippo_queue_core::BackendError;
use hippo_queue_core::events::{Event, EventKind};
use serde_json::{Value, json};

use crate::metrics::RUNTIME_BUCKETS;
use crate::state::Source;
use crate::task_view::seconds;

/// Most events read for one answer.
pub const STATS_SCAN: usize = 20_000;
/// Events read per round trip.
const STATS_BATCH: usize = 2_000;
/// Most task types shown; the rest are counted under [`OTHER`].
pub const MAX_TYPES: usize = 50;
/// The name that stands for every task type past [`MAX_TYPES`].
pub const OTHER: &str = "other";
/// The width of a rate bucket.
pub const RATE_BUCKET_MS: u64 = 60_000;
/// Rate buckets shown (the last half hour, by minute).
pub const RATE_BUCKETS: usize = 30;

/// One task type's counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypeStats {
    /// task-succeeded events.
    pub succeeded: u64,
    /// task-failed events.
    pub failed: u64,
    /// task-retried events.
    pub retried: u64,
    /// Runtimes by bucket of [`RUNTIME_BUCKETS`], not cumulative; the last one counts
    /// those above the largest bound.
    pub runtime_counts: [u64; RUNTIME_BUCKETS.len() + 1],
    /// Sum of the runtimes, seconds.
    pub runtime_sum: f64,
    /// Succeeded and failed per minute, oldest first, the last ending at `now`.
    pub rate: [(u64, u64); RATE_BUCKETS],
}

/// Counts of every task type over the events read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskStats {
    /// By task type.
    pub types: BTreeMap<String, TypeStats>,
    /// The oldest event's time (ms), when any was read.
    pub since_ms: Option<u64>,
    /// Events read.
    pub scanned: usize,
    /// Whether the events read reach the oldest the stream keeps.
    pub complete: bool,
}

/// The bucket of a runtime (seconds) among [`RUNTIME_BUCKETS`] (`le`, as Prometheus).
pub fn runtime_bucket(runtime: f64) -> usize {
    RUNTIME_BUCKETS
        .iter()
        .position(|le| runtime <= *le)
        .unwrap_or(RUNTIME_BUCKETS.len())
}

/// The rate bucket of a time: `None` when it is older than the last
/// [`RATE_BUCKETS`] minutes before `now_ms` (or after it).
pub fn rate_bucket(at_ms: u64, now_ms: u64) -> Option<usize> {
    let back = now_ms.checked_sub(at_ms)? / RATE_BUCKET_MS;
    let back = usize::try_from(back).ok()?;
    (back < RATE_BUCKETS).then(|| RATE_BUCKETS - 1 - back)
}

impl TaskStats {
    /// Counts one event, at `now_ms`: finished and retried task events, by type.
    pub fn add(&mut self, e: &Event, now_ms: u64) {
        self.scanned += 1;
        self.since_ms = Some(self.since_ms.map_or(e.timestamp, |s| s.min(e.timestamp)));
        if !matches!(
            e.kind,
            EventKind::TaskSucceeded | EventKind::TaskFailed | EventKind::TaskRetried
        ) {
            return;
        }
        let name = e.task_name.as_deref().unwrap_or("");
        let name = if self.types.contains_key(name) || self.types.len() < MAX_TYPES {
            name
        } else {
            OTHER
        };
        let t = self.types.entry(name.to_string()).or_default();
        match e.kind {
            EventKind::TaskRetried => t.retried += 1,
            kind => {
                let ok = kind == EventKind::TaskSucceeded;
                if ok {
                    t.succeeded += 1;
                } else {
                    t.failed += 1;
                }
                if let Some(r) = e.runtime.filter(|r| r.is_finite() && *r >= 0.0) {
                    t.runtime_counts[runtime_bucket(r)] += 1;
                    t.runtime_sum += r;
                }
                if let Some(b) = rate_bucket(e.timestamp, now_ms) {
                    if ok {
                        t.rate[b].0 += 1;
                    } else {
                        t.rate[b].1 += 1;
                    }
                }
            }
        }
    }

    /// As JSON: the buckets' bounds once, then each type's counts.
    pub fn to_json(&self, now_ms: u64) -> Value {
        let types: serde_json::Map<String, Value> = self
            .types
            .iter()
            .map(|(name, t)| {
                let count: u64 = t.runtime_counts.iter().sum();
                (
                    name.clone(),
                    json!({
                        "succeeded": t.succeeded,
                        "failed": t.failed,
                        "retried": t.retried,
                        "runtime": {"counts": t.runtime_counts, "sum": t.runtime_sum, "count": count},
                        "rate": {
                            "succeeded": t.rate.iter().map(|r| r.0).collect::<Vec<_>>(),
                            "failed": t.rate.iter().map(|r| r.1).collect::<Vec<_>>(),
                        },
                    }),
                )
            })
            .collect();
        json!({
            "until": seconds(now_ms),
            "since": self.since_ms.map(seconds),
            "scanned": self.scanned,
            "complete": self.complete,
            "runtime_buckets": RUNTIME_BUCKETS,
            "rate_bucket_seconds": RATE_BUCKET_MS / 1000,
            "tasks": types,
        })
    }
}

/// Reads the newest events and counts them.
pub(crate) async fn read(source: &dyn Source, now_ms: u64) -> Result<TaskStats, BackendError> {
    let mut stats = TaskStats::default();
    let mut cursor: Option<String> = None;
    while stats.scanned < STATS_SCAN {
        let want = STATS_BATCH.min(STATS_SCAN - stats.scanned);
        let batch = source.events_before(cursor.as_deref(), want).await?;
        for (_, e) in &batch {
            stats.add(e, now_ms);
        }
        match batch.last() {
            Some((c, _)) if batch.len() == want => cursor = Some(c.clone()),
            _ => {
                stats.complete = true;
                break;
            }
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(kind: EventKind, task: &str, at: u64, runtime: Option<f64>) -> Event {
        let mut e = Event::task(kind, "id", task);
        e.timestamp = at;
        e.runtime = runtime;
        e
    }

    #[test]
    fn runtimes_fall_in_prometheus_buckets() {
        assert_eq!(runtime_bucket(0.0), 0);
        assert_eq!(runtime_bucket(0.005), 0);
        assert_eq!(runtime_bucket(0.006), 1);
        assert_eq!(runtime_bucket(10.0), RUNTIME_BUCKETS.len() - 1);
        assert_eq!(runtime_bucket(11.0), RUNTIME_BUCKETS.len());
    }

    #[test]
    fn rates_are_per_minute_ending_now() {
        let now = 100 * RATE_BUCKET_MS;
        assert_eq!(rate_bucket(now, now), Some(RATE_BUCKETS - 1));
        assert_eq!(
            rate_bucket(now - RATE_BUCKET_MS, now),
            Some(RATE_BUCKETS - 2)
        );
        assert_eq!(rate_bucket(now - 30 * RATE_BUCKET_MS, now), None);
        assert_eq!(rate_bucket(now + 1, now), None, "from the future");
    }

    #[test]
    fn finished_tasks_are_counted_by_type() {
        let now = 10 * RATE_BUCKET_MS;
        let mut s = TaskStats::default();
        s.add(
            &done(EventKind::TaskSucceeded, "add", now - 10, Some(0.02)),
            now,
        );
        s.add(
            &done(EventKind::TaskSucceeded, "add", now - 20, Some(20.0)),
            now,
        );
        s.add(
            &done(
                EventKind::TaskFailed,
                "add",
                now - RATE_BUCKET_MS,
                Some(0.5),
            ),
            now,
        );
        s.add(&done(EventKind::TaskRetried, "add", now, None), now);
        s.add(
            &done(
                EventKind::TaskReceived,
                "add",
                now - 5 * RATE_BUCKET_MS,
                None,
            ),
            now,
        );
        let add = &s.types["add"];
        assert_eq!((add.succeeded, add.failed, add.retried), (2, 1, 1));
        assert_eq!(add.runtime_counts[runtime_bucket(0.02)], 1);
        assert_eq!(add.runtime_counts[RUNTIME_BUCKETS.len()], 1);
        assert_eq!(add.rate[RATE_BUCKETS - 1], (2, 0));
        assert_eq!(add.rate[RATE_BUCKETS - 2], (0, 1));
        assert_eq!(s.scanned, 5);
        assert_eq!(s.since_ms, Some(now - 5 * RATE_BUCKET_MS));
        let j = s.to_json(now);
        assert_eq!(j["tasks"]["add"]["runtime"]["count"], 3);
        assert_eq!(j["tasks"]["add"]["rate"]["succeeded"][RATE_BUCKETS - 1], 2);
        assert_eq!(
            j["runtime_buckets"].as_array().map(Vec::len),
            Some(RUNTIME_BUCKETS.len())
        );
    }

    #[test]
    fn task_types_are_bounded() {
        let mut s = TaskStats::default();
        for i in 0..(MAX_TYPES + 5) {
            s.add(
                &done(EventKind::TaskSucceeded, &format!("t{i}"), 1, None),
                1,
            );
        }
        assert_eq!(s.types.len(), MAX_TYPES + 1);
        assert_eq!(s.types[OTHER].succeeded, 5);
    }
}
