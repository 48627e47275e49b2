//! One test per item T1-T9 of the correctness review of the memory tasks: each one
//! reproduces the loss the review describes and failed before the fix.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::hooked::Hooked;
use common::*;
use hippo_memory_tasks::embed::{Embedder, EmbedderRegistry, HashEmbedder};
use hippo_memory_tasks::model::{Memory, MemoryType, Migration, MigrationStatus};
use hippo_memory_tasks::store::{InMemoryStore, MemoryStore};
use hippo_memory_tasks::tasks::*;
use tokio::sync::Notify;

const HASH_MODEL: &str = "hippo-hash-384-v1";

fn in_memory() -> Arc<dyn MemoryStore> {
    Arc::new(InMemoryStore::new())
}

/// A unit vector in the plane of the first two axes, `degrees` from the first.
fn at_angle(degrees: f64) -> Vec<f32> {
    let mut v = vec![0f32; 384];
    let r = degrees.to_radians();
    v[0] = r.cos() as f32;
    v[1] = r.sin() as f32;
    v
}

fn with_vector(mut m: Memory, v: Vec<f32>) -> Memory {
    m.embedding = Some(v);
    m.embed_model = Some(HASH_MODEL.into());
    m
}

/// Every text stored for a user, in any field of any record (the originals a task
/// keeps in metadata included).
async fn stored_json(store: &dyn MemoryStore, user: &str) -> String {
    serde_json::to_string(&all(store, user).await).unwrap()
}

#[tokio::test]
async fn t1_compression_keeps_the_original_and_leaves_archived_memories_alone() {
    for b in backends().await {
        let store = b.store.clone();
        let text = "I don't like cilantro at all, but I really love basil";
        store.put(&memory("u", text, 100, 0)).await.unwrap();
        let mut archived = memory(
            "u",
            "Archived original that a summary stands for, keep every word of it.",
            100,
            0,
        );
        archived.is_archived = true;
        store.put(&archived).await.unwrap();
        let app = app(&MemoryServices::new(store.clone()));
        ok(
            run::<CompressionTask>(&app, CompressionArgs::new("u")).await,
            b.label,
        );
        let json = stored_json(store.as_ref(), "u").await;
        assert!(
            json.contains(text),
            "[{}] the original text is gone: {json}",
            b.label
        );
        let kept = store.get("u", &archived.id).await.unwrap().unwrap();
        assert_eq!(
            kept.text, archived.text,
            "[{}] an archived original was compressed",
            b.label
        );
        // The filler list drops no word that carries meaning.
        let current = all(store.as_ref(), "u").await;
        let compressed = current.iter().find(|m| m.id != archived.id).unwrap();
        assert!(
            !compressed.text.contains("don't cilantro"),
            "[{}] {:?}",
            b.label,
            compressed.text
        );
    }
}

#[tokio::test]
async fn t2_a_deleted_duplicate_is_always_above_the_threshold_to_its_survivor() {
    for b in backends().await {
        let store = b.store.clone();
        // sim(A,B) = sim(B,C) = cos 25.84° = 0.90, sim(A,C) = cos 51.68° = 0.62
        let step = 0.9f64.acos().to_degrees();
        let mut a = with_vector(memory("u", "A", 10, 0), at_angle(0.0));
        a.importance = 9.0;
        let b_ = with_vector(memory("u", "B", 10, 0), at_angle(step));
        let c = with_vector(memory("u", "C", 10, 0), at_angle(2.0 * step));
        for m in [&a, &b_, &c] {
            store.put(m).await.unwrap();
        }
        let app = app(&MemoryServices::new(store.clone()));
        let mut args = DeduplicationArgs::new("u");
        args.similarity_threshold = 0.88.into();
        let out = ok(run::<DeduplicationTask>(&app, args).await, b.label);
        // Every deleted memory was above the threshold to the memory it was merged
        // into (checked on the vectors, not on the report).
        let vector = |id: &str| {
            [&a, &b_, &c]
                .into_iter()
                .find(|m| m.id == id)
                .and_then(|m| m.embedding.clone())
                .unwrap()
        };
        assert!(!out.groups.is_empty(), "[{}]", b.label);
        for g in &out.groups {
            for d in &g.duplicate_ids {
                let s = hippo_memory_tasks::similarity::dot(&vector(&g.survivor_id), &vector(d));
                assert!(
                    s > 0.88,
                    "[{}] {d} merged at {s}: {:?}",
                    b.label,
                    out.groups
                );
            }
        }
    }
}

#[tokio::test]
async fn t3_a_merge_never_shortens_a_life_nor_archives_an_active_memory() {
    for b in backends().await {
        let store = b.store.clone();
        let text = "Has a golden retriever named Max";
        let mut short = memory("u", text, 10, 0);
        short.importance = 8.0;
        short.expires_at = Some(Utc::now() + chrono::Duration::hours(1));
        let permanent = memory("u", text, 10, 0);
        store.put(&short).await.unwrap();
        store.put(&permanent).await.unwrap();
        let text2 = "Plays the cello in a community orchestra";
        let mut archived = memory("u", text2, 10, 0);
        archived.importance = 9.0;
        archived.is_archived = true;
        let active = memory("u", text2, 10, 0);
        store.put(&archived).await.unwrap();
        store.put(&active).await.unwrap();
        let app = app(&MemoryServices::new(store.clone()));
        ok(
            run::<DeduplicationTask>(&app, DeduplicationArgs::new("u")).await,
            b.label,
        );
        let left = all(store.as_ref(), "u").await;
        // After the hour, expiration removes every memory with an expiry: one copy of
        // the fact must be left without one.
        assert!(
            left.iter()
                .any(|m| m.text == text && m.expires_at.is_none()),
            "[{}] the fact now expires with the short-lived copy: {left:#?}",
            b.label
        );
        assert!(
            left.iter().any(|m| m.text == text2 && !m.is_archived),
            "[{}] the active memory was merged into an archived one",
            b.label
        );
    }
}

#[tokio::test]
async fn t4_consolidation_without_a_language_model_keeps_every_members_content() {
    for b in backends().await {
        let store = b.store.clone();
        // The plain one leads the group (more important), so the heuristic kept only
        // its text.
        let mut lead = memory("u", "Alice's birthday is May 3", 5, 0);
        lead.importance = 8.0;
        store.put(&lead).await.unwrap();
        store
            .put(&memory(
                "u",
                "Alice's birthday is May 3; she loves tulips",
                6,
                0,
            ))
            .await
            .unwrap();
        let app = app(&MemoryServices::new(store.clone()));
        let mut args = ConsolidationArgs::new("u");
        args.similarity_threshold = 0.5.into();
        let out = ok(run::<ConsolidationTask>(&app, args).await, b.label);
        assert_eq!(out.groups_found, 1, "[{}]", b.label);
        let json = stored_json(store.as_ref(), "u").await;
        assert!(
            json.contains("tulips"),
            "[{}] tulips are gone: {json}",
            b.label
        );
    }
}

#[tokio::test]
async fn t5_a_memory_deleted_while_a_task_runs_stays_deleted() {
    for b in backends().await {
        let inner = b.store.clone();
        // X has no vector, so dedup embeds it and writes it back.
        let x = memory("u", "Forget my address: 12 Rose Street", 5, 0);
        let y = memory("u", "Plays the cello in a community orchestra", 5, 0);
        inner.put(&x).await.unwrap();
        inner.put(&y).await.unwrap();
        let (reached, resume) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let mut hooked = Hooked::over(inner.clone());
        hooked.pause_apply = Some((reached.clone(), resume.clone()));
        let store: Arc<dyn MemoryStore> = Arc::new(hooked);
        let app = app(&MemoryServices::new(store.clone()));
        let task = tokio::spawn(async move {
            run::<DeduplicationTask>(&app, DeduplicationArgs::new("u")).await
        });
        reached.notified().await;
        inner
            .delete("u", std::slice::from_ref(&x.id))
            .await
            .unwrap();
        resume.notify_one();
        let _ = task.await.unwrap();
        assert!(
            inner.get("u", &x.id).await.unwrap().is_none(),
            "[{}] the deleted memory came back",
            b.label
        );
    }
}

#[tokio::test]
async fn t6_expiration_spares_a_memory_whose_expiry_was_cleared_meanwhile() {
    for b in backends().await {
        let inner = b.store.clone();
        let mut x = memory("u", "Temporary note", 5, 0);
        x.expires_at = Some(Utc::now() - chrono::Duration::minutes(1));
        inner.put(&x).await.unwrap();
        let hooked = Hooked::over(inner.clone());
        let mut kept = x.clone();
        kept.expires_at = None;
        *hooked.after_get.lock().unwrap() = Some(kept);
        let store: Arc<dyn MemoryStore> = Arc::new(hooked);
        let app = app(&MemoryServices::new(store.clone()));
        ok(
            run::<ExpireMemoriesTask>(&app, ExpirationArgs { user_id: None }).await,
            b.label,
        );
        assert!(
            inner.get("u", &x.id).await.unwrap().is_some(),
            "[{}] the memory was deleted after its expiry was cleared",
            b.label
        );
    }
}

#[tokio::test]
async fn t7_summaries_and_consolidations_inherit_the_earliest_expiry() {
    for b in backends().await {
        let store = b.store.clone();
        let expiry = Utc::now() + chrono::Duration::days(10);
        let mut private = memory("u", "Session secret: the door code is 4711. More.", 31, 0);
        private.expires_at = Some(expiry);
        store.put(&private).await.unwrap();
        store
            .put(&memory("u", "Likes long walks. And more.", 31, 0))
            .await
            .unwrap();
        let app = app(&MemoryServices::new(store.clone()));
        let out = ok(
            run::<AutoSummarizationTask>(&app, SummarizationArgs::new("u")).await,
            b.label,
        );
        assert_eq!(out.summaries_created, 1, "[{}]", b.label);
        let summary = store.get("u", &out.summary_ids[0]).await.unwrap().unwrap();
        assert!(
            summary.text.contains("4711"),
            "[{}] {}",
            b.label,
            summary.text
        );
        assert!(
            summary.expires_at.is_some_and(|e| e <= expiry),
            "[{}] the summary outlives its source: {:?}",
            b.label,
            summary.expires_at
        );

        let user = "v";
        let mut a = memory(user, "Alice's birthday is May 3", 5, 0);
        a.expires_at = Some(expiry);
        store.put(&a).await.unwrap();
        store
            .put(&memory(
                user,
                "Alice's birthday is May 3; she loves tulips",
                5,
                0,
            ))
            .await
            .unwrap();
        let mut args = ConsolidationArgs::new(user);
        args.similarity_threshold = 0.5.into();
        let out = ok(run::<ConsolidationTask>(&app, args).await, b.label);
        let merged = store.get(user, &out.created_ids[0]).await.unwrap().unwrap();
        assert!(
            merged.expires_at.is_some_and(|e| e <= expiry),
            "[{}] the consolidated memory outlives its source: {:?}",
            b.label,
            merged.expires_at
        );
    }
}

/// `n` distinct notes of a user.
async fn notes(store: &dyn MemoryStore, user: &str, n: usize) {
    for i in 0..n {
        store
            .put(&memory(user, &format!("note number {i}"), 5, 0))
            .await
            .unwrap();
    }
}

/// Runs a migration inline.
async fn migrate(
    app: &hippo_queue_core::App,
    id: &str,
) -> hippo_queue_core::testing::EagerResult<MigrationResult> {
    run::<MigrateEmbeddingsTask>(
        app,
        MigrateEmbeddingsArgs {
            migration_id: id.to_string(),
        },
    )
    .await
}

fn migration_services(store: Arc<dyn MemoryStore>) -> MemoryServices {
    MemoryServices::new(store).embedders(
        EmbedderRegistry::new(Arc::new(HashEmbedder::default()))
            .with(Arc::new(HashEmbedder::new("hippo-hash-384-v2", 384))),
    )
}

#[tokio::test]
async fn t8_a_resumed_migration_counts_each_memory_once() {
    for b in backends().await {
        let inner = b.store.clone();
        notes(inner.as_ref(), "u", 70).await;
        // A crash between a batch's write and its checkpoint, then a resume.
        let mut hooked = Hooked::over(inner.clone());
        hooked.fail_save_after = Some(2); // start + first batch saved, second batch not
        let store: Arc<dyn MemoryStore> = Arc::new(hooked);
        let mig = Migration::new(None, "hippo-hash-384-v2", 384);
        inner.create_migration(&mig).await.unwrap();
        let app1 = app(&migration_services(store.clone()));
        let first = migrate(&app1, &mig.id).await;
        assert!(
            first.output.is_err(),
            "[{}] the crash did not happen",
            b.label
        );
        let app2 = app(&migration_services(inner.clone()));
        ok(migrate(&app2, &mig.id).await, b.label);
        let done = inner.get_migration(&mig.id).await.unwrap().unwrap();
        assert_eq!(done.status, MigrationStatus::Completed, "[{}]", b.label);
        assert_eq!(
            (done.migrated_count, done.total_memories),
            (70, 70),
            "[{}] counted {} of {}",
            b.label,
            done.migrated_count,
            done.total_memories
        );
    }
}

#[tokio::test]
async fn t8_maintenance_on_the_old_model_leaves_migrated_vectors_alone() {
    for b in backends().await {
        let inner = b.store.clone();
        notes(inner.as_ref(), "u", 40).await;
        let mig = Migration::new(None, "hippo-hash-384-v2", 384);
        inner.create_migration(&mig).await.unwrap();
        let app = app(&migration_services(inner.clone()));
        ok(migrate(&app, &mig.id).await, b.label);
        // Dedup on the old model (still current) must not move them back.
        ok(
            run::<DeduplicationTask>(&app, DeduplicationArgs::new("u")).await,
            b.label,
        );
        let on_new = all(inner.as_ref(), "u")
            .await
            .iter()
            .filter(|m| m.embed_model.as_deref() == Some("hippo-hash-384-v2"))
            .count();
        assert_eq!(
            on_new, 40,
            "[{}] dedup re-embedded migrated memories with the old model",
            b.label
        );
    }
}

#[tokio::test]
async fn t8_a_completed_migration_includes_memories_added_while_it_ran() {
    for b in backends().await {
        let inner = b.store.clone();
        notes(inner.as_ref(), "a", 40).await;
        inner
            .put(&memory("b", "the last user", 5, 0))
            .await
            .unwrap();
        let mig = Migration::new(None, "hippo-hash-384-v3", 384);
        inner.create_migration(&mig).await.unwrap();
        // While it runs (the model is called), a memory is added to user "a", whose
        // turn has passed by the time the last user is migrated.
        let model = Arc::new(AddsWhileRunning {
            inner: HashEmbedder::new("hippo-hash-384-v3", 384),
            store: inner.clone(),
            calls: Default::default(),
        });
        let services = MemoryServices::new(inner.clone())
            .embedders(EmbedderRegistry::new(Arc::new(HashEmbedder::default())).with(model));
        let app = app(&services);
        ok(migrate(&app, &mig.id).await, b.label);
        let stale: Vec<String> = all(inner.as_ref(), "a")
            .await
            .into_iter()
            .filter(|m| m.embed_model.as_deref() != Some("hippo-hash-384-v3"))
            .map(|m| m.text)
            .collect();
        assert!(
            stale.is_empty(),
            "[{}] completed, but not on the new model: {stale:?}",
            b.label
        );
    }
}

/// A model that adds a memory to user "a" on its third call.
struct AddsWhileRunning {
    inner: HashEmbedder,
    store: Arc<dyn MemoryStore>,
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl Embedder for AddsWhileRunning {
    fn model(&self) -> &str {
        self.inner.model()
    }
    fn dimension(&self) -> usize {
        self.inner.dimension()
    }
    async fn embed(
        &self,
        texts: &[String],
    ) -> Result<Vec<Vec<f32>>, hippo_memory_tasks::embed::EmbedError> {
        if self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 2 {
            let mut late = memory("a", "added while the migration ran", 0, 0);
            late.id = "0-added-late".into(); // sorts before every uuid: behind the cursor
            self.store.put(&late).await.expect("put");
        }
        self.inner.embed(texts).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t8_a_terminated_migration_is_recorded() {
    for b in backends().await {
        let inner = b.store.clone();
        notes(inner.as_ref(), "u", 40).await;
        let slow = Migration::new(None, "hippo-hash-384-v3", 384);
        inner.create_migration(&slow).await.unwrap();
        let slow_model = Arc::new(Slow(HashEmbedder::new("hippo-hash-384-v3", 384)));
        let services = MemoryServices::new(inner.clone())
            .embedders(EmbedderRegistry::new(Arc::new(HashEmbedder::default())).with(slow_model));
        let app = app(&services);
        let worker = hippo_queue_core::testing::test_worker(&app)
            .queues(["memory_ops"])
            .start()
            .await
            .unwrap();
        let sent = app
            .apply_async::<MigrateEmbeddingsTask>(
                MigrateEmbeddingsArgs {
                    migration_id: slow.id.clone(),
                },
                hippo_queue_core::SendOptions::new(),
            )
            .await
            .unwrap();
        // Running: the first batch is with the (slow) model.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while inner.get_migration(&slow.id).await.unwrap().unwrap().status
            != MigrationStatus::InProgress
        {
            assert!(
                std::time::Instant::now() < deadline,
                "[{}] never started",
                b.label
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        app.revoke(sent.id(), true).await.unwrap();
        let mut status = MigrationStatus::InProgress;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while status == MigrationStatus::InProgress && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            status = inner.get_migration(&slow.id).await.unwrap().unwrap().status;
        }
        worker.shutdown().await;
        assert_ne!(
            status,
            MigrationStatus::InProgress,
            "[{}] a terminated run stays in_progress",
            b.label
        );
    }
}

/// A model that takes a second per call.
struct Slow(HashEmbedder);

#[async_trait::async_trait]
impl Embedder for Slow {
    fn model(&self) -> &str {
        self.0.model()
    }
    fn dimension(&self) -> usize {
        self.0.dimension()
    }
    async fn embed(
        &self,
        texts: &[String],
    ) -> Result<Vec<Vec<f32>>, hippo_memory_tasks::embed::EmbedError> {
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.0.embed(texts).await
    }
}

#[tokio::test]
async fn t9_summarization_writes_in_small_atomic_steps() {
    let inner = in_memory();
    for i in 0..60 {
        inner
            .put(&memory("u", &format!("Old note {i}. Details."), 40, 0))
            .await
            .unwrap();
    }
    let hooked = Arc::new(Hooked::over(inner.clone()));
    let store: Arc<dyn MemoryStore> = hooked.clone();
    let app = app(&MemoryServices::new(store));
    ok(
        run::<AutoSummarizationTask>(&app, SummarizationArgs::new("u")).await,
        "memory",
    );
    let most = hooked.max_put.load(std::sync::atomic::Ordering::SeqCst);
    assert!(most <= 6, "one write carried {most} memories");
    let _ = MemoryType::Summary;
}
