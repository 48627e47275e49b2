//! [`BeatError`]: what can go wrong building or running a scheduler.

use crate::BackendError;
use crate::codec::CodecError;

use super::ScheduleError;

/// An error of the scheduler: a bad schedule, entry or setting, or a failure of the
/// store or of a send.
///
/// ```
/// use hippo_queue_core::beat::{BeatError, Entry, Schedule};
/// let err = Entry::by_name("has spaces", "t", vec![0xc0], Schedule::every_hours(1)).unwrap_err();
/// assert!(matches!(err, BeatError::InvalidEntry { .. }));
/// assert!(err.to_string().contains("has spaces"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BeatError {
    /// A schedule is invalid.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// An entry is invalid.
    #[error("invalid beat entry {entry:?}: {reason}")]
    InvalidEntry {
        /// The entry's name.
        entry: String,
        /// What is wrong.
        reason: String,
    },
    /// Scheduler settings are invalid.
    #[error("invalid beat settings: {0}")]
    InvalidSettings(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] BackendError),
    /// An entry's arguments could not be encoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A task could not be sent or routed.
    #[error(transparent)]
    Send(#[from] crate::Error),
}
