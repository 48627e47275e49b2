//! `GET /metrics`: Flower's Prometheus metrics (same names and labels, so existing
//! dashboards and alerts work), plus queue depths and dead letters, exposed through
//! `prometheus-client`.
//!
//! 1. Counters and the runtime histogram come from the event stream: each scrape reads
//!    the events after the last one it counted (from the oldest kept, on the first
//!    scrape), at most [`EVENTS_PER_SCRAPE`] of them, so a long stream is caught up
//!    over a few scrapes. Counters restart with the monitor, as Prometheus expects.
//! 2. Gauges of workers and queues are read anew on each scrape: live workers from the
//!    registry (`flower_worker_online` 1; 0 for a worker the registry saw lately, or
//!    one seen in events, that is gone), queue lengths and the age of the oldest
//!    waiting message from the queues they consume.
//! 3. Label cardinality is bounded: past [`MAX_SERIES`] series in one family, new
//!    workers and tasks are counted under `other`.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use hippo_queue_core::BackendError;
use hippo_queue_core::events::{Event, EventKind};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::state::Source;

/// Most series in one metric family before new label values become `other`.
pub const MAX_SERIES: usize = 5_000;
/// Most events one scrape reads.
pub const EVENTS_PER_SCRAPE: usize = 200_000;
/// Longest a scrape spends reading events.
pub const EVENTS_TIME_BUDGET: Duration = Duration::from_secs(2);
/// Events read per round trip.
const EVENT_BATCH: usize = 2_000;
/// Received-but-not-started tasks remembered for the prefetch time.
const MAX_PENDING: usize = 10_000;
/// The runtime buckets, seconds (those of Python's prometheus_client, as Flower's).
pub const RUNTIME_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// The label value that stands for every series past [`MAX_SERIES`].
pub const OTHER: &str = "other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    worker: String,
    r#type: String,
    task: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerTask {
    worker: String,
    task: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabel {
    worker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueuePriority {
    queue: String,
    priority: String,
}

type RuntimeFamily = Family<WorkerTask, Histogram, fn() -> Histogram>;

fn runtime_histogram() -> Histogram {
    Histogram::new(RUNTIME_BUCKETS)
}

/// Where the event stream was read up to, and what is needed between events.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    cursor: Option<String>,
    /// Task id -> (worker, task, received ms), oldest first, bounded.
    pending: HashMap<String, (String, String, u64)>,
    order: VecDeque<String>,
    /// Workers seen in events (bounded), shown offline once gone from the registry.
    seen: BTreeSet<String>,
    /// Series created per family: events, runtime, prefetch time, prefetched.
    series: [usize; 4],
}

/// The metric families and the event tail.
pub(crate) struct Metrics {
    registry: Registry,
    events: Family<EventLabels, Counter>,
    runtime: RuntimeFamily,
    prefetch_time: Family<WorkerTask, Gauge<f64, AtomicU64>>,
    prefetched: Family<WorkerTask, Gauge>,
    online: Family<WorkerLabel, Gauge>,
    executing: Family<WorkerLabel, Gauge>,
    waiting: Family<QueuePriority, Gauge>,
    oldest: Family<QueuePriority, Gauge<f64, AtomicU64>>,
    delayed: Family<QueueLabel, Gauge>,
    reserved: Family<QueueLabel, Gauge>,
    dead: Family<QueueLabel, Gauge>,
    tail: tokio::sync::Mutex<Tail>,
}

/// The label set to use in a family holding `series` series: `wanted` when it is
/// there already or there is room (counting it in), else `other`.
fn admit<S: Clone>(exists: bool, series: &mut usize, wanted: S, other: S) -> S {
    if exists {
        wanted
    } else if *series < MAX_SERIES {
        *series += 1;
        wanted
    } else {
        other
    }
}

/// [`admit`] for a (worker, task) family.
fn bounded<M, C>(
    family: &Family<WorkerTask, M, C>,
    series: &mut usize,
    worker: &str,
    task: &str,
) -> WorkerTask
where
    M: Clone,
    C: prometheus_client::metrics::family::MetricConstructor<M>,
{
    let wanted = WorkerTask {
        worker: worker.to_string(),
        task: task.to_string(),
    };
    let exists = family.get(&wanted).is_some();
    let other = WorkerTask {
        worker: OTHER.into(),
        task: OTHER.into(),
    };
    admit(exists, series, wanted, other)
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();
        let events = Family::<EventLabels, Counter>::default();
        let runtime: RuntimeFamily = Family::new_with_constructor(runtime_histogram);
        let prefetch_time = Family::<WorkerTask, Gauge<f64, AtomicU64>>::default();
        let prefetched = Family::<WorkerTask, Gauge>::default();
        let online = Family::<WorkerLabel, Gauge>::default();
        let executing = Family::<WorkerLabel, Gauge>::default();
        let waiting = Family::<QueuePriority, Gauge>::default();
        let oldest = Family::<QueuePriority, Gauge<f64, AtomicU64>>::default();
        let delayed = Family::<QueueLabel, Gauge>::default();
        let reserved = Family::<QueueLabel, Gauge>::default();
        let dead = Family::<QueueLabel, Gauge>::default();
        registry.register("flower_events", "Number of events", events.clone());
        registry.register(
            "flower_task_runtime_seconds",
            "Task runtime",
            runtime.clone(),
        );
        registry.register(
            "flower_task_prefetch_time_seconds",
            "The time the task spent waiting at the worker to be executed.",
            prefetch_time.clone(),
        );
        registry.register(
            "flower_worker_prefetched_tasks",
            "Number of tasks of given type prefetched at a worker",
            prefetched.clone(),
        );
        registry.register(
            "flower_worker_online",
            "Worker online status",
            online.clone(),
        );
        registry.register(
            "flower_worker_number_of_currently_executing_tasks",
            "Number of tasks currently executing at a worker",
            executing.clone(),
        );
        registry.register(
            "hippo_queue_waiting_messages",
            "Messages waiting in a queue, by priority",
            waiting.clone(),
        );
        registry.register(
            "hippo_queue_oldest_waiting_seconds",
            "Age of the oldest message waiting in a queue, by priority (0 when none waits)",
            oldest.clone(),
        );
        registry.register(
            "hippo_queue_delayed_messages",
            "Messages of a queue waiting for their countdown, eta or retry",
            delayed.clone(),
        );
        registry.register(
            "hippo_queue_reserved_messages",
            "Messages of a queue leased to workers (prefetched or running)",
            reserved.clone(),
        );
        registry.register(
            "hippo_queue_dead_letters",
            "Dead-lettered messages of a queue",
            dead.clone(),
        );
        Metrics {
            registry,
            events,
            runtime,
            prefetch_time,
            prefetched,
            online,
            executing,
            waiting,
            oldest,
            delayed,
            reserved,
            dead,
            tail: tokio::sync::Mutex::new(Tail::default()),
        }
    }

    /// Counts one event (Flower's rules): task events by worker, type and task; the
    /// runtime of finished tasks; prefetch time and prefetched tasks between
    /// received and started; worker online and offline.
    pub(crate) fn apply(&self, tail: &mut Tail, e: &Event) {
        let worker = e.worker.clone().unwrap_or_default();
        if !worker.is_empty() && !tail.seen.contains(&worker) && tail.seen.len() < MAX_SERIES {
            tail.seen.insert(worker.clone());
        }
        if e.kind.is_task() {
            let id = e.task_id.clone().unwrap_or_default();
            let known = tail.pending.get(&id).map(|(_, t, _)| t.clone());
            let task = e.task_name.clone().or(known).unwrap_or_default();
            let labels = EventLabels {
                worker: worker.clone(),
                r#type: e.kind.as_str().to_string(),
                task: task.clone(),
            };
            let other = EventLabels {
                worker: OTHER.into(),
                r#type: e.kind.as_str().to_string(),
                task: OTHER.into(),
            };
            let exists = self.events.get(&labels).is_some();
            let labels = admit(exists, &mut tail.series[0], labels, other);
            self.events.get_or_create(&labels).inc();
            match e.kind {
                EventKind::TaskReceived => {
                    let l = bounded(&self.prefetched, &mut tail.series[3], &worker, &task);
                    self.prefetched.get_or_create(&l).inc();
                    if tail.pending.len() >= MAX_PENDING
                        && let Some(old) = tail.order.pop_front()
                    {
                        tail.pending.remove(&old);
                    }
                    tail.order.push_back(id.clone());
                    tail.pending.insert(id, (worker, task, e.timestamp));
                }
                EventKind::TaskStarted => {
                    if let Some((w, t, received)) = tail.pending.remove(&id) {
                        let l = bounded(&self.prefetched, &mut tail.series[3], &w, &t);
                        self.prefetched.get_or_create(&l).dec();
                        let l = bounded(&self.prefetch_time, &mut tail.series[2], &w, &t);
                        let waited = e.timestamp.saturating_sub(received) as f64 / 1000.0;
                        self.prefetch_time.get_or_create(&l).set(waited);
                    }
                }
                EventKind::TaskSucceeded | EventKind::TaskFailed => {
                    if let Some(runtime) = e.runtime.filter(|r| *r > 0.0) {
                        let l = bounded(&self.runtime, &mut tail.series[1], &worker, &task);
                        self.runtime.get_or_create(&l).observe(runtime);
                    }
                    let l = WorkerTask {
                        worker: worker.clone(),
                        task: task.clone(),
                    };
                    if let Some(g) = self.prefetch_time.get(&l) {
                        g.set(0.0);
                    }
                }
                _ => {}
            }
        }
    }

    /// Reads the events after the last one counted, within the scrape's budget.
    async fn catch_up(&self, source: &dyn Source) -> Result<(), BackendError> {
        let mut tail = self.tail.lock().await;
        let started = Instant::now();
        let mut read = 0;
        while read < EVENTS_PER_SCRAPE && started.elapsed() < EVENTS_TIME_BUDGET {
            let batch = source.events(tail.cursor.as_deref(), EVENT_BATCH).await?;
            let n = batch.len();
            for (cursor, event) in batch {
                self.apply(&mut tail, &event);
                tail.cursor = Some(cursor);
            }
            read += n;
            if n < EVENT_BATCH {
                break;
            }
        }
        Ok(())
    }

    /// Sets the worker and queue gauges from the registry and queue lengths.
    async fn read_gauges(&self, source: &dyn Source) -> Result<(), BackendError> {
        let workers = source.workers().await?;
        let seen_workers = source.workers_seen().await?;
        let mut seen = self.tail.lock().await.seen.clone();
        let room = MAX_SERIES.saturating_sub(seen.len());
        seen.extend(seen_workers.iter().map(|w| w.id.clone()).take(room));
        self.online.clear();
        self.executing.clear();
        for name in &seen {
            self.online
                .get_or_create(&WorkerLabel {
                    worker: name.clone(),
                })
                .set(0);
        }
        for w in &workers {
            let l = WorkerLabel {
                worker: w.id.clone(),
            };
            self.online.get_or_create(&l).set(1);
            self.executing
                .get_or_create(&l)
                .set(i64::try_from(w.active).unwrap_or(i64::MAX));
        }
        let queues = crate::api::queues::consumed(workers.iter().chain(&seen_workers));
        let (stats, oldest) =
            tokio::try_join!(source.queue_stats(&queues), source.oldest_waiting(&queues))?;
        for f in [&self.delayed, &self.reserved, &self.dead] {
            f.clear();
        }
        self.waiting.clear();
        self.oldest.clear();
        let now = hippo_queue_core::time::now_ms();
        for o in &oldest {
            for (p, age) in o.ages_ms(now).iter().enumerate() {
                self.oldest
                    .get_or_create(&QueuePriority {
                        queue: o.queue.clone(),
                        priority: p.to_string(),
                    })
                    .set(age.unwrap_or(0) as f64 / 1000.0);
            }
        }
        let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for s in &stats {
            let q = QueueLabel {
                queue: s.queue.clone(),
            };
            for (p, n) in s.waiting_by_priority.iter().enumerate() {
                self.waiting
                    .get_or_create(&QueuePriority {
                        queue: s.queue.clone(),
                        priority: p.to_string(),
                    })
                    .set(int(*n));
            }
            self.delayed.get_or_create(&q).set(int(s.delayed));
            self.reserved.get_or_create(&q).set(int(s.reserved));
            self.dead.get_or_create(&q).set(int(s.dead_letter));
        }
        Ok(())
    }

    /// The exposition of every metric (OpenMetrics text).
    pub(crate) fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// One scrape: catch up with the events, read the gauges, encode.
    pub(crate) async fn scrape(&self, source: &dyn Source) -> Result<String, BackendError> {
        self.catch_up(source).await?;
        self.read_gauges(source).await?;
        self.encode()
            .map_err(|_| BackendError::protocol("metrics could not be encoded"))
    }
}

/// The Prometheus text format (0.0.4, what Flower serves and `promtool` lints) of an
/// OpenMetrics exposition: a counter's `# HELP` and `# TYPE` name its samples
/// (`x_total`), and the `# EOF` and `# UNIT` lines go. Samples are unchanged.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hippo_queue_core::events::WorkerInfo;

    #[test]
    fn openmetrics_becomes_prometheus_text() {
        let om = "# HELP flower_events Number of events.\n# TYPE flower_events counter\n\
                  flower_events_total{worker=\"w\"} 1\n# HELP up Up.\n# TYPE up gauge\n\
                  # UNIT up seconds\nup 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP flower_events_total Number of events.\n# TYPE flower_events_total counter\n\
             flower_events_total{worker=\"w\"} 1\n# HELP up Up.\n# TYPE up gauge\nup 1\n"
        );
    }

    fn task(kind: EventKind, id: &str, at: u64) -> Event {
        let mut e = Event::task(kind, id, "add");
        e.worker = Some("w1".into());
        e.timestamp = at;
        e
    }

    #[test]
    fn events_become_flower_metrics() {
        let m = Metrics::new();
        let mut tail = Tail::default();
        let mut online = Event::worker(EventKind::WorkerOnline, &WorkerInfo::named("w1"));
        online.timestamp = 1;
        m.apply(&mut tail, &online);
        m.apply(&mut tail, &task(EventKind::TaskReceived, "t1", 1_000));
        m.apply(&mut tail, &task(EventKind::TaskReceived, "t2", 1_000));
        m.apply(&mut tail, &task(EventKind::TaskStarted, "t1", 1_250));
        let mut done = task(EventKind::TaskSucceeded, "t1", 1_300);
        done.runtime = Some(0.05);
        m.apply(&mut tail, &done);
        let text = m.encode().unwrap();
        assert!(
            text.contains(r#"flower_events_total{worker="w1",type="task-received",task="add"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"flower_events_total{worker="w1",type="task-succeeded",task="add"} 1"#)
        );
        assert!(
            text.contains(r#"flower_worker_prefetched_tasks{worker="w1",task="add"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"flower_task_runtime_seconds_count{worker="w1",task="add"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"flower_task_runtime_seconds_bucket{le="0.05",worker="w1",task="add"} 1"#
            ) || text.contains(
                r#"flower_task_runtime_seconds_bucket{worker="w1",task="add",le="0.05"} 1"#
            ),
            "{text}"
        );
        // started 250 ms after it was received; back to 0 once finished
        assert!(
            text.contains(r#"flower_task_prefetch_time_seconds{worker="w1",task="add"} 0"#),
            "{text}"
        );
        assert!(
            !text.contains("worker-online"),
            "worker events are not counted: {text}"
        );
        assert!(tail.seen.contains("w1"));
    }

    #[test]
    fn label_sets_are_bounded() {
        let m = Metrics::new();
        let mut tail = Tail::default();
        for i in 0..(MAX_SERIES + 10) {
            let mut e = Event::task(EventKind::TaskSucceeded, "t", &format!("task-{i}"));
            e.worker = Some("w1".into());
            m.apply(&mut tail, &e);
        }
        assert_eq!(tail.series[0], MAX_SERIES);
        let text = m.encode().unwrap();
        assert!(
            text.contains(
                r#"flower_events_total{worker="other",type="task-succeeded",task="other"} 10"#
            ),
            "the overflow is counted under other"
        );
    }

    #[test]
    fn pending_receipts_are_bounded() {
        let m = Metrics::new();
        let mut tail = Tail::default();
        for i in 0..(MAX_PENDING + 5) {
            m.apply(
                &mut tail,
                &task(EventKind::TaskReceived, &format!("t{i}"), 1),
            );
        }
        assert_eq!(tail.pending.len(), MAX_PENDING);
        assert!(!tail.pending.contains_key("t0"));
    }
}
