//! Looking into queues: lengths, dead letters, scheduled messages, purge.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::BackendError;
use super::messages::Delivery;
use crate::codec::Codec;
use crate::message::Envelope;

/// How many of a queue's oldest dead letters the monitor lists and retries at once.
pub const RETRY_SCAN: usize = 10_000;

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
    /// Paused: nothing is leased from it until it is resumed.
    #[serde(default)]
    pub paused: bool,
}

impl QueueStats {
    /// All waiting messages.
    pub fn waiting(&self) -> u64 {
        self.waiting_by_priority.iter().sum()
    }
}

/// How long the head of each of a queue's waiting lists has waited: the oldest
/// waiting message per priority ([`Inspection::oldest_waiting`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OldestWaiting {
    /// Queue name.
    pub queue: String,
    /// By priority (index = priority): since when (ms since the epoch) the oldest
    /// waiting message has waited ([`waiting_since`]); `None` when none waits, or
    /// when its record cannot be read.
    pub since_by_priority: [Option<u64>; 10],
}

impl OldestWaiting {
    /// An entry of `queue` with nothing waiting.
    pub fn new(queue: impl Into<String>) -> Self {
        OldestWaiting {
            queue: queue.into(),
            since_by_priority: [None; 10],
        }
    }

    /// The age (ms) at `now_ms` of the oldest waiting message of each priority.
    pub fn ages_ms(&self, now_ms: u64) -> [Option<u64>; 10] {
        self.since_by_priority
            .map(|since| since.map(|t| now_ms.saturating_sub(t)))
    }
}

/// Since when an encoded envelope (a message's payload) has waited, ms since the
/// epoch: the later of when it was sent and when it became due (its eta or
/// countdown, or the retry's backoff). `None` if the payload cannot be read.
pub fn waiting_since(payload: &[u8]) -> Option<u64> {
    let env: Envelope = Codec::default().decode(payload).ok()?;
    Some(env.sent_at.max(env.eta.unwrap_or(0)))
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

/// Answers questions about queues (and empties them on request).
#[async_trait]
pub trait Inspection: Send + Sync + 'static {
    /// Lengths of the given queues.
    async fn queue_stats(&self, queues: &[String]) -> Result<Vec<QueueStats>, BackendError>;

    /// Up to `limit` dead-lettered messages of a queue, oldest first.
    async fn dead_letters(
        &self,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BackendError>;

    /// Pauses (`true`) or resumes a queue, durably: while paused no worker leases
    /// its messages (delayed ones still become due). Returns whether the state
    /// changed.
    async fn set_paused(&self, queue: &str, paused: bool) -> Result<bool, BackendError>;

    /// Removes every waiting and delayed message of a queue; returns how many.
    async fn purge(&self, queue: &str) -> Result<u64, BackendError>;

    /// Sends the dead letters of a queue whose task ids are in `ids` back to its
    /// waiting list, their delivery count reset; returns the ids requeued (a message
    /// that cannot be read stays). Their old records are left as they are: a final
    /// record is never replaced, so forget it first for the new run's to be stored.
    async fn requeue_dead_letters(
        &self,
        queue: &str,
        ids: &[String],
    ) -> Result<Vec<String>, BackendError>;

    /// Up to `limit` delayed messages of a queue, soonest first, with their due time.
    async fn scheduled(
        &self,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<(u64, Delivery)>, BackendError>;

    /// For each of the given queues, in order, since when the first message of each
    /// priority's waiting list has waited (one message read per list: the head, which
    /// is the oldest, released and recovered messages going back to the head).
    async fn oldest_waiting(&self, queues: &[String]) -> Result<Vec<OldestWaiting>, BackendError>;
}
