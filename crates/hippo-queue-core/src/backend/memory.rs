//! The in-memory broker and result backend: the embedded default.
//!
//! One [`MemoryBackend`] value implements both [`Broker`](super::Broker) and [`ResultBackend`] with the
//! same semantics as the Redis backend (priorities, delays, leases and fencing,
//! recovery of dead workers, durable revocation, result expiry), inside one process.
//! Clones share the same state.
//!
//! ```
//! use hippo_queue_core::backend::memory::MemoryBackend;
//! use hippo_queue_core::App;
//! let backend = MemoryBackend::new();
//! let app = App::builder().broker(backend.clone()).backend(backend).build();
//! # let _ = app;
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{Notify, mpsc};

use super::{
    BackendError, BeatReply, DeadLetter, Delivery, DeliveryFlags, DeliveryRef, Outgoing,
    QueueStats, Recovered, RecoveryOutcome, ResultBackend, ResultWrite, Revocation, Settle,
    SettleOutcome, Settlement, WriteOutcome,
};
use super::{RateLimit, Reply, Request};
use crate::backend::ControlBus;
use crate::backend::EventLog;
use crate::backend::Inspection;
use crate::backend::Messages;
use crate::backend::RateLimits;
use crate::backend::Revocations;
use crate::backend::TaskHistory;
use crate::backend::WorkerRegistry;
use crate::backend::inspection::{OldestWaiting, waiting_since};
use crate::backend::registry::{MAX_WORKERS_SEEN, WORKER_SEEN_FOR};
use crate::backend::task_history::{HistoryCursor, HistoryPage};
use crate::events::{Event, WorkerInfo};
use crate::result::{TaskMeta, accepts};
use crate::time::now_ms;

/// Most delayed messages moved to their queues by one fetch (the same bound the Redis
/// scripts use).
const DUE_BATCH: usize = 1000;
/// Events kept in the event log.
const EVENT_CAP: usize = 10_000;

/// In-process broker and result backend. Cheap to clone; clones share state.
#[derive(Clone, Default)]
pub struct MemoryBackend {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    arrivals: Notify,
    results_ready: Notify,
    replies_ready: Notify,
}

/// A worker name's heartbeat.
struct Beating {
    deadline: Instant,
    incarnation: String,
}

#[derive(Default)]
struct State {
    queues: HashMap<String, QueueState>,
    delayed: BTreeMap<(u64, u64), Msg>,
    leases: HashMap<u64, Lease>,
    /// Heartbeats: worker name -> its deadline and the incarnation holding it.
    workers: HashMap<String, Beating>,
    revoked: HashMap<String, Revocation>,
    /// Every revocation in order (the cursor of `revocations_after` is an index).
    revocation_log: Vec<Revocation>,
    subscribers: Vec<mpsc::Sender<Revocation>>,
    results: HashMap<String, (TaskMeta, Instant)>,
    registry: HashMap<String, (WorkerInfo, Instant)>,
    /// Every worker's last record, until [`WORKER_SEEN_FOR`] after it was written.
    seen: HashMap<String, (WorkerInfo, Instant)>,
    control_subscribers: Vec<mpsc::Sender<Request>>,
    replies: HashMap<String, (Vec<Reply>, Instant)>,
    rate_limits: HashMap<String, RateLimit>,
    rate_tat: HashMap<String, u64>,
    events: VecDeque<(u64, Event)>,
    event_seq: u64,
    seq: u64,
    next_token: u64,
    last_sweep: Option<Instant>,
}

#[derive(Default)]
struct QueueState {
    levels: [VecDeque<Msg>; 10],
    /// Paused: nothing is leased.
    paused: bool,
    /// Dead letters, with the message they came from (to requeue it).
    dead: VecDeque<(DeadLetter, Msg)>,
}

#[derive(Clone)]
struct Msg {
    id: String,
    queue: String,
    priority: u8,
    payload: Vec<u8>,
    flags: DeliveryFlags,
    deliveries: u32,
}

struct Lease {
    msg: Msg,
    worker: String,
    started: bool,
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way
        // that matters more than losing the process, so recover the guard.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn queue(&mut self, name: &str) -> &mut QueueState {
        self.queues.entry(name.to_string()).or_default()
    }

    fn enqueue_back(&mut self, msg: Msg) {
        let p = usize::from(msg.priority.min(9));
        self.queue(&msg.queue.clone()).levels[p].push_back(msg);
    }

    fn enqueue_front(&mut self, msg: Msg) {
        let p = usize::from(msg.priority.min(9));
        self.queue(&msg.queue.clone()).levels[p].push_front(msg);
    }

    fn delay(&mut self, eta: u64, msg: Msg) {
        self.seq += 1;
        let seq = self.seq;
        self.delayed.insert((eta, seq), msg);
    }

    fn dead_letter(&mut self, msg: Msg, reason: &str) {
        let dl = DeadLetter {
            id: msg.id.clone(),
            queue: msg.queue.clone(),
            reason: reason.to_string(),
            payload: msg.payload.clone(),
        };
        self.queue(&msg.queue.clone()).dead.push_back((dl, msg));
    }

    /// Moves up to `DUE_BATCH` due delayed messages to their queues.
    fn promote_due(&mut self, now: u64) -> usize {
        let mut moved = 0;
        while moved < DUE_BATCH {
            let Some(entry) = self.delayed.first_entry() else {
                break;
            };
            if entry.key().0 > now {
                break;
            }
            let msg = entry.remove();
            self.enqueue_back(msg);
            moved += 1;
        }
        moved
    }

    fn next_due(&self) -> Option<u64> {
        self.delayed.keys().next().map(|k| k.0)
    }

    fn take(&mut self, worker: &str, queues: &[String], max: usize) -> Vec<Delivery> {
        let mut out = Vec::new();
        for q in queues {
            if out.len() >= max {
                break;
            }
            let Some(qs) = self.queues.get_mut(q) else {
                continue;
            };
            if qs.paused {
                continue;
            }
            for level in qs.levels.iter_mut().rev() {
                while out.len() < max {
                    let Some(mut msg) = level.pop_front() else {
                        break;
                    };
                    msg.deliveries += 1;
                    self.next_token += 1;
                    let token = self.next_token;
                    out.push(Delivery {
                        id: msg.id.clone(),
                        queue: msg.queue.clone(),
                        priority: msg.priority,
                        payload: msg.payload.clone(),
                        token,
                        deliveries: msg.deliveries,
                        flags: msg.flags,
                    });
                    self.leases.insert(
                        token,
                        Lease {
                            msg,
                            worker: worker.to_string(),
                            started: false,
                        },
                    );
                }
            }
        }
        out
    }

    fn lease_of(&mut self, worker: &str, d: &DeliveryRef) -> Option<&mut Lease> {
        self.leases
            .get_mut(&d.token)
            .filter(|l| l.worker == worker && l.msg.id == d.id)
    }

    /// Recovers every lease of `worker`.
    fn recover_worker(&mut self, worker: &str, max_deliveries: u32) -> Vec<Recovered> {
        let tokens: Vec<u64> = self
            .leases
            .iter()
            .filter(|(_, l)| l.worker == worker)
            .map(|(t, _)| *t)
            .collect();
        let mut out = Vec::new();
        for t in tokens {
            let Some(lease) = self.leases.remove(&t) else {
                continue;
            };
            let mut msg = lease.msg;
            let outcome = if msg.flags.requeue_when_lost() {
                if msg.deliveries >= max_deliveries {
                    RecoveryOutcome::TooManyDeliveries
                } else {
                    RecoveryOutcome::Requeued
                }
            } else if !lease.started {
                msg.deliveries = msg.deliveries.saturating_sub(1);
                RecoveryOutcome::Requeued
            } else {
                RecoveryOutcome::WorkerLost
            };
            out.push(Recovered {
                id: msg.id.clone(),
                queue: msg.queue.clone(),
                worker: worker.to_string(),
                token: t,
                payload: msg.payload.clone(),
                outcome,
            });
            match outcome {
                RecoveryOutcome::Requeued => self.enqueue_front(msg),
                RecoveryOutcome::WorkerLost => self.dead_letter(msg, "worker lost"),
                RecoveryOutcome::TooManyDeliveries => {
                    self.dead_letter(msg, "delivered too many times")
                }
            }
        }
        out
    }

    fn subscribers_control_send(&mut self, request: &Request) {
        self.control_subscribers
            .retain(|tx| match tx.try_send(request.clone()) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => true,
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
    }

    fn sweep_results(&mut self, now: Instant) {
        if self
            .last_sweep
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.last_sweep = Some(now);
        self.results.retain(|_, (_, exp)| *exp > now);
        let ms = now_ms();
        self.revoked.retain(|_, r| r.until > ms);
    }
}

#[async_trait]
impl Messages for MemoryBackend {
    async fn publish(&self, messages: Vec<Outgoing>) -> Result<(), BackendError> {
        let now = now_ms();
        {
            let mut st = self.lock();
            for m in messages {
                let msg = Msg {
                    id: m.id,
                    queue: m.queue,
                    priority: m.priority.min(9),
                    payload: m.payload,
                    flags: m.flags,
                    deliveries: 0,
                };
                match m.eta {
                    Some(eta) if eta > now => st.delay(eta, msg),
                    _ => st.enqueue_back(msg),
                }
            }
        }
        self.shared.arrivals.notify_waiters();
        Ok(())
    }

    async fn fetch(
        &self,
        worker: &str,
        queues: &[String],
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BackendError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.shared.arrivals.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next_due = {
                let mut st = self.lock();
                st.promote_due(now_ms());
                let got = st.take(worker, queues, max);
                if !got.is_empty() || max == 0 {
                    return Ok(got);
                }
                st.next_due()
            };
            let mut until = deadline;
            if let Some(due) = next_due {
                let in_ms = due.saturating_sub(now_ms());
                until = until.min(tokio::time::Instant::now() + Duration::from_millis(in_ms));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(Vec::new());
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    async fn start(
        &self,
        worker: &str,
        deliveries: &[DeliveryRef],
    ) -> Result<Vec<SettleOutcome>, BackendError> {
        let mut st = self.lock();
        Ok(deliveries
            .iter()
            .map(|d| match st.lease_of(worker, d) {
                Some(lease) => {
                    lease.started = true;
                    SettleOutcome::Done
                }
                None => SettleOutcome::Fenced,
            })
            .collect())
    }

    async fn settle(
        &self,
        worker: &str,
        settlements: &[Settlement],
    ) -> Result<Vec<SettleOutcome>, BackendError> {
        let mut wake = false;
        let out = {
            let mut st = self.lock();
            settlements
                .iter()
                .map(|s| {
                    if st.lease_of(worker, &s.delivery).is_none() {
                        return SettleOutcome::Fenced;
                    }
                    let Some(lease) = st.leases.remove(&s.delivery.token) else {
                        return SettleOutcome::Fenced;
                    };
                    let mut msg = lease.msg;
                    match &s.action {
                        Settle::Ack => {}
                        Settle::Retry { payload, eta } => {
                            msg.payload = payload.clone();
                            msg.deliveries = 0;
                            if *eta > now_ms() {
                                st.delay(*eta, msg);
                            } else {
                                st.enqueue_back(msg);
                            }
                            // a waiting fetch must see the new due time
                            wake = true;
                        }
                        Settle::DeadLetter { reason } => st.dead_letter(msg, reason),
                        Settle::Requeue => {
                            st.enqueue_front(msg);
                            wake = true;
                        }
                    }
                    SettleOutcome::Done
                })
                .collect()
        };
        if wake {
            self.shared.arrivals.notify_waiters();
        }
        Ok(out)
    }

    async fn release(&self, worker: &str, deliveries: &[DeliveryRef]) -> Result<(), BackendError> {
        {
            let mut st = self.lock();
            // Hand back in reverse so that push_front restores the original order.
            for d in deliveries.iter().rev() {
                if st.lease_of(worker, d).is_some_and(|l| !l.started)
                    && let Some(lease) = st.leases.remove(&d.token)
                {
                    let mut msg = lease.msg;
                    msg.deliveries = msg.deliveries.saturating_sub(1);
                    st.enqueue_front(msg);
                }
            }
        }
        self.shared.arrivals.notify_waiters();
        Ok(())
    }

    async fn heartbeat(
        &self,
        worker: &str,
        incarnation: &str,
        ttl: Duration,
        _interval: Duration,
    ) -> Result<BeatReply, BackendError> {
        // One process, one clock, no outage: the interval is not needed.
        let mut st = self.lock();
        let now = Instant::now();
        let previous = st.workers.get(worker);
        if previous.is_some_and(|b| b.incarnation != incarnation && b.deadline > now) {
            return Ok(BeatReply::Taken);
        }
        let known = previous.is_some();
        let inherited = previous.is_some_and(|b| b.incarnation != incarnation);
        st.workers.insert(
            worker.to_string(),
            Beating {
                deadline: now + ttl,
                incarnation: incarnation.to_string(),
            },
        );
        Ok(if inherited {
            BeatReply::TakenOver
        } else if known {
            BeatReply::Alive
        } else {
            BeatReply::Unknown
        })
    }

    async fn worker_lease(&self, worker: &str) -> Result<Option<Duration>, BackendError> {
        let st = self.lock();
        let held = st.leases.values().any(|l| l.worker == worker);
        Ok(match st.workers.get(worker) {
            Some(b) => Some(b.deadline.saturating_duration_since(Instant::now())),
            None if held => Some(Duration::ZERO),
            None => None,
        })
    }

    async fn recover_worker(
        &self,
        worker: &str,
        max_deliveries: u32,
    ) -> Result<Vec<Recovered>, BackendError> {
        let out = self.lock().recover_worker(worker, max_deliveries);
        self.shared.arrivals.notify_waiters();
        Ok(out)
    }

    async fn leases(
        &self,
        worker: &str,
        queues: &[String],
    ) -> Result<Vec<DeliveryRef>, BackendError> {
        let st = self.lock();
        Ok(st
            .leases
            .iter()
            .filter(|(_, l)| l.worker == worker && queues.contains(&l.msg.queue))
            .map(|(token, l)| DeliveryRef {
                id: l.msg.id.clone(),
                queue: l.msg.queue.clone(),
                token: *token,
            })
            .collect())
    }

    async fn losses_recorded(&self, _losses: &[DeliveryRef]) -> Result<(), BackendError> {
        // The losses live in this process: a recoverer that dies takes them with it,
        // and nobody is left to wait for their records.
        Ok(())
    }

    async fn unregister(
        &self,
        worker: &str,
        incarnation: &str,
    ) -> Result<Vec<Recovered>, BackendError> {
        let out = {
            let mut st = self.lock();
            if st
                .workers
                .get(worker)
                .is_some_and(|b| b.incarnation != incarnation)
            {
                // another process holds the name now: its leases stay
                return Ok(Vec::new());
            }
            st.workers.remove(worker);
            st.registry.remove(worker);
            st.recover_worker(worker, u32::MAX)
        };
        self.shared.arrivals.notify_waiters();
        Ok(out)
    }

    async fn recover(&self, max_deliveries: u32) -> Result<Vec<Recovered>, BackendError> {
        let out = {
            let mut st = self.lock();
            let now = Instant::now();
            let mut dead: Vec<String> = st
                .workers
                .iter()
                .filter(|(_, b)| b.deadline <= now)
                .map(|(w, _)| w.clone())
                .collect();
            // Leases held by workers that never registered a heartbeat are dead too.
            for l in st.leases.values() {
                if !st.workers.contains_key(&l.worker) && !dead.contains(&l.worker) {
                    dead.push(l.worker.clone());
                }
            }
            let mut out = Vec::new();
            for w in dead {
                st.workers.remove(&w);
                out.extend(st.recover_worker(&w, max_deliveries));
            }
            out
        };
        if out.iter().any(|r| r.outcome == RecoveryOutcome::Requeued) {
            self.shared.arrivals.notify_waiters();
        }
        Ok(out)
    }
}

#[async_trait]
impl Revocations for MemoryBackend {
    async fn revoke(&self, revocation: Revocation) -> Result<(), BackendError> {
        let mut st = self.lock();
        st.revoked.insert(revocation.id.clone(), revocation.clone());
        st.revocation_log.push(revocation.clone());
        st.subscribers
            .retain(|tx| match tx.try_send(revocation.clone()) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => true,
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        Ok(())
    }

    async fn revocations(&self) -> Result<Vec<Revocation>, BackendError> {
        let now = now_ms();
        Ok(self
            .lock()
            .revoked
            .values()
            .filter(|r| r.until > now)
            .cloned()
            .collect())
    }

    async fn revocations_after(
        &self,
        cursor: Option<&str>,
        max: usize,
    ) -> Result<(Vec<Revocation>, String), BackendError> {
        let st = self.lock();
        let end = st.revocation_log.len();
        let Some(cursor) = cursor else {
            return Ok((Vec::new(), end.to_string()));
        };
        let from: usize = cursor
            .parse()
            .map_err(|_| BackendError::protocol(format!("bad revocation cursor {cursor:?}")))?;
        let to = end.min(from.saturating_add(max));
        let list = st.revocation_log.get(from..to).unwrap_or_default().to_vec();
        Ok((list, to.max(from).to_string()))
    }

    async fn subscribe_revocations(&self) -> Result<mpsc::Receiver<Revocation>, BackendError> {
        let (tx, rx) = mpsc::channel(1024);
        self.lock().subscribers.push(tx);
        Ok(rx)
    }
}

#[async_trait]
impl Inspection for MemoryBackend {
    async fn queue_stats(&self, queues: &[String]) -> Result<Vec<QueueStats>, BackendError> {
        let st = self.lock();
        Ok(queues
            .iter()
            .map(|q| {
                let mut s = QueueStats {
                    queue: q.clone(),
                    ..Default::default()
                };
                if let Some(qs) = st.queues.get(q) {
                    for (p, level) in qs.levels.iter().enumerate() {
                        s.waiting_by_priority[p] = level.len() as u64;
                    }
                    s.dead_letter = qs.dead.len() as u64;
                    s.paused = qs.paused;
                }
                s.delayed = st.delayed.values().filter(|m| &m.queue == q).count() as u64;
                s.reserved = st.leases.values().filter(|l| &l.msg.queue == q).count() as u64;
                s
            })
            .collect())
    }

    async fn dead_letters(
        &self,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BackendError> {
        Ok(self
            .lock()
            .queues
            .get(queue)
            .map(|qs| qs.dead.iter().take(limit).map(|(d, _)| d.clone()).collect())
            .unwrap_or_default())
    }

    async fn set_paused(&self, queue: &str, paused: bool) -> Result<bool, BackendError> {
        let changed = {
            let mut st = self.lock();
            let qs = st.queue(queue);
            std::mem::replace(&mut qs.paused, paused) != paused
        };
        if changed && !paused {
            self.shared.arrivals.notify_waiters();
        }
        Ok(changed)
    }

    async fn requeue_dead_letters(
        &self,
        queue: &str,
        ids: &[String],
    ) -> Result<Vec<String>, BackendError> {
        let mut st = self.lock();
        let Some(qs) = st.queues.get_mut(queue) else {
            return Ok(Vec::new());
        };
        let (chosen, kept): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut qs.dead)
            .into_iter()
            .partition(|(d, _)| ids.contains(&d.id));
        qs.dead = kept;
        let mut out = Vec::with_capacity(chosen.len());
        for (d, mut msg) in chosen {
            msg.deliveries = 0;
            out.push(d.id);
            st.enqueue_back(msg);
        }
        if !out.is_empty() {
            self.shared.arrivals.notify_waiters();
        }
        Ok(out)
    }

    async fn purge(&self, queue: &str) -> Result<u64, BackendError> {
        let mut st = self.lock();
        let mut n = 0u64;
        if let Some(qs) = st.queues.get_mut(queue) {
            for level in qs.levels.iter_mut() {
                n += level.len() as u64;
                level.clear();
            }
        }
        let before = st.delayed.len();
        st.delayed.retain(|_, m| m.queue != queue);
        n += (before - st.delayed.len()) as u64;
        Ok(n)
    }

    async fn scheduled(
        &self,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<(u64, Delivery)>, BackendError> {
        let st = self.lock();
        Ok(st
            .delayed
            .iter()
            .filter(|(_, m)| m.queue == queue)
            .take(limit)
            .map(|((eta, _), m)| {
                (
                    *eta,
                    Delivery {
                        id: m.id.clone(),
                        queue: m.queue.clone(),
                        priority: m.priority,
                        payload: m.payload.clone(),
                        token: 0,
                        deliveries: m.deliveries,
                        flags: m.flags,
                    },
                )
            })
            .collect())
    }

    async fn oldest_waiting(&self, queues: &[String]) -> Result<Vec<OldestWaiting>, BackendError> {
        let st = self.lock();
        Ok(queues
            .iter()
            .map(|q| {
                let mut o = OldestWaiting::new(q.clone());
                if let Some(qs) = st.queues.get(q) {
                    for (p, level) in qs.levels.iter().enumerate() {
                        o.since_by_priority[p] =
                            level.front().and_then(|m| waiting_since(&m.payload));
                    }
                }
                o
            })
            .collect())
    }
}

#[async_trait]
impl WorkerRegistry for MemoryBackend {
    async fn register_worker(&self, info: &WorkerInfo, ttl: Duration) -> Result<(), BackendError> {
        let now = Instant::now();
        let mut st = self.lock();
        st.registry
            .insert(info.id.clone(), (info.clone(), now + ttl));
        st.seen
            .insert(info.id.clone(), (info.clone(), now + WORKER_SEEN_FOR));
        st.seen.retain(|_, (_, until)| *until > now);
        if st.seen.len() > MAX_WORKERS_SEEN {
            // forget those seen least recently
            let mut by_age: Vec<(Instant, String)> = st
                .seen
                .iter()
                .map(|(id, (_, t))| (*t, id.clone()))
                .collect();
            by_age.sort();
            let excess = by_age.len() - MAX_WORKERS_SEEN;
            for (_, id) in by_age.into_iter().take(excess) {
                st.seen.remove(&id);
            }
        }
        Ok(())
    }

    async fn workers(&self) -> Result<Vec<WorkerInfo>, BackendError> {
        let now = Instant::now();
        let mut st = self.lock();
        st.registry.retain(|_, (_, exp)| *exp > now);
        let mut out: Vec<WorkerInfo> = st.registry.values().map(|(i, _)| i.clone()).collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn workers_seen(&self) -> Result<Vec<WorkerInfo>, BackendError> {
        let now = Instant::now();
        let mut st = self.lock();
        st.seen.retain(|_, (_, until)| *until > now);
        let mut out: Vec<WorkerInfo> = st.seen.values().map(|(i, _)| i.clone()).collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

#[async_trait]
impl EventLog for MemoryBackend {
    async fn emit(&self, events: &[Event]) -> Result<(), BackendError> {
        let mut st = self.lock();
        for e in events {
            st.event_seq += 1;
            let n = st.event_seq;
            st.events.push_back((n, e.clone()));
        }
        while st.events.len() > EVENT_CAP {
            st.events.pop_front();
        }
        Ok(())
    }

    async fn events(
        &self,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<(String, Event)>, BackendError> {
        let after = event_cursor(after, 0)?;
        Ok(self
            .lock()
            .events
            .iter()
            .filter(|(n, _)| *n > after)
            .take(count)
            .map(|(n, e)| (n.to_string(), e.clone()))
            .collect())
    }

    async fn events_before(
        &self,
        before: Option<&str>,
        count: usize,
    ) -> Result<Vec<(String, Event)>, BackendError> {
        let before = event_cursor(before, u64::MAX)?;
        Ok(self
            .lock()
            .events
            .iter()
            .rev()
            .filter(|(n, _)| *n < before)
            .take(count)
            .map(|(n, e)| (n.to_string(), e.clone()))
            .collect())
    }
}

#[async_trait]
impl ControlBus for MemoryBackend {
    async fn broadcast(&self, request: &Request) -> Result<(), BackendError> {
        let mut st = self.lock();
        st.subscribers_control_send(request);
        Ok(())
    }

    async fn subscribe_control(&self) -> Result<mpsc::Receiver<Request>, BackendError> {
        let (tx, rx) = mpsc::channel(256);
        self.lock().control_subscribers.push(tx);
        Ok(rx)
    }

    async fn reply(&self, reply: &Reply, ttl: Duration) -> Result<(), BackendError> {
        {
            let mut st = self.lock();
            let now = Instant::now();
            st.replies.retain(|_, (_, exp)| *exp > now);
            let entry = st
                .replies
                .entry(reply.request_id.clone())
                .or_insert_with(|| (Vec::new(), now + ttl));
            entry.0.push(reply.clone());
        }
        self.shared.replies_ready.notify_waiters();
        Ok(())
    }

    async fn collect_replies(
        &self,
        request_id: &str,
        expected: usize,
        timeout: Duration,
    ) -> Result<Vec<Reply>, BackendError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.replies_ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let have = self
                .lock()
                .replies
                .get(request_id)
                .map_or(0, |(r, _)| r.len());
            if have >= expected && expected > 0 {
                break;
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        Ok(self
            .lock()
            .replies
            .remove(request_id)
            .map(|(r, _)| r)
            .unwrap_or_default())
    }
}

#[async_trait]
impl RateLimits for MemoryBackend {
    async fn set_rate_limit(
        &self,
        task: &str,
        rate: Option<RateLimit>,
    ) -> Result<(), BackendError> {
        let mut st = self.lock();
        match rate {
            Some(r) => st.rate_limits.insert(task.to_string(), r),
            None => st.rate_limits.remove(task),
        };
        Ok(())
    }

    async fn rate_limits(&self) -> Result<Vec<(String, RateLimit)>, BackendError> {
        let mut v: Vec<_> = self
            .lock()
            .rate_limits
            .iter()
            .map(|(k, r)| (k.clone(), *r))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(v)
    }

    async fn acquire_rate(&self, task: &str, rate: RateLimit) -> Result<Duration, BackendError> {
        let now = now_ms();
        let interval = rate.interval().as_millis().max(1) as u64;
        let mut st = self.lock();
        let tat = st.rate_tat.get(task).copied().unwrap_or(0);
        if tat > now {
            return Ok(Duration::from_millis(tat - now));
        }
        st.rate_tat
            .insert(task.to_string(), tat.max(now) + interval);
        Ok(Duration::ZERO)
    }
}

#[async_trait]
impl ResultBackend for MemoryBackend {
    async fn store(&self, writes: &[ResultWrite]) -> Result<Vec<WriteOutcome>, BackendError> {
        let mut ready = false;
        let out = {
            let mut st = self.lock();
            let now = Instant::now();
            st.sweep_results(now);
            writes
                .iter()
                .map(|w| {
                    let existing = st
                        .results
                        .get(&w.meta.task_id)
                        .filter(|(_, exp)| *exp > now)
                        .map(|(m, _)| m);
                    if !accepts(existing, &w.meta) {
                        return WriteOutcome::Refused;
                    }
                    ready |= w.meta.state.is_ready();
                    st.results
                        .insert(w.meta.task_id.clone(), (w.meta.clone(), now + w.ttl));
                    WriteOutcome::Stored
                })
                .collect()
        };
        if ready {
            self.shared.results_ready.notify_waiters();
        }
        Ok(out)
    }

    async fn get(&self, id: &str) -> Result<Option<TaskMeta>, BackendError> {
        let now = Instant::now();
        Ok(self
            .lock()
            .results
            .get(id)
            .filter(|(_, exp)| *exp > now)
            .map(|(m, _)| m.clone()))
    }

    async fn wait(&self, id: &str, timeout: Duration) -> Result<Option<TaskMeta>, BackendError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.results_ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let current = self.get(id).await?;
            if current.as_ref().is_some_and(|m| m.state.is_ready()) {
                return Ok(current);
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => return Ok(current),
            }
        }
    }

    async fn forget(&self, id: &str) -> Result<(), BackendError> {
        self.lock().results.remove(id);
        Ok(())
    }
}

#[async_trait]
impl TaskHistory for MemoryBackend {
    /// Ordered by each record's `date_done`, newest first.
    async fn task_history(
        &self,
        cursor: Option<&str>,
        count: usize,
    ) -> Result<HistoryPage, BackendError> {
        let cursor = cursor.map(HistoryCursor::parse).transpose()?;
        let now = Instant::now();
        let mut tasks: Vec<TaskMeta> = self
            .lock()
            .results
            .values()
            .filter(|(m, exp)| {
                *exp > now
                    && cursor
                        .as_ref()
                        .is_none_or(|c| c.is_before(m.date_done, &m.task_id))
            })
            .map(|(m, _)| m.clone())
            .collect();
        tasks.sort_by(|a, b| (b.date_done, &b.task_id).cmp(&(a.date_done, &a.task_id)));
        let more = tasks.len() > count;
        tasks.truncate(count);
        let next = match tasks.last() {
            Some(last) if more => Some(
                HistoryCursor {
                    score: last.date_done,
                    id: last.task_id.clone(),
                }
                .encode(),
            ),
            _ => None,
        };
        Ok(HistoryPage::new(tasks, next))
    }
}

/// An event cursor of the memory backend (the event's number), or `default` without one.
fn event_cursor(cursor: Option<&str>, default: u64) -> Result<u64, BackendError> {
    match cursor {
        None => Ok(default),
        Some(c) => c
            .parse()
            .map_err(|_| BackendError::backend(format!("invalid event cursor {c:?}"))),
    }
}
