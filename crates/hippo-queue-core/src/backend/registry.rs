//! The worker registry: who is running, as the monitor and remote control see it.

use std::time::Duration;

use async_trait::async_trait;

use super::BackendError;
use crate::events::WorkerInfo;

/// Keeps a record of each live worker (renewed on every heartbeat, expiring after).
#[async_trait]
pub trait WorkerRegistry: Send + Sync + 'static {
    /// Records a worker in the registry for `ttl` (renewed on every heartbeat).
    async fn register_worker(&self, info: &WorkerInfo, ttl: Duration) -> Result<(), BackendError>;

    /// The workers whose registry records have not expired.
    async fn workers(&self) -> Result<Vec<WorkerInfo>, BackendError>;
}
