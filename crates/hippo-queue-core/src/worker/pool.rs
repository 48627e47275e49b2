//! Execution pools and the time-limit supervisor around one task run.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
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
    /// synchronous code that would stall the runtime. A hard time limit stops waiting
    /// for the thread and frees the slot; the thread itself stops at the task's next
    /// `.await`, so code that never awaits keeps its thread. Once
    /// [`max_abandoned_threads`](crate::WorkerBuilder::max_abandoned_threads) threads
    /// are held that way, the pool refuses tasks (FAILURE `PoolExhausted`) rather than
    /// starve the runtime. Prefer [`Pool::Process`] for CPU-bound code.
    Blocking,
    /// One task at a time, whatever the concurrency: for debugging.
    Solo,
    /// Each task runs in a child process of the worker's program (Celery's
    /// `prefork`): the hard time limit kills the child, a crash takes only the child,
    /// and children are replaced after `max_tasks_per_child` tasks or above
    /// `max_memory_per_child`. The program must call
    /// [`serve_if_child`](crate::worker::serve_if_child) after registering its tasks.
    Process,
}

impl std::str::FromStr for Pool {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            // gevent and eventlet are Celery's cooperative pools; tokio tasks are
            // what they emulate.
            "async" | "tokio" | "gevent" | "eventlet" => Ok(Pool::Async),
            "blocking" | "threads" => Ok(Pool::Blocking),
            "solo" => Ok(Pool::Solo),
            "process" | "processes" | "prefork" => Ok(Pool::Process),
            other => Err(format!(
                "unknown pool {other:?}: expected async (or gevent), blocking (or threads), \
                 process (or prefork) or solo"
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

    /// Completes when the run must stop.
    pub(crate) async fn cancelled(&self) {
        self.token.cancelled().await
    }

    /// Why the run was stopped.
    pub(crate) fn reason(&self) -> StopReason {
        self.reason.get().copied().unwrap_or(StopReason::Revoked)
    }
}

/// When a run's soft and hard limits fall due.
pub(crate) struct Timers {
    pub soft_at: Instant,
    pub hard_at: Instant,
}

impl Timers {
    pub(crate) fn new(limits: &Limits) -> Self {
        let started = Instant::now();
        let far = started + Duration::from_secs(100 * 365 * 24 * 3600);
        Timers {
            soft_at: limits.soft.map_or(far, |d| started + d),
            hard_at: limits.hard.map_or(far, |d| started + d),
        }
    }
}

/// Blocking-pool threads still running a task the worker gave up on (hard limit,
/// terminate, shutdown), in this process.
static ABANDONED_THREADS: AtomicUsize = AtomicUsize::new(0);

/// The threads of the blocking pool still running a task the worker gave up on.
pub fn abandoned_threads() -> usize {
    ABANDONED_THREADS.load(Ordering::Acquire)
}

/// One blocking-pool thread: running, done, or given up on while running.
#[derive(Default)]
struct ThreadWatch(AtomicU8);

impl ThreadWatch {
    const RUNNING: u8 = 0;
    const DONE: u8 = 1;
    const ABANDONED: u8 = 2;

    /// The thread returned.
    fn done(&self) {
        if self.0.swap(Self::DONE, Ordering::AcqRel) == Self::ABANDONED {
            ABANDONED_THREADS.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// The worker stopped waiting for the thread.
    fn abandon(&self) {
        if self
            .0
            .compare_exchange(
                Self::RUNNING,
                Self::ABANDONED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            ABANDONED_THREADS.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// The error of a task the blocking pool refuses.
fn exhausted(abandoned: usize) -> TaskError {
    TaskError::new(
        crate::task::kinds::POOL_EXHAUSTED,
        format!(
            "the blocking pool refused the task: {abandoned} of its threads still run tasks \
             given up at their hard time limit (code that never awaits cannot be stopped on a \
             thread), and more would starve the runtime's blocking threads; run CPU-bound \
             tasks on Pool::Process, whose hard limit kills the child"
        ),
    )
}

/// How a run ended.
pub(crate) enum RunEnd {
    Finished(Result<Vec<u8>, TaskError>),
    Panicked(String),
    HardLimit(Duration),
    Stopped(StopReason),
    /// The process-pool child running the task died (the description names how).
    ChildLost(String),
    /// The worker was killed (crash simulation): nothing may be recorded.
    Killed,
}

/// Limits of one run.
pub(crate) struct Limits {
    pub soft: Option<Duration>,
    pub hard: Option<Duration>,
}

/// Runs a task future on `pool` (async, blocking or solo), signalling the soft limit
/// and enforcing the hard limit, a terminate request and a worker kill. The blocking
/// pool refuses the task once `max_abandoned` of its threads are held by tasks given
/// up on.
pub(crate) async fn supervise(
    pool: Pool,
    max_abandoned: usize,
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
    let watch = Arc::new(ThreadWatch::default());
    let mut join = match pool {
        Pool::Blocking => {
            let abandoned = abandoned_threads();
            if abandoned >= max_abandoned {
                tracing::error!(abandoned, "blocking pool exhausted; task refused");
                return RunEnd::Finished(Err(exhausted(abandoned)));
            }
            let handle = tokio::runtime::Handle::current();
            let watch = watch.clone();
            tokio::task::spawn_blocking(move || {
                let r = handle.block_on(guarded);
                watch.done();
                r
            })
        }
        // The process pool runs elsewhere (`process::ProcessPool::run`).
        Pool::Async | Pool::Solo | Pool::Process => tokio::spawn(guarded),
    };
    let Timers { soft_at, hard_at } = Timers::new(&limits);
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
                break RunEnd::Stopped(stop.reason());
            }
            _ = kill.cancelled() => break RunEnd::Killed,
        }
    };
    if !join.is_finished() {
        abort.cancel();
        join.abort();
        if pool == Pool::Blocking {
            watch.abandon();
        }
    }
    end
}

pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "task panicked".to_string()
    }
}
