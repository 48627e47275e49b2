//! consolidation, health check, summarisation, compression and procedural rules on
//! both stores, with their bad arguments; an LLM that fails falls back.

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::*;
use hippo_memory_tasks::llm::{Llm, LlmError};
use hippo_memory_tasks::model::{MemoryType, ProceduralRule};
use hippo_memory_tasks::store::load_rules;
use hippo_memory_tasks::tasks::*;

/// A language model that is always down.
struct Down;

#[async_trait]
impl Llm for Down {
    fn name(&self) -> &str {
        "down"
    }
    async fn complete(&self, _: &str, _: &str) -> Result<String, LlmError> {
        Err(LlmError::Unavailable("connection refused".into()))
    }
}

/// A language model that answers with a fixed text.
struct Fixed(&'static str);

#[async_trait]
impl Llm for Fixed {
    fn name(&self) -> &str {
        "fixed"
    }
    async fn complete(&self, _: &str, _: &str) -> Result<String, LlmError> {
        Ok(self.0.to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consolidation_groups_and_falls_back_when_the_llm_fails() {
    for b in backends().await {
        let mut a = memory("u", "Priya planned a ceramics class for the spring", 9, 2);
        a.importance = 8.0;
        a.tags = vec!["hobby".into()];
        a.confidence = 0.6;
        let mut c = memory("u", "Priya planned a ceramics class for the spring.", 3, 1);
        c.tags = vec!["art".into()];
        c.session_id = Some("s1".into());
        let d = memory("u", "priya planned a ceramics class for spring", 1, 4);
        let lone = memory("u", "Liam cancelled the dentist appointment", 1, 0);
        for m in [&a, &c, &d, &lone] {
            b.store.put(m).await.unwrap();
        }
        let services = MemoryServices::new(b.store.clone()).llm(Arc::new(Down));
        let app = app(&services);
        let out = ok(
            run::<ConsolidationTask>(&app, ConsolidationArgs::new("u")).await,
            b.label,
        );
        assert_eq!(
            (
                out.groups_found,
                out.memories_consolidated,
                out.memories_created
            ),
            (1, 3, 1)
        );
        assert_eq!(
            (out.llm_merges, out.heuristic_merges),
            (0, 1),
            "[{}]",
            b.label
        );
        let new = b
            .store
            .get("u", &out.created_ids[0])
            .await
            .unwrap()
            .unwrap();
        // every distinct sentence (case and punctuation aside), max importance, min
        // confidence, union, sum, and the members kept, archived
        assert_eq!(
            new.text,
            format!("{}. priya planned a ceramics class for spring.", a.text)
        );
        assert_eq!(new.importance, 8.0);
        assert_eq!(new.confidence, 0.6);
        let mut tags = new.tags.clone();
        tags.sort();
        assert_eq!(tags, ["art", "hobby"]);
        assert_eq!(new.access_count, 7);
        let mut from = new.metadata_list("consolidated_from");
        from.sort();
        let mut want = vec![a.id.clone(), c.id.clone(), d.id.clone()];
        want.sort();
        assert_eq!(from, want);
        assert_eq!(b.store.count_by_user("u").await.unwrap(), 5);
        for m in [&a, &c, &d] {
            let kept = b.store.get("u", &m.id).await.unwrap().unwrap();
            assert!(kept.is_archived, "[{}]", b.label);
            assert_eq!(kept.metadata["consolidated_into"], new.id.as_str());
        }

        // with a working model, its text is used
        for t in [
            "Hana visited the old lighthouse",
            "Hana visited the old lighthouse!",
        ] {
            b.store.put(&memory("v", t, 1, 0)).await.unwrap();
        }
        let app2 = common::app(
            &MemoryServices::new(b.store.clone())
                .llm(Arc::new(Fixed("Hana visited the old lighthouse."))),
        );
        let out = ok(
            run::<ConsolidationTask>(&app2, ConsolidationArgs::new("v")).await,
            b.label,
        );
        assert_eq!(out.llm_merges, 1);
        let new = b
            .store
            .get("v", &out.created_ids[0])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(new.text, "Hana visited the old lighthouse.");

        rejected(
            run::<ConsolidationTask>(&app, ConsolidationArgs::new("nobody")).await,
            "unknown user",
            b.label,
        );
        let mut bad = ConsolidationArgs::new("u");
        bad.similarity_threshold = Some(2.0);
        rejected(
            run::<ConsolidationTask>(&app, bad).await,
            "between 0 and 1",
            b.label,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_reports_infrastructure_and_scores() {
    for b in backends().await {
        let mut m1 = memory("u", "Keiko reviewed the quarterly tax report", 100, 0);
        m1.confidence = 0.2;
        let m2 = memory("u", "Keiko reviewed the quarterly tax report", 2, 12);
        let mut m3 = memory("u", "Jonas wants to learn the cello", 1, 3);
        m3.memory_type = MemoryType::Goal;
        m3.tags = vec!["music".into()];
        for m in [&m1, &m2, &m3] {
            b.store.put(m).await.unwrap();
        }
        let app = app(&MemoryServices::new(b.store.clone()));
        let out = ok(
            run::<HealthCheckTask>(
                &app,
                HealthCheckArgs {
                    user_id: Some("u".into()),
                },
            )
            .await,
            b.label,
        );
        assert_eq!(out.status, "healthy", "{:?}", out.checks);
        let names: Vec<&str> = out.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["broker", "store", "embedder", "llm"]);
        assert_eq!(out.checks[0].status, "ok", "{:?}", out.checks[0]);
        let r = out.report.expect("a report");
        assert_eq!(r.total_memories, 3);
        assert_eq!(r.stale_memories, 1);
        assert_eq!(r.exact_duplicate_clusters, 1);
        assert!(r.overall_score > 0.0 && r.overall_score <= 100.0);
        assert_eq!(r.status, HealthStatus::of(r.overall_score));
        assert_eq!(r.alert, r.overall_score < 60.0);
        assert!(
            r.recommendations
                .iter()
                .any(|x| x.contains("deduplication_task"))
        );
        assert_eq!(r.type_distribution["goal"], 1);

        // without a user: infrastructure only
        let out = ok(
            run::<HealthCheckTask>(&app, HealthCheckArgs { user_id: None }).await,
            b.label,
        );
        assert!(out.report.is_none());
        rejected(
            run::<HealthCheckTask>(
                &app,
                HealthCheckArgs {
                    user_id: Some("ghost".into()),
                },
            )
            .await,
            "unknown user",
            b.label,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summarization_tiers_batches_and_levels() {
    for b in backends().await {
        // 27 old memories (summarised), 1 old but hot, 3 recent
        for k in 0..27 {
            let m = memory(
                "u",
                &format!("Old note {k}. Details follow here."),
                40 + k,
                1,
            );
            b.store.put(&m).await.unwrap();
        }
        b.store
            .put(&memory("u", "old but hot", 200, 15))
            .await
            .unwrap();
        for k in 0..3 {
            b.store
                .put(&memory("u", &format!("recent {k}"), 1, 0))
                .await
                .unwrap();
        }
        let app = app(&MemoryServices::new(b.store.clone()).llm(Arc::new(Down)));
        let out = ok(
            run::<AutoSummarizationTask>(&app, SummarizationArgs::new("u")).await,
            b.label,
        );
        // level 1: 27 -> 5 full batches + a batch of 2 = 6 summaries; level 2: 6 -> 1
        assert_eq!(out.summaries_by_level, [6, 1, 0], "[{}]", b.label);
        assert_eq!(out.summaries_created, 7);
        assert_eq!(out.memories_summarized, 27 + 5);
        assert_eq!(out.heuristic_summaries, 7);
        assert_eq!(out.tiers.hot, 4);
        assert_eq!(out.tiers.cold + out.tiers.archived, 27);
        let left = all(b.store.as_ref(), "u").await;
        let summaries: Vec<_> = left
            .iter()
            .filter(|m| m.memory_type == MemoryType::Summary)
            .collect();
        assert_eq!(summaries.len(), 7);
        let first = summaries
            .iter()
            .find(|s| s.metadata_list("summarized_from").len() == 5 && s.is_archived)
            .expect("an archived level-1 summary");
        assert!(first.text.starts_with("Old note"));
        assert!(
            !first.text.contains("Details"),
            "first sentences only: {}",
            first.text
        );
        assert_eq!(left.iter().filter(|m| m.is_archived).count(), 32);
        // nothing more to do the second time
        let again = ok(
            run::<AutoSummarizationTask>(&app, SummarizationArgs::new("u")).await,
            b.label,
        );
        assert_eq!(again.summaries_created, 0);
        rejected(
            run::<AutoSummarizationTask>(&app, SummarizationArgs::new("nobody")).await,
            "unknown user",
            b.label,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_by_tier_ratio() {
    for b in backends().await {
        let text = "I really just think that the very old harbour restaurant serves \
                    quite honestly the best grilled sardines in the whole city";
        let hot = memory("u", text, 2, 0);
        let warm = memory("u", text, 20, 5);
        let cold = memory("u", text, 60, 0);
        let archived = memory("u", text, 120, 0);
        for m in [&hot, &warm, &cold, &archived] {
            b.store.put(m).await.unwrap();
        }
        let words = text.split_whitespace().count();
        let app = app(&MemoryServices::new(b.store.clone()));
        let out = ok(
            run::<CompressionTask>(&app, CompressionArgs::new("u")).await,
            b.label,
        );
        assert_eq!(out.memories_compressed, 3);
        assert_eq!(
            (out.tiers.warm, out.tiers.cold, out.tiers.archived),
            (1, 1, 1)
        );
        assert!(out.tokens_after < out.tokens_before);
        // the originals are kept beside the shorter texts: storage grows, and says so
        assert!(out.space_saved_mb < 0.0);
        let n = |id: &str| {
            let store = b.store.clone();
            let id = id.to_string();
            async move {
                store
                    .get("u", &id)
                    .await
                    .unwrap()
                    .unwrap()
                    .text
                    .split_whitespace()
                    .count()
            }
        };
        assert_eq!(n(&hot.id).await, words);
        assert!(n(&warm.id).await <= (words as f64 * 0.8).ceil() as usize);
        assert!(n(&cold.id).await <= (words as f64 * 0.5).ceil() as usize);
        assert!(n(&archived.id).await <= (words as f64 * 0.25).ceil() as usize);
        let c = b.store.get("u", &cold.id).await.unwrap().unwrap();
        assert!(
            c.text.contains("really"),
            "a word with meaning is kept: {}",
            c.text
        );
        assert_eq!(c.metadata["original_text"], text);
        assert_eq!(c.embed_model.as_deref(), Some("hippo-hash-384-v1"));
        let again = ok(
            run::<CompressionTask>(&app, CompressionArgs::new("u")).await,
            b.label,
        );
        assert_eq!(again.memories_compressed, 0);
        rejected(
            run::<CompressionTask>(&app, CompressionArgs::new("ghost")).await,
            "unknown user",
            b.label,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn procedural_rules_merge_repeats_and_keep_the_best_fifty() {
    for b in backends().await {
        let mut rules = Vec::new();
        for k in 0..60 {
            let mut r = ProceduralRule::new("u", format!("Rule number {k}: answer in French"));
            r.confidence = 0.5 + (k as f64) / 200.0;
            r.success_rate = 0.5;
            r.source_interactions = vec![format!("i{k}")];
            rules.push(r);
        }
        let mut repeat = ProceduralRule::new("u", "rule NUMBER 59 -- answer in french!");
        repeat.confidence = 0.1;
        repeat.source_interactions = vec!["extra".into()];
        rules.push(repeat.clone());
        b.store.put_rules("u", &rules).await.unwrap();
        let app = app(&MemoryServices::new(b.store.clone()).llm(Arc::new(Down)));
        let out = ok(
            run::<ConsolidateProceduralRulesTask>(
                &app,
                ProceduralArgs {
                    user_id: "u".into(),
                },
            )
            .await,
            b.label,
        );
        assert_eq!(out.rules_before, 61);
        assert_eq!(out.rules_after, 50);
        assert_eq!(out.consolidated_count, 11, "[{}]", b.label);
        assert_eq!(out.dropped_over_cap, 10);
        let left = load_rules(b.store.as_ref(), "u").await.unwrap();
        assert_eq!(left.len(), 50);
        // the best (highest confidence x success rate) are kept: rules 10..59
        let worst_kept = left.iter().map(|r| r.score()).fold(f64::MAX, f64::min);
        assert!((worst_kept - (0.5 + 10.0 / 200.0) * 0.5).abs() < 1e-9);
        let best = left.iter().find(|r| r.rule_text.contains("59")).unwrap();
        assert_eq!(best.source_interactions, ["i59", "extra"]);
        assert!(left.iter().all(|r| r.id != repeat.id));

        rejected(
            run::<ConsolidateProceduralRulesTask>(
                &app,
                ProceduralArgs {
                    user_id: "nobody".into(),
                },
            )
            .await,
            "unknown user",
            b.label,
        );
    }
}
