//! [`RedisStore`]: memories, migrations and rules on Redis.
//!
//! | key | type | content |
//! | --- | --- | --- |
//! | `<p>:mem:{<user>}:ids` | zset, score 0 | the user's memory ids (listed in id order) |
//! | `<p>:mem:{<user>}:doc` | hash | id -> the memory as JSON, without its vector |
//! | `<p>:mem:{<user>}:vec` | hash | id -> the vector, little-endian `f32` bytes |
//! | `<p>:mem:{<user>}:exp` | zset | id -> `expires_at` in ms (the user's expiry index) |
//! | `<p>:mem:{<user>}:ver` | hash | id -> the memory's version (one more on every write) |
//! | `<p>:mem:{<user>}:lease` | string, PX | the holder of the user's maintenance lease |
//! | `<p>:mem:users` | zset, score 0 | users with at least one memory |
//! | `<p>:mem:expiry` | zset | `["<user>","<id>"]` -> `expires_at` in ms (everyone's expiry index) |
//! | `<p>:migration:{<id>}` | hash | `doc` -> the migration as JSON; `cancel` -> `1` once cancelled |
//! | `<p>:rule:{<user>}:ids` | zset, score 0 | the user's procedural rule ids |
//! | `<p>:rule:{<user>}:doc` | hash | id -> the rule as JSON |
//!
//! A user's keys share the hash tag `{<user>}`, so a [`ChangeSet`] is one Lua script
//! in one slot: it checks every expected version first and writes only if all match. The two global indexes are written around it: an expiry entry is added
//! before the memory is written and removed after it is deleted, so an expiring memory
//! is never missing from the index (a stale entry is only skipped by expiration).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_redis::{Pool, Runtime};
use redis::AsyncCommands;

use super::{
    ChangeSet, ExpiredRef, ExpiryCursor, MemoryStore, Page, PageRequest, StoreError, check_owner,
    ms,
};
use crate::model::{Memory, Migration, MigrationStatus, ProceduralRule};

/// Settings of a [`RedisStore`].
///
/// ```
/// use hippo_memory_tasks::store::RedisStoreConfig;
/// let cfg = RedisStoreConfig::new("redis://localhost:6379/0").prefix("hippocampai");
/// assert_eq!(cfg.prefix, "hippocampai");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RedisStoreConfig {
    /// `redis://[user[:password]@]host[:port][/db]`.
    pub url: String,
    /// Prefix of every key (default `hippo`).
    pub prefix: String,
    /// Most pooled connections (default 16).
    pub pool_size: usize,
}

/// Shows the URL with its password hidden.
impl std::fmt::Debug for RedisStoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStoreConfig")
            .field("url", &hippo_queue_core::config::redact_url(&self.url))
            .field("prefix", &self.prefix)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl RedisStoreConfig {
    /// Settings for a URL.
    pub fn new(url: impl Into<String>) -> Self {
        RedisStoreConfig {
            url: url.into(),
            prefix: "hippo".into(),
            pool_size: 16,
        }
    }

    /// Sets the key prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the pool size.
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n.max(1);
        self
    }
}

/// Memories, migrations and rules on Redis (see the module docs for the keys). Cheap
/// to clone.
#[derive(Clone)]
pub struct RedisStore {
    pool: Pool,
    prefix: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Applies a change set to one user's keys if every expected version matches.
///
/// KEYS: ids, doc, vec, exp, ver. ARGV: the number of expectations, then `id, version`
/// pairs; the number of deletions, then ids; the number of writes, then
/// `id, json, vector bytes ('' = none), expiry ms ('' = none)` quadruples.
/// Returns `{deleted, remaining, ''}`, or `{-1, remaining, id}` (nothing written) on
/// a version mismatch.
const APPLY: &str = r"
local i = 1
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local id, want = ARGV[i], tonumber(ARGV[i + 1]); i = i + 2
  local have = redis.call('HGET', KEYS[5], id)
  if redis.call('HEXISTS', KEYS[2], id) == 0 or tonumber(have or '0') ~= want then
    return {-1, redis.call('ZCARD', KEYS[1]), id}
  end
end
local deleted = 0
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local id = ARGV[i]; i = i + 1
  deleted = deleted + redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('ZREM', KEYS[4], id)
  redis.call('HDEL', KEYS[5], id)
end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local id, json, vec, exp = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]; i = i + 4
  redis.call('ZADD', KEYS[1], 0, id)
  redis.call('HSET', KEYS[2], id, json)
  if vec == '' then redis.call('HDEL', KEYS[3], id) else redis.call('HSET', KEYS[3], id, vec) end
  if exp == '' then redis.call('ZREM', KEYS[4], id) else redis.call('ZADD', KEYS[4], exp, id) end
  redis.call('HINCRBY', KEYS[5], id, 1)
end
return {deleted, redis.call('ZCARD', KEYS[1]), ''}";

/// Deletes a lease key if it still names the holder. KEYS: lease. ARGV: holder.
const RELEASE_LEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

const DROP_USER_IF_EMPTY: &str = r"
if redis.call('ZCARD', KEYS[1]) == 0 then
  return redis.call('ZREM', KEYS[2], ARGV[1])
end
return 0";

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn redis_error(e: redis::RedisError) -> StoreError {
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Backend(e.to_string())
    }
}

/// Encodes a vector as little-endian `f32` bytes.
pub(crate) fn vector_bytes(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// Decodes little-endian `f32` bytes.
pub(crate) fn bytes_vector(b: &[u8]) -> Option<Vec<f32>> {
    if !b.len().is_multiple_of(4) {
        return None;
    }
    Some(
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

fn global_member(user: &str, id: &str) -> String {
    serde_json::to_string(&(user, id)).unwrap_or_default()
}

impl RedisStore {
    /// Connects (and checks the server answers).
    pub async fn connect(config: RedisStoreConfig) -> Result<Self, StoreError> {
        let mut cfg = deadpool_redis::Config::from_url(config.url.clone());
        cfg.pool = Some(deadpool_redis::PoolConfig::new(config.pool_size));
        let pool = cfg
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| StoreError::Invalid(format!("Redis URL: {e}")))?;
        let store = RedisStore {
            pool,
            prefix: config.prefix,
        };
        store.ping().await?;
        Ok(store)
    }

    async fn conn(&self) -> Result<deadpool_redis::Connection, StoreError> {
        tokio::time::timeout(Duration::from_secs(10), self.pool.get())
            .await
            .map_err(|_| unavailable("timed out waiting for a Redis connection"))?
            .map_err(unavailable)
    }

    fn user_key(&self, user: &str, what: &str) -> String {
        format!("{}:mem:{{{user}}}:{what}", self.prefix)
    }

    fn rule_key(&self, user: &str, what: &str) -> String {
        format!("{}:rule:{{{user}}}:{what}", self.prefix)
    }

    fn users_key(&self) -> String {
        format!("{}:mem:users", self.prefix)
    }

    fn expiry_key(&self) -> String {
        format!("{}:mem:expiry", self.prefix)
    }

    fn migration_key(&self, id: &str) -> String {
        format!("{}:migration:{{{id}}}", self.prefix)
    }

    /// Removes a user from the users index if it has no memory left.
    async fn drop_user_if_empty(
        &self,
        conn: &mut deadpool_redis::Connection,
        user_id: &str,
    ) -> Result<(), StoreError> {
        redis::cmd("EVAL")
            .arg(DROP_USER_IF_EMPTY)
            .arg(2)
            .arg(self.user_key(user_id, "ids"))
            .arg(self.users_key())
            .arg(user_id)
            .query_async::<i64>(conn)
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    /// Reads ids of a lex-ordered zset after a cursor: at most `limit` and whether
    /// more follow.
    async fn ids_after(
        &self,
        conn: &mut deadpool_redis::Connection,
        key: &str,
        page: &PageRequest,
    ) -> Result<(Vec<String>, bool), StoreError> {
        let min = match &page.after {
            Some(a) => format!("({a}"),
            None => "-".to_string(),
        };
        let limit = page.size();
        let mut ids: Vec<String> = redis::cmd("ZRANGEBYLEX")
            .arg(key)
            .arg(min)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(limit + 1)
            .query_async(conn)
            .await
            .map_err(redis_error)?;
        let more = ids.len() > limit;
        ids.truncate(limit);
        Ok((ids, more))
    }

    async fn expiry_page(
        &self,
        key: &str,
        before_ms: i64,
        cursor: Option<(i64, String)>,
        limit: usize,
    ) -> Result<(Vec<(String, i64)>, bool), StoreError> {
        let mut conn = self.conn().await?;
        // Still indexed, the cursor's entry gives its rank: read on from there, in
        // O(log n + limit) however many entries share its millisecond.
        if let Some((_, member)) = &cursor {
            let rank: Option<usize> = conn.zrank(key, member).await.map_err(redis_error)?;
            if let Some(r) = rank {
                let rows: Vec<(String, f64)> = conn
                    .zrange_withscores(key, (r + 1) as isize, (r + 1 + limit) as isize)
                    .await
                    .map_err(redis_error)?;
                let mut out: Vec<(String, i64)> = rows
                    .into_iter()
                    .map(|(m, sc)| (m, sc as i64))
                    .take_while(|(_, sc)| *sc <= before_ms)
                    .collect();
                let more = out.len() > limit;
                out.truncate(limit);
                return Ok((out, more));
            }
        }
        // Otherwise (it was deleted, as expiration does with what it reads) scan from
        // its millisecond, skipping the entries of that millisecond up to it.
        let lo = cursor
            .as_ref()
            .map_or("-inf".to_string(), |c| c.0.to_string());
        let mut offset = 0usize;
        let mut out = Vec::new();
        loop {
            let batch: Vec<(String, f64)> = redis::cmd("ZRANGEBYSCORE")
                .arg(key)
                .arg(&lo)
                .arg(before_ms)
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(offset)
                .arg(limit + 1)
                .query_async(&mut conn)
                .await
                .map_err(redis_error)?;
            let got = batch.len();
            offset += got;
            for (member, score) in batch {
                let score = score as i64;
                if let Some((cms, cmember)) = &cursor
                    && score == *cms
                    && member.as_str() <= cmember.as_str()
                {
                    continue;
                }
                out.push((member, score));
                if out.len() > limit {
                    out.truncate(limit);
                    return Ok((out, true));
                }
            }
            if got < limit + 1 {
                return Ok((out, false));
            }
        }
    }
}

#[async_trait]
impl MemoryStore for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    async fn get(&self, user_id: &str, id: &str) -> Result<Option<Memory>, StoreError> {
        let mut conn = self.conn().await?;
        let (doc, vec, ver): (Option<String>, Option<Vec<u8>>, Option<u64>) = redis::pipe()
            .hget(self.user_key(user_id, "doc"), id)
            .hget(self.user_key(user_id, "vec"), id)
            .hget(self.user_key(user_id, "ver"), id)
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        doc.map(|d| decode_memory(&self.user_key(user_id, "doc"), id, &d, vec, ver))
            .transpose()
    }

    async fn acquire_lease(
        &self,
        user_id: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let key = self.user_key(user_id, "lease");
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let set: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(holder)
            .arg("NX")
            .arg("PX")
            .arg(ms)
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        if set.is_some() {
            return Ok(true);
        }
        // Taken again by the same holder (a retry of the same run): extend it.
        let current: Option<String> = conn.get(&key).await.map_err(redis_error)?;
        if current.as_deref() == Some(holder) {
            let _: bool = conn.pexpire(&key, ms as i64).await.map_err(redis_error)?;
            return Ok(true);
        }
        Ok(false)
    }

    async fn release_lease(&self, user_id: &str, holder: &str) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        redis::Script::new(RELEASE_LEASE)
            .key(self.user_key(user_id, "lease"))
            .arg(holder)
            .invoke_async::<i64>(&mut conn)
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    async fn apply(&self, user_id: &str, changes: ChangeSet) -> Result<u64, StoreError> {
        check_owner(user_id, &changes)?;
        if changes.put.is_empty() && changes.delete.is_empty() {
            return Ok(0);
        }
        let (ids, doc, vec, exp) = (
            self.user_key(user_id, "ids"),
            self.user_key(user_id, "doc"),
            self.user_key(user_id, "vec"),
            self.user_key(user_id, "exp"),
        );
        let mut conn = self.conn().await?;

        // Index first: the user and the expiry of every memory written.
        let mut before = redis::pipe();
        if !changes.put.is_empty() {
            before.zadd(self.users_key(), user_id, 0).ignore();
        }
        for m in &changes.put {
            if let Some(e) = m.expires_at {
                before
                    .zadd(self.expiry_key(), global_member(user_id, &m.id), ms(e))
                    .ignore();
            }
        }
        if !changes.put.is_empty() {
            before
                .query_async::<()>(&mut conn)
                .await
                .map_err(redis_error)?;
        }

        // The user's data, atomically, if every expected version still matches.
        let apply = redis::Script::new(APPLY);
        let mut script = apply.prepare_invoke();
        script
            .key(&ids)
            .key(&doc)
            .key(&vec)
            .key(&exp)
            .key(self.user_key(user_id, "ver"));
        script.arg(changes.expect.len());
        for (id, version) in &changes.expect {
            script.arg(id).arg(version);
        }
        script.arg(changes.delete.len());
        for id in &changes.delete {
            script.arg(id);
        }
        script.arg(changes.put.len());
        for m in &changes.put {
            let mut bare = m.clone();
            let vector = bare.embedding.take();
            let json = serde_json::to_string(&bare)
                .map_err(|e| StoreError::Backend(format!("encoding memory {}: {e}", m.id)))?;
            script
                .arg(&m.id)
                .arg(json)
                .arg(vector.map(|v| vector_bytes(&v)).unwrap_or_default())
                .arg(m.expires_at.map(|e| ms(e).to_string()).unwrap_or_default());
        }
        let (deleted, remaining, conflict): (i64, i64, String) =
            script.invoke_async(&mut conn).await.map_err(redis_error)?;
        if deleted < 0 {
            if remaining == 0 {
                self.drop_user_if_empty(&mut conn, user_id).await?;
            }
            return Err(StoreError::Conflict { id: conflict });
        }
        let deleted = deleted as u64;

        // Then the indexes of what is gone.
        let stale: Vec<String> = changes
            .delete
            .iter()
            .chain(
                changes
                    .put
                    .iter()
                    .filter(|m| m.expires_at.is_none())
                    .map(|m| &m.id),
            )
            .map(|id| global_member(user_id, id))
            .collect();
        if stale.is_empty() && remaining != 0 {
            return Ok(deleted);
        }
        let mut after = redis::pipe();
        if !stale.is_empty() {
            after.zrem(self.expiry_key(), stale).ignore();
        }
        if remaining == 0 {
            after
                .cmd("EVAL")
                .arg(DROP_USER_IF_EMPTY)
                .arg(2)
                .arg(&ids)
                .arg(self.users_key())
                .arg(user_id)
                .ignore();
        }
        after
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_error)?;
        Ok(deleted)
    }

    async fn list_by_user(
        &self,
        user_id: &str,
        page: &PageRequest,
    ) -> Result<Page<Memory>, StoreError> {
        let mut conn = self.conn().await?;
        let (ids, more) = self
            .ids_after(&mut conn, &self.user_key(user_id, "ids"), page)
            .await?;
        if ids.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        }
        let doc_key = self.user_key(user_id, "doc");
        type Rows = (Vec<Option<String>>, Vec<Option<Vec<u8>>>, Vec<Option<u64>>);
        let (docs, vecs, vers): Rows = redis::pipe()
            .cmd("HMGET")
            .arg(&doc_key)
            .arg(&ids)
            .cmd("HMGET")
            .arg(self.user_key(user_id, "vec"))
            .arg(&ids)
            .cmd("HMGET")
            .arg(self.user_key(user_id, "ver"))
            .arg(&ids)
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        let mut items = Vec::with_capacity(ids.len());
        for (((id, doc), vec), ver) in ids.iter().zip(docs).zip(vecs).zip(vers) {
            if let Some(d) = doc {
                items.push(decode_memory(&doc_key, id, &d, vec, ver)?);
            }
        }
        Ok(Page {
            items,
            next: if more { ids.last().cloned() } else { None },
        })
    }

    async fn count_by_user(&self, user_id: &str) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        conn.zcard(self.user_key(user_id, "ids"))
            .await
            .map_err(redis_error)
    }

    async fn list_users(&self, page: &PageRequest) -> Result<Page<String>, StoreError> {
        let mut conn = self.conn().await?;
        let (items, more) = self.ids_after(&mut conn, &self.users_key(), page).await?;
        let next = if more { items.last().cloned() } else { None };
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
        let limit = page.size();
        let before_ms = ms(before);
        let (items, more) = match user_id {
            Some(user) => {
                let c = cursor.map(|c| (c.ms, c.id));
                let (rows, more) = self
                    .expiry_page(&self.user_key(user, "exp"), before_ms, c, limit)
                    .await?;
                let items = rows
                    .into_iter()
                    .map(|(id, ms)| ExpiredRef {
                        user_id: user.to_string(),
                        memory_id: id,
                        expires_at_ms: ms,
                    })
                    .collect::<Vec<_>>();
                (items, more)
            }
            None => {
                let c = cursor.map(|c| (c.ms, global_member(&c.user, &c.id)));
                let (rows, more) = self
                    .expiry_page(&self.expiry_key(), before_ms, c, limit)
                    .await?;
                let mut items = Vec::with_capacity(rows.len());
                for (member, ms) in rows {
                    let (user, id): (String, String) =
                        serde_json::from_str(&member).map_err(|e| StoreError::Corrupt {
                            key: self.expiry_key(),
                            reason: format!("member {member:?}: {e}"),
                        })?;
                    items.push(ExpiredRef {
                        user_id: user,
                        memory_id: id,
                        expires_at_ms: ms,
                    });
                }
                (items, more)
            }
        };
        let next = match (more, items.last()) {
            (true, Some(l)) => Some(
                ExpiryCursor {
                    ms: l.expires_at_ms,
                    user: l.user_id.clone(),
                    id: l.memory_id.clone(),
                }
                .encode(),
            ),
            _ => None,
        };
        Ok(Page { items, next })
    }

    async fn create_migration(&self, migration: &Migration) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let created: bool = conn
            .hset_nx(
                self.migration_key(&migration.id),
                "doc",
                encode_migration(migration)?,
            )
            .await
            .map_err(redis_error)?;
        if created {
            Ok(())
        } else {
            Err(StoreError::Invalid(format!(
                "migration {} already exists",
                migration.id
            )))
        }
    }

    async fn get_migration(&self, id: &str) -> Result<Option<Migration>, StoreError> {
        let mut conn = self.conn().await?;
        let key = self.migration_key(id);
        let (doc, cancel): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(&key)
            .arg("doc")
            .arg("cancel")
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        doc.map(|d| {
            let mut m: Migration = serde_json::from_str(&d).map_err(|e| StoreError::Corrupt {
                key: key.clone(),
                reason: e.to_string(),
            })?;
            m.cancel_requested = cancel.is_some();
            Ok(m)
        })
        .transpose()
    }

    async fn save_migration(&self, migration: &Migration) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        conn.hset::<_, _, _, ()>(
            self.migration_key(&migration.id),
            "doc",
            encode_migration(migration)?,
        )
        .await
        .map_err(redis_error)
    }

    async fn cancel_migration(&self, id: &str) -> Result<Option<Migration>, StoreError> {
        let Some(mut m) = self.get_migration(id).await? else {
            return Ok(None);
        };
        let mut conn = self.conn().await?;
        conn.hset::<_, _, _, ()>(self.migration_key(id), "cancel", "1")
            .await
            .map_err(redis_error)?;
        m.cancel_requested = true;
        if m.status == MigrationStatus::Pending {
            m.status = MigrationStatus::Cancelled;
            m.completed_at = Some(Utc::now());
            self.save_migration(&m).await?;
        }
        Ok(Some(m))
    }

    async fn put_rules(&self, user_id: &str, rules: &[ProceduralRule]) -> Result<(), StoreError> {
        if rules.is_empty() {
            return Ok(());
        }
        let mut tx = redis::pipe();
        tx.atomic();
        for r in rules {
            if r.user_id != user_id {
                return Err(StoreError::Invalid(format!(
                    "rule {} belongs to {:?}, not {user_id:?}",
                    r.id, r.user_id
                )));
            }
            let json = serde_json::to_string(r)
                .map_err(|e| StoreError::Backend(format!("encoding rule {}: {e}", r.id)))?;
            tx.zadd(self.rule_key(user_id, "ids"), &r.id, 0)
                .ignore()
                .hset(self.rule_key(user_id, "doc"), &r.id, json)
                .ignore();
        }
        let mut conn = self.conn().await?;
        tx.query_async::<()>(&mut conn).await.map_err(redis_error)
    }

    async fn delete_rules(&self, user_id: &str, ids: &[String]) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn().await?;
        let (n,): (u64,) = redis::pipe()
            .atomic()
            .zrem(self.rule_key(user_id, "ids"), ids)
            .hdel(self.rule_key(user_id, "doc"), ids)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        Ok(n)
    }

    async fn list_rules(
        &self,
        user_id: &str,
        page: &PageRequest,
    ) -> Result<Page<ProceduralRule>, StoreError> {
        let mut conn = self.conn().await?;
        let (ids, more) = self
            .ids_after(&mut conn, &self.rule_key(user_id, "ids"), page)
            .await?;
        if ids.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        }
        let key = self.rule_key(user_id, "doc");
        let docs: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(&key)
            .arg(&ids)
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        let mut items = Vec::with_capacity(ids.len());
        for (id, doc) in ids.iter().zip(docs) {
            if let Some(d) = doc {
                items.push(serde_json::from_str(&d).map_err(|e| StoreError::Corrupt {
                    key: format!("{key} {id}"),
                    reason: e.to_string(),
                })?);
            }
        }
        Ok(Page {
            items,
            next: if more { ids.last().cloned() } else { None },
        })
    }
}

fn encode_migration(m: &Migration) -> Result<String, StoreError> {
    let mut bare = m.clone();
    bare.cancel_requested = false;
    serde_json::to_string(&bare)
        .map_err(|e| StoreError::Backend(format!("encoding migration {}: {e}", m.id)))
}

fn decode_memory(
    key: &str,
    id: &str,
    doc: &str,
    vec: Option<Vec<u8>>,
    version: Option<u64>,
) -> Result<Memory, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: format!("{key} {id}"),
        reason,
    };
    let mut m: Memory = serde_json::from_str(doc).map_err(|e| corrupt(e.to_string()))?;
    if let Some(b) = vec {
        m.embedding =
            Some(bytes_vector(&b).ok_or_else(|| corrupt(format!("vector of {} bytes", b.len())))?);
    }
    m.version = version.unwrap_or(0);
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_url_passwords() {
        let cfg = RedisStoreConfig::new("redis://:s3cret@host:6379/0");
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("redis://:***@host:6379/0"), "{shown}");
    }

    #[test]
    fn vectors_round_trip_as_le_f32() {
        let v = vec![1.0f32, -0.5, 3.25e-3];
        let b = vector_bytes(&v);
        assert_eq!(b.len(), 12);
        assert_eq!(&b[..4], &1.0f32.to_le_bytes());
        assert_eq!(bytes_vector(&b).unwrap(), v);
        assert!(bytes_vector(&b[..5]).is_none());
    }
}
