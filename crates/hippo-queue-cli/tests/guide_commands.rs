//! Every command of the guide's "Worker Inspection" and "Worker Control Commands"
//! sections, in its hippo-queue form exactly as docs/operations.md writes it (the
//! underscore spellings included), against a live worker on a real Redis; then
//! `status`, `call` and `purge` of every queue.

use std::process::{Output, Stdio};
use std::time::Duration;

use hippo_queue_core::{App, Router, SendOptions, Task, TaskContext, TaskError, TaskState};
use hippo_queue_redis::test_server::RedisServer;
use hippo_queue_redis::{RedisBackend, RedisConfig};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

struct Sleep;
impl Task for Sleep {
    const NAME: &'static str = "guide.sleep";
    type Args = u64;
    type Output = u64;
    async fn run(&self, _: &TaskContext, ms: u64) -> Result<u64, TaskError> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(ms)
    }
}

#[derive(Serialize, Deserialize)]
struct AddArgs {
    a: i64,
    b: i64,
}

struct Add;
impl Task for Add {
    const NAME: &'static str = "guide.add";
    type Args = AddArgs;
    type Output = i64;
    async fn run(&self, _: &TaskContext, x: AddArgs) -> Result<i64, TaskError> {
        Ok(x.a + x.b)
    }
}

struct Pair;
impl Task for Pair {
    const NAME: &'static str = "guide.pair";
    type Args = (String, u32);
    type Output = String;
    async fn run(&self, _: &TaskContext, (s, n): (String, u32)) -> Result<String, TaskError> {
        Ok(s.repeat(n as usize))
    }
}

/// Rejects its first run (a dead letter), succeeds afterwards.
struct RejectOnce;
static REJECTED_ONCE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
impl Task for RejectOnce {
    const NAME: &'static str = "guide.reject_once";
    type Args = ();
    type Output = String;
    async fn run(&self, _: &TaskContext, _: ()) -> Result<String, TaskError> {
        if !REJECTED_ONCE.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(TaskError::new("Unprocessable", "first run").reject());
        }
        Ok("second run".into())
    }
}

async fn hq(url: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_hippo-queue"));
    cmd.arg("--broker").arg(url).args(args);
    cmd.env_remove("CELERY_BROKER_URL")
        .env_remove("CELERY_RESULT_BACKEND")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run hippo-queue");
    if let Some(mut input) = child.stdin.take() {
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).await.expect("stdin");
        }
        drop(input);
    }
    child.wait_with_output().await.expect("hippo-queue output")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ok(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        out(o),
        String::from_utf8_lossy(&o.stderr)
    );
    out(o)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_worker_commands_run_as_documented() {
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
    app.register(Sleep)
        .register(Add)
        .register(Pair)
        .register(RejectOnce);
    let worker = app
        .worker()
        .name("celery@worker1")
        .queues(["default", "background"])
        .concurrency(1)
        .heartbeat_interval(Duration::from_millis(100))
        .worker_lost_after(Duration::from_secs(2))
        .fetch_wait(Duration::from_millis(100))
        .start()
        .await
        .expect("worker");
    let running = app.delay::<Sleep>(60_000).await.expect("send");
    let later = app
        .apply_async::<Sleep>(1, SendOptions::new().countdown(Duration::from_secs(600)))
        .await
        .expect("send");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while worker.active().is_empty() {
        assert!(std::time::Instant::now() < deadline, "nothing started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Worker Inspection
    let text = ok(&hq(&url, &["inspect", "active"], None).await);
    assert!(
        text.contains(running.id()) && text.contains("guide.sleep"),
        "{text}"
    );
    let text = ok(&hq(&url, &["inspect", "scheduled"], None).await);
    assert!(text.contains(later.id()), "{text}");
    let text = ok(&hq(&url, &["inspect", "registered"], None).await);
    assert!(
        text.contains("guide.add") && text.contains("guide.pair"),
        "{text}"
    );
    let text = ok(&hq(&url, &["inspect", "stats"], None).await);
    assert!(
        text.contains("celery@worker1") && text.contains("concurrency"),
        "{text}"
    );
    let text = ok(&hq(&url, &["inspect", "ping"], None).await);
    assert!(
        text.contains("celery@worker1") && text.contains("pong"),
        "{text}"
    );

    // Worker Control Commands (shutdown last)
    running.revoke(true).await.expect("revoke");
    let text = ok(&hq(&url, &["control", "pool_restart", "-t", "10"], None).await);
    assert!(text.contains("pool restarted"), "{text}");
    let text = ok(&hq(&url, &["control", "autoscale", "10", "3"], None).await);
    assert!(text.contains("autoscale between 3 and 10"), "{text}");
    let text = ok(&hq(&url, &["control", "add_consumer", "memory_ops"], None).await);
    assert!(text.contains("now consuming memory_ops"), "{text}");
    assert!(worker.consumers().contains(&"memory_ops".to_string()));
    let text = ok(&hq(&url, &["control", "cancel_consumer", "background"], None).await);
    assert!(text.contains("no longer consuming background"), "{text}");
    assert!(!worker.consumers().contains(&"background".to_string()));

    // status, call
    let text = ok(&hq(&url, &["status"], None).await);
    assert!(
        text.contains("celery@worker1: OK") && text.contains("1 node online."),
        "{text}"
    );
    let id = ok(&hq(
        &url,
        &["call", "guide.add", "--kwargs", r#"{"a": 2, "b": 3}"#],
        None,
    )
    .await);
    let sum: i64 = app
        .result(id.trim())
        .get(Duration::from_secs(10))
        .await
        .expect("called by name");
    assert_eq!(sum, 5);
    let id = ok(&hq(
        &url,
        &["call", "guide.pair", "--args", r#"["ab", 3]"#],
        None,
    )
    .await);
    let s: String = app
        .result(id.trim())
        .get(Duration::from_secs(10))
        .await
        .expect("called with args");
    assert_eq!(s, "ababab");
    let id = ok(&hq(&url, &["call", "guide.sleep", "--args", "[1]"], None).await);
    let ms: u64 = app
        .result(id.trim())
        .get(Duration::from_secs(10))
        .await
        .expect("one arg");
    assert_eq!(ms, 1);
    let bad = hq(&url, &["call", "guide.add", "--kwargs", "[1]"], None).await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--kwargs must be a JSON object"));
    let wrong = ok(&hq(&url, &["call", "guide.add", "--args", r#"["x"]"#], None).await);
    let r = app.result::<i64>(wrong.trim());
    let _ = r.get(Duration::from_secs(10)).await;
    let meta = r.meta().await.expect("read").expect("record");
    assert_eq!(
        meta.state,
        TaskState::Failure,
        "arguments that do not fit fail, named"
    );
    assert!(!worker.is_stopped());

    // purge of every queue: refused without a yes, done with one
    for q in ["memory_ops", "scheduled"] {
        app.apply_async::<Sleep>(
            1,
            SendOptions::new()
                .queue(q)
                .countdown(Duration::from_secs(600)),
        )
        .await
        .expect("send");
    }
    let o = hq(&url, &["purge"], Some("no\n")).await;
    assert_eq!(o.status.code(), Some(3), "{}", out(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Are you sure?"));
    let text = ok(&hq(&url, &["purge"], Some("yes\n")).await);
    assert!(text.contains("purged 3 message(s) from"), "{text}");
    let text = ok(&hq(&url, &["purge", "--force"], None).await);
    assert!(text.contains("purged 0 message(s) from"), "{text}");

    // dead letters sent back
    let r = app.delay::<RejectOnce>(()).await.expect("send");
    let _ = r.get(Duration::from_secs(10)).await;
    assert_eq!(r.state().await.expect("state"), TaskState::Rejected);
    let text = ok(&hq(&url, &["dead-letters", "default"], None).await);
    assert!(text.contains(r.id()), "{text}");
    let o = hq(&url, &["dead-letters", "requeue", "default"], None).await;
    assert_eq!(o.status.code(), Some(2), "--id or --all is required");
    let text = ok(&hq(
        &url,
        &["dead-letters", "requeue", "default", "--id", r.id()],
        None,
    )
    .await);
    assert!(text.contains("requeued 1 message(s) to default"), "{text}");
    assert_eq!(
        r.get(Duration::from_secs(10)).await.expect("ran again"),
        "second run"
    );
    let o = hq(&url, &["dead-letters", "requeue", "default", "--all"], None).await;
    assert_eq!(o.status.code(), Some(3), "nothing left: {}", out(&o));

    // Graceful shutdown (wait for tasks to finish)
    let text = ok(&hq(&url, &["control", "shutdown"], None).await);
    assert!(text.contains("shutting down"), "{text}");
    tokio::time::timeout(Duration::from_secs(10), worker.stopped())
        .await
        .expect("worker stopped");
}
