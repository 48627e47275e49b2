//! The pools side by side, through a real Redis (started on a free port): what a
//! task costs on the process pool against the async pool (no-op throughput and one
//! task's round trip), and CPU-bound throughput on the process, blocking and async
//! pools. The figures in `docs/benchmarks.md`.
//!
//! ```text
//! cargo bench --bench pools
//! ```
//!
//! The bench binary is also the process pool's child program: `serve_if_child` below
//! is the one call a program with a process pool needs. Environment: `HQ_BENCH_SCALE`
//! multiplies the task counts (default 1.0), `HQ_BENCH_CONCURRENCY` sets every pool's
//! concurrency (default: the number of CPUs).

use std::time::{Duration, Instant};

use hippo_queue::redis::test_server::RedisServer;
use hippo_queue::redis::{RedisBackend, RedisConfig};
use hippo_queue::worker::serve_if_child;
use hippo_queue::{App, Pool, SendOptions, Task, TaskContext, TaskError};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Noop;
impl Task for Noop {
    const NAME: &'static str = "bench.noop";
    type Args = u64;
    type Output = u64;
    async fn run(&self, _: &TaskContext, x: u64) -> Result<u64, TaskError> {
        Ok(x)
    }
}

/// About `n` million rounds of integer mixing, with no `.await`: CPU-bound.
struct Crunch;
impl Task for Crunch {
    const NAME: &'static str = "bench.crunch";
    type Args = u64;
    type Output = u64;
    async fn run(&self, _: &TaskContext, n: u64) -> Result<u64, TaskError> {
        let mut x = n ^ 0x9e37_79b9_7f4a_7c15;
        for i in 0..n * 1_000_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x = x.wrapping_add(i);
        }
        Ok(std::hint::black_box(x))
    }
}

fn register(app: &App) {
    app.register(Noop);
    app.register(Crunch);
}

fn scaled(n: usize) -> usize {
    let scale: f64 = std::env::var("HQ_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((n as f64) * scale).max(10.0) as usize
}

fn concurrency() -> usize {
    std::env::var("HQ_BENCH_CONCURRENCY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

async fn app_on(server: &RedisServer) -> Result<App, BoxError> {
    let redis = RedisBackend::connect(RedisConfig::new(server.url(1))).await?;
    let app = App::builder().broker(redis.clone()).backend(redis).build();
    register(&app);
    Ok(app)
}

/// Sends `n` tasks of `T` in one batch and waits for every result.
async fn drain<T: Task<Args = u64>>(app: &App, n: usize, arg: u64) -> Result<Duration, BoxError> {
    let started = Instant::now();
    let handles = app
        .send_many::<T>((0..n).map(|_| (arg, SendOptions::new())))
        .await?;
    for h in handles {
        h.get(Duration::from_secs(600)).await?;
    }
    Ok(started.elapsed())
}

/// Median round trip of one no-op at a time (send, run, result back).
async fn round_trip(app: &App, n: usize) -> Result<f64, BoxError> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        app.delay::<Noop>(i as u64)
            .await?
            .get(Duration::from_secs(30))
            .await?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2].as_secs_f64() * 1000.0)
}

async fn bench(pool: Pool, c: usize) -> Result<(), BoxError> {
    let server = RedisServer::start();
    let app = app_on(&server).await?;
    let worker = app
        .worker()
        .pool(pool)
        .concurrency(c)
        .prefetch_multiplier(4)
        .fetch_wait(Duration::from_millis(100))
        .start()
        .await?;
    // Warm-up: every slot has its child (process pool) and connections are open.
    drain::<Noop>(&app, c * 4, 0).await?;
    let rt = round_trip(&app, scaled(200)).await?;
    let n = scaled(2_000);
    let took = drain::<Noop>(&app, n, 1).await?;
    let cpu_n = scaled(4 * c);
    let cpu = drain::<Crunch>(&app, cpu_n, 20).await?;
    println!(
        "{:<10} {c:>3} slots  no-op {:>8.0} tasks/s  round trip p50 {rt:>7.3} ms  cpu-bound {:>6.1} tasks/s",
        format!("{pool:?}"),
        n as f64 / took.as_secs_f64(),
        cpu_n as f64 / cpu.as_secs_f64(),
    );
    worker.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // In a process-pool child: register the same tasks, then serve (never returns).
    let child_app = App::in_memory();
    register(&child_app);
    serve_if_child(&child_app).await;

    let c = concurrency();
    println!("pools, {c} slots each (HQ_BENCH_CONCURRENCY), through Redis");
    for pool in [Pool::Async, Pool::Process, Pool::Blocking] {
        bench(pool, c).await?;
    }
    Ok(())
}
