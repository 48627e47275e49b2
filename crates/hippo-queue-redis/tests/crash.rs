//! `kill -9` of worker processes mid-task and mid-batch, against a real Redis.
//!
//! The test binary re-runs itself as the worker process (`child_worker`, ignored in
//! normal runs), so the crash is a real process death: no destructor, no flush.

use hippo_queue_redis::test_server as support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hippo_queue_core::backend::ResultBackend;
use hippo_queue_core::task::kinds;
use hippo_queue_core::{App, SendOptions, Task, TaskContext, TaskError, TaskOptions, TaskState};
use hippo_queue_redis::{RedisBackend, RedisConfig};
use redis::AsyncCommands;

const EXECS: &str = "crashtest:execs";

/// Counts its executions in Redis (so that every process adds to one tally), then
/// works for a few milliseconds.
struct Work {
    counter: redis::aio::MultiplexedConnection,
}

impl Task for Work {
    const NAME: &'static str = "crash.work";
    type Args = u64;
    type Output = u64;
    async fn run(&self, ctx: &TaskContext, ms: u64) -> Result<u64, TaskError> {
        let mut c = self.counter.clone();
        let _: i64 = c.hincr(EXECS, ctx.id(), 1).await?;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(ms)
    }
}

async fn connect(url: &str) -> RedisBackend {
    RedisBackend::connect(RedisConfig::new(url))
        .await
        .expect("connect")
}

/// The worker process. Runs only when the parent test starts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper process started by the crash tests"]
async fn child_worker() {
    let Ok(url) = std::env::var("HQ_CRASH_URL") else {
        return;
    };
    let backend = connect(&url).await;
    let counter = redis::Client::open(url.as_str())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("counter connection");
    let app = App::builder()
        .broker(backend.clone())
        .backend(backend)
        .build();
    app.register(Work { counter });
    let _worker = app
        .worker()
        .concurrency(8)
        .prefetch_multiplier(4)
        .heartbeat_interval(Duration::from_millis(100))
        .worker_lost_after(Duration::from_millis(1000))
        .fetch_wait(Duration::from_millis(200))
        .start()
        .await
        .expect("worker");
    // Until killed (and never longer than a minute).
    tokio::time::sleep(Duration::from_secs(60)).await;
}

fn spawn_child(url: &str) -> Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "child_worker",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HQ_CRASH_URL", url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn worker process")
}

struct Outcome {
    success: usize,
    worker_lost: usize,
    other: usize,
    duplicated: i64,
    max_execs: i64,
}

async fn run_crash(acks_late: bool) -> Outcome {
    const N: usize = 2000;
    let server = support::RedisServer::start();
    let url = server.url(0);
    let backend = connect(&url).await;
    let app = App::builder()
        .broker(backend.clone())
        .backend(backend.clone())
        .build();
    let opts = TaskOptions::new()
        .acks_late(acks_late)
        .reject_on_worker_lost(acks_late);
    let handles = app
        .send_many::<Work>((0..N).map(|_| (3, SendOptions::new().with(opts.clone()))))
        .await
        .expect("send");
    let mut first = spawn_child(&url);
    // let it get going, then kill it mid-task with a prefetched batch in hand
    let mut conn = redis::Client::open(url.as_str())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n: usize = conn.hlen(EXECS).await.expect("hlen");
        if n >= 300 {
            break;
        }
        assert!(Instant::now() < deadline, "first worker did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.kill().expect("kill -9");
    let _ = first.wait();
    let stats = app
        .broker()
        .queue_stats(&["default".into()])
        .await
        .expect("stats");
    assert!(
        stats[0].reserved > 0,
        "the killed worker held messages: {stats:?}"
    );

    let mut second = spawn_child(&url);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut outcome = Outcome {
        success: 0,
        worker_lost: 0,
        other: 0,
        duplicated: 0,
        max_execs: 0,
    };
    for h in &handles {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let meta = backend
            .wait(h.id(), remaining)
            .await
            .expect("wait")
            .unwrap_or_else(|| panic!("task {} lost: no record", h.id()));
        match meta.state {
            TaskState::Success => outcome.success += 1,
            TaskState::Failure
                if meta
                    .error
                    .as_ref()
                    .is_some_and(|e| e.kind == kinds::WORKER_LOST) =>
            {
                outcome.worker_lost += 1
            }
            state => {
                outcome.other += 1;
                eprintln!("task {} ended {state}: {:?}", h.id(), meta.error);
            }
        }
    }
    second.kill().expect("kill");
    let _ = second.wait();
    let execs: std::collections::HashMap<String, i64> = conn.hgetall(EXECS).await.expect("execs");
    outcome.duplicated = execs.values().map(|n| n - 1).sum();
    outcome.max_execs = execs.values().copied().max().unwrap_or(0);
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_acks_late_completes_every_task_once() {
    let o = run_crash(true).await;
    println!(
        "acks_late: {} SUCCESS, {} worker-lost, {} other, {} duplicated executions",
        o.success, o.worker_lost, o.other, o.duplicated
    );
    assert_eq!(o.success, 2000, "every task completes");
    assert_eq!(o.other + o.worker_lost, 0);
    // Only messages leased to the killed worker can run twice: those running at the
    // kill (concurrency 8) and those that finished but whose results were still being
    // written; never more than its prefetch window (8 x 4). Finished tasks whose
    // results were stored are not run again.
    assert!(o.duplicated <= 32, "{} duplicated executions", o.duplicated);
    assert!(o.max_execs <= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_without_acks_late_loses_only_running_tasks() {
    let o = run_crash(false).await;
    println!(
        "early ack: {} SUCCESS, {} worker-lost, {} other, {} duplicated executions",
        o.success, o.worker_lost, o.other, o.duplicated
    );
    assert_eq!(o.other, 0, "every task ends in a visible state");
    assert_eq!(o.success + o.worker_lost, 2000);
    assert!(
        o.worker_lost <= 8,
        "only running tasks are lost: {}",
        o.worker_lost
    );
    assert_eq!(o.duplicated, 0, "no task runs twice without acks_late");
}
