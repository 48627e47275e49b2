//! Command-line arguments.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Inspect and control hippo-queue workers, queues, results and events.
#[derive(Debug, Parser)]
#[command(name = "hippo-queue", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub conn: Conn,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Cmd,
}

/// Where the broker and results are.
#[derive(Debug, Args)]
pub struct Conn {
    /// Broker URL.
    #[arg(
        long,
        global = true,
        env = "CELERY_BROKER_URL",
        default_value = "redis://127.0.0.1:6379/1"
    )]
    pub broker: String,
    /// Result backend URL (default: the broker's).
    #[arg(long, global = true, env = "CELERY_RESULT_BACKEND")]
    pub results: Option<String>,
    /// Key prefix.
    #[arg(long, global = true, env = "HIPPO_QUEUE_PREFIX", default_value = "hq")]
    pub prefix: String,
}

/// Which workers, and how long to wait for their replies.
#[derive(Debug, Args)]
pub struct Target {
    /// Only these workers (comma-separated ids).
    #[arg(short, long, global = true, value_delimiter = ',')]
    pub destination: Option<Vec<String>>,
    /// How long to wait for replies, in seconds.
    #[arg(short, long, global = true, default_value = "1.0", value_parser = seconds)]
    pub timeout: Duration,
}

/// The longest wait the command line accepts, in seconds (one day).
const MAX_WAIT_SECS: f64 = 86_400.0;

pub(crate) fn seconds(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= MAX_WAIT_SECS => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!(
            "{s:?} is not a number of seconds above 0 and at most {MAX_WAIT_SECS}"
        )),
    }
}

/// A time limit: 0 (no limit) or a finite number of seconds up to a year.
fn limit_seconds(s: &str) -> Result<f64, String> {
    let max = hippo_queue_core::control::MAX_TIME_LIMIT_SECS;
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=max).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of seconds from 0 (no limit) to {max}"
        )),
    }
}

/// A concurrency slot count: 1 to the most a worker may have.
fn slots(s: &str) -> Result<usize, String> {
    let max = hippo_queue_core::control::MAX_CONCURRENCY;
    match s.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a number of slots from 1 to {max}")),
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Ask workers about themselves.
    Inspect {
        #[command(subcommand)]
        what: Inspect,
        #[command(flatten)]
        target: Target,
    },
    /// Change running workers.
    Control {
        #[command(subcommand)]
        what: Control,
        #[command(flatten)]
        target: Target,
    },
    /// Queue lengths: waiting by priority, delayed, reserved, dead-letter.
    Queues {
        /// Queues to show (default: the guide's four queues).
        names: Vec<String>,
    },
    /// Remove every waiting and delayed message of a queue, or of every queue (asks
    /// for confirmation unless --force).
    Purge(crate::purge::PurgeArgs),
    /// Send a task by name (Celery's `call`): prints its id.
    Call(crate::call::CallArgs),
    /// The workers online, one line each (Celery's `status`).
    Status {
        /// How long to wait for replies, in seconds.
        #[arg(short, long, default_value = "1.0", value_parser = seconds)]
        timeout: Duration,
    },
    /// A task's state, result and traceback.
    Result {
        /// Task id.
        task_id: String,
        /// Wait up to this many seconds for the task to finish.
        #[arg(long, value_parser = seconds)]
        wait: Option<Duration>,
    },
    /// Revoke a task (durably); with --terminate, abort it where it runs.
    Revoke {
        /// Task id.
        task_id: String,
        /// Abort it if running.
        #[arg(long)]
        terminate: bool,
    },
    /// Print task and worker events.
    Events {
        /// Keep printing new events.
        #[arg(short, long)]
        follow: bool,
        /// How many past events to print first.
        #[arg(short = 'n', long, default_value = "20")]
        last: usize,
    },
    /// Live workers from the registry.
    Workers,
    /// The periodic-task scheduler.
    Beat {
        #[command(subcommand)]
        what: Beat,
    },
    /// Check the deployment: Redis persistence and eviction policy, worker clocks,
    /// backlogs without consumers, routes, the beat leader, result expiry. One line
    /// per finding; exit code 0 all fine, 1 warnings, 2 errors.
    Doctor,
    /// Serve the monitor: Flower's HTTP API on :5555 (see docs/monitor.md).
    Monitor(crate::monitor::MonitorArgs),
    /// Dead-lettered messages of a queue; `dead-letters requeue QUEUE --id ID|--all`
    /// sends them back.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    DeadLetters {
        /// The queue.
        #[arg(required = true)]
        queue: Option<String>,
        /// How many.
        #[arg(short = 'n', long, default_value = "20")]
        limit: usize,
        #[command(subcommand)]
        action: Option<crate::dead_letters::DeadLetterAction>,
    },
}

/// Beat commands.
#[derive(Debug, Subcommand)]
pub enum Beat {
    /// Entries with their last and next runs, and the current leader.
    Status,
}

/// Inspect commands.
#[derive(Debug, Subcommand)]
pub enum Inspect {
    /// Are the workers alive?
    Ping,
    /// Tasks running now.
    Active,
    /// Messages reserved (prefetched), not started.
    Reserved,
    /// Delayed messages (countdown, eta, retry) of the workers' queues.
    Scheduled,
    /// Revocations in force.
    Revoked,
    /// Registered task names.
    Registered,
    /// Counters, pool, concurrency, prefetch, uptime, memory.
    Stats,
    /// Queues consumed.
    #[command(alias = "active_queues")]
    ActiveQueues,
    /// What workers know of these task ids.
    #[command(alias = "query_task")]
    QueryTask {
        /// Task ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

/// Control commands.
#[derive(Debug, Subcommand)]
pub enum Control {
    /// Graceful shutdown.
    Shutdown,
    /// Let running tasks finish before new ones start.
    #[command(alias = "pool_restart")]
    PoolRestart,
    /// Add concurrency slots.
    #[command(alias = "pool_grow")]
    PoolGrow {
        /// How many.
        #[arg(default_value = "1", value_parser = slots)]
        n: usize,
    },
    /// Remove concurrency slots.
    #[command(alias = "pool_shrink")]
    PoolShrink {
        /// How many.
        #[arg(default_value = "1")]
        n: usize,
    },
    /// Concurrency follows the backlog between MIN and MAX.
    Autoscale {
        /// Upper bound.
        #[arg(value_parser = slots)]
        max: usize,
        /// Lower bound.
        #[arg(value_parser = slots)]
        min: usize,
    },
    /// Start consuming a queue.
    #[command(alias = "add_consumer")]
    AddConsumer {
        /// The queue.
        queue: String,
    },
    /// Stop consuming a queue.
    #[command(alias = "cancel_consumer")]
    CancelConsumer {
        /// The queue.
        queue: String,
    },
    /// Set a task's rate limit across all workers (`10/s`, `100/m`, `1000/h`; `0` removes it).
    #[command(alias = "rate_limit")]
    RateLimit {
        /// Task name.
        task: String,
        /// The limit.
        rate: String,
    },
    /// Set a task's soft and hard time limits, in seconds (0 removes one).
    #[command(alias = "time_limit")]
    TimeLimit {
        /// Task name.
        task: String,
        /// Soft limit.
        #[arg(value_parser = limit_seconds)]
        soft: f64,
        /// Hard limit.
        #[arg(value_parser = limit_seconds)]
        hard: f64,
    },
    /// Revoke a task; with --terminate, abort it where it runs.
    Revoke {
        /// Task id.
        task_id: String,
        /// Abort it if running.
        #[arg(long)]
        terminate: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("hippo-queue").chain(args.iter().copied()))
    }

    #[test]
    fn time_limits_refuse_absurd_values() {
        for (soft, hard) in [
            ("10", "inf"),
            ("NaN", "10"),
            ("-1", "10"),
            ("10", "1e30"),
            ("10", "-inf"),
        ] {
            let err = parse(&["control", "time-limit", "t", "--", soft, hard])
                .expect_err(&format!("{soft} {hard} refused"));
            assert!(err.to_string().contains("seconds"), "{err}");
        }
        let ok = parse(&["control", "time-limit", "t", "10", "20"]).expect("accepted");
        assert!(matches!(
            ok.command,
            Cmd::Control {
                what: Control::TimeLimit { soft, hard, .. },
                ..
            } if soft == 10.0 && hard == 20.0
        ));
        parse(&["control", "time-limit", "t", "0", "0"]).expect("0 removes the limits");
    }

    #[test]
    fn pool_sizes_are_bounded() {
        for args in [
            &["control", "pool-grow", "18446744073709551615"][..],
            &["control", "pool-grow", "100000"],
            &["control", "autoscale", "18446744073709551615", "1"],
        ] {
            let err = parse(args).expect_err("refused");
            assert!(err.to_string().contains("slots"), "{args:?}: {err}");
        }
        parse(&["control", "pool-grow", "4"]).expect("accepted");
        parse(&["control", "autoscale", "10", "3"]).expect("accepted");
    }

    #[test]
    fn timeouts_refuse_huge_values() {
        for t in ["1e30", "inf", "-1", "0"] {
            let arg = format!("--timeout={t}");
            let err = parse(&["inspect", &arg, "ping"]).expect_err(t);
            assert!(err.to_string().contains("seconds"), "{t}: {err}");
        }
        for w in ["1e30", "NaN"] {
            assert!(parse(&["result", "id", "--wait", w]).is_err(), "{w}");
        }
    }
}
