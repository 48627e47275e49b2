//! The [`Task`] trait and the errors a task returns.

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::context::TaskContext;
use crate::options::TaskOptions;

/// A unit of background work: a name, typed arguments, a typed output and default
/// options.
///
/// A task is a value, so it can hold what it needs (a connection pool, a store). The
/// producer side only uses the associated items, so sending a task needs no instance.
///
/// ```
/// use hippo_queue_core::{Task, TaskContext, TaskError, TaskOptions};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// pub struct AddArgs { pub a: i64, pub b: i64 }
///
/// pub struct Add;
///
/// impl Task for Add {
///     const NAME: &'static str = "math.add";
///     type Args = AddArgs;
///     type Output = i64;
///
///     fn options() -> TaskOptions {
///         TaskOptions::new().queue("default").max_retries(5)
///     }
///
///     async fn run(&self, _ctx: &TaskContext, args: AddArgs) -> Result<i64, TaskError> {
///         Ok(args.a + args.b)
///     }
/// }
/// ```
pub trait Task: Send + Sync + 'static {
    /// The name the task is registered and sent under.
    const NAME: &'static str;
    /// The arguments, serialised with MessagePack.
    type Args: Serialize + DeserializeOwned + Send + 'static;
    /// The output, stored as the result.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// The task's default options.
    fn options() -> TaskOptions {
        TaskOptions::default()
    }

    /// Runs the task once. Implement it as `async fn run(...)`: no attribute is
    /// needed. The future must be `Send` (it runs on a multi-threaded runtime).
    fn run(
        &self,
        ctx: &TaskContext,
        args: Self::Args,
    ) -> impl Future<Output = Result<Self::Output, TaskError>> + Send;
}

/// Error kinds the library itself uses.
pub mod kinds {
    /// The task returned [`TaskError::soft_time_limit`](super::TaskError::soft_time_limit).
    pub const SOFT_TIME_LIMIT: &str = "SoftTimeLimitExceeded";
    /// The hard time limit aborted the task.
    pub const TIME_LIMIT: &str = "TimeLimitExceeded";
    /// The task panicked.
    pub const PANIC: &str = "Panic";
    /// The arguments did not match the task's argument type.
    pub const ARGUMENTS: &str = "ArgumentError";
    /// No task of this name is registered with the worker.
    pub const NOT_REGISTERED: &str = "NotRegistered";
    /// The message could not be decoded.
    pub const MALFORMED: &str = "MalformedMessage";
    /// The worker running the task died or was lost.
    pub const WORKER_LOST: &str = "WorkerLostError";
    /// The worker shut down before the task finished and it could not be requeued.
    pub const WORKER_SHUTDOWN: &str = "WorkerShutdown";
    /// The message was delivered too many times.
    pub const TOO_MANY_DELIVERIES: &str = "TooManyDeliveries";
    /// The task was revoked (with `terminate` when running).
    pub const REVOKED: &str = "TaskRevokedError";
    /// The task expired before it started.
    pub const EXPIRED: &str = "TaskExpired";
    /// The task's output is larger than a result may hold (the codec's size limit).
    pub const RESULT_TOO_LARGE: &str = "ResultTooLarge";
    /// The result could not be stored for a reason a retry cannot fix.
    pub const RESULT_NOT_STORED: &str = "ResultEncodeError";
    /// The process pool could not start a child to run the task.
    pub const POOL_ERROR: &str = "PoolError";
    /// The blocking pool refused the task: too many of its threads still run tasks
    /// given up at their hard time limit.
    pub const POOL_EXHAUSTED: &str = "PoolExhausted";
    /// Generic error kind.
    pub const ERROR: &str = "Error";
}

/// What a task returns when it does not succeed.
///
/// Build one with [`TaskError::new`], or let `?` convert any `std::error::Error` (its
/// kind is then its type name, and its `source()` chain is kept as the "traceback").
/// Ask for a retry with [`TaskError::retry`], reject with [`TaskError::reject`].
///
/// ```
/// use std::time::Duration;
/// use hippo_queue_core::TaskError;
/// let e = TaskError::new("timeout", "upstream took too long").retry_in(Duration::from_secs(5));
/// assert_eq!(e.kind(), "timeout");
/// assert!(e.retry_requested());
///
/// fn parse(s: &str) -> Result<i32, TaskError> { Ok(s.parse::<i32>()?) }
/// let e = parse("x").unwrap_err();
/// assert_eq!(e.kind(), "core::num::error::ParseIntError");
/// ```
#[derive(Debug, Clone)]
pub struct TaskError {
    kind: String,
    message: String,
    chain: Vec<String>,
    action: Action,
}

#[derive(Debug, Clone, PartialEq)]
enum Action {
    Fail,
    Retry(Option<Duration>),
    Reject,
}

impl TaskError {
    /// An error of a given kind.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        TaskError {
            kind: kind.into(),
            message: message.into(),
            chain: Vec::new(),
            action: Action::Fail,
        }
    }

    /// A plain error (kind `"Error"`).
    pub fn msg(message: impl Into<String>) -> Self {
        TaskError::new(kinds::ERROR, message)
    }

    /// The error a task returns after it noticed its soft time limit and cleaned up.
    pub fn soft_time_limit() -> Self {
        TaskError::new(kinds::SOFT_TIME_LIMIT, "soft time limit exceeded")
    }

    /// Asks for a retry after the task's backoff (Celery's `self.retry()`).
    pub fn retry(mut self) -> Self {
        self.action = Action::Retry(None);
        self
    }

    /// Asks for a retry after `countdown`.
    pub fn retry_in(mut self, countdown: Duration) -> Self {
        self.action = Action::Retry(Some(countdown));
        self
    }

    /// Rejects the task: state REJECTED, no retry, the message goes to the dead-letter
    /// queue.
    pub fn reject(mut self) -> Self {
        self.action = Action::Reject;
        self
    }

    /// Adds a cause to the chain.
    pub fn caused_by(mut self, cause: impl fmt::Display) -> Self {
        self.chain.push(cause.to_string());
        self
    }

    /// The error kind, matched by `autoretry_for`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The causes, outermost first.
    pub fn chain(&self) -> &[String] {
        &self.chain
    }

    /// Whether the task asked to be retried.
    pub fn retry_requested(&self) -> bool {
        matches!(self.action, Action::Retry(_))
    }

    /// The countdown the task asked for, if any.
    pub fn retry_countdown(&self) -> Option<Duration> {
        match self.action {
            Action::Retry(d) => d,
            _ => None,
        }
    }

    /// Whether the task rejected itself.
    pub fn is_reject(&self) -> bool {
        self.action == Action::Reject
    }

    /// The stored form of this error.
    pub fn to_failure(&self) -> TaskFailure {
        TaskFailure {
            kind: self.kind.clone(),
            message: self.message.clone(),
            chain: self.chain.clone(),
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl<E: std::error::Error + 'static> From<E> for TaskError {
    fn from(err: E) -> Self {
        let mut chain = Vec::new();
        let mut source = err.source();
        while let Some(s) = source {
            chain.push(s.to_string());
            source = s.source();
        }
        TaskError {
            kind: std::any::type_name::<E>().to_string(),
            message: err.to_string(),
            chain,
            action: Action::Fail,
        }
    }
}

/// A stored failure: the error kind, its message and its chain of causes (the
/// equivalent of Celery's exception and traceback).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFailure {
    /// Error kind.
    pub kind: String,
    /// Message.
    pub message: String,
    /// Causes, outermost first.
    pub chain: Vec<String>,
}

impl TaskFailure {
    /// A failure with no causes.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        TaskFailure {
            kind: kind.into(),
            message: message.into(),
            chain: Vec::new(),
        }
    }

    /// A multi-line rendering: the error, then each cause.
    pub fn traceback(&self) -> String {
        let mut s = format!("{}: {}", self.kind, self.message);
        for c in &self.chain {
            s.push_str("\n  caused by: ");
            s.push_str(c);
        }
        s
    }
}

impl fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}
