//! Execution pools and the time-limit supervisor around one task run.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::TaskError;
use crate::registry::TaskFuture;

/// Where task futures run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Pool {
    /// Each task is a tokio task on the host runtime (the default: best for I/O-bound
    /// async tasks).
    #[default]
    Async,
    /// Each task runs on tokio's blocking thread pool, driven by `block_on`: for
    /// CPU-bound or synchronous code that would stall the runtime. A hard time limit
    /// stops waiting for the thread and frees the slot; the thread itself stops at the
    /// task's next `.await`.
    Blocking,
    /// One task at a time, whatever the concurrency: for debugging.
    Solo,
}

impl std::str::FromStr for Pool {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "async" | "tokio" => Ok(Pool::Async),
            "blocking" | "threads" => Ok(Pool::Blocking),
            "solo" => Ok(Pool::Solo),
            other => Err(format!(
                "unknown pool {other:?}: expected async, blocking or solo"
            )),
        }
    }
}

/// Why a running task was stopped from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// Revoked with `terminate`.
    Revoked,
    /// The worker's shutdown grace period ran out.
    Shutdown,
    /// The worker could not reach its broker for longer than its lease: other
    /// workers may already have recovered the message.
    ConnectionLost,
}

/// A running task's stop switch.
#[derive(Clone, Default)]
pub(crate) struct StopSwitch {
    token: CancellationToken,
    reason: Arc<OnceLock<StopReason>>,
}

impl StopSwitch {
    pub(crate) fn stop(&self, reason: StopReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }
}

/// How a run ended.
pub(crate) enum RunEnd {
    Finished(Result<Vec<u8>, TaskError>),
    Panicked(String),
    HardLimit(Duration),
    Stopped(StopReason),
    /// The worker was killed (crash simulation): nothing may be recorded.
    Killed,
}

/// Limits of one run.
pub(crate) struct Limits {
    pub soft: Option<Duration>,
    pub hard: Option<Duration>,
}

/// Runs a task future on `pool`, signalling the soft limit and enforcing the hard
/// limit, a terminate request and a worker kill.
pub(crate) async fn supervise(
    pool: Pool,
    fut: TaskFuture,
    limits: Limits,
    soft_signal: CancellationToken,
    stop: StopSwitch,
    kill: CancellationToken,
) -> RunEnd {
    let abort = CancellationToken::new();
    let guarded = {
        let abort = abort.clone();
        async move {
            tokio::select! {
                r = fut => Some(r),
                _ = abort.cancelled() => None,
            }
        }
    };
    let mut join = match pool {
        Pool::Async | Pool::Solo => tokio::spawn(guarded),
        Pool::Blocking => {
            let handle = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || handle.block_on(guarded))
        }
    };
    let started = Instant::now();
    let far = started + Duration::from_secs(100 * 365 * 24 * 3600);
    let soft_at = limits.soft.map_or(far, |d| started + d);
    let hard_at = limits.hard.map_or(far, |d| started + d);
    let mut soft_sent = false;
    let end = loop {
        tokio::select! {
            r = &mut join => {
                break match r {
                    Ok(Some(result)) => RunEnd::Finished(result),
                    Ok(None) => RunEnd::Killed,
                    Err(e) if e.is_panic() => RunEnd::Panicked(panic_message(e.into_panic())),
                    Err(_) => RunEnd::Killed,
                };
            }
            _ = tokio::time::sleep_until(soft_at), if !soft_sent && limits.soft.is_some() => {
                soft_sent = true;
                tracing::warn!(limit = ?limits.soft, "soft time limit exceeded");
                soft_signal.cancel();
            }
            _ = tokio::time::sleep_until(hard_at), if limits.hard.is_some() => {
                break RunEnd::HardLimit(limits.hard.unwrap_or_default());
            }
            _ = stop.token.cancelled() => {
                break RunEnd::Stopped(stop.reason.get().copied().unwrap_or(StopReason::Revoked));
            }
            _ = kill.cancelled() => break RunEnd::Killed,
        }
    };
    if !join.is_finished() {
        abort.cancel();
        join.abort();
    }
    end
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "task panicked".to_string()
    }
}
