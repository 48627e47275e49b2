//! `consolidate_procedural_rules`: merges a user's redundant procedural rules and keeps
//! the best `PROCEDURAL_RULE_MAX_COUNT`.

use std::collections::HashMap;

use chrono::Utc;
use hippo_queue_core::{Task, TaskContext, TaskError, TaskOptions};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{MemoryServices, embed_texts, invalid, options, store_error};
use crate::embed::normalize_text;
use crate::model::ProceduralRule;
use crate::similarity::{Matrix, Search, similar_groups};
use crate::store::load_rules;

/// Most rules kept per user (HippocampAI's `PROCEDURAL_RULE_MAX_COUNT`).
pub const PROCEDURAL_RULE_MAX_COUNT: usize = 50;
/// Rules at or above this similarity are offered to the language model for merging.
const SEMANTIC_MERGE: f32 = 0.85;

/// Arguments of `consolidate_procedural_rules`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProceduralArgs {
    /// Whose rules.
    pub user_id: String,
}

/// Result of `consolidate_procedural_rules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProceduralResult {
    /// Whose rules.
    pub user_id: String,
    /// Rules removed: merged into another or dropped beyond the cap.
    pub consolidated_count: u64,
    /// Active rules before.
    pub rules_before: u64,
    /// Active rules after.
    pub rules_after: u64,
    /// Rules dropped because the cap was reached.
    pub dropped_over_cap: u64,
    /// Groups merged by the language model.
    pub llm_merges: u64,
}

/// Consolidates a user's procedural rules (queue `background`, routing key
/// `background.procedural`).
///
/// 1. Rules whose normalised text repeats (case, punctuation and spacing aside) are
///    merged into the best of them (highest `confidence * success_rate`), which gets
///    the union of their `source_interactions` and the highest confidence.
/// 2. With a language model, rules at or above 0.85 similarity are merged into one
///    rule with the model's text; when the call fails, the group is left as it is.
/// 3. Only the best `PROCEDURAL_RULE_MAX_COUNT` (50) active rules by
///    `confidence * success_rate` are kept; the others are deleted.
///
/// Inactive rules are left alone. A user with neither rules nor memories is unknown.
pub struct ConsolidateProceduralRulesTask {
    services: MemoryServices,
}

impl ConsolidateProceduralRulesTask {
    /// The task on these services.
    pub fn new(services: MemoryServices) -> Self {
        ConsolidateProceduralRulesTask { services }
    }
}

fn better(a: &ProceduralRule, b: &ProceduralRule) -> std::cmp::Ordering {
    b.score()
        .total_cmp(&a.score())
        .then(a.created_at.cmp(&b.created_at))
        .then(a.id.cmp(&b.id))
}

/// Merges rules into the first one (the best).
fn absorb(best: &mut ProceduralRule, others: &[ProceduralRule]) {
    for o in others {
        for s in &o.source_interactions {
            if !best.source_interactions.contains(s) {
                best.source_interactions.push(s.clone());
            }
        }
        best.confidence = best.confidence.max(o.confidence);
    }
    let mut merged: Vec<String> = best
        .metadata
        .get("merged_from")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    merged.extend(others.iter().map(|o| o.id.clone()));
    best.metadata.insert("merged_from".into(), json!(merged));
    best.updated_at = Utc::now();
}

impl Task for ConsolidateProceduralRulesTask {
    const NAME: &'static str = "consolidate_procedural_rules";
    type Args = ProceduralArgs;
    type Output = ProceduralResult;

    fn options() -> TaskOptions {
        options("background", "background.procedural", 300, 600)
    }

    async fn run(
        &self,
        _ctx: &TaskContext,
        args: ProceduralArgs,
    ) -> Result<ProceduralResult, TaskError> {
        let store = self.services.store.as_ref();
        if args.user_id.trim().is_empty() {
            return Err(invalid("user_id is empty"));
        }
        let all = load_rules(store, &args.user_id)
            .await
            .map_err(store_error)?;
        if all.is_empty()
            && !store
                .user_exists(&args.user_id)
                .await
                .map_err(store_error)?
        {
            return Err(invalid(format!(
                "unknown user {:?}: no procedural rules or memories are stored for this user",
                args.user_id
            )));
        }
        let mut active: Vec<ProceduralRule> = all.into_iter().filter(|r| r.active).collect();
        let before = active.len() as u64;
        let mut removed: Vec<String> = Vec::new();
        let mut updated: HashMap<String, ProceduralRule> = HashMap::new();

        // 1. Exact repeats of the normalised text.
        active.sort_by(better);
        let mut by_text: HashMap<String, usize> = HashMap::new();
        let mut kept: Vec<ProceduralRule> = Vec::new();
        let mut repeats: Vec<Vec<ProceduralRule>> = Vec::new();
        for r in active {
            match by_text.get(&normalize_text(&r.rule_text)) {
                Some(&k) => repeats[k].push(r),
                None => {
                    by_text.insert(normalize_text(&r.rule_text), kept.len());
                    kept.push(r);
                    repeats.push(Vec::new());
                }
            }
        }
        for (best, others) in kept.iter_mut().zip(&repeats) {
            if !others.is_empty() {
                absorb(best, others);
                removed.extend(others.iter().map(|o| o.id.clone()));
                updated.insert(best.id.clone(), best.clone());
            }
        }

        // 2. Semantic merges, with a language model only.
        let mut llm_merges = 0u64;
        if let Some(llm) = &self.services.llm
            && kept.len() > 1
        {
            let embedder = self.services.embedder();
            let vectors = embed_texts(
                embedder.as_ref(),
                kept.iter().map(|r| r.rule_text.clone()).collect(),
            )
            .await?;
            let m = Matrix::from_rows(embedder.dimension(), vectors.iter().map(Vec::as_slice))
                .map_err(super::similarity_error)?;
            let groups = similar_groups(
                &m,
                &Search::at_least(SEMANTIC_MERGE).threads(self.services.threads),
            )
            .map_err(super::similarity_error)?;
            let mut gone = vec![false; kept.len()];
            for g in groups {
                let texts: Vec<String> = g.iter().map(|&i| kept[i].rule_text.clone()).collect();
                match llm.merge(&texts).await {
                    Ok(text) => {
                        // `kept` is best first, so g[0] is the group's best rule.
                        let others: Vec<ProceduralRule> =
                            g[1..].iter().map(|&i| kept[i].clone()).collect();
                        let best = &mut kept[g[0]];
                        best.rule_text = text;
                        absorb(best, &others);
                        updated.insert(best.id.clone(), best.clone());
                        for &i in &g[1..] {
                            gone[i] = true;
                            removed.push(kept[i].id.clone());
                            updated.remove(&kept[i].id);
                        }
                        llm_merges += 1;
                    }
                    Err(e) => {
                        tracing::warn!(user = %args.user_id, error = %e, "procedural rules: language model failed, group left unmerged");
                    }
                }
            }
            kept = kept
                .into_iter()
                .zip(gone)
                .filter(|(_, g)| !g)
                .map(|(r, _)| r)
                .collect();
        }

        // 3. The cap, by confidence x success rate.
        kept.sort_by(better);
        let cap = self.services.procedural_rule_max_count;
        let mut dropped = 0u64;
        if kept.len() > cap {
            for r in kept.drain(cap..) {
                updated.remove(&r.id);
                removed.push(r.id);
                dropped += 1;
            }
        }

        let put: Vec<ProceduralRule> = updated.into_values().collect();
        store
            .put_rules(&args.user_id, &put)
            .await
            .map_err(store_error)?;
        let n = store
            .delete_rules(&args.user_id, &removed)
            .await
            .map_err(store_error)?;
        Ok(ProceduralResult {
            user_id: args.user_id,
            consolidated_count: n,
            rules_before: before,
            rules_after: kept.len() as u64,
            dropped_over_cap: dropped,
            llm_merges,
        })
    }
}
