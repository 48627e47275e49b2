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
#[derive(Debug, Clone, Default)]
pub struct ChangeSet {
    /// Memories written (created or replaced).
    pub put: Vec<Memory>,
    /// Memory ids removed.
    pub delete: Vec<String>,
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

    /// Writes one memory.
    async fn put(&self, memory: &Memory) -> Result<(), StoreError> {
        self.apply(
            &memory.user_id,
            ChangeSet {
                put: vec![memory.clone()],
                delete: Vec::new(),
            },
        )
        .await
        .map(|_| ())
    }

    /// Deletes memories of a user; returns how many existed.
    async fn delete(&self, user_id: &str, ids: &[String]) -> Result<u64, StoreError> {
        self.apply(
            user_id,
            ChangeSet {
                put: Vec::new(),
                delete: ids.to_vec(),
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
