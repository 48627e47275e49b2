//! [`RedisBackend`]: the [`ResultBackend`] half.
//!
//! A record is a string `<STATE>|<fence>|<encoded TaskMeta>` with the result's
//! lifetime as its expiry, under a key hash-tagged by a shard of the task id. Writes of
//! one batch are grouped by shard: one script call per shard, all in one round trip.

use std::collections::HashMap;
use std::io::Write as _;
use std::time::Duration;

use async_trait::async_trait;
use hippo_queue_core::backend::{ResultBackend, ResultWatch, ResultWrite, WriteOutcome};
use hippo_queue_core::{BackendError, TaskMeta};
use redis::Value;

use crate::backend::RedisBackend;
use crate::listener::{Slot, Waiter};
use crate::values::{array, int};

/// Most records per store script call.
const STORE_CHUNK: usize = 256;

/// How often each result shard's history index is trimmed of expired entries.
const TRIM_EVERY: Duration = Duration::from_secs(1);

impl RedisBackend {
    fn decode_data(&self, data: &[u8]) -> Result<TaskMeta, BackendError> {
        self.inner
            .codec
            .decode(data)
            .map_err(|e| BackendError::protocol(format!("stored result: {e}")))
    }

    /// The final record announced for a waiter (a stored value), if one has arrived.
    /// A record too large to announce arrives as an empty announcement: `None` here,
    /// and [`announced_empty`] tells the waiter to read it.
    fn published(&self, slot: &Slot) -> Result<Option<TaskMeta>, BackendError> {
        let value = slot.take().filter(|v| !v.is_empty());
        let meta = self.decode_stored(value)?;
        Ok(meta.filter(|m| m.state.is_ready()))
    }

    /// Decodes a stored value, `<STATE>|<fence>|<encoded record>`.
    pub(crate) fn decode_stored(
        &self,
        value: Option<Vec<u8>>,
    ) -> Result<Option<TaskMeta>, BackendError> {
        let Some(v) = value else { return Ok(None) };
        let mut bars = v
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == b'|')
            .map(|(i, _)| i);
        match (bars.next(), bars.next()) {
            (Some(_), Some(second)) => self.decode_data(&v[second + 1..]).map(Some),
            _ => Err(BackendError::protocol("stored result has no header")),
        }
    }
}

/// A wait registered before the task was sent, relying on the announcement of its
/// result. It looks the result up instead when the announcement could have been
/// missed: the subscription was renewed, or nothing came within [`ANNOUNCE_GRACE`].
/// While the subscription is down it waits for it to come back.
struct Watch {
    backend: RedisBackend,
    waiter: Waiter,
    generation: u64,
}

/// How often a wait reads the record again when no announcement came.
const RECHECK: Duration = Duration::from_secs(1);

/// How long a watch relies on the announcement alone.
const ANNOUNCE_GRACE: Duration = Duration::from_secs(1);

/// Whether the result was announced without its record (too large to publish).
fn announced_empty(slot: &Slot) -> bool {
    slot.take().is_some_and(|v| v.is_empty())
}

/// Largest record announced with its value: a pub/sub message above Redis'
/// `client-output-buffer-limit pubsub` (32 MiB by default) would disconnect every
/// subscriber of the fleet. Larger records are announced by id and read back.
const ANNOUNCE_MAX: usize = 1 << 20;

#[async_trait]
impl ResultWatch for Watch {
    async fn wait(&mut self, timeout: Duration) -> Result<Option<TaskMeta>, BackendError> {
        let start = tokio::time::Instant::now();
        let deadline = start + timeout;
        let grace = deadline.min(start + ANNOUNCE_GRACE);
        let hub = &self.backend.inner.hub;
        loop {
            let notified = self.waiter.slot.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(meta) = self.backend.published(&self.waiter.slot)? {
                return Ok(Some(meta));
            }
            let now = tokio::time::Instant::now();
            let generation = hub.results_generation();
            let read_it = announced_empty(&self.waiter.slot);
            if read_it || (generation != 0 && (generation != self.generation || now >= grace)) {
                let id = self.waiter.id().to_string();
                return self
                    .backend
                    .wait(&id, deadline.saturating_duration_since(now))
                    .await;
            }
            if now >= deadline {
                return Ok(None);
            }
            // down: the new subscription wakes every waiter
            let until = if generation == 0 { deadline } else { grace };
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }
}

#[async_trait]
impl ResultBackend for RedisBackend {
    async fn store(&self, writes: &[ResultWrite]) -> Result<Vec<WriteOutcome>, BackendError> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let g = &self.inner.global;
        let server = &self.inner.results;
        let mut by_shard: HashMap<u32, Vec<usize>> = HashMap::new();
        for (i, w) in writes.iter().enumerate() {
            by_shard
                .entry(g.shard(&w.meta.task_id))
                .or_default()
                .push(i);
        }
        // the shards whose index is due a trim (one call per shard asks for it)
        let mut trim: Vec<u32> = {
            let now = std::time::Instant::now();
            let mut trimmed = self.inner.trimmed.lock().unwrap_or_else(|p| p.into_inner());
            by_shard
                .keys()
                .copied()
                .filter(|shard| {
                    let due = trimmed
                        .get(shard)
                        .is_none_or(|t| now.duration_since(*t) >= TRIM_EVERY);
                    if due {
                        trimmed.insert(*shard, now);
                    }
                    due
                })
                .collect()
        };
        // Every stored value first: an encoding error rejects the batch before
        // anything is sent.
        let mut values: Vec<Vec<u8>> = Vec::with_capacity(writes.len());
        for w in writes {
            let id = &w.meta.task_id;
            let data = self
                .inner
                .codec
                .encode_compact(&w.meta, w.compress)
                .map_err(|e| {
                    BackendError::rejected(format!("cannot encode result of {id}: {e}"))
                })?;
            let state = w.meta.state.as_str();
            let fence = w.meta.fence.map_or(-1, |f| f as i64);
            let mut value = Vec::with_capacity(state.len() + 22 + data.len());
            let _ = write!(value, "{state}|{fence}|");
            value.extend_from_slice(&data);
            values.push(value);
        }
        let mut pipe = redis::pipe();
        // Redis sends the replies of one event-loop turn newest client first. A reply
        // queued for this connection before the scripts run makes it send their
        // announcements (to waiting callers) ahead of this reply (to a worker, which
        // is in no hurry): about 25 µs off a round trip on the benchmark machine.
        pipe.cmd("PING").ignore();
        // One EVALSHA per shard and chunk, its arguments written straight into the
        // pipeline's buffer (a NOSCRIPT reply loads the scripts and runs the
        // pipeline again: `Server::query`).
        let hash = server.scripts.store_results.get_hash();
        let mut key = String::new();
        let mut order = Vec::new();
        for (shard, idxs) in &by_shard {
            for chunk in idxs.chunks(STORE_CHUNK) {
                let trim_now = match trim.iter().position(|s| s == shard) {
                    Some(i) => {
                        trim.swap_remove(i);
                        1u8
                    }
                    None => 0,
                };
                pipe.cmd("EVALSHA")
                    .arg(hash)
                    .arg(1 + 2 * chunk.len())
                    .arg(g.history_of_shard(*shard));
                for &i in chunk {
                    let id = writes[i].meta.task_id.as_str();
                    g.result_into(&mut key, *shard, id);
                    pipe.arg(key.as_str());
                    g.waiter_into(&mut key, *shard, id);
                    pipe.arg(key.as_str());
                }
                pipe.arg(&g.results_channel).arg(ANNOUNCE_MAX).arg(trim_now);
                for &i in chunk {
                    let w = &writes[i];
                    let ttl = w.ttl.max(Duration::from_millis(1)).as_millis() as u64;
                    let fence = w.meta.fence.map_or(-1, |f| f as i64);
                    pipe.arg(w.meta.task_id.as_str())
                        .arg(w.meta.state.as_str())
                        .arg(fence)
                        .arg(ttl)
                        .arg(u8::from(w.announce))
                        .arg(values[i].as_slice());
                }
                order.push(chunk);
            }
        }
        let replies: Vec<Value> = server.query(&pipe).await?;
        let mut out = vec![WriteOutcome::Refused; writes.len()];
        for (reply, chunk) in replies.into_iter().zip(order) {
            let items = array(reply)?;
            if items.len() != chunk.len() {
                return Err(BackendError::protocol("store reply length mismatch"));
            }
            for (&i, v) in chunk.iter().zip(items.iter()) {
                out[i] = if int(v)? == 1 {
                    WriteOutcome::Stored
                } else {
                    WriteOutcome::Refused
                };
            }
        }
        Ok(out)
    }

    async fn get(&self, id: &str) -> Result<Option<TaskMeta>, BackendError> {
        let mut pipe = redis::pipe();
        pipe.get(self.inner.global.result(id));
        let (value,): (Option<Vec<u8>>,) = self.inner.results.query(&pipe).await?;
        self.decode_stored(value)
    }

    async fn wait(&self, id: &str, timeout: Duration) -> Result<Option<TaskMeta>, BackendError> {
        let g = &self.inner.global;
        let deadline = tokio::time::Instant::now() + timeout;
        let waiter = self.inner.hub.wait_for(id);
        let mut announce = true;
        loop {
            let notified = waiter.slot.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(meta) = self.published(&waiter.slot)? {
                return Ok(Some(meta));
            }
            let mut pipe = redis::pipe();
            if announce {
                // Ask the store script to announce this task; then look at it.
                let ms = (timeout + Duration::from_secs(5)).as_millis() as u64;
                pipe.cmd("SET")
                    .arg(g.waiter(id))
                    .arg(1)
                    .arg("PX")
                    .arg(ms)
                    .ignore();
            }
            pipe.get(g.result(id));
            // The announcement may arrive before the reply to the look: whichever
            // brings a final record first ends the wait.
            let looked = tokio::select! {
                r = self.inner.results.query::<(Option<Vec<u8>>,)>(&pipe) => Some(r?.0),
                _ = &mut notified => None,
            };
            let Some(value) = looked else { continue };
            announce = false;
            let current = self.decode_stored(value)?;
            if current.as_ref().is_some_and(|m| m.state.is_ready()) {
                return Ok(current);
            }
            // Woken by the announcement; and, should it never come (a subscription
            // that died silently, an announcement missed during a reconnect), the
            // record is read again every RECHECK.
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(current);
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline.min(now + RECHECK)) => {}
            }
        }
    }

    fn watch(&self, id: &str) -> Option<Box<dyn ResultWatch>> {
        let generation = self.inner.hub.results_generation();
        if generation == 0 {
            // Not subscribed: an announcement could be missed.
            return None;
        }
        Some(Box::new(Watch {
            backend: self.clone(),
            waiter: self.inner.hub.wait_for(id),
            generation,
        }))
    }

    async fn forget(&self, id: &str) -> Result<(), BackendError> {
        let mut pipe = redis::pipe();
        pipe.del(self.inner.global.result(id)).ignore();
        self.inner.results.query::<()>(&pipe).await
    }
}
