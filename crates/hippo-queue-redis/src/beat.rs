//! The periodic-task scheduler's store on Redis: [`BeatStore`] for [`RedisBackend`],
//! on the broker's server.
//!
//! | key | type | content | lifetime |
//! | --- | --- | --- | --- |
//! | `<prefix>:beat:leader` | string | the leading beat's id | the lease: set with `PX` = lease TTL (default 10 s), extended by the holder every third of it, deleted when the holder stops cleanly; gone by itself at most one TTL after the holder dies |
//! | `<prefix>:beat:status` | string | the leader's status (entries, last and next runs), MessagePack | three lease periods, refreshed by the leader with each lease renewal |
//! | `<prefix>:beat:sent:<task id>` | string | `1`: the tick's task was sent (set `NX` before the send) | twice the entry's interval, from one minute to a week: a later leader that lost the tick's claim does not send it again |
//! | `<prefix>:beat:last` | hash | entry name -> last tick claimed and its claimer, `<tick>:<beat id>` (tick in ms since the epoch, decimal; a bare `<tick>` from older versions or unnamed claims); and `#runs:<entry name>` -> the ticks claimed (`BeatStore::run_counts`, counted by the claim script since this field exists) | no expiry: it is the schedule's place, needed across restarts however long (a yearly entry must remember last year). Two small fields per entry ever scheduled; `BeatStore::forget` removes an entry's fields when the entry is retired |
//!
//! Each operation is one small Lua script on one key (Cluster-safe without hash tags):
//! take-or-extend, compare-and-extend and compare-and-delete on the leader key, and a
//! compare-and-set on the entry's field of the last-tick hash for
//! [`claim_tick`](BeatStore::claim_tick). Lease expiry is measured by the Redis
//! server's clock; ticks come from the schedulers' clocks and are compared as numbers,
//! so a claim is exact whatever the clock skew between schedulers.

use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use hippo_queue_core::BackendError;
use hippo_queue_core::beat::{BeatStatus, BeatStore};
use hippo_queue_core::time::{duration_ms, now_ms};
use redis::{Script, Value};

use crate::RedisBackend;
use crate::values::{array, int, string};

struct BeatScripts {
    acquire: Script,
    renew: Script,
    release: Script,
    leader: Script,
    claim: Script,
}

fn scripts() -> &'static BeatScripts {
    static SCRIPTS: OnceLock<BeatScripts> = OnceLock::new();
    SCRIPTS.get_or_init(|| BeatScripts {
        acquire: Script::new(include_str!("lua/beat_acquire.lua")),
        renew: Script::new(include_str!("lua/beat_renew.lua")),
        release: Script::new(include_str!("lua/beat_release.lua")),
        leader: Script::new(include_str!("lua/beat_leader.lua")),
        claim: Script::new(include_str!("lua/beat_claim_as.lua")),
    })
}

impl RedisBackend {
    fn beat_status_key(&self) -> String {
        format!("{}:beat:status", self.inner.config.prefix)
    }

    fn beat_leader_key(&self) -> String {
        format!("{}:beat:leader", self.inner.config.prefix)
    }

    fn beat_last_key(&self) -> String {
        format!("{}:beat:last", self.inner.config.prefix)
    }

    fn beat_sent_key(&self, task_id: &str) -> String {
        format!("{}:beat:sent:{task_id}", self.inner.config.prefix)
    }

    /// Runs one beat script on the broker's server (loading it when the server does not
    /// know it, e.g. after a restart).
    async fn beat_script(
        &self,
        script: &Script,
        key: &str,
        args: &[&str],
    ) -> Result<Value, BackendError> {
        let server = &self.inner.broker;
        let mut conn = server.conn().await?;
        let mut inv = script.prepare_invoke();
        inv.key(key);
        for a in args {
            inv.arg(*a);
        }
        inv.invoke_async(&mut conn)
            .await
            .map_err(|e| server.error(e))
    }

    async fn beat_flag(
        &self,
        script: &Script,
        key: &str,
        args: &[&str],
    ) -> Result<bool, BackendError> {
        Ok(int(&self.beat_script(script, key, args).await?)? == 1)
    }
}

/// A last-tick field: `<tick>:<beat id>` or `<tick>` (ms, decimal), or nothing.
/// The field of the last-tick hash counting an entry's runs (entry names cannot
/// hold `#`, so it is no entry's).
fn runs_field(entry: &str) -> String {
    format!("#runs:{entry}")
}

fn tick(v: Value) -> Result<Option<u64>, BackendError> {
    match v {
        Value::Nil => Ok(None),
        other => {
            let s = string(other)?;
            let number = s.split_once(':').map_or(s.as_str(), |(t, _)| t);
            number
                .parse()
                .map(Some)
                .map_err(|_| BackendError::protocol(format!("beat tick {s:?} is not a number")))
        }
    }
}

/// Stores the scheduler's leader lease and last ticks on the broker's server, under
/// the backend's prefix:
///
/// - `<prefix>:beat:leader`, a string holding the leading beat's id, expiring with the
///   lease (`PX` = the lease TTL, extended by its holder, deleted on a clean stop);
/// - `<prefix>:beat:last`, a hash from entry name to the last tick claimed (ms since
///   the epoch), without expiry, so that restarts keep their place; an entry's field
///   goes with [`BeatStore::forget`].
///
/// ```no_run
/// use hippo_queue_core::App;
/// use hippo_queue_core::beat::{Beat, Entry, Schedule};
/// use hippo_queue_redis::{RedisBackend, RedisConfig};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let redis = RedisBackend::connect(RedisConfig::new("redis://localhost:6379/1")).await?;
/// let app = App::builder().broker(redis.clone()).backend(redis.clone()).build();
/// let beat = Beat::builder(app, redis)
///     .entry(Entry::by_name("hourly", "reports.build", vec![0xc0], Schedule::every_hours(1))?)
///     .build()?;
/// let handle = beat.spawn(); // in every process: one leads, the others stand by
/// # handle.shutdown().await; Ok(()) }
/// ```
#[async_trait]
impl BeatStore for RedisBackend {
    async fn try_acquire_leader(&self, beat_id: &str, ttl: Duration) -> Result<bool, BackendError> {
        let ttl = duration_ms(ttl).max(1).to_string();
        self.beat_flag(
            &scripts().acquire,
            &self.beat_leader_key(),
            &[beat_id, &ttl],
        )
        .await
    }

    async fn renew_leader(&self, beat_id: &str, ttl: Duration) -> Result<bool, BackendError> {
        let ttl = duration_ms(ttl).max(1).to_string();
        self.beat_flag(&scripts().renew, &self.beat_leader_key(), &[beat_id, &ttl])
            .await
    }

    async fn release_leader(&self, beat_id: &str) -> Result<bool, BackendError> {
        self.beat_flag(&scripts().release, &self.beat_leader_key(), &[beat_id])
            .await
    }

    async fn leader(&self) -> Result<Option<(String, u64)>, BackendError> {
        let reply = array(
            self.beat_script(&scripts().leader, &self.beat_leader_key(), &[])
                .await?,
        )?;
        let mut it = reply.into_iter();
        match (it.next(), it.next()) {
            (Some(holder), Some(pttl)) => {
                let remaining = u64::try_from(int(&pttl)?).unwrap_or(0);
                Ok(Some((string(holder)?, now_ms().saturating_add(remaining))))
            }
            _ => Ok(None),
        }
    }

    async fn last_run(&self, entry: &str) -> Result<Option<u64>, BackendError> {
        let mut pipe = redis::pipe();
        pipe.hget(self.beat_last_key(), entry);
        let (v,): (Value,) = self.inner.broker.query(&pipe).await?;
        tick(v)
    }

    async fn last_runs(&self, entries: &[String]) -> Result<Vec<Option<u64>>, BackendError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        pipe.cmd("HMGET").arg(self.beat_last_key()).arg(entries);
        let (v,): (Value,) = self.inner.broker.query(&pipe).await?;
        let values = array(v)?;
        if values.len() != entries.len() {
            return Err(BackendError::protocol(format!(
                "HMGET of {} fields returned {} values",
                entries.len(),
                values.len()
            )));
        }
        values.into_iter().map(tick).collect()
    }

    async fn claim_tick(&self, entry: &str, tick_ms: u64) -> Result<bool, BackendError> {
        self.claim_tick_as(entry, tick_ms, "").await
    }

    async fn claim_tick_as(
        &self,
        entry: &str,
        tick_ms: u64,
        beat_id: &str,
    ) -> Result<bool, BackendError> {
        let tick = tick_ms.to_string();
        self.beat_flag(
            &scripts().claim,
            &self.beat_last_key(),
            &[entry, &tick, beat_id],
        )
        .await
    }

    async fn mark_sent(&self, task_id: &str, ttl: Duration) -> Result<bool, BackendError> {
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.beat_sent_key(task_id))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(duration_ms(ttl).max(1));
        let (reply,): (Value,) = self.inner.broker.query(&pipe).await?;
        Ok(reply != Value::Nil)
    }

    async fn forget(&self, entry: &str) -> Result<(), BackendError> {
        let mut pipe = redis::pipe();
        pipe.hdel(self.beat_last_key(), &[entry, &runs_field(entry)])
            .ignore();
        self.inner.broker.query::<()>(&pipe).await
    }

    async fn run_counts(&self, entries: &[String]) -> Result<Vec<Option<u64>>, BackendError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let fields: Vec<String> = entries.iter().map(|e| runs_field(e)).collect();
        let mut pipe = redis::pipe();
        pipe.cmd("HMGET").arg(self.beat_last_key()).arg(&fields);
        let (counts,): (Vec<Option<u64>>,) = self.inner.broker.query(&pipe).await?;
        Ok(counts.into_iter().map(|c| Some(c.unwrap_or(0))).collect())
    }

    async fn publish_status(&self, status: &BeatStatus, ttl: Duration) -> Result<(), BackendError> {
        let data = self
            .inner
            .codec
            .encode(status, false)
            .map_err(|e| BackendError::backend(e.to_string()).with_source(e))?;
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.beat_status_key())
            .arg(data)
            .arg("PX")
            .arg(duration_ms(ttl).max(1))
            .ignore();
        self.inner.broker.query::<()>(&pipe).await
    }

    async fn published_status(&self) -> Result<Option<BeatStatus>, BackendError> {
        let mut pipe = redis::pipe();
        pipe.get(self.beat_status_key());
        let (data,): (Option<Vec<u8>>,) = self.inner.broker.query(&pipe).await?;
        data.map(|d| {
            self.inner
                .codec
                .decode(&d)
                .map_err(|e| BackendError::protocol(e.to_string()).with_source(e))
        })
        .transpose()
    }
}
