//! `migrate_embeddings_task`: re-embeds every memory with a new model, in batches of
//! 32, with a persisted, cancellable and resumable migration record.

use chrono::Utc;
use hippo_queue_core::{Task, TaskContext, TaskError, TaskOptions};
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use super::{MemoryServices, apply_unless_changed, invalid, options, store_error};
use crate::embed::{EmbedError, Embedder};
use crate::model::{Memory, Migration, MigrationCheckpoint, MigrationStatus};
use crate::similarity::normalize;
use crate::store::{ChangeSet, DEFAULT_PAGE, MemoryStore, PageRequest, StoreError};

/// Memories per batch.
pub const MIGRATION_BATCH: usize = 32;
/// Soft time limit, seconds.
pub const MIGRATION_SOFT_LIMIT: u64 = 3600;
/// Hard time limit, seconds (above the soft one).
pub const MIGRATION_HARD_LIMIT: u64 = 3900;

/// Arguments of `migrate_embeddings_task`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrateEmbeddingsArgs {
    /// The migration record's id.
    pub migration_id: String,
}

/// Result of `migrate_embeddings_task`: the record's state when the run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationResult {
    /// The migration.
    pub migration_id: String,
    /// Its status.
    pub status: MigrationStatus,
    /// Memories counted when it started.
    pub total_memories: u64,
    /// Memories on the new model.
    pub migrated_count: u64,
    /// Memories that could not be re-embedded.
    pub failed_count: u64,
    /// Batches processed by this run.
    pub batches: u64,
    /// Whether this run continued an interrupted one.
    pub resumed: bool,
}

impl MigrationResult {
    fn of(m: &Migration, batches: u64, resumed: bool) -> Self {
        MigrationResult {
            migration_id: m.id.clone(),
            status: m.status,
            total_memories: m.total_memories,
            migrated_count: m.migrated_count,
            failed_count: m.failed_count,
            batches,
            resumed,
        }
    }
}

/// Re-embeds every memory with the migration's model (queue `memory_ops`, routing key
/// `memory.migrate`, soft limit 3600 s, hard limit 3900 s).
///
/// Users and their memories are walked in id order, 32 memories per batch. After each
/// batch the re-embedded memories are written, then the counters and a checkpoint
/// (the last memory done) are saved in the record. Before each batch the record is
/// read again: a cancellation stops the run (status `cancelled`).
///
/// A run interrupted anywhere (worker killed, soft time limit, embedder down) leaves
/// the record `in_progress`; the next run continues after the checkpoint. A memory
/// past the checkpoint that already has the new model (written by the interrupted
/// batch) is counted as migrated without being embedded again, so the counters add up
/// to the number of memories and nothing finished is redone.
pub struct MigrateEmbeddingsTask {
    services: MemoryServices,
}

impl MigrateEmbeddingsTask {
    /// The task on these services.
    pub fn new(services: MemoryServices) -> Self {
        MigrateEmbeddingsTask { services }
    }
}

fn on_model(m: &Memory, model: &str, dim: usize) -> bool {
    m.embed_model.as_deref() == Some(model) && m.embedding.as_ref().is_some_and(|v| v.len() == dim)
}

async fn count_all(store: &dyn MemoryStore) -> Result<u64, StoreError> {
    let mut total = 0;
    let mut page = PageRequest::first(DEFAULT_PAGE);
    loop {
        let p = store.list_users(&page).await?;
        for u in &p.items {
            total += store.count_by_user(u).await?;
        }
        match p.next {
            Some(c) => page = page.after(c),
            None => return Ok(total),
        }
    }
}

/// What a batch did.
struct BatchOutcome {
    migrated: u64,
    failed: u64,
    error: Option<String>,
}

/// Re-embeds one batch and writes it.
async fn migrate_batch(
    store: &dyn MemoryStore,
    embedder: &dyn Embedder,
    user: &str,
    batch: Vec<Memory>,
) -> Result<BatchOutcome, TaskError> {
    let model = embedder.model().to_string();
    let dim = embedder.dimension();
    let mut out = BatchOutcome {
        migrated: 0,
        failed: 0,
        error: None,
    };
    let (done, todo): (Vec<Memory>, Vec<Memory>) =
        batch.into_iter().partition(|m| on_model(m, &model, dim));
    out.migrated += done.len() as u64;
    if todo.is_empty() {
        return Ok(out);
    }
    let texts: Vec<String> = todo.iter().map(|m| m.text.clone()).collect();
    let vectors: Vec<Result<Vec<f32>, EmbedError>> = match embedder.embed(&texts).await {
        Ok(vs) if vs.len() == texts.len() => vs.into_iter().map(Ok).collect(),
        Ok(_) | Err(EmbedError::Failed(_)) => {
            // Find the memories the model refuses, one by one.
            let mut each = Vec::with_capacity(texts.len());
            for t in &texts {
                each.push(match embedder.embed(std::slice::from_ref(t)).await {
                    Ok(mut v) if v.len() == 1 => Ok(v.remove(0)),
                    Ok(_) => Err(EmbedError::Failed("no vector returned".into())),
                    Err(e @ EmbedError::Unavailable(_)) => return Err(super::embed_error(e)),
                    Err(e) => Err(e),
                });
            }
            each
        }
        Err(e) => return Err(super::embed_error(e)),
    };
    let mut put = Vec::with_capacity(todo.len());
    for (mut m, v) in todo.into_iter().zip(vectors) {
        match v {
            Ok(mut v) if v.len() == dim => {
                normalize(&mut v);
                m.embedding = Some(v);
                m.embed_model = Some(model.clone());
                put.push(m);
            }
            Ok(v) => {
                out.failed += 1;
                out.error = Some(format!(
                    "memory {}: {} components, expected {dim}",
                    m.id,
                    v.len()
                ));
            }
            Err(e) => {
                out.failed += 1;
                out.error = Some(format!("memory {}: {e}", m.id));
            }
        }
    }
    // Written only if unchanged since read; a memory that changed is left for the
    // closing sweep.
    let all = put
        .iter()
        .cloned()
        .fold(ChangeSet::new(), ChangeSet::replace);
    if apply_unless_changed(store, user, all).await? {
        out.migrated += put.len() as u64;
    } else {
        for m in put {
            if apply_unless_changed(store, user, ChangeSet::new().replace(m)).await? {
                out.migrated += 1;
            }
        }
    }
    Ok(out)
}

/// Re-embeds the memories not on the migration's model yet, of every user (those
/// added or changed while the pass ran); returns what it did.
async fn sweep(
    store: &dyn MemoryStore,
    embedder: &dyn Embedder,
) -> Result<BatchOutcome, TaskError> {
    let (model, dim) = (embedder.model().to_string(), embedder.dimension());
    let mut out = BatchOutcome {
        migrated: 0,
        failed: 0,
        error: None,
    };
    let mut users = PageRequest::first(DEFAULT_PAGE);
    loop {
        let p = store.list_users(&users).await.map_err(store_error)?;
        for user in &p.items {
            let stale: Vec<Memory> = crate::store::load_user(store, user)
                .await
                .map_err(store_error)?
                .into_iter()
                .filter(|m| !on_model(m, &model, dim))
                .collect();
            for batch in stale.chunks(MIGRATION_BATCH) {
                let o = migrate_batch(store, embedder, user, batch.to_vec()).await?;
                out.migrated += o.migrated;
                out.failed += o.failed;
                out.error = o.error.or(out.error);
            }
        }
        match p.next {
            Some(c) => users = users.after(c),
            None => return Ok(out),
        }
    }
}

/// Most closing sweeps: each picks up what was added during the one before.
const SWEEPS: usize = 3;

/// Records a run stopped while it works (a revoke with `terminate`, or its worker
/// stopping it): dropped before [`TerminationRecord::disarm`], it saves the last
/// record as `interrupted`, with the reason in `error` (a process that dies outright
/// leaves `in_progress`; both are resumed by sending the task again).
struct TerminationRecord {
    store: Arc<dyn MemoryStore>,
    latest: Option<Migration>,
}

impl TerminationRecord {
    fn disarm(mut self) {
        self.latest = None;
    }
}

impl Drop for TerminationRecord {
    fn drop(&mut self) {
        let Some(mut m) = self.latest.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        m.status = MigrationStatus::Interrupted;
        m.error = Some(format!(
            "stopped while running after {} of {} memories; send the task again to resume",
            m.migrated_count + m.failed_count,
            m.total_memories
        ));
        let store = self.store.clone();
        runtime.spawn(async move {
            if let Err(e) = store.save_migration(&m).await {
                tracing::warn!(migration = %m.id, error = %e, "could not record the termination");
            }
        });
    }
}

impl Task for MigrateEmbeddingsTask {
    const NAME: &'static str = "migrate_embeddings_task";
    type Args = MigrateEmbeddingsArgs;
    type Output = MigrationResult;

    fn options() -> TaskOptions {
        options(
            "memory_ops",
            "memory.migrate",
            MIGRATION_SOFT_LIMIT,
            MIGRATION_HARD_LIMIT,
        )
    }

    async fn run(
        &self,
        ctx: &TaskContext,
        args: MigrateEmbeddingsArgs,
    ) -> Result<MigrationResult, TaskError> {
        let store = self.services.store.as_ref();
        let Some(mut mig) = store
            .get_migration(&args.migration_id)
            .await
            .map_err(store_error)?
        else {
            return Err(invalid(format!(
                "no migration {:?}: create it first (POST /v1/admin/embeddings/migrate)",
                args.migration_id
            )));
        };
        if mig.status.is_final() {
            return Ok(MigrationResult::of(&mig, 0, false));
        }
        let save = |m: &Migration| {
            let m = m.clone();
            async move { store.save_migration(&m).await.map_err(store_error) }
        };
        if mig.cancel_requested {
            mig.status = MigrationStatus::Cancelled;
            mig.completed_at = Some(Utc::now());
            save(&mig).await?;
            return Ok(MigrationResult::of(&mig, 0, false));
        }
        let Some(embedder) = self.services.embedders.get(&mig.new_model).cloned() else {
            let known = self.services.embedders.names().join(", ");
            mig.status = MigrationStatus::Failed;
            mig.error = Some(format!(
                "unknown embedding model {:?}; known models: {known}",
                mig.new_model
            ));
            mig.completed_at = Some(Utc::now());
            save(&mig).await?;
            return Err(invalid(mig.error.unwrap_or_default()));
        };
        if embedder.dimension() != mig.new_dimension {
            mig.status = MigrationStatus::Failed;
            mig.error = Some(format!(
                "model {} makes {} dimensions, the migration asks for {}",
                mig.new_model,
                embedder.dimension(),
                mig.new_dimension
            ));
            mig.completed_at = Some(Utc::now());
            save(&mig).await?;
            return Err(invalid(mig.error.unwrap_or_default()));
        }

        let mut record = TerminationRecord {
            store: self.services.store.clone(),
            latest: None,
        };
        let out = self.migrate(ctx, mig, embedder.as_ref(), &mut record).await;
        record.disarm();
        out
    }
}

impl MigrateEmbeddingsTask {
    async fn migrate(
        &self,
        ctx: &TaskContext,
        mut mig: Migration,
        embedder: &dyn Embedder,
        record: &mut TerminationRecord,
    ) -> Result<MigrationResult, TaskError> {
        let store = self.services.store.as_ref();
        let save = |m: &Migration| {
            let m = m.clone();
            async move { store.save_migration(&m).await.map_err(store_error) }
        };
        let resumed = matches!(
            mig.status,
            MigrationStatus::InProgress | MigrationStatus::Interrupted
        );
        if resumed {
            mig.status = MigrationStatus::InProgress;
        } else {
            mig.status = MigrationStatus::InProgress;
            mig.started_at = Some(Utc::now());
            if mig.old_model.is_none() {
                mig.old_model = Some(self.services.embedder().model().to_string());
            }
            mig.total_memories = count_all(store).await.map_err(store_error)?;
            save(&mig).await?;
        }
        record.latest = Some(mig.clone());

        // The user being worked on and the memory cursor within it, then the users
        // after it.
        let mut current: Option<(String, Option<String>)> = mig
            .checkpoint
            .as_ref()
            .map(|c| (c.user_id.clone(), Some(c.memory_id.clone())));
        let mut users_after: Option<String> = current.as_ref().map(|(u, _)| u.clone());
        let mut pending_users: std::collections::VecDeque<String> = Default::default();
        let mut users_done = false;
        let mut batches = 0u64;
        loop {
            let (user, after) = match current.take() {
                Some(c) => c,
                None => {
                    if pending_users.is_empty() && !users_done {
                        let page = PageRequest {
                            after: users_after.clone(),
                            limit: DEFAULT_PAGE,
                        };
                        let p = store.list_users(&page).await.map_err(store_error)?;
                        if let Some(last) = p.items.last() {
                            users_after = Some(last.clone());
                        }
                        pending_users.extend(p.items);
                        users_done = p.next.is_none();
                    }
                    match pending_users.pop_front() {
                        Some(u) => (u, None),
                        None => break,
                    }
                }
            };
            let page = PageRequest {
                after,
                limit: MIGRATION_BATCH,
            };
            let p = store
                .list_by_user(&user, &page)
                .await
                .map_err(store_error)?;
            if p.items.is_empty() {
                continue;
            }

            // Between batches: honour cancellation and the soft time limit.
            let fresh = store.get_migration(&mig.id).await.map_err(store_error)?;
            if fresh.is_some_and(|f| f.cancel_requested) {
                mig.status = MigrationStatus::Cancelled;
                mig.completed_at = Some(Utc::now());
                save(&mig).await?;
                return Ok(MigrationResult::of(&mig, batches, resumed));
            }
            if ctx.soft_limit_reached() {
                return Err(TaskError::soft_time_limit().caused_by(format!(
                    "migration {} stopped after {} of {} memories; send the task again to resume",
                    mig.id,
                    mig.migrated_count + mig.failed_count,
                    mig.total_memories
                )));
            }

            let last_id = p.items.last().map(|m| m.id.clone()).unwrap_or_default();
            let outcome = migrate_batch(store, embedder, &user, p.items).await?;
            batches += 1;
            mig.migrated_count += outcome.migrated;
            mig.failed_count += outcome.failed;
            if outcome.error.is_some() {
                mig.error = outcome.error;
            }
            mig.checkpoint = Some(MigrationCheckpoint {
                user_id: user.clone(),
                memory_id: last_id.clone(),
            });
            save(&mig).await?;
            record.latest = Some(mig.clone());
            if p.next.is_some() {
                current = Some((user, Some(last_id)));
            }
        }
        for _ in 0..SWEEPS {
            // Failures were counted when first met: a sweep counts what it moves.
            let o = sweep(store, embedder).await?;
            mig.migrated_count += o.migrated;
            mig.error = o.error.or(mig.error);
            if o.migrated == 0 {
                break;
            }
            batches += 1;
        }
        mig.total_memories = count_all(store).await.map_err(store_error)?;
        mig.status = MigrationStatus::Completed;
        mig.completed_at = Some(Utc::now());
        save(&mig).await?;
        Ok(MigrationResult::of(&mig, batches, resumed))
    }
}
