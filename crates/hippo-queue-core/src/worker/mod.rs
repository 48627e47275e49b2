//! The worker: consumes queues, runs tasks under their limits, records results.
//!
//! A worker is a set of tokio tasks on the runtime that starts it, so it embeds in a
//! host application with no extra process and stops when the host asks:
//!
//! ```
//! # use hippo_queue_core::{App, Task, TaskContext, TaskError};
//! # use async_trait::async_trait;
//! # struct Ping;
//! # #[async_trait]
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
//! 1. The fetch loop leases up to `concurrency * prefetch_multiplier` messages in one
//!    call, visiting queues in [`fetch_order`](crate::routing::fetch_order).
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
//! 5. Its result is stored, then its message is settled (ack, retry through the broker's
//!    delayed set, or dead-letter), batched with other tasks' writes.
//!
//! A heartbeat keeps the worker's leases alive and, on every beat, recovers the
//! messages of workers that stopped beating.

mod bookkeeper;
mod control;
mod pool;
mod runtime;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use pool::Pool;

use crate::backend::{Delivery, DeliveryRef, Revocation};
use crate::control::RateLimit;
use crate::events::{Event, EventKind, WorkerInfo};
use crate::{App, Error};
use bookkeeper::{Bookkeeper, Books};
use pool::{StopReason, StopSwitch};

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
            heartbeat_interval: Duration::from_secs(2),
            worker_lost_after: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
            max_deliveries: 5,
            fetch_wait: Duration::from_secs(1),
            fairness_interval: 8,
            task_events: false,
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
    pub fn prefetch_multiplier(mut self, n: usize) -> Self {
        self.settings.prefetch_multiplier = n.max(1);
        self
    }

    /// The execution pool.
    pub fn pool(mut self, pool: Pool) -> Self {
        self.settings.pool = pool;
        self
    }

    /// How often the worker proves it is alive (default 2 s).
    pub fn heartbeat_interval(mut self, d: Duration) -> Self {
        self.settings.heartbeat_interval = d;
        self
    }

    /// After how long without a heartbeat a worker is dead and its messages are
    /// recovered (default 10 s; must exceed the heartbeat interval).
    pub fn worker_lost_after(mut self, d: Duration) -> Self {
        self.settings.worker_lost_after = d;
        self
    }

    /// How long a graceful shutdown waits for running tasks (default 30 s).
    pub fn shutdown_grace(mut self, d: Duration) -> Self {
        self.settings.shutdown_grace = d;
        self
    }

    /// Deliveries after which a message that keeps losing its worker is dead-lettered
    /// (default 5).
    pub fn max_deliveries(mut self, n: u32) -> Self {
        self.settings.max_deliveries = n.max(1);
        self
    }

    /// How long one fetch waits for a message before looking again (default 1 s).
    pub fn fetch_wait(mut self, d: Duration) -> Self {
        self.settings.fetch_wait = d;
        self
    }

    /// Every `n`-th fetch starts at a lower-priority queue (default 8; 0 disables).
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

    /// Starts the worker on the current tokio runtime.
    pub async fn start(self) -> Result<WorkerHandle, Error> {
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
        let id = self.name.unwrap_or_else(|| {
            format!(
                "worker-{}@{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12],
                crate::message::hostname()
            )
        });
        let broker = self.app.broker().clone();
        broker.heartbeat(&id, s.worker_lost_after).await?;
        let revocations = broker.subscribe_revocations().await?;
        let revoked = broker.revocations().await?;
        let control_rx = broker.subscribe_control().await?;
        let rate_limits = broker.rate_limits().await?;

        let (tx, rx) = mpsc::unbounded_channel();
        let kill = CancellationToken::new();
        let concurrency = match s.pool {
            Pool::Solo => 1,
            _ => s.concurrency,
        };
        let shared = Arc::new(Shared {
            app: self.app.clone(),
            id: id.clone(),
            settings: Settings {
                concurrency,
                ..self.settings.clone()
            },
            queues: Mutex::new(queues),
            queues_changed: Notify::new(),
            running: Mutex::new(HashMap::new()),
            revoked: Mutex::new(revoked.into_iter().map(|r| (r.id.clone(), r)).collect()),
            in_flight: AtomicUsize::new(0),
            slot_freed: Notify::new(),
            stop_fetch: CancellationToken::new(),
            kill: kill.clone(),
            books: Books(Arc::new(tx)),
            permits: Arc::new(Semaphore::new(concurrency)),
            concurrency: AtomicUsize::new(concurrency),
            queued: AtomicUsize::new(0),
            reserved: Mutex::new(HashMap::new()),
            autoscale: Mutex::new(None),
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
        let (dispatch_tx, dispatch_rx) = mpsc::unbounded_channel();
        let bookkeeper = tokio::spawn(keeper.run(rx));
        let fetcher = tokio::spawn(runtime::fetch_loop(shared.clone(), dispatch_tx));
        let dispatcher = tokio::spawn(runtime::dispatch_loop(shared.clone(), dispatch_rx));
        let heartbeat = tokio::spawn(runtime::heartbeat_loop(shared.clone()));
        let listener = tokio::spawn(runtime::revocation_loop(shared.clone(), revocations));
        let controller = tokio::spawn(control::control_loop(shared.clone(), control_rx));
        let autoscaler = tokio::spawn(control::autoscale_loop(shared.clone()));
        *shared.handles.lock().unwrap_or_else(|p| p.into_inner()) = Some(Handles {
            fetcher,
            dispatcher,
            bookkeeper,
            background: vec![heartbeat, listener, controller, autoscaler],
        });
        let info = shared.info();
        broker
            .register_worker(&info, shared.settings.worker_lost_after)
            .await?;
        broker
            .emit(&[Event::worker(EventKind::WorkerOnline, &info)])
            .await?;
        tracing::info!(worker = %id, concurrency, pool = ?shared.settings.pool, "worker started");
        Ok(WorkerHandle { shared })
    }
}

/// State shared by a worker's tasks.
pub(crate) struct Shared {
    pub app: App,
    pub id: String,
    pub settings: Settings,
    pub queues: Mutex<Vec<String>>,
    pub queues_changed: Notify,
    pub running: Mutex<HashMap<String, Running>>,
    pub revoked: Mutex<HashMap<String, Revocation>>,
    pub in_flight: AtomicUsize,
    pub slot_freed: Notify,
    pub stop_fetch: CancellationToken,
    pub kill: CancellationToken,
    pub books: Books,
    pub permits: Arc<Semaphore>,
    /// Current number of concurrency slots.
    pub concurrency: AtomicUsize,
    /// Messages handed to the dispatcher and not started yet.
    pub queued: AtomicUsize,
    /// Reserved, not yet started messages, by token.
    pub reserved: Mutex<HashMap<u64, Arc<Delivery>>>,
    /// Autoscale bounds (max, min).
    pub autoscale: Mutex<Option<(usize, usize)>>,
    /// Per-task time limit overrides (soft, hard).
    pub time_limits: Mutex<HashMap<String, TimeLimits>>,
    /// Rate limits by task name.
    pub rate_limits: Mutex<HashMap<String, RateLimit>>,
    /// (succeeded, failed) by task name.
    pub by_task: Mutex<HashMap<String, (u64, u64)>>,
    pub stats: Stats,
    pub started_at: SystemTime,
    pub tracker: TaskTracker,
    handles: Mutex<Option<Handles>>,
    /// Cancelled once the worker has stopped.
    pub stopped: CancellationToken,
    report: Mutex<Option<ShutdownReport>>,
}

/// A task's (soft, hard) time limit override.
pub(crate) type TimeLimits = (Option<Duration>, Option<Duration>);

/// The worker's own tasks.
struct Handles {
    fetcher: JoinHandle<()>,
    dispatcher: JoinHandle<usize>,
    bookkeeper: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// The prefetch window: `concurrency * prefetch_multiplier`.
    pub(crate) fn window(&self) -> usize {
        self.concurrency.load(Ordering::Relaxed) * self.settings.prefetch_multiplier
    }

    /// Adds concurrency slots.
    pub(crate) fn grow(&self, n: usize) {
        if n > 0 {
            self.concurrency.fetch_add(n, Ordering::AcqRel);
            self.permits.add_permits(n);
            self.slot_freed.notify_one();
        }
    }

    /// Removes up to `n` concurrency slots, keeping at least one; a slot in use is
    /// removed when its task finishes. Returns how many were removed.
    pub(crate) fn shrink(&self, n: usize) -> usize {
        let mut removed = 0;
        while removed < n {
            let cur = self.concurrency.load(Ordering::Acquire);
            if cur <= 1 {
                break;
            }
            if self
                .concurrency
                .compare_exchange(cur, cur - 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                removed += 1;
            }
        }
        if removed > 0 {
            let permits = self.permits.clone();
            let kill = self.kill.clone();
            tokio::spawn(async move {
                tokio::select! {
                    p = permits.acquire_many_owned(removed as u32) => {
                        if let Ok(p) = p {
                            p.forget();
                        }
                    }
                    _ = kill.cancelled() => {}
                }
            });
        }
        removed
    }

    /// Graceful shutdown (see [`WorkerHandle::shutdown`]); runs once, later calls wait
    /// for the first one and return its report.
    pub(crate) async fn shutdown(self: &Arc<Self>, grace: Duration) -> ShutdownReport {
        let Some(h) = lock(&self.handles).take() else {
            self.stopped.cancelled().await;
            return lock(&self.report).unwrap_or_default();
        };
        tracing::info!(worker = %self.id, "worker shutting down");
        self.stop_fetch.cancel();
        let _ = h.fetcher.await;
        let released = h.dispatcher.await.unwrap_or(0);
        self.tracker.close();
        let mut aborted = 0;
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            aborted = self.stop_all(StopReason::Shutdown);
            self.tracker.wait().await;
        }
        self.books.flush().await;
        for b in &h.background {
            b.abort();
        }
        let offline = Event::worker(EventKind::WorkerOffline, &self.info());
        if let Err(e) = self.app.broker().emit(&[offline]).await {
            tracing::warn!(worker = %self.id, error = %e, "could not publish worker-offline");
        }
        self.kill.cancel();
        let _ = h.bookkeeper.await;
        match self.app.broker().unregister(&self.id).await {
            Ok(left) if !left.is_empty() => {
                tracing::warn!(worker = %self.id, count = left.len(), "messages still leased at exit were recovered")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(worker = %self.id, error = %e, "could not unregister; leases will be recovered after the heartbeat expires")
            }
        }
        tracing::info!(worker = %self.id, released, aborted, "worker stopped");
        let report = ShutdownReport { released, aborted };
        *lock(&self.report) = Some(report);
        self.stopped.cancel();
        report
    }

    /// Stops everything at once, recording nothing (crash simulation).
    pub(crate) fn kill(&self) {
        // Stop fetching and dispatching first: a slot freed by a killed task must not
        // start a reserved one.
        self.stop_fetch.cancel();
        self.kill.cancel();
        if let Some(h) = lock(&self.handles).take() {
            h.fetcher.abort();
            h.dispatcher.abort();
            h.bookkeeper.abort();
            for b in &h.background {
                b.abort();
            }
        }
        self.stop_all(StopReason::Shutdown);
        self.stopped.cancel();
    }

    pub(crate) fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops every running task; returns how many.
    pub(crate) fn stop_all(&self, reason: StopReason) -> usize {
        let running = self.lock_running();
        for r in running.values() {
            r.stop.stop(reason);
        }
        running.len()
    }

    /// The registry record of this worker now.
    pub(crate) fn info(&self) -> WorkerInfo {
        let s = &self.stats;
        WorkerInfo {
            id: self.id.clone(),
            hostname: crate::message::hostname(),
            pid: std::process::id(),
            queues: self
                .queues
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            concurrency: self.concurrency.load(Ordering::Relaxed),
            prefetch_multiplier: self.settings.prefetch_multiplier,
            pool: format!("{:?}", self.settings.pool).to_ascii_lowercase(),
            started_at: crate::time::to_ms(self.started_at),
            heartbeat_at: crate::time::now_ms(),
            succeeded: s.succeeded.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            retried: s.retried.load(Ordering::Relaxed),
            revoked: s.revoked.load(Ordering::Relaxed),
            rejected: s.rejected.load(Ordering::Relaxed),
            active: self.lock_running().len() as u64,
        }
    }

    /// Sends a task event through the bookkeeper when task events are on.
    pub(crate) fn task_event(&self, event: impl FnOnce() -> Event) {
        if self.settings.task_events {
            let mut e = event();
            e.worker = Some(self.id.clone());
            self.books.send(bookkeeper::Op::Event(e));
        }
    }

    pub(crate) fn is_revoked(&self, id: &str) -> Option<Revocation> {
        self.revoked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .filter(|r| r.until > crate::time::now_ms())
            .cloned()
    }
}

/// A task running on a worker.
pub(crate) struct Running {
    pub name: String,
    pub priority: u8,
    pub started_at: SystemTime,
    pub stop: StopSwitch,
    pub delivery: DeliveryRef,
}

/// Counters of a worker.
#[derive(Default)]
pub(crate) struct Stats {
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub retried: AtomicU64,
    pub revoked: AtomicU64,
    pub rejected: AtomicU64,
}

/// A snapshot of a worker's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
pub struct ShutdownReport {
    /// Reserved messages handed back unstarted.
    pub released: usize,
    /// Running tasks aborted when the grace period ran out.
    pub aborted: usize,
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
            .iter()
            .map(|(id, r)| ActiveTask {
                id: id.clone(),
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
            in_flight: self.shared.in_flight.load(Ordering::Relaxed) as u64,
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
