//! # hippo-queue-redis
//!
//! The Redis broker and result backend of hippo-queue: every
//! [`Broker`](hippo_queue_core::backend::Broker) and
//! [`ResultBackend`](hippo_queue_core::backend::ResultBackend) operation on Redis,
//! through deadpool-redis.
//!
//! - Every state change of a message is one Lua script working on a bounded batch and
//!   declaring every key it touches; a queue's keys share the hash tag `{queue}`.
//! - Messages are leased to workers with a fencing token; a worker that stops beating
//!   is recovered by the others (never by how long a task runs).
//! - Delays (countdown, eta, retry backoff) wait in a sorted set and are moved to their
//!   queue by the fetch script, at most 1000 per call.
//! - Results are fenced, expire after `result_expires`, and wake waiters through
//!   pub/sub.
//!
//! ```no_run
//! use hippo_queue_core::App;
//! use hippo_queue_redis::{RedisBackend, RedisConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // The guide's layout: broker on db 1, results on db 2.
//! let redis = RedisBackend::connect(
//!     RedisConfig::new("redis://localhost:6379/1").results_url("redis://localhost:6379/2"),
//! )
//! .await?;
//! let app = App::builder().broker(redis.clone()).backend(redis).build();
//! let worker = app.worker().start().await?;
//! # worker.shutdown().await; Ok(()) }
//! ```
//!
//! The key layout is documented in `docs/redis-layout.md`.

#![warn(missing_docs)]

mod backend;
mod beat;
mod calls;
mod clock;
mod config;
mod conn;
mod history;
mod keys;
mod listener;
mod record;
mod results;
mod retry;
mod scripts;
mod server_info;
#[cfg(feature = "test-server")]
pub mod test_server;
mod values;

pub use backend::RedisBackend;
pub use config::RedisConfig;
pub use conn::ConnectError;
pub use server_info::ServerReport;
