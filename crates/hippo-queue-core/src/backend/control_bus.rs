//! The control bus: requests broadcast to workers and their replies (Celery's
//! `inspect` and `control` wire format), with the checks every value passes before it
//! is sent or applied. The client is [`crate::control::Control`].

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::BackendError;
use super::rate_limits::{MAX_RATE_PER_SEC, RateLimit};
use crate::events::WorkerInfo;

/// How long replies wait for their collector before they expire.
pub const REPLY_TTL: Duration = Duration::from_secs(60);
/// The most concurrency slots a worker may be given by remote control (`pool_grow`,
/// `autoscale`).
pub const MAX_CONCURRENCY: usize = 10_000;

/// The longest time limit remote control accepts, in seconds (one year).
pub const MAX_TIME_LIMIT_SECS: f64 = 365.0 * 24.0 * 3600.0;
/// Why a control command was refused, by the client before sending it or by a worker
/// before applying it. Each message names the value and what would be accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidCommand {
    /// A time limit is not a finite number of seconds in range.
    #[error(
        "time_limit: the {which} limit must be a number of seconds from 0 (no limit) to \
         {MAX_TIME_LIMIT_SECS} (got {value})"
    )]
    TimeLimitOutOfRange {
        /// `"soft"` or `"hard"`.
        which: &'static str,
        /// The value refused.
        value: f64,
    },
    /// The hard time limit is not above the soft one.
    #[error("time_limit: the hard limit ({hard}s) must be above the soft limit ({soft}s)")]
    HardNotAboveSoft {
        /// Soft limit, seconds.
        soft: f64,
        /// Hard limit, seconds.
        hard: f64,
    },
    /// The pool would grow beyond [`MAX_CONCURRENCY`] slots.
    #[error(
        "{command}: a worker may have at most {MAX_CONCURRENCY} concurrency slots \
         (asked for {requested})"
    )]
    TooManySlots {
        /// The command's name.
        command: &'static str,
        /// The slot count asked for.
        requested: usize,
    },
    /// Autoscale bounds out of order.
    #[error("autoscale: needs 1 <= min <= max (got max {max}, min {min})")]
    AutoscaleBounds {
        /// Upper bound.
        max: usize,
        /// Lower bound.
        min: usize,
    },
    /// A rate limit that is not N/s, N/m or N/h, or finer than [`MAX_RATE_PER_SEC`].
    #[error(
        "rate_limit: expected N/s, N/m or N/h with 1 <= N and at most {MAX_RATE_PER_SEC} \
         starts a second (got {count} per {per_secs}s)"
    )]
    RateOutOfRange {
        /// Starts per period.
        count: u32,
        /// The period, seconds.
        per_secs: u32,
    },
}

/// One time limit of a `TimeLimit` command: `0` is "no limit", anything else must be a
/// finite number of seconds up to [`MAX_TIME_LIMIT_SECS`].
fn time_limit(which: &'static str, value: Option<f64>) -> Result<Option<Duration>, InvalidCommand> {
    match value {
        None => Ok(None),
        Some(0.0) => Ok(None),
        Some(v) if v.is_finite() && v > 0.0 && v <= MAX_TIME_LIMIT_SECS => {
            Ok(Some(Duration::from_secs_f64(v)))
        }
        Some(value) => Err(InvalidCommand::TimeLimitOutOfRange { which, value }),
    }
}

/// The soft and hard limits a `TimeLimit` command sets (`None`: no limit), or why
/// they are refused.
pub fn time_limits(
    soft: Option<f64>,
    hard: Option<f64>,
) -> Result<(Option<Duration>, Option<Duration>), InvalidCommand> {
    let (soft, hard) = (time_limit("soft", soft)?, time_limit("hard", hard)?);
    if let (Some(s), Some(h)) = (soft, hard)
        && h <= s
    {
        return Err(InvalidCommand::HardNotAboveSoft {
            soft: s.as_secs_f64(),
            hard: h.as_secs_f64(),
        });
    }
    Ok((soft, hard))
}

/// The concurrency after growing `current` slots by `n`, or why it is refused.
pub fn grown_concurrency(current: usize, n: usize) -> Result<usize, InvalidCommand> {
    match current.checked_add(n) {
        Some(total) if total <= MAX_CONCURRENCY => Ok(total),
        _ => Err(InvalidCommand::TooManySlots {
            command: "pool_grow",
            requested: current.saturating_add(n),
        }),
    }
}

/// A command for workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Command {
    /// Answer `Pong`.
    Ping,
    /// Tasks running now.
    Active,
    /// Messages reserved (prefetched) and not started.
    Reserved,
    /// Delayed messages (countdown, eta, retry) of the consumed queues.
    Scheduled,
    /// Revocations in force.
    Revoked,
    /// Registered task names.
    Registered,
    /// Counters, pool, concurrency, prefetch, uptime, memory use.
    Stats,
    /// Queues consumed.
    ActiveQueues,
    /// What the worker knows of these task ids.
    QueryTask(Vec<String>),
    /// Graceful shutdown.
    Shutdown,
    /// Let running tasks finish before starting new ones (recycles the executor).
    PoolRestart,
    /// Add concurrency slots.
    PoolGrow(usize),
    /// Remove concurrency slots (at least one stays).
    PoolShrink(usize),
    /// Concurrency follows the backlog between `min` and `max`.
    Autoscale {
        /// Upper bound.
        max: usize,
        /// Lower bound.
        min: usize,
    },
    /// Start consuming a queue.
    AddConsumer(String),
    /// Stop consuming a queue.
    CancelConsumer(String),
    /// Set (or clear, with `None`) a task's rate limit, enforced across all workers.
    RateLimit {
        /// Task name.
        task: String,
        /// The limit.
        rate: Option<RateLimit>,
    },
    /// Set a task's soft and hard time limits (seconds) on the workers.
    TimeLimit {
        /// Task name.
        task: String,
        /// Soft limit.
        soft: Option<f64>,
        /// Hard limit.
        hard: Option<f64>,
    },
    /// Revoke a task (durably) and, with `terminate`, abort it where it runs.
    Revoke {
        /// Task id.
        id: String,
        /// Abort it if running.
        terminate: bool,
    },
}

impl Command {
    /// The Celery name of the command.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Ping => "ping",
            Command::Active => "active",
            Command::Reserved => "reserved",
            Command::Scheduled => "scheduled",
            Command::Revoked => "revoked",
            Command::Registered => "registered",
            Command::Stats => "stats",
            Command::ActiveQueues => "active_queues",
            Command::QueryTask(_) => "query_task",
            Command::Shutdown => "shutdown",
            Command::PoolRestart => "pool_restart",
            Command::PoolGrow(_) => "pool_grow",
            Command::PoolShrink(_) => "pool_shrink",
            Command::Autoscale { .. } => "autoscale",
            Command::AddConsumer(_) => "add_consumer",
            Command::CancelConsumer(_) => "cancel_consumer",
            Command::RateLimit { .. } => "rate_limit",
            Command::TimeLimit { .. } => "time_limit",
            Command::Revoke { .. } => "revoke",
        }
    }
}

impl Command {
    /// Checks the command's values: finite time limits in range, a pool no larger
    /// than [`MAX_CONCURRENCY`], ordered autoscale bounds, a rate limit the backends
    /// can enforce. Workers check again before applying a command, so a client that
    /// skips this check gets an error reply, never a crashed control loop.
    pub fn validate(&self) -> Result<(), InvalidCommand> {
        match self {
            Command::TimeLimit { soft, hard, .. } => time_limits(*soft, *hard).map(|_| ()),
            Command::PoolGrow(n) => grown_concurrency(0, *n).map(|_| ()),
            Command::Autoscale { max, min } => {
                if *min == 0 || max < min {
                    Err(InvalidCommand::AutoscaleBounds {
                        max: *max,
                        min: *min,
                    })
                } else if *max > MAX_CONCURRENCY {
                    Err(InvalidCommand::TooManySlots {
                        command: "autoscale",
                        requested: *max,
                    })
                } else {
                    Ok(())
                }
            }
            Command::RateLimit {
                rate: Some(rate), ..
            } => rate.check(),
            _ => Ok(()),
        }
    }
}

/// A broadcast request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Request {
    /// Request id; replies are collected under it.
    pub id: String,
    /// The workers addressed (`None`: all).
    pub destination: Option<Vec<String>>,
    /// The command.
    pub command: Command,
    /// When it was sent, ms since the epoch.
    pub sent_at: u64,
}

impl Request {
    /// Whether `worker` is addressed.
    pub fn is_for(&self, worker: &str) -> bool {
        self.destination
            .as_ref()
            .is_none_or(|d| d.iter().any(|w| w == worker))
    }
}

/// A task as seen by a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskInfo {
    /// Task id.
    pub id: String,
    /// Task name (empty when the message could not be read).
    pub name: String,
    /// Queue.
    pub queue: String,
    /// Priority.
    pub priority: u8,
    /// Start time (active) or due time (scheduled), ms since the epoch.
    pub time: Option<u64>,
}

/// A worker's statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// Registry record: counters, pool, concurrency, prefetch, start time.
    pub info: WorkerInfo,
    /// Seconds since start.
    pub uptime: f64,
    /// Resident memory in bytes (0 where it cannot be read).
    pub memory_rss: u64,
    /// Tasks that succeeded, by name.
    pub succeeded_by_task: BTreeMap<String, u64>,
    /// Tasks that failed, by name.
    pub failed_by_task: BTreeMap<String, u64>,
    /// Autoscale bounds, when autoscaling.
    pub autoscale: Option<(usize, usize)>,
}

/// A queue consumed by a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QueueInfo {
    /// Name.
    pub name: String,
    /// Bound routing key.
    pub routing_key: String,
    /// Queue priority.
    pub priority: u8,
}

/// What a worker answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ReplyBody {
    /// To `Ping`.
    Pong,
    /// Task lists (`Active`, `Reserved`, `Scheduled`).
    Tasks(Vec<TaskInfo>),
    /// Id or name lists (`Revoked`, `Registered`).
    Names(Vec<String>),
    /// To `Stats`.
    Stats(Box<Stats>),
    /// To `ActiveQueues`.
    Queues(Vec<QueueInfo>),
    /// To `QueryTask`: id -> "active", "reserved" or "unknown".
    TaskStates(BTreeMap<String, String>),
    /// A control command was applied.
    Ok(String),
    /// A command failed.
    Error(String),
}

/// One worker's reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Reply {
    /// The request answered.
    pub request_id: String,
    /// The worker.
    pub worker: String,
    /// The answer.
    pub body: ReplyBody,
}

/// Carries control requests to every worker and their replies back.
#[async_trait]
pub trait ControlBus: Send + Sync + 'static {
    /// Sends a control request to every worker.
    async fn broadcast(&self, request: &Request) -> Result<(), BackendError>;

    /// A live feed of control requests.
    async fn subscribe_control(&self) -> Result<mpsc::Receiver<Request>, BackendError>;

    /// Answers a request; the reply expires after `ttl` if nobody collects it.
    async fn reply(&self, reply: &Reply, ttl: Duration) -> Result<(), BackendError>;

    /// Gathers replies to a request until `expected` arrived or `timeout` passed, then
    /// deletes what is left.
    async fn collect_replies(
        &self,
        request_id: &str,
        expected: usize,
        timeout: Duration,
    ) -> Result<Vec<Reply>, BackendError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_limits_in_range_are_durations() {
        assert_eq!(
            time_limits(Some(1.5), Some(3.0)),
            Ok((
                Some(Duration::from_millis(1500)),
                Some(Duration::from_secs(3))
            ))
        );
        assert_eq!(
            time_limits(Some(0.0), None),
            Ok((None, None)),
            "0 is no limit"
        );
        assert_eq!(
            time_limits(None, Some(MAX_TIME_LIMIT_SECS)),
            Ok((None, Some(Duration::from_secs(365 * 24 * 3600))))
        );
    }

    #[test]
    fn time_limits_out_of_range_are_refused() {
        for (soft, hard, which) in [
            (Some(f64::INFINITY), None, "soft"),
            (None, Some(f64::INFINITY), "hard"),
            (Some(f64::NEG_INFINITY), None, "soft"),
            (Some(f64::NAN), None, "soft"),
            (None, Some(-1.0), "hard"),
            (None, Some(1e30), "hard"),
            (None, Some(MAX_TIME_LIMIT_SECS * 2.0), "hard"),
        ] {
            let err = time_limits(soft, hard).expect_err("refused");
            assert!(
                matches!(err, InvalidCommand::TimeLimitOutOfRange { which: w, .. } if w == which),
                "{err}"
            );
            assert!(err.to_string().contains(which), "{err}");
        }
    }

    #[test]
    fn hard_limit_must_be_above_soft() {
        let err = time_limits(Some(2.0), Some(1.0)).expect_err("refused");
        assert_eq!(
            err,
            InvalidCommand::HardNotAboveSoft {
                soft: 2.0,
                hard: 1.0
            }
        );
        assert!(time_limits(Some(2.0), Some(2.0)).is_err());
    }

    #[test]
    fn pool_growth_is_bounded() {
        assert_eq!(grown_concurrency(4, 2), Ok(6));
        assert_eq!(grown_concurrency(0, MAX_CONCURRENCY), Ok(MAX_CONCURRENCY));
        assert!(grown_concurrency(1, MAX_CONCURRENCY).is_err());
        let err = grown_concurrency(8, usize::MAX).expect_err("refused");
        assert!(
            matches!(err, InvalidCommand::TooManySlots { requested, .. } if requested == usize::MAX),
            "{err}"
        );
    }

    #[test]
    fn commands_validate() {
        let ok = [
            Command::Ping,
            Command::PoolGrow(3),
            Command::PoolShrink(usize::MAX),
            Command::Autoscale { max: 10, min: 1 },
            Command::RateLimit {
                task: "t".into(),
                rate: Some(RateLimit {
                    count: 1000,
                    per_secs: 1,
                }),
            },
            Command::RateLimit {
                task: "t".into(),
                rate: None,
            },
            Command::TimeLimit {
                task: "t".into(),
                soft: Some(10.0),
                hard: Some(20.0),
            },
        ];
        for c in ok {
            assert_eq!(c.validate(), Ok(()), "{c:?}");
        }
        let bad = [
            Command::PoolGrow(usize::MAX),
            Command::Autoscale { max: 1, min: 3 },
            Command::Autoscale { max: 3, min: 0 },
            Command::Autoscale {
                max: usize::MAX,
                min: 1,
            },
            Command::RateLimit {
                task: "t".into(),
                rate: Some(RateLimit {
                    count: 5,
                    per_secs: 0,
                }),
            },
            Command::RateLimit {
                task: "t".into(),
                rate: Some(RateLimit {
                    count: u32::MAX,
                    per_secs: 1,
                }),
            },
            Command::RateLimit {
                task: "t".into(),
                rate: Some(RateLimit {
                    count: 0,
                    per_secs: 60,
                }),
            },
            Command::TimeLimit {
                task: "t".into(),
                soft: Some(10.0),
                hard: Some(f64::INFINITY),
            },
        ];
        for c in bad {
            let err = c.validate().expect_err("refused");
            assert!(err.to_string().starts_with(c.name()), "{c:?}: {err}");
        }
    }

    #[test]
    fn destinations() {
        let r = Request {
            id: "r".into(),
            destination: Some(vec!["a".into()]),
            command: Command::Ping,
            sent_at: 0,
        };
        assert!(r.is_for("a") && !r.is_for("b"));
        assert!(
            Request {
                destination: None,
                ..r
            }
            .is_for("b")
        );
    }
}
