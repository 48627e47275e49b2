//! `deduplication_task`: merges each group of near-identical memories of a user into
//! one survivor.

use std::cmp::Ordering;
use std::time::Duration;

use chrono::Utc;
use hippo_queue_core::{Task, TaskContext, TaskError, TaskOptions};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    MemoryServices, WRITE_CHUNK, apply_unless_changed, check_threshold, current_vectors,
    latest_expiry, mib, options, pairs_of, require_user, store_error, with_user_lease,
};
use crate::guard::difference;
use crate::history::record_merged;
use crate::model::Memory;
use crate::similarity::{Search, Star, star_groups};
use crate::store::{ChangeSet, MemoryStore, load_user};

/// Arguments of `deduplication_task`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeduplicationArgs {
    /// Whose memories.
    pub user_id: String,
    /// Pairs strictly above this cosine similarity are duplicates (default: the
    /// current model's, see [`Thresholds`](crate::embed::Thresholds)).
    #[serde(default)]
    pub similarity_threshold: Option<f64>,
    /// Report what would change without changing anything.
    #[serde(default)]
    pub dry_run: bool,
}

impl DeduplicationArgs {
    /// Arguments with the model's default threshold.
    pub fn new(user_id: impl Into<String>) -> Self {
        DeduplicationArgs {
            user_id: user_id.into(),
            similarity_threshold: None,
            dry_run: false,
        }
    }
}

/// One group of duplicates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DuplicateGroup {
    /// The memory kept.
    pub survivor_id: String,
    /// The memories merged into it (deleted, and kept in its history, unless dry run).
    pub duplicate_ids: Vec<String>,
    /// Each duplicate's cosine similarity to the survivor, in the same order (every
    /// one above the threshold).
    pub similarities: Vec<f32>,
}

/// Result of `deduplication_task`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeduplicationResult {
    /// Whose memories.
    pub user_id: String,
    /// Memories compared (archived ones are left alone).
    pub memories_scanned: u64,
    /// Memories found to duplicate a survivor.
    pub duplicates_found: u64,
    /// Memories merged into a survivor and deleted (in a dry run: that would be).
    pub duplicates_merged: u64,
    /// Change in stored bytes, MiB: the duplicates' records less what their
    /// survivors' histories keep of them (in a dry run: what it would be).
    pub space_saved_mb: f64,
    /// Memories that had no vector and got one of the current model (in a dry run:
    /// that would).
    pub embeddings_updated: u64,
    /// Pairs above the threshold kept apart because their texts differ in negation,
    /// numbers or dates ([`guard`](crate::guard)).
    #[serde(default)]
    pub pairs_guarded: u64,
    /// Groups skipped because a member changed while the task ran.
    #[serde(default)]
    pub conflicts_skipped: u64,
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// The groups.
    pub groups: Vec<DuplicateGroup>,
}

/// Finds and merges duplicate memories of a user (queue `memory_ops`, routing key
/// `memory.dedup`).
///
/// - Vectors of the current model are used where stored, and computed where missing
///   or from another model; only a memory that had none is saved with its new
///   vector (a vector of another model is the embedding migration's to replace).
///   Archived memories are left alone.
/// - A pair is a duplicate when its cosine similarity is strictly above the threshold
///   and [`guard::difference`](crate::guard::difference) finds no negation, number or
///   date that tells the texts apart.
/// - Groups are stars around a survivor: memories are taken by their number of
///   duplicates (most first, so the centre of a neighbourhood covers it), then in
///   survivorship order (most important, most accessed, oldest, smallest id); each one
///   not yet grouped becomes a survivor and takes every ungrouped duplicate **of
///   itself**, so every merged memory is above the threshold to its survivor.
/// - The survivor gets the union of the group's tags, the maximum importance, the
///   sum of access counts, no expiry if any member had none (else the latest), the
///   merged ids in `metadata.merged_from`, and each merged memory whole in
///   `metadata.history`. Each group is one write, made only if no member changed
///   since it was read.
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
/// access counts (a duplicate already listed in `merged_from` is not counted twice),
/// the latest expiry (none if any has none), each duplicate kept in its history.
pub(crate) fn merge_into(survivor: &mut Memory, duplicates: &[&Memory]) {
    let mut merged_from = survivor.metadata_list("merged_from");
    survivor.expires_at =
        latest_expiry(std::iter::once(&*survivor).chain(duplicates.iter().copied()));
    for d in duplicates {
        record_merged(survivor, d);
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
        let embedder = self.services.embedder().clone();
        let threshold = check_threshold(
            "similarity_threshold",
            args.similarity_threshold,
            embedder.thresholds().dedup,
        )?;
        let store = self.services.store.as_ref();
        require_user(store, &args.user_id).await?;
        let user = args.user_id.clone();
        with_user_lease(store, ctx, &user, LEASE, async {
            let memories: Vec<Memory> = load_user(store, &args.user_id)
                .await
                .map_err(store_error)?
                .into_iter()
                .filter(|m| !m.is_archived)
                .collect();
            let plan = plan(ctx, &self.services, memories, threshold).await?;
            apply_plan(store, args, plan).await
        })
        .await
    }
}

/// How long the user's lease is held at most: the task's hard time limit.
const LEASE: Duration = Duration::from_secs(600);

/// What a run would change.
struct Plan {
    /// The current model's id.
    model: String,
    memories: Vec<Memory>,
    /// The vectors of the current model, by position.
    vectors: Vec<Vec<f32>>,
    stars: Vec<Star>,
    /// Positions of memories that had no vector.
    unvectored: Vec<usize>,
    guarded: u64,
}

async fn plan(
    ctx: &TaskContext,
    services: &MemoryServices,
    memories: Vec<Memory>,
    threshold: f32,
) -> Result<Plan, TaskError> {
    let embedder = services.embedder().clone();
    let vectors = current_vectors(&memories, embedder.as_ref()).await?;
    let unvectored: Vec<usize> = (0..memories.len())
        .filter(|&i| memories[i].embedding.is_none())
        .collect();
    let threads = services.threads;
    let pairs = pairs_of(ctx, embedder.dimension(), vectors.clone(), move |stop| {
        Search::above(threshold).threads(threads).stop_on(stop)
    })
    .await?;
    // Survivors: the memory with the most duplicates first (the centre of its
    // neighbourhood, so a star covers it whole), then by survivorship.
    let mut degree = vec![0usize; memories.len()];
    for p in &pairs {
        degree[p.i as usize] += 1;
        degree[p.j as usize] += 1;
    }
    let mut order: Vec<usize> = (0..memories.len()).collect();
    order.sort_by(|&a, &b| {
        degree[b]
            .cmp(&degree[a])
            .then_with(|| survivor_order(&memories[a], &memories[b]))
    });
    let guarded = std::cell::RefCell::new(std::collections::HashSet::new());
    let stars = star_groups(memories.len(), &pairs, &order, |c, j| {
        let apart = difference(&memories[c].text, &memories[j].text).is_some();
        if apart {
            guarded.borrow_mut().insert((c.min(j), c.max(j)));
        }
        !apart
    });
    let guarded = guarded.into_inner().len() as u64;
    Ok(Plan {
        model: embedder.model().to_string(),
        memories,
        vectors,
        stars,
        unvectored,
        guarded,
    })
}

async fn apply_plan(
    store: &dyn MemoryStore,
    args: DeduplicationArgs,
    plan: Plan,
) -> Result<DeduplicationResult, TaskError> {
    let Plan {
        model,
        memories,
        vectors,
        stars,
        unvectored,
        guarded,
    } = plan;
    let with_vector = |i: usize| {
        let mut m = memories[i].clone();
        if m.embedding.is_none() {
            m.embedding = Some(vectors[i].clone());
            m.embed_model = Some(model.clone());
        }
        m
    };
    let mut out = DeduplicationResult {
        user_id: args.user_id.clone(),
        memories_scanned: memories.len() as u64,
        duplicates_found: 0,
        duplicates_merged: 0,
        space_saved_mb: 0.0,
        embeddings_updated: 0,
        pairs_guarded: guarded,
        conflicts_skipped: 0,
        dry_run: args.dry_run,
        groups: Vec::with_capacity(stars.len()),
    };
    let mut in_group = vec![false; memories.len()];
    let mut saved_bytes: i64 = 0;
    for star in &stars {
        let s = star.center;
        let dups: Vec<&Memory> = star.members.iter().map(|&(i, _)| &memories[i]).collect();
        let mut survivor = with_vector(s);
        merge_into(&mut survivor, &dups);
        // What the group takes now (the survivor with the vector it is given either
        // way), against the survivor with the duplicates in its history.
        let before: usize =
            with_vector(s).stored_size() + dups.iter().map(|d| d.stored_size()).sum::<usize>();
        let mut changes = ChangeSet::new().replace(survivor.clone());
        for d in &dups {
            changes = changes.remove(d);
        }
        in_group[s] = true;
        for &(i, _) in &star.members {
            in_group[i] = true;
        }
        out.duplicates_found += dups.len() as u64;
        out.groups.push(DuplicateGroup {
            survivor_id: survivor.id.clone(),
            duplicate_ids: dups.iter().map(|d| d.id.clone()).collect(),
            similarities: star.members.iter().map(|m| m.1).collect(),
        });
        if args.dry_run || apply_unless_changed(store, &args.user_id, changes).await? {
            out.duplicates_merged += dups.len() as u64;
            saved_bytes += before as i64 - survivor.stored_size() as i64;
            if memories[s].embedding.is_none() {
                out.embeddings_updated += 1;
            }
        } else {
            out.conflicts_skipped += 1;
        }
    }
    // Memories outside any group that had no vector are saved with it.
    let fresh: Vec<usize> = unvectored.into_iter().filter(|&i| !in_group[i]).collect();
    for chunk in fresh.chunks(WRITE_CHUNK) {
        let mut changes = ChangeSet::new();
        for &i in chunk {
            changes = changes.replace(with_vector(i));
        }
        if args.dry_run || apply_unless_changed(store, &args.user_id, changes).await? {
            out.embeddings_updated += chunk.len() as u64;
        } else {
            // one of them changed: save the others one by one
            for &i in chunk {
                let one = ChangeSet::new().replace(with_vector(i));
                if apply_unless_changed(store, &args.user_id, one).await? {
                    out.embeddings_updated += 1;
                } else {
                    out.conflicts_skipped += 1;
                }
            }
        }
    }
    out.space_saved_mb = mib(saved_bytes);
    Ok(out)
}
