//! The beat scheduler with HippocampAI's periodic tasks, on Redis: the guide's
//! `celery -A src.hippocampai.celery_app beat`.
//!
//! ```sh
//! export CELERY_BROKER_URL=redis://localhost:6379/1
//! export CELERY_RESULT_BACKEND=redis://localhost:6379/2
//! cargo run --example beat -- --loglevel=info
//! ```
//!
//! The entries come from the guide's variables:
//!
//! | variable | default | entry |
//! | --- | --- | --- |
//! | `AUTO_DEDUP_ENABLED`, `DEDUP_INTERVAL_HOURS` | `true`, `24` | `auto-deduplication`: deduplication of every user |
//! | `AUTO_CONSOLIDATION_ENABLED`, `CONSOLIDATION_INTERVAL_HOURS` | `false`, `168` | `auto-consolidation`: consolidation of every user |
//! | `EXPIRATION_INTERVAL_HOURS` | `1` | `expire-memories`: expiration |
//! | `--health-interval` | 5 minutes | `health-check`: the health check |
//!
//! Any number of beat processes may run: they share a leader lease in Redis and each
//! tick is sent at most once. A worker runs what beat sends. It stops on SIGINT or
//! SIGTERM, giving the lease up so that another scheduler takes over at once.
//!
//! The program is `hippo_memory::beat` (crates/hippo-memory/src/beat.rs), the same
//! code as the installable `hippo-memory beat`.

use clap::Parser;
use hippo_memory::beat::{self, BeatArgs};

#[tokio::main]
async fn main() {
    let args = BeatArgs::parse();
    let level = args.loglevel.clone();
    hippo_memory::run_and_exit("beat", level.as_deref(), beat::run(args)).await
}
