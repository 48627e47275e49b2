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
//!
//! The program is `hippo_memory::worker` (crates/hippo-memory/src/worker.rs), the
//! same code as the installable `hippo-memory worker` (`cargo install --path
//! crates/hippo-memory`): read it to see how a worker registers the tasks, serves as a
//! prefork child, and starts.

use clap::Parser;
use hippo_memory::worker::{self, WorkerArgs};

#[tokio::main]
async fn main() {
    let args = WorkerArgs::parse();
    let level = args.loglevel.clone();
    hippo_memory::run_and_exit("worker", level.as_deref(), worker::run(args)).await
}
