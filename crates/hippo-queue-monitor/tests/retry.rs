//! Retrying dead letters and dead-lettered tasks through the monitor, against a real
//! Redis and a live worker: the task runs again and succeeds; an acknowledged failure
//! is refused with the reason.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use hippo_queue_core::TaskState;
use hippo_queue_core::backend::EventLog;
use hippo_queue_core::events::EventKind;
use hippo_queue_monitor::MonitorConfig;
use serde_json::{Value, json};
use support::{Deployment, Fail, PICKY_OPEN, Picky, eventually, get, serve};

async fn post(c: &reqwest::Client, url: &str) -> (u16, Value) {
    let res = c.post(url).send().await.expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_retried_until_they_succeed() {
    let d = Deployment::start().await;
    let first = d.app.delay::<Picky>(1).await.expect("send");
    let second = d.app.delay::<Picky>(2).await.expect("send");
    let failed = d.app.delay::<Fail>(()).await.expect("send");
    for t in [&first, &second] {
        eventually("rejected", || async {
            t.state().await.ok() == Some(TaskState::Rejected)
        })
        .await;
    }
    assert!(failed.get(Duration::from_secs(10)).await.is_err());
    let m = serve(MonitorConfig::new(), &d.redis).await;
    let c = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", m.base);

    let (status, v) = get(&c, &url("/api/queue/dead-letters/default")).await;
    assert_eq!(status, 200);
    let dead = v["dead_letters"].as_array().expect("list");
    assert_eq!(dead.len(), 2, "{v}");
    assert_eq!(dead[0]["id"], first.id());

    PICKY_OPEN.store(true, Ordering::SeqCst);
    let (status, v) = post(&c, &url(&format!("/api/task/retry/{}", first.id()))).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        first.get(Duration::from_secs(10)).await.expect("ran again"),
        1
    );

    let (status, v) = post(&c, &url("/api/queue/dead-letters/default/retry")).await;
    assert_eq!(status, 400);
    assert!(
        v["error"].as_str().expect("error").contains("all=true"),
        "{v}"
    );
    let (status, v) = post(&c, &url("/api/queue/dead-letters/default/retry?all=true")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["retried"], json!([second.id()]));
    assert_eq!(
        second
            .get(Duration::from_secs(10))
            .await
            .expect("ran again"),
        2
    );
    let (_, v) = get(&c, &url("/api/queue/dead-letters/default")).await;
    assert_eq!(v["dead_letters"], json!([]));

    let (status, v) = post(&c, &url(&format!("/api/task/retry/{}", failed.id()))).await;
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"]
            .as_str()
            .expect("error")
            .contains("not among the dead letters"),
        "{v}"
    );
    let (status, _) = post(&c, &url("/api/task/retry/no-such-task")).await;
    assert_eq!(status, 404);

    let events = d.redis.events(None, 100_000).await.expect("events");
    let retried: Vec<_> = events
        .iter()
        .filter(|(_, e)| e.kind == EventKind::OperatorAction)
        .filter_map(|(_, e)| e.task_id.clone())
        .collect();
    assert_eq!(retried, [first.id(), second.id()]);
    d.stop().await;
}
