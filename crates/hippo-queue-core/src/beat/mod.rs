//! Periodic tasks (Celery's beat): a [`Beat`] sends each [`Entry`]'s task at every tick
//! of its [`Schedule`], with any number of schedulers running and no tick sent twice.
//!
//! ```
//! use std::time::Duration;
//! use hippo_queue_core::beat::{Beat, Entry, MemoryBeatStore, Missed, Schedule};
//! use hippo_queue_core::{App, Task, TaskContext, TaskError};
//!
//! struct Dedup;
//! impl Task for Dedup {
//!     const NAME: &'static str = "memory.dedup";
//!     type Args = u32; // similarity threshold, percent
//!     type Output = u64;
//!     async fn run(&self, _: &TaskContext, _: u32) -> Result<u64, TaskError> { Ok(0) }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app = App::in_memory();
//! app.register(Dedup);
//! // The guide's `worker --beat`: a worker and a scheduler in one process.
//! let worker = app.worker().start().await?;
//! let beat = Beat::builder(app.clone(), MemoryBeatStore::new())
//!     // "every 24 hours" fires once per 24 hours, at 00:00 UTC
//!     .entry(Entry::new::<Dedup>("dedup-daily", 95, Schedule::every_hours(24))?)
//!     // cron, 5 fields: 03:30 every Monday
//!     .entry(
//!         Entry::new::<Dedup>("dedup-weekly", 90, Schedule::cron("30 3 * * MON")?)?
//!             .missed(Missed::Skip),
//!     )
//!     // a short interval, to see it work
//!     .entry(Entry::new::<Dedup>("dedup-fast", 99, Schedule::every(Duration::from_millis(100)))?)
//!     .build()?;
//! let handle = beat.spawn();
//! tokio::time::sleep(Duration::from_millis(350)).await;
//! let status = beat.status().await?;
//! let fast = status.entries.iter().find(|e| e.name == "dedup-fast").ok_or("entry")?;
//! let last = fast.last_run_ms.ok_or("not run")?;
//! // every tick sent has an id naming the entry and the tick
//! let result = app.result::<u64>(format!("beat:dedup-fast@{last}"));
//! assert_eq!(result.get(Duration::from_secs(5)).await?, 0);
//! handle.shutdown().await;
//! worker.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! ## Many schedulers, one sender
//! Every scheduler of a deployment shares a [`BeatStore`] ([`MemoryBeatStore`] in
//! process; `hippo_queue_redis::RedisBackend` across processes). They compete for a
//! leader lease (default 10 s, renewed every third of it): only the leader sends, and
//! when it dies a follower takes the lease over once it expires. A stopping leader
//! gives the lease up, so a follower takes over at once.
//!
//! The lease alone cannot prevent double sends (a stalled leader may not know its lease
//! expired). What does is the per-tick claim: before sending the tick at instant `t`
//! of an entry, the leader atomically records `t` as the entry's last tick, and only if
//! it is newer than the stored one ([`BeatStore::claim_tick`]). A tick is claimed at
//! most once, by one scheduler, and only its claimer sends it. The same stored tick is
//! how a restarted scheduler knows where it was: it neither repeats a tick nor loses its
//! place.
//!
//! ## What is sent, and the crash policy
//! The task of the tick at `t` has the id `beat:<entry>@<t>` ([`Entry::task_id`]).
//! Claiming and sending are two steps (the store and the broker are separate
//! interfaces), in this order: **claim, then send**. So:
//! - a scheduler that dies between the claim and the send loses that one tick, and only
//!   that one (the next leader continues with the next tick);
//! - a send that fails (broker unreachable) loses that one tick too; it is logged at
//!   error level with the entry and the tick, and not retried;
//! - a tick is never sent twice.
//!
//! Ticks are therefore sent **at most once**; sending before claiming would make them
//! at least once instead, with a duplicate on every such crash.
//!
//! Two more guards keep that true when the store misbehaves:
//! - a claim records its scheduler ([`BeatStore::claim_tick_as`]): when the claim took
//!   effect but its reply was lost (a response timeout), the retry by the same
//!   scheduler gets the tick again and sends it, instead of losing it as "claimed by
//!   another";
//! - before sending, the scheduler sets a sent-marker keyed by the task id
//!   ([`BeatStore::mark_sent`], kept for twice the entry's interval): when a tick's
//!   claim is lost after its send (evicted, or not replicated before a failover), the
//!   next leader finds the marker and does not send the tick again.
//!
//! ## Missed ticks
//! Ticks that come due while no scheduler sends (all stopped, or the leader died and
//! its lease has not expired yet) follow each entry's [`Missed`] policy:
//! - [`Missed::RunOnce`] (default, as Celery): as soon as a scheduler leads again, one
//!   task is sent for all of them, the one of the most recent missed tick; the entry
//!   then continues with its next tick.
//! - [`Missed::Skip`]: nothing is sent for them; the entry next fires at its next tick.
//!   A tick found more than the scheduler's [tolerance](BeatBuilder::tolerance)
//!   (default 1 s) after its instant counts as missed.
//!
//! An entry that has never been sent starts with the first tick after its scheduler
//! started: there is no catch-up for ticks before any scheduler knew it.
//!
//! ## Schedules
//! Cron expressions (5 fields, or 6-7 with seconds) and anchored intervals, at a fixed
//! UTC offset; see [`Schedule`]. Cron expressions that fire in bursts, such as
//! `* */24 * * *` (meant as "every 24 hours", firing every minute of hour 0), are
//! refused unless explicitly allowed.

mod entry;
mod error;
mod plan;
mod schedule;
mod scheduler;
mod status;
mod store;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use entry::{Entry, Missed};
pub use error::BeatError;
pub use schedule::{Schedule, ScheduleError};
pub use scheduler::{
    Beat, BeatBuilder, BeatHandle, DEFAULT_LEASE_TTL, DEFAULT_RESOLUTION, DEFAULT_TOLERANCE,
};
pub use status::{BeatStatus, EntryStatus, LeaderInfo};
pub use store::{BeatStore, MemoryBeatStore};
