//! `auto_summarization_task`: rolls a user's old memories into `summary` memories,
//! in batches of 5, up to 3 levels.

use chrono::{DateTime, Utc};
use hippo_queue_core::{Task, TaskContext, TaskError, TaskOptions};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    MemoryServices, apply_unless_changed, earliest_expiry, embed_texts, invalid, options,
    require_user, store_error, union_tags, with_user_lease,
};
use crate::model::{Memory, MemoryType};
use crate::store::{ChangeSet, load_user};
use crate::text::join_first_sentences;

/// Memories per summary.
pub const SUMMARY_BATCH: usize = 5;
/// Most summary levels.
pub const SUMMARY_LEVELS: u64 = 3;

fn default_min_age() -> u32 {
    30
}

/// Arguments of `auto_summarization_task`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummarizationArgs {
    /// Whose memories.
    pub user_id: String,
    /// Only memories at least this old are summarised (default 30).
    #[serde(default = "default_min_age")]
    pub min_age_days: u32,
}

impl SummarizationArgs {
    /// Arguments with the default age.
    pub fn new(user_id: impl Into<String>) -> Self {
        SummarizationArgs {
            user_id: user_id.into(),
            min_age_days: default_min_age(),
        }
    }
}

/// The storage tier of a memory, by age and use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Accessed 10 times or more, or at most 7 days old.
    Hot,
    /// At most 30 days old and accessed 3 times or more.
    Warm,
    /// At most 90 days old.
    Cold,
    /// Older.
    Archived,
}

impl Tier {
    /// The tier of a memory at `now`.
    pub fn of(m: &Memory, now: DateTime<Utc>) -> Tier {
        let age = m.age_days(now);
        if m.access_count >= 10 || age <= 7.0 {
            Tier::Hot
        } else if age <= 30.0 && m.access_count >= 3 {
            Tier::Warm
        } else if age <= 90.0 {
            Tier::Cold
        } else {
            Tier::Archived
        }
    }
}

/// Memories per tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierCounts {
    /// Hot.
    pub hot: u64,
    /// Warm.
    pub warm: u64,
    /// Cold.
    pub cold: u64,
    /// Archived.
    pub archived: u64,
}

impl TierCounts {
    pub(crate) fn add(&mut self, t: Tier) {
        match t {
            Tier::Hot => self.hot += 1,
            Tier::Warm => self.warm += 1,
            Tier::Cold => self.cold += 1,
            Tier::Archived => self.archived += 1,
        }
    }
}

/// Result of `auto_summarization_task`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummarizationResult {
    /// Whose memories.
    pub user_id: String,
    /// Memories (and lower-level summaries) rolled into a summary and archived.
    pub memories_summarized: u64,
    /// Summaries written.
    pub summaries_created: u64,
    /// The user's memories (not summaries) per tier, before the run.
    pub tiers: TierCounts,
    /// Summaries created per level (index 0 = level 1).
    pub summaries_by_level: Vec<u64>,
    /// Their ids.
    pub summary_ids: Vec<String>,
    /// Summaries whose text came from the heuristic (no model, or the call failed).
    pub heuristic_summaries: u64,
    /// Batches skipped because a member changed while the task ran.
    #[serde(default)]
    pub conflicts_skipped: u64,
}

/// Summarises a user's old memories (queue `background`, routing key
/// `background.summarize`).
///
/// Level 1: memories at least `min_age_days` old that are not hot, not archived and
/// not summaries, oldest first, in batches of 5 (a last batch of 2-4 too). Levels 2
/// and 3: unarchived summaries of the level below, in full batches of 5. Each summary
/// is a `summary` memory whose text comes from the language model or, without one,
/// from the first sentence of each member; it records `summary_level` and
/// `summarized_from`, and inherits the earliest `expires_at` of its members.
/// Summarised members are kept, archived (`is_archived`), with `summarized_into` set:
/// they are the source of truth behind a lossy summary. Each summary is written with
/// its archived members in one atomic change, made only if no member changed since
/// it was read.
pub struct AutoSummarizationTask {
    services: MemoryServices,
}

impl AutoSummarizationTask {
    /// The task on these services.
    pub fn new(services: MemoryServices) -> Self {
        AutoSummarizationTask { services }
    }
}

fn level_of(m: &Memory) -> u64 {
    m.metadata
        .get("summary_level")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

impl Task for AutoSummarizationTask {
    const NAME: &'static str = "auto_summarization_task";
    type Args = SummarizationArgs;
    type Output = SummarizationResult;

    fn options() -> TaskOptions {
        options("background", "background.summarize", 300, 600)
    }

    async fn run(
        &self,
        ctx: &TaskContext,
        args: SummarizationArgs,
    ) -> Result<SummarizationResult, TaskError> {
        if args.min_age_days > 36_500 {
            return Err(invalid(format!(
                "min_age_days {} is more than a century",
                args.min_age_days
            )));
        }
        let store = self.services.store.as_ref();
        require_user(store, &args.user_id).await?;
        let user = args.user_id.clone();
        with_user_lease(store, ctx, &user, LEASE, self.summarize(args)).await
    }
}

/// How long the user's lease is held at most: the task's hard time limit.
const LEASE: std::time::Duration = std::time::Duration::from_secs(600);

impl AutoSummarizationTask {
    /// The summary text of a batch, and whether it came from the heuristic.
    async fn summary_text(&self, user: &str, texts: &[String]) -> (String, bool) {
        match &self.services.llm {
            Some(llm) => match llm.summarize(texts).await {
                Ok(t) => (t, false),
                Err(e) => {
                    tracing::warn!(user, error = %e, "summarization: language model failed, using the heuristic");
                    (join_first_sentences(texts), true)
                }
            },
            None => (join_first_sentences(texts), true),
        }
    }

    async fn summarize(&self, args: SummarizationArgs) -> Result<SummarizationResult, TaskError> {
        let store = self.services.store.as_ref();
        let embedder = self.services.embedder();
        let now = Utc::now();
        let mut memories = load_user(store, &args.user_id).await.map_err(store_error)?;
        memories.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));

        let mut tiers = TierCounts::default();
        for m in memories
            .iter()
            .filter(|m| m.memory_type != MemoryType::Summary)
        {
            tiers.add(Tier::of(m, now));
        }

        let min_age = f64::from(args.min_age_days);
        let mut by_level = vec![0u64; SUMMARY_LEVELS as usize];
        let (mut heuristic, mut summarized, mut conflicts) = (0u64, 0u64, 0u64);
        let mut ids = Vec::new();
        // Summaries written by this run and not yet archived, as stored.
        let mut fresh: Vec<Memory> = Vec::new();

        // Level 1 candidates.
        let mut pool: Vec<Memory> = memories
            .iter()
            .filter(|m| {
                !m.is_archived
                    && m.memory_type != MemoryType::Summary
                    && m.age_days(now) >= min_age
                    && Tier::of(m, now) != Tier::Hot
            })
            .cloned()
            .collect();
        for level in 1..=SUMMARY_LEVELS {
            if level > 1 {
                // Summaries of the level below, existing ones first.
                let mut below: Vec<Memory> = memories
                    .iter()
                    .filter(|m| {
                        !m.is_archived
                            && m.memory_type == MemoryType::Summary
                            && level_of(m) == level - 1
                    })
                    .cloned()
                    .collect();
                below.extend(fresh.iter().filter(|m| level_of(m) == level - 1).cloned());
                pool = below;
            }
            let full = pool.len() / SUMMARY_BATCH * SUMMARY_BATCH;
            let take = if level == 1 && pool.len() - full >= 2 {
                pool.len()
            } else {
                full
            };
            // One write per summary: it and its archived members, atomically, only if
            // no member changed since it was read.
            for batch in pool[..take].chunks(SUMMARY_BATCH) {
                let texts: Vec<String> = batch.iter().map(|m| m.text.clone()).collect();
                let (text, by_heuristic) = self.summary_text(&args.user_id, &texts).await;
                let mut s = Memory::new(args.user_id.clone(), text, MemoryType::Summary);
                s.importance = batch.iter().map(|m| m.importance).fold(f64::MIN, f64::max);
                s.confidence = batch.iter().map(|m| m.confidence).fold(f64::MAX, f64::min);
                s.tags = union_tags(batch.iter());
                s.expires_at = earliest_expiry(batch.iter());
                s.metadata.insert("summary_level".into(), json!(level));
                s.metadata.insert(
                    "summarized_from".into(),
                    json!(batch.iter().map(|m| m.id.clone()).collect::<Vec<_>>()),
                );
                let mut v = embed_texts(embedder.as_ref(), vec![s.text.clone()]).await?;
                s.embedding = v.pop();
                s.embed_model = Some(embedder.model().to_string());
                let mut changes = ChangeSet::new();
                for m in batch {
                    let mut archived = m.clone();
                    archived.is_archived = true;
                    archived
                        .metadata
                        .insert("summarized_into".into(), json!(s.id.clone()));
                    archived.updated_at = now;
                    changes = changes.replace(archived);
                }
                if !apply_unless_changed(store, &args.user_id, changes.create(s.clone())).await? {
                    conflicts += 1;
                    continue;
                }
                fresh.retain(|f| !batch.iter().any(|m| m.id == f.id));
                s.version = 1;
                summarized += batch.len() as u64;
                heuristic += u64::from(by_heuristic);
                by_level[(level - 1) as usize] += 1;
                ids.push(s.id.clone());
                fresh.push(s);
            }
        }

        Ok(SummarizationResult {
            user_id: args.user_id,
            memories_summarized: summarized,
            summaries_created: ids.len() as u64,
            tiers,
            summaries_by_level: by_level,
            summary_ids: ids,
            heuristic_summaries: heuristic,
            conflicts_skipped: conflicts,
        })
    }
}
