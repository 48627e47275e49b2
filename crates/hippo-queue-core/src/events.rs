//! Task and worker events (Celery's event protocol) and the worker registry record.
//!
//! Workers always publish worker events (online, heartbeat every beat, offline); task
//! events are opt-in ([`WorkerBuilder::task_events`](crate::WorkerBuilder::task_events),
//! [`AppBuilder::task_events`](crate::AppBuilder::task_events)) because they cost a
//! write each. Backends keep them in a capped log that a monitor joining later reads
//! from ([`EventLog::events`](crate::backend::EventLog::events)).
//!
//! ```
//! use hippo_queue_core::events::{Event, EventKind};
//! let e = Event::task(EventKind::TaskSucceeded, "4b0c…", "images.resize");
//! assert_eq!(e.kind.as_str(), "task-succeeded");
//! ```

use serde::{Deserialize, Serialize};

use crate::TaskFailure;
use crate::time::now_ms;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum EventKind {
    /// A producer sent the task.
    TaskSent,
    /// A worker received it.
    TaskReceived,
    /// A worker started it.
    TaskStarted,
    /// It succeeded.
    TaskSucceeded,
    /// It failed.
    TaskFailed,
    /// It will be retried.
    TaskRetried,
    /// It was revoked, expired or terminated.
    TaskRevoked,
    /// It was rejected (or dead-lettered as unprocessable).
    TaskRejected,
    /// A worker started.
    WorkerOnline,
    /// A worker is alive.
    WorkerHeartbeat,
    /// A worker stopped.
    WorkerOffline,
    /// An operator acted through a monitor (revoke, retry, purge, rate limit, pool and
    /// consumer controls, shutdown): see [`Event::operator`].
    OperatorAction,
}

impl EventKind {
    /// The Celery name, such as `"task-succeeded"`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::TaskSent => "task-sent",
            EventKind::TaskReceived => "task-received",
            EventKind::TaskStarted => "task-started",
            EventKind::TaskSucceeded => "task-succeeded",
            EventKind::TaskFailed => "task-failed",
            EventKind::TaskRetried => "task-retried",
            EventKind::TaskRevoked => "task-revoked",
            EventKind::TaskRejected => "task-rejected",
            EventKind::WorkerOnline => "worker-online",
            EventKind::WorkerHeartbeat => "worker-heartbeat",
            EventKind::WorkerOffline => "worker-offline",
            EventKind::OperatorAction => "operator-action",
        }
    }

    /// Whether this is a task event.
    pub fn is_task(self) -> bool {
        !matches!(
            self,
            EventKind::WorkerOnline
                | EventKind::WorkerHeartbeat
                | EventKind::WorkerOffline
                | EventKind::OperatorAction
        )
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// When, ms since the epoch.
    pub timestamp: u64,
    /// The worker concerned (or that saw the task event).
    pub worker: Option<String>,
    /// Task id (task events).
    pub task_id: Option<String>,
    /// Task name (task events).
    pub task_name: Option<String>,
    /// Queue.
    pub queue: Option<String>,
    /// Retries so far.
    pub retries: Option<u32>,
    /// Run time in seconds (task-succeeded, task-failed).
    pub runtime: Option<f64>,
    /// The error (task-failed, task-retried, task-rejected, task-revoked).
    pub error: Option<TaskFailure>,
    /// The worker's record (worker events).
    pub info: Option<WorkerInfo>,
    /// Who did what, from where (operator actions).
    #[serde(default)]
    pub operator: Option<OperatorAction>,
}

/// An operator's action, as recorded in the event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OperatorAction {
    /// What was done, such as `revoke` or `pool-grow`.
    pub action: String,
    /// Who did it (a user name or a token's position, never a secret).
    pub who: String,
    /// From where (the client's address, and what a proxy said it forwarded for).
    pub from: String,
    /// The action's parameters and outcome, as text.
    pub detail: String,
}

impl OperatorAction {
    /// An action.
    pub fn new(
        action: impl Into<String>,
        who: impl Into<String>,
        from: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        OperatorAction {
            action: action.into(),
            who: who.into(),
            from: from.into(),
            detail: detail.into(),
        }
    }
}

impl Event {
    /// A task event.
    pub fn task(kind: EventKind, task_id: &str, task_name: &str) -> Self {
        Event {
            kind,
            timestamp: now_ms(),
            worker: None,
            task_id: Some(task_id.to_string()),
            task_name: Some(task_name.to_string()),
            queue: None,
            retries: None,
            runtime: None,
            error: None,
            info: None,
            operator: None,
        }
    }

    /// An operator's action, about the task `task_id` or the worker `worker` when it
    /// concerns one.
    pub fn operator(action: OperatorAction, task_id: Option<&str>, worker: Option<&str>) -> Self {
        Event {
            kind: EventKind::OperatorAction,
            timestamp: now_ms(),
            worker: worker.map(str::to_string),
            task_id: task_id.map(str::to_string),
            task_name: None,
            queue: None,
            retries: None,
            runtime: None,
            error: None,
            info: None,
            operator: Some(action),
        }
    }

    /// A worker event.
    pub fn worker(kind: EventKind, info: &WorkerInfo) -> Self {
        Event {
            kind,
            timestamp: now_ms(),
            worker: Some(info.id.clone()),
            task_id: None,
            task_name: None,
            queue: None,
            retries: None,
            runtime: None,
            error: None,
            info: Some(info.clone()),
            operator: None,
        }
    }
}

/// A worker's registry record, refreshed on every heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WorkerInfo {
    /// Worker id.
    pub id: String,
    /// Host name.
    pub hostname: String,
    /// Process id.
    pub pid: u32,
    /// Queues consumed.
    pub queues: Vec<String>,
    /// Concurrency.
    pub concurrency: usize,
    /// Prefetch multiplier.
    pub prefetch_multiplier: usize,
    /// Pool (`async`, `blocking`, `solo`).
    pub pool: String,
    /// Start time, ms since the epoch.
    pub started_at: u64,
    /// Last heartbeat, ms since the epoch.
    pub heartbeat_at: u64,
    /// Tasks that succeeded.
    pub succeeded: u64,
    /// Tasks that failed.
    pub failed: u64,
    /// Runs that ended in a retry.
    pub retried: u64,
    /// Tasks revoked, expired or terminated.
    pub revoked: u64,
    /// Tasks rejected or dead-lettered.
    pub rejected: u64,
    /// Tasks running now.
    pub active: u64,
}

impl WorkerInfo {
    /// A record with only an id (for tests and tools).
    pub fn named(id: impl Into<String>) -> Self {
        WorkerInfo {
            id: id.into(),
            ..Default::default()
        }
    }

    /// Tasks processed: succeeded + failed + revoked + rejected.
    pub fn processed(&self) -> u64 {
        self.succeeded + self.failed + self.revoked + self.rejected
    }
}
