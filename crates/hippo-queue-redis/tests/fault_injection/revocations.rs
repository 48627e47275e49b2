//! Review R1: a large revocation set must not be reloaded on every heartbeat. With
//! 200,000 revocations in force, five workers start and beat on time and Redis logs no
//! slow command, at start (the set is scanned in steps) or afterwards (each worker
//! reads only what was revoked since its last read); a revocation from the set is
//! still honoured.

use std::time::{Duration, Instant};

use hippo_queue_redis::test_server::{RedisServer, Reply};

use hippo_queue_core::{SendOptions, TaskState};

use crate::harness::{COUNTER_DB, WorkerCfg, app_on, light, note, send_one, wait_final};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r1_large_revocation_set_is_not_reloaded_every_beat() {
    let _machine = light().await;
    let scenario = "R1 200,000 revocations, 5 workers";
    let server = RedisServer::start();
    let url = server.url(0);
    let until = (hippo_queue_core::time::now_ms() + 3_600_000).to_string();
    for chunk in 0..20 {
        let mut args: Vec<String> = vec!["ZADD".into(), "hq:revoked".into()];
        for i in 0..10_000 {
            args.push(until.clone());
            args.push(format!("0:revoked-{chunk}-{i}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        server.command(&args).expect("ZADD");
    }
    let (app, backend) = app_on(&url, &server.url(COUNTER_DB), None).await;
    let cfg = WorkerCfg::new(1, 1).lost_after(Duration::from_secs(3));
    server
        .command(&["SLOWLOG", "RESET"])
        .expect("SLOWLOG RESET");
    let mut workers = Vec::new();
    for _ in 0..5 {
        workers.push(cfg.builder(&app).start().await.expect("worker"));
    }
    let revoked = send_one(&app, 10, SendOptions::new().task_id("revoked-19-9999")).await;
    let ids: Vec<String> = workers.iter().map(|w| w.id().to_string()).collect();
    let mut last: Vec<(String, Instant)> = vec![(String::new(), Instant::now()); ids.len()];
    let mut worst = Duration::ZERO;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(6) {
        for (i, id) in ids.iter().enumerate() {
            let score = match server.command(&["ZSCORE", "hq:workers", id]) {
                Ok(r) => r.text(),
                Err(e) => panic!("{scenario}: ZSCORE: {e}"),
            };
            if score != last[i].0 {
                worst = worst.max(last[i].1.elapsed());
                last[i] = (score, Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let slow = match server.command(&["SLOWLOG", "LEN"]) {
        Ok(Reply::Int(n)) => n,
        other => panic!("{scenario}: SLOWLOG LEN: {other:?}"),
    };
    let entries = server
        .command(&["SLOWLOG", "GET", "5"])
        .map(|r| r.text())
        .unwrap_or_default();
    note(
        scenario,
        format!("worst heartbeat gap {worst:?}; slow commands {slow}: {entries}"),
    );
    let limit = Duration::from_secs(5);
    let finals = wait_final(&backend, std::slice::from_ref(&revoked), limit, limit).await;
    for w in workers {
        w.kill();
    }
    assert_eq!(
        finals.get(&revoked).map(|m| m.state),
        Some(TaskState::Revoked),
        "{scenario}: a task revoked before the workers started ran"
    );
    assert!(
        worst < Duration::from_secs(3),
        "{scenario}: a heartbeat gap of {worst:?}"
    );
    assert_eq!(
        slow, 0,
        "{scenario}: {slow} slow commands while the workers ran: {entries}"
    );
}
