//! HippocampAI's background memory tasks, embedded: no Redis, no extra process.
//!
//! Run it with `cargo run --example demo`. Set `RUST_LOG=info` to also see the
//! worker's logs.
//!
//! It loads a few sample memories into the in-memory store, starts a worker in this
//! process with the guide's four queues, and runs each of the eight tasks of the
//! guide through the queue, the way the REST API and the remote client do: submit,
//! follow the status, read the result. The same tasks run unchanged on Redis with the
//! `worker`, `beat` and `api` examples (see the README's quick start).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hippo_memory::BoxError;
use hippo_memory::models;
use hippo_memory::samples::{self, GUIDE_USER};
use hippo_memory::setup;
use hippo_memory_tasks::client::{MemoryTaskClient, TaskStatus};
use hippo_memory_tasks::model::MigrationStatus;
use hippo_memory_tasks::store::{InMemoryStore, MemoryStore, load_rules, load_user};
use hippo_memory_tasks::tasks::{MemoryServices, register_all};
use hippo_queue::App;
use serde_json::Value;

/// The second user, who has an expired memory too.
const OTHER_USER: &str = "alice";
const WAIT: Duration = Duration::from_secs(30);

/// Prints a section heading and what the task does.
fn section(n: usize, title: &str, about: &str) {
    println!("\n{n}. {title}");
    println!("   {about}");
}

/// Waits for the task, checks that it succeeded and returns its result object.
async fn finish(client: &MemoryTaskClient, task_id: &str) -> Result<Value, BoxError> {
    let status: TaskStatus = client.wait(task_id, WAIT).await?;
    if status.state != "SUCCESS" {
        return Err(format!(
            "task {task_id} ended in {}: {}",
            status.state,
            status.traceback.unwrap_or_default()
        )
        .into());
    }
    Ok(status.result)
}

/// Lists a user's memories, one line each.
async fn show_memories(store: &dyn MemoryStore, user: &str) -> Result<(), BoxError> {
    let mut memories = load_user(store, user).await?;
    memories.sort_by_key(|m| std::cmp::Reverse(m.created_at));
    for m in memories {
        let age = (chrono::Utc::now() - m.created_at).num_days();
        let mut flags = String::new();
        if m.is_archived {
            flags.push_str(" [archived]");
        }
        if m.expires_at.is_some() {
            flags.push_str(" [expires]");
        }
        println!(
            "     - {:<11} {:>3} days  {}{flags}",
            m.memory_type.as_str(),
            age,
            m.text
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // Logs only on request, so that the default output stays readable.
    if std::env::var_os("RUST_LOG").is_some() {
        setup::init_logging(None)?;
    }
    let started = Instant::now();
    println!("HippocampAI memory tasks on hippo-queue: the embedded demo");
    println!("==========================================================");

    // --- The store, the services the tasks use, and the app. ------------------------
    // The in-memory store stands in for the vector database. The embedder is the
    // semantic all-MiniLM-L6-v2 (384 dimensions, in process on the CPU) when its
    // folder is there, else the offline lexical hash model.
    let store = Arc::new(InMemoryStore::new());
    let model_path = models::model_path_from_env().or_else(|| {
        let fetched = models::fetched_model_folder();
        fetched
            .join("model.safetensors")
            .exists()
            .then_some(fetched)
    });
    let embedders =
        models::embedders_with(models::DEFAULT_MODEL, Duration::ZERO, model_path.as_deref())?;
    let services = MemoryServices::new(store.clone()).embedders(embedders);
    let model = services.embedder().model().to_string();
    if model == models::DEFAULT_MODEL {
        println!(
            "\nembedder: {model} (lexical: it does not see that two wordings mean the same).\n\
             For the semantic model, fetch all-MiniLM-L6-v2 once and run again:\n    \
             scripts/fetch-model.sh   (or EMBEDDING_MODEL_PATH=<a sentence-transformers folder>)"
        );
    } else {
        println!(
            "\nembedder: {model}, in process on the CPU (dedup threshold {:.2})",
            services.embedder().thresholds().dedup
        );
    }
    // The guide's four queues: memory_ops (memory.#), default, background
    // (background.#) and scheduled (scheduled.#). No broker is given, so the app uses
    // the in-memory broker and result backend.
    let app = App::builder().router(hippo_memory_tasks::router()).build();
    register_all(&app, &services);
    println!("\nregistered tasks: {}", app.registered().join(", "));

    // --- A real worker, in this process, consuming all four queues. -----------------
    let worker = app.worker().concurrency(4).start().await?;
    println!(
        "worker {} consumes {}",
        worker.id(),
        worker.consumers().join(", ")
    );

    // The guide's client: the same calls as `MemoryClient(mode="remote")`.
    let client = MemoryTaskClient::new(app.clone(), store.clone());

    // --- Sample memories. ------------------------------------------------------------
    let loaded = samples::load_samples(store.as_ref(), GUIDE_USER, OTHER_USER).await?;
    let mine = store.count_by_user(GUIDE_USER).await?;
    println!(
        "\nloaded {loaded} sample memories ({mine} of {GUIDE_USER}, {} of {OTHER_USER}); {GUIDE_USER} has:",
        loaded as u64 - mine
    );
    show_memories(store.as_ref(), GUIDE_USER).await?;

    // 1. Health check ---------------------------------------------------------------
    section(
        1,
        "health_check_task (queue background)",
        "Checks the broker, store and embedder, and scores the user's memories.",
    );
    let id = client.submit_health_check_task(Some(GUIDE_USER)).await?;
    // What GET /api/v1/tasks/{task_id}/status returns right after submitting:
    let pending = client.get_task_status(&id).await?;
    println!(
        "   submitted {id}; status right away: {}",
        serde_json::to_string(&pending)?
    );
    let r = finish(&client, &id).await?;
    let checks: Vec<String> = r["checks"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    format!(
                        "{} {}",
                        c["name"].as_str().unwrap_or("?"),
                        c["status"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let report = &r["report"];
    println!("   infrastructure: {}", checks.join(", "));
    println!(
        "   score {:.1} ({}), {} memories, {} stale, {} near-duplicate clusters",
        report["overall_score"].as_f64().unwrap_or(0.0),
        report["status"].as_str().unwrap_or("?"),
        report["total_memories"],
        report["stale_memories"],
        report["near_duplicate_clusters"],
    );
    for issue in report["issues"].as_array().into_iter().flatten() {
        println!("   issue: {}", issue.as_str().unwrap_or(""));
    }

    // 2. Deduplication ---------------------------------------------------------------
    section(
        2,
        "deduplication_task (queue memory_ops)",
        "Merges near-copies (cosine similarity above the threshold) into one memory.",
    );
    // The guide's call uses 0.85 (on the lexical model's scale); the semantic model
    // runs at its own default.
    let threshold = (model == models::DEFAULT_MODEL).then_some(0.85);
    let id = client
        .submit_deduplication_task(GUIDE_USER, threshold, false)
        .await?;
    let r = finish(&client, &id).await?;
    // The guide's result, as GET /api/v1/tasks/{task_id}/status shows it:
    println!(
        "   {}",
        serde_json::json!({
            "duplicates_found": r["duplicates_found"],
            "duplicates_merged": r["duplicates_merged"],
            "space_saved_mb": r["space_saved_mb"],
        })
    );
    for g in r["groups"].as_array().into_iter().flatten() {
        let survivor = g["survivor_id"].as_str().unwrap_or("");
        if let Some(m) = store.get(GUIDE_USER, survivor).await? {
            println!(
                "   kept {:?} (tags {:?}), merged {} near-copy into it",
                m.text,
                m.tags,
                g["duplicate_ids"].as_array().map_or(0, Vec::len)
            );
        }
    }

    // 3. Consolidation ---------------------------------------------------------------
    section(
        3,
        "consolidation_task (queue memory_ops)",
        "Groups related memories into one new memory each (no LLM: every distinct sentence); the members are kept, archived.",
    );
    let id = client
        .submit_consolidation_task(GUIDE_USER, Some(0.80))
        .await?;
    let r = finish(&client, &id).await?;
    println!(
        "   groups found: {}, memories consolidated: {}, new memories: {}",
        r["groups_found"], r["memories_consolidated"], r["memories_created"]
    );
    for new_id in r["created_ids"].as_array().into_iter().flatten() {
        if let Some(m) = store.get(GUIDE_USER, new_id.as_str().unwrap_or("")).await? {
            println!("   new memory: {:?} tags {:?}", m.text, m.tags);
        }
    }

    // 4. Auto-summarization ------------------------------------------------------------
    section(
        4,
        "auto_summarization_task (queue background)",
        "Rolls memories older than min_age_days into summaries of 5 and archives them.",
    );
    let id = client
        .submit_summarization_task(GUIDE_USER, Some(30))
        .await?;
    let r = finish(&client, &id).await?;
    println!(
        "   tiers {}; memories summarised: {}, summaries created: {}",
        r["tiers"], r["memories_summarized"], r["summaries_created"]
    );
    for sid in r["summary_ids"].as_array().into_iter().flatten() {
        if let Some(m) = store.get(GUIDE_USER, sid.as_str().unwrap_or("")).await? {
            println!("   summary: {:?}", m.text);
        }
    }

    // 5. Compression -------------------------------------------------------------------
    section(
        5,
        "compression_task (queue background)",
        "Shortens old memories by tier (cold to 50%, archived to 25%), keeping each original text.",
    );
    let id = client.submit_compression_task(GUIDE_USER).await?;
    let r = finish(&client, &id).await?;
    println!(
        "   memories compressed: {}, tokens {} -> {}",
        r["memories_compressed"], r["tokens_before"], r["tokens_after"]
    );

    // 6. Expiration --------------------------------------------------------------------
    section(
        6,
        "expire_memories_task (queue scheduled; beat runs it every hour)",
        "Deletes every memory whose expires_at has passed, for all users.",
    );
    let id = client.submit_expiration_task(None).await?;
    let r = finish(&client, &id).await?;
    println!(
        "   expired memories deleted: {}, users affected: {}",
        r["expired_count"], r["users_affected"]
    );

    // 7. Procedural rules --------------------------------------------------------------
    section(
        7,
        "consolidate_procedural_rules (queue background)",
        "Drops repeated rules and keeps at most PROCEDURAL_RULE_MAX_COUNT, best first.",
    );
    let before = load_rules(store.as_ref(), GUIDE_USER).await?.len();
    let id = client.submit_procedural_consolidation(GUIDE_USER).await?;
    let r = finish(&client, &id).await?;
    println!(
        "   {before} rules before; result {}",
        serde_json::json!({"user_id": r["user_id"], "consolidated_count": r["consolidated_count"]})
    );
    for rule in load_rules(store.as_ref(), GUIDE_USER).await? {
        println!("   rule: {}", rule.rule_text);
    }

    // 8. Embedding migration -------------------------------------------------------------
    section(
        8,
        "migrate_embeddings_task (queue memory_ops)",
        "Re-encodes every memory with a new model, in batches of 32, with a persisted record.",
    );
    let started_mig = client
        .start_embedding_migration("hippo-hash-384-v2", 384)
        .await?;
    let r = finish(&client, &started_mig.task_id).await?;
    let record = client.get_migration(&started_mig.migration_id).await?;
    println!(
        "   migration {}: {:?}, {} of {} memories migrated, {} failed",
        record.id, record.status, record.migrated_count, record.total_memories, record.failed_count
    );
    assert_eq!(record.status, MigrationStatus::Completed, "{r}");

    // After: the memories and a second health check. ------------------------------------
    println!("\nafter the tasks, {GUIDE_USER} has:");
    show_memories(store.as_ref(), GUIDE_USER).await?;
    let id = client.submit_health_check_task(Some(GUIDE_USER)).await?;
    let r = finish(&client, &id).await?;
    println!(
        "health score now {:.1} ({})",
        r["report"]["overall_score"].as_f64().unwrap_or(0.0),
        r["report"]["status"].as_str().unwrap_or("?")
    );

    // --- Graceful shutdown. --------------------------------------------------------------
    let stats = worker.stats();
    let report = worker.shutdown().await;
    println!(
        "\nworker: {} tasks succeeded, {} failed; shut down with {} aborted. Done in {} ms.",
        stats.succeeded,
        stats.failed,
        report.aborted,
        started.elapsed().as_millis()
    );
    Ok(())
}
