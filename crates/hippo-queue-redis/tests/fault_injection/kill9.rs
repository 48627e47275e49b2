//! Scenario 1: kill -9 of the worker process every 1-3 s, 10 times, while 20,000
//! acks_late + reject_on_worker_lost tasks of 5-50 ms drain; a fresh worker process is
//! started after each kill. At concurrency 256 a worker drains 20,000 such tasks in
//! about 4 s, before a second kill can land, so that run sends 250,000: the ten kills
//! must all land mid-drain.

use std::time::{Duration, Instant};

use crate::harness::{
    Child, ChildSpec, Rng, Row, Sampler, Scene, WorkerCfg, count, heavy, late, note, scale,
    send_work, wait_final,
};

async fn kill_loop(concurrency: usize) {
    let _machine = heavy().await;
    let scenario = format!("kill -9 x10, c={concurrency}");
    let n = count(if concurrency > 64 { 250_000 } else { 20_000 });
    let scene = Scene::start(None).await;
    let cfg = WorkerCfg::new(concurrency, 4);
    let window = cfg.window();
    let mut rng = Rng::new(concurrency as u64);
    let ids = send_work(&scene.app, (0..n).map(|_| (rng.range(5, 50), late()))).await;
    note(&scenario, format!("sent {n}"));

    let sampler = Sampler::start(&scene.url);
    let spec = ChildSpec::new(&scene.url, &scene.counter_url, &cfg);
    let mut gen_ = 0;
    let mut child = Child::spawn(&spec, &format!("kill9-c{concurrency}-{gen_}"));
    let kills_wanted = ((10.0 * scale()).round() as usize).max(2);
    let mut kills = 0;
    let started = Instant::now();
    while kills < kills_wanted {
        tokio::time::sleep(Duration::from_millis(rng.range(1000, 3000))).await;
        let distinct = scene.counters.distinct().await;
        if distinct >= n {
            note(&scenario, "every task started before the kills ended");
            break;
        }
        child.kill9();
        kills += 1;
        gen_ += 1;
        note(
            &scenario,
            format!("kill {kills}: {distinct} of {n} started so far"),
        );
        child = Child::spawn(&spec, &format!("kill9-c{concurrency}-{gen_}"));
    }
    let finals = wait_final(
        &scene.backend,
        &ids,
        Duration::from_secs(15),
        Duration::from_secs(300),
    )
    .await;
    let elapsed = started.elapsed();
    drop(child);
    let held = sampler.finish().await;
    let execs = scene.counters.execs().await;
    let row = Row::new(&scenario, &ids, &finals, &execs, held, window)
        .note(format!("{kills} kills, drained in {elapsed:.0?}"));
    row.print();

    row.assert_all_success_within_window();
    assert_eq!(
        kills, kills_wanted,
        "{scenario}: only {kills} of {kills_wanted} kills landed before every task had started"
    );
    row.assert_extra_runs_at_most(
        (window * kills) as i64,
        &format!("window {window} x {kills} kills"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_every_1_to_3_s_concurrency_8() {
    kill_loop(8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_every_1_to_3_s_concurrency_256() {
    kill_loop(256).await;
}
