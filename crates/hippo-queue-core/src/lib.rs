//! # hippo-queue-core
//!
//! The task model, routing, worker runtime and in-memory backend of hippo-queue: a
//! task queue with Celery's feature set (queues with routing keys and priorities,
//! `acks_late`, retries with backoff, soft and hard time limits, revocation, results
//! with expiry and compression) for Rust services.
//!
//! ```
//! use std::time::Duration;
//! use hippo_queue_core::{App, Task, TaskContext, TaskError, TaskOptions};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Resize { path: String, width: u32 }
//!
//! struct ResizeImage;
//!
//! impl Task for ResizeImage {
//!     const NAME: &'static str = "images.resize";
//!     type Args = Resize;
//!     type Output = String;
//!     fn options() -> TaskOptions {
//!         TaskOptions::new()
//!             .max_retries(5)
//!             .retry_backoff(Duration::from_secs(1))
//!             .autoretry_for_kind("io")
//!             .soft_time_limit(Duration::from_secs(30))
//!             .time_limit(Duration::from_secs(60))
//!     }
//!     async fn run(&self, _ctx: &TaskContext, a: Resize) -> Result<String, TaskError> {
//!         Ok(format!("{}@{}w", a.path, a.width))
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::Error> {
//! let app = App::in_memory();
//! app.register(ResizeImage);
//! let worker = app.worker().start().await?;
//! let res = app.delay::<ResizeImage>(Resize { path: "cat.png".into(), width: 640 }).await?;
//! assert_eq!(res.get(Duration::from_secs(5)).await?, "cat.png@640w");
//! worker.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The modules, one concept each:
//! - [`task`]: the [`Task`] trait and [`TaskError`];
//! - [`options`]: [`TaskOptions`] and per-call [`SendOptions`];
//! - [`routing`]: queues, topic routing keys, task routes, fetch order;
//! - [`message`] and [`codec`]: the envelope and its wire format;
//! - [`retry`]: backoff delays;
//! - [`backend`]: the [`Broker`](backend::Broker) and
//!   [`ResultBackend`](backend::ResultBackend) traits and the in-memory backend;
//! - [`result`]: stored records and [`AsyncResult`];
//! - [`events`]: task and worker events, the worker registry record;
//! - [`worker`]: the worker runtime;
//! - [`control`]: remote inspection and control of workers;
//! - [`beat`]: the periodic-task scheduler;
//! - [`config`]: configuration, environment variables and presets;
//! - [`testing`]: eager mode and helpers for tests;
//! - `conformance` (feature `conformance`): the suite every backend passes.

#![warn(missing_docs)]

#[macro_use]
mod forward;

mod app;
pub mod backend;
pub mod beat;
pub mod codec;
pub mod config;
mod context;
pub mod control;
pub mod defaults;
mod error;
pub mod events;
pub mod message;
pub mod options;
mod registry;
pub mod result;
pub mod retry;
pub mod routing;
mod state;
pub mod task;
pub mod testing;
pub mod time;
pub mod worker;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use app::{App, AppBuilder, DEFAULT_REVOCATION_TTL};
pub use context::TaskContext;
pub use error::{BackendError, BackendErrorKind, Error, Result};
pub use options::{Compression, SendOptions, TaskOptions};
pub use result::{AsyncResult, TaskMeta};
pub use routing::{Queue, Router};
pub use state::{TaskState, UnknownState};
pub use task::{Task, TaskError, TaskFailure};
pub use worker::{Pool, WorkerBuilder, WorkerHandle};
