//! The `hippo-queue` binary end to end, against live workers on a real Redis.

use std::process::Output;
use std::time::Duration;

use hippo_queue_core::{App, Router, SendOptions, Task, TaskContext, TaskError, TaskOptions};
use hippo_queue_redis::test_server::RedisServer;
use hippo_queue_redis::{RedisBackend, RedisConfig};

struct Sleep;

impl Task for Sleep {
    const NAME: &'static str = "cli.sleep";
    type Args = u64;
    type Output = u64;
    fn options() -> TaskOptions {
        TaskOptions::new().track_started(true)
    }
    async fn run(&self, _: &TaskContext, ms: u64) -> Result<u64, TaskError> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(ms)
    }
}

struct Fail;

impl Task for Fail {
    const NAME: &'static str = "cli.fail";
    type Args = ();
    type Output = ();
    async fn run(&self, _: &TaskContext, _: ()) -> Result<(), TaskError> {
        Err(TaskError::new("Boom", "it broke").caused_by("the disk was full"))
    }
}

async fn hq(url: &str, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_hippo-queue"));
    cmd.arg("--broker").arg(url).args(args);
    cmd.env_remove("CELERY_BROKER_URL")
        .env_remove("CELERY_RESULT_BACKEND");
    cmd.output().await.expect("run hippo-queue")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_against_live_workers() {
    let server = RedisServer::start();
    let url = server.url(1);
    let redis = RedisBackend::connect(RedisConfig::new(url.clone()))
        .await
        .expect("connect");
    let app = App::builder()
        .broker(redis.clone())
        .backend(redis)
        .router(Router::guide_preset())
        .build();
    app.register(Sleep).register(Fail);
    let worker = app
        .worker()
        .name("w1@test")
        .queues(["default"])
        .concurrency(1)
        .prefetch_multiplier(4)
        .task_events(true)
        .heartbeat_interval(Duration::from_millis(100))
        .worker_lost_after(Duration::from_secs(2))
        .fetch_wait(Duration::from_millis(200))
        .start()
        .await
        .expect("worker");

    let long = app.delay::<Sleep>(60_000).await.expect("send");
    let queued = app.delay::<Sleep>(1).await.expect("send");
    let later = app
        .apply_async::<Sleep>(1, SendOptions::new().countdown(Duration::from_secs(600)))
        .await
        .expect("send");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while long.state().await.expect("state") != hippo_queue_core::TaskState::Started {
        assert!(
            std::time::Instant::now() < deadline,
            "long task did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // inspect
    let o = hq(&url, &["inspect", "ping"]).await;
    assert_eq!(code(&o), 0);
    assert!(
        out(&o).contains("w1@test") && out(&o).contains("pong"),
        "{}",
        out(&o)
    );
    let o = hq(&url, &["inspect", "active"]).await;
    assert!(
        out(&o).contains(long.id()) && out(&o).contains("cli.sleep"),
        "{}",
        out(&o)
    );
    let o = hq(&url, &["inspect", "reserved"]).await;
    assert!(out(&o).contains(queued.id()), "{}", out(&o));
    let o = hq(&url, &["inspect", "scheduled"]).await;
    assert!(out(&o).contains(later.id()), "{}", out(&o));
    let o = hq(&url, &["inspect", "registered"]).await;
    assert!(out(&o).contains("cli.fail") && out(&o).contains("cli.sleep"));
    let o = hq(&url, &["inspect", "stats"]).await;
    assert!(
        out(&o).contains("concurrency") && out(&o).contains("memory (rss)"),
        "{}",
        out(&o)
    );
    let o = hq(&url, &["inspect", "active-queues"]).await;
    assert!(out(&o).contains("default"));
    let o = hq(&url, &["inspect", "query-task", long.id(), "nope"]).await;
    assert!(
        out(&o).contains("active") && out(&o).contains("unknown"),
        "{}",
        out(&o)
    );
    let o = hq(&url, &["--json", "inspect", "ping"]).await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["w1@test"], "Pong");
    let o = hq(&url, &["inspect", "ping", "-d", "nobody", "-t", "0.3"]).await;
    assert_eq!(code(&o), 3, "no worker of that name");

    // control
    let o = hq(&url, &["control", "pool-grow", "2"]).await;
    assert_eq!(code(&o), 0);
    assert_eq!(worker.concurrency(), 3);
    hq(&url, &["control", "pool-shrink", "2"]).await;
    assert_eq!(worker.concurrency(), 1);
    let o = hq(&url, &["control", "autoscale", "1", "3"]).await;
    assert_eq!(code(&o), 1, "min above max is refused: {}", out(&o));
    let o = hq(&url, &["control", "add-consumer", "background"]).await;
    assert!(out(&o).contains("now consuming background"));
    assert_eq!(worker.consumers(), ["default", "background"]);
    hq(&url, &["control", "cancel-consumer", "background"]).await;
    assert_eq!(worker.consumers(), ["default"]);
    let o = hq(&url, &["control", "rate-limit", "cli.sleep", "100/s"]).await;
    assert!(out(&o).contains("100/s"), "{}", out(&o));
    let o = hq(&url, &["control", "rate-limit", "cli.sleep", "lots"]).await;
    assert_eq!(code(&o), 1);
    hq(&url, &["control", "rate-limit", "cli.sleep", "0"]).await;
    let o = hq(&url, &["control", "time-limit", "cli.sleep", "100", "200"]).await;
    assert_eq!(code(&o), 0);
    let o = hq(&url, &["control", "revoke", long.id(), "--terminate"]).await;
    assert_eq!(code(&o), 0);
    queued
        .get(Duration::from_secs(10))
        .await
        .expect("queued one ran");
    let o = hq(&url, &["control", "pool-restart"]).await;
    assert_eq!(code(&o), 0);

    // results
    let o = hq(&url, &["result", queued.id()]).await;
    assert_eq!(code(&o), 0);
    assert!(
        out(&o).contains("SUCCESS") && out(&o).contains("result     1"),
        "{}",
        out(&o)
    );
    let o = hq(&url, &["result", long.id()]).await;
    assert_eq!(code(&o), 4, "revoked");
    assert!(out(&o).contains("REVOKED"));
    let failing = app.delay::<Fail>(()).await.expect("send");
    let o = hq(&url, &["result", failing.id(), "--wait", "10"]).await;
    assert_eq!(code(&o), 4);
    assert!(
        out(&o).contains("FAILURE") && out(&o).contains("the disk was full"),
        "{}",
        out(&o)
    );
    let o = hq(&url, &["--json", "result", failing.id()]).await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["state"], "FAILURE");
    let o = hq(&url, &["result", "unknown-id"]).await;
    assert_eq!(code(&o), 3);
    assert!(out(&o).contains("PENDING"));

    // queues, purge, revoke, dead letters, workers, events
    let o = hq(&url, &["queues"]).await;
    assert!(
        out(&o).contains("memory_ops") && out(&o).contains("DELAYED"),
        "{}",
        out(&o)
    );
    let o = hq(&url, &["--json", "queues", "default"]).await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v[0]["delayed"], 1);
    let o = hq(&url, &["purge", "default"]).await;
    assert!(
        out(&o).contains("purged 1 message(s) from default"),
        "{}",
        out(&o)
    );
    let o = hq(&url, &["revoke", "some-id"]).await;
    assert!(out(&o).contains("revoked some-id"));
    let o = hq(&url, &["inspect", "revoked"]).await;
    assert!(out(&o).contains("some-id"));
    let o = hq(&url, &["dead-letters", "default"]).await;
    assert_eq!(code(&o), 0);
    let o = hq(&url, &["workers"]).await;
    assert!(out(&o).contains("w1@test"), "{}", out(&o));
    let o = hq(&url, &["events", "-n", "1000"]).await;
    let text = out(&o);
    assert!(
        text.contains("worker-online")
            && text.contains("task-succeeded")
            && text.contains("task-failed"),
        "{text}"
    );
    let o = hq(&url, &["--json", "events", "-n", "5"]).await;
    assert_eq!(out(&o).lines().count(), 5);

    // shutdown through the CLI
    let o = hq(&url, &["control", "shutdown"]).await;
    assert_eq!(code(&o), 0);
    tokio::time::timeout(Duration::from_secs(10), worker.stopped())
        .await
        .expect("worker stopped");
    let o = hq(&url, &["inspect", "ping", "-t", "0.3"]).await;
    assert_eq!(code(&o), 3);
}

#[tokio::test]
async fn usage_and_connection_errors_have_distinct_exit_codes() {
    let o = hq("redis://127.0.0.1:1/0", &["queues"]).await;
    assert_eq!(code(&o), 1);
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot connect"));
    let o = hq("redis://127.0.0.1:1/0", &["inspect", "bogus"]).await;
    assert_eq!(code(&o), 2);
    let o = hq("redis://127.0.0.1:1/0", &["inspect", "ping", "-t", "-1"]).await;
    assert_eq!(code(&o), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beat_status_shows_the_leader_and_its_entries() {
    use hippo_queue_core::beat::{Beat, Entry, Schedule};
    let server = RedisServer::start();
    let url = server.url(1);
    let redis = RedisBackend::connect(RedisConfig::new(url.clone()))
        .await
        .expect("connect");
    let app = App::builder()
        .broker(redis.clone())
        .backend(redis.clone())
        .build();
    let o = hq(&url, &["beat", "status"]).await;
    assert_eq!(code(&o), 3, "no beat yet");
    assert!(out(&o).contains("no beat is running"));
    let beat = Beat::builder(app, redis.clone())
        .id("beat-1")
        .lease_ttl(Duration::from_secs(2))
        .entry(
            Entry::new::<Sleep>("nap", 1, Schedule::every(Duration::from_secs(3600)))
                .expect("entry"),
        )
        .build()
        .expect("beat");
    let handle = beat.spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let o = hq(&url, &["beat", "status"]).await;
        if code(&o) == 0 && out(&o).contains("nap") {
            let text = out(&o);
            assert!(
                text.contains("beat-1") && text.contains("cli.sleep"),
                "{text}"
            );
            assert!(text.contains("NEXT RUN"), "{text}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "status not published");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let o = hq(&url, &["--json", "beat", "status"]).await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["leader"]["beat_id"], "beat-1");
    assert_eq!(v["entries"][0]["name"], "nap");
    handle.shutdown().await;
    let o = hq(&url, &["beat", "status"]).await;
    assert_eq!(code(&o), 3, "the lease was given up");
}

/// Sends one inline command to the test server (`CONFIG SET ...`).
fn redis_command(server: &RedisServer, command: &str) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    s.write_all(format!("{command}\r\n").as_bytes())
        .expect("write");
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).expect("read");
    assert!(buf[..n].starts_with(b"+OK"), "{command}: {:?}", &buf[..n]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_one_line_per_finding_with_ci_exit_codes() {
    let server = RedisServer::start(); // appendonly no, save "": nothing persisted
    let url = server.url(1);
    let redis = RedisBackend::connect(RedisConfig::new(url.clone()))
        .await
        .expect("connect");
    let app = App::builder()
        .broker(redis.clone())
        .backend(redis)
        .router(Router::guide_preset())
        .build();
    app.register(Sleep);
    let worker = app
        .worker()
        .queues(["default"])
        .heartbeat_interval(Duration::from_millis(100))
        .start()
        .await
        .expect("worker");
    app.apply_async::<Sleep>(1, SendOptions::new().queue("background"))
        .await
        .expect("send to a queue nobody consumes");

    let o = hq(&url, &["doctor"]).await;
    let text = out(&o);
    assert_eq!(code(&o), 2, "{text}");
    let line = |check: &str| {
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(check))
            .unwrap_or_else(|| panic!("no {check} line in:\n{text}"))
            .to_string()
    };
    assert!(line("persistence").starts_with("error"), "{text}");
    assert!(line("maxmemory-policy").starts_with("ok"), "{text}");
    assert!(line("clock").starts_with("ok"), "{text}");
    let consumers = line("consumers");
    assert!(
        consumers.starts_with("warning") && consumers.contains("background"),
        "{text}"
    );
    assert!(line("beat").starts_with("ok"), "{text}");

    // With the append-only file on, only the warning is left.
    redis_command(&server, "CONFIG SET appendonly yes");
    let o = hq(&url, &["doctor"]).await;
    assert_eq!(code(&o), 1, "{}", out(&o));
    let o = hq(&url, &["--json", "doctor"]).await;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert!(
        v.as_array()
            .is_some_and(|a| a.iter().any(|f| f["check"] == "consumers"))
    );

    // Nothing left to report once the backlog is gone.
    hq(&url, &["purge", "background"]).await;
    let o = hq(&url, &["doctor"]).await;
    assert_eq!(code(&o), 0, "{}", out(&o));
    worker.shutdown().await;

    // An unreachable deployment is an error finding, not a crash.
    let o = hq("redis://127.0.0.1:1/0", &["doctor"]).await;
    assert_eq!(code(&o), 2);
    assert!(out(&o).starts_with("error") && out(&o).contains("connection"));
}
