//! `hippo-queue doctor`: checks a live deployment against what hippo-queue needs from
//! Redis and from its own settings, one line per finding.
//!
//! The facts are gathered first ([`gather`]); every check is a pure function of them,
//! with a unit test per branch. Exit code: 0 nothing found, 1 warnings, 2 errors.

use std::time::Duration;

use hippo_queue_core::App;
use hippo_queue_core::backend::QueueStats;
use hippo_queue_core::beat::BeatStore;
use hippo_queue_core::config::Config;
use hippo_queue_core::events::{EventKind, WorkerInfo};
use hippo_queue_redis::{RedisBackend, ServerReport};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Checked and fine.
    Ok,
    /// Works, but something can be lost or stall.
    Warn,
    /// Messages or results will be lost, or nothing will run.
    Error,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Severity.
    pub level: Level,
    /// The check's short name.
    pub check: &'static str,
    /// What was found and what to do.
    pub message: String,
}

fn finding(level: Level, check: &'static str, message: impl Into<String>) -> Finding {
    Finding {
        level,
        check,
        message: message.into(),
    }
}

/// Everything the checks look at.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The broker server's settings and clock.
    pub server: ServerReport,
    /// `CELERY_RESULT_PERSISTENT`, when set.
    pub result_persistent: Option<bool>,
    /// Live workers from the registry.
    pub workers: Vec<WorkerInfo>,
    /// The lengths of the known queues.
    pub queues: Vec<QueueStats>,
    /// Task routes whose queue is not declared: (task pattern, queue).
    pub undeclared_routes: Vec<(String, String)>,
    /// The current beat leader.
    pub beat_leader: Option<String>,
    /// `CELERY_RESULT_EXPIRES` and the time limits.
    pub config: Config,
    /// Worker heartbeats of the last minute, from the event log.
    pub recent_beats: Vec<Beat>,
}

/// A worker process: host, pid and start time.
pub type Process = (String, u32, u64);

/// One heartbeat event: which process beat under which name, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    /// The worker name.
    pub worker: String,
    /// The process.
    pub process: Process,
    /// When (ms, the worker's clock).
    pub at: u64,
}

/// How far back the event log is read for heartbeats.
const RECENT_BEATS_MS: u64 = 60_000;

/// A worker clock this far from the server's is reported.
const SKEW_MS: i64 = 2_000;
/// A heartbeat older than this (by the server's clock) is reported.
const STALE_HEARTBEAT_MS: i64 = 30_000;

/// Persistence: queues need the append-only file (or at least snapshots), and so do
/// results when `CELERY_RESULT_PERSISTENT` asks for them.
pub fn persistence(f: &Facts) -> Finding {
    const CHECK: &str = "persistence";
    let (Some(aof), Some(save)) = (f.server.appendonly, f.server.save.as_deref()) else {
        return finding(
            Level::Warn,
            CHECK,
            "could not read appendonly/save (CONFIG is disabled): check that the server persists its data",
        );
    };
    let snapshots = !save.trim().is_empty();
    match (aof, snapshots) {
        (true, _) => finding(Level::Ok, CHECK, "append-only file on"),
        (false, true) => finding(
            Level::Warn,
            CHECK,
            format!(
                "only RDB snapshots ({save}): a crash loses the queue changes since the last one; set appendonly yes"
            ),
        ),
        (false, false) if f.result_persistent == Some(true) => finding(
            Level::Error,
            CHECK,
            "CELERY_RESULT_PERSISTENT is true but the server persists nothing (appendonly no, save \"\"): a restart loses every message and result",
        ),
        (false, false) => finding(
            Level::Error,
            CHECK,
            "the server persists nothing (appendonly no, save \"\"): a restart loses every queued message; set appendonly yes",
        ),
    }
}

/// Eviction: queue keys must never be evicted.
pub fn eviction(f: &Facts) -> Finding {
    const CHECK: &str = "maxmemory-policy";
    match f.server.maxmemory_policy.as_deref() {
        Some("noeviction") => finding(Level::Ok, CHECK, "noeviction"),
        Some(p) => finding(
            Level::Error,
            CHECK,
            format!(
                "{p}: Redis may evict queue keys and lose messages; set maxmemory-policy noeviction"
            ),
        ),
        None => finding(
            Level::Warn,
            CHECK,
            "could not read maxmemory-policy (CONFIG is disabled): it must be noeviction",
        ),
    }
}

/// Clock skew: each worker's last heartbeat (its own clock) against the server's.
pub fn clocks(f: &Facts) -> Vec<Finding> {
    const CHECK: &str = "clock";
    let now = i64::try_from(f.server.time_ms).unwrap_or(i64::MAX);
    let mut out: Vec<Finding> = f
        .workers
        .iter()
        .filter_map(|w| {
            let age = now - i64::try_from(w.heartbeat_at).unwrap_or(i64::MAX);
            if age < -SKEW_MS {
                Some(finding(
                    Level::Warn,
                    CHECK,
                    format!(
                        "worker {} beats {:.1} s ahead of the Redis clock: synchronise its clock (NTP)",
                        w.id,
                        -age as f64 / 1000.0
                    ),
                ))
            } else if age > STALE_HEARTBEAT_MS {
                Some(finding(
                    Level::Warn,
                    CHECK,
                    format!(
                        "worker {}'s last heartbeat is {:.1} s old by the Redis clock: its clock is behind, or it is stalled",
                        w.id,
                        age as f64 / 1000.0
                    ),
                ))
            } else {
                None
            }
        })
        .collect();
    if out.is_empty() {
        out.push(finding(
            Level::Ok,
            CHECK,
            format!("{} worker(s) in step with the Redis clock", f.workers.len()),
        ));
    }
    out
}

/// Queues with waiting messages that no live worker consumes.
pub fn consumers(f: &Facts) -> Vec<Finding> {
    const CHECK: &str = "consumers";
    let mut out: Vec<Finding> = f
        .queues
        .iter()
        .filter(|q| q.waiting() > 0)
        .filter(|q| !f.workers.iter().any(|w| w.queues.contains(&q.queue)))
        .map(|q| {
            finding(
                Level::Warn,
                CHECK,
                format!(
                    "queue {} has {} waiting message(s) and no live worker consumes it",
                    q.queue,
                    q.waiting()
                ),
            )
        })
        .collect();
    if out.is_empty() {
        out.push(finding(Level::Ok, CHECK, "every backlog has a consumer"));
    }
    out
}

/// Routes to queues that are not declared.
pub fn routes(f: &Facts) -> Vec<Finding> {
    const CHECK: &str = "routes";
    let mut out: Vec<Finding> = f
        .undeclared_routes
        .iter()
        .map(|(task, queue)| {
            finding(
                Level::Warn,
                CHECK,
                format!("tasks {task} are routed to {queue}, which is not a declared queue"),
            )
        })
        .collect();
    if out.is_empty() {
        out.push(finding(
            Level::Ok,
            CHECK,
            "every route names a declared queue",
        ));
    }
    out
}

/// A beat that ran on this server but has no leader now.
pub fn beat(f: &Facts) -> Finding {
    const CHECK: &str = "beat";
    match (&f.beat_leader, f.server.beat_entries) {
        (Some(id), _) => finding(Level::Ok, CHECK, format!("leader {id}")),
        (None, 0) => finding(Level::Ok, CHECK, "no beat has run here"),
        (None, n) => finding(
            Level::Warn,
            CHECK,
            format!("{n} periodic entr(ies) known but no beat leads: periodic tasks are not sent"),
        ),
    }
}

/// Results that expire before a task may end.
pub fn result_expiry(f: &Facts) -> Finding {
    const CHECK: &str = "result_expires";
    let expires = f.config.result_expires;
    let limit = f.config.task_time_limit.or(f.config.task_soft_time_limit);
    match limit {
        Some(limit) if expires < limit => finding(
            Level::Warn,
            CHECK,
            format!(
                "results expire after {} s, before the task time limit ({} s): a slow task's result may be gone before it is read",
                expires.as_secs_f64(),
                limit.as_secs_f64()
            ),
        ),
        _ => finding(
            Level::Ok,
            CHECK,
            format!("results kept {} s", expires.as_secs_f64()),
        ),
    }
}

/// Worker names used by two processes at once: their heartbeats interleave (a
/// restart after a crash shows the old process's beats ending before the new one's
/// begin). Two live workers with one name recover each other's tasks.
pub fn names(f: &Facts) -> Vec<Finding> {
    const CHECK: &str = "worker names";
    use std::collections::BTreeMap;
    // name -> process -> (first beat, last beat)
    type Spans<'a> = BTreeMap<&'a Process, (u64, u64)>;
    let mut spans: BTreeMap<&str, Spans<'_>> = BTreeMap::new();
    for b in &f.recent_beats {
        let span = spans
            .entry(&b.worker)
            .or_default()
            .entry(&b.process)
            .or_insert((b.at, b.at));
        span.0 = span.0.min(b.at);
        span.1 = span.1.max(b.at);
    }
    let mut out: Vec<Finding> = spans
        .iter()
        .filter_map(|(name, procs)| {
            let spans: Vec<_> = procs.iter().collect();
            let overlap = spans.iter().enumerate().any(|(i, (_, a))| {
                spans[i + 1..]
                    .iter()
                    .any(|(_, b)| a.0 <= b.1 && b.0 <= a.1)
            });
            overlap.then(|| {
                let who: Vec<String> = procs
                    .keys()
                    .map(|(host, pid, _)| format!("{host} pid {pid}"))
                    .collect();
                finding(
                    Level::Error,
                    CHECK,
                    format!(
                        "worker name {name} is used by {} processes at once ({}): give each worker a unique name (-n name@host)",
                        procs.len(),
                        who.join(", ")
                    ),
                )
            })
        })
        .collect();
    if out.is_empty() {
        out.push(finding(
            Level::Ok,
            CHECK,
            format!(
                "{} worker name(s) beating, each from one process",
                spans.len()
            ),
        ));
    }
    out
}

/// Every check, in report order.
pub fn check(f: &Facts) -> Vec<Finding> {
    let mut out = vec![persistence(f), eviction(f)];
    out.extend(clocks(f));
    out.extend(names(f));
    out.extend(consumers(f));
    out.extend(routes(f));
    out.push(beat(f));
    out.push(result_expiry(f));
    out
}

/// 0 when nothing was found, 1 with warnings, 2 with errors.
pub fn exit_code(findings: &[Finding]) -> u8 {
    match findings.iter().map(|f| f.level).max() {
        Some(Level::Error) => 2,
        Some(Level::Warn) => 1,
        _ => 0,
    }
}

/// One line per finding.
pub fn render(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| {
            let level = match f.level {
                Level::Ok => "ok",
                Level::Warn => "warning",
                Level::Error => "error",
            };
            format!("{level:<8} {:<16} {}\n", f.check, f.message)
        })
        .collect()
}

/// Reads the facts from a live deployment.
pub async fn gather(app: &App, redis: &RedisBackend) -> Result<Facts, Box<dyn std::error::Error>> {
    let config = Config::from_env()?;
    let server = redis.server_report().await?;
    let workers = app.broker().workers().await?;
    let router = app.router();
    let mut names: Vec<String> = router.queues().iter().map(|q| q.name.clone()).collect();
    for w in &workers {
        for q in &w.queues {
            if !names.contains(q) {
                names.push(q.clone());
            }
        }
    }
    let queues = app.broker().queue_stats(&names).await?;
    let undeclared_routes = router
        .routes()
        .iter()
        .filter(|r| router.get(&r.queue).is_none())
        .map(|r| (r.task.clone(), r.queue.clone()))
        .collect();
    let result_persistent = std::env::var("CELERY_RESULT_PERSISTENT").ok().map(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "true" | "1" | "yes" | "on"
        )
    });
    // The event log's cursors are stream ids, `<ms>-<seq>`: read from a minute ago.
    let since = format!("{}-0", server.time_ms.saturating_sub(RECENT_BEATS_MS));
    let recent_beats = app
        .broker()
        .events(Some(&since), 10_000)
        .await?
        .into_iter()
        .filter(|(_, e)| e.kind == EventKind::WorkerHeartbeat)
        .filter_map(|(_, e)| {
            let info = e.info?;
            Some(Beat {
                worker: info.id,
                process: (info.hostname, info.pid, info.started_at),
                at: e.timestamp,
            })
        })
        .collect();
    Ok(Facts {
        server,
        result_persistent,
        recent_beats,
        workers,
        queues,
        undeclared_routes,
        beat_leader: redis.leader().await?.map(|(id, _)| id),
        config,
    })
}

/// How long the report may take before the command gives up.
pub const TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            server: ServerReport {
                appendonly: Some(true),
                save: Some(String::new()),
                maxmemory_policy: Some("noeviction".into()),
                time_ms: 1_000_000,
                beat_entries: 0,
            },
            result_persistent: None,
            workers: Vec::new(),
            queues: Vec::new(),
            undeclared_routes: Vec::new(),
            beat_leader: None,
            config: Config::default(),
            recent_beats: Vec::new(),
        }
    }

    fn beat_of(worker: &str, pid: u32, at: u64) -> Beat {
        Beat {
            worker: worker.into(),
            process: ("host".into(), pid, 1),
            at,
        }
    }

    #[test]
    fn a_name_beating_from_two_processes_at_once_is_an_error() {
        let mut f = facts();
        // w1: pid 10 and pid 11 interleave; w2: pid 20 stopped, then pid 21 (a restart)
        f.recent_beats = vec![
            beat_of("w1", 10, 100),
            beat_of("w1", 11, 150),
            beat_of("w1", 10, 200),
            beat_of("w2", 20, 100),
            beat_of("w2", 20, 200),
            beat_of("w2", 21, 300),
        ];
        let found = names(&f);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].level, Level::Error);
        assert!(found[0].message.contains("w1"), "{}", found[0].message);
        f.recent_beats.retain(|b| b.worker == "w2");
        assert_eq!(names(&f)[0].level, Level::Ok);
    }

    fn worker(id: &str, heartbeat_at: u64, queues: &[&str]) -> WorkerInfo {
        let mut w = WorkerInfo::named(id);
        w.heartbeat_at = heartbeat_at;
        w.queues = queues.iter().map(|q| q.to_string()).collect();
        w
    }

    fn queue(name: &str, waiting: u64) -> QueueStats {
        let mut q = QueueStats {
            queue: name.into(),
            ..Default::default()
        };
        q.waiting_by_priority[0] = waiting;
        q
    }

    #[test]
    fn a_healthy_deployment_exits_0() {
        let f = check(&facts());
        assert!(f.iter().all(|f| f.level == Level::Ok), "{f:?}");
        assert_eq!(exit_code(&f), 0);
    }

    #[test]
    fn persistence_branches() {
        let mut f = facts();
        assert_eq!(persistence(&f).level, Level::Ok);
        f.server.appendonly = Some(false);
        f.server.save = Some("3600 1".into());
        assert_eq!(persistence(&f).level, Level::Warn);
        f.server.save = Some(String::new());
        assert_eq!(persistence(&f).level, Level::Error);
        f.result_persistent = Some(true);
        assert!(persistence(&f).message.contains("CELERY_RESULT_PERSISTENT"));
        f.server.appendonly = None;
        assert_eq!(persistence(&f).level, Level::Warn);
    }

    #[test]
    fn eviction_branches() {
        let mut f = facts();
        assert_eq!(eviction(&f).level, Level::Ok);
        f.server.maxmemory_policy = Some("allkeys-lru".into());
        let e = eviction(&f);
        assert_eq!(e.level, Level::Error);
        assert!(e.message.contains("noeviction"));
        f.server.maxmemory_policy = None;
        assert_eq!(eviction(&f).level, Level::Warn);
    }

    #[test]
    fn clock_branches() {
        let mut f = facts();
        f.workers = vec![
            worker("in-step", 999_000, &[]),
            worker("ahead", 1_015_000, &[]),
            worker("behind", 900_000, &[]),
        ];
        let c = clocks(&f);
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(c[0].message.contains("ahead") && c[0].message.contains("15.0 s"));
        assert!(c[1].message.contains("behind") && c[1].message.contains("100.0 s"));
        f.workers.truncate(1);
        assert_eq!(clocks(&f)[0].level, Level::Ok);
    }

    #[test]
    fn backlog_without_consumer() {
        let mut f = facts();
        f.queues = vec![
            queue("default", 3),
            queue("background", 5),
            queue("empty", 0),
        ];
        f.workers = vec![worker("w", 1_000_000, &["default"])];
        let c = consumers(&f);
        assert_eq!(c.len(), 1);
        assert!(c[0].message.contains("background") && c[0].level == Level::Warn);
    }

    #[test]
    fn undeclared_routes_are_reported() {
        let mut f = facts();
        assert_eq!(routes(&f)[0].level, Level::Ok);
        f.undeclared_routes = vec![("reports.*".into(), "reportz".into())];
        assert!(routes(&f)[0].message.contains("reportz"));
    }

    #[test]
    fn beat_branches() {
        let mut f = facts();
        assert_eq!(beat(&f).level, Level::Ok);
        f.server.beat_entries = 2;
        assert_eq!(beat(&f).level, Level::Warn);
        f.beat_leader = Some("beat-a".into());
        assert_eq!(beat(&f).level, Level::Ok);
    }

    #[test]
    fn results_expiring_before_the_time_limit() {
        let mut f = facts();
        f.config = Config::default()
            .result_expires(Duration::from_secs(60))
            .task_time_limit(Duration::from_secs(600));
        assert_eq!(result_expiry(&f).level, Level::Warn);
        f.config = f.config.clone().result_expires(Duration::from_secs(3600));
        assert_eq!(result_expiry(&f).level, Level::Ok);
    }

    #[test]
    fn exit_codes() {
        let ok = finding(Level::Ok, "x", "");
        let warn = finding(Level::Warn, "x", "");
        let err = finding(Level::Error, "x", "");
        assert_eq!(exit_code(std::slice::from_ref(&ok)), 0);
        assert_eq!(exit_code(&[ok.clone(), warn.clone()]), 1);
        assert_eq!(exit_code(&[warn, err, ok]), 2);
        assert!(render(&[finding(Level::Error, "beat", "m")]).starts_with("error"));
    }
}
