//! `compression_task`: shortens a user's older memories by the ratio of their tier.

use chrono::Utc;
use hippo_queue_core::{Task, TaskContext, TaskError, TaskOptions};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::summarization::{Tier, TierCounts};
use super::{
    MemoryServices, apply_unless_changed, embed_texts, mib, options, require_user, store_error,
    with_user_lease,
};
use crate::history::keep_original;
use crate::model::Memory;
use crate::store::{ChangeSet, load_user};
use crate::text::{compress_words, word_count};

/// Arguments of `compression_task`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompressionArgs {
    /// Whose memories.
    pub user_id: String,
}

impl CompressionArgs {
    /// Arguments for a user.
    pub fn new(user_id: impl Into<String>) -> Self {
        CompressionArgs {
            user_id: user_id.into(),
        }
    }
}

/// Result of `compression_task`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompressionResult {
    /// Whose memories.
    pub user_id: String,
    /// Memories shortened.
    pub memories_compressed: u64,
    /// Their tokens before (`text_length / 4`).
    pub tokens_before: u64,
    /// Their tokens after.
    pub tokens_after: u64,
    /// Change in stored bytes, MiB, as it is: the original text is kept beside the
    /// compressed one, so this is usually negative (compression shortens what is
    /// read, not what is stored).
    pub space_saved_mb: f64,
    /// Memories compressed per tier.
    pub tiers: TierCounts,
    /// Memories whose text came from the heuristic (no model, or the call failed).
    pub heuristic_compressions: u64,
    /// Memories skipped because they changed while the task ran.
    #[serde(default)]
    pub conflicts_skipped: u64,
}

/// The share of words a tier keeps: hot 1.0, warm 0.8, cold 0.5, archived 0.25.
///
/// ```
/// use hippo_memory_tasks::tasks::{Tier, compression_ratio};
/// assert_eq!(compression_ratio(Tier::Cold), 0.5);
/// ```
pub fn compression_ratio(tier: Tier) -> f64 {
    match tier {
        Tier::Hot => 1.0,
        Tier::Warm => 0.8,
        Tier::Cold => 0.5,
        Tier::Archived => 0.25,
    }
}

/// Compresses a user's memories (queue `background`, routing key
/// `background.compress`).
///
/// Each memory's tier ratio is compared with the ratio it was last compressed to
/// (`metadata.compression_ratio`, 1.0 when never): only a smaller ratio compresses it
/// again, to `ratio / previous` of its current words, so running twice changes
/// nothing. The language model rewrites it to that many words; without one, or when
/// the call fails, filler words are dropped and the text is cut to that many words.
/// Summaries, archived memories (the originals behind summaries) and hot memories are
/// left alone. The first original text is kept in `metadata.original_text`
/// ([`history::restore_original`](crate::history::restore_original) undoes it).
/// Shortened memories are re-embedded; each is written only if it did not change
/// since it was read.
pub struct CompressionTask {
    services: MemoryServices,
}

impl CompressionTask {
    /// The task on these services.
    pub fn new(services: MemoryServices) -> Self {
        CompressionTask { services }
    }
}

fn previous_ratio(m: &Memory) -> f64 {
    m.metadata
        .get("compression_ratio")
        .and_then(Value::as_f64)
        .unwrap_or(1.0)
}

impl Task for CompressionTask {
    const NAME: &'static str = "compression_task";
    type Args = CompressionArgs;
    type Output = CompressionResult;

    fn options() -> TaskOptions {
        options("background", "background.compress", 300, 600)
    }

    async fn run(
        &self,
        ctx: &TaskContext,
        args: CompressionArgs,
    ) -> Result<CompressionResult, TaskError> {
        let store = self.services.store.as_ref();
        require_user(store, &args.user_id).await?;
        let user = args.user_id.clone();
        with_user_lease(store, ctx, &user, LEASE, self.compress(args)).await
    }
}

/// How long the user's lease is held at most: the task's hard time limit.
const LEASE: std::time::Duration = std::time::Duration::from_secs(600);

impl CompressionTask {
    async fn compress(&self, args: CompressionArgs) -> Result<CompressionResult, TaskError> {
        let store = self.services.store.as_ref();
        let now = Utc::now();
        let memories = load_user(store, &args.user_id).await.map_err(store_error)?;
        let mut out = CompressionResult {
            user_id: args.user_id.clone(),
            memories_compressed: 0,
            tokens_before: 0,
            tokens_after: 0,
            space_saved_mb: 0.0,
            tiers: TierCounts::default(),
            heuristic_compressions: 0,
            conflicts_skipped: 0,
        };
        let mut changed = Vec::new();
        for m in memories {
            if m.memory_type == crate::model::MemoryType::Summary || m.is_archived {
                continue;
            }
            let tier = Tier::of(&m, now);
            let ratio = compression_ratio(tier);
            let previous = previous_ratio(&m);
            if ratio >= previous {
                continue;
            }
            let relative = ratio / previous;
            let words = word_count(&m.text);
            let target = ((words as f64 * relative).ceil() as usize).max(1);
            let text = match &self.services.llm {
                Some(llm) => match llm.compress(&m.text, target).await {
                    Ok(t) if word_count(&t) <= target && t.len() < m.text.len() => Some(t),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::warn!(user = %args.user_id, error = %e, "compression: language model failed, using the heuristic");
                        None
                    }
                },
                None => None,
            };
            let heuristic = text.is_none();
            let text = text.unwrap_or_else(|| compress_words(&m.text, relative));
            let mut c = m.clone();
            keep_original(&mut c);
            c.text = text;
            c.metadata.insert("compression_ratio".into(), json!(ratio));
            c.metadata
                .entry("original_token_count".to_string())
                .or_insert(json!(m.token_count()));
            c.updated_at = now;
            changed.push((m, c, tier, heuristic));
        }
        let embedder = self.services.embedder();
        let vectors = embed_texts(
            embedder.as_ref(),
            changed.iter().map(|(_, c, _, _)| c.text.clone()).collect(),
        )
        .await?;
        let mut bytes: i64 = 0;
        for ((before, mut c, tier, heuristic), v) in changed.into_iter().zip(vectors) {
            c.embedding = Some(v);
            c.embed_model = Some(embedder.model().to_string());
            let size = c.stored_size();
            let tokens = c.token_count();
            if !apply_unless_changed(store, &args.user_id, ChangeSet::new().replace(c)).await? {
                out.conflicts_skipped += 1;
                continue;
            }
            out.memories_compressed += 1;
            out.heuristic_compressions += u64::from(heuristic);
            out.tokens_before += before.token_count() as u64;
            out.tokens_after += tokens as u64;
            out.tiers.add(tier);
            bytes += before.stored_size() as i64 - size as i64;
        }
        out.space_saved_mb = mib(bytes);
        Ok(out)
    }
}
