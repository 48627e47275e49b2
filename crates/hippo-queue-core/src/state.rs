//! Task states, as in Celery.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The state of a task.
///
/// `PENDING` is also the state of any id the result backend knows nothing about
/// (never sent, expired or forgotten), exactly as in Celery.
///
/// ```
/// use hippo_queue_core::TaskState;
/// assert!(TaskState::Success.is_ready());
/// assert!(!TaskState::Retry.is_ready());
/// assert_eq!("REVOKED".parse::<TaskState>().unwrap(), TaskState::Revoked);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum TaskState {
    /// Waiting, or unknown.
    Pending,
    /// Received by a worker, not started yet (kept for compatibility with Celery's state
    /// names; workers record STARTED, with `track_started`, and final states).
    Received,
    /// Running on a worker.
    Started,
    /// Finished with a result.
    Success,
    /// Finished with an error.
    Failure,
    /// Failed and scheduled to run again.
    Retry,
    /// Revoked, expired or terminated: it will not run (again).
    Revoked,
    /// Rejected by the task itself ([`TaskError::reject`](crate::TaskError::reject)).
    Rejected,
}

impl TaskState {
    /// Every state, in lifecycle order.
    pub const ALL: [TaskState; 8] = [
        TaskState::Pending,
        TaskState::Received,
        TaskState::Started,
        TaskState::Success,
        TaskState::Failure,
        TaskState::Retry,
        TaskState::Revoked,
        TaskState::Rejected,
    ];

    /// True for the states a task never leaves: SUCCESS, FAILURE, REVOKED and REJECTED.
    pub fn is_ready(self) -> bool {
        matches!(
            self,
            TaskState::Success | TaskState::Failure | TaskState::Revoked | TaskState::Rejected
        )
    }

    /// The Celery name of the state, such as `"SUCCESS"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "PENDING",
            TaskState::Received => "RECEIVED",
            TaskState::Started => "STARTED",
            TaskState::Success => "SUCCESS",
            TaskState::Failure => "FAILURE",
            TaskState::Retry => "RETRY",
            TaskState::Revoked => "REVOKED",
            TaskState::Rejected => "REJECTED",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error returned when parsing an unknown state name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown task state {0:?}: expected one of PENDING, RECEIVED, STARTED, SUCCESS, FAILURE, RETRY, REVOKED, REJECTED"
)]
pub struct UnknownState(pub String);

impl FromStr for TaskState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}
