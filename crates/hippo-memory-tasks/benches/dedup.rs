//! Deduplication benchmark: 10,000 and 50,000 memories of one user (384-d vectors).
//!
//! For each size it times
//! - the similarity search alone (all pairs above 0.88, grouped by union-find),
//! - the whole `deduplication_task` on the in-memory store (load, search, merge,
//!   write), run eagerly,
//! - the numpy brute-force reference (`benches/dedup_numpy.py`, `X @ X.T` in blocks)
//!   on the same vectors, when `python3` with numpy is available,
//!
//! and checks that numpy and this crate find the same number of pairs.
//!
//! Run with `cargo bench -p hippo-memory-tasks --bench dedup`. Targets on 2 cores:
//! 10k under 1 s, 50k under 15 s, and faster than numpy.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use hippo_memory_tasks::embed::{Embedder, HashEmbedder};
use hippo_memory_tasks::model::{Memory, MemoryType};
use hippo_memory_tasks::similarity::{Matrix, Search, kernel_name, similar_groups, similar_pairs};
use hippo_memory_tasks::store::{ChangeSet, InMemoryStore, MemoryStore};
use hippo_memory_tasks::tasks::{
    DeduplicationArgs, DeduplicationTask, MemoryServices, register_all,
};
use hippo_queue_core::App;

const DIM: usize = 384;
const THRESHOLD: f32 = 0.88;

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// `n` memories: about 10% are copies (exact, or with case and punctuation changed)
/// of another; the rest are word salads over a 4,000-word vocabulary.
fn memories(n: usize) -> Vec<Memory> {
    let mut rng = Lcg(42);
    let syllables = [
        "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "qui", "dor",
    ];
    let vocab: Vec<String> = (0..4000)
        .map(|_| {
            let len = 2 + rng.next() % 3;
            (0..len)
                .map(|_| syllables[(rng.next() % syllables.len() as u64) as usize])
                .collect()
        })
        .collect();
    let embedder = HashEmbedder::default();
    let mut texts: Vec<String> = Vec::with_capacity(n);
    while texts.len() < n {
        let k = texts.len();
        let text = if k > 10 && rng.next().is_multiple_of(10) {
            let src = texts[(rng.next() % k as u64) as usize].clone();
            if rng.next().is_multiple_of(2) {
                src
            } else {
                format!("{}!", src.to_uppercase())
            }
        } else {
            let words = 8 + rng.next() % 10;
            (0..words)
                .map(|_| vocab[(rng.next() % vocab.len() as u64) as usize].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        };
        texts.push(text);
    }
    texts
        .into_iter()
        .map(|t| {
            let mut m = Memory::new("bench-user", t, MemoryType::Fact);
            m.embedding = Some(embedder.embed_one(&m.text));
            m.embed_model = Some(embedder.model().to_string());
            m
        })
        .collect()
}

fn numpy_available() -> Result<(), String> {
    match Command::new("python3")
        .args(["-c", "import numpy"])
        .output()
    {
        Err(e) => Err(format!("python3 not runnable ({e})")),
        Ok(o) if !o.status.success() => Err("numpy is not importable (pip install numpy)".into()),
        Ok(_) => Ok(()),
    }
}

fn numpy_reference(m: &Matrix) -> Result<(f64, u64), String> {
    numpy_available()?;
    let path = std::env::temp_dir().join(format!(
        "hippo-dedup-bench-{}-{}.f32",
        std::process::id(),
        m.len()
    ));
    let mut bytes = Vec::with_capacity(m.len() * DIM * 4);
    for i in 0..m.len() {
        for x in m.row(i) {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
    }
    std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/dedup_numpy.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&path)
        .arg(m.len().to_string())
        .arg(DIM.to_string())
        .arg(THRESHOLD.to_string())
        .output();
    let _ = std::fs::remove_file(&path);
    let out = out.map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("numpy output: {e}"))?;
    Ok((
        v["seconds"].as_f64().unwrap_or(f64::NAN),
        v["pairs"].as_u64().unwrap_or(0),
    ))
}

#[tokio::main]
async fn main() {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "deduplication benchmark: {DIM}-d vectors, threshold {THRESHOLD} (strict), kernel {}, {threads} threads",
        kernel_name()
    );
    if let Err(why) = numpy_available() {
        println!("note: the numpy comparison is skipped: {why}");
    }
    for (n, target) in [(10_000usize, 1.0f64), (50_000, 15.0)] {
        let ms = memories(n);
        let matrix = Matrix::from_rows(
            DIM,
            ms.iter()
                .map(|m| m.embedding.as_deref().unwrap_or_default()),
        )
        .expect("matrix");

        let t = Instant::now();
        let groups = similar_groups(&matrix, &Search::above(THRESHOLD)).expect("search");
        let search_s = t.elapsed().as_secs_f64();
        let pairs = similar_pairs(&matrix, &Search::above(THRESHOLD), 50_000_000)
            .expect("pairs")
            .len() as u64;

        let store = Arc::new(InMemoryStore::new());
        store
            .apply(
                "bench-user",
                ChangeSet {
                    put: ms,
                    delete: Vec::new(),
                    ..ChangeSet::default()
                },
            )
            .await
            .expect("seed");
        let app = App::builder().router(hippo_memory_tasks::router()).build();
        register_all(&app, &MemoryServices::new(store.clone()));
        let t = Instant::now();
        let run = app
            .apply::<DeduplicationTask>(DeduplicationArgs::new("bench-user"))
            .await
            .expect("run");
        let task_s = t.elapsed().as_secs_f64();
        let out = run.output.expect("deduplication_task succeeded");

        println!(
            "n={n}: similarity search {search_s:.3} s ({} groups, {pairs} pairs); deduplication_task {task_s:.3} s ({} merged, {:.2} MiB saved); target < {target} s: {}",
            groups.len(),
            out.duplicates_merged,
            out.space_saved_mb,
            if task_s < target { "met" } else { "MISSED" }
        );
        match numpy_reference(&matrix) {
            Ok((np_s, np_pairs)) => println!(
                "n={n}: numpy brute force {np_s:.3} s ({np_pairs} pairs{}); similarity search is {:.1}x faster, the whole task {:.1}x",
                if np_pairs == pairs {
                    ", same pairs"
                } else {
                    ", PAIR COUNTS DIFFER"
                },
                np_s / search_s,
                np_s / task_s
            ),
            Err(why) => println!("n={n}: numpy reference skipped: {why}"),
        }
    }
}
