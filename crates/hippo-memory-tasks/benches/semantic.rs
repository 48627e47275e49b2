//! The semantic embedder's bench: quality on the labelled evaluation set, embedding
//! speed, and deduplication of 10,000 memories end to end, embedding included.
//!
//! 1. For each embedder (the lexical `HashEmbedder`, and all-MiniLM-L6-v2 when its
//!    folder is found): precision and recall per kind of pair of
//!    `data/dedup_eval.tsv` at the model's default threshold, then a sweep of
//!    thresholds (what a lower or higher one would trade).
//! 2. Embedding speed, texts per second, with 1 and 2 threads (each in a child
//!    process with `RAYON_NUM_THREADS` set, which candle's CPU kernels follow).
//! 3. `deduplication_task` on 10,000 memories of one user with no vectors yet: the
//!    task embeds them all, searches, merges and writes (in-memory store).
//!
//! ```text
//! EMBEDDING_MODEL_PATH=$(scripts/fetch-model.sh) cargo bench -p hippo-memory-tasks --bench semantic
//! ```

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hippo_memory_tasks::embed::bert::BertEmbedder;
use hippo_memory_tasks::embed::{ALL_MINILM_L6_V2, Embedder, EmbedderRegistry, HashEmbedder};
use hippo_memory_tasks::eval::{EVAL_SET, parse, score};
use hippo_memory_tasks::model::{Memory, MemoryType};
use hippo_memory_tasks::store::{InMemoryStore, MemoryStore};
use hippo_memory_tasks::tasks::{
    DeduplicationArgs, DeduplicationTask, MemoryServices, register_all,
};
use hippo_queue_core::{App, SendOptions};

const SPEED_TEXTS: usize = 512;
const DEDUP_MEMORIES: usize = 10_000;

/// The tests' word lists (`NAMES`, `VERBS`, `THINGS`, `WHEN`).
#[path = "../tests/common/mod.rs"]
mod common;
use common::{NAMES, THINGS, VERBS, WHEN};

/// One template sentence from a number.
fn sentence(k: u64) -> String {
    let pick = |list: &[&'static str], k: u64| list[(k % list.len() as u64) as usize];
    let k2 = k / NAMES.len() as u64;
    let k3 = k2 / VERBS.len() as u64;
    let k4 = k3 / THINGS.len() as u64;
    format!(
        "{} {} {} {}.",
        pick(NAMES, k),
        pick(VERBS, k2),
        pick(THINGS, k3),
        pick(WHEN, k4)
    )
}

/// `n` memory texts of two random template sentences each (so two memories rarely
/// share much); one in ten is followed by a near copy (lower case, no final stop).
fn texts(n: usize) -> Vec<String> {
    let mut state = 42u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let t = format!("{} {}", sentence(next()), sentence(next()));
        if next() % 10 == 0 {
            out.push(t.to_lowercase().trim_end_matches('.').to_string());
        }
        out.push(t);
    }
    out.truncate(n);
    out
}

fn bert() -> Option<BertEmbedder> {
    let dir = std::env::var("EMBEDDING_MODEL_PATH").ok().or_else(|| {
        let out = Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../scripts/fetch-model.sh"
            ))
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    match dir.map(|d| BertEmbedder::load(d, ALL_MINILM_L6_V2)) {
        Some(Ok(e)) => Some(e),
        Some(Err(e)) => {
            eprintln!("all-MiniLM-L6-v2 not loaded: {e}");
            None
        }
        None => {
            eprintln!("all-MiniLM-L6-v2 not found: run scripts/fetch-model.sh");
            None
        }
    }
}

async fn quality(embedder: &dyn Embedder) {
    let cases = parse(EVAL_SET).expect("the evaluation set");
    let default = embedder.thresholds().dedup as f32;
    let report = score(&cases, embedder, default).await.expect("score");
    println!("{report}\n");
    println!("  threshold sweep: threshold, precision, recall, near, paraphrase, negatives merged");
    for t in [
        0.60f32, 0.65, 0.70, 0.75, 0.80, 0.81, 0.85, 0.88, 0.90, 0.95,
    ] {
        let r = score(&cases, embedder, t).await.expect("score");
        let share = |k: &str| r.kind(k).map_or(0.0, |s| s.merged_share());
        println!(
            "    {t:.2}  {:.3}  {:.3}  {:.2}  {:.2}  {}",
            r.precision(),
            r.recall(),
            share("near"),
            share("paraphrase"),
            r.negatives_merged()
        );
    }
    println!();
}

/// Runs in a child process: embeds the speed texts with the thread count its
/// environment sets and prints texts per second.
fn speed_child(e: &BertEmbedder) {
    let texts = texts(SPEED_TEXTS);
    let _ = e.embed_blocking(&texts[..32]); // warm up
    let t = Instant::now();
    e.embed_blocking(&texts).expect("embed");
    println!("{:.1}", texts.len() as f64 / t.elapsed().as_secs_f64());
}

fn speed() {
    let exe = std::env::current_exe().expect("the bench's own path");
    for threads in [1, 2] {
        let out = Command::new(&exe)
            .arg("--speed-child")
            .env("RAYON_NUM_THREADS", threads.to_string())
            .output()
            .expect("run the child");
        let rate = String::from_utf8_lossy(&out.stdout);
        println!(
            "embedding speed, {threads} thread(s): {} texts/s ({SPEED_TEXTS} texts of 16-30 words)",
            rate.trim()
        );
    }
    println!();
}

async fn dedup_end_to_end(embedder: Arc<dyn Embedder>) {
    let store = Arc::new(InMemoryStore::new());
    for t in texts(DEDUP_MEMORIES) {
        store
            .put(&Memory::new("bench", t, MemoryType::Fact))
            .await
            .expect("put");
    }
    let model = embedder.model().to_string();
    let services = MemoryServices::new(store.clone()).embedders(EmbedderRegistry::new(embedder));
    let app = App::builder().router(hippo_memory_tasks::router()).build();
    register_all(&app, &services);
    let t = Instant::now();
    // Embedding 10,000 texts takes longer than the task's 300 s soft limit on a
    // slow machine; a deployment embeds on write, so the task rarely does it all.
    let mut opts = SendOptions::new();
    opts.options = opts
        .options
        .soft_time_limit(Duration::from_secs(3600))
        .time_limit(Duration::from_secs(3700));
    let run = app
        .apply_with::<DeduplicationTask>(DeduplicationArgs::new("bench"), opts)
        .await
        .expect("eager run");
    let secs = t.elapsed().as_secs_f64();
    match run.output {
        Ok(out) => println!(
            "dedup of {DEDUP_MEMORIES} memories with {model}, embedding included: {secs:.1} s \
             ({} embedded, {} duplicates merged, {} pairs kept apart by the guard)",
            out.embeddings_updated + out.duplicates_merged,
            out.duplicates_merged,
            out.pairs_guarded
        ),
        Err(f) => println!("dedup failed: {f}"),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bert = bert();
    if std::env::args().any(|a| a == "--speed-child") {
        if let Some(e) = &bert {
            speed_child(e);
        }
        return;
    }
    println!("== quality on data/dedup_eval.tsv ==\n");
    quality(&HashEmbedder::default()).await;
    if let Some(e) = &bert {
        quality(e).await;
        println!("== speed ==\n");
        speed();
    }
    println!("== deduplication end to end ==\n");
    dedup_end_to_end(Arc::new(HashEmbedder::default())).await;
    if let Some(e) = bert {
        dedup_end_to_end(Arc::new(e)).await;
    }
}
