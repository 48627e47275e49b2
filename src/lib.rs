//! # hippo-queue
//!
//! A task queue for Rust services with Celery's feature set: queues with routing keys
//! and priorities, `acks_late`, retries with backoff, soft and hard time limits,
//! revocation, and a result backend with expiry and compression. It runs embedded in
//! your tokio runtime on an in-memory backend, or across processes on Redis.
//!
//! This crate re-exports [`hippo_queue_core`]; add it with `cargo add hippo-queue`.
//!
//! ```
//! use std::time::Duration;
//! use hippo_queue::{App, Task, TaskContext, TaskError};
//!
//! struct Hello;
//!
//! impl Task for Hello {
//!     const NAME: &'static str = "hello";
//!     type Args = String;
//!     type Output = String;
//!     async fn run(&self, _: &TaskContext, who: String) -> Result<String, TaskError> {
//!         Ok(format!("hello, {who}"))
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), hippo_queue::Error> {
//! let app = App::in_memory();
//! app.register(Hello);
//! let worker = app.worker().start().await?;
//! let result = app.delay::<Hello>("world".into()).await?;
//! assert_eq!(result.get(Duration::from_secs(5)).await?, "hello, world");
//! worker.shutdown().await;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub use async_trait::async_trait;
pub use hippo_queue_core::*;

/// The Redis broker and result backend (feature `redis`, on by default).
#[cfg(feature = "redis")]
pub use hippo_queue_redis as redis;
