//! The worker: the guide's `celery -A src.hippocampai.celery_app worker`.
//!
//! It consumes the guide's queues and runs HippocampAI's memory tasks. With
//! `--pool=prefork` (or `processes`) tasks run in child processes of this same
//! program: [`run`] registers the tasks, then calls
//! [`serve_if_child`](hippo_queue_core::worker::serve_if_child), where each child
//! serves the worker instead of going on. `--pool=gevent` is accepted and selects the
//! async pool (tokio tasks are what gevent emulates).
//!
//! It stops gracefully on SIGINT (Ctrl-C), SIGTERM, or a remote
//! `hippo-queue control shutdown`: no new tasks are fetched, reserved ones go back to
//! their queues, and running ones get `--shutdown-grace` to finish.

use std::time::Duration;

use clap::Parser;
use hippo_memory_tasks::schedule::ScheduleSettings;
use hippo_memory_tasks::tasks::{MemoryServices, register_all};
use hippo_queue_core::Pool;
use hippo_queue_core::beat::Beat;
use hippo_queue_core::config::redact_url;

use crate::{BoxError, models, setup};

const EXAMPLES: &str = "\
Examples:
  $ hippo-memory worker --loglevel=info --concurrency=4
  $ hippo-memory worker --queues=memory_ops,default --loglevel=info
  $ hippo-memory worker --pool=prefork --concurrency=4 --max-tasks-per-child=1000
  $ hippo-memory worker --autoscale=10,3
  $ hippo-memory worker --beat --loglevel=info      # worker + beat (development)

Environment:
  CELERY_BROKER_URL         the broker (required): redis://localhost:6379/1
  CELERY_RESULT_BACKEND     where results are kept (default: the broker)
  MEMORY_STORE_URL          the memory store (default: the broker's server, database 0)
  CELERY_TASK_*, CELERY_RESULT_*, CELERY_WORKER_*
                            the guide's queue settings; flags override them
  AUTO_DEDUP_ENABLED, DEDUP_INTERVAL_HOURS, AUTO_CONSOLIDATION_ENABLED,
  CONSOLIDATION_INTERVAL_HOURS, EXPIRATION_INTERVAL_HOURS
                            the schedule, with --beat";

/// Start a worker instance running HippocampAI's memory tasks.
#[derive(Debug, Parser)]
#[command(name = "worker", version, after_help = EXAMPLES)]
pub struct WorkerArgs {
    /// Log level or filter: error, warn, info, debug, trace [env: RUST_LOG] [default:
    /// info]
    #[arg(
        short = 'l',
        long,
        value_name = "LEVEL",
        help_heading = "Worker Options"
    )]
    pub loglevel: Option<String>,
    /// Worker name, unique among live workers (default: `worker-<id>@<host>`).
    #[arg(
        short = 'n',
        long,
        help = "Worker name, unique among live workers [default: worker-<id>@<host>]",
        help_heading = "Worker Options"
    )]
    pub hostname: Option<String>,
    /// Messages reserved per slot [env: CELERY_WORKER_PREFETCH_MULTIPLIER] [default: 4]
    #[arg(long, value_name = "N", help_heading = "Worker Options")]
    pub prefetch_multiplier: Option<usize>,
    /// Seconds running tasks get to finish when the worker stops
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 30.0,
        help_heading = "Worker Options"
    )]
    pub shutdown_grace: f64,

    /// Tasks run at once [env: CELERY_WORKER_CONCURRENCY] [default: the number of CPUs]
    #[arg(short = 'c', long, value_name = "N", help_heading = "Pool Options")]
    pub concurrency: Option<usize>,
    /// Execution pool: async (tokio tasks; also gevent), prefork (child processes; also
    /// processes), blocking (threads) or solo (one at a time)
    #[arg(
        short = 'P',
        long,
        value_name = "POOL",
        default_value = "async",
        help_heading = "Pool Options"
    )]
    pub pool: Pool,
    /// Publish task events, for `hippo-queue events`
    #[arg(short = 'E', long, help_heading = "Pool Options")]
    pub task_events: bool,
    /// Tasks a prefork child runs before it is replaced [env:
    /// CELERY_WORKER_MAX_TASKS_PER_CHILD] [default: no limit]
    #[arg(long, value_name = "N", help_heading = "Pool Options")]
    pub max_tasks_per_child: Option<u32>,
    /// Resident memory, in KiB, above which a prefork child is replaced after its task
    /// [default: no limit]
    #[arg(long, value_name = "KIB", help_heading = "Pool Options")]
    pub max_memory_per_child: Option<u64>,

    /// Queues to consume, comma-separated
    /// [default: memory_ops,default,background,scheduled]
    #[arg(
        short = 'Q',
        long,
        value_name = "QUEUES",
        value_delimiter = ',',
        help_heading = "Queue Options"
    )]
    pub queues: Vec<String>,

    /// Concurrency follows the backlog between MAX and MIN slots (10,3)
    #[arg(long, value_name = "MAX,MIN", value_parser = autoscale, help_heading = "Features")]
    pub autoscale: Option<(usize, usize)>,

    /// Also run the beat scheduler in this process (for development)
    #[arg(short = 'B', long, help_heading = "Embedded Beat Options")]
    pub beat: bool,

    /// The embedding model new vectors are made with
    #[arg(
        long,
        value_name = "MODEL",
        env = "EMBEDDING_MODEL",
        default_value = models::DEFAULT_MODEL,
        help_heading = "Memory Options"
    )]
    pub embedding_model: String,
    /// Milliseconds every embedding call waits, as a remote model would (to watch a
    /// migration's progress or cancel it)
    #[arg(
        long,
        value_name = "MS",
        env = "EMBEDDING_LATENCY_MS",
        default_value_t = 0,
        help_heading = "Memory Options"
    )]
    pub embedding_latency_ms: u64,
}

/// Runs the worker until a signal or a remote shutdown stops it.
pub async fn run(args: WorkerArgs) -> Result<(), BoxError> {
    let ep = setup::endpoints("worker")?;
    // The schedule is read before connecting, so that a bad variable fails fast.
    let schedule = if args.beat {
        Some(ScheduleSettings::from_env()?.entries()?)
    } else {
        None
    };
    let (app, redis) = setup::connect_queue(&ep).await?;
    let store = setup::connect_store(&ep).await?;
    let embedders = models::embedders(
        &args.embedding_model,
        Duration::from_millis(args.embedding_latency_ms),
    )?;
    let services = MemoryServices::new(store).embedders(embedders);
    register_all(&app, &services);
    // A prefork child serves the worker from here and never returns.
    hippo_queue_core::worker::serve_if_child(&app).await;

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
    let signal = setup::shutdown_signal();
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

#[cfg(test)]
mod tests {
    use super::autoscale;

    #[test]
    fn autoscale_reads_max_then_min() {
        assert_eq!(autoscale("10,3"), Ok((10, 3)));
        assert_eq!(autoscale(" 4 , 4 "), Ok((4, 4)));
        for bad in ["3,10", "10", "10,0", "a,b"] {
            assert!(autoscale(bad).is_err(), "{bad}");
        }
    }
}
