//! Scenario 3 (review Q2): a worker process whose wall clock is 15 s ahead of, or
//! behind, another's (libfaketime; monotonic time left alone so timers work), both
//! running long acks_late + reject_on_worker_lost tasks. Liveness must not depend on
//! the workers' clocks: no WorkerLost record, no task run twice.

use std::time::Duration;

use hippo_queue_redis::test_server::RedisServer;

use crate::harness::{
    COUNTER_DB, Child, ChildSpec, Counters, Row, Sampler, Work, WorkerCfg, app_on, count, late,
    light, note, scaled, wait_final, wait_for,
};

async fn skewed(offset: &str) {
    let _machine = light().await;
    let scenario = format!("worker clock {offset} vs real clock");
    let server = RedisServer::start();
    let url = server.url(0);
    let counter_url = server.url(COUNTER_DB);
    let (app, backend) = app_on(&url, &counter_url, None).await;
    let counters = Counters::connect(&counter_url).await;
    let cfg = WorkerCfg::new(2, 1).lost_after(Duration::from_secs(2));
    let window = cfg.window();
    let spec = ChildSpec {
        url: url.clone(),
        counter_url: counter_url.clone(),
        cfg: cfg.clone(),
        faketime: None,
    };
    let skewed_spec = ChildSpec {
        faketime: Some(offset.to_string()),
        ..spec.clone()
    };
    let sampler = Sampler::start(&url);
    let label = if offset.starts_with('-') {
        "behind"
    } else {
        "ahead"
    };
    // The worker whose clock is behind starts first and takes tasks; then the one
    // ahead starts (a worker that started with no leases could not show it: see Q1).
    let behind_first = offset.starts_with('-');
    let first_spec = if behind_first { &skewed_spec } else { &spec };
    let second_spec = if behind_first { &spec } else { &skewed_spec };
    let _first = Child::spawn(first_spec, &format!("skew-{label}-first"));
    let n = count(8).max(4);
    let ms = scaled(Duration::from_secs(4), Duration::from_secs(3)).as_millis() as u64;
    // Two tasks for the first worker's two slots...
    let mut ids: Vec<String> = app
        .send_many::<Work>((0..2).map(|_| (ms, late())))
        .await
        .expect("send")
        .iter()
        .map(|h| h.id().to_string())
        .collect();
    let busy = wait_for(Duration::from_secs(10), || {
        let c = &counters;
        async move { c.distinct().await >= 2 }
    })
    .await;
    assert!(busy, "{scenario}: the first worker did not start its tasks");
    // ...then the other joins with free slots, and the rest follow a second later.
    let _second = Child::spawn(second_spec, &format!("skew-{label}-second"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    ids.extend(
        app.send_many::<Work>((2..n).map(|_| (ms, late())))
            .await
            .expect("send")
            .iter()
            .map(|h| h.id().to_string()),
    );
    note(
        &scenario,
        format!("sent {n} tasks of {ms} ms; the worker behind ran 2 when the one ahead joined"),
    );
    let finals = wait_final(
        &backend,
        &ids,
        Duration::from_secs(15),
        Duration::from_secs(90),
    )
    .await;
    let held = sampler.finish().await;
    let execs = counters.execs().await;
    let row = Row::new(&scenario, &ids, &finals, &execs, held, window);
    row.print();

    assert_eq!(
        row.worker_lost(),
        0,
        "{scenario}: {} tasks recorded FAILURE WorkerLostError while their worker was alive (liveness judged on skewed wall clocks)",
        row.worker_lost()
    );
    assert_eq!(
        row.runs_gt1, 0,
        "{scenario}: {} tasks ran more than once ({} extra runs): a live worker was recovered by the other",
        row.runs_gt1, row.extra_runs
    );
    assert_eq!(row.lost, 0, "{scenario}: {} tasks lost", row.lost);
    assert_eq!(row.success, n, "{scenario}: {:?}", row.other);
    assert!(
        held.one as usize <= window,
        "{scenario}: one worker held {} messages, above its window of {window}",
        held.one
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faketime_worker_15s_ahead() {
    skewed("+15s").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faketime_worker_15s_behind() {
    skewed("-15s").await;
}
