//! Offline workers and the age of waiting messages, against a real Redis and real
//! workers: a worker that stopped is listed offline from the registry, and the queue
//! it consumed is still shown, with how long its messages have waited.

mod support;

use std::time::Duration;

use hippo_queue_core::SendOptions;
use hippo_queue_monitor::MonitorConfig;
use serde_json::{Value, json};
use support::{Add, Deployment, get, serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_workers_are_offline_and_their_queues_age() {
    let d = Deployment::start().await;
    let other = d
        .app
        .worker()
        .name("w2@test")
        .queues(["other"])
        .concurrency(1)
        .heartbeat_interval(Duration::from_millis(100))
        .fetch_wait(Duration::from_millis(100))
        .start()
        .await
        .expect("start w2");
    let m = serve(MonitorConfig::new(), &d.redis).await;
    let c = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", m.base);
    let (_, v) = get(&c, &url("/api/workers?status=true")).await;
    assert_eq!(v, json!({"w1@test": true, "w2@test": true}));

    other.shutdown().await;
    // nobody consumes `other` now: what is sent there waits
    let to_other = |priority: u8| SendOptions::new().queue("other").priority(priority);
    d.app
        .apply_async::<Add>((1, 1), to_other(5))
        .await
        .expect("send");
    d.app
        .apply_async::<Add>((2, 2), to_other(0))
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    // Flower's status-only form, then the full one: w2 offline with its last record
    let (_, v) = get(&c, &url("/api/workers?status=true")).await;
    assert_eq!(v, json!({"w1@test": true, "w2@test": false}));
    let (status, v) = get(&c, &url("/api/workers")).await;
    assert_eq!(status, 200);
    assert_eq!(v["w1@test"]["status"], true, "{v}");
    let w2 = &v["w2@test"];
    assert_eq!(w2["status"], false, "{v}");
    assert_eq!(w2["active_queues"][0]["name"], "other", "{v}");
    assert_eq!(w2["registry"]["id"], "w2@test");
    assert!(w2["timestamp"].as_f64().is_some_and(|t| t > 0.0), "{v}");
    assert_eq!(w2["active"], json!([]));
    let (status, v) = get(&c, &url("/api/workers?workername=w2@test")).await;
    assert_eq!(status, 200);
    assert_eq!(v.as_object().map(|o| o.len()), Some(1), "{v}");
    assert_eq!(v["w2@test"]["status"], false);

    // the queue of the stopped worker is listed, with the age of its oldest messages
    let (status, v) = get(&c, &url("/api/queues/length")).await;
    assert_eq!(status, 200);
    let queues = v["active_queues"].as_array().expect("active_queues");
    let q = queues
        .iter()
        .find(|q| q["name"] == "other")
        .unwrap_or_else(|| panic!("no queue other in {v}"));
    assert_eq!(q["messages"], 2, "{v}");
    let ages = q["oldest_waiting_seconds_by_priority"]
        .as_array()
        .expect("ages by priority");
    assert_eq!(ages.len(), 10);
    let age = |p: usize| ages[p].as_f64();
    assert!(age(5).is_some_and(|a| (1.0..60.0).contains(&a)), "{v}");
    assert!(age(0).is_some_and(|a| a >= 1.0), "{v}");
    assert!(ages[9].is_null() && ages[1].is_null(), "{v}");
    assert!(
        q["oldest_waiting_seconds"]
            .as_f64()
            .is_some_and(|a| a >= age(0).unwrap_or(f64::MAX).max(age(5).unwrap_or(0.0)) - 0.001),
        "the oldest of all levels: {v}"
    );
    let default = queues
        .iter()
        .find(|q| q["name"] == "default")
        .expect("default");
    assert_eq!(default["oldest_waiting_seconds"], Value::Null, "{v}");

    // /metrics: w2 offline, the ages as a gauge per queue and priority; promtool agrees
    let text = c
        .get(url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert!(
        text.contains(r#"flower_worker_online{worker="w2@test"} 0"#),
        "{text}"
    );
    assert!(
        text.contains(r#"flower_worker_online{worker="w1@test"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("# TYPE hippo_queue_oldest_waiting_seconds gauge"),
        "{text}"
    );
    let gauge = |queue: &str, priority: u8| -> Option<f64> {
        let prefix = format!(
            r#"hippo_queue_oldest_waiting_seconds{{queue="{queue}",priority="{priority}"}} "#
        );
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.parse().ok())
    };
    assert!(gauge("other", 5).is_some_and(|a| a >= 1.0), "{text}");
    assert_eq!(gauge("other", 9), Some(0.0), "{text}");
    assert_eq!(gauge("default", 0), Some(0.0), "{text}");
    let complaints = support::promtool_check(&text);
    assert!(complaints.is_empty(), "promtool: {complaints}\n{text}");
    d.stop().await;
}
