//! End-to-end throughput and latency through a real Redis (started on a free port),
//! with results stored and `acks_late` on: the figures in `docs/benchmarks.md`.
//!
//! ```text
//! cargo bench --bench redis_throughput
//! ```
//!
//! Environment: `HQ_BENCH_SCALE` multiplies the task counts (default 1.0),
//! `HQ_BENCH_CONCURRENCY` sets the draining worker's concurrency (default 64),
//! `HQ_BENCH_STATS` prints each drain's `INFO commandstats` per drained task,
//! `HQ_BENCH_ONLY=drain` runs the drain alone (for a profiler).
//!
//! Besides its table, it prints one `BENCH {json}` line per measurement, which
//! `benches/compare/table.py` puts beside BullMQ's and Celery's.

use std::time::{Duration, Instant};

use hippo_queue::redis::test_server::RedisServer;
use hippo_queue::redis::{RedisBackend, RedisConfig};
use hippo_queue::{App, SendOptions, Task, TaskContext, TaskError, TaskOptions};

struct Noop;

impl Task for Noop {
    const NAME: &'static str = "bench.noop";
    type Args = u64;
    type Output = u64;
    fn options() -> TaskOptions {
        // the guide's production settings
        TaskOptions::new()
            .acks_late(true)
            .reject_on_worker_lost(true)
    }
    async fn run(&self, _: &TaskContext, x: u64) -> Result<u64, TaskError> {
        Ok(x)
    }
}

fn scaled(n: usize) -> usize {
    let scale: f64 = std::env::var("HQ_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64) * scale).max(100.0) as usize
}

struct Latencies(Vec<Duration>);

impl Latencies {
    fn pct(&mut self, p: f64) -> f64 {
        self.0.sort();
        let i = (((self.0.len() as f64) * p / 100.0).ceil() as usize).clamp(1, self.0.len()) - 1;
        self.0[i].as_secs_f64() * 1000.0
    }

    fn summary(&mut self) -> String {
        format!(
            "p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms",
            self.pct(50.0),
            self.pct(90.0),
            self.pct(99.0),
            self.pct(99.9)
        )
    }

    /// The percentiles as JSON fields.
    fn fields(&mut self) -> serde_json::Value {
        serde_json::json!({
            "p50_ms": self.pct(50.0),
            "p90_ms": self.pct(90.0),
            "p99_ms": self.pct(99.0),
            "p999_ms": self.pct(99.9),
        })
    }
}

/// Prints a measurement for `benches/compare/table.py`.
fn bench_line(metric: &str, mut fields: serde_json::Value) {
    fields["system"] = "hippo-queue".into();
    fields["metric"] = metric.into();
    println!("BENCH {fields}");
}

/// A rate and, when given, the latency percentiles.
fn rate_fields(n: usize, took: Duration, lat: Option<&mut Latencies>) -> serde_json::Value {
    let mut v = lat.map_or_else(|| serde_json::json!({}), |l| l.fields());
    v["n"] = n.into();
    v["rate"] = (n as f64 / took.as_secs_f64()).into();
    v
}

/// This process's resident memory in MiB.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The Redis server's CPU time so far, in seconds (user + system).
fn redis_cpu(server: &RedisServer) -> f64 {
    ["used_cpu_user", "used_cpu_sys"]
        .iter()
        .filter_map(|f| server.info_field("cpu", f)?.parse::<f64>().ok())
        .sum()
}

fn row(name: &str, n: usize, took: Duration, extra: &str) {
    println!(
        "{name:<34} {n:>9} tasks {:>10.0} tasks/s   {extra}",
        n as f64 / took.as_secs_f64()
    );
}

async fn app_on(server: &RedisServer) -> Result<App, BoxError> {
    let redis =
        RedisBackend::connect(RedisConfig::new(server.url(1)).results_url(server.url(2))).await?;
    let app = App::builder().broker(redis.clone()).backend(redis).build();
    app.register(Noop);
    Ok(app)
}

/// Sends `n` tasks in batches of 1,000.
async fn send_bulk(app: &App, n: usize) -> Result<(), hippo_queue::Error> {
    for start in (0..n).step_by(1000) {
        let end = (start + 1000).min(n);
        app.send_many::<Noop>((start..end).map(|i| (i as u64, SendOptions::new())))
            .await?;
    }
    Ok(())
}

/// Queues `n` tasks, then times one worker draining them; returns the worker, still
/// running.
/// `concurrency` `None` starts the worker with no tuning (the defaults: concurrency
/// the CPU count, prefetch multiplier 4).
async fn drain(
    app: &App,
    n: usize,
    concurrency: Option<usize>,
    stats: Option<&RedisServer>,
) -> Result<(Duration, hippo_queue::WorkerHandle), hippo_queue::Error> {
    send_bulk(app, n).await?;
    if let Some(server) = stats {
        // commandstats of the drain alone
        let _ = server.command(&["CONFIG", "RESETSTAT"]);
    }
    let mut builder = app.worker();
    if let Some(c) = concurrency {
        builder = builder.concurrency(c).prefetch_multiplier(4);
    }
    let worker = builder.start().await?;
    let t = Instant::now();
    while worker.stats().succeeded < n as u64 {
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    // The drain ends when the last result is stored and its message acknowledged:
    // nothing waiting, nothing leased (a message is settled after its result).
    let queues = ["default".to_string()];
    loop {
        let s = app.broker().queue_stats(&queues).await?;
        if s[0].waiting() == 0 && s[0].reserved == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    Ok((t.elapsed(), worker))
}

/// Sends `n` tasks one at a time, each waiting for its result: with `delay` then
/// `get`, or with `call` (the wait registered before the send, the result announced).
async fn round_trips(
    app: &App,
    n: usize,
    call: bool,
) -> Result<(Duration, Latencies), hippo_queue::Error> {
    let timeout = Duration::from_secs(10);
    let mut lat = Latencies(Vec::with_capacity(n));
    let t = Instant::now();
    for i in 0..n {
        let t0 = Instant::now();
        if call {
            app.call::<Noop>(i as u64, timeout).await?;
        } else {
            app.delay::<Noop>(i as u64).await?.get(timeout).await?;
        }
        lat.0.push(t0.elapsed());
    }
    Ok((t.elapsed(), lat))
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Prints the commands and script calls of the last drain per drained task:
/// `calls/task` and the server's `usec_per_call`, from `INFO commandstats`.
fn print_commandstats(stats: Option<&RedisServer>, n: usize) {
    let Some(server) = stats else {
        return;
    };
    let Ok(info) = server.command(&["INFO", "commandstats"]) else {
        return;
    };
    println!("  commandstats of the drain, per drained task ({n} tasks):");
    let mut total = 0.0;
    for line in info.text().lines() {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let Some(name) = name.strip_prefix("cmdstat_") else {
            continue;
        };
        let field = |f: &str| -> f64 {
            rest.split(',')
                .find_map(|kv| kv.strip_prefix(f)?.strip_prefix('=')?.parse().ok())
                .unwrap_or(0.0)
        };
        let (calls, usec) = (field("calls"), field("usec"));
        total += usec;
        println!(
            "    {name:<22} {:>8.3} calls/task {:>8.2} us/call {:>7.2} us/task",
            calls / n as f64,
            field("usec_per_call"),
            usec / n as f64
        );
    }
    println!("    total in commands: {:.2} us/task", total / n as f64);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    // Producers run as tasks of the runtime, as a service's request handlers do
    // (the future given to `block_on` runs outside the runtime's worker threads).
    tokio::spawn(run()).await?
}

async fn run() -> Result<(), BoxError> {
    let concurrency: usize = std::env::var("HQ_BENCH_CONCURRENCY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let server = RedisServer::start();
    // HQ_BENCH_STATS: print each drain's `INFO commandstats` per drained task
    let stats = std::env::var("HQ_BENCH_STATS").is_ok().then_some(&server);
    let app = app_on(&server).await?;
    println!("hippo-queue end-to-end benchmark: Redis on loopback, results stored, acks_late");
    println!("(broker db 1, results db 2; worker concurrency {concurrency}, prefetch 4)\n");

    if std::env::var("HQ_BENCH_ONLY").as_deref() == Ok("drain") {
        // for profiling: the drain alone
        let n = scaled(100_000);
        let cpu = redis_cpu(&server);
        let (took, worker) = drain(&app, n, Some(concurrency), stats).await?;
        let cpu_us = (redis_cpu(&server) - cpu) * 1e6 / n as f64;
        row(
            "drain backlog (1 worker process)",
            n,
            took,
            &format!("Redis CPU {cpu_us:.1} us/task"),
        );
        print_commandstats(stats, n);
        worker.shutdown().await;
        return Ok(());
    }

    // 1. one-by-one enqueue from one producer
    let n = scaled(20_000);
    let mut lat = Latencies(Vec::with_capacity(n));
    let t = Instant::now();
    for i in 0..n {
        let t0 = Instant::now();
        app.delay::<Noop>(i as u64).await?;
        lat.0.push(t0.elapsed());
    }
    let took = t.elapsed();
    row("enqueue one by one, sequential", n, took, &lat.summary());
    bench_line("enqueue_sequential", rate_fields(n, took, Some(&mut lat)));
    app.broker().purge("default").await?;

    // 1b. one-by-one enqueue from one producer process with 32 concurrent callers
    let n = scaled(100_000);
    let callers = 32;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..callers {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in (c..n).step_by(callers) {
                let t0 = Instant::now();
                app.delay::<Noop>(i as u64).await?;
                lat.push(t0.elapsed());
            }
            Ok::<_, hippo_queue::Error>(lat)
        }));
    }
    let mut lat = Latencies(Vec::with_capacity(n));
    for t in tasks {
        lat.0.extend(t.await??);
    }
    let took = t.elapsed();
    row("enqueue one by one, 32 callers", n, took, &lat.summary());
    bench_line("enqueue_32_callers", rate_fields(n, took, Some(&mut lat)));
    app.broker().purge("default").await?;

    // 2. bulk enqueue
    let n = scaled(200_000);
    let t = Instant::now();
    send_bulk(&app, n).await?;
    let took = t.elapsed();
    row("enqueue in bulk (batches of 1000)", n, took, "");
    bench_line("enqueue_bulk", rate_fields(n, took, None));
    app.broker().purge("default").await?;

    // 3. drain of a backlog by one worker, then 4. round trips one at a time
    let n = scaled(100_000);
    let cpu = redis_cpu(&server);
    let (took, worker) = drain(&app, n, Some(concurrency), stats).await?;
    let cpu_us = (redis_cpu(&server) - cpu) * 1e6 / n as f64;
    let rss = rss_mib();
    row(
        "drain backlog (1 worker process)",
        n,
        took,
        &format!("results stored and acked; Redis CPU {cpu_us:.1} us/task; RSS {rss:.0} MiB"),
    );
    let mut fields = rate_fields(n, took, None);
    fields["concurrency"] = concurrency.into();
    fields["redis_cpu_us_per_task"] = cpu_us.into();
    bench_line("drain", fields);
    print_commandstats(stats, n);
    bench_line("rss_after_drain", serde_json::json!({"mib": rss}));
    let n = scaled(5_000);
    let (took, mut lat) = round_trips(&app, n, false).await?;
    row("round trip, delay + get", n, took, &lat.summary());
    bench_line("round_trip", rate_fields(n, took, Some(&mut lat)));
    let (took, mut lat) = round_trips(&app, n, true).await?;
    row("round trip, call", n, took, &lat.summary());
    bench_line("round_trip_call", rate_fields(n, took, Some(&mut lat)));
    worker.shutdown().await;

    // 5. start-up: a task waits; a new worker starts; until its result is stored
    let waiting = app.delay::<Noop>(7).await?;
    let t = Instant::now();
    let worker = app.worker().concurrency(concurrency).start().await?;
    waiting.get(Duration::from_secs(10)).await?;
    let took = t.elapsed();
    worker.shutdown().await;
    row("start-up to the first result", 1, took, "");
    bench_line(
        "startup_to_first_result",
        serde_json::json!({"ms": took.as_secs_f64() * 1000.0}),
    );

    // 6. drain with no tuning: the worker's default concurrency and prefetch
    let n = scaled(100_000);
    let cpu = redis_cpu(&server);
    let (took, worker) = drain(&app, n, None, stats).await?;
    let cpu_us = (redis_cpu(&server) - cpu) * 1e6 / n as f64;
    worker.shutdown().await;
    let default_concurrency = app.config().worker_concurrency;
    row(
        "drain backlog, default concurrency",
        n,
        took,
        &format!("concurrency {default_concurrency}; Redis CPU {cpu_us:.1} us/task"),
    );
    let mut fields = rate_fields(n, took, None);
    fields["concurrency"] = default_concurrency.into();
    fields["redis_cpu_us_per_task"] = cpu_us.into();
    bench_line("drain_default", fields);
    print_commandstats(stats, n);

    // reference: the same on the in-memory backend (the worker's own overhead)
    let mem = App::in_memory();
    mem.register(Noop);
    let n = scaled(100_000);
    let (took, worker) = drain(&mem, n, Some(concurrency), None).await?;
    row("drain backlog (in-memory backend)", n, took, "reference");
    let n = scaled(5_000);
    let (took, mut lat) = round_trips(&mem, n, false).await?;
    row("round trip (in-memory backend)", n, took, &lat.summary());
    worker.shutdown().await;
    Ok(())
}
