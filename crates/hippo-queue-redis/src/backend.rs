//! [`RedisBackend`]: the [`Broker`] half.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hippo_queue_core::BackendError;
use hippo_queue_core::backend::inspection::waiting_since;
use hippo_queue_core::backend::{
    BeatReply, ControlBus, DeadLetter, Delivery, DeliveryRef, EventLog, Inspection,
    MAX_WORKERS_SEEN, Messages, OldestWaiting, Outgoing, QueueStats, RateLimits, Recovered,
    RecoveryOutcome, Revocation, Revocations, Settle, SettleOutcome, Settlement, WORKER_SEEN_FOR,
    WorkerRegistry,
};
use hippo_queue_core::codec::Codec;
use hippo_queue_core::control::{RateLimit, Reply, Request};
use hippo_queue_core::events::{Event, WorkerInfo};
use hippo_queue_core::time::{duration_ms, now_ms};
use redis::{ScriptInvocation, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::clock::ServerClock;
use crate::config::RedisConfig;
use crate::conn::{ConnectError, Server};
use crate::keys::{GlobalKeys, QueueKeys};
use crate::listener::{self, Channels, Hub};
use crate::record;
use crate::values::{array, bytes, dead_letter, int, string};

/// Most messages per publish script call.
const PUBLISH_CHUNK: usize = 1000;
/// Most bytes of records per publish script call (Redis closes a connection whose
/// query buffer passes 1 GiB, which would fail every command in flight on it).
const PUBLISH_BYTES: usize = 64 << 20;
/// Most bytes of records one fetch call leases (at least one message).
const FETCH_BYTES: usize = 32 << 20;
/// Most bytes of records one recovery call returns (at least one message).
const RECOVER_BYTES: usize = 32 << 20;
/// How long `connect` waits for the results subscription.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(3);
/// Shorter waits are slept instead of spent in a blocking pop.
const MIN_BLOCK: Duration = Duration::from_millis(2);
/// Most messages per start or settle script call.
const SETTLE_CHUNK: usize = 1000;
/// Most messages one fetch call leases.
const FETCH_MAX: usize = 2000;
/// Most delayed messages a fetch moves to their queue.
const DUE_BATCH: u32 = 1000;
/// Most messages one recovery call handles.
const RECOVER_BATCH: u32 = 500;
/// Revocations kept in the incremental log (older ones are still in the set read
/// at start).
const REVOCATION_LOG_CAP: usize = 1_000_000;
/// Revocations read per step when a worker starts (a `ZSCAN` hint).
const REVOCATIONS_SCAN: usize = 500;
/// Most unrecorded losses of one queue written per `recover` call.
const UNRECORDED_BATCH: u32 = 100;
/// Most dead workers recovered per `recover` call.
const DEAD_WORKERS_BATCH: isize = 50;

/// Broker and result backend on Redis. Cheap to clone.
///
/// ```no_run
/// use hippo_queue_core::App;
/// use hippo_queue_redis::{RedisBackend, RedisConfig};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let redis = RedisBackend::connect(
///     RedisConfig::new("redis://localhost:6379/1").results_url("redis://localhost:6379/2"),
/// )
/// .await?;
/// let app = App::builder().broker(redis.clone()).backend(redis).build();
/// # let _ = app; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisBackend {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("broker", &self.inner.broker.url)
            .field("results", &self.inner.results.url)
            .field("prefix", &self.inner.config.prefix)
            .finish()
    }
}

pub(crate) struct Inner {
    pub broker: Arc<Server>,
    pub results: Arc<Server>,
    pub config: RedisConfig,
    pub global: GlobalKeys,
    pub codec: Codec,
    pub hub: Arc<Hub>,
    queues: Mutex<HashMap<String, Arc<QueueKeys>>>,
    registered: Mutex<HashSet<(String, String)>>,
    blockers: Mutex<HashMap<String, redis::aio::MultiplexedConnection>>,
    /// Workers whose last fetch drained their queues, with the next due time then.
    idle: Mutex<HashMap<String, Option<u64>>>,
    /// The broker server's clock against this process's.
    clock: ServerClock,
    /// When this process last asked each result shard to trim its history index
    /// of expired entries (`store_results.lua` does it at most about once a second
    /// per shard instead of on every call).
    pub trimmed: Mutex<HashMap<u32, std::time::Instant>>,
    listeners: Vec<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for l in &self.listeners {
            l.abort();
        }
    }
}

/// A stream entry as read: its id and its field-value pairs.
type StreamEntry = (String, Vec<(String, Vec<u8>)>);

impl RedisBackend {
    /// Up to `count` events of the stream from `from` to `to` (`XRANGE` oldest first,
    /// `XREVRANGE` newest first), with their ids.
    async fn read_events(
        &self,
        command: &str,
        from: &str,
        to: &str,
        count: usize,
    ) -> Result<Vec<(String, Event)>, BackendError> {
        let mut pipe = redis::pipe();
        pipe.cmd(command)
            .arg(&self.inner.global.events)
            .arg(from)
            .arg(to)
            .arg("COUNT")
            .arg(count.max(1));
        let (entries,): (Vec<StreamEntry>,) = self.server().query(&pipe).await?;
        let mut out = Vec::with_capacity(entries.len());
        for (id, fields) in entries {
            if let Some((_, data)) = fields.into_iter().find(|(k, _)| k == "e") {
                out.push((id, self.decode::<Event>(&data)?));
            }
        }
        Ok(out)
    }

    /// Connects to the broker (and result) server, loads the scripts and starts the
    /// pub/sub listener, waiting (up to 3 s) until it has subscribed. Fails with a
    /// clear error when a URL is invalid or a server cannot be reached (after the
    /// retries the configuration asks for: [`RedisConfig`]'s startup retry).
    pub async fn connect(config: RedisConfig) -> Result<Self, ConnectError> {
        // Waits for Redis as `broker_connection_retry_on_startup` says.
        let (broker, results) = crate::retry::connect_servers(&config).await?;
        let global = GlobalKeys::new(&config.prefix, config.result_shards);
        let hub = Arc::new(Hub::default());
        let mut listeners = Vec::new();
        if Arc::ptr_eq(&broker, &results) {
            listeners.push(listener::spawn(
                broker.client.clone(),
                Channels {
                    results: Some(global.results_channel.clone()),
                    revocations: Some(global.revocations_channel.clone()),
                    control: Some(global.control_channel.clone()),
                },
                hub.clone(),
            ));
        } else {
            listeners.push(listener::spawn(
                broker.client.clone(),
                Channels {
                    results: None,
                    revocations: Some(global.revocations_channel.clone()),
                    control: Some(global.control_channel.clone()),
                },
                hub.clone(),
            ));
            listeners.push(listener::spawn(
                results.client.clone(),
                Channels {
                    results: Some(global.results_channel.clone()),
                    revocations: None,
                    control: None,
                },
                hub.clone(),
            ));
        }
        // Results announced from now on reach this process (`call` relies on it).
        if !hub.results_subscribed(SUBSCRIBE_WAIT).await {
            tracing::warn!(
                url = %results.url,
                "results channel not subscribed yet; waits read results back until it is"
            );
        }
        let backend = RedisBackend {
            inner: Arc::new(Inner {
                broker,
                results,
                global,
                codec: Codec::default(),
                hub,
                config,
                queues: Mutex::new(HashMap::new()),
                registered: Mutex::new(HashSet::new()),
                blockers: Mutex::new(HashMap::new()),
                idle: Mutex::new(HashMap::new()),
                clock: ServerClock::default(),
                trimmed: Mutex::new(HashMap::new()),
                listeners,
            }),
        };
        backend.read_server_clock().await;
        Ok(backend)
    }

    /// Measures the broker server's clock against this process's (a failure leaves
    /// the last measure; the next heartbeat measures again).
    async fn read_server_clock(&self) {
        let sent = now_ms();
        let mut pipe = redis::pipe();
        pipe.cmd("TIME");
        match self.server().query::<((u64, u64),)>(&pipe).await {
            Ok(((secs, micros),)) => {
                self.inner
                    .clock
                    .observe(secs * 1000 + micros / 1000, sent, now_ms())
            }
            Err(e) => tracing::warn!(error = %e, "could not read the Redis clock"),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    pub(crate) fn keys(&self, queue: &str) -> Arc<QueueKeys> {
        let mut map = self.inner.queues.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(queue.to_string())
            .or_insert_with(|| Arc::new(QueueKeys::new(&self.inner.config.prefix, queue)))
            .clone()
    }

    fn server(&self) -> &Server {
        &self.inner.broker
    }

    fn encode<T: serde::Serialize>(&self, value: &T) -> Result<Vec<u8>, BackendError> {
        self.inner
            .codec
            .encode(value, false)
            .map_err(|e| BackendError::backend(e.to_string()).with_source(e))
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, data: &[u8]) -> Result<T, BackendError> {
        self.inner
            .codec
            .decode(data)
            .map_err(|e| BackendError::protocol(e.to_string()).with_source(e))
    }

    /// Runs the script calls (one per queue and chunk) in one round trip and puts the per-message
    /// outcomes back in request order.
    async fn run_batch<T>(
        &self,
        invs: &[redis::ScriptInvocation<'_>],
        order: &[&[(usize, &T)]],
        total: usize,
    ) -> Result<Vec<SettleOutcome>, BackendError> {
        let mut pipe = redis::pipe();
        for inv in invs {
            pipe.invoke_script(inv);
        }
        let replies: Vec<Value> = self.server().query(&pipe).await?;
        let mut out = vec![SettleOutcome::Fenced; total];
        for (reply, items) in replies.into_iter().zip(order) {
            for ((i, _), o) in items.iter().zip(outcomes(reply, items.len())?) {
                out[*i] = o;
            }
        }
        Ok(out)
    }

    /// Records, once per worker and queue, that the worker may hold messages of the
    /// queue, so that its recovery knows where to look (re-asserted on every
    /// heartbeat, see [`Messages::heartbeat`]).
    async fn register_queues(&self, worker: &str, queues: &[String]) -> Result<(), BackendError> {
        let missing: Vec<String> = {
            let reg = self
                .inner
                .registered
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            queues
                .iter()
                .filter(|q| !reg.contains(&(worker.to_string(), (*q).clone())))
                .cloned()
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.sadd(self.inner.global.worker_queues(worker), &missing)
            .ignore();
        self.server().query::<()>(&pipe).await?;
        let mut reg = self
            .inner
            .registered
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for q in missing {
            reg.insert((worker.to_string(), q));
        }
        Ok(())
    }

    /// The fetch script call for one queue.
    fn fetch_invocation(&self, worker: &str, queue: &str, max: usize) -> ScriptInvocation<'static> {
        let k = self.keys(queue);
        let mut inv = k.fetch(self.server().scripts, worker);
        inv.arg(max.min(FETCH_MAX))
            .arg(worker)
            .arg(DUE_BATCH)
            .arg(FETCH_BYTES)
            .arg(self.inner.config.dead_letter_cap);
        inv
    }

    /// Reads a fetch reply: the time until the next delayed message is due (turned
    /// into a due time on this process's clock), then the leased records. A record
    /// that cannot be read (the script checks them, so only a foreign writer gets
    /// here) is returned apart, to be dead-lettered under its lease.
    fn parse_fetch(reply: Value, queue: &str) -> Result<Fetched, BackendError> {
        let mut items = array(reply)?.into_iter();
        let (Some(due), Some(first)) = (items.next(), items.next()) else {
            return Err(BackendError::protocol("short fetch reply"));
        };
        let due = int(&due)?;
        let first = int(&first)? as u64;
        let mut out = Fetched {
            deliveries: Vec::with_capacity(items.len()),
            unreadable: Vec::new(),
            next_due: (due >= 0).then(|| now_ms().saturating_add(due as u64)),
        };
        for (i, rec) in items.enumerate() {
            let token = first + i as u64;
            match bytes(rec).and_then(record::decode) {
                Ok(r) => out.deliveries.push(Delivery {
                    id: r.id,
                    queue: queue.to_string(),
                    priority: r.priority,
                    flags: r.flags,
                    payload: r.payload,
                    token,
                    deliveries: r.deliveries,
                }),
                Err(e) => out.unreadable.push((
                    DeliveryRef {
                        id: String::new(),
                        queue: queue.to_string(),
                        token,
                    },
                    e.to_string(),
                )),
            }
        }
        Ok(out)
    }

    /// Dead-letters leased records that could not be read, so that they leave the
    /// lease hash (and show up in `dead_letters`) instead of staying leased.
    async fn dead_letter_unreadable(
        &self,
        worker: &str,
        unreadable: Vec<(DeliveryRef, String)>,
    ) -> Result<(), BackendError> {
        if unreadable.is_empty() {
            return Ok(());
        }
        let settlements: Vec<Settlement> = unreadable
            .into_iter()
            .map(|(delivery, why)| {
                tracing::error!(queue = %delivery.queue, token = delivery.token, error = %why, "unreadable message record dead-lettered");
                Settlement {
                    delivery,
                    action: Settle::DeadLetter {
                        reason: format!("unreadable record: {why}"),
                    },
                }
            })
            .collect();
        self.settle(worker, &settlements).await.map(|_| ())
    }

    async fn fetch_queue(
        &self,
        worker: &str,
        queue: &str,
        max: usize,
    ) -> Result<(Vec<Delivery>, Option<u64>), BackendError> {
        let inv = self.fetch_invocation(worker, queue, max);
        let mut pipe = redis::pipe();
        pipe.invoke_script(&inv);
        let (reply,): (Value,) = self.server().query(&pipe).await?;
        let fetched = Self::parse_fetch(reply, queue)?;
        self.dead_letter_unreadable(worker, fetched.unreadable)
            .await?;
        Ok((fetched.deliveries, fetched.next_due))
    }

    /// Blocks on the queues' wake-up lists for up to `timeout`, on a connection
    /// dedicated to this worker's waits (kept between waits; dropped, and so closed,
    /// when a wait fails or is cancelled).
    ///
    /// The fetch calls are pipelined behind the blocking pop: Redis runs them the
    /// moment the pop returns, so a woken worker gets its messages without another
    /// round trip. If the wait is cancelled the connection closes and the queued
    /// fetches never run. The queues share `max` (the first ones get the remainder),
    /// so a burst over several queues never leases more than the worker asked for.
    async fn block(
        &self,
        worker: &str,
        queues: &[String],
        timeout: Duration,
        max: usize,
    ) -> Result<Vec<Delivery>, BackendError> {
        let keys: Vec<String> = queues.iter().map(|q| self.keys(q).notify.clone()).collect();
        let limit = self
            .inner
            .config
            .response_timeout
            .saturating_sub(Duration::from_millis(500))
            .max(Duration::from_millis(10));
        let secs = timeout.min(limit).as_secs_f64().max(0.01);
        let cached = self
            .inner
            .blockers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(worker);
        let mut conn = match cached {
            Some(c) => c,
            None => deadpool_redis::Connection::take(self.server().dedicated().await?),
        };
        let invs: Vec<_> = queues
            .iter()
            .zip(share(max, queues.len()))
            .filter(|(_, n)| *n > 0)
            .map(|(q, n)| self.fetch_invocation(worker, q, n))
            .collect();
        let mut pipe = redis::pipe();
        pipe.cmd("BLPOP").arg(&keys).arg(secs).ignore();
        for inv in &invs {
            pipe.invoke_script(inv);
        }
        let replies: Vec<Value> = match pipe.query_async(&mut conn).await {
            Ok(r) => r,
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // Redis restarted since the scripts were loaded: load them, and let the
                // caller fetch again.
                let scripts = self.server().scripts;
                scripts
                    .load_all(&mut conn)
                    .await
                    .map_err(|e| self.server().error(e))?;
                self.keep_blocker(worker, conn);
                return Ok(Vec::new());
            }
            Err(e) => return Err(self.server().error(e)),
        };
        self.keep_blocker(worker, conn);
        let mut out = Vec::new();
        let mut unreadable = Vec::new();
        let mut next_due: Option<u64> = None;
        let fetched_queues = queues
            .iter()
            .zip(share(max, queues.len()))
            .filter(|(_, n)| *n > 0);
        for (reply, (q, _)) in replies.into_iter().zip(fetched_queues) {
            let fetched = Self::parse_fetch(reply, q)?;
            out.extend(fetched.deliveries);
            unreadable.extend(fetched.unreadable);
            next_due = earliest(next_due, fetched.next_due);
        }
        self.dead_letter_unreadable(worker, unreadable).await?;
        if !out.is_empty() && out.len() < max {
            // The queues were drained at the pop: the next fetch may wait at once.
            self.mark_idle(worker, next_due);
        }
        Ok(out)
    }

    /// Records that the last fetch drained the worker's queues, and when the next
    /// delayed message is due: its next fetch waits for a wake-up first.
    fn mark_idle(&self, worker: &str, next_due: Option<u64>) {
        self.inner
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(worker.to_string(), next_due);
    }

    fn keep_blocker(&self, worker: &str, conn: redis::aio::MultiplexedConnection) {
        self.inner
            .blockers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(worker.to_string(), conn);
    }

    /// Recovers a worker's leases in every queue it is known to have leased from,
    /// then forgets the worker.
    /// Recovers every lease of a dead worker that recovery has claimed (out of the
    /// heartbeat set already), then forgets what indexes it, unless a new process has
    /// claimed the name meanwhile.
    async fn recover_whole_worker(
        &self,
        worker: &str,
        max_deliveries: u32,
    ) -> Result<Vec<Recovered>, BackendError> {
        let out = self.recover_leases_of(worker, max_deliveries).await?;
        self.forget_worker(worker, "").await?;
        Ok(out)
    }

    /// Recovers the leases of `worker` in every queue its index lists.
    async fn recover_leases_of(
        &self,
        worker: &str,
        max_deliveries: u32,
    ) -> Result<Vec<Recovered>, BackendError> {
        let wq = self.inner.global.worker_queues(worker);
        let mut pipe = redis::pipe();
        pipe.smembers(&wq);
        let (queues,): (Vec<String>,) = self.server().query(&pipe).await?;
        self.recover_leases(worker, &queues, max_deliveries).await
    }

    /// Forgets a worker name (fenced by `incarnation`, or, when empty, only if nobody
    /// has claimed it again), then its queue index and registry record. Returns
    /// whether it was forgotten.
    async fn forget_worker(&self, worker: &str, incarnation: &str) -> Result<bool, BackendError> {
        let g = &self.inner.global;
        let mut inv = g.forget_worker(self.server().scripts);
        inv.arg(worker).arg(incarnation);
        let mut pipe = redis::pipe();
        pipe.invoke_script(&inv);
        let (forgotten,): (bool,) = self.server().query(&pipe).await?;
        if forgotten {
            let mut pipe = redis::pipe();
            pipe.del(g.worker_queues(worker))
                .ignore()
                .del(g.worker_info(worker))
                .ignore();
            self.server().query::<()>(&pipe).await?;
        }
        self.inner
            .registered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(w, _)| w != worker);
        self.inner
            .blockers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(worker);
        Ok(forgotten)
    }

    /// Recovers a worker's leases in the given queues, in bounded script calls.
    async fn recover_leases(
        &self,
        worker: &str,
        queues: &[String],
        max_deliveries: u32,
    ) -> Result<Vec<Recovered>, BackendError> {
        let server = self.server();
        let mut out = Vec::new();
        for queue in queues {
            let k = self.keys(queue);
            loop {
                let mut inv = k.recover(server.scripts, worker);
                inv.arg(worker)
                    .arg(max_deliveries.min(255))
                    .arg(RECOVER_BATCH)
                    .arg(self.inner.config.dead_letter_cap)
                    .arg(RECOVER_BYTES);
                let mut pipe = redis::pipe();
                pipe.invoke_script(&inv);
                let reply = match server.query::<(Value,)>(&pipe).await {
                    Ok((reply,)) => reply,
                    Err(e) => return partial(out, e),
                };
                let mut items = array(reply)?.into_iter();
                let left = items.next().map(|v| int(&v)).transpose()?.unwrap_or(0);
                while let (Some(outcome), Some(token), Some(rec)) =
                    (items.next(), items.next(), items.next())
                {
                    // The script has already moved the record: one that cannot be
                    // read must not stop the recovery of the others.
                    match recovered(queue, worker, outcome, token, rec) {
                        Ok(r) => out.push(r),
                        Err(e) => {
                            tracing::error!(%queue, dead_worker = %worker, error = %e, "recovered an unreadable record")
                        }
                    }
                }
                if left == 0 {
                    break;
                }
            }
        }
        // Queues with losses awaiting their records, for any worker's sweep.
        let mut lossy: Vec<&str> = out
            .iter()
            .filter(|r| r.outcome != RecoveryOutcome::Requeued)
            .map(|r| r.queue.as_str())
            .collect();
        lossy.dedup();
        if !lossy.is_empty() {
            let mut pipe = redis::pipe();
            pipe.sadd(&self.inner.global.unrecorded_queues, &lossy)
                .ignore();
            if let Err(e) = server.query::<()>(&pipe).await {
                tracing::warn!(error = %e, "could not index the queues with unrecorded losses");
            }
        }
        Ok(out)
    }

    /// Losses in the queues this process knows of whose FAILURE record is still not
    /// written `loss_record_timeout` after their recovery.
    async fn unrecorded_losses(&self) -> Result<Vec<Recovered>, BackendError> {
        let server = self.server();
        let mut pipe = redis::pipe();
        pipe.smembers(&self.inner.global.unrecorded_queues);
        let (indexed,): (Vec<String>,) = server.query(&pipe).await?;
        let mut queues = self.known_queues();
        queues.extend(indexed.iter().cloned());
        queues.sort();
        queues.dedup();
        if queues.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for q in &queues {
            let mut inv = self.keys(q).unrecorded(server.scripts);
            inv.arg(UNRECORDED_BATCH)
                .arg(duration_ms(self.inner.config.loss_record_timeout));
            pipe.invoke_script(&inv);
        }
        let replies: Vec<Value> = server.query(&pipe).await?;
        let mut out = Vec::new();
        let mut unreadable = redis::pipe();
        for (queue, reply) in queues.iter().zip(replies) {
            let mut items = array(reply)?.into_iter();
            while let (Some(token), Some(outcome), Some(worker), Some(rec)) =
                (items.next(), items.next(), items.next(), items.next())
            {
                let token = bytes(token)?;
                let worker = string(worker)?;
                match recovered(
                    queue,
                    &worker,
                    outcome,
                    Value::BulkString(token.clone()),
                    rec,
                ) {
                    Ok(r) => {
                        tracing::warn!(task_id = %r.id, %queue, dead_worker = %worker, "a lost task's FAILURE record was not written by its recoverer; writing it");
                        out.push(r);
                    }
                    Err(e) => {
                        // It is in the dead letters, where it can be inspected.
                        tracing::error!(%queue, error = %e, "an unreadable unrecorded loss; dropped");
                        unreadable
                            .hdel(&self.keys(queue).unrecorded, token)
                            .ignore();
                    }
                }
            }
        }
        if unreadable.cmd_iter().next().is_some() {
            server.query::<()>(&unreadable).await?;
        }
        // Queues whose losses are all recorded leave the index (one that gains an
        // entry meanwhile is added again by the recovery that made it).
        if !indexed.is_empty() {
            let mut pipe = redis::pipe();
            for q in &indexed {
                pipe.hlen(&self.keys(q).unrecorded);
            }
            let lens: Vec<u64> = server.query(&pipe).await?;
            let done: Vec<&String> = indexed
                .iter()
                .zip(lens)
                .filter(|(_, n)| *n == 0)
                .map(|(q, _)| q)
                .collect();
            if !done.is_empty() {
                let mut pipe = redis::pipe();
                pipe.srem(&self.inner.global.unrecorded_queues, &done)
                    .ignore();
                server.query::<()>(&pipe).await?;
            }
        }
        Ok(out)
    }

    /// The queues this process has published to or fetched from.
    fn known_queues(&self) -> Vec<String> {
        self.inner
            .queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Leases in the queues this process knows of that belong to workers absent from
    /// the heartbeat set (their index of queues was lost, or they never beat): each
    /// as (worker, queue).
    async fn orphaned_lessees(&self) -> Result<Vec<(String, String)>, BackendError> {
        let queues = self.known_queues();
        if queues.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for q in &queues {
            pipe.smembers(&self.keys(q).lessees);
        }
        let lessees: Vec<Vec<String>> = self.server().query(&pipe).await?;
        let pairs: Vec<(String, String)> = queues
            .into_iter()
            .zip(lessees)
            .flat_map(|(q, ws)| ws.into_iter().map(move |w| (w, q.clone())))
            .collect();
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (w, _) in &pairs {
            pipe.zscore(&self.inner.global.workers, w);
        }
        let scores: Vec<Option<f64>> = self.server().query(&pipe).await?;
        Ok(pairs
            .into_iter()
            .zip(scores)
            .filter(|(_, score)| score.is_none())
            .map(|(pair, _)| pair)
            .collect())
    }
}

/// How long a fetch may block: at most `limit`, and not past the next due delayed
/// message.
fn until_due(limit: Duration, next_due: Option<u64>) -> Duration {
    match next_due {
        Some(due) => limit.min(Duration::from_millis(due.saturating_sub(now_ms()))),
        None => limit,
    }
}

/// What a recovery did before it failed: returned when anything was moved (its
/// records must be written), the error otherwise.
/// One message a recovery script returned: its outcome (`q`, `l` or `m`), fencing
/// token and record.
fn recovered(
    queue: &str,
    worker: &str,
    outcome: Value,
    token: Value,
    rec: Value,
) -> Result<Recovered, BackendError> {
    let outcome = match string(outcome)?.as_str() {
        "q" => RecoveryOutcome::Requeued,
        "l" => RecoveryOutcome::WorkerLost,
        "m" => RecoveryOutcome::TooManyDeliveries,
        other => {
            return Err(BackendError::protocol(format!(
                "unknown recovery outcome {other:?}"
            )));
        }
    };
    let token = string(token)?
        .parse()
        .map_err(|_| BackendError::protocol("a lease token that is not a number"))?;
    let r = bytes(rec).and_then(record::decode)?;
    Ok(Recovered {
        id: r.id,
        queue: queue.to_string(),
        worker: worker.to_string(),
        token,
        payload: r.payload,
        outcome,
    })
}

fn partial(done: Vec<Recovered>, e: BackendError) -> Result<Vec<Recovered>, BackendError> {
    if done.is_empty() {
        Err(e)
    } else {
        tracing::warn!(error = %e, recovered = done.len(), "recovery stopped part-way; the rest is recovered on a later beat");
        Ok(done)
    }
}

/// Splits `max` messages between `n` queues, the first ones taking the remainder.
fn share(max: usize, n: usize) -> impl Iterator<Item = usize> {
    let n = n.max(1);
    (0..n).map(move |i| max / n + usize::from(i < max % n))
}

/// Splits `items` into runs of at most `max_count` items and `max_bytes` bytes (by
/// `size`); an item larger than `max_bytes` makes a run of its own.
fn chunks_by_size<T>(
    items: &[T],
    max_count: usize,
    max_bytes: usize,
    size: impl Fn(&T) -> usize,
) -> Vec<&[T]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let n = size(item);
        if i > start && (i - start >= max_count || bytes + n > max_bytes) {
            out.push(&items[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += n;
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

/// What one fetch script call returned.
struct Fetched {
    deliveries: Vec<Delivery>,
    /// Leased records that could not be read, with why.
    unreadable: Vec<(DeliveryRef, String)>,
    /// When the next delayed message is due (this process's clock).
    next_due: Option<u64>,
}

/// The earlier of two optional due times.
fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn group_by_queue<'a, T>(
    items: &'a [T],
    queue: impl Fn(&T) -> &str,
) -> HashMap<String, Vec<(usize, &'a T)>> {
    let mut map: HashMap<String, Vec<(usize, &'a T)>> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        map.entry(queue(item).to_string())
            .or_default()
            .push((i, item));
    }
    map
}

fn outcomes(reply: Value, n: usize) -> Result<Vec<SettleOutcome>, BackendError> {
    let items = array(reply)?;
    if items.len() != n {
        return Err(BackendError::protocol(format!(
            "expected {n} outcomes, got {}",
            items.len()
        )));
    }
    items
        .iter()
        .map(|v| {
            Ok(if int(v)? == 1 {
                SettleOutcome::Done
            } else {
                SettleOutcome::Fenced
            })
        })
        .collect()
}

#[async_trait]
impl Messages for RedisBackend {
    async fn publish(&self, messages: Vec<Outgoing>) -> Result<(), BackendError> {
        if messages.is_empty() {
            return Ok(());
        }
        let scripts = self.server().scripts;
        let by_queue = group_by_queue(&messages, |m| &m.queue);
        let mut invocations = Vec::new();
        for (queue, msgs) in &by_queue {
            let k = self.keys(queue);
            let size = |(_, m): &(usize, &Outgoing)| m.payload.len() + m.id.len();
            for chunk in chunks_by_size(msgs, PUBLISH_CHUNK, PUBLISH_BYTES, size) {
                let mut inv = k.publish(scripts);
                for (_, m) in chunk {
                    inv.arg(self.inner.clock.to_server(m.eta.unwrap_or(0)))
                        .arg(record::encode(m.priority, m.flags, &m.id, &m.payload)?);
                }
                invocations.push((inv, chunk.iter().map(size).sum::<usize>()));
            }
        }
        // A pipeline is one query buffer: one round trip per byte budget.
        for group in chunks_by_size(&invocations, usize::MAX, PUBLISH_BYTES, |(_, n)| *n) {
            let mut pipe = redis::pipe();
            for (inv, _) in group {
                pipe.invoke_script(inv).ignore();
            }
            self.server().query::<()>(&pipe).await?;
        }
        Ok(())
    }

    async fn fetch(
        &self,
        worker: &str,
        queues: &[String],
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BackendError> {
        self.register_queues(worker, queues).await?;
        let deadline = tokio::time::Instant::now() + wait;
        // The last call drained these queues: wait for a wake-up first instead of
        // asking again at once (a publish since then has left a wake-up token).
        let idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(worker);
        if let Some(next_due) = idle
            && max > 0
        {
            let block = until_due(wait, next_due);
            if block >= MIN_BLOCK {
                let got = self.block(worker, queues, block, max).await?;
                if !got.is_empty() {
                    return Ok(got);
                }
            }
        }
        loop {
            let mut out = Vec::new();
            let mut next_due: Option<u64> = None;
            for q in queues {
                if out.len() >= max {
                    break;
                }
                let (got, due) = self.fetch_queue(worker, q, max - out.len()).await?;
                out.extend(got);
                next_due = earliest(next_due, due);
            }
            let now = tokio::time::Instant::now();
            if !out.is_empty() || max == 0 || now >= deadline {
                if out.len() < max {
                    self.mark_idle(worker, next_due);
                }
                return Ok(out);
            }
            let block = until_due(deadline - now, next_due);
            if block >= MIN_BLOCK {
                let got = self.block(worker, queues, block, max).await?;
                if !got.is_empty() {
                    return Ok(got);
                }
            } else {
                tokio::time::sleep(block).await;
            }
        }
    }

    async fn start(
        &self,
        worker: &str,
        deliveries: &[DeliveryRef],
    ) -> Result<Vec<SettleOutcome>, BackendError> {
        let scripts = self.server().scripts;
        let groups = group_by_queue(deliveries, |d| &d.queue);
        let mut invs = Vec::new();
        let mut order = Vec::new();
        for (queue, ds) in &groups {
            let k = self.keys(queue);
            for chunk in ds.chunks(SETTLE_CHUNK) {
                let mut inv = k.start(scripts, worker);
                for (_, d) in chunk {
                    inv.arg(d.token);
                }
                invs.push(inv);
                order.push(chunk);
            }
        }
        self.run_batch(&invs, &order, deliveries.len()).await
    }

    async fn settle(
        &self,
        worker: &str,
        settlements: &[Settlement],
    ) -> Result<Vec<SettleOutcome>, BackendError> {
        let scripts = self.server().scripts;
        let groups = group_by_queue(settlements, |s| &s.delivery.queue);
        let mut invs = Vec::new();
        let mut order = Vec::new();
        for (queue, ss) in &groups {
            let k = self.keys(queue);
            for chunk in ss.chunks(SETTLE_CHUNK) {
                let mut inv = k.settle(scripts, worker);
                inv.arg(self.inner.config.dead_letter_cap);
                for (_, s) in chunk {
                    inv.arg(s.delivery.token);
                    match &s.action {
                        Settle::Ack => inv.arg("a").arg("").arg(0),
                        Settle::Retry { payload, eta } => inv
                            .arg("r")
                            .arg(payload)
                            .arg(self.inner.clock.to_server(*eta)),
                        Settle::DeadLetter { reason } => inv.arg("d").arg(reason).arg(0),
                        Settle::Requeue => inv.arg("q").arg("").arg(0),
                    };
                }
                invs.push(inv);
                order.push(chunk);
            }
        }
        self.run_batch(&invs, &order, settlements.len()).await
    }

    async fn release(&self, worker: &str, deliveries: &[DeliveryRef]) -> Result<(), BackendError> {
        let scripts = self.server().scripts;
        let groups = group_by_queue(deliveries, |d| &d.queue);
        let mut invs = Vec::new();
        for (queue, ds) in &groups {
            let k = self.keys(queue);
            let mut inv = k.release(scripts, worker);
            for (_, d) in ds.iter().rev() {
                inv.arg(d.token);
            }
            invs.push(inv);
        }
        let mut pipe = redis::pipe();
        for inv in &invs {
            pipe.invoke_script(inv).ignore();
        }
        self.server().query::<()>(&pipe).await
    }

    fn clock_offset_ms(&self) -> i64 {
        self.inner.clock.offset_ms()
    }

    async fn heartbeat(
        &self,
        worker: &str,
        incarnation: &str,
        ttl: Duration,
        interval: Duration,
    ) -> Result<BeatReply, BackendError> {
        let g = &self.inner.global;
        let mut inv = g.heartbeat(self.server().scripts);
        inv.arg(worker)
            .arg(duration_ms(ttl).max(1))
            .arg(duration_ms(interval).max(1))
            .arg(incarnation);
        let queues: Vec<String> = self
            .inner
            .registered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(w, _)| w == worker)
            .map(|(_, q)| q.clone())
            .collect();
        let mut pipe = redis::pipe();
        pipe.invoke_script(&inv);
        // The index recovery reads is re-asserted on every beat: if it was lost (a
        // false recovery, a restart without persistence), it is back within a beat.
        if !queues.is_empty() {
            pipe.sadd(g.worker_queues(worker), &queues).ignore();
        }
        let sent = now_ms();
        let ((previous, server_now),): ((i64, u64),) = self.server().query_alone(&pipe).await?;
        self.inner.clock.observe(server_now, sent, now_ms());
        Ok(match previous {
            -2 => BeatReply::Taken,
            -3 => BeatReply::TakenOver,
            p if p >= 0 => BeatReply::Alive,
            _ => BeatReply::Unknown,
        })
    }

    async fn worker_lease(&self, worker: &str) -> Result<Option<Duration>, BackendError> {
        let mut inv = self.inner.global.worker_state(self.server().scripts);
        inv.arg(worker);
        let mut pipe = redis::pipe();
        pipe.invoke_script(&inv)
            .exists(self.inner.global.worker_queues(worker));
        let (left, indexed): (i64, bool) = self.server().query(&pipe).await?;
        Ok(match left {
            l if l >= 0 => Some(Duration::from_millis(l as u64)),
            _ if indexed => Some(Duration::ZERO),
            _ => None,
        })
    }

    async fn recover_worker(
        &self,
        worker: &str,
        max_deliveries: u32,
    ) -> Result<Vec<Recovered>, BackendError> {
        self.recover_leases_of(worker, max_deliveries).await
    }

    async fn leases(
        &self,
        worker: &str,
        queues: &[String],
    ) -> Result<Vec<DeliveryRef>, BackendError> {
        let mut pipe = redis::pipe();
        for q in queues {
            pipe.hkeys(self.keys(q).lease(worker));
        }
        let tokens: Vec<Vec<u64>> = self.server().query(&pipe).await?;
        Ok(queues
            .iter()
            .zip(tokens)
            .flat_map(|(q, ts)| {
                ts.into_iter().map(move |token| DeliveryRef {
                    id: String::new(),
                    queue: q.clone(),
                    token,
                })
            })
            .collect())
    }

    async fn unregister(
        &self,
        worker: &str,
        incarnation: &str,
    ) -> Result<Vec<Recovered>, BackendError> {
        let mut pipe = redis::pipe();
        pipe.smembers(self.inner.global.worker_queues(worker));
        let (queues,): (Vec<String>,) = self.server().query(&pipe).await?;
        // Out of the heartbeat set first, fenced: a name another process holds now is
        // left alone, with everything leased under it.
        if !self.forget_worker(worker, incarnation).await? {
            return Ok(Vec::new());
        }
        self.recover_leases(worker, &queues, u32::MAX).await
    }

    async fn recover(&self, max_deliveries: u32) -> Result<Vec<Recovered>, BackendError> {
        // Losses already moved (no grace applies to them): only their records are due.
        let mut out = self.unrecorded_losses().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not read the unrecorded losses; trying again at the next recovery");
            Vec::new()
        });
        if self
            .server()
            .failed_within(self.inner.config.recovery_grace)
        {
            // Workers cut off by the same outage have not had time to beat again.
            return Ok(out);
        }
        let g = &self.inner.global;
        let mut inv = g.lost_workers(self.server().scripts);
        inv.arg(DEAD_WORKERS_BATCH);
        let mut pipe = redis::pipe();
        pipe.invoke_script(&inv);
        let (reply,): (Vec<Value>,) = self.server().query(&pipe).await?;
        let mut items = reply.into_iter();
        let in_grace = items.next().map(|v| int(&v)).transpose()?.unwrap_or(1) != 0;
        let dead = items.map(string).collect::<Result<Vec<_>, _>>()?;
        if in_grace {
            // After an outage every worker gets its lease to beat again first.
            return Ok(out);
        }
        // The claimed workers are out of the heartbeat set: whatever fails now is
        // finished by a later sweep of orphaned leases. What was recovered is returned
        // whatever happens, so that its records get written.
        for w in dead {
            tracing::warn!(worker = %w, "worker missed its heartbeats; recovering its messages");
            match self.recover_whole_worker(&w, max_deliveries).await {
                Ok(r) => out.extend(r),
                Err(e) => return partial(out, e),
            }
        }
        // Leases whose holder is not in the heartbeat set at all: recovered too, so
        // that no lease outlives the index that points at it.
        let orphans = match self.orphaned_lessees().await {
            Ok(o) => o,
            Err(e) => return partial(out, e),
        };
        for (w, queue) in orphans {
            tracing::warn!(worker = %w, %queue, "leases of a worker that is not beating; recovering them");
            match self
                .recover_leases(&w, std::slice::from_ref(&queue), max_deliveries)
                .await
            {
                Ok(r) => out.extend(r),
                Err(e) => return partial(out, e),
            }
        }
        Ok(out)
    }

    async fn losses_recorded(&self, losses: &[DeliveryRef]) -> Result<(), BackendError> {
        if losses.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for d in losses {
            pipe.hdel(&self.keys(&d.queue).unrecorded, d.token).ignore();
        }
        self.server().query::<()>(&pipe).await
    }
}

#[async_trait]
impl Revocations for RedisBackend {
    async fn revoke(&self, revocation: Revocation) -> Result<(), BackendError> {
        let g = &self.inner.global;
        let member = format!("{}:{}", u8::from(revocation.terminate), revocation.id);
        let entry = listener::encode_revocation(&revocation);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .zadd(&g.revoked, member, revocation.until)
            .ignore()
            .cmd("XADD")
            .arg(&g.revocation_log)
            .arg("MAXLEN")
            .arg("~")
            .arg(REVOCATION_LOG_CAP)
            .arg("*")
            .arg("r")
            .arg(&entry)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&g.revoked)
            .arg("-inf")
            .arg(now_ms())
            .ignore()
            .publish(
                &g.revocations_channel,
                listener::encode_revocation(&revocation),
            )
            .ignore();
        self.server().query::<()>(&pipe).await
    }

    async fn revocations(&self) -> Result<Vec<Revocation>, BackendError> {
        // Scanned in steps: one reply of the whole set would block the server (and
        // every heartbeat behind it) for as long as it takes to build. A scan returns
        // every member present from start to end, some twice.
        let now = now_ms();
        let mut by_member = std::collections::HashMap::new();
        let mut cursor: u64 = 0;
        loop {
            let mut pipe = redis::pipe();
            pipe.cmd("ZSCAN")
                .arg(&self.inner.global.revoked)
                .arg(cursor)
                .arg("COUNT")
                .arg(REVOCATIONS_SCAN);
            let ((next, pairs),): ((u64, Vec<(String, u64)>),) = self.server().query(&pipe).await?;
            by_member.extend(pairs.into_iter().filter(|(_, until)| *until > now));
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        Ok(by_member
            .into_iter()
            .filter_map(|(member, until)| {
                let (t, id) = member.split_once(':')?;
                Some(Revocation {
                    id: id.to_string(),
                    terminate: t == "1",
                    until,
                })
            })
            .collect())
    }

    async fn revocations_after(
        &self,
        cursor: Option<&str>,
        max: usize,
    ) -> Result<(Vec<Revocation>, String), BackendError> {
        let log = &self.inner.global.revocation_log;
        let mut pipe = redis::pipe();
        let Some(cursor) = cursor else {
            pipe.cmd("XREVRANGE")
                .arg(log)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1);
            let (last,): (Vec<(String, Vec<(String, String)>)>,) =
                self.server().query(&pipe).await?;
            let end = last
                .into_iter()
                .next()
                .map_or_else(|| "0-0".to_string(), |e| e.0);
            return Ok((Vec::new(), end));
        };
        pipe.cmd("XRANGE")
            .arg(log)
            .arg(format!("({cursor}"))
            .arg("+")
            .arg("COUNT")
            .arg(max.max(1));
        let (entries,): (Vec<(String, Vec<(String, String)>)>,) =
            self.server().query(&pipe).await?;
        let next = entries
            .last()
            .map_or_else(|| cursor.to_string(), |e| e.0.clone());
        let list = entries
            .into_iter()
            .flat_map(|(_, fields)| fields)
            .filter_map(|(_, v)| listener::decode_revocation(&v))
            .collect();
        Ok((list, next))
    }

    async fn subscribe_revocations(&self) -> Result<mpsc::Receiver<Revocation>, BackendError> {
        Ok(self.inner.hub.subscribe())
    }
}

#[async_trait]
impl Inspection for RedisBackend {
    async fn queue_stats(&self, queues: &[String]) -> Result<Vec<QueueStats>, BackendError> {
        if queues.is_empty() {
            // an empty pipeline is not a request Redis answers
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for q in queues {
            let k = self.keys(q);
            for w in &k.waiting {
                pipe.llen(w);
            }
            pipe.zcard(&k.delayed)
                .llen(&k.dead)
                .smembers(&k.lessees)
                .exists(&k.paused);
        }
        let replies: Vec<Value> = self.server().query(&pipe).await?;
        let mut stats = Vec::with_capacity(queues.len());
        let mut lessees = Vec::new();
        for (q, chunk) in queues.iter().zip(replies.chunks(14)) {
            let mut s = QueueStats {
                queue: q.clone(),
                ..Default::default()
            };
            for (p, v) in chunk[..10].iter().enumerate() {
                s.waiting_by_priority[p] = int(v)? as u64;
            }
            s.delayed = int(&chunk[10])? as u64;
            s.dead_letter = int(&chunk[11])? as u64;
            s.paused = int(&chunk[13])? == 1;
            for w in array(chunk[12].clone())? {
                lessees.push((stats.len(), self.keys(q).lease(&string(w)?)));
            }
            stats.push(s);
        }
        if !lessees.is_empty() {
            let mut pipe = redis::pipe();
            for (_, key) in &lessees {
                pipe.hlen(key);
            }
            let lens: Vec<u64> = self.server().query(&pipe).await?;
            for ((i, _), n) in lessees.iter().zip(lens) {
                stats[*i].reserved += n;
            }
        }
        Ok(stats)
    }

    async fn dead_letters(
        &self,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BackendError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let k = self.keys(queue);
        let mut pipe = redis::pipe();
        pipe.lrange(&k.dead, 0, limit as isize - 1);
        let (entries,): (Vec<Vec<u8>>,) = self.server().query(&pipe).await?;
        let mut out = Vec::with_capacity(entries.len());
        for e in &entries {
            let Some((reason, rec)) = dead_letter(e) else {
                return Err(BackendError::protocol("malformed dead-letter entry"));
            };
            // A corrupt record is dead-lettered as it was found: shown raw.
            let (id, payload) = match record::decode(rec.to_vec()) {
                Ok(r) => (r.id, r.payload),
                Err(_) => (String::new(), rec.to_vec()),
            };
            out.push(DeadLetter {
                id,
                queue: queue.to_string(),
                reason,
                payload,
            });
        }
        Ok(out)
    }

    async fn set_paused(&self, queue: &str, paused: bool) -> Result<bool, BackendError> {
        let k = self.keys(queue);
        let mut inv = k.pause(self.server().scripts);
        inv.arg(u8::from(paused));
        let mut pipe = redis::pipe();
        pipe.invoke_script(&inv);
        let (changed,): (i64,) = self.server().query(&pipe).await?;
        Ok(changed == 1)
    }

    async fn requeue_dead_letters(
        &self,
        queue: &str,
        ids: &[String],
    ) -> Result<Vec<String>, BackendError> {
        /// Dead letters one call looks at (the list holds up to `dead_letter_cap`).
        const PAGE: i64 = 1000;
        let mut out = Vec::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let k = self.keys(queue);
        let mut next = 0i64;
        while next >= 0 {
            let mut inv = k.requeue_dead(self.server().scripts);
            inv.arg(next).arg(PAGE);
            for id in ids {
                inv.arg(id.as_str());
            }
            let mut pipe = redis::pipe();
            pipe.invoke_script(&inv);
            let (reply,): (Vec<redis::Value>,) = self.server().query(&pipe).await?;
            let mut items = reply.into_iter();
            next = items
                .next()
                .map(|v| int(&v))
                .transpose()?
                .ok_or_else(|| BackendError::protocol("requeue_dead: empty reply"))?;
            for item in items {
                out.push(string(item)?);
            }
        }
        Ok(out)
    }

    async fn purge(&self, queue: &str) -> Result<u64, BackendError> {
        let k = self.keys(queue);
        let inv = k.purge(self.server().scripts);
        let mut pipe = redis::pipe();
        pipe.invoke_script(&inv);
        let (n,): (u64,) = self.server().query(&pipe).await?;
        Ok(n)
    }

    async fn scheduled(
        &self,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<(u64, Delivery)>, BackendError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let k = self.keys(queue);
        let mut pipe = redis::pipe();
        pipe.cmd("ZRANGE")
            .arg(&k.delayed)
            .arg(0)
            .arg(limit as isize - 1)
            .arg("WITHSCORES");
        let (pairs,): (Vec<(Vec<u8>, f64)>,) = self.server().query(&pipe).await?;
        let mut out = Vec::with_capacity(pairs.len());
        for (rec, eta) in pairs {
            let r = record::decode(rec)?;
            out.push((
                eta as u64,
                Delivery {
                    id: r.id,
                    queue: queue.to_string(),
                    priority: r.priority,
                    flags: r.flags,
                    payload: r.payload,
                    token: 0,
                    deliveries: r.deliveries,
                },
            ));
        }
        Ok(out)
    }

    async fn oldest_waiting(&self, queues: &[String]) -> Result<Vec<OldestWaiting>, BackendError> {
        if queues.is_empty() {
            return Ok(Vec::new());
        }
        // the head of each waiting list: one message per list, one round trip
        let mut pipe = redis::pipe();
        for q in queues {
            for w in &self.keys(q).waiting {
                pipe.lindex(w, 0);
            }
        }
        let heads: Vec<Option<Vec<u8>>> = self.server().query(&pipe).await?;
        let mut heads = heads.into_iter();
        Ok(queues
            .iter()
            .map(|q| {
                let mut o = OldestWaiting::new(q.clone());
                for (p, head) in heads.by_ref().take(10).enumerate() {
                    // a record that cannot be read has no age (fetch dead-letters it)
                    o.since_by_priority[p] = head
                        .and_then(|rec| record::decode(rec).ok())
                        .and_then(|r| waiting_since(&r.payload));
                }
                o
            })
            .collect())
    }
}

#[async_trait]
impl WorkerRegistry for RedisBackend {
    async fn register_worker(&self, info: &WorkerInfo, ttl: Duration) -> Result<(), BackendError> {
        let g = &self.inner.global;
        let data = self.encode(info)?;
        let seen_for = duration_ms(WORKER_SEEN_FOR);
        let at = if info.heartbeat_at > 0 {
            info.heartbeat_at
        } else {
            now_ms()
        };
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(g.worker_info(&info.id))
            .arg(&data)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .ignore();
        // the last record, kept after the worker stops so that monitors list it offline
        pipe.cmd("SET")
            .arg(g.worker_seen(&info.id))
            .arg(&data)
            .arg("PX")
            .arg(seen_for)
            .ignore();
        pipe.zadd(&g.workers_seen, &info.id, at).ignore();
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&g.workers_seen)
            .arg("-inf")
            .arg(format!("({}", at.saturating_sub(seen_for)))
            .ignore();
        pipe.cmd("ZREMRANGEBYRANK")
            .arg(&g.workers_seen)
            .arg(0)
            .arg(-(MAX_WORKERS_SEEN as i64) - 1)
            .ignore();
        self.server().query::<()>(&pipe).await
    }

    async fn workers(&self) -> Result<Vec<WorkerInfo>, BackendError> {
        let g = &self.inner.global;
        let mut pipe = redis::pipe();
        pipe.zrange(&g.workers, 0, -1);
        let (ids,): (Vec<String>,) = self.server().query(&pipe).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        let keys: Vec<String> = ids.iter().map(|id| g.worker_info(id)).collect();
        pipe.mget(&keys);
        let (infos,): (Vec<Option<Vec<u8>>>,) = self.server().query(&pipe).await?;
        let mut out = Vec::new();
        for data in infos.into_iter().flatten() {
            out.push(self.decode::<WorkerInfo>(&data)?);
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn workers_seen(&self) -> Result<Vec<WorkerInfo>, BackendError> {
        let g = &self.inner.global;
        let mut pipe = redis::pipe();
        pipe.zrevrange(&g.workers_seen, 0, MAX_WORKERS_SEEN as isize - 1);
        let (ids,): (Vec<String>,) = self.server().query(&pipe).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        let keys: Vec<String> = ids.iter().map(|id| g.worker_seen(id)).collect();
        pipe.mget(&keys);
        let (infos,): (Vec<Option<Vec<u8>>>,) = self.server().query(&pipe).await?;
        let mut out = Vec::new();
        // a record past its time is gone: that worker is forgotten
        for (id, data) in ids.iter().zip(infos) {
            let Some(data) = data else { continue };
            match self.decode::<WorkerInfo>(&data) {
                Ok(info) => out.push(info),
                Err(e) => {
                    tracing::warn!(worker = %id, error = %e, "unreadable worker record skipped")
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

#[async_trait]
impl EventLog for RedisBackend {
    async fn emit(&self, events: &[Event]) -> Result<(), BackendError> {
        if events.is_empty() {
            return Ok(());
        }
        let g = &self.inner.global;
        let mut pipe = redis::pipe();
        for e in events {
            pipe.cmd("XADD")
                .arg(&g.events)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.inner.config.event_cap)
                .arg("*")
                .arg("e")
                .arg(self.encode(e)?)
                .ignore();
        }
        self.server().query::<()>(&pipe).await
    }

    async fn events(
        &self,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<(String, Event)>, BackendError> {
        let start = after.map_or_else(|| "-".to_string(), |c| format!("({c}"));
        self.read_events("XRANGE", &start, "+", count).await
    }

    async fn events_before(
        &self,
        before: Option<&str>,
        count: usize,
    ) -> Result<Vec<(String, Event)>, BackendError> {
        let end = before.map_or_else(|| "+".to_string(), |c| format!("({c}"));
        self.read_events("XREVRANGE", &end, "-", count).await
    }
}

#[async_trait]
impl ControlBus for RedisBackend {
    async fn broadcast(&self, request: &Request) -> Result<(), BackendError> {
        let mut pipe = redis::pipe();
        pipe.publish(&self.inner.global.control_channel, self.encode(request)?)
            .ignore();
        self.server().query::<()>(&pipe).await
    }

    async fn subscribe_control(&self) -> Result<mpsc::Receiver<Request>, BackendError> {
        Ok(self.inner.hub.subscribe_control())
    }

    async fn reply(&self, reply: &Reply, ttl: Duration) -> Result<(), BackendError> {
        let key = self.inner.global.replies(&reply.request_id);
        let mut pipe = redis::pipe();
        pipe.rpush(&key, self.encode(reply)?)
            .ignore()
            .pexpire(&key, ttl.as_millis().max(1) as i64)
            .ignore();
        self.server().query::<()>(&pipe).await
    }

    async fn collect_replies(
        &self,
        request_id: &str,
        expected: usize,
        timeout: Duration,
    ) -> Result<Vec<Reply>, BackendError> {
        let key = self.inner.global.replies(request_id);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut conn = deadpool_redis::Connection::take(self.server().dedicated().await?);
        let mut out = Vec::new();
        while expected == 0 || out.len() < expected {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left < Duration::from_millis(1) {
                break;
            }
            let got: Option<(String, Vec<u8>)> = redis::cmd("BLPOP")
                .arg(&key)
                .arg(left.as_secs_f64().max(0.01))
                .query_async(&mut conn)
                .await
                .map_err(|e| self.server().error(e))?;
            match got {
                Some((_, data)) => out.push(self.decode::<Reply>(&data)?),
                None => break,
            }
        }
        let mut pipe = redis::pipe();
        pipe.del(&key).ignore();
        self.server().query::<()>(&pipe).await?;
        Ok(out)
    }
}

#[async_trait]
impl RateLimits for RedisBackend {
    async fn set_rate_limit(
        &self,
        task: &str,
        rate: Option<RateLimit>,
    ) -> Result<(), BackendError> {
        let mut pipe = redis::pipe();
        match rate {
            Some(r) => pipe.hset(&self.inner.global.rate_limits, task, r.to_string()),
            None => pipe.hdel(&self.inner.global.rate_limits, task),
        }
        .ignore();
        self.server().query::<()>(&pipe).await
    }

    async fn rate_limits(&self) -> Result<Vec<(String, RateLimit)>, BackendError> {
        let mut pipe = redis::pipe();
        pipe.hgetall(&self.inner.global.rate_limits);
        let (map,): (Vec<(String, String)>,) = self.server().query(&pipe).await?;
        let mut out: Vec<(String, RateLimit)> = map
            .into_iter()
            .filter_map(|(task, r)| r.parse().ok().map(|r| (task, r)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn acquire_rate(&self, task: &str, rate: RateLimit) -> Result<Duration, BackendError> {
        let mut inv = self.inner.global.rate_limit(self.server().scripts, task);
        inv.arg(rate.interval().as_millis().max(1) as u64);
        let mut pipe = redis::pipe();
        pipe.invoke_script(&inv);
        let (wait,): (u64,) = self.server().query(&pipe).await?;
        Ok(Duration::from_millis(wait))
    }
}
