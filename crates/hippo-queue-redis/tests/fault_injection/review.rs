//! One test per review finding (`review-correctness.md`): Q1, Q6a, Q11, Q12, Q13, Q14, R2
//! and I1, each the scenario the review describes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hippo_queue_core::backend::Outgoing;
use hippo_queue_core::backend::prelude::*;
use hippo_queue_core::control::{Command, ReplyBody};
use hippo_queue_core::{SendOptions, Task};
use hippo_queue_redis::RedisConfig;
use hippo_queue_redis::test_server::{RedisServer, Reply};

use crate::harness::{
    COUNTER_DB, Counters, Log, PastBadRecord, Row, Sampler, Scene, What, Work, WorkerCfg, app_on,
    app_with, events, failure_kind, fetch_past_bad_record, good_outgoing, int, late, light, note,
    send_one, send_work, wait_final, wait_for,
};

/// Q1: `P:wq:W` deleted while W lives (a false recovery) is never re-asserted, so
/// W's later leases are unrecoverable after W dies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q1_worker_queue_index_deleted_while_alive() {
    let _machine = light().await;
    let scenario = "Q1 wq index deleted while the worker lives";
    let scene = Scene::start(None).await;
    let (app_b, backend_b) = app_on(&scene.url, &scene.counter_url, None).await;
    let cfg = WorkerCfg::new(1, 1).lost_after(Duration::from_secs(1));
    let w = cfg.builder(&scene.app).start().await.expect("worker W");
    let wid = w.id().to_string();
    // W fetches once: its queue is now in hq:wq:W, and cached by backend A.
    scene
        .app
        .delay::<Work>(10)
        .await
        .expect("send")
        .get(Duration::from_secs(10))
        .await
        .expect("first task");
    // W is recovered by mistake while it lives, as another process does after a
    // false "dead" verdict (its deadline and queue index removed), or Redis loses
    // the index. (B's own recovery cannot be used to stage this any more: the fleet
    // grace after W's first heartbeat keeps anyone from being recovered.)
    let wq = format!("hq:wq:{wid}");
    scene
        .server
        .command(&["ZREM", "hq:workers", &wid])
        .expect("ZREM");
    scene.server.command(&["DEL", &wq]).expect("DEL");
    let _ = backend_b.recover(5).await.expect("recover");
    assert_eq!(
        int(scene.server.command(&["EXISTS", &wq])),
        0,
        "{scenario}: index deleted"
    );
    let id = send_one(&scene.app, 1000, late()).await;
    let fetched = scene
        .counters
        .wait_execs(&id, 1, Duration::from_secs(10))
        .await;
    assert!(fetched, "{scenario}: W did not start the task");
    w.kill();
    let x = cfg.builder(&app_b).start().await.expect("worker X");
    let limit = 3 * cfg.lost_after + Duration::from_millis(1000);
    let finals = wait_final(&backend_b, std::slice::from_ref(&id), limit, limit).await;
    let lease = format!("hq:{{default}}:lease:{wid}");
    let left = int(scene.server.command(&["HLEN", &lease]));
    x.kill();
    let execs = scene.counters.execs().await;
    let row = Row::new(
        scenario,
        std::slice::from_ref(&id),
        &finals,
        &execs,
        Default::default(),
        cfg.window(),
    )
    .note(format!("{left} messages left in W's lease hash"));
    row.print();
    assert_eq!(
        row.success, 1,
        "{scenario}: the task did not complete within 3 x worker_lost_after + its 1 s ({left} left in {lease})"
    );
}

/// Q6a: a 4-byte record at the head of a waiting list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q6a_four_byte_record_does_not_strand_good_messages() {
    let _machine = light().await;
    let scenario = "Q6a 4-byte record ahead of 10 good messages";
    let scene = Scene::start(None).await;
    scene
        .server
        .command_bytes(&[b"RPUSH", b"hq:{default}:w0", b"\x00\x00\x00\x00"])
        .expect("RPUSH");
    let ids = send_work(&scene.app, (0..10).map(|_| (10, SendOptions::new()))).await;
    let cfg = WorkerCfg::new(4, 4);
    let sampler = Sampler::start(&scene.url);
    let w = cfg.builder(&scene.app).start().await.expect("worker");
    let finals = wait_final(
        &scene.backend,
        &ids,
        Duration::from_secs(5),
        Duration::from_secs(10),
    )
    .await;
    let q = vec!["default".to_string()];
    let mut reserved = 0;
    let settle_by = Instant::now() + Duration::from_secs(3);
    while Instant::now() < settle_by {
        reserved = scene
            .backend
            .queue_stats(&q)
            .await
            .map(|s| s[0].reserved)
            .unwrap_or(0);
        if reserved == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held = sampler.finish().await;
    w.kill();
    let execs = scene.counters.execs().await;
    let row = Row::new(scenario, &ids, &finals, &execs, held, cfg.window())
        .note(format!("{reserved} still leased afterwards"));
    row.print();
    assert_eq!(
        row.success, 10,
        "{scenario}: {} of 10 good messages completed ({} without a record)",
        row.success, row.lost
    );
    assert_eq!(
        reserved, 0,
        "{scenario}: {reserved} messages stay leased to an idle worker"
    );
}

/// Q11: the fencing counter deleted (eviction, FLUSH of one key) while a task holds a
/// token: new messages get the same tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q11_seq_deleted_while_a_task_runs() {
    let _machine = light().await;
    let scenario = "Q11 DEL hq:{default}:seq while a task runs";
    let scene = Scene::start(None).await;
    let cfg = WorkerCfg::new(1, 8);
    let w = cfg.builder(&scene.app).start().await.expect("worker");
    let mut ids: Vec<String> = Vec::new();
    for h in scene
        .app
        .send_many::<Work>((0..5).map(|_| (10, SendOptions::new())))
        .await
        .expect("send")
    {
        h.get(Duration::from_secs(10)).await.expect("warm-up task");
        ids.push(h.id().to_string());
    }
    let long = send_one(&scene.app, 3000, late()).await;
    ids.push(long.clone());
    let running = scene
        .counters
        .wait_execs(&long, 1, Duration::from_secs(10))
        .await;
    assert!(running, "{scenario}: the long task did not start");
    let seq_before = scene
        .server
        .command(&["GET", "hq:{default}:seq"])
        .map(|r| r.text());
    scene
        .server
        .command(&["DEL", "hq:{default}:seq"])
        .expect("DEL seq");
    ids.extend(send_work(&scene.app, (0..8).map(|_| (10, SendOptions::new()))).await);
    let finals = wait_final(
        &scene.backend,
        &ids,
        Duration::from_secs(8),
        Duration::from_secs(20),
    )
    .await;
    w.kill();
    let execs = scene.counters.execs().await;
    let never_ran = ids.iter().filter(|id| !execs.contains_key(*id)).count();
    let row = Row::new(
        scenario,
        &ids,
        &finals,
        &execs,
        Default::default(),
        cfg.window(),
    )
    .note(format!(
        "seq was {seq_before:?}; {never_ran} tasks never ran"
    ));
    row.print();
    assert_eq!(
        (row.success, never_ran, row.runs_gt1),
        (ids.len(), 0, 0),
        "{scenario}: every task should run exactly once and succeed (SUCCESS, never ran, ran twice); other {:?}",
        row.other
    );
}

/// Q12: a record shorter than 3 bytes in a waiting list, behind 10 good ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q12_short_record_in_a_waiting_list_loses_nothing() {
    let _machine = light().await;
    let scenario = "Q12 2-byte record behind 10 good ones, then fetch";
    let PastBadRecord {
        fetch,
        found,
        leased,
    } = fetch_past_bad_record(&[b"RPUSH", b"hq:{default}:w0"], b"ab", None).await;
    println!(
        "| {scenario} | fetch {fetch} | good delivered or waiting {found} of 10 | leased {leased} |"
    );
    assert_eq!(
        found, 10,
        "{scenario}: only {found} of 10 good messages are still waiting or delivered ({leased} leased)"
    );
}

/// Q12, delayed set: a due record whose priority byte is 10 or more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q12_bad_priority_in_the_delayed_set_loses_nothing() {
    let _machine = light().await;
    let scenario = "Q12 delayed record with priority byte 10, then fetch";
    let mut bad = vec![10u8, 0, 0, 0, 3];
    bad.extend_from_slice(b"badM\xc0");
    let PastBadRecord { fetch, found, .. } =
        fetch_past_bad_record(&[b"ZADD", b"hq:{default}:delayed", b"0"], &bad, Some(300)).await;
    println!("| {scenario} | fetch {fetch} | good delivered, waiting or delayed {found} of 10 |");
    assert_eq!(
        found, 10,
        "{scenario}: only {found} of 10 good delayed messages are still delayed, waiting or delivered"
    );
}

/// Q13: two deliveries of one task id on one worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q13_two_deliveries_of_one_id_are_both_terminated() {
    let _machine = light().await;
    let scenario = "Q13 one task id delivered twice to one worker";
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let scene = Scene::start(Some(log.clone())).await;
    let cfg = WorkerCfg::new(2, 1);
    let w = cfg.builder(&scene.app).start().await.expect("worker");
    for _ in 0..2 {
        scene
            .app
            .apply_async::<Work>(15_000, SendOptions::new().task_id("dup-1"))
            .await
            .expect("send");
    }
    let both = scene
        .counters
        .wait_execs("dup-1", 2, Duration::from_secs(10))
        .await;
    assert!(both, "{scenario}: both copies should be running");
    scene.app.revoke("dup-1", true).await.expect("revoke");
    let aborted = |log: &Log| {
        events(log)
            .iter()
            .filter(|e| e.id == "dup-1" && e.what == What::Aborted)
            .count()
    };
    wait_for(Duration::from_secs(2), || {
        let l = &log;
        async move { aborted(l) >= 2 }
    })
    .await;
    let stopped = aborted(&log);
    let t = Instant::now();
    w.shutdown_within(Duration::from_secs(1)).await;
    let shutdown = t.elapsed();
    println!(
        "| {scenario} | terminated {stopped} of 2 copies | shutdown_within(1 s) took {shutdown:.1?} |"
    );
    assert_eq!(
        stopped, 2,
        "{scenario}: revoke(terminate) stopped {stopped} of the 2 running copies"
    );
    assert!(
        shutdown < Duration::from_secs(3),
        "{scenario}: shutdown_within(1 s) took {shutdown:?}"
    );
}

/// R2: a terminate published while the pub/sub connection is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r2_terminate_missed_by_the_live_feed_still_stops_the_task() {
    let _machine = light().await;
    let scenario = "R2 revoke(terminate) while pub/sub reconnects";
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let scene = Scene::start(Some(log.clone())).await;
    let cfg = WorkerCfg::new(1, 1);
    let w = cfg.builder(&scene.app).start().await.expect("worker");
    let id = send_one(&scene.app, 20_000, SendOptions::new()).await;
    let running = scene
        .counters
        .wait_execs(&id, 1, Duration::from_secs(10))
        .await;
    assert!(running, "{scenario}: the task did not start");
    let killed = int(scene.server.command(&["CLIENT", "KILL", "TYPE", "pubsub"]));
    scene.app.revoke(&id, true).await.expect("revoke");
    let t = Instant::now();
    let limit = 2 * cfg.heartbeat + Duration::from_millis(500);
    let stopped = wait_for(Duration::from_secs(5), || {
        let (l, id) = (&log, &id);
        async move {
            events(l)
                .iter()
                .any(|e| &e.id == id && e.what == What::Aborted)
        }
    })
    .await;
    let took = t.elapsed();
    w.kill();
    println!(
        "| {scenario} | {killed} pub/sub clients killed | terminated: {stopped} after {took:.1?} (limit {limit:?}) |"
    );
    assert!(
        stopped && took <= limit,
        "{scenario}: the running task was not terminated within 2 heartbeats + 0.5 s (stopped: {stopped}, after {took:?})"
    );
}

async fn control_survives(command: Command, scenario: &str) {
    let server = RedisServer::start();
    let url = server.url(0);
    let counter_url = server.url(COUNTER_DB);
    let cfg = WorkerCfg::new(2, 1);
    let mut workers = Vec::new();
    for _ in 0..2 {
        let (app, _) = app_on(&url, &counter_url, None).await;
        workers.push(cfg.builder(&app).start().await.expect("worker"));
    }
    let (app, _) = app_on(&url, &counter_url, None).await;
    let first = app
        .control()
        .call(None, command, Duration::from_secs(2))
        .await;
    let first_desc = match &first {
        Ok(r) => format!(
            "{} replies: {:?}",
            r.len(),
            r.iter().map(|r| &r.body).collect::<Vec<_>>()
        ),
        Err(e) => format!("error {e}"),
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pongs = app
        .control()
        .call(None, Command::Ping, Duration::from_secs(3))
        .await
        .expect("ping")
        .iter()
        .filter(|r| matches!(r.body, ReplyBody::Pong))
        .count();
    for w in workers {
        w.kill();
    }
    println!("| {scenario} | first: {first_desc} | then {pongs} of 2 workers answer Ping |");
    note(scenario, &first_desc);
    assert_eq!(
        pongs, 2,
        "{scenario}: only {pongs} of 2 workers answer Ping afterwards (control loop dead?); first command: {first_desc}"
    );
}

/// I1: an infinite hard time limit through remote control.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i1_infinite_time_limit_then_ping() {
    let _machine = light().await;
    control_survives(
        Command::TimeLimit {
            task: Work::NAME.to_string(),
            soft: Some(10.0),
            hard: Some(f64::INFINITY),
        },
        "I1 TimeLimit hard = inf",
    )
    .await;
}

/// I1: `PoolGrow(usize::MAX)` through remote control.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i1_pool_grow_usize_max_then_ping() {
    let _machine = light().await;
    control_survives(Command::PoolGrow(usize::MAX), "I1 PoolGrow(usize::MAX)").await;
}

/// Q8: with the result server down, a worker must not keep fetching and running tasks
/// whose results it cannot write: it holds at most its window, and everything
/// completes once the result server is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q8_results_down_holds_fetching_to_the_window() {
    let _machine = light().await;
    let scenario = "Q8 results server down";
    let broker = RedisServer::start();
    let mut results = RedisServer::start();
    let url = broker.url(0);
    let counter_url = broker.url(COUNTER_DB);
    let (app, backend) = app_with(
        RedisConfig::new(&url)
            .results_url(results.url(0))
            .response_timeout(Duration::from_secs(1)),
        &counter_url,
        None,
    )
    .await;
    let counters = Counters::connect(&counter_url).await;
    let cfg = WorkerCfg::new(4, 2);
    let window = cfg.window();
    let worker = cfg.builder(&app).start().await.expect("worker");
    results.kill();
    let n = 400;
    let ids = send_work(&app, (0..n).map(|_| (1, late()))).await;
    let sampler = Sampler::start(&url);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ran_while_down = counters.distinct().await;
    let in_flight = worker.stats().in_flight as usize;
    let waiting = backend
        .queue_stats(&["default".to_string()])
        .await
        .expect("stats")[0]
        .waiting() as usize;
    note(
        scenario,
        format!("while down: {ran_while_down} ran, {in_flight} in flight, {waiting} waiting"),
    );
    assert!(
        ran_while_down <= window && in_flight <= window,
        "{scenario}: {ran_while_down} tasks ran and {in_flight} are held with no result server; the window is {window}"
    );
    assert!(
        waiting >= n - window,
        "{scenario}: only {waiting} of {n} still waiting"
    );
    results.restart();
    let finals = wait_final(
        &backend,
        &ids,
        Duration::from_secs(20),
        Duration::from_secs(60),
    )
    .await;
    let held = sampler.finish().await;
    worker.kill();
    let execs = counters.execs().await;
    let row = Row::new(scenario, &ids, &finals, &execs, held, window).note(format!(
        "while down: {ran_while_down} ran, {in_flight} held"
    ));
    row.print();
    row.assert_all_success_within_window();
}

/// Q10: a `call` whose result is larger than Redis' pub/sub output buffer limit
/// (32 MiB) must not disconnect the fleet's subscribers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q10_large_call_result_keeps_subscribers_connected() {
    let _machine = light().await;
    let scenario = "Q10 call returning 40 MiB";
    let server = RedisServer::start();
    let url = server.url(0);
    let (app, _) = app_on(&url, &server.url(COUNTER_DB), None).await;
    // another process, subscribed to the same channels
    let _other = crate::harness::connect(&url).await;
    let worker = WorkerCfg::new(1, 1)
        .builder(&app)
        .start()
        .await
        .expect("worker");
    // The subscribers' connections, by client id: a disconnected subscriber comes
    // back under a new id.
    let subscribers = || -> Vec<String> {
        let text = server
            .command(&["CLIENT", "LIST", "TYPE", "pubsub"])
            .map(|r| r.text())
            .unwrap_or_default();
        let mut ids: Vec<String> = text
            .lines()
            .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
            .map(str::to_string)
            .collect();
        ids.sort();
        ids
    };
    let before = subscribers();
    let size = 40u64 << 20;
    let out = app
        .call::<crate::harness::Big>(size, Duration::from_secs(60))
        .await
        .expect("call");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = subscribers();
    note(
        scenario,
        format!(
            "{} bytes back; subscribers before {before:?}, after {after:?}",
            out.len()
        ),
    );
    assert_eq!(out.len() as u64, size, "{scenario}: wrong output size");
    assert!(before.len() >= 2, "{scenario}: subscribers {before:?}");
    assert_eq!(
        before, after,
        "{scenario}: Redis disconnected subscribers for their output buffer"
    );
    worker.kill();
}

/// Q4: recovering many dead workers' large leases must not delay the recoverer's own
/// heartbeat (before, one loop did both), so no live worker is recovered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q4_heavy_recovery_does_not_delay_heartbeats() {
    let _machine = light().await;
    let scenario = "Q4 50 dead workers x 40 leases of 64 KiB";
    let server = RedisServer::start();
    let url = server.url(0);
    let (app, backend) = app_on(&url, &server.url(COUNTER_DB), None).await;
    let q = vec!["default".to_string()];
    let payload = vec![0x5a_u8; 64 << 10];
    for w in 0..50 {
        let msgs: Vec<Outgoing> = (0..40)
            .map(|i| Outgoing {
                payload: payload.clone(),
                ..good_outgoing(&format!("dead{w}-{i}"), None)
            })
            .collect();
        backend.publish(msgs).await.expect("publish");
        let dead = format!("dead-{w}");
        backend
            .heartbeat(
                &dead,
                "test-incarnation",
                Duration::from_millis(200),
                Duration::from_millis(100),
            )
            .await
            .expect("beat");
        let got = backend
            .fetch(&dead, &q, 40, Duration::from_secs(1))
            .await
            .expect("fetch");
        assert_eq!(got.len(), 40);
    }
    // two live workers on another queue (the dead ones' garbage payloads are not
    // theirs to run): one recovers, both must keep beating
    let cfg = WorkerCfg::new(1, 1).lost_after(Duration::from_millis(1500));
    let a = cfg
        .builder(&app)
        .queues(["other"])
        .start()
        .await
        .expect("worker a");
    let b = cfg
        .builder(&app)
        .queues(["other"])
        .start()
        .await
        .expect("worker b");
    let ids = [a.id().to_string(), b.id().to_string()];
    let mut last: Vec<(f64, Instant)> = vec![(0.0, Instant::now()); 2];
    let mut worst = Duration::ZERO;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(8) {
        for (i, id) in ids.iter().enumerate() {
            let score = match server.command(&["ZSCORE", "hq:workers", id]) {
                Ok(Reply::Bulk(Some(b))) => String::from_utf8_lossy(&b).parse().unwrap_or(0.0),
                other => panic!("{scenario}: worker {id} left the heartbeat set: {other:?}"),
            };
            if score != last[i].0 {
                worst = worst.max(last[i].1.elapsed());
                last[i] = (score, Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = int(server.command(&["HLEN", "hq:{default}:lease:dead-0"]));
    let waiting = backend.queue_stats(&q).await.expect("stats")[0].waiting();
    note(
        scenario,
        format!("worst heartbeat gap {worst:?}; dead-0 leases left {left}; {waiting} requeued"),
    );
    assert!(
        worst < Duration::from_millis(1500),
        "{scenario}: a heartbeat gap of {worst:?} reached worker_lost_after"
    );
    assert_eq!(left, 0, "{scenario}: the dead workers were not recovered");
    assert_eq!(
        waiting, 2000,
        "{scenario}: every dead worker's message requeued"
    );
    a.kill();
    b.kill();
}

/// R3: a pub/sub connection that dies without a word (a NAT or load balancer that
/// forgot it) must be noticed: results are still returned by `get`, and control
/// requests reach the worker again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_silent_pubsub_connection_is_noticed() {
    let _machine = light().await;
    let scenario = "R3 pub/sub connection severed silently";
    let server = RedisServer::start();
    let proxy = crate::proxy::Proxy::start(server.port).await;
    let counter_url = server.url(COUNTER_DB);
    // the worker and the caller both reach Redis through the proxy
    let (app, backend) = app_with(
        RedisConfig::new(proxy.url(0)).response_timeout(Duration::from_secs(1)),
        &counter_url,
        None,
    )
    .await;
    let worker = WorkerCfg::new(2, 1)
        .lost_after(Duration::from_secs(3))
        .builder(&app)
        .start()
        .await
        .expect("worker");
    proxy.sever_existing();
    // The first command on the dead shared connection times out and drops it.
    let _ = backend.queue_stats(&["default".to_string()]).await;
    let t = Instant::now();
    let h = app.delay::<Work>(300).await.expect("send");
    let got = h.get(Duration::from_secs(10)).await;
    let took = t.elapsed();
    note(scenario, format!("get after {took:?}: {got:?}"));
    assert_eq!(
        got.ok(),
        Some(300),
        "{scenario}: get did not return the stored result"
    );
    // the task takes 0.3 s (plus the worker's own reconnections, about 2-3 s); a
    // waiter that relies on a dead subscription sits out its whole timeout (10 s)
    assert!(
        took < Duration::from_secs(6),
        "{scenario}: get took {took:?}: the result was found only at its deadline"
    );
    // A control request reaches the worker once its subscription is renewed.
    let (direct, _) = app_on(&server.url(0), &counter_url, None).await;
    let t = Instant::now();
    let mut answered = false;
    while t.elapsed() < Duration::from_secs(30) {
        let replies = direct
            .control()
            .call(None, Command::Ping, Duration::from_secs(1))
            .await
            .unwrap_or_default();
        if replies.iter().any(|r| matches!(r.body, ReplyBody::Pong)) {
            answered = true;
            break;
        }
    }
    note(scenario, format!("ping answered after {:?}", t.elapsed()));
    assert!(answered, "{scenario}: the worker never answered Ping again");
    worker.kill();
}

/// Q14: the recovering process dies right after the recovery script moved a lost task
/// to the dead letters, before writing its FAILURE record. Another worker must write
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q14_recoverer_dies_before_writing_the_failure_record() {
    let _machine = light().await;
    let scenario = "Q14 recoverer dies before the FAILURE record";
    let scene = Scene::start(None).await;
    let timeout = Duration::from_secs(2);
    let config = |url: &str| RedisConfig::new(url).loss_record_timeout(timeout);
    let cfg = WorkerCfg::new(1, 1).lost_after(Duration::from_secs(1));
    let w = cfg.builder(&scene.app).start().await.expect("worker W");
    // Not acks_late: a started task whose worker dies ends FAILURE (worker lost).
    let id = send_one(&scene.app, 30_000, SendOptions::new()).await;
    let started = scene
        .counters
        .wait_execs(&id, 1, Duration::from_secs(10))
        .await;
    assert!(started, "{scenario}: W did not start the task");
    w.kill();
    // The recoverer: it moves W's lease, then "dies" (writes nothing).
    let (_recoverer_app, recoverer) = app_with(config(&scene.url), &scene.counter_url, None).await;
    let mut lost = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while lost.is_empty() && Instant::now() < deadline {
        lost = recoverer.recover(5).await.expect("recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lost.len(), 1, "{scenario}: the recoverer moved {lost:?}");
    drop(recoverer);
    let state = ResultBackend::get(&scene.backend, &id)
        .await
        .expect("get")
        .map(|m| m.state);
    assert!(
        !state.is_some_and(|s| s.is_ready()),
        "{scenario}: the record is already final ({state:?}) before anyone wrote it"
    );
    // Another worker, whose backend has seen the queue, writes the record.
    let (app_x, backend_x) = app_with(config(&scene.url), &scene.counter_url, None).await;
    let x = cfg.builder(&app_x).start().await.expect("worker X");
    let limit = timeout + 4 * cfg.lost_after;
    let finals = wait_final(&backend_x, std::slice::from_ref(&id), limit, limit).await;
    x.kill();
    let kind = failure_kind(&finals, &id);
    println!("| {scenario} | final record after the recoverer died: {kind:?} |");
    assert_eq!(
        kind.as_deref(),
        Some(hippo_queue_core::task::kinds::WORKER_LOST),
        "{scenario}: no FAILURE (worker lost) record within {limit:?}"
    );
    let unrecorded = int(scene.server.command(&["HLEN", "hq:{default}:unrecorded"]));
    assert_eq!(unrecorded, 0, "{scenario}: the loss is still unrecorded");
}
