//! Review R1: a large revocation set must not be reloaded on every heartbeat. With
//! 200,000 revocations in force, five live workers beat on time and Redis logs no slow
//! command once they have started (each reads only what was revoked since its last
//! read).

use std::time::{Duration, Instant};

use hippo_queue_redis::test_server::{RedisServer, Reply};

use crate::harness::{COUNTER_DB, WorkerCfg, app_on, light, note};

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
    let (app, _) = app_on(&url, &server.url(COUNTER_DB), None).await;
    let cfg = WorkerCfg::new(1, 1).lost_after(Duration::from_secs(3));
    let mut workers = Vec::new();
    for _ in 0..5 {
        workers.push(cfg.builder(&app).start().await.expect("worker"));
    }
    // Starting reads the whole set once per worker; from now on nothing may be slow.
    server
        .command(&["SLOWLOG", "RESET"])
        .expect("SLOWLOG RESET");
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
    for w in workers {
        w.kill();
    }
    assert!(
        worst < Duration::from_secs(3),
        "{scenario}: a heartbeat gap of {worst:?}"
    );
    assert_eq!(
        slow, 0,
        "{scenario}: {slow} slow commands while the workers ran: {entries}"
    );
}
