//! Keeping results: the [`ResultBackend`] capability and the writes it takes.

use std::time::Duration;

use async_trait::async_trait;

use super::BackendError;
use crate::result::TaskMeta;

/// Why a result write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteOutcome {
    /// Stored.
    Stored,
    /// Refused: the stored record is final, or was written under a newer lease.
    Refused,
}

/// One result write.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultWrite {
    /// The record.
    pub meta: TaskMeta,
    /// How long to keep it.
    pub ttl: Duration,
    /// Compress above the codec's threshold.
    pub compress: bool,
    /// The sender is waiting on a [`ResultWatch`]: announce the record when it is
    /// final.
    pub announce: bool,
}

/// Interest in one task's result, registered before its message is sent (see
/// [`ResultBackend::watch`]).
#[async_trait]
pub trait ResultWatch: Send {
    /// Waits until the task is ready or `timeout` passes, and returns the record as it
    /// then is.
    async fn wait(&mut self, timeout: Duration) -> Result<Option<TaskMeta>, BackendError>;
}

/// Keeps task states and results.
#[async_trait]
pub trait ResultBackend: Send + Sync + 'static {
    /// Stores records. Each write is accepted or refused by the fencing rule of
    /// [`crate::result::accepts`]: a final record is never replaced, and a write under
    /// an older lease than the stored one is refused. Ready records wake waiters.
    async fn store(&self, writes: &[ResultWrite]) -> Result<Vec<WriteOutcome>, BackendError>;

    /// The record of a task, if any (expired records are gone).
    async fn get(&self, id: &str) -> Result<Option<TaskMeta>, BackendError>;

    /// Waits until the task is ready or `timeout` passes, woken by the write (no
    /// polling); returns the record as it then is.
    async fn wait(&self, id: &str, timeout: Duration) -> Result<Option<TaskMeta>, BackendError>;

    /// Starts watching a task's result before its message is sent, for
    /// [`App::call`](crate::App::call). `Some` promises that the final record of a
    /// message sent with `announce_result` (see [`ResultWrite::announce`]) reaches the
    /// watch, so its wait needs no look-up; `None` (the default) means the caller sends
    /// normally and waits with [`ResultBackend::wait`].
    fn watch(&self, id: &str) -> Option<Box<dyn ResultWatch>> {
        let _ = id;
        None
    }

    /// Deletes the record.
    async fn forget(&self, id: &str) -> Result<(), BackendError>;
}
