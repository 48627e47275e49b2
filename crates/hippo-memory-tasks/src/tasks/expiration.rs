//! `expire_memories_task`: deletes expired memories, of one user or of everyone,
//! through the store's expiry index.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use hippo_queue_core::{Task, TaskContext, TaskError, TaskOptions};
use serde::{Deserialize, Serialize};

use super::{MemoryServices, apply_unless_changed, options, require_user, store_error};
use crate::model::Memory;
use crate::store::{ChangeSet, DEFAULT_PAGE, MemoryStore, PageRequest};

/// Arguments of `expire_memories_task`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExpirationArgs {
    /// One user, or everyone when `None`.
    #[serde(default)]
    pub user_id: Option<String>,
}

/// Result of `expire_memories_task`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpirationResult {
    /// The user, or `None` for everyone.
    pub user_id: Option<String>,
    /// Memories deleted.
    pub expired_count: u64,
    /// Users that lost at least one memory.
    pub users_affected: u64,
    /// Expiry-index entries read.
    pub index_entries_scanned: u64,
}

/// Deletes expired memories (queue `scheduled`, routing key `scheduled.expire`).
///
/// Reads the expiry index page by page (never the whole store), re-reads each memory
/// to confirm it is expired (`now > expires_at`, strictly), and deletes it everywhere
/// the store keeps it: record, vector and both indexes, only if it did not change
/// since that read (an expiry extended or cleared meanwhile wins). Index entries of
/// memories already gone are removed too.
pub struct ExpireMemoriesTask {
    services: MemoryServices,
}

impl ExpireMemoriesTask {
    /// The task on these services.
    pub fn new(services: MemoryServices) -> Self {
        ExpireMemoriesTask { services }
    }
}

impl Task for ExpireMemoriesTask {
    const NAME: &'static str = "expire_memories_task";
    type Args = ExpirationArgs;
    type Output = ExpirationResult;

    fn options() -> TaskOptions {
        options("scheduled", "scheduled.expire", 300, 600)
    }

    async fn run(
        &self,
        ctx: &TaskContext,
        args: ExpirationArgs,
    ) -> Result<ExpirationResult, TaskError> {
        let store = self.services.store.as_ref();
        if let Some(user) = &args.user_id {
            require_user(store, user).await?;
        }
        let now = Utc::now();
        let mut page = PageRequest::first(DEFAULT_PAGE);
        let mut expired = 0u64;
        let mut scanned = 0u64;
        let mut users = BTreeSet::new();
        loop {
            if ctx.soft_limit_reached() {
                return Err(TaskError::soft_time_limit());
            }
            let p = store
                .expired(now, args.user_id.as_deref(), &page)
                .await
                .map_err(store_error)?;
            scanned += p.items.len() as u64;
            let mut by_user: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for e in p.items {
                by_user.entry(e.user_id).or_default().push(e.memory_id);
            }
            for (user, ids) in by_user {
                let mut expiring = Vec::with_capacity(ids.len());
                let mut gone = Vec::new();
                for id in ids {
                    match store.get(&user, &id).await.map_err(store_error)? {
                        Some(m) if !m.is_expired(now) => {}
                        Some(m) => expiring.push(m),
                        None => gone.push(id),
                    }
                }
                // A stale index entry: nothing to check.
                if !gone.is_empty() {
                    store.delete(&user, &gone).await.map_err(store_error)?;
                }
                let n = delete_unless_changed(store, &user, &expiring).await?;
                if n > 0 {
                    expired += n;
                    users.insert(user);
                }
            }
            match p.next {
                Some(c) => page = page.after(c),
                None => break,
            }
        }
        Ok(ExpirationResult {
            user_id: args.user_id,
            expired_count: expired,
            users_affected: users.len() as u64,
            index_entries_scanned: scanned,
        })
    }
}

/// Deletes expired memories as read: all at once, or one by one when one of them
/// changed meanwhile (its expiry may have been extended or cleared: it is kept).
async fn delete_unless_changed(
    store: &dyn MemoryStore,
    user: &str,
    expiring: &[Memory],
) -> Result<u64, TaskError> {
    if expiring.is_empty() {
        return Ok(0);
    }
    let all = expiring.iter().fold(ChangeSet::new(), |c, m| c.remove(m));
    if apply_unless_changed(store, user, all).await? {
        return Ok(expiring.len() as u64);
    }
    let mut n = 0;
    for m in expiring {
        if apply_unless_changed(store, user, ChangeSet::new().remove(m)).await? {
            n += 1;
        }
    }
    Ok(n)
}
