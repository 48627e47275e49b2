//! `compression_task`: shortens a user's older memories by the ratio of their tier.

use chrono::Utc;
use hippo_queue_core::{Task, TaskContext, TaskError, TaskOptions};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::summarization::{Tier, TierCounts};
use super::{MemoryServices, WRITE_CHUNK, embed_texts, mib, options, require_user, store_error};
use crate::model::Memory;
use crate::store::{ChangeSet, load_user};
use crate::text::{compress_words, word_count};

/// Arguments of `compression_task`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompressionArgs {
    /// Whose memories.
    pub user_id: String,
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
    /// Text bytes saved, MiB.
    pub space_saved_mb: f64,
    /// Memories compressed per tier.
    pub tiers: TierCounts,
    /// Memories whose text came from the heuristic (no model, or the call failed).
    pub heuristic_compressions: u64,
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
/// Summaries and hot memories are left alone. Shortened memories are re-embedded.
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
        _ctx: &TaskContext,
        args: CompressionArgs,
    ) -> Result<CompressionResult, TaskError> {
        let store = self.services.store.as_ref();
        require_user(store, &args.user_id).await?;
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
        };
        let mut changed = Vec::new();
        let mut bytes_saved = 0usize;
        for m in memories {
            if m.memory_type == crate::model::MemoryType::Summary {
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
            let text = text.unwrap_or_else(|| {
                out.heuristic_compressions += 1;
                compress_words(&m.text, relative)
            });
            let mut c = m.clone();
            c.text = text;
            c.metadata.insert("compression_ratio".into(), json!(ratio));
            c.metadata
                .entry("original_token_count".to_string())
                .or_insert(json!(m.token_count()));
            c.updated_at = now;
            out.memories_compressed += 1;
            out.tokens_before += m.token_count() as u64;
            out.tokens_after += c.token_count() as u64;
            out.tiers.add(tier);
            bytes_saved += m.text.len().saturating_sub(c.text.len());
            changed.push(c);
        }
        let embedder = self.services.embedder();
        let vectors = embed_texts(
            embedder.as_ref(),
            changed.iter().map(|m| m.text.clone()).collect(),
        )
        .await?;
        for (m, v) in changed.iter_mut().zip(vectors) {
            m.embedding = Some(v);
            m.embed_model = Some(embedder.model().to_string());
        }
        for chunk in changed.chunks(WRITE_CHUNK) {
            store
                .apply(
                    &args.user_id,
                    ChangeSet {
                        put: chunk.to_vec(),
                        delete: Vec::new(),
                    },
                )
                .await
                .map_err(store_error)?;
        }
        out.space_saved_mb = mib(bytes_saved);
        Ok(out)
    }
}
