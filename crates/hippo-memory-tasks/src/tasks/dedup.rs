//! `deduplication_task`: merges each group of near-identical memories of a user into
//! one survivor.

use std::cmp::Ordering;

use chrono::Utc;
use hippo_queue_core::{Task, TaskContext, TaskError, TaskOptions};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    DEDUP_THRESHOLD, MemoryServices, WRITE_CHUNK, check_threshold, cpu, ensure_embeddings, mib,
    options, require_user, similarity_error, store_error,
};
use crate::model::Memory;
use crate::similarity::{Matrix, Search, dot, similar_groups};
use crate::store::{ChangeSet, load_user};

fn default_threshold() -> f64 {
    DEDUP_THRESHOLD
}

/// Arguments of `deduplication_task`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeduplicationArgs {
    /// Whose memories.
    pub user_id: String,
    /// Pairs strictly above this cosine similarity are duplicates (default 0.88).
    #[serde(default = "default_threshold")]
    pub similarity_threshold: f64,
    /// Report the groups without changing anything.
    #[serde(default)]
    pub dry_run: bool,
}

impl DeduplicationArgs {
    /// Arguments with the default threshold.
    pub fn new(user_id: impl Into<String>) -> Self {
        DeduplicationArgs {
            user_id: user_id.into(),
            similarity_threshold: DEDUP_THRESHOLD,
            dry_run: false,
        }
    }
}

/// One group of duplicates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DuplicateGroup {
    /// The memory kept.
    pub survivor_id: String,
    /// The memories merged into it (deleted unless dry run).
    pub duplicate_ids: Vec<String>,
    /// Each duplicate's cosine similarity to the survivor, in the same order.
    pub similarities: Vec<f32>,
}

/// Result of `deduplication_task`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeduplicationResult {
    /// Whose memories.
    pub user_id: String,
    /// Memories compared.
    pub memories_scanned: u64,
    /// Memories found to duplicate another (group sizes minus one).
    pub duplicates_found: u64,
    /// Memories merged into a survivor and deleted (0 in a dry run).
    pub duplicates_merged: u64,
    /// Space freed by the deletions, MiB (0 in a dry run).
    pub space_saved_mb: f64,
    /// Memories whose vector was (re)computed with the current model and saved.
    pub embeddings_updated: u64,
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// The groups.
    pub groups: Vec<DuplicateGroup>,
}

/// Finds and merges duplicate memories of a user (queue `memory_ops`, routing key
/// `memory.dedup`).
///
/// - Vectors are made with the current embedding model where missing or stale; a pair
///   is a duplicate when its cosine similarity is strictly above the threshold; groups
///   are the connected components of duplicate pairs. A memory is never compared with
///   itself.
/// - The survivor of a group is its most important memory (then the most accessed,
///   the oldest, the smallest id). It gets the union of the group's tags, the maximum
///   importance and the sum of access counts; the merged ids are listed in its
///   `metadata.merged_from`. Each group is written atomically with the deletions.
/// - Running it again finds nothing more and changes nothing.
pub struct DeduplicationTask {
    services: MemoryServices,
}

impl DeduplicationTask {
    /// The task on these services.
    pub fn new(services: MemoryServices) -> Self {
        DeduplicationTask { services }
    }
}

/// Orders memories by survivorship: most important first.
fn survivor_order(a: &Memory, b: &Memory) -> Ordering {
    b.importance
        .partial_cmp(&a.importance)
        .unwrap_or(Ordering::Equal)
        .then(b.access_count.cmp(&a.access_count))
        .then(a.created_at.cmp(&b.created_at))
        .then(a.id.cmp(&b.id))
}

/// Merges duplicates into the survivor: union of tags, maximum importance, sum of
/// access counts (a duplicate already listed in `merged_from` is not counted twice).
pub(crate) fn merge_into(survivor: &mut Memory, duplicates: &[&Memory]) {
    let mut merged_from = survivor.metadata_list("merged_from");
    for d in duplicates {
        survivor.add_tags(&d.tags);
        if d.importance > survivor.importance {
            survivor.importance = d.importance;
        }
        if !merged_from.contains(&d.id) {
            survivor.access_count = survivor.access_count.saturating_add(d.access_count);
            merged_from.push(d.id.clone());
        }
        for earlier in d.metadata_list("merged_from") {
            if !merged_from.contains(&earlier) {
                merged_from.push(earlier);
            }
        }
    }
    survivor.metadata.insert(
        "merged_from".into(),
        Value::Array(merged_from.into_iter().map(Value::String).collect()),
    );
    survivor.updated_at = Utc::now();
}

impl Task for DeduplicationTask {
    const NAME: &'static str = "deduplication_task";
    type Args = DeduplicationArgs;
    type Output = DeduplicationResult;

    fn options() -> TaskOptions {
        options("memory_ops", "memory.dedup", 300, 600)
    }

    async fn run(
        &self,
        ctx: &TaskContext,
        args: DeduplicationArgs,
    ) -> Result<DeduplicationResult, TaskError> {
        let threshold = check_threshold("similarity_threshold", args.similarity_threshold)?;
        let store = self.services.store.as_ref();
        require_user(store, &args.user_id).await?;
        let mut memories = load_user(store, &args.user_id).await.map_err(store_error)?;
        let embedder = self.services.embedder().clone();
        let refreshed = ensure_embeddings(&mut memories, embedder.as_ref()).await?;

        let dim = embedder.dimension();
        let threads = self.services.threads;
        let rows: Vec<Vec<f32>> = memories
            .iter()
            .map(|m| m.embedding.clone().unwrap_or_default())
            .collect();
        let groups = cpu(ctx, move |stop| {
            let m = Matrix::from_rows(dim, rows.iter().map(Vec::as_slice))?;
            similar_groups(&m, &Search::above(threshold).threads(threads).stop_on(stop))
        })
        .await?
        .map_err(similarity_error)?;

        let mut report = Vec::with_capacity(groups.len());
        let mut writes: Vec<ChangeSet> = Vec::new();
        let mut current = ChangeSet::default();
        let mut in_group = vec![false; memories.len()];
        let mut survivors = Vec::with_capacity(groups.len());
        let mut found = 0u64;
        let mut bytes = 0usize;
        for members in &groups {
            let mut order = members.clone();
            order.sort_by(|&a, &b| survivor_order(&memories[a], &memories[b]));
            let (s, rest) = (order[0], &order[1..]);
            let mut survivor = memories[s].clone();
            let dups: Vec<&Memory> = rest.iter().map(|&i| &memories[i]).collect();
            let similarities = rest
                .iter()
                .map(|&i| {
                    dot(
                        memories[s].embedding.as_deref().unwrap_or_default(),
                        memories[i].embedding.as_deref().unwrap_or_default(),
                    )
                })
                .collect();
            merge_into(&mut survivor, &dups);
            found += rest.len() as u64;
            for &i in members {
                in_group[i] = true;
            }
            survivors.push(s);
            report.push(DuplicateGroup {
                survivor_id: survivor.id.clone(),
                duplicate_ids: dups.iter().map(|d| d.id.clone()).collect(),
                similarities,
            });
            bytes += dups.iter().map(|d| d.stored_size()).sum::<usize>();
            current.delete.extend(dups.iter().map(|d| d.id.clone()));
            current.put.push(survivor);
            if current.put.len() >= WRITE_CHUNK {
                writes.push(std::mem::take(&mut current));
            }
        }
        // Vectors computed now for memories outside any group are saved too.
        let mut saved_vectors = 0u64;
        for &i in &refreshed {
            if !in_group[i] {
                current.put.push(memories[i].clone());
                saved_vectors += 1;
                if current.put.len() >= WRITE_CHUNK {
                    writes.push(std::mem::take(&mut current));
                }
            }
        }
        if !current.put.is_empty() || !current.delete.is_empty() {
            writes.push(current);
        }

        let mut merged = 0u64;
        if !args.dry_run {
            for w in writes {
                merged += store.apply(&args.user_id, w).await.map_err(store_error)?;
            }
        }
        let updated = if args.dry_run {
            0
        } else {
            let mut is_refreshed = vec![false; memories.len()];
            for &i in &refreshed {
                is_refreshed[i] = true;
            }
            saved_vectors + survivors.iter().filter(|&&s| is_refreshed[s]).count() as u64
        };
        Ok(DeduplicationResult {
            user_id: args.user_id,
            memories_scanned: memories.len() as u64,
            duplicates_found: found,
            duplicates_merged: merged,
            space_saved_mb: if args.dry_run { 0.0 } else { mib(bytes) },
            embeddings_updated: updated,
            dry_run: args.dry_run,
            groups: report,
        })
    }
}
