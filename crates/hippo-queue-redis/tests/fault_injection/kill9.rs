//! Scenario 1: kill -9 of the worker process every 1-3 s, 10 times, while 20,000
//! acks_late + reject_on_worker_lost tasks of 5-50 ms drain; a fresh worker process is
//! started after each kill. At concurrency 256 a worker drains 20,000 such tasks in
//! about 4 s, before a second kill can land, so that run sends 250,000: the ten kills
//! must all land mid-drain.

use std::time::{Duration, Instant};

use hippo_queue_redis::test_server::RedisServer;

use crate::harness::{
    Child, ChildSpec, Counters, Rng, Row, Sampler, WorkerCfg, app_on, count, heavy, late, note,
    scale, wait_final,
};

async fn kill_loop(concurrency: usize) {
    let _machine = heavy().await;
    let scenario = format!("kill -9 x10, c={concurrency}");
    let n = count(if concurrency > 64 { 250_000 } else { 20_000 });
    let server = RedisServer::start();
    let url = server.url(0);
    let counter_url = server.url(crate::harness::COUNTER_DB);
    let (app, backend) = app_on(&url, &counter_url, None).await;
    let counters = Counters::connect(&counter_url).await;
    let cfg = WorkerCfg::new(concurrency, 4);
    let window = cfg.window();
    let mut rng = Rng::new(concurrency as u64);
    let handles = app
        .send_many::<crate::harness::Work>((0..n).map(|_| (rng.range(5, 50), late())))
        .await
        .expect("send");
    let ids: Vec<String> = handles.iter().map(|h| h.id().to_string()).collect();
    note(&scenario, format!("sent {n}"));

    let sampler = Sampler::start(&url);
    let spec = ChildSpec {
        url: url.clone(),
        counter_url: counter_url.clone(),
        cfg: cfg.clone(),
        faketime: None,
    };
    let mut gen_ = 0;
    let mut child = Child::spawn(&spec, &format!("kill9-c{concurrency}-{gen_}"));
    let kills_wanted = ((10.0 * scale()).round() as usize).max(2);
    let mut kills = 0;
    let started = Instant::now();
    while kills < kills_wanted {
        tokio::time::sleep(Duration::from_millis(rng.range(1000, 3000))).await;
        let distinct = counters.distinct().await;
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
        &backend,
        &ids,
        Duration::from_secs(15),
        Duration::from_secs(300),
    )
    .await;
    let elapsed = started.elapsed();
    drop(child);
    let held = sampler.finish().await;
    let execs = counters.execs().await;
    let row = Row::new(&scenario, &ids, &finals, &execs, held, window)
        .note(format!("{kills} kills, drained in {elapsed:.0?}"));
    row.print();

    assert_eq!(
        row.lost, 0,
        "{scenario}: {} of {n} tasks have no final record (lost)",
        row.lost
    );
    assert_eq!(
        row.other_total(),
        0,
        "{scenario}: tasks ended other than SUCCESS: {:?}",
        row.other
    );
    assert_eq!(
        kills, kills_wanted,
        "{scenario}: only {kills} of {kills_wanted} kills landed before every task had started"
    );
    let bound = (window * kills) as i64;
    assert!(
        row.extra_runs <= bound,
        "{scenario}: {} extra runs ({} tasks ran more than once), above window {window} x {kills} kills = {bound}",
        row.extra_runs,
        row.runs_gt1
    );
    assert!(
        held.one as usize <= window,
        "{scenario}: one worker held {} messages at once, above its window of {window}",
        held.one
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
