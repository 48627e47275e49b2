//! The worker: consumes queues, runs tasks under their limits, records results.
//!
//! A worker is a set of tokio tasks on the runtime that starts it, so it embeds in a
//! host application with no extra process and stops when the host asks:
//!
//! ```
//! # use hippo_queue_core::{App, Task, TaskContext, TaskError};
//! # struct Ping;
//! # impl Task for Ping {
//! #     const NAME: &'static str = "ping";
//! #     type Args = (); type Output = String;
//! #     async fn run(&self, _: &TaskContext, _: ()) -> Result<String, TaskError> { Ok("pong".into()) }
//! # }
//! use std::time::Duration;
//! use hippo_queue_core::worker::Pool;
//!
//! # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::Error> {
//! let app = App::in_memory();
//! app.register(Ping);
//! let worker = app
//!     .worker()
//!     .queues(["default"])
//!     .concurrency(8)
//!     .prefetch_multiplier(4)
//!     .pool(Pool::Async)
//!     .shutdown_grace(Duration::from_secs(30))
//!     .start()
//!     .await?;
//! assert_eq!(app.delay::<Ping>(()).await?.get(Duration::from_secs(5)).await?, "pong");
//! let report = worker.shutdown().await;
//! assert_eq!(report.aborted, 0);
//! # Ok(()) }
//! ```
//!
//! ## What happens to a message
//! 1. The fetch loop (`fetch.rs`) leases messages while the prefetch window
//!    (`concurrency * prefetch_multiplier`) has room, visiting queues in
//!    [`fetch_order`](crate::routing::fetch_order). A message stays in the window
//!    until its settlement is written (`window.rs`), so results that cannot be
//!    written hold fetching back.
//! 2. Each one is decoded. Garbage is dead-lettered and recorded as FAILURE; an expired
//!    or revoked task is recorded as REVOKED and acked; an unknown task name is
//!    FAILURE and dead-lettered. The worker keeps running in every case.
//! 3. When a concurrency slot is free, the task is marked started in a batched write
//!    (with STARTED stored when `track_started` is on); if its lease was lost it is
//!    skipped. A message with both `acks_late` and `reject_on_worker_lost` needs no start
//!    mark (recovery requeues it either way). A redelivered message whose result is
//!    already final is acked without running again.
//! 4. It runs on the [`Pool`]: the soft limit signals the context, the hard limit or a
//!    `terminate` revocation aborts it, a panic becomes FAILURE.
//! 5. What the run leads to is decided by a pure function (`outcome.rs`); the result
//!    is stored, then the message is settled (ack, retry through the broker's delayed
//!    set, dead-letter or requeue), batched with other tasks' writes
//!    (`bookkeeper.rs`). A write that can never succeed (an output too large to
//!    store) becomes a FAILURE record naming the reason; a broker that is away is
//!    waited for.
//!
//! ## Staying alive, and finding the lost
//! - The heartbeat (`heartbeat.rs`) runs on its own: nothing else shares its loop.
//!   Deadlines are set on the broker's clock. A worker whose heartbeats have not
//!   landed for `worker_lost_after` less one interval, or that learns it was
//!   recovered, stops its running tasks and starts nothing until a beat lands
//!   (others may recover them: `acks_late` tasks are requeued, others end FAILURE
//!   `WorkerLostError`, both under their fencing token).
//! - A second loop (`maintenance`) updates the registry, recovers dead workers'
//!   messages (never within `worker_lost_after` of one of its own failed heartbeats),
//!   and refreshes revocations and rate limits.
//! - The fetch loop compares, from time to time, the leases the broker has for this
//!   worker with the messages it holds, and hands back those it never received (a
//!   fetch whose reply was lost).
//! - A worker name belongs to one live worker: starting a second one with the name of
//!   a live worker fails; the messages of a dead one with the same name are
//!   recovered first.

mod bookkeeper;
mod control;
mod dispatch;
mod execute;
mod fetch;
mod heartbeat;
mod outcome;
mod pool;
mod process;
mod state;
mod window;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use pool::{Pool, abandoned_threads};
pub use process::{ChildCommand, ChildError, is_pool_child, serve_if_child};

/// How long a shutdown may spend writing: handing reserved messages back (before the
/// grace period), then, once the tasks have stopped, flushing results and
/// acknowledgements, the worker-offline event and leaving the registry together.
pub const WRITE_OUT: Duration = Duration::from_secs(10);

use crate::defaults;
use crate::events::{Event, EventKind};
use crate::{App, Error};
use bookkeeper::{Bookkeeper, Books};
use state::{Handles, Liveness, RunningTasks, Stats};
pub(crate) use state::{Running, Shared};
use window::Window;

/// Worker settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub concurrency: usize,
    pub prefetch_multiplier: usize,
    pub pool: Pool,
    pub heartbeat_interval: Duration,
    pub worker_lost_after: Duration,
    pub shutdown_grace: Duration,
    pub max_deliveries: u32,
    pub fetch_wait: Duration,
    pub fairness_interval: u64,
    pub task_events: bool,
    pub max_abandoned_threads: usize,
    pub max_tasks_per_child: Option<u64>,
    pub max_memory_per_child_kib: Option<u64>,
    pub child_command: Option<ChildCommand>,
    pub child_kill_grace: Duration,
    pub autoscale: Option<(usize, usize)>,
}

/// Builds and starts a worker.
pub struct WorkerBuilder {
    app: App,
    name: Option<String>,
    queues: Option<Vec<String>>,
    settings: Settings,
}

impl WorkerBuilder {
    pub(crate) fn new(app: App) -> Self {
        let cfg = app.config();
        let settings = Settings {
            concurrency: cfg.worker_concurrency.max(1),
            prefetch_multiplier: cfg.worker_prefetch_multiplier.max(1),
            pool: Pool::Async,
            heartbeat_interval: defaults::HEARTBEAT_INTERVAL,
            worker_lost_after: defaults::WORKER_LOST_AFTER,
            shutdown_grace: defaults::SHUTDOWN_GRACE,
            max_deliveries: defaults::MAX_DELIVERIES,
            fetch_wait: defaults::FETCH_WAIT,
            fairness_interval: defaults::FAIRNESS_INTERVAL,
            task_events: false,
            max_abandoned_threads: defaults::MAX_ABANDONED_THREADS,
            max_tasks_per_child: cfg.worker_max_tasks_per_child.map(|n| n as u64),
            max_memory_per_child_kib: None,
            child_command: None,
            child_kill_grace: defaults::CHILD_KILL_GRACE,
            autoscale: None,
        };
        WorkerBuilder {
            app,
            name: None,
            queues: None,
            settings,
        }
    }

    /// The worker's name (default `worker-<uuid>@<host>`); it must be unique among
    /// live workers.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The queues to consume (default: every queue of the app's router).
    pub fn queues<I, S>(mut self, queues: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.queues = Some(queues.into_iter().map(Into::into).collect());
        self
    }

    /// Tasks run at once.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.settings.concurrency = n.max(1);
        self
    }

    /// Messages reserved per slot: the worker holds up to
    /// `concurrency * prefetch_multiplier` messages.
    ///
    /// # Default
    /// The configuration's `worker_prefetch_multiplier`
    /// ([`defaults::PREFETCH_MULTIPLIER`], 4).
    pub fn prefetch_multiplier(mut self, n: usize) -> Self {
        self.settings.prefetch_multiplier = n.max(1);
        self
    }

    /// The execution pool.
    pub fn pool(mut self, pool: Pool) -> Self {
        self.settings.pool = pool;
        self
    }

    /// How often the worker proves it is alive.
    ///
    /// # Default
    /// [`defaults::HEARTBEAT_INTERVAL`] (2 s).
    pub fn heartbeat_interval(mut self, d: Duration) -> Self {
        self.settings.heartbeat_interval = d;
        self
    }

    /// After how long without a heartbeat a worker is dead and its messages are
    /// recovered (must exceed the heartbeat interval).
    ///
    /// # Default
    /// [`defaults::WORKER_LOST_AFTER`] (10 s).
    pub fn worker_lost_after(mut self, d: Duration) -> Self {
        self.settings.worker_lost_after = d;
        self
    }

    /// How long a graceful shutdown waits for running tasks.
    ///
    /// # Default
    /// [`defaults::SHUTDOWN_GRACE`] (30 s).
    pub fn shutdown_grace(mut self, d: Duration) -> Self {
        self.settings.shutdown_grace = d;
        self
    }

    /// Deliveries after which a message that keeps losing its worker is dead-lettered.
    ///
    /// # Default
    /// [`defaults::MAX_DELIVERIES`] (5).
    pub fn max_deliveries(mut self, n: u32) -> Self {
        self.settings.max_deliveries = n.max(1);
        self
    }

    /// How long one fetch waits for a message before looking again.
    ///
    /// # Default
    /// [`defaults::FETCH_WAIT`] (1 s).
    pub fn fetch_wait(mut self, d: Duration) -> Self {
        self.settings.fetch_wait = d;
        self
    }

    /// Every `n`-th fetch starts at a lower-priority queue (0 disables).
    ///
    /// # Default
    /// [`defaults::FAIRNESS_INTERVAL`] (8).
    pub fn fairness_interval(mut self, n: u64) -> Self {
        self.settings.fairness_interval = n;
        self
    }

    /// Publishes task events (received, started, succeeded, failed, retried, revoked,
    /// rejected) to the event log (default off: one more write per event, as Celery's
    /// `-E`). Worker events (online, heartbeat, offline) are always published.
    pub fn task_events(mut self, on: bool) -> Self {
        self.settings.task_events = on;
        self
    }

    /// Tasks a [`Pool::Process`] child runs before it is replaced (Celery's
    /// `max_tasks_per_child`; 0 removes the limit). Other pools have no children.
    ///
    /// # Default
    /// The configuration's `worker_max_tasks_per_child` (no limit when unset).
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.settings.max_tasks_per_child = (n > 0).then_some(n);
        self
    }

    /// Resident memory, in KiB as Celery's `max_memory_per_child`, above which a
    /// [`Pool::Process`] child is replaced after its task (0 removes the limit; read
    /// from `/proc`, so Linux only).
    ///
    /// # Default
    /// No limit.
    pub fn max_memory_per_child(mut self, kib: u64) -> Self {
        self.settings.max_memory_per_child_kib = (kib > 0).then_some(kib);
        self
    }

    /// The program a [`Pool::Process`] runs as its children; it must register the
    /// same tasks and call [`serve_if_child`].
    ///
    /// # Default
    /// This program, with the arguments it was started with.
    pub fn child_command(mut self, command: ChildCommand) -> Self {
        self.settings.child_command = Some(command);
        self
    }

    /// How long a [`Pool::Process`] child stopped at its hard limit (or terminated)
    /// has between SIGTERM and SIGKILL.
    ///
    /// # Default
    /// [`defaults::CHILD_KILL_GRACE`] (2 s).
    pub fn child_kill_grace(mut self, d: Duration) -> Self {
        self.settings.child_kill_grace = d;
        self
    }

    /// Concurrency follows the backlog between `max` and `min` slots (Celery's
    /// `--autoscale=MAX,MIN`; the `autoscale` control command changes it later).
    ///
    /// # Default
    /// Off: concurrency stays where it is set.
    pub fn autoscale(mut self, max: usize, min: usize) -> Self {
        self.settings.autoscale = Some((max, min));
        self
    }

    /// Threads of [`Pool::Blocking`] that may still run tasks given up at their hard
    /// limit before the pool refuses tasks (FAILURE `PoolExhausted`, naming the
    /// cause), so that they cannot starve the runtime's blocking threads.
    ///
    /// # Default
    /// [`defaults::MAX_ABANDONED_THREADS`] (64).
    pub fn max_abandoned_threads(mut self, n: usize) -> Self {
        self.settings.max_abandoned_threads = n;
        self
    }

    /// Starts the worker on the current tokio runtime.
    ///
    /// In a child of a process pool (see [`serve_if_child`]) this serves the parent
    /// and exits the process instead.
    pub async fn start(self) -> Result<WorkerHandle, Error> {
        serve_if_child(&self.app).await;
        let s = &self.settings;
        if s.worker_lost_after <= s.heartbeat_interval {
            return Err(Error::InvalidOptions(format!(
                "worker_lost_after ({:?}) must exceed heartbeat_interval ({:?})",
                s.worker_lost_after, s.heartbeat_interval
            )));
        }
        let queues = self.queues.unwrap_or_else(|| {
            self.app
                .router()
                .queues()
                .iter()
                .map(|q| q.name.clone())
                .collect()
        });
        for q in &queues {
            crate::routing::validate_queue_name(q)?;
        }
        if let Some((max, min)) = s.autoscale {
            crate::control::Command::Autoscale { max, min }
                .validate()
                .map_err(|e| Error::InvalidOptions(e.to_string()))?;
        }
        let id = self.name.unwrap_or_else(|| {
            format!(
                "worker-{}@{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12],
                crate::message::hostname()
            )
        });
        let process = match s.pool {
            Pool::Process => {
                let children = process::ProcessPool::new(process::ProcessSettings {
                    command: s.child_command.clone(),
                    rules: process::recycle::Rules {
                        max_tasks: s.max_tasks_per_child,
                        max_memory_kib: s.max_memory_per_child_kib,
                    },
                    kill_grace: s.child_kill_grace,
                    start_timeout: defaults::CHILD_START_TIMEOUT,
                })
                .map_err(|e| Error::InvalidOptions(e.to_string()))?;
                // One child at once, so that a program that cannot serve is named
                // before the worker takes a message; the rest as slots need them.
                children
                    .prestart(1)
                    .await
                    .map_err(|e| Error::InvalidOptions(e.to_string()))?;
                let children = Arc::new(children);
                // The other slots' children start in the background.
                let more = children.clone();
                let rest = s.concurrency.saturating_sub(1);
                tokio::spawn(async move {
                    if let Err(e) = more.prestart(rest).await {
                        tracing::warn!(error = %e, "pool children not started ahead; each slot starts its own");
                    }
                });
                Some(children)
            }
            _ => None,
        };
        let broker = self.app.broker().clone();
        let incarnation = uuid::Uuid::new_v4().simple().to_string();
        heartbeat::claim_name(&self.app, &id, &incarnation, s).await?;
        let revocations = broker.subscribe_revocations().await?;
        // The cursor first: a revocation made during the full read is read again,
        // never missed.
        let (_, revocation_cursor) = broker.revocations_after(None, 0).await?;
        let revoked = broker.revocations().await?;
        let control_rx = broker.subscribe_control().await?;
        let rate_limits = broker.rate_limits().await?;

        let (books, books_rx) = Books::new();
        let kill = CancellationToken::new();
        let concurrency = match s.pool {
            Pool::Solo => 1,
            _ => s.concurrency,
        };
        let shared = Arc::new(Shared {
            process,
            app: self.app.clone(),
            id: id.clone(),
            incarnation,
            settings: Settings {
                concurrency,
                ..self.settings.clone()
            },
            queues: Mutex::new(queues),
            queues_changed: Notify::new(),
            running: Mutex::new(RunningTasks::default()),
            revoked: Mutex::new(revoked.into_iter().map(|r| (r.id.clone(), r)).collect()),
            revocation_cursor: Mutex::new(revocation_cursor),
            window: Arc::new(Window::default()),
            liveness: Liveness::default(),
            stop_fetch: CancellationToken::new(),
            kill: kill.clone(),
            books,
            permits: Arc::new(Semaphore::new(concurrency)),
            concurrency: AtomicUsize::new(concurrency),
            queued: AtomicUsize::new(0),
            reserved: Mutex::new(HashMap::new()),
            autoscale: Mutex::new(s.autoscale),
            time_limits: Mutex::new(HashMap::new()),
            rate_limits: Mutex::new(rate_limits.into_iter().collect()),
            by_task: Mutex::new(HashMap::new()),
            stats: Stats::default(),
            started_at: SystemTime::now(),
            tracker: TaskTracker::new(),
            handles: Mutex::new(None),
            stopped: CancellationToken::new(),
            report: Mutex::new(None),
        });
        let keeper = Bookkeeper {
            app: self.app.clone(),
            worker: id.clone(),
            kill: kill.clone(),
        };
        // Fetching never runs ahead of the window, so this channel never fills up
        // unless the window grew (then the fetcher waits, which is the point).
        let (dispatch_tx, dispatch_rx) = mpsc::channel(shared.window().max(1));
        let bookkeeper = tokio::spawn(keeper.run(books_rx));
        let fetcher = tokio::spawn(fetch::fetch_loop(shared.clone(), dispatch_tx));
        let dispatcher = tokio::spawn(dispatch::dispatch_loop(shared.clone(), dispatch_rx));
        let beat = tokio::spawn(heartbeat::heartbeat_loop(shared.clone()));
        let maintenance = tokio::spawn(heartbeat::maintenance_loop(shared.clone()));
        let listener = tokio::spawn(heartbeat::revocation_loop(shared.clone(), revocations));
        let controller = tokio::spawn(control::control_loop(shared.clone(), control_rx));
        let autoscaler = tokio::spawn(control::autoscale_loop(shared.clone()));
        *shared.handles.lock().unwrap_or_else(|p| p.into_inner()) = Some(Handles {
            fetcher,
            dispatcher,
            bookkeeper,
            background: vec![beat, maintenance, listener, controller, autoscaler],
        });
        let info = shared.info();
        let online = async {
            broker
                .register_worker(&info, shared.settings.worker_lost_after)
                .await?;
            broker
                .emit(&[Event::worker(EventKind::WorkerOnline, &info)])
                .await
        };
        if let Err(e) = online.await {
            // Nothing may keep running behind a start that failed.
            shared.kill();
            let _ = broker.unregister(&id, &shared.incarnation).await;
            return Err(e.into());
        }
        tracing::info!(worker = %id, concurrency, pool = ?shared.settings.pool, "worker started");
        Ok(WorkerHandle { shared })
    }
}

/// A snapshot of a worker's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Tasks that succeeded.
    pub succeeded: u64,
    /// Tasks that failed.
    pub failed: u64,
    /// Runs that ended in a retry.
    pub retried: u64,
    /// Tasks revoked, expired or terminated.
    pub revoked: u64,
    /// Tasks rejected or dead-lettered as unprocessable.
    pub rejected: u64,
    /// Messages reserved or running now.
    pub in_flight: u64,
}

/// A task running now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ActiveTask {
    /// Task id.
    pub id: String,
    /// Task name.
    pub name: String,
    /// Queue.
    pub queue: String,
    /// When it started.
    pub started_at: SystemTime,
}

/// What a graceful shutdown did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Reserved messages handed back unstarted.
    pub released: usize,
    /// Running tasks aborted when the grace period ran out.
    pub aborted: usize,
    /// Messages whose results or acknowledgements could not be written before the
    /// worker gave up (the backend was away for [`WRITE_OUT`] after the tasks
    /// stopped): they stay leased, and other workers recover them once this worker's
    /// heartbeat has expired.
    pub unwritten: usize,
}

/// A running worker. Dropping it leaves the worker running; call
/// [`WorkerHandle::shutdown`] to stop it.
pub struct WorkerHandle {
    shared: Arc<Shared>,
}

impl WorkerHandle {
    /// The worker's id.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// The queues consumed now.
    pub fn consumers(&self) -> Vec<String> {
        self.shared
            .queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Starts consuming another queue (Celery's `add_consumer`).
    pub fn add_consumer(&self, queue: &str) -> Result<(), Error> {
        crate::routing::validate_queue_name(queue)?;
        let mut qs = self.shared.queues.lock().unwrap_or_else(|p| p.into_inner());
        if !qs.iter().any(|q| q == queue) {
            qs.push(queue.to_string());
        }
        drop(qs);
        self.shared.queues_changed.notify_waiters();
        Ok(())
    }

    /// Stops consuming a queue (Celery's `cancel_consumer`); messages already reserved
    /// from it still run.
    pub fn cancel_consumer(&self, queue: &str) {
        self.shared
            .queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|q| q != queue);
        self.shared.queues_changed.notify_waiters();
    }

    /// The tasks running now.
    pub fn active(&self) -> Vec<ActiveTask> {
        self.shared
            .lock_running()
            .values()
            .map(|r| ActiveTask {
                id: r.delivery.id.clone(),
                name: r.name.clone(),
                queue: r.delivery.queue.clone(),
                started_at: r.started_at,
            })
            .collect()
    }

    /// The worker's counters.
    pub fn stats(&self) -> WorkerStats {
        let s = &self.shared.stats;
        WorkerStats {
            succeeded: s.succeeded.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            retried: s.retried.load(Ordering::Relaxed),
            revoked: s.revoked.load(Ordering::Relaxed),
            rejected: s.rejected.load(Ordering::Relaxed),
            in_flight: self.shared.window.len() as u64,
        }
    }

    /// When the worker started.
    pub fn started_at(&self) -> SystemTime {
        self.shared.started_at
    }

    /// Stops gracefully: no new messages are fetched, reserved unstarted messages are
    /// handed back to their queues, running tasks get the grace period to finish, then
    /// are aborted (requeued when `acks_late`, FAILURE otherwise), results are flushed
    /// and the worker leaves the registry. A remote `shutdown` command does the same.
    ///
    /// Writing is bounded by [`WRITE_OUT`] before the grace period (handing back) and
    /// again after it (flush, worker-offline event, leaving the registry), so a broker
    /// that is away delays the return by at most the grace plus twice that; what could
    /// not be written is counted in [`ShutdownReport::unwritten`] and left to
    /// recovery.
    pub async fn shutdown(self) -> ShutdownReport {
        let grace = self.shared.settings.shutdown_grace;
        self.shutdown_within(grace).await
    }

    /// [`WorkerHandle::shutdown`] with a chosen grace period.
    pub async fn shutdown_within(self, grace: Duration) -> ShutdownReport {
        self.shared.shutdown(grace).await
    }

    /// Completes when the worker has stopped (for example after a remote `shutdown`
    /// command). A host can `select!` on it next to its own shutdown signal.
    pub async fn stopped(&self) {
        self.shared.stopped.cancelled().await
    }

    /// Whether the worker has stopped.
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.is_cancelled()
    }

    /// Current concurrency (changed by `pool_grow`, `pool_shrink` and `autoscale`).
    pub fn concurrency(&self) -> usize {
        self.shared.concurrency.load(Ordering::Relaxed)
    }

    /// Stops the worker at once as if its process had died: nothing is acked, released
    /// or recorded, and heartbeats stop. Other workers recover its messages once its
    /// heartbeat expires. For crash tests.
    pub fn kill(self) {
        self.shared.kill();
    }
}
