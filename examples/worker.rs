//! A worker process with HippocampAI's memory tasks, on Redis: the guide's
//! `celery -A src.hippocampai.celery_app worker`.
//!
//! ```sh
//! export CELERY_BROKER_URL=redis://localhost:6379/1
//! export CELERY_RESULT_BACKEND=redis://localhost:6379/2
//! cargo run --example worker -- --loglevel=info --concurrency=4
//! cargo run --example worker -- --queues=memory_ops,default --loglevel=info
//! cargo run --example worker -- --beat --loglevel=info   # worker + beat (development)
//! cargo run --example worker -- --pool=prefork --concurrency=4 --max-tasks-per-child=1000
//! cargo run --example worker -- --autoscale=10,3
//! ```
//!
//! With `--pool=prefork` (or `processes`) tasks run in child processes of this
//! program: `serve_if_child` below is where each child, having registered the same
//! tasks, serves the worker instead of going on with `main`. `--pool=gevent` is
//! accepted and selects the async pool (tokio tasks are what gevent emulates).
//!
//! It reads the guide's variables (`CELERY_BROKER_URL`, `CELERY_RESULT_BACKEND`,
//! `CELERY_WORKER_CONCURRENCY`, `CELERY_WORKER_PREFETCH_MULTIPLIER`, `CELERY_TASK_*`,
//! `CELERY_RESULT_*`, and with `--beat` the schedule's `AUTO_DEDUP_ENABLED`,
//! `DEDUP_INTERVAL_HOURS`, ...); flags override them. Memories live in Redis at
//! `MEMORY_STORE_URL` (default: the broker's server, database 0).
//!
//! It stops gracefully on SIGINT (Ctrl-C), SIGTERM, or a remote
//! `hippo-queue control shutdown`: no new tasks are fetched, reserved ones go back to
//! their queues, and running ones get `--shutdown-grace` to finish.

mod common;

use std::time::Duration;

use clap::Parser;
use common::BoxError;
use hippo_memory_tasks::schedule::ScheduleSettings;
use hippo_memory_tasks::tasks::{MemoryServices, register_all};
use hippo_queue::Pool;
use hippo_queue::beat::Beat;
use hippo_queue::config::redact_url;

/// A hippo-queue worker running HippocampAI's memory tasks.
#[derive(Debug, Parser)]
#[command(name = "worker", version)]
struct Args {
    /// Queues to consume, comma-separated (default: memory_ops, default, background,
    /// scheduled).
    #[arg(short = 'Q', long, value_delimiter = ',')]
    queues: Vec<String>,
    /// Tasks run at once (default: CELERY_WORKER_CONCURRENCY, else the CPU count).
    #[arg(short = 'c', long)]
    concurrency: Option<usize>,
    /// Execution pool: async (tokio tasks; also gevent), prefork (child processes;
    /// also processes), blocking (threads) or solo (one at a time).
    #[arg(short = 'P', long, default_value = "async")]
    pool: Pool,
    /// Concurrency follows the backlog between MAX and MIN slots ("10,3").
    #[arg(long, value_name = "MAX,MIN", value_parser = autoscale)]
    autoscale: Option<(usize, usize)>,
    /// Messages reserved per slot (default: CELERY_WORKER_PREFETCH_MULTIPLIER, else 4).
    #[arg(long)]
    prefetch_multiplier: Option<usize>,
    /// Log level or filter: error, warn, info, debug, trace (default: RUST_LOG, else
    /// info).
    #[arg(short = 'l', long)]
    loglevel: Option<String>,
    /// Also run the beat scheduler in this process (for development).
    #[arg(short = 'B', long)]
    beat: bool,
    /// Worker name, unique among live workers (default: worker-<id>@<host>).
    #[arg(short = 'n', long)]
    hostname: Option<String>,
    /// Seconds running tasks get to finish when the worker stops.
    #[arg(long, default_value_t = 30.0)]
    shutdown_grace: f64,
    /// Tasks a prefork child runs before it is replaced
    /// (CELERY_WORKER_MAX_TASKS_PER_CHILD); other pools have no children.
    #[arg(long)]
    max_tasks_per_child: Option<u32>,
    /// Resident memory, in KiB, above which a prefork child is replaced after its task.
    #[arg(long)]
    max_memory_per_child: Option<u64>,
    /// Publish task events (Celery's -E), for `hippo-queue events`.
    #[arg(short = 'E', long)]
    task_events: bool,
    /// The embedding model new vectors are made with (env EMBEDDING_MODEL).
    #[arg(long, env = "EMBEDDING_MODEL", default_value = common::DEFAULT_MODEL)]
    embedding_model: String,
    /// Milliseconds every embedding call waits, as a remote model would (to watch a
    /// migration's progress or cancel it).
    #[arg(long, env = "EMBEDDING_LATENCY_MS", default_value_t = 0)]
    embedding_latency_ms: u64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(e) = common::init_logging(args.loglevel.as_deref()) {
        eprintln!("worker: {e}");
        std::process::exit(2);
    }
    if let Err(e) = run(args).await {
        eprintln!("worker: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    let ep = common::endpoints("worker")?;
    // The schedule is read before connecting, so that a bad variable fails fast.
    let schedule = if args.beat {
        Some(ScheduleSettings::from_env()?.entries()?)
    } else {
        None
    };
    let (app, redis) = common::connect_queue(&ep).await?;
    let store = common::connect_store(&ep).await?;
    let embedders = common::embedders(
        &args.embedding_model,
        Duration::from_millis(args.embedding_latency_ms),
    )?;
    let services = MemoryServices::new(store).embedders(embedders);
    register_all(&app, &services);
    // A prefork child serves the worker from here and never returns.
    hippo_queue::worker::serve_if_child(&app).await;

    let per_child = args
        .max_tasks_per_child
        .or(ep.config.worker_max_tasks_per_child);
    if per_child.is_some() && args.pool != Pool::Process {
        tracing::info!(
            "max tasks per child has no effect on the {:?} pool (no child processes)",
            args.pool
        );
    }
    let grace = Duration::try_from_secs_f64(args.shutdown_grace)
        .map_err(|_| format!("--shutdown-grace {} is not a duration", args.shutdown_grace))?;
    let mut builder = app
        .worker()
        .pool(args.pool)
        .shutdown_grace(grace)
        .task_events(args.task_events);
    if !args.queues.is_empty() {
        builder = builder.queues(args.queues.iter().map(|q| q.trim().to_string()));
    }
    if let Some(n) = args.concurrency {
        builder = builder.concurrency(n);
    }
    if let Some(n) = per_child {
        builder = builder.max_tasks_per_child(u64::from(n));
    }
    if let Some(kib) = args.max_memory_per_child {
        builder = builder.max_memory_per_child(kib);
    }
    if let Some((max, min)) = args.autoscale {
        builder = builder.autoscale(max, min);
    }
    if let Some(n) = args.prefetch_multiplier {
        builder = builder.prefetch_multiplier(n);
    }
    if let Some(name) = &args.hostname {
        builder = builder.name(name);
    }
    let worker = builder.start().await?;
    let signal = common::shutdown_signal();
    tracing::info!(
        worker = worker.id(),
        queues = %worker.consumers().join(","),
        concurrency = worker.concurrency(),
        pool = ?args.pool,
        broker = %redact_url(&ep.broker_url),
        store = %redact_url(&ep.store_url),
        embedding_model = %args.embedding_model,
        "worker ready; tasks: {}",
        app.registered().join(", ")
    );

    let beat = match schedule {
        Some(entries) => {
            let names: Vec<String> = entries.iter().map(|e| e.name().to_string()).collect();
            let beat = Beat::builder(app.clone(), redis.clone())
                .entries(entries)
                .build()?;
            tracing::info!(beat = beat.id(), entries = %names.join(", "), "beat started in the worker");
            Some(beat.spawn())
        }
        None => None,
    };

    let reason = tokio::select! {
        signal = signal => signal,
        _ = worker.stopped() => "a remote shutdown command",
    };
    tracing::info!(worker = worker.id(), "stopping on {reason}");
    if let Some(beat) = beat {
        beat.shutdown().await;
    }
    let report = worker.shutdown().await;
    tracing::info!(
        released = report.released,
        aborted = report.aborted,
        "worker stopped"
    );
    Ok(())
}

/// `--autoscale=MAX,MIN`, as Celery writes it.
fn autoscale(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("{s:?} is not MAX,MIN (two slot counts, MAX at least MIN: 10,3)");
    let (max, min) = s.split_once(',').ok_or_else(bad)?;
    let max: usize = max.trim().parse().map_err(|_| bad())?;
    let min: usize = min.trim().parse().map_err(|_| bad())?;
    if min == 0 || max < min {
        return Err(bad());
    }
    Ok((max, min))
}
