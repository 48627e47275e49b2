//! Connection faults and large backlogs against a real `redis-server`.

use hippo_queue_core::backend::prelude::*;
use hippo_queue_redis::test_server as support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hippo_queue_core::backend::{
    DeliveryFlags, Outgoing, ResultBackend, ResultWrite, Settle, Settlement,
};
use hippo_queue_core::codec::to_msgpack;
use hippo_queue_core::testing::test_worker;
use hippo_queue_core::time::now_ms;
use hippo_queue_core::{
    App, Error, SendOptions, Task, TaskContext, TaskError, TaskMeta, TaskOptions, TaskState,
};
use hippo_queue_redis::{RedisBackend, RedisConfig};

struct Slow(Arc<AtomicU32>);

impl Task for Slow {
    const NAME: &'static str = "faults.slow";
    type Args = u64;
    type Output = u64;
    fn options() -> TaskOptions {
        TaskOptions::new()
            .acks_late(true)
            .reject_on_worker_lost(true)
    }
    async fn run(&self, _: &TaskContext, ms: u64) -> Result<u64, TaskError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(ms)
    }
}

async fn app_on(server: &support::RedisServer) -> (App, RedisBackend) {
    let backend = RedisBackend::connect(
        RedisConfig::new(server.url(1))
            .results_url(server.url(2))
            .response_timeout(Duration::from_secs(2)),
    )
    .await
    .expect("connect");
    let app = App::builder()
        .broker(backend.clone())
        .backend(backend.clone())
        .build();
    (app, backend)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_resumes_after_redis_restart() {
    let mut server = support::RedisServer::start_persistent();
    let (app, _backend) = app_on(&server).await;
    let runs = Arc::new(AtomicU32::new(0));
    app.register(Slow(runs.clone()));
    let worker = test_worker(&app)
        .concurrency(4)
        .start()
        .await
        .expect("worker");

    let before: Vec<_> = {
        let mut v = Vec::new();
        for _ in 0..20 {
            v.push(app.delay::<Slow>(5).await.expect("send"));
        }
        v
    };
    for h in &before {
        h.get(Duration::from_secs(15))
            .await
            .expect("done before the restart");
    }
    // tasks running and queued while the server goes away
    let mut during = Vec::new();
    for _ in 0..8 {
        during.push(app.delay::<Slow>(300).await.expect("send"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.kill();

    // a producer gets a clear error while Redis is down
    let err = app.delay::<Slow>(1).await.expect_err("redis is down");
    assert!(matches!(err, Error::Backend(_)), "{err}");
    assert!(err.to_string().contains("unavailable"), "{err}");

    tokio::time::sleep(Duration::from_secs(1)).await;
    server.restart();

    let mut after = Vec::new();
    for _ in 0..20 {
        // the first sends may race the reconnection
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match app.delay::<Slow>(5).await {
                Ok(h) => {
                    after.push(h);
                    break;
                }
                Err(e) => {
                    assert!(Instant::now() < deadline, "producer did not recover: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    for h in during.iter().chain(after.iter()) {
        let out = h
            .get(Duration::from_secs(30))
            .await
            .expect("completed after the restart");
        assert!(out == 5 || out == 300);
    }
    assert_eq!(
        worker.stats().succeeded as usize,
        48,
        "every task ran to success once"
    );
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_urls_and_unreachable_servers_are_clear_errors() {
    let err = RedisBackend::connect(RedisConfig::new("http://localhost:6379"))
        .await
        .expect_err("not a redis url");
    assert!(err.to_string().contains("invalid Redis URL"), "{err}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let err = RedisBackend::connect(RedisConfig::new(format!(
        "redis://:secret@127.0.0.1:{port}/1"
    )))
    .await
    .expect_err("nothing listens there");
    let text = err.to_string();
    assert!(text.contains("cannot connect"), "{text}");
    assert!(!text.contains("secret"), "password leaked: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_delayed_tasks_due_at_once_drain() {
    const N: usize = 1_000_000;
    let server = support::RedisServer::start();
    let (_app, backend) = app_on(&server).await;
    let eta = now_ms() + 12_000;
    let t = Instant::now();
    for chunk in 0..(N / 10_000) {
        let batch = (0..10_000)
            .map(|i| Outgoing {
                id: format!("d{}", chunk * 10_000 + i),
                queue: "bulk".into(),
                priority: (i % 10) as u8,
                eta: Some(eta),
                payload: b"M\xc0".to_vec(),
                flags: DeliveryFlags::default(),
            })
            .collect();
        backend.publish(batch).await.expect("publish");
    }
    let published = t.elapsed();
    let q = vec!["bulk".to_string()];
    let s = backend.queue_stats(&q).await.expect("stats").remove(0);
    assert_eq!(s.delayed as usize, N);
    tokio::time::sleep(Duration::from_millis(eta.saturating_sub(now_ms()) + 10)).await;
    backend
        .heartbeat(
            "drainer",
            "test-incarnation",
            Duration::from_secs(600),
            Duration::from_secs(600) / 2,
        )
        .await
        .expect("beat");
    let t = Instant::now();
    let mut drained = 0;
    while drained < N {
        let got = backend
            .fetch("drainer", &q, 5000, Duration::from_millis(100))
            .await
            .expect("fetch never fails on a large backlog");
        assert!(!got.is_empty(), "stalled at {drained}");
        let acks: Vec<Settlement> = got
            .iter()
            .map(|d| Settlement {
                delivery: d.to_ref(),
                action: Settle::Ack,
            })
            .collect();
        backend.settle("drainer", &acks).await.expect("ack");
        drained += got.len();
    }
    let s = backend.queue_stats(&q).await.expect("stats").remove(0);
    assert_eq!((s.delayed, s.waiting(), s.reserved), (0, 0, 0), "{s:?}");
    println!(
        "1,000,000 delayed: published in {published:?}, drained in {:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_empties_a_large_queue_in_batches() {
    let server = support::RedisServer::start();
    let (app, backend) = app_on(&server).await;
    app.register(Slow(Arc::default()));
    app.send_many::<Slow>((0..25_000).map(|i| {
        let opts = if i % 2 == 0 {
            SendOptions::new()
        } else {
            SendOptions::new().countdown(Duration::from_secs(3600))
        };
        (1, opts)
    }))
    .await
    .expect("send");
    let removed = backend.purge("default").await.expect("purge");
    assert_eq!(removed, 25_000);
    let s = backend
        .queue_stats(&["default".into()])
        .await
        .expect("stats")
        .remove(0);
    assert_eq!((s.waiting(), s.delayed), (0, 0));
    let _ = TaskState::Pending;
}

/// A call relies on the announcement of its result; when the announcement is missed
/// (a result written without one, a subscription renewed after a restart) it looks the
/// result up instead, and a call in flight across a restart completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_survive_missed_announcements_and_restarts() {
    let mut server = support::RedisServer::start_persistent();
    let (app, backend) = app_on(&server).await;
    let runs = Arc::new(AtomicU32::new(0));
    app.register(Slow(runs.clone()));
    let record = |id: &str, announce: bool| {
        let mut meta = TaskMeta::new(id, "faults.manual", TaskState::Success);
        meta.result = Some(to_msgpack(&7u64).expect("encode"));
        ResultWrite {
            meta,
            ttl: Duration::from_secs(60),
            compress: false,
            announce,
        }
    };

    // connect returns once the results channel is subscribed
    let mut watch = backend
        .watch("manual-quiet")
        .expect("subscribed by connect");
    // written without an announcement: found by looking after the grace period
    backend
        .store(&[record("manual-quiet", false)])
        .await
        .expect("store");
    let t = Instant::now();
    let got = watch.wait(Duration::from_secs(5)).await.expect("wait");
    assert_eq!(got.map(|m| m.state), Some(TaskState::Success));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());

    // announced: delivered at once
    let mut watch = backend.watch("manual-loud").expect("subscribed");
    let t = Instant::now();
    backend
        .store(&[record("manual-loud", true)])
        .await
        .expect("store");
    let got = watch.wait(Duration::from_secs(5)).await.expect("wait");
    assert_eq!(got.map(|m| m.state), Some(TaskState::Success));
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );

    let worker = test_worker(&app)
        .concurrency(2)
        .start()
        .await
        .expect("worker");
    assert_eq!(
        app.call::<Slow>(5, Duration::from_secs(10))
            .await
            .expect("call"),
        5
    );

    // a call in flight while the server restarts
    let caller = {
        let app = app.clone();
        tokio::spawn(async move { app.call::<Slow>(800, Duration::from_secs(30)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.restart();
    assert_eq!(caller.await.expect("join").expect("completed"), 800);

    // and new calls once the subscription is back
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match app.call::<Slow>(5, Duration::from_secs(10)).await {
            Ok(out) => {
                assert_eq!(out, 5);
                break;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "calls did not recover: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    worker.shutdown().await;
}
