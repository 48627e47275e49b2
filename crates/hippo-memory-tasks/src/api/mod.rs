//! The guide's HTTP API: submit the memory tasks, follow and revoke them, run
//! embedding migrations, consolidate procedural rules, and add, list and delete
//! memories.
//!
//! With the `api` feature, `router` is an axum `Router` a host application serves or
//! mounts, over an `ApiState` (the queue, the memory store, where submitted ids are
//! recorded); `openapi` is its OpenAPI document, derived from the handlers and the
//! [`wire`] types. With the `api-client` feature, `client::ApiClient` is its typed HTTP
//! client.
//!
//! | method and path | what |
//! | --- | --- |
//! | `POST /api/v1/tasks/{deduplication,consolidation,health-check,summarization,compression,expiration}` | submit a task: 202 [`Submitted`](wire::Submitted) |
//! | `GET /api/v1/tasks/{task_id}/status` | [`TaskStatus`](crate::client::TaskStatus) |
//! | `DELETE /api/v1/tasks/{task_id}` | revoke (terminate when running) |
//! | `POST /v1/admin/embeddings/migrate` | start a migration |
//! | `GET /v1/admin/embeddings/migration/{id}` | the migration record |
//! | `POST /v1/admin/embeddings/migration/{id}/cancel` | cancel it |
//! | `POST /v1/procedural/consolidate?user_id=...` | consolidate a user's procedural rules |
//! | `POST /v1/procedural/rules`, `GET /v1/procedural/rules?user_id=...` | add, list rules |
//! | `POST /v1/memories`, `GET /v1/memories?user_id=...`, `GET`/`DELETE /v1/memories/{id}?user_id=...` | memories |
//! | `GET /health` | broker, store and workers |
//! | `GET /openapi.json` | the OpenAPI 3.1 document |
//!
//! Errors are JSON, [`{"error": "what is wrong"}`](wire::ErrorBody): 400 for malformed
//! JSON or a `Host` not on the allow-list, 401 without a configured bearer token, 413
//! for a body over the limit, 415 for a body that is not `application/json`, 408 for
//! a body that does not arrive in time, 422 for a missing or invalid field, 404 for an unknown task, user, memory or
//! migration, 409 for a migration that already ended, 503 when Redis or the store
//! cannot be reached.
//!
//! Serving it, with a worker in the same process (no Redis), and calling it:
//!
//! ```
//! # #[cfg(all(feature = "api", feature = "api-client"))]
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use hippo_memory_tasks::api::client::ApiClient;
//! use hippo_memory_tasks::api::wire::{DeduplicationRequest, MemoryRequest};
//! use hippo_memory_tasks::api::{ApiState, router};
//! use hippo_memory_tasks::store::InMemoryStore;
//! use hippo_memory_tasks::tasks::{MemoryServices, register_all};
//! use hippo_queue_core::App;
//!
//! let store = Arc::new(InMemoryStore::new());
//! let app = App::builder().router(hippo_memory_tasks::router()).build();
//! register_all(&app, &MemoryServices::new(store.clone()));
//! let worker = app.worker().start().await?;
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let url = format!("http://{}", listener.local_addr()?);
//! let api = router(ApiState::builder(app, store).build());
//! tokio::spawn(async move { axum::serve(listener, api).await });
//!
//! let client = ApiClient::new(&url)?;
//! client.add_memory(&MemoryRequest::new("alice", "Alice lives in Lisbon")).await?;
//! client.add_memory(&MemoryRequest::new("alice", "alice lives in Lisbon.")).await?;
//! let submitted = client.deduplication(&DeduplicationRequest::new("alice")).await?;
//! let done = client.follow(submitted.task_id(), Duration::from_secs(10), |_| {}).await?;
//! assert_eq!(done.state, "SUCCESS");
//! assert_eq!(done.result["duplicates_merged"], 1);
//! worker.shutdown().await;
//! # Ok(()) }
//! # #[cfg(not(all(feature = "api", feature = "api-client")))] fn main() {}
//! ```

pub mod wire;

#[cfg(feature = "api-client")]
pub mod client;

#[cfg(feature = "api")]
pub mod access;
#[cfg(feature = "api")]
mod error;
#[cfg(feature = "api")]
mod extract;
#[cfg(feature = "api")]
mod openapi;
#[cfg(feature = "api")]
mod routes;
#[cfg(feature = "api")]
pub mod serve;
#[cfg(feature = "api")]
mod state;
#[cfg(feature = "api")]
pub mod task_log;

#[cfg(feature = "api")]
pub use error::ApiError;
#[cfg(feature = "api")]
pub use openapi::openapi;
#[cfg(feature = "api")]
pub use routes::router;
#[cfg(feature = "api")]
pub use state::{
    ApiState, ApiStateBuilder, DEFAULT_BODY_LIMIT, DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_PAGE,
    DEFAULT_PAGE, DEFAULT_SYNC_WAIT, InvalidToken,
};
