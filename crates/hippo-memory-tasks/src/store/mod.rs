//! Where memories, migration records and procedural rules live: the [`MemoryStore`]
//! trait, an in-process [`InMemoryStore`] and a Redis [`RedisStore`].
//!
//! Every listing is paginated with a cursor: ask for a [`PageRequest`], get a [`Page`]
//! whose `next` is the cursor of the following page (`None` at the end). Cursors are
//! opaque strings; a page started from a cursor continues after the last item of the
//! page it came from, whatever was added or removed meanwhile, so a scan that deletes
//! what it reads never skips nor repeats anything.
//!
//! ```
//! use hippo_memory_tasks::model::{Memory, MemoryType};
//! use hippo_memory_tasks::store::{InMemoryStore, MemoryStore, PageRequest};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = InMemoryStore::new();
//! for i in 0..5 {
//!     store.put(&Memory::new("alice", format!("note {i}"), MemoryType::Fact)).await?;
//! }
//! let mut page = PageRequest::first(2);
//! let mut seen = 0;
//! loop {
//!     let p = store.list_by_user("alice", &page).await?;
//!     seen += p.items.len();
//!     match p.next { Some(c) => page = page.after(c), None => break }
//! }
//! assert_eq!(seen, 5);
//! # Ok(()) }
//! ```

mod memory;
mod redis;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Memory, Migration, ProceduralRule};

pub use self::memory::InMemoryStore;
pub use self::redis::{RedisStore, RedisStoreConfig};

/// Largest page a store returns.
pub const MAX_PAGE: usize = 10_000;
/// Page size used by the tasks.
pub const DEFAULT_PAGE: usize = 500;

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store cannot be reached (worth retrying).
    #[error("memory store unavailable: {0}")]
    Unavailable(String),
    /// The store answered with an error.
    #[error("memory store error: {0}")]
    Backend(String),
    /// A stored record could not be decoded.
    #[error("corrupt record {key}: {reason}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The request itself is wrong (a bad cursor, a memory of another user).
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// A memory a [`ChangeSet`] expected is gone or was written since it was read;
    /// nothing of the change set was applied.
    #[error("memory {id} changed since it was read")]
    Conflict {
        /// The memory.
        id: String,
    },
}

/// One page to read: start after `after` (from the start when `None`), at most
/// `limit` items (clamped to 1..=[`MAX_PAGE`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// The cursor of the previous page.
    pub after: Option<String>,
    /// Most items.
    pub limit: usize,
}

impl PageRequest {
    /// The first page.
    pub fn first(limit: usize) -> Self {
        PageRequest { after: None, limit }
    }

    /// The page after `cursor`, same size.
    pub fn after(&self, cursor: String) -> Self {
        PageRequest {
            after: Some(cursor),
            limit: self.limit,
        }
    }

    /// The limit, clamped.
    pub fn size(&self) -> usize {
        self.limit.clamp(1, MAX_PAGE)
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest::first(DEFAULT_PAGE)
    }
}

/// One page of items and the cursor of the next (`None` when this is the last).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// The next page's cursor.
    pub next: Option<String>,
}

/// An entry of the expiry index: a memory and when it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiredRef {
    /// The owner.
    pub user_id: String,
    /// The memory.
    pub memory_id: String,
    /// Its `expires_at`, ms since the epoch.
    pub expires_at_ms: i64,
}

/// Writes applied to one user's memories at once: all or nothing.
///
/// A task that read memories and computes on them states the versions it read in
/// `expect`: if any of those memories was deleted or written since, the store applies
/// nothing and answers [`StoreError::Conflict`], so a user's concurrent edit or
/// deletion wins over the task's stale copy.
///
/// ```
/// use hippo_memory_tasks::model::{Memory, MemoryType};
/// use hippo_memory_tasks::store::{ChangeSet, InMemoryStore, MemoryStore, StoreError};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), StoreError> {
/// let store = InMemoryStore::new();
/// store.put(&Memory::new("alice", "Lives in Lisbon", MemoryType::Fact)).await?;
/// let read = hippo_memory_tasks::store::load_user(&store, "alice").await?.remove(0);
/// store.delete("alice", std::slice::from_ref(&read.id)).await?; // the user deletes it
/// let mut stale = read.clone();
/// stale.text = "Lives in Porto".into();
/// let err = store.apply("alice", ChangeSet::new().replace(stale)).await.unwrap_err();
/// assert!(matches!(err, StoreError::Conflict { .. }));
/// assert_eq!(store.count_by_user("alice").await?, 0); // not resurrected
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct ChangeSet {
    /// Memories written (created or replaced).
    pub put: Vec<Memory>,
    /// Memory ids removed.
    pub delete: Vec<String>,
    /// `(id, version)`: memories that must still exist with exactly this version.
    pub expect: Vec<(String, u64)>,
}

impl ChangeSet {
    /// An empty change set.
    pub fn new() -> Self {
        ChangeSet::default()
    }

    /// Writes a new memory (no version to check).
    pub fn create(mut self, memory: Memory) -> Self {
        self.put.push(memory);
        self
    }

    /// Writes a memory read before, if it still has the version it was read with.
    pub fn replace(mut self, memory: Memory) -> Self {
        self.expect.push((memory.id.clone(), memory.version));
        self.put.push(memory);
        self
    }

    /// Deletes a memory read before, if it still has the version it was read with.
    pub fn remove(mut self, memory: &Memory) -> Self {
        self.expect.push((memory.id.clone(), memory.version));
        self.delete.push(memory.id.clone());
        self
    }

    /// Whether it writes nothing.
    pub fn is_empty(&self) -> bool {
        self.put.is_empty() && self.delete.is_empty()
    }
}

/// Memories, migrations and procedural rules.
///
/// Implementations keep an index by `expires_at` so [`MemoryStore::expired`] reads
/// only expiring memories, and apply a [`ChangeSet`] to one user atomically (a merge
/// writes its survivor and deletes its duplicates in one step).
#[async_trait]
pub trait MemoryStore: Send + Sync + 'static {
    /// A short name for reports (`"memory"`, `"redis"`).
    fn kind(&self) -> &'static str;

    /// Checks that the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// One memory.
    async fn get(&self, user_id: &str, id: &str) -> Result<Option<Memory>, StoreError>;

    /// Applies writes and deletions to one user's memories atomically; returns how
    /// many of the deleted ids existed. Every memory put must belong to `user_id`.
    /// Each memory written gets the next version (its `version` field is ignored);
    /// when an `expect`ed version does not match, nothing is applied and the answer
    /// is [`StoreError::Conflict`].
    async fn apply(&self, user_id: &str, changes: ChangeSet) -> Result<u64, StoreError>;

    /// A user's memories, ordered by id.
    async fn list_by_user(
        &self,
        user_id: &str,
        page: &PageRequest,
    ) -> Result<Page<Memory>, StoreError>;

    /// How many memories a user has.
    async fn count_by_user(&self, user_id: &str) -> Result<u64, StoreError>;

    /// Users with at least one memory, ordered by id.
    async fn list_users(&self, page: &PageRequest) -> Result<Page<String>, StoreError>;

    /// Entries of the expiry index (of one user, or of everyone) up to `before`,
    /// earliest first. Expiry times are indexed to the millisecond, so an entry of
    /// `before`'s own millisecond may not be expired yet: callers confirm with
    /// [`Memory::is_expired`].
    async fn expired(
        &self,
        before: DateTime<Utc>,
        user_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<ExpiredRef>, StoreError>;

    /// Stores a new migration record.
    async fn create_migration(&self, migration: &Migration) -> Result<(), StoreError>;

    /// A migration record, with `cancel_requested` set when cancellation was asked
    /// for.
    async fn get_migration(&self, id: &str) -> Result<Option<Migration>, StoreError>;

    /// Saves a migration's progress. Never clears a cancellation request.
    async fn save_migration(&self, migration: &Migration) -> Result<(), StoreError>;

    /// Asks a migration to stop (a pending one is cancelled at once); returns the
    /// record, or `None` when there is no such migration.
    async fn cancel_migration(&self, id: &str) -> Result<Option<Migration>, StoreError>;

    /// Writes procedural rules (created or replaced); all must belong to `user_id`.
    async fn put_rules(&self, user_id: &str, rules: &[ProceduralRule]) -> Result<(), StoreError>;

    /// Deletes procedural rules; returns how many existed.
    async fn delete_rules(&self, user_id: &str, ids: &[String]) -> Result<u64, StoreError>;

    /// A user's procedural rules, ordered by id.
    async fn list_rules(
        &self,
        user_id: &str,
        page: &PageRequest,
    ) -> Result<Page<ProceduralRule>, StoreError>;

    /// Takes the per-user maintenance lease for `holder` for `ttl`, unless another
    /// holder has it; returns whether it was taken. Maintenance tasks hold it so two
    /// never work on one user at once.
    async fn acquire_lease(
        &self,
        user_id: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError>;

    /// Gives the lease back if `holder` still has it.
    async fn release_lease(&self, user_id: &str, holder: &str) -> Result<(), StoreError>;

    /// Writes one memory (unconditionally: a user's own write).
    async fn put(&self, memory: &Memory) -> Result<(), StoreError> {
        self.apply(&memory.user_id, ChangeSet::new().create(memory.clone()))
            .await
            .map(|_| ())
    }

    /// Deletes memories of a user (unconditionally); returns how many existed.
    async fn delete(&self, user_id: &str, ids: &[String]) -> Result<u64, StoreError> {
        self.apply(
            user_id,
            ChangeSet {
                delete: ids.to_vec(),
                ..ChangeSet::default()
            },
        )
        .await
    }

    /// Whether a user has any memory.
    async fn user_exists(&self, user_id: &str) -> Result<bool, StoreError> {
        Ok(self.count_by_user(user_id).await? > 0)
    }
}

/// Reads every memory of a user, page by page.
pub async fn load_user(store: &dyn MemoryStore, user_id: &str) -> Result<Vec<Memory>, StoreError> {
    let mut out = Vec::new();
    let mut page = PageRequest::first(DEFAULT_PAGE);
    loop {
        let p = store.list_by_user(user_id, &page).await?;
        out.extend(p.items);
        match p.next {
            Some(c) => page = page.after(c),
            None => return Ok(out),
        }
    }
}

/// Reads every procedural rule of a user, page by page.
pub async fn load_rules(
    store: &dyn MemoryStore,
    user_id: &str,
) -> Result<Vec<ProceduralRule>, StoreError> {
    let mut out = Vec::new();
    let mut page = PageRequest::first(DEFAULT_PAGE);
    loop {
        let p = store.list_rules(user_id, &page).await?;
        out.extend(p.items);
        match p.next {
            Some(c) => page = page.after(c),
            None => return Ok(out),
        }
    }
}

/// Checks that every memory put belongs to the user.
pub(crate) fn check_owner(user_id: &str, changes: &ChangeSet) -> Result<(), StoreError> {
    match changes.put.iter().find(|m| m.user_id != user_id) {
        Some(m) => Err(StoreError::Invalid(format!(
            "memory {} belongs to {:?}, not {user_id:?}",
            m.id, m.user_id
        ))),
        None => Ok(()),
    }
}

/// An expiry-index cursor: the last entry returned.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct ExpiryCursor {
    pub ms: i64,
    pub user: String,
    pub id: String,
}

impl ExpiryCursor {
    pub(crate) fn encode(&self) -> String {
        serde_json::to_string(&(self.ms, &self.user, &self.id)).unwrap_or_default()
    }

    pub(crate) fn decode(s: &str) -> Result<Self, StoreError> {
        let (ms, user, id): (i64, String, String) = serde_json::from_str(s)
            .map_err(|e| StoreError::Invalid(format!("bad expiry cursor {s:?}: {e}")))?;
        Ok(ExpiryCursor { ms, user, id })
    }
}

/// Milliseconds since the epoch of a time.
pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}
