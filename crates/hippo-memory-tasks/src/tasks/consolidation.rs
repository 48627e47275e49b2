//! `consolidation_task`: rolls groups of related memories of a user into one new
//! memory each.

use std::collections::HashMap;

use chrono::Utc;
use hippo_queue_core::{Task, TaskContext, TaskError, TaskOptions};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    MemoryServices, apply_unless_changed, check_threshold, current_vectors, earliest_expiry,
    embed_texts, options, pairs_of, require_user, store_error, union_tags, with_user_lease,
};
use crate::model::Memory;
use crate::similarity::Search;
use crate::store::{ChangeSet, load_user};
use crate::text::merge_distinct_sentences;

/// Arguments of `consolidation_task`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsolidationArgs {
    /// Whose memories.
    pub user_id: String,
    /// Memories at or above this similarity to a group's seed join it (default: the
    /// current model's, see [`Thresholds`](crate::embed::Thresholds)).
    #[serde(default)]
    pub similarity_threshold: Option<f64>,
}

impl ConsolidationArgs {
    /// Arguments with the model's default threshold.
    pub fn new(user_id: impl Into<String>) -> Self {
        ConsolidationArgs {
            user_id: user_id.into(),
            similarity_threshold: None,
        }
    }
}

/// Result of `consolidation_task`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsolidationResult {
    /// Whose memories.
    pub user_id: String,
    /// Memories considered (archived ones are left alone).
    pub memories_scanned: u64,
    /// Groups of two or more related memories.
    pub groups_found: u64,
    /// Memories rolled into a new one (kept, archived, linked by
    /// `metadata.consolidated_into`).
    pub memories_consolidated: u64,
    /// New memories written.
    pub memories_created: u64,
    /// Their ids.
    pub created_ids: Vec<String>,
    /// Groups whose text came from the language model.
    pub llm_merges: u64,
    /// Groups that fell back to the heuristic (no model, or the call failed).
    pub heuristic_merges: u64,
    /// Groups skipped because a member changed while the task ran.
    #[serde(default)]
    pub conflicts_skipped: u64,
}

/// Consolidates related memories of a user (queue `memory_ops`, routing key
/// `memory.consolidate`).
///
/// Greedy grouping, newest memory first: each memory not yet grouped seeds a group
/// with every ungrouped memory at or above the threshold to it. Each group of two or
/// more becomes one new memory: its text from the language model ("merge these similar
/// memories into one concise memory"), or, without one or when the call fails, every
/// distinct sentence of the members ([`merge_distinct_sentences`]); the type and
/// session of the most important member; `importance = max`, `confidence = min`,
/// `tags = union`, `access_count = sum`, the earliest `expires_at` of the members,
/// `metadata.consolidated_from = [ids]`. The members are kept, archived, with
/// `metadata.consolidated_into`, in the same write, which is made only if no member
/// changed since it was read. Nothing is deleted, whatever the model wrote.
pub struct ConsolidationTask {
    services: MemoryServices,
}

impl ConsolidationTask {
    /// The task on these services.
    pub fn new(services: MemoryServices) -> Self {
        ConsolidationTask { services }
    }
}

/// The most important member (then the most recent, then the smallest id).
fn lead<'a>(members: &[&'a Memory]) -> &'a Memory {
    let mut best = members[0];
    for m in &members[1..] {
        let better = m.importance > best.importance
            || (m.importance == best.importance
                && (m.created_at > best.created_at
                    || (m.created_at == best.created_at && m.id < best.id)));
        if better {
            best = m;
        }
    }
    best
}

/// The consolidated memory of a group (text filled in by the caller).
pub(crate) fn consolidate(members: &[&Memory], text: String) -> Memory {
    let head = lead(members);
    let mut m = Memory::new(head.user_id.clone(), text, head.memory_type);
    m.session_id = head.session_id.clone();
    m.agent_id = head.agent_id.clone();
    m.importance = members
        .iter()
        .map(|x| x.importance)
        .fold(f64::MIN, f64::max);
    m.confidence = members
        .iter()
        .map(|x| x.confidence)
        .fold(f64::MAX, f64::min);
    m.tags = union_tags(members.iter().copied());
    m.access_count = members.iter().map(|x| x.access_count).sum();
    m.expires_at = earliest_expiry(members.iter().copied());
    m.metadata.insert(
        "consolidated_from".into(),
        Value::Array(
            members
                .iter()
                .map(|x| Value::String(x.id.clone()))
                .collect(),
        ),
    );
    m
}

impl Task for ConsolidationTask {
    const NAME: &'static str = "consolidation_task";
    type Args = ConsolidationArgs;
    type Output = ConsolidationResult;

    fn options() -> TaskOptions {
        options("memory_ops", "memory.consolidate", 300, 600)
    }

    async fn run(
        &self,
        ctx: &TaskContext,
        args: ConsolidationArgs,
    ) -> Result<ConsolidationResult, TaskError> {
        let embedder = self.services.embedder().clone();
        let threshold = check_threshold(
            "similarity_threshold",
            args.similarity_threshold,
            embedder.thresholds().consolidation,
        )?;
        let store = self.services.store.as_ref();
        require_user(store, &args.user_id).await?;
        let user = args.user_id.clone();
        with_user_lease(
            store,
            ctx,
            &user,
            LEASE,
            self.consolidate(ctx, args, threshold),
        )
        .await
    }
}

/// How long the user's lease is held at most: the task's hard time limit.
const LEASE: std::time::Duration = std::time::Duration::from_secs(600);

impl ConsolidationTask {
    async fn consolidate(
        &self,
        ctx: &TaskContext,
        args: ConsolidationArgs,
        threshold: f32,
    ) -> Result<ConsolidationResult, TaskError> {
        let store = self.services.store.as_ref();
        let embedder = self.services.embedder().clone();
        let memories: Vec<Memory> = load_user(store, &args.user_id)
            .await
            .map_err(store_error)?
            .into_iter()
            .filter(|m| !m.is_archived)
            .collect();
        // The members are written back archived with the vectors they had.
        let rows = current_vectors(&memories, embedder.as_ref()).await?;
        let threads = self.services.threads;
        let pairs = pairs_of(ctx, embedder.dimension(), rows, move |stop| {
            Search::at_least(threshold).threads(threads).stop_on(stop)
        })
        .await?;

        let mut neighbours: HashMap<usize, Vec<(usize, f32)>> = HashMap::new();
        for p in &pairs {
            neighbours
                .entry(p.i as usize)
                .or_default()
                .push((p.j as usize, p.score));
            neighbours
                .entry(p.j as usize)
                .or_default()
                .push((p.i as usize, p.score));
        }
        let mut order: Vec<usize> = (0..memories.len()).collect();
        order.sort_by(|&a, &b| {
            memories[b]
                .created_at
                .cmp(&memories[a].created_at)
                .then(memories[a].id.cmp(&memories[b].id))
        });
        let mut taken = vec![false; memories.len()];
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for seed in order {
            if taken[seed] {
                continue;
            }
            let mut near: Vec<(usize, f32)> = neighbours
                .get(&seed)
                .map(|n| n.iter().copied().filter(|(j, _)| !taken[*j]).collect())
                .unwrap_or_default();
            if near.is_empty() {
                continue;
            }
            near.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let mut group = vec![seed];
            group.extend(near.into_iter().map(|(j, _)| j));
            for &g in &group {
                taken[g] = true;
            }
            groups.push(group);
        }

        let mut created = Vec::new();
        let (mut llm_merges, mut heuristic_merges) = (0u64, 0u64);
        for group in &groups {
            let members: Vec<&Memory> = group.iter().map(|&i| &memories[i]).collect();
            let texts: Vec<String> = members.iter().map(|m| m.text.clone()).collect();
            let merged = match &self.services.llm {
                Some(llm) => match llm.merge(&texts).await {
                    Ok(t) => Some(t),
                    Err(e) => {
                        tracing::warn!(user = %args.user_id, error = %e, "consolidation: language model failed, using the heuristic");
                        None
                    }
                },
                None => None,
            };
            let text = match merged {
                Some(t) => {
                    llm_merges += 1;
                    t
                }
                None => {
                    heuristic_merges += 1;
                    let head = lead(&members);
                    let texts: Vec<String> = std::iter::once(head)
                        .chain(members.iter().copied().filter(|m| m.id != head.id))
                        .map(|m| m.text.clone())
                        .collect();
                    merge_distinct_sentences(&texts)
                }
            };
            created.push(consolidate(&members, text));
        }
        let vectors = embed_texts(
            embedder.as_ref(),
            created.iter().map(|m| m.text.clone()).collect(),
        )
        .await?;
        for (m, v) in created.iter_mut().zip(vectors) {
            m.embedding = Some(v);
            m.embed_model = Some(embedder.model().to_string());
            m.updated_at = Utc::now();
        }
        let (mut consolidated, mut conflicts) = (0u64, 0u64);
        let mut written = Vec::with_capacity(created.len());
        for (group, new) in groups.iter().zip(created) {
            let mut changes = ChangeSet::new();
            for &i in group {
                let mut member = memories[i].clone();
                member.is_archived = true;
                member
                    .metadata
                    .insert("consolidated_into".into(), Value::String(new.id.clone()));
                member.updated_at = Utc::now();
                changes = changes.replace(member);
            }
            let id = new.id.clone();
            if apply_unless_changed(store, &args.user_id, changes.create(new)).await? {
                consolidated += group.len() as u64;
                written.push(id);
            } else {
                conflicts += 1;
            }
        }
        Ok(ConsolidationResult {
            user_id: args.user_id,
            memories_scanned: memories.len() as u64,
            groups_found: groups.len() as u64,
            memories_consolidated: consolidated,
            memories_created: written.len() as u64,
            created_ids: written,
            llm_merges,
            heuristic_merges,
            conflicts_skipped: conflicts,
        })
    }
}
