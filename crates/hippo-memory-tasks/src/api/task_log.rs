//! [`TaskLog`]: the ids of the tasks submitted through the API, so that an id nobody
//! submitted is a 404 rather than an eternal `PENDING` (Celery's answer for any id).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_redis::{Pool, Runtime};
use hippo_queue_core::beat::BeatStore;

use crate::store::StoreError;

/// Where the API records the tasks it submitted.
#[async_trait::async_trait]
pub trait TaskLog: Send + Sync + 'static {
    /// Records that task `id` (named `name`) was submitted.
    async fn record(&self, id: &str, name: &str) -> Result<(), StoreError>;
    /// Whether task `id` was submitted here (or is a known periodic tick).
    async fn contains(&self, id: &str) -> Result<bool, StoreError>;
}

/// A [`TaskLog`] in this process's memory: for an API that runs its own worker
/// (nothing is kept when it stops).
#[derive(Debug, Default)]
pub struct InMemoryTaskLog(Mutex<HashMap<String, String>>);

impl InMemoryTaskLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl TaskLog for InMemoryTaskLog {
    async fn record(&self, id: &str, name: &str) -> Result<(), StoreError> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(id.to_string(), name.to_string());
        Ok(())
    }

    async fn contains(&self, id: &str) -> Result<bool, StoreError> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Ok(m.contains_key(id))
    }
}

/// A [`TaskLog`] on Redis: `hippo:api:task:<id>` holds the task's name for as long as
/// results are kept (plus an hour). With a [`BeatStore`], the ids of the ticks beat has
/// sent (`beat:<entry>@<ms>`) are known too.
pub struct RedisTaskLog {
    pool: Pool,
    ttl: Duration,
    beat: Option<Arc<dyn BeatStore>>,
}

impl std::fmt::Debug for RedisTaskLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTaskLog")
            .field("ttl", &self.ttl)
            .field("beat", &self.beat.is_some())
            .finish_non_exhaustive()
    }
}

/// The key of task `id`.
fn key(id: &str) -> String {
    format!("hippo:api:task:{id}")
}

/// The entry and tick time of a periodic task's id, `beat:<entry>@<ms>`.
fn beat_tick(id: &str) -> Option<(&str, u64)> {
    let (entry, ms) = id.strip_prefix("beat:")?.rsplit_once('@')?;
    Some((entry, ms.parse().ok()?))
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("task log: {e}"))
}

impl RedisTaskLog {
    /// Connects to `url` (normally the result backend's) and checks that it answers;
    /// ids are kept for `ttl`.
    pub async fn connect(url: &str, ttl: Duration) -> Result<Self, StoreError> {
        let pool = deadpool_redis::Config::from_url(url)
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| StoreError::Invalid(format!("task log Redis URL: {e}")))?;
        let log = RedisTaskLog {
            pool,
            ttl: ttl.max(Duration::from_secs(1)),
            beat: None,
        };
        let mut conn = log.conn().await?;
        redis::cmd("PING")
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(log)
    }

    /// Knows the ids of the periodic ticks `beat` has claimed.
    pub fn beat(mut self, beat: Arc<dyn BeatStore>) -> Self {
        self.beat = Some(beat);
        self
    }

    async fn conn(&self) -> Result<deadpool_redis::Connection, StoreError> {
        tokio::time::timeout(Duration::from_secs(10), self.pool.get())
            .await
            .map_err(|_| unavailable("timed out waiting for a Redis connection"))?
            .map_err(unavailable)
    }
}

#[async_trait::async_trait]
impl TaskLog for RedisTaskLog {
    async fn record(&self, id: &str, name: &str) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        redis::cmd("SET")
            .arg(key(id))
            .arg(name)
            .arg("EX")
            .arg(self.ttl.as_secs())
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn contains(&self, id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn().await?;
        let exists: bool = redis::cmd("EXISTS")
            .arg(key(id))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if exists {
            return Ok(true);
        }
        match (beat_tick(id), &self.beat) {
            (Some((entry, ms)), Some(beat)) => {
                let last = beat.last_run(entry).await.map_err(unavailable)?;
                Ok(last.is_some_and(|last| last >= ms))
            }
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beat_tick_reads_entry_and_time() {
        assert_eq!(beat_tick("beat:dedup@1700"), Some(("dedup", 1700)));
        assert_eq!(beat_tick("beat:a@b@12"), Some(("a@b", 12)));
        assert_eq!(beat_tick("beat:dedup@soon"), None);
        assert_eq!(beat_tick("dedup@1700"), None);
        assert_eq!(beat_tick("beat:dedup"), None);
    }

    #[tokio::test]
    async fn in_memory_log_knows_what_it_recorded() {
        let log = InMemoryTaskLog::new();
        assert!(!log.contains("t1").await.unwrap());
        log.record("t1", "deduplication_task").await.unwrap();
        assert!(log.contains("t1").await.unwrap());
    }
}
