//! Scenario 3 (review Q2): a worker process whose wall clock is 15 s ahead of, or
//! behind, another's (libfaketime; monotonic time left alone so timers work), both
//! running long acks_late + reject_on_worker_lost tasks. Liveness must not depend on
//! the workers' clocks: no WorkerLost record, no task run twice.

use std::time::Duration;

use crate::harness::{
    Child, ChildSpec, Row, Sampler, Scene, WorkerCfg, count, late, light, note, scaled, send_work,
    wait_final, wait_for,
};

async fn skewed(offset: &str) {
    let _machine = light().await;
    let scenario = format!("worker clock {offset} vs real clock");
    let scene = Scene::start(None).await;
    let cfg = WorkerCfg::new(2, 1).lost_after(Duration::from_secs(2));
    let window = cfg.window();
    let spec = ChildSpec::new(&scene.url, &scene.counter_url, &cfg);
    let skewed_spec = ChildSpec {
        faketime: Some(offset.to_string()),
        ..spec.clone()
    };
    let sampler = Sampler::start(&scene.url);
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
    let mut ids = send_work(&scene.app, (0..2).map(|_| (ms, late()))).await;
    let busy = wait_for(Duration::from_secs(10), || {
        let c = &scene.counters;
        async move { c.distinct().await >= 2 }
    })
    .await;
    assert!(busy, "{scenario}: the first worker did not start its tasks");
    // ...then the other joins with free slots, and the rest follow a second later.
    let _second = Child::spawn(second_spec, &format!("skew-{label}-second"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    ids.extend(send_work(&scene.app, (2..n).map(|_| (ms, late()))).await);
    note(
        &scenario,
        format!("sent {n} tasks of {ms} ms; the worker behind ran 2 when the one ahead joined"),
    );
    let finals = wait_final(
        &scene.backend,
        &ids,
        Duration::from_secs(15),
        Duration::from_secs(90),
    )
    .await;
    let held = sampler.finish().await;
    let execs = scene.counters.execs().await;
    let row = Row::new(&scenario, &ids, &finals, &execs, held, window);
    row.print();

    row.assert_no_worker_lost(
        "while their worker was alive (liveness judged on skewed wall clocks)",
    );
    row.assert_no_task_ran_twice("a live worker was recovered by the other");
    row.assert_all_success_within_window();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faketime_worker_15s_ahead() {
    skewed("+15s").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faketime_worker_15s_behind() {
    skewed("-15s").await;
}
