//! The core of a broker: moving messages between producers and workers, leases,
//! heartbeats and the recovery of dead workers' messages, and the records they carry.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::BackendError;

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
    /// A reference to this delivery for [`Messages::start`], [`Messages::settle`] and
    /// [`Messages::release`].
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
///
/// Not `#[non_exhaustive]`: every backend must carry out every action, so a new one
/// is meant to break the backends that do not know it yet.
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
#[non_exhaustive]
pub enum SettleOutcome {
    /// Applied.
    Done,
    /// Refused: the lease is gone (recovered and possibly handed to another worker).
    Fenced,
}

/// The answer to [`Messages::heartbeat`].
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
    /// Accepted, taking the name over from another incarnation whose deadline had
    /// passed: what that one leased under the name must be recovered
    /// ([`Messages::recover_worker`]) before this worker fetches again.
    TakenOver,
}

/// A message moved by [`Messages::recover`].
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
    /// Where the message was leased: what [`Messages::losses_recorded`] takes.
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
#[non_exhaustive]
pub enum RecoveryOutcome {
    /// Put back in its queue (it had not started, or may be redelivered).
    Requeued,
    /// Dead-lettered because it was running when its worker died and may not be
    /// redelivered: record FAILURE (worker lost).
    WorkerLost,
    /// Dead-lettered because it was delivered too many times: record FAILURE.
    TooManyDeliveries,
}

/// Moves messages between producers and workers: the capability every broker has.
///
/// Implementations must make every method that changes a message's state atomic per
/// message, and must keep the semantics the conformance suite checks.
#[async_trait]
pub trait Messages: Send + Sync + 'static {
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
    /// every worker gets a full `ttl` to beat again before [`Messages::recover`]
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
    /// as if it had died. Fenced by `incarnation`: when another process holds the name
    /// now, nothing is removed or recovered (what is leased under the name is its).
    async fn unregister(
        &self,
        worker: &str,
        incarnation: &str,
    ) -> Result<Vec<Recovered>, BackendError>;

    /// Recovers the messages of dead workers (see the module docs), in bounded batches.
    /// Messages delivered `max_deliveries` times are dead-lettered instead of requeued.
    ///
    /// Dead-lettered messages are returned until [`Messages::losses_recorded`] says
    /// their FAILURE records are written: a backend that outlives the recovering
    /// process returns them again from a later call (after a delay, so that the
    /// recoverer has time to write them), so that a recoverer dying between the move
    /// and the write leaves no task without a final state.
    async fn recover(&self, max_deliveries: u32) -> Result<Vec<Recovered>, BackendError>;

    /// Tells the backend that the FAILURE records of these dead-lettered messages
    /// (returned by [`Messages::recover`], [`Messages::recover_worker`] or
    /// [`Messages::unregister`]) are written.
    async fn losses_recorded(&self, losses: &[DeliveryRef]) -> Result<(), BackendError>;
}
