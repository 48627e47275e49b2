//! The beat's status and the charts' numbers against a real Redis, a real worker and
//! a real beat: `GET /api/beat` lists the entries with their runs; `GET
//! /api/task/stats` counts finished tasks by type from the event stream.

mod support;

use std::time::Duration;

use hippo_queue_core::beat::{Beat, Entry, Schedule};
use hippo_queue_monitor::MonitorConfig;
use serde_json::{Value, json};
use support::{Add, Deployment, Fail, eventually, get, serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beat_status_and_task_stats() {
    let d = Deployment::start().await;
    let m = serve(MonitorConfig::new(), &d.redis).await;
    let c = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", m.base);

    // no scheduler yet
    let (status, v) = get(&c, &url("/api/beat")).await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({"running": false, "leader": null, "entries": []}));

    let entry = Entry::new::<Add>(
        "add-every-second",
        (1, 2),
        Schedule::every(Duration::from_secs(1)),
    )
    .expect("entry");
    let beat = Beat::builder(d.app.clone(), d.redis.clone())
        .id("beat-test")
        .entry(entry)
        .lease_ttl(Duration::from_millis(600))
        .build()
        .expect("beat");
    let running = beat.spawn();
    let mut v = Value::Null;
    for _ in 0..100 {
        v = get(&c, &url("/api/beat")).await.1;
        if v["entries"][0]["last_run"].is_f64() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(v["running"], true, "{v}");
    assert_eq!(v["leader"]["beat_id"], "beat-test", "{v}");
    let e = &v["entries"][0];
    assert_eq!(e["name"], "add-every-second", "{v}");
    assert_eq!(e["task"], "test.add");
    assert!(e["schedule"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
    let last = e["last_run"].as_f64().expect("a last run");
    let next = e["next_run"].as_f64().expect("a next run");
    assert!(next > last, "{v}");
    assert!(
        e["total_run_count"].as_u64().is_some_and(|n| n >= 1),
        "the runs claimed so far: {v}"
    );
    running.shutdown().await;

    // finished tasks by type: three adds, one failure
    let mut adds = Vec::new();
    for i in 0..3 {
        adds.push(d.app.delay::<Add>((i, i)).await.expect("send"));
    }
    let fail = d.app.delay::<Fail>(()).await.expect("send");
    for a in &adds {
        a.get(Duration::from_secs(10)).await.expect("add ran");
    }
    assert!(fail.get(Duration::from_secs(10)).await.is_err());
    eventually("the events are written", || async {
        let (_, v) = get(&c, &url("/api/task/stats")).await;
        v["tasks"]["test.fail"]["failed"] == 1
            && v["tasks"]["test.add"]["succeeded"]
                .as_u64()
                .is_some_and(|n| n >= 3)
    })
    .await;
    let (status, v) = get(&c, &url("/api/task/stats")).await;
    assert_eq!(status, 200);
    assert_eq!(v["complete"], true, "{v}");
    assert!(v["scanned"].as_u64().is_some_and(|n| n > 0), "{v}");
    let buckets = v["runtime_buckets"].as_array().expect("buckets").len();
    let add = &v["tasks"]["test.add"];
    let counts = add["runtime"]["counts"].as_array().expect("counts");
    assert_eq!(counts.len(), buckets + 1, "{v}");
    let counted: u64 = counts.iter().filter_map(Value::as_u64).sum();
    assert_eq!(add["runtime"]["count"].as_u64(), Some(counted));
    assert_eq!(counted, add["succeeded"].as_u64().unwrap_or(0), "{v}");
    let rate = add["rate"]["succeeded"].as_array().expect("rate");
    assert_eq!(rate.len(), 30);
    // the last two minutes: the tasks ran just now, maybe across a minute's end
    let recent = |r: &Value| -> u64 { (28..30).filter_map(|i| r[i].as_u64()).sum() };
    assert!(
        recent(&add["rate"]["succeeded"]) >= 3,
        "the successes of the last minutes: {v}"
    );
    assert_eq!(recent(&v["tasks"]["test.fail"]["rate"]["failed"]), 1, "{v}");
    d.stop().await;
}
