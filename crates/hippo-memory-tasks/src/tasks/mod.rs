//! The eight background tasks of the guide, plus the fan-out task the scheduler uses,
//! as [`hippo_queue_core::Task`]s.
//!
//! | task | name | queue | routing key | soft / hard limit |
//! | --- | --- | --- | --- | --- |
//! | [`DeduplicationTask`] | `deduplication_task` | `memory_ops` | `memory.dedup` | 300 / 600 s |
//! | [`ConsolidationTask`] | `consolidation_task` | `memory_ops` | `memory.consolidate` | 300 / 600 s |
//! | [`HealthCheckTask`] | `health_check_task` | `background` | `background.health` | 120 / 180 s |
//! | [`AutoSummarizationTask`] | `auto_summarization_task` | `background` | `background.summarize` | 300 / 600 s |
//! | [`CompressionTask`] | `compression_task` | `background` | `background.compress` | 300 / 600 s |
//! | [`ExpireMemoriesTask`] | `expire_memories_task` | `scheduled` | `scheduled.expire` | 300 / 600 s |
//! | [`MigrateEmbeddingsTask`] | `migrate_embeddings_task` | `memory_ops` | `memory.migrate` | 3600 / 3900 s |
//! | [`ConsolidateProceduralRulesTask`] | `consolidate_procedural_rules` | `background` | `background.procedural` | 300 / 600 s |
//! | [`FanOutTask`] | `fan_out_task` | `scheduled` | `scheduled.fan_out` | 300 / 600 s |
//!
//! Every task acknowledges late and is requeued when its worker dies (each is safe to
//! run again), retries up to 3 times with exponential backoff (2 s, at most 300 s) on
//! `StoreUnavailable`, `EmbedderUnavailable` and `UserBusy` errors, and rejects
//! arguments a retry cannot fix (unknown user, threshold outside 0..=1, missing
//! migration) with a `TaskError` of kind `InvalidArgument`.
//!
//! ## Nothing a user said is destroyed
//! - Every write a task makes is conditional on the versions of the memories it read
//!   ([`ChangeSet::expect`]): a memory the user edited or deleted meanwhile keeps the
//!   user's version, and the task's change to it is skipped.
//! - Deduplication, consolidation, summarisation and compression hold the user's
//!   maintenance lease, so two never work on one user at once.
//! - What a task folds away stays recoverable: see [`history`](crate::history).
//!
//! Build the app with [`router`](crate::router) (the guide's queues) and register the
//! tasks with [`register_all`].

mod compression;
mod consolidation;
mod dedup;
mod expiration;
mod fanout;
mod health;
mod lease;
mod migration;
mod procedural;
mod summarization;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hippo_queue_core::{App, TaskContext, TaskError, TaskOptions};

use crate::embed::{EmbedError, Embedder, EmbedderRegistry, HashEmbedder};
use crate::llm::Llm;
use crate::model::Memory;
use crate::similarity::{Matrix, Pair, Search, SimilarityError, normalize, similar_pairs};
use crate::store::{ChangeSet, MemoryStore, StoreError};

pub(crate) use lease::with_user_lease;

pub use compression::{CompressionArgs, CompressionResult, CompressionTask, compression_ratio};
pub use consolidation::{ConsolidationArgs, ConsolidationResult, ConsolidationTask};
pub use dedup::{DeduplicationArgs, DeduplicationResult, DeduplicationTask, DuplicateGroup};
pub use expiration::{ExpirationArgs, ExpirationResult, ExpireMemoriesTask};
pub use fanout::{FanOutArgs, FanOutResult, FanOutTarget, FanOutTask};
pub use health::{
    DuplicateCluster, HealthCheckArgs, HealthCheckResult, HealthCheckTask, HealthStatus,
    InfraCheck, MemoryHealthReport, SubScores, consistency, freshness, health_report, is_stale,
    type_share,
};
pub use migration::{MigrateEmbeddingsArgs, MigrateEmbeddingsTask, MigrationResult};
pub use procedural::{
    ConsolidateProceduralRulesTask, PROCEDURAL_RULE_MAX_COUNT, ProceduralArgs, ProceduralResult,
};
pub use summarization::{
    AutoSummarizationTask, SummarizationArgs, SummarizationResult, Tier, TierCounts,
};

/// Error kind of arguments a retry cannot fix (the task is rejected).
pub const INVALID_ARGUMENT: &str = "InvalidArgument";
/// Error kind of an unreachable store (retried).
pub const STORE_UNAVAILABLE: &str = "StoreUnavailable";
/// Error kind of other store failures.
pub const STORE_ERROR: &str = "StoreError";
/// Error kind of an unreachable embedding model (retried).
pub const EMBEDDER_UNAVAILABLE: &str = "EmbedderUnavailable";
/// Error kind of an embedding model that refused its input.
pub const EMBEDDER_ERROR: &str = "EmbedderError";
/// Error kind of a user whose maintenance lease another task holds (retried).
pub const USER_BUSY: &str = "UserBusy";
/// Error kind of a write refused because a memory changed since it was read.
pub const CONFLICT: &str = "Conflict";

/// The lexical model's duplicate threshold (a pair is a duplicate strictly above
/// it); other models have their own, see [`Thresholds`](crate::embed::Thresholds).
pub const DEDUP_THRESHOLD: f64 = 0.88;
/// The lexical model's consolidation threshold (inclusive).
pub const CONSOLIDATION_THRESHOLD: f64 = 0.85;
/// Memories re-embedded per call to the embedder.
const EMBED_BATCH: usize = 256;
/// Groups written per store call.
const WRITE_CHUNK: usize = 256;

/// What the tasks work with: the store, the embedding models, the optional language
/// model, and how many threads CPU-heavy steps use. Cheap to clone.
///
/// ```
/// use std::sync::Arc;
/// use hippo_memory_tasks::store::InMemoryStore;
/// use hippo_memory_tasks::tasks::MemoryServices;
/// let services = MemoryServices::new(Arc::new(InMemoryStore::new()));
/// assert_eq!(services.embedder().model(), "hippo-hash-384-v1");
/// assert!(services.llm.is_none());
/// ```
#[derive(Clone)]
pub struct MemoryServices {
    /// Where memories live.
    pub store: Arc<dyn MemoryStore>,
    /// The current embedding model and migration targets.
    pub embedders: EmbedderRegistry,
    /// The language model, if any.
    pub llm: Option<Arc<dyn Llm>>,
    /// Threads for similarity searches (default: the available parallelism).
    pub threads: usize,
    /// Most procedural rules kept per user.
    pub procedural_rule_max_count: usize,
}

impl std::fmt::Debug for MemoryServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryServices")
            .field("store", &self.store.kind())
            .field("embedders", &self.embedders)
            .field("llm", &self.llm.as_ref().map(|l| l.name().to_string()))
            .field("threads", &self.threads)
            .finish()
    }
}

impl MemoryServices {
    /// Services on `store` with the offline [`HashEmbedder`] and no language model.
    pub fn new(store: Arc<dyn MemoryStore>) -> Self {
        MemoryServices {
            store,
            embedders: EmbedderRegistry::new(Arc::new(HashEmbedder::default())),
            llm: None,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            procedural_rule_max_count: PROCEDURAL_RULE_MAX_COUNT,
        }
    }

    /// Uses these embedding models.
    pub fn embedders(mut self, embedders: EmbedderRegistry) -> Self {
        self.embedders = embedders;
        self
    }

    /// Uses a language model.
    pub fn llm(mut self, llm: Arc<dyn Llm>) -> Self {
        self.llm = Some(llm);
        self
    }

    /// Uses this many threads for similarity searches.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n.max(1);
        self
    }

    /// The current embedding model.
    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        self.embedders.current()
    }
}

/// Registers the eight tasks and the fan-out task with an app.
pub fn register_all(app: &App, services: &MemoryServices) {
    app.register(DeduplicationTask::new(services.clone()))
        .register(ConsolidationTask::new(services.clone()))
        .register(HealthCheckTask::new(services.clone()))
        .register(AutoSummarizationTask::new(services.clone()))
        .register(CompressionTask::new(services.clone()))
        .register(ExpireMemoriesTask::new(services.clone()))
        .register(MigrateEmbeddingsTask::new(services.clone()))
        .register(ConsolidateProceduralRulesTask::new(services.clone()))
        .register(FanOutTask::new(services.clone()));
}

/// The options every task shares, on a queue and routing key with time limits.
pub(crate) fn options(queue: &str, key: &str, soft: u64, hard: u64) -> TaskOptions {
    TaskOptions::new()
        .queue(queue)
        .routing_key(key)
        .soft_time_limit(Duration::from_secs(soft))
        .time_limit(Duration::from_secs(hard))
        .max_retries(3)
        .retry_backoff(Duration::from_secs(2))
        .retry_backoff_max(Duration::from_secs(300))
        .autoretry_for_kind(STORE_UNAVAILABLE)
        .autoretry_for_kind(EMBEDDER_UNAVAILABLE)
        .autoretry_for_kind(USER_BUSY)
        .acks_late(true)
        .reject_on_worker_lost(true)
}

/// An argument error: the task is rejected (no retry).
pub(crate) fn invalid(message: impl Into<String>) -> TaskError {
    TaskError::new(INVALID_ARGUMENT, message).reject()
}

pub(crate) fn store_error(e: StoreError) -> TaskError {
    match e {
        StoreError::Unavailable(_) => TaskError::new(STORE_UNAVAILABLE, e.to_string()),
        StoreError::Conflict { .. } => TaskError::new(CONFLICT, e.to_string()),
        other => TaskError::new(STORE_ERROR, other.to_string()),
    }
}

/// Applies a task's change set; `Ok(false)` when a memory it read changed meanwhile
/// (the user's write wins and this change is skipped; the next run sees the new
/// state).
pub(crate) async fn apply_unless_changed(
    store: &dyn MemoryStore,
    user_id: &str,
    changes: ChangeSet,
) -> Result<bool, TaskError> {
    match store.apply(user_id, changes).await {
        Ok(_) => Ok(true),
        Err(StoreError::Conflict { id }) => {
            tracing::info!(user = user_id, memory = %id, "memory changed while the task ran; change skipped");
            Ok(false)
        }
        Err(e) => Err(store_error(e)),
    }
}

/// The expiry a memory made from `sources` inherits: the earliest among them, so
/// that nothing set to expire lives on inside it.
pub(crate) fn earliest_expiry<'a>(
    sources: impl IntoIterator<Item = &'a Memory>,
) -> Option<DateTime<Utc>> {
    sources.into_iter().filter_map(|m| m.expires_at).min()
}

/// The expiry of a survivor that stands for `members`: none if any of them is
/// permanent, else the latest, so that a merge never shortens a memory's life.
pub(crate) fn latest_expiry<'a>(
    members: impl IntoIterator<Item = &'a Memory>,
) -> Option<DateTime<Utc>> {
    let mut latest = None;
    for m in members {
        match m.expires_at {
            None => return None,
            Some(e) => latest = latest.max(Some(e)),
        }
    }
    latest
}

pub(crate) fn embed_error(e: EmbedError) -> TaskError {
    match e {
        EmbedError::Unavailable(_) => TaskError::new(EMBEDDER_UNAVAILABLE, e.to_string()),
        other => TaskError::new(EMBEDDER_ERROR, other.to_string()),
    }
}

pub(crate) fn similarity_error(e: SimilarityError) -> TaskError {
    match e {
        SimilarityError::Stopped => TaskError::soft_time_limit(),
        other => TaskError::new("SimilarityError", other.to_string()),
    }
}

/// Checks a similarity threshold: a number within 0..=1, the model's default when
/// not given.
pub(crate) fn check_threshold(name: &str, t: Option<f64>, default: f64) -> Result<f32, TaskError> {
    let t = t.unwrap_or(default);
    if t.is_finite() && (0.0..=1.0).contains(&t) {
        Ok(t as f32)
    } else {
        Err(invalid(format!(
            "{name} must be between 0 and 1 (cosine similarity), got {t}"
        )))
    }
}

/// Checks that a user id is given and has memories.
pub(crate) async fn require_user(store: &dyn MemoryStore, user_id: &str) -> Result<(), TaskError> {
    if user_id.trim().is_empty() {
        return Err(invalid("user_id is empty"));
    }
    if !store.user_exists(user_id).await.map_err(store_error)? {
        return Err(invalid(format!(
            "unknown user {user_id:?}: no memories are stored for this user"
        )));
    }
    Ok(())
}

/// Whether a memory's vector was made by `embedder` and has its dimension.
pub(crate) fn has_current_vector(m: &Memory, embedder: &dyn Embedder) -> bool {
    m.embed_model.as_deref() == Some(embedder.model())
        && m.embedding
            .as_ref()
            .is_some_and(|v| v.len() == embedder.dimension())
}

/// Embeds the memories whose vector is missing or from another model (normalised,
/// `embed_model` set); returns their positions.
pub(crate) async fn ensure_embeddings(
    memories: &mut [Memory],
    embedder: &dyn Embedder,
) -> Result<Vec<usize>, TaskError> {
    let stale: Vec<usize> = (0..memories.len())
        .filter(|&i| !has_current_vector(&memories[i], embedder))
        .collect();
    for chunk in stale.chunks(EMBED_BATCH) {
        let texts: Vec<String> = chunk.iter().map(|&i| memories[i].text.clone()).collect();
        let vectors = embedder.embed(&texts).await.map_err(embed_error)?;
        if vectors.len() != texts.len() {
            return Err(TaskError::new(
                EMBEDDER_ERROR,
                format!(
                    "the embedder returned {} vectors for {} texts",
                    vectors.len(),
                    texts.len()
                ),
            ));
        }
        for (&i, mut v) in chunk.iter().zip(vectors) {
            if v.len() != embedder.dimension() {
                return Err(TaskError::new(
                    EMBEDDER_ERROR,
                    format!(
                        "model {} returned {} components, expected {}",
                        embedder.model(),
                        v.len(),
                        embedder.dimension()
                    ),
                ));
            }
            normalize(&mut v);
            memories[i].embedding = Some(v);
            memories[i].embed_model = Some(embedder.model().to_string());
        }
    }
    Ok(stale)
}

/// The vectors of the current model for `memories`, by position: the stored one
/// where it is the current model's, else computed now (on copies: a task saves a
/// vector only for a memory that had none, never over another model's).
pub(crate) async fn current_vectors(
    memories: &[Memory],
    embedder: &dyn Embedder,
) -> Result<Vec<Vec<f32>>, TaskError> {
    let mut work = memories.to_vec();
    ensure_embeddings(&mut work, embedder).await?;
    Ok(work
        .into_iter()
        .map(|m| m.embedding.unwrap_or_default())
        .collect())
}

/// Most similar pairs a dedup or consolidation run accepts.
const MAX_PAIRS: usize = 5_000_000;

/// Every pair of rows the search accepts, on the blocking pool (stopped at the soft
/// time limit).
pub(crate) async fn pairs_of(
    ctx: &TaskContext,
    dim: usize,
    rows: Vec<Vec<f32>>,
    search: impl FnOnce(&AtomicBool) -> Search<'_> + Send + 'static,
) -> Result<Vec<Pair>, TaskError> {
    cpu(ctx, move |stop| {
        let m = Matrix::from_rows(dim, rows.iter().map(Vec::as_slice))?;
        similar_pairs(&m, &search(stop), MAX_PAIRS)
    })
    .await?
    .map_err(similarity_error)
}

/// Embeds texts with the current model (normalised).
pub(crate) async fn embed_texts(
    embedder: &dyn Embedder,
    texts: Vec<String>,
) -> Result<Vec<Vec<f32>>, TaskError> {
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(EMBED_BATCH) {
        let vs = embedder.embed(chunk).await.map_err(embed_error)?;
        if vs.len() != chunk.len() {
            return Err(TaskError::new(
                EMBEDDER_ERROR,
                "the embedder returned a wrong number of vectors",
            ));
        }
        for mut v in vs {
            normalize(&mut v);
            out.push(v);
        }
    }
    Ok(out)
}

/// Sets a flag when dropped (stops a CPU search when its task is aborted).
struct RaiseOnDrop(Arc<AtomicBool>);

impl Drop for RaiseOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs CPU-heavy work on the blocking pool; the flag it gets is raised when the
/// task's soft time limit passes or the task is aborted.
pub(crate) async fn cpu<T: Send + 'static>(
    ctx: &TaskContext,
    work: impl FnOnce(&AtomicBool) -> T + Send + 'static,
) -> Result<T, TaskError> {
    let stop = Arc::new(AtomicBool::new(false));
    let guard = RaiseOnDrop(stop.clone());
    let flag = stop.clone();
    let mut handle = tokio::task::spawn_blocking(move || work(&flag));
    let joined = tokio::select! {
        r = &mut handle => r,
        _ = ctx.soft_limit() => {
            stop.store(true, Ordering::Relaxed);
            handle.await
        }
    };
    drop(guard);
    joined.map_err(|e| TaskError::new("Panic", format!("CPU step failed: {e}")))
}

/// The merged tag list of several memories: first-seen order, no repeats.
pub(crate) fn union_tags<'a>(memories: impl IntoIterator<Item = &'a Memory>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in memories {
        for t in &m.tags {
            if !out.contains(t) {
                out.push(t.clone());
            }
        }
    }
    out
}

/// Bytes to megabytes (MiB), negative when storage grew.
pub(crate) fn mib(bytes: i64) -> f64 {
    bytes as f64 / 1_048_576.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use hippo_queue_core::Task;

    fn check<T: Task>(queue: &str, key: &str) {
        let o = T::options();
        o.validate().unwrap_or_else(|e| panic!("{}: {e}", T::NAME));
        assert_eq!(o.queue.as_deref(), Some(queue), "{}", T::NAME);
        assert_eq!(o.routing_key.as_deref(), Some(key), "{}", T::NAME);
        assert!(
            o.time_limit > o.soft_time_limit,
            "{}: hard above soft",
            T::NAME
        );
        assert_eq!(o.acks_late, Some(true));
        assert_eq!(o.max_retries, Some(3));
        let router = crate::router();
        assert_eq!(
            router.queue_for_key(key).map(|q| q.name.as_str()),
            Ok(queue)
        );
    }

    #[test]
    fn guide_queues_routing_keys_and_limits() {
        check::<DeduplicationTask>("memory_ops", "memory.dedup");
        check::<ConsolidationTask>("memory_ops", "memory.consolidate");
        check::<HealthCheckTask>("background", "background.health");
        check::<AutoSummarizationTask>("background", "background.summarize");
        check::<CompressionTask>("background", "background.compress");
        check::<ExpireMemoriesTask>("scheduled", "scheduled.expire");
        check::<MigrateEmbeddingsTask>("memory_ops", "memory.migrate");
        check::<ConsolidateProceduralRulesTask>("background", "background.procedural");
        check::<FanOutTask>("scheduled", "scheduled.fan_out");
        let m = MigrateEmbeddingsTask::options();
        assert_eq!(m.soft_time_limit, Some(Duration::from_secs(3600)));
        assert_eq!(m.time_limit, Some(Duration::from_secs(3900)));
    }
}
