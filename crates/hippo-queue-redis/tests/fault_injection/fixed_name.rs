//! Scenario 7 (review Q7): a worker with a fixed name (`-n w1@host`, a StatefulSet)
//! restarted after kill -9, a second live worker under a name in use, and a name
//! taken over while its holder was cut off.

use std::time::{Duration, Instant};

use hippo_queue_redis::test_server::RedisServer;

use hippo_queue_core::SendOptions;
use hippo_queue_core::backend::prelude::*;

use crate::harness::{
    COUNTER_DB, Child, ChildSpec, Counters, Log, Row, Sampler, Scene, What, WorkerCfg, app_on,
    events, failure_kind, late, light, note, send_one, send_work, wait_final,
};
use crate::proxy::Proxy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_name_restarted_after_kill9_gets_its_task_redelivered() {
    let _machine = light().await;
    let scenario = "fixed name w1 restarted after kill -9";
    let scene = Scene::start(None).await;
    let lost_after = Duration::from_secs(2);
    let cfg = WorkerCfg::new(2, 1).lost_after(lost_after).named("w1");
    let spec = ChildSpec::new(&scene.url, &scene.counter_url, &cfg);
    let sampler = Sampler::start(&scene.url);
    let mut first = Child::spawn(&spec, "fixed-name-w1-first");
    let id = send_one(&scene.app, 5000, late()).await;
    let running = scene
        .counters
        .wait_execs(&id, 1, Duration::from_secs(10))
        .await;
    assert!(running, "{scenario}: the first w1 never started the task");
    first.kill9();
    // Restarted at once, as systemd or a StatefulSet would; a start that is refused
    // (the old w1 still looks alive) exits, and is retried like a supervisor would.
    let t_restart = Instant::now();
    let mut restarts = 1;
    let mut second = Child::spawn(&spec, "fixed-name-w1-second");
    let deadline = t_restart + 2 * lost_after;
    let mut redelivered = None;
    while Instant::now() < deadline {
        if scene.counters.execs_of(&id).await >= 2 {
            redelivered = Some(t_restart.elapsed());
            break;
        }
        if second.exited().is_some() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            restarts += 1;
            second = Child::spawn(&spec, "fixed-name-w1-second");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    note(
        scenario,
        format!("redelivered: {redelivered:?} after {restarts} starts"),
    );
    let finals = wait_final(
        &scene.backend,
        std::slice::from_ref(&id),
        Duration::from_secs(10),
        Duration::from_secs(10),
    )
    .await;
    drop(second);
    let held = sampler.finish().await;
    let execs = scene.counters.execs().await;
    let row = Row::new(
        scenario,
        std::slice::from_ref(&id),
        &finals,
        &execs,
        held,
        cfg.window(),
    )
    .note(format!(
        "redelivered after {redelivered:?} (limit {:?}), {restarts} starts of the new w1",
        2 * lost_after
    ));
    row.print();
    assert!(
        redelivered.is_some(),
        "{scenario}: the running task was not redelivered within 2 x worker_lost_after ({:?}) of the restart (runs so far: {})",
        2 * lost_after,
        execs.get(&id).copied().unwrap_or(0)
    );
    assert_eq!(row.success, 1, "{scenario}: the task did not complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_live_worker_with_the_same_name_is_refused() {
    let _machine = light().await;
    let scenario = "second live worker named w1";
    let server = RedisServer::start();
    let url = server.url(0);
    let counter_url = server.url(COUNTER_DB);
    let cfg = WorkerCfg::new(2, 1).named("w1");
    let (app1, _) = app_on(&url, &counter_url, None).await;
    let (app2, _) = app_on(&url, &counter_url, None).await;
    let first = cfg.builder(&app1).start().await.expect("first w1");
    // Allowed to wait (for example for the name's deadline), then it must fail.
    let second = tokio::time::timeout(
        3 * cfg.lost_after + Duration::from_secs(5),
        cfg.builder(&app2).start(),
    )
    .await;
    let outcome = match &second {
        Ok(Ok(_)) => "started".to_string(),
        Ok(Err(e)) => format!("refused: {e}"),
        Err(_) => "still waiting after 3 x worker_lost_after".to_string(),
    };
    println!("| {scenario} | {outcome} |");
    first.kill();
    match second {
        Ok(Ok(w)) => {
            w.kill();
            panic!("{scenario}: a second live worker started under the name w1 of a live worker");
        }
        Ok(Err(e)) => {
            let text = e.to_string();
            assert!(
                text.contains("w1"),
                "{scenario}: the error should name the worker: {text}"
            );
        }
        Err(_) => panic!("{scenario}: start neither succeeded nor failed: {outcome}"),
    }
}

/// Two processes that will use one fixed name, on one server: the first ("old")
/// reaches Redis through a proxy that the scenario can stop, the second ("new")
/// directly; each app logs its runs apart. `app` and `backend` send and read.
struct Twins {
    server: RedisServer,
    proxy: Proxy,
    counters: Counters,
    log_old: Log,
    cfg: WorkerCfg,
    app_old: hippo_queue_core::App,
    app_new: hippo_queue_core::App,
    app: hippo_queue_core::App,
    backend: hippo_queue_redis::RedisBackend,
}

impl Twins {
    async fn start(name: &str) -> Twins {
        let server = RedisServer::start();
        let url = server.url(0);
        let counter_url = server.url(COUNTER_DB);
        let proxy = Proxy::start(server.port).await;
        let counters = Counters::connect(&counter_url).await;
        let log_old: Log = Default::default();
        let log_new: Log = Default::default();
        let cfg = WorkerCfg::new(2, 1)
            .lost_after(Duration::from_secs(1))
            .named(name);
        let (app_old, _) = app_on(&proxy.url(0), &counter_url, Some(log_old.clone())).await;
        let (app_new, _) = app_on(&url, &counter_url, Some(log_new)).await;
        let (app, backend) = app_on(&url, &counter_url, None).await;
        Twins {
            server,
            proxy,
            counters,
            log_old,
            cfg,
            app_old,
            app_new,
            app,
            backend,
        }
    }
}

/// A worker cut off from Redis long enough to be judged dead, whose fixed name a new
/// process takes meanwhile: when the network returns, the old process's beats are
/// refused (another incarnation holds the name), it starts nothing, and its shutdown
/// leaves the new holder's registry and leases alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_taken_while_cut_off() {
    let _machine = light().await;
    let scenario = "fixed name taken while its holder was cut off";
    let t = Twins::start("w-fixed").await;
    let Twins {
        server: _server,
        proxy,
        counters,
        log_old,
        cfg,
        app_old,
        app_new,
        app,
        backend,
        ..
    } = t;
    let old = cfg.builder(&app_old).start().await.expect("old worker");
    let first = send_one(&app, 2000, late()).await;
    assert!(
        counters
            .wait_execs(&first, 1, Duration::from_secs(10))
            .await,
        "{scenario}: the old process never started the task"
    );
    proxy.pause();
    // The new process waits out the old one's deadline, claims the name and recovers
    // what it held.
    let new = cfg.builder(&app_new).start().await.expect("new worker");
    proxy.resume();
    let resumed = Instant::now();
    let later = send_work(&app, (0..6).map(|_| (100, late()))).await;
    let mut ids = vec![first.clone()];
    ids.extend(later);
    let limit = Duration::from_secs(20);
    let finals = wait_final(&backend, &ids, limit, limit).await;
    let started_by_old = events(&log_old)
        .iter()
        .filter(|e| e.what == What::Started && e.at > resumed)
        .count();
    old.shutdown_within(Duration::from_secs(1)).await;
    // The new holder is untouched by the old process's exit: still beating, and still
    // running what it is sent.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let lease = backend.worker_lease("w-fixed").await.expect("lease");
    let after = send_one(&app, 50, late()).await;
    let after_final = wait_final(&backend, std::slice::from_ref(&after), limit, limit).await;
    new.shutdown().await;
    let execs = counters.execs().await;
    let row = Row::new(
        scenario,
        &ids,
        &finals,
        &execs,
        Default::default(),
        cfg.window(),
    )
    .note(format!(
        "{started_by_old} started by the old process after the network returned"
    ));
    row.print();
    assert_eq!(
        row.success,
        ids.len(),
        "{scenario}: not every task completed"
    );
    assert_eq!(
        started_by_old, 0,
        "{scenario}: the old process started tasks under a name another process holds"
    );
    assert!(
        lease.is_some_and(|l| !l.is_zero()),
        "{scenario}: the old process's shutdown removed the new holder ({lease:?})"
    );
    assert!(
        after_final.contains_key(&after),
        "{scenario}: the new holder ran nothing after the old one stopped"
    );
}

/// Review of the name takeover: the process that took a cut-off worker's name dies
/// in turn, running a task (not `acks_late`: its lease carries a start mark, so
/// reconciliation cannot hand it back). When the first process beats again it takes
/// its name back, and must recover what the dead one leased under it: the task ends
/// FAILURE (worker lost) instead of staying STARTED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_taken_back_after_the_new_holder_dies() {
    let _machine = light().await;
    let scenario = "fixed name taken back after its new holder died";
    let t = Twins::start("w-back").await;
    let Twins {
        server: _server,
        proxy,
        counters,
        cfg,
        app_old,
        app_new,
        app,
        backend,
        ..
    } = t;
    let old = cfg.builder(&app_old).start().await.expect("old worker");
    proxy.pause();
    let new = cfg.builder(&app_new).start().await.expect("new worker");
    let id = send_one(&app, 30_000, SendOptions::new()).await;
    assert!(
        counters.wait_execs(&id, 1, Duration::from_secs(10)).await,
        "{scenario}: the new holder never started the task"
    );
    new.kill();
    proxy.resume();
    let limit = Duration::from_secs(20);
    let finals = wait_final(&backend, std::slice::from_ref(&id), limit, limit).await;
    old.shutdown().await;
    let kind = failure_kind(&finals, &id);
    println!("| {scenario} | final record: {kind:?} |");
    assert_eq!(
        kind.as_deref(),
        Some(hippo_queue_core::task::kinds::WORKER_LOST),
        "{scenario}: the dead holder's task was never recovered"
    );
}
