//! The per-user maintenance lease: deduplication, consolidation, summarisation and
//! compression each read a user's memories, compute, and write; two of them on one
//! user at once would work on each other's stale copies. Each takes the user's lease
//! for its hard time limit (so a crashed worker's lease lapses by itself) and gives
//! it back when done. A task that finds the lease taken fails with `UserBusy`, which
//! is retried with backoff.
//!
//! The lease orders the tasks among themselves; the user's own writes are not held
//! back by it: they are caught by the version check of every task write.

use std::future::Future;
use std::time::Duration;

use hippo_queue_core::{TaskContext, TaskError};

use super::{USER_BUSY, store_error};
use crate::store::MemoryStore;

/// Runs `work` holding `user`'s lease for at most `ttl`.
pub(crate) async fn with_user_lease<T>(
    store: &dyn MemoryStore,
    ctx: &TaskContext,
    user: &str,
    ttl: Duration,
    work: impl Future<Output = Result<T, TaskError>>,
) -> Result<T, TaskError> {
    let holder = ctx.id().to_string();
    if !store
        .acquire_lease(user, &holder, ttl)
        .await
        .map_err(store_error)?
    {
        return Err(TaskError::new(
            USER_BUSY,
            format!("another maintenance task is working on user {user:?}; retrying later"),
        ));
    }
    let out = work.await;
    if let Err(e) = store.release_lease(user, &holder).await {
        // It lapses by itself at the end of its ttl.
        tracing::warn!(user, error = %e, "could not release the maintenance lease");
    }
    out
}
