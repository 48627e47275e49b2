//! The event log: task and worker events, kept capped, read from any cursor.

use async_trait::async_trait;

use super::BackendError;
use crate::events::Event;

/// Appends events to a capped log that monitors read from any point.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends events to the capped event log.
    async fn emit(&self, events: &[Event]) -> Result<(), BackendError>;

    /// Up to `count` events after the cursor `after` (from the oldest kept when
    /// `None`), each with its cursor.
    async fn events(
        &self,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<(String, Event)>, BackendError>;

    /// Up to `count` events before the cursor `before` (from the newest when `None`),
    /// newest first, each with its cursor: for reading the recent past without
    /// reading the whole log.
    async fn events_before(
        &self,
        before: Option<&str>,
        count: usize,
    ) -> Result<Vec<(String, Event)>, BackendError>;
}
