//! Errors raised by the library itself (as opposed to errors raised by tasks, which are
//! [`TaskError`](crate::TaskError)s).

use std::time::Duration;

use crate::codec::CodecError;
use crate::routing::RoutingError;

/// An error from a broker or result backend.
///
/// Backends map their own failures (a lost connection, a script error, a full memory)
/// onto these variants so that callers can decide what to do without knowing which
/// backend is in use.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The backend cannot be reached right now. Retrying later may succeed.
    #[error("backend unavailable: {0} (is the server running and reachable?)")]
    Unavailable(String),
    /// The backend answered that it cannot serve now (loading its data, read-only,
    /// out of memory, busy). Retrying later may succeed.
    #[error("backend busy: {0} (it is up but refuses to serve now; waiting for it)")]
    Busy(String),
    /// The backend answered, but with an error.
    #[error("backend error: {0}")]
    Backend(String),
    /// The backend returned data that could not be understood.
    #[error("backend returned malformed data: {0}")]
    Protocol(String),
    /// This value cannot be stored (too large, cannot be encoded): trying again with
    /// the same value fails again, other values are not affected.
    #[error("value refused: {0}")]
    Rejected(String),
}

impl BackendError {
    /// Whether trying again later may succeed: the backend was away (unreachable,
    /// loading, read-only, out of memory, busy), as opposed to an answer that will
    /// not change (a value too large, data that cannot be encoded or read).
    pub fn is_retryable(&self) -> bool {
        matches!(self, BackendError::Unavailable(_) | BackendError::Busy(_))
    }

    /// Whether the value was refused for what it is (not for the state of the
    /// backend): the one write that carries it can never succeed.
    pub fn is_rejected(&self) -> bool {
        matches!(self, BackendError::Rejected(_))
    }

    /// Whether the backend could not be reached at all (as opposed to answering
    /// with an error): for a worker, a sign that it may be cut off from the others.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, BackendError::Unavailable(_))
    }
}

/// An error raised by the library while sending tasks, waiting for results or running
/// workers.
#[derive(Debug, thiserror::Error)]
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
