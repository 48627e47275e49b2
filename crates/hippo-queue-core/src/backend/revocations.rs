//! Durable revocations: the [`Revocations`] capability and the [`Revocation`] record.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::BackendError;

/// A durable revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Task id.
    pub id: String,
    /// Abort the task if it is running.
    pub terminate: bool,
    /// When the revocation itself is forgotten, ms since the epoch.
    pub until: u64,
}

/// Keeps revocations for their lifetime and tells running workers about new ones.
#[async_trait]
pub trait Revocations: Send + Sync + 'static {
    /// Records a revocation durably and tells running workers.
    async fn revoke(&self, revocation: Revocation) -> Result<(), BackendError>;

    /// The revocations in force (read once, when a worker starts).
    async fn revocations(&self) -> Result<Vec<Revocation>, BackendError>;

    /// Revocations recorded after `cursor`, at most `max`, with the cursor to pass
    /// next time; `None` returns none and the cursor of the latest. Workers read
    /// revocations this way on every heartbeat, so each read costs what is new, not
    /// the whole set.
    async fn revocations_after(
        &self,
        cursor: Option<&str>,
        max: usize,
    ) -> Result<(Vec<Revocation>, String), BackendError>;

    /// A live feed of new revocations.
    async fn subscribe_revocations(&self) -> Result<mpsc::Receiver<Revocation>, BackendError>;
}
