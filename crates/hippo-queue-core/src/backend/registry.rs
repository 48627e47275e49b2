//! The worker registry: who is running, as the monitor and remote control see it,
//! and who ran lately.

use std::time::Duration;

use async_trait::async_trait;

use super::BackendError;
use crate::events::WorkerInfo;

/// How long a worker's last record is kept after its last heartbeat, so that a
/// monitor lists a worker that stopped as offline (Flower's `status: false`) before
/// forgetting it: [`WorkerRegistry::workers_seen`].
pub const WORKER_SEEN_FOR: Duration = Duration::from_secs(3600);

/// Most workers [`WorkerRegistry::workers_seen`] remembers; past it, those seen least
/// recently are forgotten first.
pub const MAX_WORKERS_SEEN: usize = 10_000;

/// Keeps a record of each live worker (renewed on every heartbeat, expiring after).
#[async_trait]
pub trait WorkerRegistry: Send + Sync + 'static {
    /// Records a worker in the registry for `ttl` (renewed on every heartbeat), and
    /// keeps its last record for [`WORKER_SEEN_FOR`] after that.
    async fn register_worker(&self, info: &WorkerInfo, ttl: Duration) -> Result<(), BackendError>;

    /// The workers whose registry records have not expired.
    async fn workers(&self) -> Result<Vec<WorkerInfo>, BackendError>;

    /// The last record of every worker registered within [`WORKER_SEEN_FOR`] (at most
    /// [`MAX_WORKERS_SEEN`]), live or not, by id. Those not in
    /// [`workers`](WorkerRegistry::workers) have stopped (cleanly or not).
    async fn workers_seen(&self) -> Result<Vec<WorkerInfo>, BackendError>;
}
