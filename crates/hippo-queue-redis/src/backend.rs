//! [`RedisBackend`]: the [`Broker`] half.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hippo_queue_core::BackendError;
use hippo_queue_core::backend::{
    Broker, DeadLetter, Delivery, DeliveryRef, Outgoing, QueueStats, Recovered, RecoveryOutcome,
    Revocation, Settle, SettleOutcome, Settlement,
};
use hippo_queue_core::codec::Codec;
use hippo_queue_core::control::{RateLimit, Reply, Request};
use hippo_queue_core::events::{Event, WorkerInfo};
use hippo_queue_core::time::now_ms;
use redis::{ScriptInvocation, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::RedisConfig;
use crate::conn::{ConnectError, Server};
use crate::keys::{GlobalKeys, QueueKeys};
use crate::listener::{self, Channels, Hub};
use crate::record;
use crate::values::{array, bytes, dead_letter, int, string};

/// Most messages per publish script call.
const PUBLISH_CHUNK: usize = 1000;
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
    listeners: Vec<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for l in &self.listeners {
            l.abort();
        }
    }
}

impl RedisBackend {
    /// Connects to the broker (and result) server, loads the scripts and starts the
    /// pub/sub listener, waiting (up to 3 s) until it has subscribed. Fails with a
    /// clear error when a URL is invalid or a server cannot be reached.
    pub async fn connect(config: RedisConfig) -> Result<Self, ConnectError> {
        let broker = Arc::new(
            Server::connect(
                &config.broker_url,
                config.pool_size,
                config.response_timeout,
            )
            .await?,
        );
        let results = match &config.results_url {
            Some(url) if *url != config.broker_url => {
                Arc::new(Server::connect(url, config.pool_size, config.response_timeout).await?)
            }
            _ => broker.clone(),
        };
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
        Ok(RedisBackend {
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
                listeners,
            }),
        })
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
            .map_err(|e| BackendError::Backend(e.to_string()))
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, data: &[u8]) -> Result<T, BackendError> {
        self.inner
            .codec
            .decode(data)
            .map_err(|e| BackendError::Protocol(e.to_string()))
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
    /// queue, so that its recovery knows where to look.
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
        let mut inv = k.invoke(&self.server().scripts.fetch);
        inv.key(&k.delayed)
            .key(k.lease(worker))
            .key(&k.seq)
            .key(&k.lessees)
            .arg(now_ms())
            .arg(max.min(FETCH_MAX))
            .arg(worker)
            .arg(DUE_BATCH);
        inv
    }

    /// Reads a fetch reply: the next due time, then the leased records.
    fn parse_fetch(
        reply: Value,
        queue: &str,
    ) -> Result<(Vec<Delivery>, Option<u64>), BackendError> {
        let mut items = array(reply)?.into_iter();
        let (Some(due), Some(first)) = (items.next(), items.next()) else {
            return Err(BackendError::Protocol("short fetch reply".into()));
        };
        let due = int(&due)?;
        let first = int(&first)? as u64;
        let mut out = Vec::with_capacity(items.len());
        for (i, rec) in items.enumerate() {
            let r = record::decode(bytes(rec)?)?;
            out.push(Delivery {
                id: r.id,
                queue: queue.to_string(),
                priority: r.priority,
                flags: r.flags,
                payload: r.payload,
                token: first + i as u64,
                deliveries: r.deliveries,
            });
        }
        Ok((out, (due >= 0).then_some(due as u64)))
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
        Self::parse_fetch(reply, queue)
    }

    /// Blocks on the queues' wake-up lists for up to `timeout`, on a connection
    /// dedicated to this worker's waits (kept between waits; dropped, and so closed,
    /// when a wait fails or is cancelled).
    ///
    /// The fetch calls are pipelined behind the blocking pop: Redis runs them the
    /// moment the pop returns, so a woken worker gets its messages without another
    /// round trip. If the wait is cancelled the connection closes and the queued
    /// fetches never run. A burst over several queues can lease more than `max`: the
    /// surplus is handed back at once.
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
            .map(|q| self.fetch_invocation(worker, q, max))
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
        let mut next_due: Option<u64> = None;
        for (reply, q) in replies.into_iter().zip(queues) {
            let (got, due) = Self::parse_fetch(reply, q)?;
            out.extend(got);
            next_due = earliest(next_due, due);
        }
        if !out.is_empty() && out.len() < max {
            // The queues were drained at the pop: the next fetch may wait at once.
            self.mark_idle(worker, next_due);
        }
        if out.len() > max {
            let surplus: Vec<DeliveryRef> =
                out.split_off(max).iter().map(Delivery::to_ref).collect();
            self.release(worker, &surplus).await?;
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

    async fn recover_worker(
        &self,
        worker: &str,
        max_deliveries: u32,
    ) -> Result<Vec<Recovered>, BackendError> {
        let server = self.server();
        let wq = self.inner.global.worker_queues(worker);
        let mut pipe = redis::pipe();
        pipe.smembers(&wq);
        let (queues,): (Vec<String>,) = server.query(&pipe).await?;
        let mut out = Vec::new();
        for queue in queues {
            let k = self.keys(&queue);
            loop {
                let mut inv = k.invoke(&server.scripts.recover);
                inv.key(k.lease(worker))
                    .key(k.started(worker))
                    .key(&k.lessees)
                    .key(&k.dead)
                    .key(&k.notify)
                    .arg(worker)
                    .arg(max_deliveries.min(255))
                    .arg(RECOVER_BATCH)
                    .arg(self.inner.config.dead_letter_cap);
                let mut pipe = redis::pipe();
                pipe.invoke_script(&inv);
                let (reply,): (Value,) = server.query(&pipe).await?;
                let mut items = array(reply)?.into_iter();
                let left = items.next().map(|v| int(&v)).transpose()?.unwrap_or(0);
                while let (Some(outcome), Some(rec)) = (items.next(), items.next()) {
                    let outcome = match string(outcome)?.as_str() {
                        "q" => RecoveryOutcome::Requeued,
                        "l" => RecoveryOutcome::WorkerLost,
                        _ => RecoveryOutcome::TooManyDeliveries,
                    };
                    let r = record::decode(bytes(rec)?)?;
                    out.push(Recovered {
                        id: r.id,
                        queue: queue.clone(),
                        worker: worker.to_string(),
                        payload: r.payload,
                        outcome,
                    });
                }
                if left == 0 {
                    break;
                }
            }
        }
        let mut pipe = redis::pipe();
        pipe.zrem(&self.inner.global.workers, worker)
            .ignore()
            .del(&wq)
            .ignore()
            .del(self.inner.global.worker_info(worker))
            .ignore();
        server.query::<()>(&pipe).await?;
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
        Ok(out)
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
        return Err(BackendError::Protocol(format!(
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
impl Broker for RedisBackend {
    async fn publish(&self, messages: Vec<Outgoing>) -> Result<(), BackendError> {
        if messages.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let scripts = self.server().scripts;
        let by_queue = group_by_queue(&messages, |m| &m.queue);
        let mut invocations = Vec::new();
        for (queue, msgs) in &by_queue {
            let k = self.keys(queue);
            for chunk in msgs.chunks(PUBLISH_CHUNK) {
                let mut inv = k.invoke(&scripts.publish);
                inv.key(&k.delayed).key(&k.notify).arg(now);
                for (_, m) in chunk {
                    inv.arg(m.eta.unwrap_or(0))
                        .arg(record::encode(m.priority, m.flags, &m.id, &m.payload)?);
                }
                invocations.push(inv);
            }
        }
        let mut pipe = redis::pipe();
        for inv in &invocations {
            pipe.invoke_script(inv).ignore();
        }
        self.server().query::<()>(&pipe).await
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
                let mut inv = scripts.start.prepare_invoke();
                inv.key(k.lease(worker)).key(k.started(worker));
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
        let now = now_ms();
        let groups = group_by_queue(settlements, |s| &s.delivery.queue);
        let mut invs = Vec::new();
        let mut order = Vec::new();
        for (queue, ss) in &groups {
            let k = self.keys(queue);
            for chunk in ss.chunks(SETTLE_CHUNK) {
                let mut inv = k.invoke(&scripts.settle);
                inv.key(&k.delayed)
                    .key(k.lease(worker))
                    .key(k.started(worker))
                    .key(&k.dead)
                    .key(&k.notify)
                    .arg(now)
                    .arg(self.inner.config.dead_letter_cap);
                for (_, s) in chunk {
                    inv.arg(s.delivery.token);
                    match &s.action {
                        Settle::Ack => inv.arg("a").arg("").arg(0),
                        Settle::Retry { payload, eta } => inv.arg("r").arg(payload).arg(*eta),
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
            let mut inv = k.invoke(&scripts.release);
            inv.key(k.lease(worker))
                .key(k.started(worker))
                .key(&k.notify);
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

    async fn heartbeat(&self, worker: &str, ttl: Duration) -> Result<(), BackendError> {
        let deadline = now_ms().saturating_add(ttl.as_millis() as u64);
        let mut pipe = redis::pipe();
        pipe.zadd(&self.inner.global.workers, worker, deadline)
            .ignore();
        self.server().query::<()>(&pipe).await
    }

    async fn unregister(&self, worker: &str) -> Result<Vec<Recovered>, BackendError> {
        self.recover_worker(worker, u32::MAX).await
    }

    async fn recover(&self, max_deliveries: u32) -> Result<Vec<Recovered>, BackendError> {
        if self
            .server()
            .failed_within(self.inner.config.recovery_grace)
        {
            // Workers cut off by the same outage have not had time to beat again.
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        pipe.cmd("ZRANGEBYSCORE")
            .arg(&self.inner.global.workers)
            .arg("-inf")
            .arg(now_ms())
            .arg("LIMIT")
            .arg(0)
            .arg(DEAD_WORKERS_BATCH);
        let (dead,): (Vec<String>,) = self.server().query(&pipe).await?;
        let mut out = Vec::new();
        for w in dead {
            tracing::warn!(worker = %w, "worker missed its heartbeats; recovering its messages");
            out.extend(self.recover_worker(&w, max_deliveries).await?);
        }
        Ok(out)
    }

    async fn revoke(&self, revocation: Revocation) -> Result<(), BackendError> {
        let g = &self.inner.global;
        let member = format!("{}:{}", u8::from(revocation.terminate), revocation.id);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .zadd(&g.revoked, member, revocation.until)
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
        let mut pipe = redis::pipe();
        pipe.cmd("ZRANGEBYSCORE")
            .arg(&self.inner.global.revoked)
            .arg(now_ms())
            .arg("+inf")
            .arg("WITHSCORES");
        let (pairs,): (Vec<(String, u64)>,) = self.server().query(&pipe).await?;
        Ok(pairs
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

    async fn subscribe_revocations(&self) -> Result<mpsc::Receiver<Revocation>, BackendError> {
        Ok(self.inner.hub.subscribe())
    }

    async fn queue_stats(&self, queues: &[String]) -> Result<Vec<QueueStats>, BackendError> {
        let mut pipe = redis::pipe();
        for q in queues {
            let k = self.keys(q);
            for w in &k.waiting {
                pipe.llen(w);
            }
            pipe.zcard(&k.delayed).llen(&k.dead).smembers(&k.lessees);
        }
        let replies: Vec<Value> = self.server().query(&pipe).await?;
        let mut stats = Vec::with_capacity(queues.len());
        let mut lessees = Vec::new();
        for (q, chunk) in queues.iter().zip(replies.chunks(13)) {
            let mut s = QueueStats {
                queue: q.clone(),
                ..Default::default()
            };
            for (p, v) in chunk[..10].iter().enumerate() {
                s.waiting_by_priority[p] = int(v)? as u64;
            }
            s.delayed = int(&chunk[10])? as u64;
            s.dead_letter = int(&chunk[11])? as u64;
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
                return Err(BackendError::Protocol("malformed dead-letter entry".into()));
            };
            let r = record::decode(rec.to_vec())?;
            out.push(DeadLetter {
                id: r.id,
                queue: queue.to_string(),
                reason,
                payload: r.payload,
            });
        }
        Ok(out)
    }

    async fn purge(&self, queue: &str) -> Result<u64, BackendError> {
        let k = self.keys(queue);
        let mut inv = k.invoke(&self.server().scripts.purge);
        inv.key(&k.delayed);
        let mut pipe = redis::pipe();
        pipe.invoke_script(&inv);
        let (n,): (u64,) = self.server().query(&pipe).await?;
        Ok(n)
    }

    async fn register_worker(&self, info: &WorkerInfo, ttl: Duration) -> Result<(), BackendError> {
        let data = self.encode(info)?;
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(self.inner.global.worker_info(&info.id))
            .arg(data)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
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
        let start = match after {
            Some(c) => format!("({c}"),
            None => "-".to_string(),
        };
        let mut pipe = redis::pipe();
        pipe.cmd("XRANGE")
            .arg(&self.inner.global.events)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(count.max(1));
        let (entries,): (Vec<(String, Vec<(String, Vec<u8>)>)>,) =
            self.server().query(&pipe).await?;
        let mut out = Vec::with_capacity(entries.len());
        for (id, fields) in entries {
            if let Some((_, data)) = fields.into_iter().find(|(k, _)| k == "e") {
                out.push((id, self.decode::<Event>(&data)?));
            }
        }
        Ok(out)
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
        let mut inv = self.server().scripts.rate.prepare_invoke();
        inv.key(self.inner.global.rate(task))
            .arg(now_ms())
            .arg(rate.interval().as_millis().max(1) as u64);
        let mut pipe = redis::pipe();
        pipe.invoke_script(&inv);
        let (wait,): (u64,) = self.server().query(&pipe).await?;
        Ok(Duration::from_millis(wait))
    }
}
