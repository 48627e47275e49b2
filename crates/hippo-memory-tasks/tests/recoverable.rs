//! After deduplication, consolidation, summarisation and compression have all run on
//! the evaluation set, every original text is still stored somewhere: as a memory
//! (active or archived), as a compressed memory's original, or in a survivor's
//! history. With the lexical model, and with all-MiniLM-L6-v2 when it can be had.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::*;
use hippo_memory_tasks::embed::{Embedder, EmbedderRegistry, HashEmbedder};
use hippo_memory_tasks::eval::{EVAL_SET, parse};
use hippo_memory_tasks::history::texts;
use hippo_memory_tasks::store::MemoryStore;
use hippo_memory_tasks::tasks::*;

async fn every_text_survives(embedder: Arc<dyn Embedder>) {
    let originals: BTreeSet<String> = parse(EVAL_SET)
        .unwrap()
        .into_iter()
        .flat_map(|c| [c.a, c.b])
        .collect();
    for b in backends().await {
        let store: Arc<dyn MemoryStore> = b.store.clone();
        // Half old enough to be summarised (100 days), half only to be compressed
        // (40 days: cold, compressed to half).
        for (i, t) in originals.iter().enumerate() {
            let age = if i % 2 == 0 { 100 } else { 40 };
            store.put(&memory("u", t, age, 0)).await.unwrap();
        }
        let services =
            MemoryServices::new(store.clone()).embedders(EmbedderRegistry::new(embedder.clone()));
        let app = app(&services);
        let dedup = ok(
            run::<DeduplicationTask>(&app, DeduplicationArgs::new("u")).await,
            b.label,
        );
        let cons = ok(
            run::<ConsolidationTask>(&app, ConsolidationArgs::new("u")).await,
            b.label,
        );
        let mut older = SummarizationArgs::new("u");
        older.min_age_days = 60;
        let summ = ok(run::<AutoSummarizationTask>(&app, older).await, b.label);
        let comp = ok(
            run::<CompressionTask>(&app, CompressionArgs::new("u")).await,
            b.label,
        );
        println!(
            "[{} {}] merged {}, consolidated {}, summarised {}, compressed {}",
            b.label,
            embedder.model(),
            dedup.duplicates_merged,
            cons.memories_consolidated,
            summ.memories_summarized,
            comp.memories_compressed
        );
        assert!(
            dedup.duplicates_merged > 0
                && cons.memories_consolidated > 0
                && summ.memories_summarized > 0
                && comp.memories_compressed > 0,
            "[{}] a task changed nothing",
            b.label
        );
        let stored: BTreeSet<String> = all(store.as_ref(), "u")
            .await
            .iter()
            .flat_map(texts)
            .collect();
        let lost: Vec<&String> = originals.iter().filter(|t| !stored.contains(*t)).collect();
        assert!(lost.is_empty(), "[{}] lost: {lost:#?}", b.label);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_original_survives_the_lexical_model() {
    every_text_survives(Arc::new(HashEmbedder::default())).await;
}

#[cfg(feature = "semantic")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_original_survives_the_semantic_model() {
    let Some(dir) = common::model::minilm() else {
        return;
    };
    let e = hippo_memory_tasks::embed::bert::BertEmbedder::load(
        dir,
        hippo_memory_tasks::embed::ALL_MINILM_L6_V2,
    )
    .unwrap();
    every_text_survives(Arc::new(e)).await;
}
