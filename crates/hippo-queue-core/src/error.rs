//! Errors raised by the library itself (as opposed to errors raised by tasks, which are
//! [`TaskError`](crate::TaskError)s).

use std::time::Duration;

use crate::codec::CodecError;
use crate::routing::RoutingError;

/// What kind of failure a [`BackendError`] is: what a caller can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendErrorKind {
    /// The backend cannot be reached right now. Retrying later may succeed.
    Unavailable,
    /// The backend answered that it cannot serve now (loading its data, read-only,
    /// out of memory, busy). Retrying later may succeed.
    Busy,
    /// The backend answered, but with an error (a missing permission, a wrong key
    /// type, a script error).
    Backend,
    /// The backend returned data that could not be understood.
    Protocol,
    /// This value cannot be stored (too large, cannot be encoded): trying again with
    /// the same value fails again, other values are not affected.
    Rejected,
}

impl BackendErrorKind {
    fn prefix(self) -> &'static str {
        match self {
            BackendErrorKind::Unavailable => "backend unavailable",
            BackendErrorKind::Busy => "backend busy",
            BackendErrorKind::Backend => "backend error",
            BackendErrorKind::Protocol => "backend returned malformed data",
            BackendErrorKind::Rejected => "value refused",
        }
    }

    fn hint(self) -> Option<&'static str> {
        match self {
            BackendErrorKind::Unavailable => Some("is the server running and reachable?"),
            BackendErrorKind::Busy => Some("it is up but refuses to serve now; waiting for it"),
            _ => None,
        }
    }
}

/// An error from a broker or result backend: a [`kind`](BackendError::kind) that says
/// what a caller can do ([`is_retryable`](BackendError::is_retryable)), a message with
/// the context, and the underlying error as its [`source`](std::error::Error::source)
/// when there is one (the message already quotes it, so a log line is complete).
///
/// ```
/// use hippo_queue_core::{BackendError, BackendErrorKind};
/// let e = BackendError::unavailable("redis://localhost:6379: connection refused");
/// assert_eq!(e.kind(), BackendErrorKind::Unavailable);
/// assert!(e.is_retryable());
/// assert_eq!(
///     e.to_string(),
///     "backend unavailable: redis://localhost:6379: connection refused \
///      (is the server running and reachable?)"
/// );
/// ```
#[derive(Debug)]
pub struct BackendError {
    kind: BackendErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl BackendError {
    /// An error of `kind` with a message naming what failed.
    pub fn new(kind: BackendErrorKind, message: impl Into<String>) -> Self {
        BackendError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// [`BackendErrorKind::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(BackendErrorKind::Unavailable, message)
    }

    /// [`BackendErrorKind::Busy`].
    pub fn busy(message: impl Into<String>) -> Self {
        Self::new(BackendErrorKind::Busy, message)
    }

    /// [`BackendErrorKind::Backend`].
    pub fn backend(message: impl Into<String>) -> Self {
        Self::new(BackendErrorKind::Backend, message)
    }

    /// [`BackendErrorKind::Protocol`].
    pub fn protocol(message: impl Into<String>) -> Self {
        Self::new(BackendErrorKind::Protocol, message)
    }

    /// [`BackendErrorKind::Rejected`].
    pub fn rejected(message: impl Into<String>) -> Self {
        Self::new(BackendErrorKind::Rejected, message)
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> BackendErrorKind {
        self.kind
    }

    /// The message, without the kind's prefix and hint.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether trying again later may succeed: the backend was away (unreachable,
    /// loading, read-only, out of memory, busy), as opposed to an answer that will
    /// not change (a value too large, data that cannot be encoded or read).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            BackendErrorKind::Unavailable | BackendErrorKind::Busy
        )
    }

    /// Whether the value was refused for what it is (not for the state of the
    /// backend): the one write that carries it can never succeed.
    pub fn is_rejected(&self) -> bool {
        self.kind == BackendErrorKind::Rejected
    }

    /// Whether the backend could not be reached at all (as opposed to answering
    /// with an error): for a worker, a sign that it may be cut off from the others.
    pub fn is_unreachable(&self) -> bool {
        self.kind == BackendErrorKind::Unavailable
    }

    /// Whether the backend is up but refuses to serve now (loading, read-only, out
    /// of memory, busy): nobody can recover anyone meanwhile.
    pub fn is_busy(&self) -> bool {
        self.kind == BackendErrorKind::Busy
    }
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.prefix(), self.message)?;
        if let Some(hint) = self.kind.hint() {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// An error raised by the library while sending tasks, waiting for results or running
/// workers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The broker or result backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A message or result could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// No queue could be chosen for a task.
    #[error(transparent)]
    Routing(#[from] RoutingError),
    /// Task options are inconsistent (for example a hard time limit below the soft one).
    #[error("invalid task options: {0}")]
    InvalidOptions(String),
    /// Configuration could not be loaded.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The task name is not registered with this app.
    #[error("task {0:?} is not registered: register it with `App::register` before running it")]
    NotRegistered(String),
    /// Waiting for a result took longer than the timeout given to `get`.
    #[error("timed out after {0:?} waiting for the result")]
    Timeout(Duration),
    /// The task ended in a state other than SUCCESS.
    #[error("task {task_id} ended in state {state}: {failure}")]
    TaskFailed {
        /// The task's id.
        task_id: String,
        /// The final state (FAILURE, REVOKED or REJECTED).
        state: crate::TaskState,
        /// What went wrong, with its chain of causes.
        failure: crate::TaskFailure,
    },
    /// A remote control command was refused: a value is out of range.
    #[error(transparent)]
    InvalidCommand(#[from] crate::control::InvalidCommand),
    /// The task succeeded but its record holds no output.
    #[error("task {0} succeeded but its record holds no output")]
    NoResult(String),
}

/// A `Result` with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
