//! `hippo-memory worker|beat|api`: HippocampAI's background-task programs, as
//! `celery -A src.hippocampai.celery_app worker|beat` and the guide's API server.

use clap::{Parser, Subcommand};
use hippo_memory::api::{self, ApiArgs};
use hippo_memory::beat::{self, BeatArgs};
use hippo_memory::run_and_exit;
use hippo_memory::worker::{self, WorkerArgs};

const AFTER: &str = "\
Each program reads the guide's variables; start with:
  export CELERY_BROKER_URL=redis://localhost:6379/1
  export CELERY_RESULT_BACKEND=redis://localhost:6379/2

Inspect and control the running workers with `hippo-queue` (crate hippo-queue-cli).";

/// HippocampAI's background memory tasks on hippo-queue.
#[derive(Debug, Parser)]
#[command(name = "hippo-memory", version, after_help = AFTER, subcommand_required = true)]
struct Cli {
    #[command(subcommand)]
    program: Program,
}

#[derive(Debug, Subcommand)]
enum Program {
    /// Start worker instance (celery worker).
    Worker(WorkerArgs),
    /// Start the beat periodic task scheduler (celery beat).
    Beat(BeatArgs),
    /// Serve the HTTP API (the guide's FastAPI app).
    Api(ApiArgs),
}

#[tokio::main]
async fn main() {
    match Cli::parse().program {
        Program::Worker(args) => {
            let level = args.loglevel.clone();
            run_and_exit("hippo-memory worker", level.as_deref(), worker::run(args)).await
        }
        Program::Beat(args) => {
            let level = args.loglevel.clone();
            run_and_exit("hippo-memory beat", level.as_deref(), beat::run(args)).await
        }
        Program::Api(args) => {
            let level = args.loglevel.clone();
            run_and_exit("hippo-memory api", level.as_deref(), api::run(args)).await
        }
    }
}
