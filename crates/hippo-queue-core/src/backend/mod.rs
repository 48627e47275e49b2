//! The contract between the task runtime and a storage system, for backend authors.
//!
//! A broker is a set of capabilities, one trait each, with the records it carries:
//!
//! | trait | what it does | records |
//! | --- | --- | --- |
//! | [`Messages`] | publish, fetch and lease, start, settle, release; heartbeats and the recovery of dead workers | [`Outgoing`], [`Delivery`], [`Settlement`], [`Recovered`] |
//! | [`Revocations`] | durable revocations and their live feed | [`Revocation`] |
//! | [`WorkerRegistry`] | who is running | [`WorkerInfo`] |
//! | [`Inspection`] | queue lengths, dead letters, scheduled messages, purge | [`QueueStats`], [`DeadLetter`] |
//! | [`EventLog`] | the capped event log monitors read | [`Event`] |
//! | [`ControlBus`] | remote control requests and replies | [`Request`], [`Reply`] |
//! | [`RateLimits`] | task start rates shared by all workers | [`RateLimit`] |
//! | [`TaskHistory`] | stored task records, newest first, for monitors | [`HistoryPage`] |
//!
//! [`Broker`] is all of them together, implemented for every type that has them: it
//! is what an [`App`](crate::App) runs on. [`ResultBackend`] keeps results.
//! [`memory::MemoryBackend`] implements everything in process; `hippo-queue-redis` on
//! Redis. Each trait is implemented for `Arc<T>` and `Box<T>` of an implementation, so
//! a shared backend is passed as it is:
//!
//! ```
//! use std::sync::Arc;
//! use hippo_queue_core::App;
//! use hippo_queue_core::backend::memory::MemoryBackend;
//! use hippo_queue_core::backend::prelude::*;
//!
//! # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::BackendError> {
//! let shared = Arc::new(MemoryBackend::new());
//! let app = App::builder().broker(shared.clone()).backend(shared.clone()).build();
//! // the capability traits (in the prelude) are called on the concrete backend
//! let stats = shared.queue_stats(&["default".to_string()]).await?;
//! assert_eq!(stats[0].waiting(), 0);
//! # let _ = app; Ok(()) }
//! ```
//!
//! The conformance suite
//! (`hippo_queue_core::conformance`, feature `conformance`) checks the semantics below.
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
//! [`Messages::recover`] call requeues its messages that have both `acks_late` and
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

pub mod control_bus;
pub mod event_log;
pub mod inspection;
pub mod messages;
pub mod rate_limits;
pub mod registry;
pub mod results;
pub mod revocations;
pub mod task_history;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

pub use control_bus::ControlBus;
pub use control_bus::{Reply, Request};
pub use event_log::EventLog;
pub use inspection::{DeadLetter, Inspection, OldestWaiting, QueueStats};
pub use messages::{
    BeatReply, Delivery, DeliveryFlags, DeliveryRef, Messages, Outgoing, Recovered,
    RecoveryOutcome, Settle, SettleOutcome, Settlement,
};
pub use rate_limits::RateLimit;
pub use rate_limits::RateLimits;
pub use registry::{MAX_WORKERS_SEEN, WORKER_SEEN_FOR, WorkerRegistry};
pub use results::{ResultBackend, ResultWatch, ResultWrite, WriteOutcome};
pub use revocations::{Revocation, Revocations};
pub use task_history::{HistoryPage, TaskHistory};

pub use crate::error::BackendError;
use crate::events::{Event, WorkerInfo};
use crate::result::TaskMeta;

/// Every capability trait, for calling their methods on a concrete backend
/// (`use hippo_queue_core::backend::prelude::*;`). Methods of an `Arc<dyn Broker>` need
/// no import.
pub mod prelude {
    pub use super::{
        Broker, ControlBus, EventLog, Inspection, Messages, RateLimits, ResultBackend, Revocations,
        TaskHistory, WorkerRegistry,
    };
}

/// Everything an [`App`](crate::App) needs from a broker: every capability at once.
/// Implemented for each type that implements them all; a backend never implements it
/// by hand.
pub trait Broker:
    Messages + Revocations + WorkerRegistry + Inspection + EventLog + ControlBus + RateLimits
{
}

impl<T> Broker for T where
    T: Messages
        + Revocations
        + WorkerRegistry
        + Inspection
        + EventLog
        + ControlBus
        + RateLimits
        + ?Sized
{
}

forward!(Messages {
    async fn publish(&self, messages: Vec<Outgoing>) -> Result<(), BackendError>;
    async fn fetch(&self, worker: &str, queues: &[String], max: usize, wait: Duration) -> Result<Vec<Delivery>, BackendError>;
    async fn start(&self, worker: &str, deliveries: &[DeliveryRef]) -> Result<Vec<SettleOutcome>, BackendError>;
    async fn settle(&self, worker: &str, settlements: &[Settlement]) -> Result<Vec<SettleOutcome>, BackendError>;
    async fn release(&self, worker: &str, deliveries: &[DeliveryRef]) -> Result<(), BackendError>;
    async fn heartbeat(&self, worker: &str, incarnation: &str, ttl: Duration, interval: Duration) -> Result<BeatReply, BackendError>;
    async fn worker_lease(&self, worker: &str) -> Result<Option<Duration>, BackendError>;
    async fn recover_worker(&self, worker: &str, max_deliveries: u32) -> Result<Vec<Recovered>, BackendError>;
    async fn leases(&self, worker: &str, queues: &[String]) -> Result<Vec<DeliveryRef>, BackendError>;
    async fn unregister(&self, worker: &str, incarnation: &str) -> Result<Vec<Recovered>, BackendError>;
    async fn recover(&self, max_deliveries: u32) -> Result<Vec<Recovered>, BackendError>;
    async fn losses_recorded(&self, losses: &[DeliveryRef]) -> Result<(), BackendError>;
    fn clock_offset_ms(&self) -> i64;
});

forward!(Revocations {
    async fn revoke(&self, revocation: Revocation) -> Result<(), BackendError>;
    async fn revocations(&self) -> Result<Vec<Revocation>, BackendError>;
    async fn revocations_after(&self, cursor: Option<&str>, max: usize) -> Result<(Vec<Revocation>, String), BackendError>;
    async fn subscribe_revocations(&self) -> Result<mpsc::Receiver<Revocation>, BackendError>;
});

forward!(WorkerRegistry {
    async fn register_worker(&self, info: &WorkerInfo, ttl: Duration) -> Result<(), BackendError>;
    async fn workers(&self) -> Result<Vec<WorkerInfo>, BackendError>;
    async fn workers_seen(&self) -> Result<Vec<WorkerInfo>, BackendError>;
});

forward!(Inspection {
    async fn queue_stats(&self, queues: &[String]) -> Result<Vec<QueueStats>, BackendError>;
    async fn dead_letters(&self, queue: &str, limit: usize) -> Result<Vec<DeadLetter>, BackendError>;
    async fn set_paused(&self, queue: &str, paused: bool) -> Result<bool, BackendError>;
    async fn purge(&self, queue: &str) -> Result<u64, BackendError>;
    async fn requeue_dead_letters(&self, queue: &str, ids: &[String]) -> Result<Vec<String>, BackendError>;
    async fn scheduled(&self, queue: &str, limit: usize) -> Result<Vec<(u64, Delivery)>, BackendError>;
    async fn oldest_waiting(&self, queues: &[String]) -> Result<Vec<OldestWaiting>, BackendError>;
});

forward!(EventLog {
    async fn emit(&self, events: &[Event]) -> Result<(), BackendError>;
    async fn events(&self, after: Option<&str>, count: usize) -> Result<Vec<(String, Event)>, BackendError>;
    async fn events_before(&self, before: Option<&str>, count: usize) -> Result<Vec<(String, Event)>, BackendError>;
});

forward!(ControlBus {
    async fn broadcast(&self, request: &Request) -> Result<(), BackendError>;
    async fn subscribe_control(&self) -> Result<mpsc::Receiver<Request>, BackendError>;
    async fn reply(&self, reply: &Reply, ttl: Duration) -> Result<(), BackendError>;
    async fn collect_replies(&self, request_id: &str, expected: usize, timeout: Duration) -> Result<Vec<Reply>, BackendError>;
});

forward!(RateLimits {
    async fn set_rate_limit(&self, task: &str, rate: Option<RateLimit>) -> Result<(), BackendError>;
    async fn rate_limits(&self) -> Result<Vec<(String, RateLimit)>, BackendError>;
    async fn acquire_rate(&self, task: &str, rate: RateLimit) -> Result<Duration, BackendError>;
});

forward!(ResultBackend {
    async fn store(&self, writes: &[ResultWrite]) -> Result<Vec<WriteOutcome>, BackendError>;
    async fn get(&self, id: &str) -> Result<Option<TaskMeta>, BackendError>;
    async fn wait(&self, id: &str, timeout: Duration) -> Result<Option<TaskMeta>, BackendError>;
    async fn forget(&self, id: &str) -> Result<(), BackendError>;
    fn watch(&self, id: &str) -> Option<Box<dyn ResultWatch>>;
});

forward!(TaskHistory {
    async fn task_history(&self, cursor: Option<&str>, count: usize) -> Result<HistoryPage, BackendError>;
});
