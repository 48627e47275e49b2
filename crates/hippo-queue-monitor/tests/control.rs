//! Flower's mutating routes against a real Redis and a live worker: sending tasks,
//! pool and consumer controls, limits, revoke and shutdown; CSRF, read-only mode and
//! the record of each action in the event stream.

mod support;

use hippo_queue_core::TaskState;
use hippo_queue_core::backend::EventLog;
use hippo_queue_core::events::EventKind;
use hippo_queue_monitor::MonitorConfig;
use serde_json::{Value, json};
use support::{Deployment, Sleep, eventually, get, serve};

async fn post(c: &reqwest::Client, url: &str, body: &str) -> (u16, Value) {
    let res = c
        .post(url)
        .basic_auth("ann", Some("s3cret"))
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_actions_against_a_live_worker() {
    let d = Deployment::start().await;
    let config = MonitorConfig::new()
        .basic_auth("ann:s3cret")
        .expect("credentials");
    let m = serve(config, &d.redis).await;
    let c = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", m.base);
    let authed_get = |p: String| {
        let c = c.clone();
        async move {
            let res = c
                .get(p)
                .basic_auth("ann", Some("s3cret"))
                .send()
                .await
                .expect("get");
            res.json::<Value>().await.expect("json")
        }
    };

    // sending tasks by name
    let (status, v) = post(&c, &url("/api/task/apply/test.add"), r#"{"args": [4, 4]}"#).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["state"].clone(), v["result"].clone()),
        (json!("SUCCESS"), json!(8))
    );
    let (status, v) = post(
        &c,
        &url("/api/task/async-apply/test.add"),
        r#"{"args": [2, 3], "priority": 5}"#,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["state"], "PENDING");
    let id = v["task-id"].as_str().expect("task-id").to_string();
    let r = authed_get(url(&format!("/api/task/result/{id}?timeout=10"))).await;
    assert_eq!(r["result"], 5, "{r}");
    let (status, v) = post(
        &c,
        &url("/api/task/send-task/test.sleep"),
        r#"{"args": [5]}"#,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = post(&c, &url("/api/task/apply/test.add"), r#"{"args": 3}"#).await;
    assert_eq!(status, 400);
    assert!(v["error"].as_str().expect("error").contains("args"), "{v}");

    // pool, consumers, limits
    let (status, v) = post(&c, &url("/api/worker/pool/grow/w1@test?n=2"), "").await;
    assert_eq!(
        (status, v),
        (
            200,
            json!({"message": "Growing 'w1@test' worker's pool by 2"})
        )
    );
    eventually("the pool grows to 3", || async {
        authed_get(url("/api/workers")).await["w1@test"]["stats"]["pool"]["max-concurrency"] == 3
    })
    .await;
    let (status, _) = post(&c, &url("/api/worker/pool/shrink/w1@test?n=1"), "").await;
    assert_eq!(status, 200);
    let (status, _) = post(
        &c,
        &url("/api/worker/pool/autoscale/w1@test?min=1&max=2"),
        "",
    )
    .await;
    assert_eq!(status, 200);
    let (status, v) = post(
        &c,
        &url("/api/worker/pool/autoscale/w1@test?min=3&max=1"),
        "",
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"].as_str().expect("error").contains("autoscale"),
        "{v}"
    );
    let (status, _) = post(&c, &url("/api/worker/pool/restart/w1@test"), "").await;
    assert_eq!(status, 200);
    let (status, _) = post(
        &c,
        &url("/api/worker/queue/add-consumer/w1@test?queue=extra"),
        "",
    )
    .await;
    assert_eq!(status, 200);
    eventually("the worker consumes extra", || async {
        let q = authed_get(url("/api/queues/length")).await;
        q["active_queues"]
            .as_array()
            .is_some_and(|a| a.iter().any(|q| q["name"] == "extra"))
    })
    .await;
    let (status, _) = post(
        &c,
        &url("/api/worker/queue/cancel-consumer/w1@test?queue=extra"),
        "",
    )
    .await;
    assert_eq!(status, 200);
    let (status, v) = post(&c, &url("/api/worker/queue/add-consumer/w1@test"), "").await;
    assert_eq!(
        (status, v["error"].clone()),
        (400, json!("queue: required"))
    );
    let (status, _) = post(
        &c,
        &url("/api/task/rate-limit/test.add?workername=w1@test&ratelimit=100/s"),
        "",
    )
    .await;
    assert_eq!(status, 200);
    let (status, v) = post(
        &c,
        &url("/api/task/rate-limit/test.add?workername=w1@test&ratelimit=fast"),
        "",
    )
    .await;
    assert_eq!(status, 400, "{v}");
    let (status, _) = post(
        &c,
        &url("/api/task/timeout/test.sleep?workername=w1@test&soft=5&hard=10"),
        "",
    )
    .await;
    assert_eq!(status, 200);
    let (status, v) = post(
        &c,
        &url("/api/task/timeout/test.sleep?workername=w1@test&soft=5&hard=2"),
        "",
    )
    .await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = post(&c, &url("/api/worker/pool/grow/w9@test"), "").await;
    assert_eq!(
        (status, v["error"].clone()),
        (404, json!("Unknown worker 'w9@test'"))
    );

    // a durable pause: nothing is leased until the queue is resumed
    let (status, v) = post(&c, &url("/api/queue/pause/default"), "").await;
    assert_eq!(
        (status, v["message"].clone()),
        (200, json!("Paused 'default'"))
    );
    let waiting = d.app.delay::<support::Add>((20, 22)).await.expect("send");
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(waiting.state().await.expect("state"), TaskState::Pending);
    let q = authed_get(url("/api/queues/length")).await;
    assert_eq!(q["active_queues"][0]["paused"], true, "{q}");
    assert_eq!(q["active_queues"][0]["messages"], 1, "{q}");
    let (status, _) = post(&c, &url("/api/queue/resume/default"), "").await;
    assert_eq!(status, 200);
    assert_eq!(
        waiting
            .get(std::time::Duration::from_secs(10))
            .await
            .expect("ran after resume"),
        42
    );

    // revoke a running task
    let long = d.app.delay::<Sleep>(60_000).await.expect("send");
    eventually("the long task starts", || async {
        long.state().await.ok() == Some(TaskState::Started)
    })
    .await;
    let (status, v) = post(
        &c,
        &url(&format!("/api/task/revoke/{}?terminate=true", long.id())),
        "",
    )
    .await;
    assert_eq!(
        (status, v),
        (200, json!({"message": format!("Revoked '{}'", long.id())}))
    );
    eventually("the long task is revoked", || async {
        long.state().await.ok() == Some(TaskState::Revoked)
    })
    .await;
    // its timeline: received, started, revoked, and the revoke: who, from where, what
    let timeline = url(&format!("/api/task/timeline/{}", long.id()));
    eventually("the revocation is in the timeline", || {
        let timeline = timeline.clone();
        let authed_get = &authed_get;
        async move {
            let tl = authed_get(timeline).await;
            tl["events"]
                .as_array()
                .is_some_and(|e| e.iter().any(|x| x["type"] == "task-revoked"))
        }
    })
    .await;
    let tl = authed_get(timeline.clone()).await;
    assert_eq!(tl["task-id"], long.id());
    assert_eq!(tl["complete"], true, "{tl}");
    let types: Vec<&str> = tl["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    for t in [
        "task-received",
        "task-started",
        "operator-action",
        "task-revoked",
    ] {
        assert!(types.contains(&t), "no {t} in {tl}");
    }
    let events = tl["events"].as_array().expect("events");
    let times: Vec<f64> = events
        .iter()
        .filter_map(|e| e["timestamp"].as_f64())
        .collect();
    assert_eq!(times.len(), events.len(), "{tl}");
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first: {tl}");
    assert!(
        events
            .iter()
            .filter(|e| e["type"] != "operator-action")
            .all(|e| e["worker"] == "w1@test" && e["timestamp"].as_f64().is_some()),
        "{tl}"
    );
    let act = &tl["actions"][0];
    assert_eq!(act["type"], "operator-action");
    assert_eq!(act["operator"]["action"], "revoke");
    assert_eq!(act["operator"]["who"], "user ann");
    assert!(
        act["operator"]["from"]
            .as_str()
            .is_some_and(|f| f.starts_with("127.0.0.1:")),
        "{tl}"
    );
    let (status, _) = get(&c, &url("/api/task/timeline/no-such-task")).await;
    assert_eq!(status, 401, "credentials are needed");
    let none = authed_get(url("/api/task/timeline/no-such-task")).await;
    assert_eq!(none["events"], json!([]));
    assert_eq!(none["actions"], json!([]));

    // CSRF: a browser on another site cannot act; credentials alone are not enough
    for (name, value) in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let res = c
            .post(url("/api/worker/pool/grow/w1@test"))
            .basic_auth("ann", Some("s3cret"))
            .header(name, value)
            .send()
            .await
            .expect("request");
        assert_eq!(res.status().as_u16(), 403, "{name}: {value}");
    }
    let host = m.base.trim_start_matches("http://").to_string();
    let res = c
        .post(url("/api/task/send-task/test.add"))
        .basic_auth("ann", Some("s3cret"))
        .header("origin", format!("http://{host}"))
        .header("sec-fetch-site", "same-origin")
        .body(r#"{"args": [1, 1]}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 200, "same origin");
    let res = c
        .post(url("/api/task/revoke/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 401);

    // read-only mode: every mutating route refused, reads served
    let ro = serve(
        MonitorConfig::new()
            .basic_auth("ann:s3cret")
            .expect("credentials")
            .read_only(true),
        &d.redis,
    )
    .await;
    for path in [
        "/api/task/revoke/x",
        "/api/worker/shutdown/w1@test",
        "/api/task/send-task/test.add",
    ] {
        let res = c
            .post(format!("{}{path}", ro.base))
            .basic_auth("ann", Some("s3cret"))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status().as_u16(), 403, "{path}");
        let v: Value = res.json().await.expect("json");
        assert_eq!(v["error"], "Read only mode is enabled");
    }
    let res = c
        .get(format!("{}/api/tasks?limit=1", ro.base))
        .basic_auth("ann", Some("s3cret"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 200);

    // every action is in the event stream, with who and from where
    let events = d.redis.events(None, 100_000).await.expect("events");
    let actions: Vec<_> = events
        .iter()
        .filter(|(_, e)| e.kind == EventKind::OperatorAction)
        .filter_map(|(_, e)| Some((e.operator.clone()?, e.task_id.clone(), e.worker.clone())))
        .collect();
    let revoke = actions
        .iter()
        .find(|(a, _, _)| a.action == "revoke")
        .expect("the revoke is recorded");
    assert_eq!(revoke.0.who, "user ann");
    assert!(revoke.0.from.starts_with("127.0.0.1:"), "{:?}", revoke.0);
    assert_eq!(revoke.1.as_deref(), Some(long.id()));
    for a in [
        "pause",
        "resume",
        "apply",
        "async-apply",
        "send-task",
        "pool-grow",
        "pool-shrink",
        "autoscale",
        "add-consumer",
        "rate-limit",
        "time-limit",
    ] {
        assert!(
            actions.iter().any(|(x, _, _)| x.action == a),
            "{a} not recorded: {actions:?}"
        );
    }
    let refused = actions
        .iter()
        .filter(|(x, _, _)| x.action == "pool-grow")
        .count();
    assert_eq!(
        refused, 1,
        "the 404 and the CSRF refusals did nothing and are not actions"
    );

    // shutdown, last
    let (status, v) = post(&c, &url("/api/worker/shutdown/w1@test"), "").await;
    assert_eq!((status, v), (200, json!({"message": "Shutting down!"})));
    eventually("the worker goes offline", || async {
        get(&c, &url("/healthcheck")).await.0 == 200
            && authed_get(url("/api/workers?status=true")).await == json!({"w1@test": false})
    })
    .await;
    d.stop().await;
}
