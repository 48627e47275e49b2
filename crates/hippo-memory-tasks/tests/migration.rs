//! migrate_embeddings_task on both stores: counters, cancellation, bad arguments, and
//! a worker killed mid-way whose migration another worker resumes.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use common::*;
use hippo_memory_tasks::client::MemoryTaskClient;
use hippo_memory_tasks::embed::{EmbedError, Embedder, EmbedderRegistry, HashEmbedder};
use hippo_memory_tasks::model::{Memory, Migration, MigrationStatus, ProceduralRule};
use hippo_memory_tasks::store::{
    ChangeSet, ExpiredRef, MemoryStore, Page, PageRequest, StoreError,
};
use hippo_memory_tasks::tasks::{
    MemoryServices, MigrateEmbeddingsArgs, MigrateEmbeddingsTask, MigrationResult, register_all,
};
use hippo_queue_core::App;
use hippo_queue_core::backend::memory::MemoryBackend;
use hippo_queue_core::backend::prelude::*;
use hippo_queue_core::testing::test_worker;
use tokio::sync::Notify;

const NEW: &str = "hippo-hash-384-v2";

/// The new model, counting the texts it embeds.
struct Counting {
    inner: HashEmbedder,
    texts: Arc<AtomicUsize>,
    /// Cancels this migration after the first call, when set.
    cancel: Option<(Arc<dyn MemoryStore>, String)>,
}

#[async_trait]
impl Embedder for Counting {
    fn model(&self) -> &str {
        self.inner.model()
    }
    fn dimension(&self) -> usize {
        self.inner.dimension()
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.texts.fetch_add(texts.len(), Ordering::SeqCst);
        if let Some((store, id)) = &self.cancel {
            store
                .cancel_migration(id)
                .await
                .map_err(|e| EmbedError::Failed(e.to_string()))?;
        }
        self.inner.embed(texts).await
    }
}

fn services(
    store: Arc<dyn MemoryStore>,
    texts: Arc<AtomicUsize>,
    cancel: Option<(Arc<dyn MemoryStore>, String)>,
) -> MemoryServices {
    let registry =
        EmbedderRegistry::new(Arc::new(HashEmbedder::default())).with(Arc::new(Counting {
            inner: HashEmbedder::new(NEW, 384),
            texts,
            cancel,
        }));
    MemoryServices::new(store).embedders(registry)
}

async fn seed(store: &dyn MemoryStore, users: usize, per_user: usize) -> usize {
    let old = HashEmbedder::default();
    for u in 0..users {
        let user = format!("m{u}");
        let put: Vec<Memory> = (0..per_user)
            .map(|k| {
                let mut m = memory(&user, &format!("memory {k} of user {u}"), 2, 0);
                m.embedding = Some(old.embed_one(&m.text));
                m.embed_model = Some(old.model().to_string());
                m
            })
            .collect();
        store
            .apply(
                &user,
                ChangeSet {
                    put,
                    delete: vec![],
                    ..ChangeSet::default()
                },
            )
            .await
            .unwrap();
    }
    users * per_user
}

async fn all_on_new_model(store: &dyn MemoryStore, users: usize, label: &str) {
    let new = HashEmbedder::new(NEW, 384);
    for u in 0..users {
        for m in all(store, &format!("m{u}")).await {
            assert_eq!(m.embed_model.as_deref(), Some(NEW), "[{label}] {}", m.id);
            let want = new.embed_one(&m.text);
            let got = m.embedding.unwrap();
            assert!(
                want.iter().zip(&got).all(|(a, b)| (a - b).abs() < 1e-5),
                "[{label}] vector of {} is not the new model's",
                m.id
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_completes_in_batches_and_reruns_do_nothing() {
    for b in backends().await {
        let total = seed(b.store.as_ref(), 3, 45).await;
        let texts = Arc::new(AtomicUsize::new(0));
        let app = app(&services(b.store.clone(), texts.clone(), None));
        let m = Migration::new(None, NEW, 384);
        b.store.create_migration(&m).await.unwrap();
        let args = MigrateEmbeddingsArgs {
            migration_id: m.id.clone(),
        };
        let out = ok(
            run::<MigrateEmbeddingsTask>(&app, args.clone()).await,
            b.label,
        );
        assert_eq!(out.status, MigrationStatus::Completed);
        assert_eq!(out.total_memories, total as u64);
        assert_eq!(out.migrated_count, total as u64);
        assert_eq!(out.failed_count, 0);
        assert_eq!(out.batches, 6, "45 memories a user: 32 + 13");
        assert_eq!(texts.load(Ordering::SeqCst), total);
        all_on_new_model(b.store.as_ref(), 3, b.label).await;
        let rec = b.store.get_migration(&m.id).await.unwrap().unwrap();
        assert_eq!(rec.status, MigrationStatus::Completed);
        assert_eq!(rec.old_model.as_deref(), Some("hippo-hash-384-v1"));
        assert!(rec.started_at.is_some() && rec.completed_at.is_some());

        let again = ok(run::<MigrateEmbeddingsTask>(&app, args).await, b.label);
        assert_eq!((again.batches, again.migrated_count), (0, total as u64));
        assert_eq!(texts.load(Ordering::SeqCst), total);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_bad_arguments_and_cancellation() {
    for b in backends().await {
        seed(b.store.as_ref(), 2, 40).await;
        let texts = Arc::new(AtomicUsize::new(0));
        let app = app(&services(b.store.clone(), texts.clone(), None));
        rejected(
            run::<MigrateEmbeddingsTask>(
                &app,
                MigrateEmbeddingsArgs {
                    migration_id: "mig_nope".into(),
                },
            )
            .await,
            "no migration \"mig_nope\"",
            b.label,
        );
        let unknown = Migration::new(None, "no-such-model", 384);
        b.store.create_migration(&unknown).await.unwrap();
        rejected(
            run::<MigrateEmbeddingsTask>(
                &app,
                MigrateEmbeddingsArgs {
                    migration_id: unknown.id.clone(),
                },
            )
            .await,
            "unknown embedding model \"no-such-model\"",
            b.label,
        );
        let rec = b.store.get_migration(&unknown.id).await.unwrap().unwrap();
        assert_eq!(rec.status, MigrationStatus::Failed);
        let wrong_dim = Migration::new(None, NEW, 768);
        b.store.create_migration(&wrong_dim).await.unwrap();
        rejected(
            run::<MigrateEmbeddingsTask>(
                &app,
                MigrateEmbeddingsArgs {
                    migration_id: wrong_dim.id.clone(),
                },
            )
            .await,
            "makes 384 dimensions",
            b.label,
        );

        // cancelled before it starts
        let early = Migration::new(None, NEW, 384);
        b.store.create_migration(&early).await.unwrap();
        let c = b.store.cancel_migration(&early.id).await.unwrap().unwrap();
        assert_eq!(c.status, MigrationStatus::Cancelled);
        let out = ok(
            run::<MigrateEmbeddingsTask>(
                &app,
                MigrateEmbeddingsArgs {
                    migration_id: early.id.clone(),
                },
            )
            .await,
            b.label,
        );
        assert_eq!((out.status, out.batches), (MigrationStatus::Cancelled, 0));

        // cancelled during the first batch: stops before the second
        let mid = Migration::new(None, NEW, 384);
        b.store.create_migration(&mid).await.unwrap();
        let app2 = common::app(&services(
            b.store.clone(),
            texts.clone(),
            Some((b.store.clone(), mid.id.clone())),
        ));
        let out = ok(
            run::<MigrateEmbeddingsTask>(
                &app2,
                MigrateEmbeddingsArgs {
                    migration_id: mid.id.clone(),
                },
            )
            .await,
            b.label,
        );
        assert_eq!(out.status, MigrationStatus::Cancelled, "[{}]", b.label);
        assert_eq!((out.batches, out.migrated_count), (1, 32));
        let rec = b.store.get_migration(&mid.id).await.unwrap().unwrap();
        assert!(rec.cancel_requested);
        assert_eq!(rec.status, MigrationStatus::Cancelled);
    }
}

/// A store whose migration progress writes hang after `saves` of them, as if the
/// worker died between writing a batch and recording it.
struct Stalling {
    inner: Arc<dyn MemoryStore>,
    saves: AtomicUsize,
    stall_after: usize,
    stalled: Arc<Notify>,
}

#[async_trait]
impl MemoryStore for Stalling {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn get(&self, u: &str, id: &str) -> Result<Option<Memory>, StoreError> {
        self.inner.get(u, id).await
    }
    async fn apply(&self, u: &str, c: ChangeSet) -> Result<u64, StoreError> {
        self.inner.apply(u, c).await
    }
    async fn list_by_user(&self, u: &str, p: &PageRequest) -> Result<Page<Memory>, StoreError> {
        self.inner.list_by_user(u, p).await
    }
    async fn count_by_user(&self, u: &str) -> Result<u64, StoreError> {
        self.inner.count_by_user(u).await
    }
    async fn list_users(&self, p: &PageRequest) -> Result<Page<String>, StoreError> {
        self.inner.list_users(p).await
    }
    async fn expired(
        &self,
        before: DateTime<Utc>,
        u: Option<&str>,
        p: &PageRequest,
    ) -> Result<Page<ExpiredRef>, StoreError> {
        self.inner.expired(before, u, p).await
    }
    async fn create_migration(&self, m: &Migration) -> Result<(), StoreError> {
        self.inner.create_migration(m).await
    }
    async fn get_migration(&self, id: &str) -> Result<Option<Migration>, StoreError> {
        self.inner.get_migration(id).await
    }
    async fn save_migration(&self, m: &Migration) -> Result<(), StoreError> {
        if m.checkpoint.is_some() && self.saves.fetch_add(1, Ordering::SeqCst) >= self.stall_after {
            self.stalled.notify_one();
            std::future::pending::<()>().await;
        }
        self.inner.save_migration(m).await
    }
    async fn cancel_migration(&self, id: &str) -> Result<Option<Migration>, StoreError> {
        self.inner.cancel_migration(id).await
    }
    async fn acquire_lease(&self, u: &str, h: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.inner.acquire_lease(u, h, ttl).await
    }
    async fn release_lease(&self, u: &str, h: &str) -> Result<(), StoreError> {
        self.inner.release_lease(u, h).await
    }
    async fn put_rules(&self, u: &str, r: &[ProceduralRule]) -> Result<(), StoreError> {
        self.inner.put_rules(u, r).await
    }
    async fn delete_rules(&self, u: &str, ids: &[String]) -> Result<u64, StoreError> {
        self.inner.delete_rules(u, ids).await
    }
    async fn list_rules(
        &self,
        u: &str,
        p: &PageRequest,
    ) -> Result<Page<ProceduralRule>, StoreError> {
        self.inner.list_rules(u, p).await
    }
}

async fn killed_and_resumed(
    label: &str,
    store: Arc<dyn MemoryStore>,
    broker: Arc<dyn Broker>,
    results: Arc<dyn ResultBackend>,
) {
    let total = seed(store.as_ref(), 3, 50).await;
    let texts = Arc::new(AtomicUsize::new(0));
    let stalled = Arc::new(Notify::new());
    let build = |s: Arc<dyn MemoryStore>| {
        let app = App::builder()
            .broker(broker.clone())
            .backend(results.clone())
            .router(hippo_memory_tasks::router())
            .build();
        register_all(&app, &services(s, texts.clone(), None));
        app
    };
    // Worker A dies while recording its third batch (the batch is written).
    let app_a = build(Arc::new(Stalling {
        inner: store.clone(),
        saves: AtomicUsize::new(0),
        stall_after: 2,
        stalled: stalled.clone(),
    }));
    let worker_a = test_worker(&app_a)
        .queues(["memory_ops"])
        .start()
        .await
        .unwrap();
    let client = MemoryTaskClient::new(app_a.clone(), store.clone());
    let started = client.start_embedding_migration(NEW, 384).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), stalled.notified())
        .await
        .expect("the third batch was reached");
    worker_a.kill();
    let rec = client.get_migration(&started.migration_id).await.unwrap();
    assert_eq!(rec.status, MigrationStatus::InProgress, "[{label}]");
    assert_eq!(rec.migrated_count, 50, "[{label}] two batches recorded");
    assert_eq!(
        texts.load(Ordering::SeqCst),
        82,
        "[{label}] three batches embedded"
    );

    // Worker B takes the task over once A's heartbeat has expired.
    let app_b = build(store.clone());
    let worker_b = test_worker(&app_b)
        .queues(["memory_ops"])
        .start()
        .await
        .unwrap();
    let out: MigrationResult = app_b
        .result(&started.task_id)
        .get(Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("[{label}] {e}"));
    worker_b.shutdown().await;
    println!("[{label}] resumed migration: {out:?}");
    assert!(out.resumed, "[{label}]");
    assert_eq!(out.status, MigrationStatus::Completed);
    assert_eq!(out.total_memories, total as u64);
    assert_eq!(
        out.migrated_count + out.failed_count,
        total as u64,
        "[{label}] counters add up"
    );
    assert_eq!(out.failed_count, 0);
    assert_eq!(
        texts.load(Ordering::SeqCst),
        total,
        "[{label}] no finished memory was embedded twice"
    );
    all_on_new_model(store.as_ref(), 3, label).await;
    let status = client.get_task_status(&started.task_id).await.unwrap();
    assert_eq!(status.state, "SUCCESS");
    assert_eq!(status.result["migrated_count"], total as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_killed_midway_resumes_on_memory_backend() {
    let queue = MemoryBackend::new();
    killed_and_resumed(
        "memory",
        Arc::new(hippo_memory_tasks::store::InMemoryStore::new()),
        Arc::new(queue.clone()),
        Arc::new(queue),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_killed_midway_resumes_on_redis() {
    let server = hippo_queue_redis::test_server::RedisServer::start();
    let queue = hippo_queue_redis::RedisBackend::connect(hippo_queue_redis::RedisConfig::new(
        server.url(1),
    ))
    .await
    .unwrap();
    let store = hippo_memory_tasks::store::RedisStore::connect(
        hippo_memory_tasks::store::RedisStoreConfig::new(server.url(0)),
    )
    .await
    .unwrap();
    killed_and_resumed(
        "redis",
        Arc::new(store),
        Arc::new(queue.clone()),
        Arc::new(queue),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_stopped_at_its_soft_limit_resumes_where_it_was() {
    use hippo_queue_core::{Task, TaskContext};
    for b in backends().await {
        let total = seed(b.store.as_ref(), 2, 40).await;
        let texts = Arc::new(AtomicUsize::new(0));
        let task = MigrateEmbeddingsTask::new(services(b.store.clone(), texts.clone(), None));
        let m = Migration::new(None, NEW, 384);
        b.store.create_migration(&m).await.unwrap();
        let args = MigrateEmbeddingsArgs {
            migration_id: m.id.clone(),
        };
        let ctx = TaskContext::for_test("t1", MigrateEmbeddingsTask::NAME);
        ctx.trigger_soft_limit();
        let err = task.run(&ctx, args.clone()).await.unwrap_err();
        assert_eq!(err.kind(), "SoftTimeLimitExceeded", "[{}]", b.label);
        let rec = b.store.get_migration(&m.id).await.unwrap().unwrap();
        assert_eq!(rec.status, MigrationStatus::InProgress);
        let ctx = TaskContext::for_test("t2", MigrateEmbeddingsTask::NAME);
        let out = task.run(&ctx, args).await.unwrap();
        assert!(out.resumed);
        assert_eq!(out.status, MigrationStatus::Completed);
        assert_eq!(out.migrated_count, total as u64);
        assert_eq!(texts.load(Ordering::SeqCst), total);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_stops_at_its_soft_limit() {
    use hippo_memory_tasks::tasks::{DeduplicationArgs, DeduplicationTask};
    use hippo_queue_core::{Task, TaskContext};
    let store: Arc<dyn MemoryStore> = Arc::new(hippo_memory_tasks::store::InMemoryStore::new());
    seed(store.as_ref(), 1, 3000).await;
    let task = DeduplicationTask::new(MemoryServices::new(store.clone()));
    let ctx = TaskContext::for_test("t", DeduplicationTask::NAME);
    ctx.trigger_soft_limit();
    let err = task
        .run(&ctx, DeduplicationArgs::new("m0"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "SoftTimeLimitExceeded");
    assert_eq!(
        store.count_by_user("m0").await.unwrap(),
        3000,
        "nothing written"
    );
}
