//! A task lost with its worker, against a real Redis and a real worker: the live
//! worker recovers it, writes its FAILURE record and (task events on) a task-failed
//! event, and the task's timeline shows the delivery and the loss.

mod support;

use std::time::Duration;

use hippo_queue_core::SendOptions;
use hippo_queue_core::backend::Messages;
use hippo_queue_core::backend::ResultBackend;
use hippo_queue_monitor::MonitorConfig;
use serde_json::Value;
use support::{Add, Deployment, get, serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_lost_with_its_worker_shows_in_its_timeline() {
    let d = Deployment::start().await;
    // a worker that leases and starts a task of a queue nobody else consumes, then
    // stops beating (as a killed process would)
    let lost = d
        .app
        .apply_async::<Add>((1, 2), SendOptions::new().queue("ghostq"))
        .await
        .expect("send");
    d.redis
        .heartbeat(
            "ghost@test",
            "ghost-incarnation",
            Duration::from_millis(200),
            Duration::from_millis(100),
        )
        .await
        .expect("beat");
    let leased = d
        .redis
        .fetch(
            "ghost@test",
            &["ghostq".to_string()],
            1,
            Duration::from_secs(1),
        )
        .await
        .expect("fetch");
    assert_eq!(leased.len(), 1);
    d.redis
        .start("ghost@test", &[leased[0].to_ref()])
        .await
        .expect("start");

    // w1 recovers it once the ghost's lease has run out
    let m = serve(MonitorConfig::new(), &d.redis).await;
    let c = reqwest::Client::new();
    let timeline = format!("{}/api/task/timeline/{}", m.base, lost.id());
    let failed = |v: &Value| {
        v["events"]
            .as_array()
            .and_then(|e| e.iter().find(|x| x["type"] == "task-failed").cloned())
    };
    // recovery waits out the ghost's lease and the fleet's grace: up to 30 s
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while failed(&get(&c, &timeline).await.1).is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the loss never showed in the timeline"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, v) = get(&c, &timeline).await;
    let e = failed(&v).expect("task-failed");
    assert_eq!(e["worker"], "ghost@test", "the worker that ran it: {v}");
    assert_eq!(e["queue"], "ghostq");
    assert!(
        e["exception"]
            .as_str()
            .is_some_and(|x| x.starts_with("WorkerLostError(")),
        "{v}"
    );
    let meta = d
        .redis
        .get(lost.id())
        .await
        .expect("get")
        .expect("a record");
    assert_eq!(meta.state, hippo_queue_core::TaskState::Failure);
    d.stop().await;
}
