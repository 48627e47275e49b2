//! Shared by the monitor's tests: a real `redis-server`, a real worker, and the
//! monitor served on a free port of the loopback.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use hippo_queue_core::{App, Task, TaskContext, TaskError, TaskOptions, WorkerHandle};
use hippo_queue_monitor::{Monitor, MonitorConfig};
use hippo_queue_redis::test_server::RedisServer;
use hippo_queue_redis::{RedisBackend, RedisConfig};
use tokio::sync::oneshot;

pub struct Add;

impl Task for Add {
    const NAME: &'static str = "test.add";
    type Args = (i64, i64);
    type Output = i64;
    async fn run(&self, _: &TaskContext, (a, b): (i64, i64)) -> Result<i64, TaskError> {
        Ok(a + b)
    }
}

pub struct Fail;

impl Task for Fail {
    const NAME: &'static str = "test.fail";
    type Args = ();
    type Output = ();
    async fn run(&self, _: &TaskContext, _: ()) -> Result<(), TaskError> {
        Err(TaskError::new("Boom", "it broke").caused_by("the disk was full"))
    }
}

pub struct Sleep;

impl Task for Sleep {
    const NAME: &'static str = "test.sleep";
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

/// Rejects (the message goes to the dead letters) until [`PICKY_OPEN`] is set.
pub struct Picky;

/// Whether [`Picky`] accepts its work.
pub static PICKY_OPEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Task for Picky {
    const NAME: &'static str = "test.picky";
    type Args = u32;
    type Output = u32;
    async fn run(&self, _: &TaskContext, n: u32) -> Result<u32, TaskError> {
        if PICKY_OPEN.load(std::sync::atomic::Ordering::SeqCst) {
            Ok(n)
        } else {
            Err(TaskError::new("NotNow", "the upstream is closed").reject())
        }
    }
}

/// Redis (broker on db 1, results on db 2, the guide's layout), an app and one
/// worker `w1@test` on `default` with one slot and no prefetch beyond it.
pub struct Deployment {
    pub server: RedisServer,
    pub redis: RedisBackend,
    pub app: App,
    pub worker: Option<WorkerHandle>,
}

impl Deployment {
    pub async fn start() -> Self {
        let server = RedisServer::start();
        let redis =
            RedisBackend::connect(RedisConfig::new(server.url(1)).results_url(server.url(2)))
                .await
                .expect("connect to the test server");
        let app = App::builder()
            .broker(redis.clone())
            .backend(redis.clone())
            .build();
        app.register(Add)
            .register(Fail)
            .register(Sleep)
            .register(Picky);
        let worker = app
            .worker()
            .name("w1@test")
            .queues(["default"])
            .concurrency(1)
            .prefetch_multiplier(1)
            .task_events(true)
            .heartbeat_interval(Duration::from_millis(100))
            .fetch_wait(Duration::from_millis(100))
            .shutdown_grace(Duration::from_secs(5))
            .start()
            .await
            .expect("start the worker");
        Deployment {
            server,
            redis,
            app,
            worker: Some(worker),
        }
    }

    pub async fn stop(mut self) {
        if let Some(w) = self.worker.take() {
            w.shutdown().await;
        }
    }
}

/// A monitor served on 127.0.0.1 on a free port; stops when dropped.
pub struct Served {
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub async fn serve(config: MonitorConfig, redis: &RedisBackend) -> Served {
    let prefix = config.prefix().to_string();
    let monitor = Monitor::new(config, Arc::new(redis.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free port");
    let addr = listener.local_addr().expect("local address");
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let stopped = async {
            let _ = rx.await;
        };
        if let Err(e) = hippo_queue_monitor::serve::serve(&monitor, listener, stopped).await {
            panic!("monitor failed: {e}");
        }
    });
    Served {
        base: format!("http://{addr}{prefix}"),
        stop: Some(tx),
    }
}

/// GET a path; the status and the body as JSON (`Null` when it is not JSON).
pub async fn get(client: &reqwest::Client, url: &str) -> (u16, serde_json::Value) {
    let res = client.get(url).send().await.expect("request");
    let status = res.status().as_u16();
    let text = res.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// Polls `f` until it is true or 10 s pass.
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `promtool check metrics` on an exposition: its complaints, empty when it passes.
/// `promtool` comes with Debian's `prometheus` package.
pub fn promtool_check(exposition: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool (apt-get install prometheus)");
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(exposition.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && text.trim().is_empty() {
        String::new()
    } else {
        format!("exit {:?}: {text}", out.status.code())
    }
}
