//! [`Hooked`]: a store that forwards to a real one and lets a test step in between a
//! task's read and its write (a concurrent user edit, a crash, a size probe).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hippo_memory_tasks::model::{Memory, Migration, ProceduralRule};
use hippo_memory_tasks::store::{
    ChangeSet, ExpiredRef, MemoryStore, Page, PageRequest, StoreError,
};
use tokio::sync::Notify;

/// A forwarding store with hooks; every hook is off until set.
#[derive(Default)]
pub struct Hooked {
    pub inner: Option<Arc<dyn MemoryStore>>,
    /// The first `apply` signals `.0` and waits for `.1`.
    pub pause_apply: Option<(Arc<Notify>, Arc<Notify>)>,
    /// Written to the inner store right after the first `get` reads (a user edit that
    /// lands between a task's read and its write).
    pub after_get: Mutex<Option<Memory>>,
    /// `save_migration` calls answered with an error once this many succeeded.
    pub fail_save_after: Option<usize>,
    saves: AtomicUsize,
    applies: AtomicUsize,
    /// The most memories one `apply` wrote.
    pub max_put: AtomicUsize,
}

impl Hooked {
    pub fn over(inner: Arc<dyn MemoryStore>) -> Self {
        Hooked {
            inner: Some(inner),
            ..Hooked::default()
        }
    }

    fn s(&self) -> &dyn MemoryStore {
        self.inner.as_deref().expect("an inner store")
    }
}

#[async_trait]
impl MemoryStore for Hooked {
    fn kind(&self) -> &'static str {
        self.s().kind()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.s().ping().await
    }
    async fn get(&self, user_id: &str, id: &str) -> Result<Option<Memory>, StoreError> {
        let read = self.s().get(user_id, id).await?;
        let edit = self.after_get.lock().unwrap().take();
        if let Some(m) = edit {
            self.s().put(&m).await?;
        }
        Ok(read)
    }
    async fn apply(&self, user_id: &str, changes: ChangeSet) -> Result<u64, StoreError> {
        if self.applies.fetch_add(1, Ordering::SeqCst) == 0
            && let Some((reached, resume)) = &self.pause_apply
        {
            reached.notify_one();
            resume.notified().await;
        }
        self.max_put.fetch_max(changes.put.len(), Ordering::SeqCst);
        self.s().apply(user_id, changes).await
    }
    async fn list_by_user(
        &self,
        user_id: &str,
        page: &PageRequest,
    ) -> Result<Page<Memory>, StoreError> {
        self.s().list_by_user(user_id, page).await
    }
    async fn count_by_user(&self, user_id: &str) -> Result<u64, StoreError> {
        self.s().count_by_user(user_id).await
    }
    async fn list_users(&self, page: &PageRequest) -> Result<Page<String>, StoreError> {
        self.s().list_users(page).await
    }
    async fn expired(
        &self,
        before: DateTime<Utc>,
        user_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<ExpiredRef>, StoreError> {
        self.s().expired(before, user_id, page).await
    }
    async fn create_migration(&self, migration: &Migration) -> Result<(), StoreError> {
        self.s().create_migration(migration).await
    }
    async fn get_migration(&self, id: &str) -> Result<Option<Migration>, StoreError> {
        self.s().get_migration(id).await
    }
    async fn save_migration(&self, migration: &Migration) -> Result<(), StoreError> {
        let n = self.saves.fetch_add(1, Ordering::SeqCst);
        if self.fail_save_after.is_some_and(|limit| n >= limit) {
            return Err(StoreError::Backend("crash between apply and save".into()));
        }
        self.s().save_migration(migration).await
    }
    async fn cancel_migration(&self, id: &str) -> Result<Option<Migration>, StoreError> {
        self.s().cancel_migration(id).await
    }
    async fn acquire_lease(
        &self,
        user_id: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        self.s().acquire_lease(user_id, holder, ttl).await
    }
    async fn release_lease(&self, user_id: &str, holder: &str) -> Result<(), StoreError> {
        self.s().release_lease(user_id, holder).await
    }
    async fn put_rules(&self, user_id: &str, rules: &[ProceduralRule]) -> Result<(), StoreError> {
        self.s().put_rules(user_id, rules).await
    }
    async fn delete_rules(&self, user_id: &str, ids: &[String]) -> Result<u64, StoreError> {
        self.s().delete_rules(user_id, ids).await
    }
    async fn list_rules(
        &self,
        user_id: &str,
        page: &PageRequest,
    ) -> Result<Page<ProceduralRule>, StoreError> {
        self.s().list_rules(user_id, page).await
    }
}
