//! Flower's read API against a real Redis and a real worker: every route, with the
//! shapes of Flower's documented responses.

mod support;

use std::time::Duration;

use hippo_queue_core::SendOptions;
use hippo_queue_monitor::MonitorConfig;
use serde_json::{Value, json};
use support::{Add, Deployment, Fail, Sleep, eventually, get, serve};

/// The fields of Flower's task dictionary.
const TASK_FIELDS: [&str; 24] = [
    "uuid",
    "name",
    "state",
    "args",
    "kwargs",
    "result",
    "received",
    "sent",
    "started",
    "succeeded",
    "failed",
    "retried",
    "revoked",
    "runtime",
    "retries",
    "worker",
    "eta",
    "expires",
    "exception",
    "traceback",
    "exchange",
    "routing_key",
    "client",
    "timestamp",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_routes_against_a_live_worker() {
    let d = Deployment::start().await;
    // Tasks finished before the monitor starts are listed: nothing is kept in it.
    let mut adds = Vec::new();
    for i in 0..5 {
        adds.push(d.app.delay::<Add>((i, 1)).await.expect("send"));
    }
    let fail = d.app.delay::<Fail>(()).await.expect("send");
    for a in &adds {
        a.get(Duration::from_secs(10)).await.expect("add ran");
    }
    assert!(fail.get(Duration::from_secs(10)).await.is_err());

    let m = serve(MonitorConfig::new(), &d.redis).await;
    let c = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", m.base);

    // healthcheck, with no CORS header and nosniff
    let res = c
        .get(url("/healthcheck"))
        .send()
        .await
        .expect("healthcheck");
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.headers().get("access-control-allow-origin").is_none());
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(res.text().await.expect("body"), "OK");

    // /api/tasks: every record, newest first, with Flower's fields
    let res = c.get(url("/api/tasks")).send().await.expect("tasks");
    assert_eq!(res.status().as_u16(), 200);
    let text = res.text().await.expect("body");
    let tasks: serde_json::Map<String, Value> = serde_json::from_str(&text).expect("json");
    assert_eq!(tasks.len(), 6, "{text}");
    for (id, t) in &tasks {
        for f in TASK_FIELDS {
            assert!(t.get(f).is_some(), "task {id} has no {f}: {t}");
        }
        assert_eq!(t["uuid"], id.as_str());
        assert_eq!(t["worker"], "w1@test");
        assert_eq!(t["routing_key"], "default");
    }
    // newest first: in the body's order, times never increase (records written in
    // the same millisecond come in task-id order)
    let mut ordered: Vec<(usize, f64)> = tasks
        .iter()
        .map(|(id, t)| {
            let at = text.find(&format!("\"{id}\":{{")).expect("the id is a key");
            (at, t["timestamp"].as_f64().expect("timestamp"))
        })
        .collect();
    ordered.sort_by_key(|(at, _)| *at);
    assert!(
        ordered.windows(2).all(|w| w[0].1 >= w[1].1),
        "not newest first: {ordered:?}"
    );
    let failed = &tasks[fail.id()];
    assert_eq!(failed["state"], "FAILURE");
    assert_eq!(failed["exception"], "Boom(\"it broke\")");
    assert!(
        failed["traceback"]
            .as_str()
            .expect("traceback")
            .contains("the disk was full")
    );
    assert!(failed["failed"].is_f64());
    let one = &tasks[adds[2].id()];
    assert_eq!(
        (one["state"].clone(), one["result"].clone()),
        (json!("SUCCESS"), json!("3"))
    );

    // filters, paging, search, sorting
    let count = |v: &Value| v.as_object().map_or(usize::MAX, |o| o.len());
    let (_, v) = get(&c, &url("/api/tasks?state=FAILURE")).await;
    assert_eq!(count(&v), 1);
    let (_, v) = get(&c, &url("/api/tasks?taskname=test.add&limit=2")).await;
    assert_eq!(count(&v), 2);
    let (_, v) = get(&c, &url("/api/tasks?taskname=test.add&offset=4")).await;
    assert_eq!(count(&v), 1);
    let (_, v) = get(&c, &url("/api/tasks?workername=w1@test&state=All")).await;
    assert_eq!(count(&v), 6);
    let (_, v) = get(&c, &url("/api/tasks?workername=w2@test")).await;
    assert_eq!(count(&v), 0);
    let (_, v) = get(&c, &url("/api/tasks?search=name:test.add")).await;
    assert_eq!(count(&v), 5);
    let (_, v) = get(
        &c,
        &url("/api/tasks?search=%22disk%20was%22%20OR%20state:RETRY"),
    )
    .await;
    assert_eq!(count(&v), 1);
    let (_, v) = get(&c, &url("/api/tasks?received_start=2000-01-01%2000:00")).await;
    assert_eq!(count(&v), 6);
    let (_, v) = get(&c, &url("/api/tasks?received_end=2000-01-01%2000:00")).await;
    assert_eq!(count(&v), 0);
    let res = c
        .get(url("/api/tasks?sort_by=-name&limit=1"))
        .send()
        .await
        .expect("sorted");
    let text = res.text().await.expect("body");
    assert!(text.contains("test.fail"), "{text}");
    for (bad, named) in [
        ("search=(email", "search"),
        ("limit=ten", "limit"),
        ("sort_by=age", "sort_by"),
        ("state=DONE", "state"),
        ("received_start=yesterday", "received_start"),
    ] {
        let (status, v) = get(&c, &url(&format!("/api/tasks?{bad}"))).await;
        assert_eq!(status, 400, "{bad}");
        assert!(
            v["error"].as_str().expect("error").contains(named),
            "{bad}: {v}"
        );
    }

    // task info and result
    let (status, v) = get(&c, &url(&format!("/api/task/info/{}", adds[0].id()))).await;
    assert_eq!(status, 200);
    assert_eq!(
        (v["name"].clone(), v["result"].clone()),
        (json!("test.add"), json!("1"))
    );
    let (status, v) = get(&c, &url("/api/task/info/no-such-task")).await;
    assert_eq!(status, 404);
    assert_eq!(v["error"], "Unknown task 'no-such-task'");
    let (_, v) = get(&c, &url(&format!("/api/task/result/{}", adds[4].id()))).await;
    assert_eq!(
        v,
        json!({"task-id": adds[4].id(), "state": "SUCCESS", "result": 5})
    );
    let (_, v) = get(&c, &url(&format!("/api/task/result/{}", fail.id()))).await;
    assert_eq!(v["state"], "FAILURE");
    assert!(
        v["traceback"]
            .as_str()
            .expect("traceback")
            .contains("it broke")
    );
    let (_, v) = get(&c, &url("/api/task/result/nothing")).await;
    assert_eq!(v, json!({"task-id": "nothing", "state": "PENDING"}));
    let (status, v) = get(&c, &url("/api/task/result/nothing?timeout=soon")).await;
    assert_eq!(status, 400);
    assert!(v["error"].as_str().expect("error").contains("timeout"));

    // a running task, a prefetched one and waiting ones; a delayed one
    let sleeping = d.app.delay::<Sleep>(1500).await.expect("send");
    eventually("the sleep starts", || async {
        sleeping.state().await.ok() == Some(hippo_queue_core::TaskState::Started)
    })
    .await;
    let mut queued = Vec::new();
    for i in 0..3 {
        queued.push(d.app.delay::<Add>((i, i)).await.expect("send"));
    }
    let later = d
        .app
        .apply_async::<Add>(
            (0, 0),
            SendOptions::new().countdown(Duration::from_secs(600)),
        )
        .await
        .expect("send");
    let (status, v) = get(&c, &url("/api/queues/length")).await;
    assert_eq!(status, 200);
    let q = &v["active_queues"][0];
    assert_eq!(q["name"], "default", "{v}");
    assert_eq!(q["delayed"], 1, "{v}");
    let waiting = q["messages"].as_u64().expect("messages");
    let reserved = q["reserved"].as_u64().expect("reserved");
    assert_eq!(
        waiting + reserved,
        4,
        "three adds and the running sleep: {v}"
    );

    let (status, v) = get(&c, &url("/api/workers")).await;
    assert_eq!(status, 200);
    let w = &v["w1@test"];
    assert_eq!(w["stats"]["pool"]["max-concurrency"], 1, "{v}");
    assert_eq!(w["active_queues"][0]["name"], "default");
    let registered = w["registered"].as_array().expect("registered");
    assert!(registered.contains(&json!("test.add")), "{v}");
    let active = w["active"].as_array().expect("active");
    assert_eq!(active.len(), 1, "{v}");
    assert_eq!(active[0]["id"], sleeping.id());
    assert_eq!(active[0]["name"], "test.sleep");
    let scheduled = w["scheduled"].as_array().expect("scheduled");
    assert_eq!(scheduled.len(), 1, "{v}");
    assert_eq!(scheduled[0]["request"]["id"], later.id());
    assert!(
        w["stats"]["total"]["test.add"].as_u64().expect("total") >= 5,
        "{v}"
    );
    let (_, v) = get(&c, &url("/api/workers?status=true")).await;
    assert_eq!(v, json!({"w1@test": true}));
    let (status, _) = get(&c, &url("/api/workers?workername=w9@test")).await;
    assert_eq!(status, 404);

    let (_, v) = get(&c, &url("/api/task/types")).await;
    let types = v["task-types"].as_array().expect("task-types");
    for t in ["test.add", "test.fail", "test.sleep"] {
        assert!(types.contains(&json!(t)), "{v}");
    }

    // a task finishing shows without anything kept by the monitor
    sleeping
        .get(Duration::from_secs(10))
        .await
        .expect("sleep ran");
    for q in &queued {
        q.get(Duration::from_secs(10)).await.expect("add ran");
    }
    let (_, v) = get(&c, &url("/api/tasks?taskname=test.sleep")).await;
    assert_eq!(v[sleeping.id()]["state"], "SUCCESS", "{v}");

    // /metrics: Flower's names and labels, the queues', and promtool's approval
    let res = c.get(url("/metrics")).send().await.expect("metrics");
    assert_eq!(res.status().as_u16(), 200);
    let text = res.text().await.expect("body");
    for line in [
        r#"flower_events_total{worker="w1@test",type="task-succeeded",task="test.add"} 8"#,
        r#"flower_events_total{worker="w1@test",type="task-failed",task="test.fail"} 1"#,
        r#"flower_task_runtime_seconds_count{worker="w1@test",task="test.sleep"} 1"#,
        r#"flower_worker_online{worker="w1@test"} 1"#,
        // from the registry record of the last heartbeat: 0 or, just after, 1
        r#"flower_worker_number_of_currently_executing_tasks{worker="w1@test"} "#,
        r#"hippo_queue_delayed_messages{queue="default"} 1"#,
        r#"hippo_queue_waiting_messages{queue="default",priority="0"} 0"#,
        r#"hippo_queue_dead_letters{queue="default"} 0"#,
    ] {
        assert!(text.contains(line), "no {line} in\n{text}");
    }
    for name in [
        "flower_task_prefetch_time_seconds",
        "flower_worker_prefetched_tasks",
    ] {
        assert!(text.contains(&format!("# TYPE {name} gauge")), "{name}");
    }
    let complaints = support::promtool_check(&text);
    assert!(complaints.is_empty(), "promtool: {complaints}\n{text}");
    let om = c
        .get(url("/metrics"))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .expect("metrics");
    assert!(
        om.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("application/openmetrics-text")
    );
    assert!(om.text().await.expect("body").ends_with("# EOF\n"));
    // a second scrape counts nothing twice
    let again = c
        .get(url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert!(again.contains(
        r#"flower_events_total{worker="w1@test",type="task-succeeded",task="test.add"} 8"#
    ));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_worker_and_no_task_is_not_an_error() {
    let server = hippo_queue_redis::test_server::RedisServer::start();
    let redis = hippo_queue_redis::RedisBackend::connect(hippo_queue_redis::RedisConfig::new(
        server.url(1),
    ))
    .await
    .expect("connect");
    let m = serve(MonitorConfig::new(), &redis).await;
    let c = reqwest::Client::new();
    for (path, want) in [
        ("/api/queues/length", json!({"active_queues": []})),
        ("/api/workers", json!({})),
        ("/api/tasks", json!({})),
        ("/api/task/types", json!({"task-types": []})),
    ] {
        let (status, v) = get(&c, &format!("{}{path}", m.base)).await;
        assert_eq!((status, v), (200, want), "{path}");
    }
    let res = c
        .get(format!("{}/metrics", m.base))
        .send()
        .await
        .expect("metrics");
    assert_eq!(res.status().as_u16(), 200);
    let complaints = support::promtool_check(&res.text().await.expect("body"));
    assert!(complaints.is_empty(), "{complaints}");
}
