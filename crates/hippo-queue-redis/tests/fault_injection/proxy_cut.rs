//! Scenario 5: a worker reaches Redis through a proxy that stops forwarding (without
//! closing anything) for 30 s. Its lease runs out, so another worker recovers its
//! messages; the cut-off worker must stop its running tasks rather than finish them a
//! second time (Celery's `worker_cancel_long_running_tasks_on_connection_loss`).
//! Nothing is lost, and the worker takes work again once the proxy forwards again.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hippo_queue_redis::test_server::RedisServer;

use crate::harness::{
    COUNTER_DB, Counters, Log, Row, Sampler, What, WorkerCfg, app_on, events, late, light, note,
    scaled, send_work, wait_final, wait_for,
};
use crate::proxy::Proxy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_stops_forwarding_for_30s() {
    let _machine = light().await;
    let lost_after = Duration::from_secs(2);
    let cut = scaled(Duration::from_secs(30), 4 * lost_after);
    let scenario = format!("proxy black hole {cut:?}");
    let server = RedisServer::start();
    let url = server.url(0);
    let counter_url = server.url(COUNTER_DB);
    let proxy = Proxy::start(server.port).await;
    let counters = Counters::connect(&counter_url).await;
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let cfg = WorkerCfg::new(2, 1).lost_after(lost_after);
    let window = cfg.window();
    let (app_a, _) = app_on(&proxy.url(0), &counter_url, Some(log.clone())).await;
    let (app_b, _) = app_on(&url, &counter_url, Some(log.clone())).await;
    let (app, backend) = app_on(&url, &counter_url, None).await;
    let a = cfg
        .clone()
        .named("A-behind-proxy")
        .builder(&app_a)
        .start()
        .await
        .expect("worker A");
    let b = cfg
        .clone()
        .named("B-direct")
        .builder(&app_b)
        .start()
        .await
        .expect("worker B");
    let sampler = Sampler::start(&url);

    let long = (cut / 4).min(Duration::from_secs(8)).as_millis() as u64;
    let mut ids = send_work(&app, (0..4).map(|_| (long, late()))).await;
    let running_on = |w: &str| {
        let evs = events(&log);
        evs.iter()
            .filter(|e| e.worker == w && e.what == What::Started)
            .filter(|e| {
                !evs.iter()
                    .any(|f| f.worker == w && f.id == e.id && f.what != What::Started)
            })
            .count()
    };
    let both = wait_for(Duration::from_secs(10), || async {
        running_on("A-behind-proxy") == 2 && running_on("B-direct") == 2
    })
    .await;
    assert!(both, "{scenario}: each worker should be running two tasks");
    ids.extend(send_work(&app, (0..2).map(|_| (long, late()))).await);

    let running_at_cut = running_on("A-behind-proxy");
    proxy.pause();
    let t_cut = Instant::now();
    note(
        &scenario,
        format!("cut off A while it runs {running_at_cut} tasks"),
    );
    tokio::time::sleep(cut).await;
    proxy.resume();
    let t_resume = Instant::now();
    note(&scenario, "forwarding again");

    // Work resumes: short tasks after the cut, while B is still busy.
    ids.extend(send_work(&app, (0..12).map(|_| (1000, late()))).await);
    let finals = wait_final(
        &backend,
        &ids,
        Duration::from_secs(20),
        Duration::from_secs(120),
    )
    .await;
    let held = sampler.finish().await;
    a.kill();
    b.kill();
    let evs = events(&log);
    let stopped_during_cut = evs
        .iter()
        .filter(|e| e.worker == "A-behind-proxy" && e.what == What::Aborted)
        .filter(|e| e.at > t_cut && e.at < t_resume)
        .count();
    let completed_on_a_while_expired = evs
        .iter()
        .filter(|e| e.worker == "A-behind-proxy" && e.what == What::Completed)
        .filter(|e| e.at > t_cut + lost_after + Duration::from_secs(1) && e.at < t_resume)
        .count();
    let a_after = evs
        .iter()
        .filter(|e| e.worker == "A-behind-proxy" && e.what == What::Completed)
        .filter(|e| e.at > t_resume)
        .count();
    let done = counters.done().await;
    let completed_twice = done.values().filter(|n| **n > 1).count();
    let execs = counters.execs().await;
    let row = Row::new(&scenario, &ids, &finals, &execs, held, window).note(format!(
        "A stopped {stopped_during_cut} of {running_at_cut} running tasks during the cut, finished {completed_on_a_while_expired} after its lease expired, {a_after} after the cut; {completed_twice} tasks ran to the end twice"
    ));
    row.print();

    assert_eq!(
        stopped_during_cut, running_at_cut,
        "{scenario}: the cut-off worker stopped {stopped_during_cut} of its {running_at_cut} running tasks"
    );
    assert_eq!(
        completed_on_a_while_expired, 0,
        "{scenario}: the cut-off worker finished {completed_on_a_while_expired} tasks after its lease had expired (they were recovered elsewhere)"
    );
    assert_eq!(
        completed_twice, 0,
        "{scenario}: {completed_twice} tasks ran to the end twice"
    );
    row.assert_all_success_within_window();
    assert!(
        a_after >= 1,
        "{scenario}: the cut-off worker finished no task after the proxy forwarded again"
    );
    row.assert_extra_runs_at_most(window as i64, "the cut-off worker's window");
}

/// A graceful shutdown while the worker's Redis is unreachable: it returns within the
/// grace plus the bounded write-out, reports what it could not write, and the task it
/// finished meanwhile is recovered by another worker and still ends SUCCESS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_redis_is_unreachable_is_bounded() {
    let _machine = light().await;
    let scenario = "graceful shutdown with Redis unreachable";
    let lost_after = Duration::from_secs(2);
    let server = RedisServer::start();
    let url = server.url(0);
    let counter_url = server.url(COUNTER_DB);
    let proxy = Proxy::start(server.port).await;
    let counters = Counters::connect(&counter_url).await;
    let cfg = WorkerCfg::new(1, 1).lost_after(lost_after);
    let (app_a, _) = app_on(&proxy.url(0), &counter_url, None).await;
    let (app, backend) = app_on(&url, &counter_url, None).await;
    let a = cfg
        .clone()
        .named("A-behind-proxy")
        .builder(&app_a)
        .start()
        .await
        .expect("worker A");
    let id = send_work(&app, [(800, late())]).await.remove(0);
    assert!(
        counters.wait_execs(&id, 1, Duration::from_secs(10)).await,
        "{scenario}: A never started the task"
    );
    proxy.pause();
    let grace = Duration::from_secs(1);
    let t = Instant::now();
    let report = a.shutdown_within(grace).await;
    let took = t.elapsed();
    let bound = grace + 2 * hippo_queue_core::worker::WRITE_OUT + Duration::from_secs(3);
    proxy.resume();
    let b = cfg
        .clone()
        .named("B-direct")
        .builder(&app)
        .start()
        .await
        .expect("worker B");
    let limit = Duration::from_secs(20);
    let finals = wait_final(&backend, std::slice::from_ref(&id), limit, limit).await;
    b.shutdown().await;
    let execs = counters.execs().await;
    let row = Row::new(
        scenario,
        std::slice::from_ref(&id),
        &finals,
        &execs,
        Default::default(),
        cfg.window(),
    )
    .note(format!(
        "shutdown took {took:.1?} (bound {bound:?}), {} unwritten",
        report.unwritten
    ));
    row.print();
    assert!(took < bound, "{scenario}: shutdown took {took:?}");
    assert_eq!(
        report.unwritten, 1,
        "{scenario}: the finished task's ack could not have been written"
    );
    assert_eq!(row.success, 1, "{scenario}: the task did not end SUCCESS");
}
