//! [`InMemoryStore`]: everything in one process, behind one lock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    ChangeSet, ExpiredRef, ExpiryCursor, MemoryStore, Page, PageRequest, StoreError, check_owner,
    ms,
};
use crate::model::{Memory, Migration, MigrationStatus, ProceduralRule};

/// A store in process memory, for tests, embedded use and benchmarks. Cheap to clone
/// (clones share the data).
#[derive(Clone, Default)]
pub struct InMemoryStore {
    inner: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    memories: BTreeMap<String, BTreeMap<String, Memory>>,
    leases: HashMap<String, (String, Instant)>,
    expiry: BTreeSet<ExpiryCursor>,
    migrations: HashMap<String, (Migration, bool)>,
    rules: BTreeMap<String, BTreeMap<String, ProceduralRule>>,
}

impl std::fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryStore").finish_non_exhaustive()
    }
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn expiry_entry(m: &Memory) -> Option<ExpiryCursor> {
    m.expires_at.map(|e| ExpiryCursor {
        ms: ms(e),
        user: m.user_id.clone(),
        id: m.id.clone(),
    })
}

fn page_of<K: Ord + Clone, V: Clone>(
    map: &BTreeMap<K, V>,
    after: Option<K>,
    limit: usize,
    key: impl Fn(&K) -> String,
) -> Page<V> {
    let lower = match after {
        Some(a) => Bound::Excluded(a),
        None => Bound::Unbounded,
    };
    let mut iter = map.range((lower, Bound::Unbounded));
    let mut items = Vec::new();
    let mut last = None;
    for (k, v) in iter.by_ref().take(limit) {
        items.push(v.clone());
        last = Some(k.clone());
    }
    let next = match (iter.next(), last) {
        (Some(_), Some(k)) => Some(key(&k)),
        _ => None,
    };
    Page { items, next }
}

#[async_trait]
impl MemoryStore for InMemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn get(&self, user_id: &str, id: &str) -> Result<Option<Memory>, StoreError> {
        Ok(self
            .lock()
            .memories
            .get(user_id)
            .and_then(|m| m.get(id))
            .cloned())
    }

    async fn apply(&self, user_id: &str, changes: ChangeSet) -> Result<u64, StoreError> {
        check_owner(user_id, &changes)?;
        let mut st = self.lock();
        let State {
            memories, expiry, ..
        } = &mut *st;
        let user = memories.entry(user_id.to_string()).or_default();
        if let Some((id, _)) = changes
            .expect
            .iter()
            .find(|(id, v)| user.get(id).map(|m| m.version) != Some(*v))
        {
            let id = id.clone();
            if user.is_empty() {
                memories.remove(user_id);
            }
            return Err(StoreError::Conflict { id });
        }
        let mut deleted = 0;
        for id in &changes.delete {
            if let Some(old) = user.remove(id) {
                deleted += 1;
                if let Some(e) = expiry_entry(&old) {
                    expiry.remove(&e);
                }
            }
        }
        for mut m in changes.put {
            m.version = user.get(&m.id).map_or(0, |old| old.version) + 1;
            if let Some(e) = user.get(&m.id).and_then(expiry_entry) {
                expiry.remove(&e);
            }
            if let Some(e) = expiry_entry(&m) {
                expiry.insert(e);
            }
            user.insert(m.id.clone(), m);
        }
        if user.is_empty() {
            memories.remove(user_id);
        }
        Ok(deleted)
    }

    async fn acquire_lease(
        &self,
        user_id: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut st = self.lock();
        match st.leases.get(user_id) {
            Some((h, until)) if h != holder && *until > now => Ok(false),
            _ => {
                st.leases
                    .insert(user_id.to_string(), (holder.to_string(), now + ttl));
                Ok(true)
            }
        }
    }

    async fn release_lease(&self, user_id: &str, holder: &str) -> Result<(), StoreError> {
        let mut st = self.lock();
        if st.leases.get(user_id).is_some_and(|(h, _)| h == holder) {
            st.leases.remove(user_id);
        }
        Ok(())
    }

    async fn list_by_user(
        &self,
        user_id: &str,
        page: &PageRequest,
    ) -> Result<Page<Memory>, StoreError> {
        let st = self.lock();
        Ok(match st.memories.get(user_id) {
            Some(m) => page_of(m, page.after.clone(), page.size(), Clone::clone),
            None => Page {
                items: Vec::new(),
                next: None,
            },
        })
    }

    async fn count_by_user(&self, user_id: &str) -> Result<u64, StoreError> {
        Ok(self.lock().memories.get(user_id).map_or(0, |m| m.len()) as u64)
    }

    async fn list_users(&self, page: &PageRequest) -> Result<Page<String>, StoreError> {
        let st = self.lock();
        let lower = match &page.after {
            Some(a) => Bound::Excluded(a.clone()),
            None => Bound::Unbounded,
        };
        let mut iter = st.memories.range((lower, Bound::Unbounded));
        let items: Vec<String> = iter
            .by_ref()
            .take(page.size())
            .map(|(k, _)| k.clone())
            .collect();
        let next = match (iter.next(), items.last()) {
            (Some(_), Some(last)) => Some(last.clone()),
            _ => None,
        };
        Ok(Page { items, next })
    }

    async fn expired(
        &self,
        before: DateTime<Utc>,
        user_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<ExpiredRef>, StoreError> {
        let cursor = page
            .after
            .as_deref()
            .map(ExpiryCursor::decode)
            .transpose()?;
        let limit_ms = ms(before);
        let st = self.lock();
        let lower = match cursor {
            Some(c) => Bound::Excluded(c),
            None => Bound::Unbounded,
        };
        let mut items = Vec::new();
        let mut last = None;
        let mut more = false;
        for e in st.expiry.range((lower, Bound::Unbounded)) {
            if e.ms > limit_ms {
                break;
            }
            if user_id.is_some_and(|u| u != e.user) {
                continue;
            }
            if items.len() == page.size() {
                more = true;
                break;
            }
            items.push(ExpiredRef {
                user_id: e.user.clone(),
                memory_id: e.id.clone(),
                expires_at_ms: e.ms,
            });
            last = Some(e.clone());
        }
        Ok(Page {
            items,
            next: if more { last.map(|c| c.encode()) } else { None },
        })
    }

    async fn create_migration(&self, migration: &Migration) -> Result<(), StoreError> {
        let mut st = self.lock();
        if st.migrations.contains_key(&migration.id) {
            return Err(StoreError::Invalid(format!(
                "migration {} already exists",
                migration.id
            )));
        }
        st.migrations
            .insert(migration.id.clone(), (migration.clone(), false));
        Ok(())
    }

    async fn get_migration(&self, id: &str) -> Result<Option<Migration>, StoreError> {
        Ok(self.lock().migrations.get(id).map(|(m, cancel)| {
            let mut m = m.clone();
            m.cancel_requested = *cancel;
            m
        }))
    }

    async fn save_migration(&self, migration: &Migration) -> Result<(), StoreError> {
        let mut st = self.lock();
        let cancel = st.migrations.get(&migration.id).is_some_and(|(_, c)| *c);
        let mut m = migration.clone();
        m.cancel_requested = false;
        st.migrations.insert(m.id.clone(), (m, cancel));
        Ok(())
    }

    async fn cancel_migration(&self, id: &str) -> Result<Option<Migration>, StoreError> {
        let mut st = self.lock();
        Ok(st.migrations.get_mut(id).map(|(m, cancel)| {
            *cancel = true;
            if m.status == MigrationStatus::Pending {
                m.status = MigrationStatus::Cancelled;
                m.completed_at = Some(Utc::now());
            }
            let mut out = m.clone();
            out.cancel_requested = true;
            out
        }))
    }

    async fn put_rules(&self, user_id: &str, rules: &[ProceduralRule]) -> Result<(), StoreError> {
        if let Some(r) = rules.iter().find(|r| r.user_id != user_id) {
            return Err(StoreError::Invalid(format!(
                "rule {} belongs to {:?}, not {user_id:?}",
                r.id, r.user_id
            )));
        }
        let mut st = self.lock();
        let user = st.rules.entry(user_id.to_string()).or_default();
        for r in rules {
            user.insert(r.id.clone(), r.clone());
        }
        Ok(())
    }

    async fn delete_rules(&self, user_id: &str, ids: &[String]) -> Result<u64, StoreError> {
        let mut st = self.lock();
        let Some(user) = st.rules.get_mut(user_id) else {
            return Ok(0);
        };
        let n = ids.iter().filter(|id| user.remove(*id).is_some()).count();
        if user.is_empty() {
            st.rules.remove(user_id);
        }
        Ok(n as u64)
    }

    async fn list_rules(
        &self,
        user_id: &str,
        page: &PageRequest,
    ) -> Result<Page<ProceduralRule>, StoreError> {
        let st = self.lock();
        Ok(match st.rules.get(user_id) {
            Some(r) => page_of(r, page.after.clone(), page.size(), Clone::clone),
            None => Page {
                items: Vec::new(),
                next: None,
            },
        })
    }
}
