//! Every default of the library, defined once: task options ([`TaskOptions`]), the
//! configuration ([`Config`]) and the worker builder ([`WorkerBuilder`]) all read
//! them from here, and their docs name them in a `# Default` line.
//!
//! The task and result values are Celery's; the liveness values are the project's
//! (Celery has no heartbeat-based recovery on Redis).
//!
//! [`TaskOptions`]: crate::TaskOptions
//! [`Config`]: crate::config::Config
//! [`WorkerBuilder`]: crate::WorkerBuilder

use std::time::Duration;

/// Retries before a task fails for good (Celery's `max_retries`).
pub const MAX_RETRIES: u32 = 3;

/// The delay before a retry when no backoff is set (Celery's `default_retry_delay`).
pub const RETRY_DELAY: Duration = Duration::from_secs(180);

/// The longest exponential backoff between retries (Celery's `retry_backoff_max`).
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(600);

/// Whether retry delays are randomised (Celery's `retry_jitter`).
pub const RETRY_JITTER: bool = true;

/// How long a task's result record is kept (`CELERY_RESULT_EXPIRES`).
pub const RESULT_EXPIRES: Duration = Duration::from_secs(3600);

/// Messages a worker reserves per concurrency slot
/// (`CELERY_WORKER_PREFETCH_MULTIPLIER`).
pub const PREFETCH_MULTIPLIER: usize = 4;

/// How often a worker beats.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);

/// How long a worker may go without a heartbeat before others recover its messages.
pub const WORKER_LOST_AFTER: Duration = Duration::from_secs(10);

/// How long a graceful shutdown lets running tasks finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Deliveries of an `acks_late` + `reject_on_worker_lost` message before it is
/// dead-lettered.
pub const MAX_DELIVERIES: u32 = 5;

/// How long one fetch waits for a message when none is ready.
pub const FETCH_WAIT: Duration = Duration::from_secs(1);

/// Every this many fetches, a worker starts at another queue (fairness between
/// queues of different priority).
pub const FAIRNESS_INTERVAL: u64 = 8;

/// Blocking-pool threads that may still run tasks given up at their hard limit
/// before the blocking pool refuses tasks (tokio's blocking pool has 512 threads, and
/// DNS lookups and file I/O need some of them).
pub const MAX_ABANDONED_THREADS: usize = 64;

/// How long a process-pool child has between SIGTERM and SIGKILL.
pub const CHILD_KILL_GRACE: Duration = Duration::from_secs(2);

/// How long a new process-pool child has to start and connect.
pub const CHILD_START_TIMEOUT: Duration = Duration::from_secs(30);
