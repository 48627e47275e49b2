//! The beat scheduler: the guide's `celery -A src.hippocampai.celery_app beat`.
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

use std::time::Duration;

use clap::Parser;
use hippo_memory_tasks::schedule::ScheduleSettings;
use hippo_memory_tasks::tasks::{HealthCheckArgs, HealthCheckTask};
use hippo_queue_core::beat::{Beat, Entry, Schedule};
use hippo_queue_core::config::redact_url;

use crate::{BoxError, setup};

const EXAMPLES: &str = "\
Examples:
  $ hippo-memory beat --loglevel=info
  $ hippo-memory beat --dry-run                     # list the entries, send nothing

Environment:
  CELERY_BROKER_URL             the broker (required): redis://localhost:6379/1
  AUTO_DEDUP_ENABLED            deduplication of every user [default: true]
  DEDUP_INTERVAL_HOURS          ... every N hours [default: 24]
  AUTO_CONSOLIDATION_ENABLED    consolidation of every user [default: false]
  CONSOLIDATION_INTERVAL_HOURS  ... every N hours [default: 168]
  EXPIRATION_INTERVAL_HOURS     expiration of memories past their date [default: 1]";

/// Start the beat periodic task scheduler of HippocampAI's memory tasks.
#[derive(Debug, Parser)]
#[command(name = "beat", version, after_help = EXAMPLES)]
pub struct BeatArgs {
    /// Log level or filter: error, warn, info, debug, trace [env: RUST_LOG] [default:
    /// info]
    #[arg(short = 'l', long, value_name = "LEVEL", help_heading = "Beat Options")]
    pub loglevel: Option<String>,
    /// How often the health check runs: a number with a unit, s, m or h (30s, 5m, 1h)
    #[arg(
        long,
        value_name = "INTERVAL",
        default_value = "5m",
        value_parser = parse_interval,
        help_heading = "Beat Options"
    )]
    pub health_interval: Duration,
    /// This scheduler's id (default: `beat-<id>@<host>`).
    #[arg(
        long,
        help = "This scheduler's id [default: beat-<id>@<host>]",
        help_heading = "Beat Options"
    )]
    pub id: Option<String>,
    /// Print the entries and exit without sending anything
    #[arg(long, help_heading = "Beat Options")]
    pub dry_run: bool,
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
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        _ => return Err(format!("{s:?}: the unit must be s, m or h")),
    }
    .ok_or_else(|| format!("{s:?}: too long"))?;
    if secs == 0 {
        return Err("the interval must be at least 1s".into());
    }
    Ok(Duration::from_secs(secs))
}

/// The guide's entries, with the health check at the chosen interval.
pub fn entries(health_interval: Duration) -> Result<Vec<Entry>, BoxError> {
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

/// Runs the scheduler until a signal stops it (with `--dry-run`, lists the entries).
pub async fn run(args: BeatArgs) -> Result<(), BoxError> {
    let entries = entries(args.health_interval)?;
    if args.dry_run {
        for e in &entries {
            println!("{:<20} {:<22} {}", e.name(), e.task(), e.schedule());
        }
        return Ok(());
    }
    let ep = setup::endpoints("beat scheduler")?;
    let (app, redis) = setup::connect_queue(&ep).await?;
    let mut builder = Beat::builder(app, redis).entries(entries);
    if let Some(id) = &args.id {
        builder = builder.id(id);
    }
    let beat = builder.build()?;
    let signal = setup::shutdown_signal();
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::parse_interval;

    #[test]
    fn intervals_have_a_unit_or_are_seconds() {
        assert_eq!(parse_interval("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_interval("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_interval("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_interval("7"), Ok(Duration::from_secs(7)));
        for bad in ["0s", "5d", "m", "99999999999999999999h"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }
}
