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

mod common;

use std::time::Duration;

use clap::Parser;
use common::BoxError;
use hippo_memory_tasks::schedule::ScheduleSettings;
use hippo_memory_tasks::tasks::{HealthCheckArgs, HealthCheckTask};
use hippo_queue::beat::{Beat, Entry, Schedule};
use hippo_queue::config::redact_url;

/// The beat scheduler of HippocampAI's periodic memory tasks.
#[derive(Debug, Parser)]
#[command(name = "beat", version)]
struct Args {
    /// Log level or filter: error, warn, info, debug, trace (default: RUST_LOG, else
    /// info).
    #[arg(short = 'l', long)]
    loglevel: Option<String>,
    /// How often the health check runs: a number with a unit, `s`, `m` or `h` (`30s`,
    /// `5m`, `1h`).
    #[arg(long, default_value = "5m", value_parser = parse_interval)]
    health_interval: Duration,
    /// This scheduler's id (default: beat-<id>@<host>).
    #[arg(long)]
    id: Option<String>,
    /// Print the entries and exit without sending anything.
    #[arg(long)]
    dry_run: bool,
}

/// `30s`, `5m`, `1h` (a plain number is seconds).
fn parse_interval(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number with a unit, such as 30s, 5m or 1h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?}: the unit must be s, m or h")),
    };
    if secs == 0 {
        return Err("the interval must be at least 1s".into());
    }
    Ok(Duration::from_secs(secs))
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(e) = common::init_logging(args.loglevel.as_deref()) {
        eprintln!("beat: {e}");
        std::process::exit(2);
    }
    if let Err(e) = run(args).await {
        eprintln!("beat: {e}");
        std::process::exit(1);
    }
}

/// The guide's entries, with the health check at the chosen interval.
fn entries(health_interval: Duration) -> Result<Vec<Entry>, BoxError> {
    let mut entries = ScheduleSettings::from_env()?.entries()?;
    entries.retain(|e| e.name() != "health-check");
    entries.push(
        Entry::new::<HealthCheckTask>(
            "health-check",
            HealthCheckArgs { user_id: None },
            Schedule::every(health_interval),
        )?
        .expires(health_interval),
    );
    Ok(entries)
}

async fn run(args: Args) -> Result<(), BoxError> {
    let entries = entries(args.health_interval)?;
    if args.dry_run {
        for e in &entries {
            println!("{:<20} {:<22} {}", e.name(), e.task(), e.schedule());
        }
        return Ok(());
    }
    let ep = common::endpoints("beat scheduler")?;
    let (app, redis) = common::connect_queue(&ep).await?;
    let mut builder = Beat::builder(app, redis).entries(entries);
    if let Some(id) = &args.id {
        builder = builder.id(id);
    }
    let beat = builder.build()?;
    let signal = common::shutdown_signal();
    for e in beat.entries() {
        tracing::info!(entry = e.name(), task = e.task(), schedule = %e.schedule(), "scheduled");
    }
    tracing::info!(beat = beat.id(), broker = %redact_url(&ep.broker_url), "beat started");
    let handle = beat.spawn();
    let signal = signal.await;
    tracing::info!(beat = beat.id(), "stopping on {signal}");
    handle.shutdown().await;
    tracing::info!(beat = beat.id(), "beat stopped");
    Ok(())
}
