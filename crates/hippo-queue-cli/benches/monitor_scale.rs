//! The monitor at scale: 1,000,000 events in the stream and 100,000 task records,
//! served by `hippo-queue monitor` (its own process, so that its memory is measured
//! alone). Prints the latency of task pages and the monitor's resident memory.
//!
//! ```text
//! cargo bench -p hippo-queue-cli --bench monitor_scale
//! ```
//!
//! `HQ_BENCH_SCALE` multiplies both counts (default 1.0).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hippo_queue_core::backend::{EventLog, ResultBackend, ResultWrite};
use hippo_queue_core::codec::to_msgpack;
use hippo_queue_core::events::{Event, EventKind, WorkerInfo};
use hippo_queue_core::{TaskFailure, TaskMeta, TaskState};
use hippo_queue_redis::test_server::RedisServer;
use hippo_queue_redis::{RedisBackend, RedisConfig};

fn scaled(n: usize) -> usize {
    let scale: f64 = std::env::var("HQ_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64) * scale).max(100.0) as usize
}

struct Monitor(Child);

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// (current, peak) resident memory of a process, KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn timed(client: &reqwest::Client, url: &str, n: usize) -> (Duration, Duration, usize) {
    let mut times = Vec::with_capacity(n);
    let mut size = 0;
    for _ in 0..n {
        let t = Instant::now();
        let res = client.get(url).send().await.expect("request");
        assert!(res.status().is_success(), "{url}: {}", res.status());
        size = res.bytes().await.expect("body").len();
        times.push(t.elapsed());
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99), size)
}

#[tokio::main]
async fn main() {
    let events = scaled(1_000_000);
    let records = scaled(100_000);
    let server = RedisServer::start();
    let url = server.url(1);
    let redis = RedisBackend::connect(RedisConfig::new(url.clone()).event_cap(events as u64 * 2))
        .await
        .expect("connect");

    let t = Instant::now();
    let info = WorkerInfo::named("bench@host");
    let names = [
        "memory.store",
        "memory.search",
        "memory.consolidate",
        "memory.decay",
    ];
    for chunk in 0..events.div_ceil(10_000) {
        let batch: Vec<Event> = (0..10_000.min(events - chunk * 10_000))
            .map(|i| {
                let n = chunk * 10_000 + i;
                if n % 50 == 0 {
                    Event::worker(EventKind::WorkerHeartbeat, &info)
                } else {
                    let kind = [
                        EventKind::TaskReceived,
                        EventKind::TaskStarted,
                        EventKind::TaskSucceeded,
                    ][n % 3];
                    let mut e = Event::task(kind, &format!("t{}", n / 3), names[n % 4]);
                    e.worker = Some("bench@host".into());
                    e.runtime =
                        (kind == EventKind::TaskSucceeded).then_some(0.01 * (n % 100) as f64);
                    e
                }
            })
            .collect();
        redis.emit(&batch).await.expect("emit");
    }
    println!(
        "filled {events} events in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let day = Duration::from_secs(86_400);
    for chunk in 0..records.div_ceil(1000) {
        let writes: Vec<ResultWrite> = (0..1000.min(records - chunk * 1000))
            .map(|i| {
                let n = chunk * 1000 + i;
                let failed = n % 100 == 0;
                let state = if failed {
                    TaskState::Failure
                } else {
                    TaskState::Success
                };
                let mut meta = TaskMeta::new(format!("task-{n:07}"), names[n % 4], state);
                meta.worker = Some(format!("worker-{}@host", n % 8));
                meta.queue = Some("memory_ops".into());
                if failed {
                    meta.error = Some(TaskFailure::new("StoreError", "the vector store timed out"));
                } else {
                    meta.result = Some(
                        to_msgpack(&serde_json::json!({"memory_id": n, "score": 0.5}))
                            .expect("encode"),
                    );
                }
                ResultWrite {
                    meta,
                    ttl: day,
                    compress: false,
                    announce: false,
                }
            })
            .collect();
        redis.store(&writes).await.expect("store");
    }
    println!(
        "filled {records} task records in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let used = server
        .info_field("memory", "used_memory_human")
        .unwrap_or_default();
    println!("redis used_memory: {used}");

    // one live worker consuming the queue, as the monitor finds it in the registry
    let app = hippo_queue_core::App::builder()
        .broker(redis.clone())
        .backend(redis.clone())
        .build();
    let worker = app
        .worker()
        .name("bench-worker@host")
        .queues(["memory_ops"])
        .start()
        .await
        .expect("worker");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let child = Command::new(env!("CARGO_BIN_EXE_hippo-queue"))
        .args(["--broker", &url, "monitor", "--port", &port.to_string()])
        .env_remove("FLOWER_BASIC_AUTH")
        .env_remove("FLOWER_USER")
        .env_remove("FLOWER_PASSWORD")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the monitor");
    let monitor = Monitor(child);
    let pid = monitor.0.id();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while client
        .get(format!("{base}/healthcheck"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the monitor did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("monitor started: RSS {} KiB", rss_kib(pid).0);

    for (what, path, n) in [
        ("page of 100 tasks (newest)", "/api/tasks?limit=100", 200),
        (
            "page of 100 tasks at offset 10,000",
            "/api/tasks?limit=100&offset=10000",
            20,
        ),
        (
            "page of 100 tasks of one name",
            "/api/tasks?limit=100&taskname=memory.search",
            50,
        ),
        (
            "failures (1 in 100), page of 100",
            "/api/tasks?limit=100&state=FAILURE",
            10,
        ),
        (
            "search 'timed out', page of 100",
            "/api/tasks?limit=100&search=%22timed%20out%22",
            10,
        ),
        (
            "sorted by name, page of 100",
            "/api/tasks?limit=100&sort_by=name",
            3,
        ),
        ("task info", "/api/task/info/task-0050000", 200),
        ("queue lengths", "/api/queues/length", 100),
    ] {
        let (p50, p99, size) = timed(&client, &format!("{base}{path}"), n).await;
        println!(
            "{what}: p50 {:.1} ms, p99 {:.1} ms ({n} requests, {size} bytes)",
            p50.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0
        );
    }
    let t = Instant::now();
    let mut scrapes = 0;
    loop {
        let text = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("body");
        scrapes += 1;
        let counted: f64 = text
            .lines()
            .filter(|l| l.starts_with("flower_events_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if counted as usize >= events - events / 50 || scrapes >= 20 {
            println!(
                "/metrics caught up with {counted} task events in {scrapes} scrapes, {:.1} s",
                t.elapsed().as_secs_f64()
            );
            break;
        }
    }
    let (p50, p99, _) = timed(&client, &format!("{base}/metrics"), 20).await;
    println!(
        "/metrics once caught up: p50 {:.1} ms, p99 {:.1} ms",
        p50.as_secs_f64() * 1000.0,
        p99.as_secs_f64() * 1000.0
    );
    let (rss, peak) = rss_kib(pid);
    println!(
        "monitor RSS: {:.1} MiB now, {:.1} MiB peak",
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    worker.shutdown().await;
}
