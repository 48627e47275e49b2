//! Scenario 4 (review Q3): Redis refuses writes for 15 s while three workers run long
//! acks_late + reject_on_worker_lost tasks: `maxmemory 1` with `noeviction` (OOM),
//! demotion to a replica of a second server (READONLY), and `DEBUG SLEEP` (a server
//! that answers nothing). When Redis is writable again no live worker may be recovered
//! by another (no WorkerLost record, no task run twice), and everything completes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hippo_queue_core::backend::prelude::*;
use hippo_queue_redis::test_server::RedisServer;

use crate::harness::{
    Counters, Row, Sampler, WorkerCfg, app_on, count, late, light, note, scaled, send_work,
    wait_final, wait_for,
};

#[derive(Clone, Copy, Debug)]
enum Refusal {
    Oom,
    Replica,
    DebugSleep,
}

/// `main` becomes a replica of `second` without losing a write: `second` first
/// replicates `main`, writes pause until it has caught up, then the roles swap.
async fn demote(main: &Arc<RedisServer>, second: &RedisServer) {
    second.replicaof(Some(main.port)).expect("REPLICAOF main");
    let up = wait_for(Duration::from_secs(10), || async {
        second
            .info_field("replication", "master_link_status")
            .as_deref()
            == Some("up")
    })
    .await;
    assert!(up, "the second server did not sync from the first");
    main.command(&["CLIENT", "PAUSE", "10000", "WRITE"])
        .expect("CLIENT PAUSE");
    let caught_up = wait_for(Duration::from_secs(5), || async {
        let a = main.info_field("replication", "master_repl_offset");
        let b = second.info_field("replication", "master_repl_offset");
        a.is_some() && a == b
    })
    .await;
    assert!(caught_up, "the second server did not catch up");
    second
        .replicaof(None)
        .expect("REPLICAOF NO ONE on the second");
    main.replicaof(Some(second.port))
        .expect("REPLICAOF second on the first");
    main.command(&["CLIENT", "UNPAUSE"])
        .expect("CLIENT UNPAUSE");
}

async fn refuse(kind: Refusal) {
    let _machine = light().await;
    let outage = scaled(Duration::from_secs(15), Duration::from_secs(5));
    let scenario = match kind {
        Refusal::Oom => format!("writes refused {outage:?}: maxmemory 1 noeviction"),
        Refusal::Replica => format!("writes refused {outage:?}: REPLICAOF another server"),
        Refusal::DebugSleep => format!("server frozen {outage:?}: DEBUG SLEEP"),
    };
    let main = Arc::new(RedisServer::start());
    let side = RedisServer::start();
    let url = main.url(0);
    let counter_url = side.url(0);
    let counters = Counters::connect(&counter_url).await;
    let cfg = WorkerCfg::new(2, 1).lost_after(Duration::from_secs(2));
    let window = cfg.window();
    let mut workers = Vec::new();
    let mut apps = Vec::new();
    for _ in 0..3 {
        let (app, _) = app_on(&url, &counter_url, None).await;
        workers.push(cfg.builder(&app).start().await.expect("worker"));
        apps.push(app);
    }
    let (app, backend) = app_on(&url, &counter_url, None).await;
    let n = count(12).max(6);
    let ms = 3000;
    let ids = send_work(&app, (0..n).map(|_| (ms, late()))).await;
    let sampler = Sampler::start(&url);
    let started = wait_for(Duration::from_secs(10), || async {
        counters.distinct().await >= 6
    })
    .await;
    assert!(started, "{scenario}: the workers did not start their tasks");

    let second = RedisServer::start();
    let t = Instant::now();
    match kind {
        Refusal::Oom => {
            main.config_set("maxmemory-policy", "noeviction")
                .expect("config");
            main.config_set("maxmemory", "1").expect("config");
            tokio::time::sleep(outage).await;
            main.config_set("maxmemory", "0").expect("config");
        }
        Refusal::Replica => {
            demote(&main, &second).await;
            tokio::time::sleep(outage).await;
            main.replicaof(None).expect("REPLICAOF NO ONE");
        }
        Refusal::DebugSleep => {
            let m = main.clone();
            let secs = outage.as_secs_f64().to_string();
            tokio::task::spawn_blocking(move || m.command(&["DEBUG", "SLEEP", &secs]))
                .await
                .expect("join")
                .expect("DEBUG SLEEP");
        }
    }
    note(
        &scenario,
        format!("writable again after {:.1?}", t.elapsed()),
    );

    let finals = wait_final(
        &backend,
        &ids,
        Duration::from_secs(20),
        Duration::from_secs(120),
    )
    .await;
    let held = sampler.finish().await;
    let leased = backend
        .queue_stats(&["default".to_string()])
        .await
        .map(|s| s[0].reserved)
        .unwrap_or(0);
    let in_flight: Vec<u64> = workers.iter().map(|w| w.stats().in_flight).collect();
    for w in workers {
        w.kill();
    }
    let execs = counters.execs().await;
    let row = Row::new(&scenario, &ids, &finals, &execs, held, window).note(format!(
        "3 workers; afterwards {leased} leased, workers' in_flight {in_flight:?}"
    ));
    row.print();

    row.assert_no_worker_lost("live workers were recovered when Redis came back");
    match kind {
        // A server that answers (OOM, READONLY) recovers nobody: nothing stops,
        // nothing runs twice.
        Refusal::Oom | Refusal::Replica => {
            row.assert_no_task_ran_twice("false recovery of live workers")
        }
        // A server that answers nothing looks like a network cut: each worker stops
        // its running acks_late tasks after worker_lost_after (requeued, run again
        // later); nobody is recovered, so at most the tasks running then run twice.
        Refusal::DebugSleep => assert!(
            row.runs_gt1 <= 3 * cfg.concurrency,
            "{scenario}: {} tasks ran more than once ({} extra runs), more than were running when the server froze",
            row.runs_gt1,
            row.extra_runs
        ),
    }
    // after Redis came back: every task completed
    row.assert_all_success_within_window();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_refused_maxmemory_noeviction() {
    refuse(Refusal::Oom).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_refused_replicaof_another_server() {
    refuse(Refusal::Replica).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_frozen_debug_sleep() {
    refuse(Refusal::DebugSleep).await;
}
