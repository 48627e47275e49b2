//! # hippo-memory-tasks
//!
//! HippocampAI's background memory tasks on hippo-queue: deduplication,
//! consolidation, health checks, summarisation, compression, expiration, embedding
//! migration and procedural-rule consolidation, with the guide's names, queues and
//! routing keys, a beat schedule from the guide's variables, and a typed client.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use hippo_memory_tasks::model::{Memory, MemoryType};
//! use hippo_memory_tasks::store::{InMemoryStore, MemoryStore};
//! use hippo_memory_tasks::tasks::{DeduplicationArgs, DeduplicationTask, MemoryServices, register_all};
//! use hippo_queue_core::App;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(InMemoryStore::new());
//! for text in ["Alice lives in Lisbon", "alice lives in Lisbon.", "Alice plays the cello"] {
//!     store.put(&Memory::new("alice", text, MemoryType::Fact)).await?;
//! }
//! let app = App::builder().router(hippo_memory_tasks::router()).build();
//! register_all(&app, &MemoryServices::new(store.clone()));
//! // eager mode: run inline, no worker
//! let run = app.apply::<DeduplicationTask>(DeduplicationArgs::new("alice")).await?;
//! let out = run.output.map_err(|f| f.to_string())?;
//! assert_eq!((out.duplicates_found, out.duplicates_merged), (1, 1));
//! assert_eq!(store.count_by_user("alice").await?, 2);
//! # Ok(()) }
//! ```
//!
//! The modules, one concept each:
//! - [`model`]: [`Memory`](model::Memory), its nine types, migration records and
//!   procedural rules;
//! - [`store`]: the [`MemoryStore`](store::MemoryStore) trait, in memory and on Redis;
//! - [`embed`]: the [`Embedder`](embed::Embedder) trait, the offline
//!   [`HashEmbedder`](embed::HashEmbedder), and (feature `semantic`, on by default)
//!   a sentence-transformers BERT model run in process;
//! - [`llm`]: the optional [`Llm`](llm::Llm) trait (an OpenAI-compatible client with
//!   the `openai` feature);
//! - [`similarity`]: blocked all-pairs cosine search, star groups and union-find;
//! - [`guard`]: the differences (negation, numbers, dates) that keep two similar
//!   memories apart;
//! - [`history`]: what a memory keeps of the memories folded into it;
//! - [`eval`]: the labelled deduplication evaluation set and its score;
//! - [`text`]: the heuristics used without a language model;
//! - [`tasks`]: the eight tasks and the fan-out task;
//! - [`schedule`]: the beat entries from the guide's variables;
//! - [`client`]: the typed client for host applications;
//! - [`api`]: the guide's HTTP API as an axum router (feature `api`) and its typed
//!   HTTP client (feature `api-client`).

#![warn(missing_docs)]

pub mod api;
pub mod client;
pub mod embed;
pub mod eval;
pub mod guard;
pub mod history;
pub mod llm;
pub mod model;
pub mod schedule;
pub mod similarity;
pub mod store;
pub mod tasks;
pub mod text;

/// The guide's four queues (`memory_ops` for `memory.#`, `default`, `background` for
/// `background.#`, `scheduled` for `scheduled.#`), which the tasks are routed to.
pub fn router() -> hippo_queue_core::Router {
    hippo_queue_core::Router::guide_preset()
}
