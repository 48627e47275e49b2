//! The traits between the task runtime and a storage system: [`Broker`] moves
//! messages, [`ResultBackend`] keeps results. [`memory::MemoryBackend`] implements both
//! in process; `hippo-queue-redis` implements them on Redis.
//!
//! ## The message lifecycle a broker implements
//!
//! ```text
//!  publish ──eta?──▶ delayed ──due──▶ waiting (queue, priority 9..0, FIFO)
//!                                        │ fetch(worker, max)  → lease (token)
//!                                        ▼
//!                                    reserved ──start──▶ started
//!                                        │                  │ settle: ack / retry(→ delayed)
//!                                        │ release           │         dead-letter / requeue
//!                                        ▼                  ▼
//!                                     waiting           (gone, or delayed/dead/waiting)
//! ```
//!
//! Every arrow is one atomic step. A worker that stops heartbeating is dead: a
//! [`Broker::recover`] call requeues its messages that have both `acks_late` and
//! `reject_on_worker_lost` (started or not: such messages need no start mark), requeues
//! its other reserved messages without counting that delivery, and dead-letters its
//! other started messages (the caller then records FAILURE). A message with both flags
//! delivered `max_deliveries` times is dead-lettered instead of requeued.
//!
//! Every delivery carries a fencing token that grows each time the same message is
//! delivered again. A settle whose token is no longer the message's lease is refused
//! ([`SettleOutcome::Fenced`]), and result writes carry the same token (see
//! [`ResultBackend::store`]).

pub mod memory;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::control::{RateLimit, Reply, Request};
pub use crate::error::BackendError;
use crate::events::{Event, WorkerInfo};
use crate::result::TaskMeta;

/// A message to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// Task id.
    pub id: String,
    /// Target queue.
    pub queue: String,
    /// 0-9, higher first.
    pub priority: u8,
    /// Earliest start, ms since the epoch; `None` or past means now.
    pub eta: Option<u64>,
    /// Encoded envelope.
    pub payload: Vec<u8>,
    /// Delivery semantics, needed by recovery.
    pub flags: DeliveryFlags,
}

/// How a message must be treated when its worker is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeliveryFlags {
    /// Acknowledge after completion.
    pub acks_late: bool,
    /// Requeue a started message when its worker is lost (with `acks_late`).
    pub reject_on_worker_lost: bool,
}

impl DeliveryFlags {
    /// Whether a started message of a lost worker goes back to its queue.
    pub fn requeue_when_lost(self) -> bool {
        self.acks_late && self.reject_on_worker_lost
    }
}

/// A message handed to a worker under a lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Task id.
    pub id: String,
    /// Queue it came from.
    pub queue: String,
    /// Priority it waited under.
    pub priority: u8,
    /// Encoded envelope.
    pub payload: Vec<u8>,
    /// Fencing token of this lease.
    pub token: u64,
    /// How many times the message has been delivered, this time included.
    pub deliveries: u32,
    /// Delivery semantics.
    pub flags: DeliveryFlags,
}

impl Delivery {
    /// A reference to this delivery for [`Broker::start`], [`Broker::settle`] and
    /// [`Broker::release`].
    pub fn to_ref(&self) -> DeliveryRef {
        DeliveryRef {
            id: self.id.clone(),
            queue: self.queue.clone(),
            token: self.token,
        }
    }
}

/// Identifies a leased message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeliveryRef {
    /// Task id.
    pub id: String,
    /// Queue.
    pub queue: String,
    /// Fencing token.
    pub token: u64,
}

/// What to do with a leased message.
#[derive(Debug, Clone, PartialEq)]
pub enum Settle {
    /// Done: remove it.
    Ack,
    /// Replace it with a new payload (retry count increased) delivered at `eta`.
    Retry {
        /// New encoded envelope.
        payload: Vec<u8>,
        /// When it is due, ms since the epoch.
        eta: u64,
    },
    /// Move it to the queue's dead-letter list.
    DeadLetter {
        /// Why.
        reason: String,
    },
    /// Put it back at the head of its priority level (shutdown before it could finish).
    Requeue,
}

/// One settle request.
#[derive(Debug, Clone, PartialEq)]
pub struct Settlement {
    /// The leased message.
    pub delivery: DeliveryRef,
    /// What to do.
    pub action: Settle,
}

/// The result of one settle or start request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleOutcome {
    /// Applied.
    Done,
    /// Refused: the lease is gone (recovered and possibly handed to another worker).
    Fenced,
}

/// The answer to [`Broker::heartbeat`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BeatReply {
    /// Accepted; the worker was alive before it.
    Alive,
    /// Accepted, but the worker was not in the heartbeat set: its first beat, or
    /// another worker recovered it meanwhile (its messages are gone, and it must stop
    /// what it runs).
    Unknown,
    /// Refused: another incarnation holds the name and its deadline runs.
    Taken,
}

/// A message moved by [`Broker::recover`].
#[derive(Debug, Clone, PartialEq)]
pub struct Recovered {
    /// Task id.
    pub id: String,
    /// Queue.
    pub queue: String,
    /// The dead worker.
    pub worker: String,
    /// The lease's fencing token.
    pub token: u64,
    /// Encoded envelope.
    pub payload: Vec<u8>,
    /// What recovery did.
    pub outcome: RecoveryOutcome,
}

impl Recovered {
    /// Where the message was leased: what [`Broker::losses_recorded`] takes.
    pub fn delivery_ref(&self) -> DeliveryRef {
        DeliveryRef {
            id: self.id.clone(),
            queue: self.queue.clone(),
            token: self.token,
        }
    }
}

/// What recovery did with a message of a dead worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryOutcome {
    /// Put back in its queue (it had not started, or may be redelivered).
    Requeued,
    /// Dead-lettered because it was running when its worker died and may not be
    /// redelivered: record FAILURE (worker lost).
    WorkerLost,
    /// Dead-lettered because it was delivered too many times: record FAILURE.
    TooManyDeliveries,
}

/// A durable revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Task id.
    pub id: String,
    /// Abort the task if it is running.
    pub terminate: bool,
    /// When the revocation itself is forgotten, ms since the epoch.
    pub until: u64,
}

/// Lengths of one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Queue name.
    pub queue: String,
    /// Waiting messages by priority (index = priority).
    pub waiting_by_priority: [u64; 10],
    /// Delayed (countdown, eta, retry backoff).
    pub delayed: u64,
    /// Leased to workers (reserved or started).
    pub reserved: u64,
    /// Dead-lettered.
    pub dead_letter: u64,
}

impl QueueStats {
    /// All waiting messages.
    pub fn waiting(&self) -> u64 {
        self.waiting_by_priority.iter().sum()
    }
}

/// A dead-lettered message.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Task id.
    pub id: String,
    /// Queue.
    pub queue: String,
    /// Why it was dead-lettered.
    pub reason: String,
    /// Encoded envelope (possibly garbage: that may be why it is here).
    pub payload: Vec<u8>,
}

/// Moves messages between producers and workers.
///
/// Implementations must make every method that changes a message's state atomic per
/// message, and must keep the semantics the conformance suite checks.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Publishes messages; each one is atomic, the batch is one round trip where the
    /// backend allows.
    async fn publish(&self, messages: Vec<Outgoing>) -> Result<(), BackendError>;

    /// Leases up to `max` messages to `worker`, visiting `queues` in the given order
    /// (each queue by priority, FIFO within a priority). Due delayed messages are moved
    /// to their queue first. Waits up to `wait` for a message when none is ready.
    async fn fetch(
        &self,
        worker: &str,
        queues: &[String],
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, BackendError>;

    /// Marks leased messages as started. A `Fenced` answer means the lease is gone and
    /// the task must not run.
    async fn start(
        &self,
        worker: &str,
        deliveries: &[DeliveryRef],
    ) -> Result<Vec<SettleOutcome>, BackendError>;

    /// Settles leased messages (ack, retry, dead-letter, requeue).
    async fn settle(
        &self,
        worker: &str,
        settlements: &[Settlement],
    ) -> Result<Vec<SettleOutcome>, BackendError>;

    /// The broker's clock minus this process's, in milliseconds, as last measured
    /// (zero for a broker in this process). A task's expiry is stated on the broker's
    /// clock: a producer adds this to the expiry it writes, a worker to its own clock
    /// before comparing, so two machines' clocks never decide it.
    fn clock_offset_ms(&self) -> i64 {
        0
    }

    /// Hands reserved, unstarted messages back to the head of their queue.
    async fn release(&self, worker: &str, deliveries: &[DeliveryRef]) -> Result<(), BackendError>;

    /// Records that `worker` is alive for at least `ttl` more, measured on the
    /// backend's own clock (never the worker's: two machines' clocks may disagree).
    /// `interval` is how often the worker beats: when no worker at all could beat for
    /// longer than that (the backend was down, read-only, out of memory or busy),
    /// every worker gets a full `ttl` to beat again before [`Broker::recover`]
    /// declares any of them lost. A backend that keeps track of which queues a worker
    /// leased from re-asserts that record here.
    ///
    /// `incarnation` tells apart two processes started under one name: while one
    /// incarnation's deadline runs, another one's beats are refused
    /// ([`BeatReply::Taken`]), in the same atomic step that would accept them, so two
    /// processes started at the same moment cannot both hold the name.
    async fn heartbeat(
        &self,
        worker: &str,
        incarnation: &str,
        ttl: Duration,
        interval: Duration,
    ) -> Result<BeatReply, BackendError>;

    /// How long the worker name `worker` has left before it is declared lost: `None`
    /// when no worker holds the name, zero when its holder missed its deadline and
    /// was not recovered yet.
    async fn worker_lease(&self, worker: &str) -> Result<Option<Duration>, BackendError>;

    /// Recovers every message leased under the name `worker` as if its holder had
    /// died (see the module docs), keeping the name's heartbeat. A worker calls it
    /// right after its first heartbeat claimed the name, before fetching anything, so
    /// that what it recovers is a dead incarnation's.
    async fn recover_worker(
        &self,
        worker: &str,
        max_deliveries: u32,
    ) -> Result<Vec<Recovered>, BackendError>;

    /// The messages leased to `worker` in these queues, as the backend sees them. A
    /// live worker compares them with what it holds: a lease it does not know of
    /// comes from a fetch whose reply was lost.
    async fn leases(
        &self,
        worker: &str,
        queues: &[String],
    ) -> Result<Vec<DeliveryRef>, BackendError>;

    /// Removes a worker that is leaving cleanly; anything it still holds is recovered
    /// as if it had died.
    async fn unregister(&self, worker: &str) -> Result<Vec<Recovered>, BackendError>;

    /// Recovers the messages of dead workers (see the module docs), in bounded batches.
    /// Messages delivered `max_deliveries` times are dead-lettered instead of requeued.
    ///
    /// Dead-lettered messages are returned until [`Broker::losses_recorded`] says
    /// their FAILURE records are written: a backend that outlives the recovering
    /// process returns them again from a later call (after a delay, so that the
    /// recoverer has time to write them), so that a recoverer dying between the move
    /// and the write leaves no task without a final state.
    async fn recover(&self, max_deliveries: u32) -> Result<Vec<Recovered>, BackendError>;

    /// Tells the backend that the FAILURE records of these dead-lettered messages
    /// (returned by [`Broker::recover`], [`Broker::recover_worker`] or
    /// [`Broker::unregister`]) are written.
    async fn losses_recorded(&self, losses: &[DeliveryRef]) -> Result<(), BackendError>;

    /// Records a revocation durably and tells running workers.
    async fn revoke(&self, revocation: Revocation) -> Result<(), BackendError>;

    /// The revocations in force (read once, when a worker starts).
    async fn revocations(&self) -> Result<Vec<Revocation>, BackendError>;

    /// Revocations recorded after `cursor`, at most `max`, with the cursor to pass
    /// next time; `None` returns none and the cursor of the latest. Workers read
    /// revocations this way on every heartbeat, so each read costs what is new, not
    /// the whole set.
    async fn revocations_after(
        &self,
        cursor: Option<&str>,
        max: usize,
    ) -> Result<(Vec<Revocation>, String), BackendError>;

    /// A live feed of new revocations.
    async fn subscribe_revocations(&self) -> Result<mpsc::Receiver<Revocation>, BackendError>;

    /// Lengths of the given queues.
    async fn queue_stats(&self, queues: &[String]) -> Result<Vec<QueueStats>, BackendError>;

    /// Up to `limit` dead-lettered messages of a queue, oldest first.
    async fn dead_letters(
        &self,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BackendError>;

    /// Removes every waiting and delayed message of a queue; returns how many.
    async fn purge(&self, queue: &str) -> Result<u64, BackendError>;

    /// Records a worker in the registry for `ttl` (renewed on every heartbeat).
    async fn register_worker(&self, info: &WorkerInfo, ttl: Duration) -> Result<(), BackendError>;

    /// The workers whose registry records have not expired.
    async fn workers(&self) -> Result<Vec<WorkerInfo>, BackendError>;

    /// Appends events to the capped event log.
    async fn emit(&self, events: &[Event]) -> Result<(), BackendError>;

    /// Up to `count` events after the cursor `after` (from the oldest kept when
    /// `None`), each with its cursor.
    async fn events(
        &self,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<(String, Event)>, BackendError>;

    /// Up to `limit` delayed messages of a queue, soonest first, with their due time.
    async fn scheduled(
        &self,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<(u64, Delivery)>, BackendError>;

    /// Sends a control request to every worker.
    async fn broadcast(&self, request: &Request) -> Result<(), BackendError>;

    /// A live feed of control requests.
    async fn subscribe_control(&self) -> Result<mpsc::Receiver<Request>, BackendError>;

    /// Answers a request; the reply expires after `ttl` if nobody collects it.
    async fn reply(&self, reply: &Reply, ttl: Duration) -> Result<(), BackendError>;

    /// Gathers replies to a request until `expected` arrived or `timeout` passed, then
    /// deletes what is left.
    async fn collect_replies(
        &self,
        request_id: &str,
        expected: usize,
        timeout: Duration,
    ) -> Result<Vec<Reply>, BackendError>;

    /// Stores (or clears) a task's rate limit.
    async fn set_rate_limit(&self, task: &str, rate: Option<RateLimit>)
    -> Result<(), BackendError>;

    /// The rate limits in force, by task name.
    async fn rate_limits(&self) -> Result<Vec<(String, RateLimit)>, BackendError>;

    /// Takes a start slot of a rate-limited task (shared by all workers): returns zero
    /// when the task may start now, or how long to wait before asking again.
    async fn acquire_rate(&self, task: &str, rate: RateLimit) -> Result<Duration, BackendError>;
}

/// Why a result write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Stored.
    Stored,
    /// Refused: the stored record is final, or was written under a newer lease.
    Refused,
}

/// One result write.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultWrite {
    /// The record.
    pub meta: TaskMeta,
    /// How long to keep it.
    pub ttl: Duration,
    /// Compress above the codec's threshold.
    pub compress: bool,
    /// The sender is waiting on a [`ResultWatch`]: announce the record when it is
    /// final.
    pub announce: bool,
}

/// Interest in one task's result, registered before its message is sent (see
/// [`ResultBackend::watch`]).
#[async_trait]
pub trait ResultWatch: Send {
    /// Waits until the task is ready or `timeout` passes, and returns the record as it
    /// then is.
    async fn wait(&mut self, timeout: Duration) -> Result<Option<TaskMeta>, BackendError>;
}

/// Keeps task states and results.
#[async_trait]
pub trait ResultBackend: Send + Sync + 'static {
    /// Stores records. Each write is accepted or refused by the fencing rule of
    /// [`crate::result::accepts`]: a final record is never replaced, and a write under
    /// an older lease than the stored one is refused. Ready records wake waiters.
    async fn store(&self, writes: &[ResultWrite]) -> Result<Vec<WriteOutcome>, BackendError>;

    /// The record of a task, if any (expired records are gone).
    async fn get(&self, id: &str) -> Result<Option<TaskMeta>, BackendError>;

    /// Waits until the task is ready or `timeout` passes, woken by the write (no
    /// polling); returns the record as it then is.
    async fn wait(&self, id: &str, timeout: Duration) -> Result<Option<TaskMeta>, BackendError>;

    /// Starts watching a task's result before its message is sent, for
    /// [`App::call`](crate::App::call). `Some` promises that the final record of a
    /// message sent with `announce_result` (see [`ResultWrite::announce`]) reaches the
    /// watch, so its wait needs no look-up; `None` (the default) means the caller sends
    /// normally and waits with [`ResultBackend::wait`].
    fn watch(&self, id: &str) -> Option<Box<dyn ResultWatch>> {
        let _ = id;
        None
    }

    /// Deletes the record.
    async fn forget(&self, id: &str) -> Result<(), BackendError>;
}
