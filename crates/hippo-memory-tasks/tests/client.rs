//! The typed client, the fan-out task and the beat schedule, through real workers on
//! the in-memory backend and on Redis.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::*;
use hippo_memory_tasks::client::MemoryTaskClient;
use hippo_memory_tasks::schedule::ScheduleSettings;
use hippo_memory_tasks::store::MemoryStore;
use hippo_memory_tasks::tasks::{
    FanOutArgs, FanOutResult, FanOutTarget, FanOutTask, MemoryServices, register_all,
};
use hippo_queue_core::beat::{Beat, Entry, MemoryBeatStore, Schedule};
use hippo_queue_core::testing::test_worker;
use hippo_queue_core::{App, Task};

async fn seed(store: &dyn MemoryStore, users: usize) {
    for u in 0..users {
        let user = format!("c{u}");
        for t in [
            "Dana borrowed the blue bicycle",
            "dana borrowed the blue bicycle!",
        ] {
            store.put(&memory(&user, t, 1, 0)).await.unwrap();
        }
        let mut gone = memory(&user, "expired", 1, 0);
        gone.expires_at = Some(Utc::now() - chrono::Duration::seconds(5));
        store.put(&gone).await.unwrap();
    }
}

async fn exercise(label: &str, app: App, store: Arc<dyn MemoryStore>) {
    seed(store.as_ref(), 4).await;
    register_all(&app, &MemoryServices::new(store.clone()));
    let worker = test_worker(&app).start().await.unwrap();
    let client = MemoryTaskClient::new(app.clone(), store.clone());
    let wait = Duration::from_secs(20);

    // a task that succeeds: the guide's status shape
    let id = client
        .submit_deduplication_task("c0", Some(0.85), false)
        .await
        .unwrap();
    let st = client.wait(&id, wait).await.unwrap();
    assert_eq!(st.state, "SUCCESS", "[{label}] {st:?}");
    assert_eq!(st.task_id, id);
    assert_eq!(st.result["duplicates_found"], 1);
    assert_eq!(st.result["duplicates_merged"], 1);
    // reported as it is: the duplicate had no vector, and its record moves into the
    // survivor's history, so about nothing is freed
    assert!(st.result["space_saved_mb"].as_f64().unwrap().abs() < 0.01);
    assert!(st.traceback.is_none());

    // a task rejected for its arguments: state, error and traceback
    let id = client
        .submit_consolidation_task("ghost", None)
        .await
        .unwrap();
    let st = client.wait(&id, wait).await.unwrap();
    assert_eq!(st.state, "REJECTED", "[{label}] {st:?}");
    assert_eq!(st.result["exc_type"], "InvalidArgument");
    assert!(st.traceback.unwrap().contains("unknown user \"ghost\""));

    // refused before sending
    assert!(
        client
            .submit_deduplication_task("c0", Some(1.2), false)
            .await
            .is_err()
    );
    assert!(client.submit_compression_task(" ").await.is_err());
    assert_eq!(
        client.get_task_status("never-sent").await.unwrap().state,
        "PENDING"
    );

    // the remaining submitters
    for id in [
        client.submit_health_check_task(Some("c1")).await.unwrap(),
        client
            .submit_summarization_task("c1", Some(30))
            .await
            .unwrap(),
        client.submit_compression_task("c1").await.unwrap(),
        client.submit_expiration_task(Some("c1")).await.unwrap(),
    ] {
        let st = client.wait(&id, wait).await.unwrap();
        assert_eq!(st.state, "SUCCESS", "[{label}] {st:?}");
    }
    store
        .put_rules(
            "c2",
            &[hippo_memory_tasks::model::ProceduralRule::new(
                "c2", "be brief",
            )],
        )
        .await
        .unwrap();
    let id = client.submit_procedural_consolidation("c2").await.unwrap();
    let st = client.wait(&id, wait).await.unwrap();
    assert_eq!(
        st.result,
        serde_json::json!({
            "user_id": "c2", "consolidated_count": 0, "rules_before": 1, "rules_after": 1,
            "dropped_over_cap": 0, "llm_merges": 0
        })
    );

    // fan-out: one expiration task per user with an expired memory, then one
    // deduplication per user
    let fan = app
        .delay::<FanOutTask>(FanOutArgs {
            target: FanOutTarget::Expiration,
        })
        .await
        .unwrap();
    let out: FanOutResult = fan.get(wait).await.unwrap();
    assert_eq!(
        out.tasks_sent, 3,
        "[{label}] c1 had its expired memory removed already"
    );
    for u in ["c0", "c2", "c3"] {
        let st = client
            .wait(&format!("{}/{u}", fan.id()), wait)
            .await
            .unwrap();
        assert_eq!(st.result["expired_count"], 1, "[{label}] {u}");
    }
    let fan = app
        .delay::<FanOutTask>(FanOutArgs {
            target: FanOutTarget::deduplication(),
        })
        .await
        .unwrap();
    assert_eq!(fan.get(wait).await.unwrap().tasks_sent, 4);
    for u in 0..4 {
        let st = client
            .wait(&format!("{}/c{u}", fan.id()), wait)
            .await
            .unwrap();
        let merged = if u == 0 { 0 } else { 1 };
        assert_eq!(st.result["duplicates_merged"], merged, "[{label}] c{u}");
    }
    for u in 0..4 {
        assert_eq!(store.count_by_user(&format!("c{u}")).await.unwrap(), 1);
    }
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_and_fan_out_on_memory_backend() {
    let app = App::builder().router(hippo_memory_tasks::router()).build();
    exercise(
        "memory",
        app,
        Arc::new(hippo_memory_tasks::store::InMemoryStore::new()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_and_fan_out_on_redis() {
    let server = hippo_queue_redis::test_server::RedisServer::start();
    let queue = hippo_queue_redis::RedisBackend::connect(
        hippo_queue_redis::RedisConfig::new(server.url(1)).results_url(server.url(2)),
    )
    .await
    .unwrap();
    let app = App::builder()
        .broker(queue.clone())
        .backend(queue)
        .router(hippo_memory_tasks::router())
        .build();
    let store = hippo_memory_tasks::store::RedisStore::connect(
        hippo_memory_tasks::store::RedisStoreConfig::new(server.url(0)),
    )
    .await
    .unwrap();
    exercise("redis", app, Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beat_entries_route_and_fire() {
    let entries = ScheduleSettings::default().entries().unwrap();
    let app = App::builder().router(hippo_memory_tasks::router()).build();
    let store = Arc::new(hippo_memory_tasks::store::InMemoryStore::new());
    seed(store.as_ref(), 2).await;
    register_all(&app, &MemoryServices::new(store.clone()));
    // the guide's queues: fan-outs on `scheduled`, the health check on `background`
    assert_eq!(FanOutTask::options().queue.as_deref(), Some("scheduled"));
    assert_eq!(entries[0].task(), FanOutTask::NAME);
    // the dedup entry, fired every 100 ms instead of every 24 hours
    let fast = Entry::by_name(
        "dedup-fast",
        entries[0].task(),
        entries[0].args().to_vec(),
        Schedule::every(Duration::from_millis(100)),
    )
    .unwrap();
    let worker = test_worker(&app).start().await.unwrap();
    let beat = Beat::builder(app.clone(), MemoryBeatStore::new())
        .entry(fast)
        .build()
        .unwrap();
    let handle = beat.spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let done = store.count_by_user("c0").await.unwrap() == 2
            && store.count_by_user("c1").await.unwrap() == 2;
        if done {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "beat fan-out did not dedup"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handle.shutdown().await;
    worker.shutdown().await;
}
