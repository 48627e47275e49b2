//! Scenario 7 (review Q7): a worker with a fixed name (`-n w1@host`, a StatefulSet)
//! restarted after kill -9, and a second live worker under a name in use.

use std::time::{Duration, Instant};

use hippo_queue_redis::test_server::RedisServer;

use crate::harness::{
    COUNTER_DB, Child, ChildSpec, Row, Sampler, Scene, WorkerCfg, app_on, late, light, note,
    send_one, wait_final,
};

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
