//! The state a worker's loops share, split by owner (see each field).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::WRITE_OUT;
use super::bookkeeper::{Books, Op};
use super::pool::{StopReason, StopSwitch};
use super::window::Window;
use super::{Settings, ShutdownReport};
use crate::App;
use crate::backend::{Delivery, DeliveryRef, Revocation};
use crate::control::RateLimit;
use crate::events::{Event, EventKind, WorkerInfo};

/// State shared by a worker's tasks. Each field is owned by one concern; the
/// mutexes guard data that changes together and are never held across an await.
pub(crate) struct Shared {
    /// The app whose tasks, broker and backend the worker uses.
    pub app: App,
    /// The child processes of a [`Pool::Process`](super::Pool::Process) worker.
    pub process: Option<Arc<super::process::ProcessPool>>,
    /// The worker's name.
    pub id: String,
    /// This process's claim on the name (another process started under the same name
    /// has another one, and its beats are refused while this one's deadline runs).
    pub incarnation: String,
    /// Settings fixed at start.
    pub settings: Settings,
    /// The queues consumed now (changed by add/cancel consumer).
    pub queues: Mutex<Vec<String>>,
    /// Notified when `queues` changes.
    pub queues_changed: Notify,
    /// The tasks running now, by delivery.
    pub running: Mutex<RunningTasks>,
    /// Revocations in force, by task id.
    pub revoked: Mutex<HashMap<String, Revocation>>,
    /// Where the next incremental read of revocations starts.
    pub revocation_cursor: Mutex<String>,
    /// Every message held, from lease to written settle (the prefetch window).
    pub window: Arc<Window>,
    /// Heartbeat outcomes, read by recovery and the cut-off rule.
    pub liveness: Liveness,
    /// Cancelled when fetching and dispatching must stop (shutdown or kill).
    pub stop_fetch: CancellationToken,
    /// Cancelled when the worker is killed: nothing more is written.
    pub kill: CancellationToken,
    /// The writer of start marks, results and settlements.
    pub books: Books,
    /// One permit per concurrency slot.
    pub permits: Arc<Semaphore>,
    /// Current number of concurrency slots.
    pub concurrency: AtomicUsize,
    /// Messages handed to the dispatcher and not started yet.
    pub queued: AtomicUsize,
    /// Reserved, not yet started messages, by queue and token (tokens count per
    /// queue: two queues hand out the same numbers).
    pub reserved: Mutex<HashMap<(String, u64), Arc<Delivery>>>,
    /// Autoscale bounds (max, min).
    pub autoscale: Mutex<Option<(usize, usize)>>,
    /// Per-task time limit overrides (soft, hard).
    pub time_limits: Mutex<HashMap<String, TimeLimits>>,
    /// Rate limits by task name.
    pub rate_limits: Mutex<HashMap<String, RateLimit>>,
    /// (succeeded, failed) by task name.
    pub by_task: Mutex<HashMap<String, (u64, u64)>>,
    /// Counters.
    pub stats: Stats,
    /// When the worker started.
    pub started_at: SystemTime,
    /// Every running task's tokio task.
    pub tracker: TaskTracker,
    /// The worker's own loops, taken by the first shutdown or kill.
    pub(super) handles: Mutex<Option<Handles>>,
    /// Cancelled once the worker has stopped.
    pub stopped: CancellationToken,
    pub(super) report: Mutex<Option<ShutdownReport>>,
}

/// A task's (soft, hard) time limit override.
pub(crate) type TimeLimits = (Option<Duration>, Option<Duration>);

/// The worker's own tasks.
pub(super) struct Handles {
    pub fetcher: JoinHandle<()>,
    pub dispatcher: JoinHandle<super::dispatch::HandedBack>,
    pub bookkeeper: JoinHandle<()>,
    pub background: Vec<JoinHandle<()>>,
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
            self.window.wake();
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
        let handed = h.dispatcher.await.unwrap_or_default();
        let released = handed.released;
        self.tracker.close();
        let mut aborted = 0;
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            aborted = self.stop_all(StopReason::Shutdown);
        }
        // Once the tasks have stopped, what is left is writing: bounded, so that a
        // broker that is away cannot hold the host's shutdown forever.
        let deadline = tokio::time::Instant::now() + WRITE_OUT;
        let written = tokio::time::timeout_at(deadline, async {
            self.tracker.wait().await;
            self.books.flush().await;
        })
        .await
        .is_ok();
        if let Some(children) = &self.process {
            children.close();
        }
        let unwritten = handed.stranded + if written { 0 } else { self.window.len() };
        if !written {
            tracing::error!(worker = %self.id, unwritten, "results and acknowledgements not written within {WRITE_OUT:?}: their messages stay leased, and other workers recover them once this worker's heartbeat has expired");
        }
        for b in &h.background {
            b.abort();
        }
        let offline = Event::worker(EventKind::WorkerOffline, &self.info());
        match tokio::time::timeout_at(deadline, self.app.broker().emit(&[offline])).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(worker = %self.id, error = %e, "could not publish worker-offline")
            }
            Err(_) => tracing::warn!(worker = %self.id, "could not publish worker-offline in time"),
        }
        self.kill.cancel();
        // A write already in flight ends at the client's response timeout at the
        // latest; the shutdown does not wait past its write-out deadline for it.
        let _ = tokio::time::timeout_at(deadline, h.bookkeeper).await;
        if self.liveness.is_name_taken() {
            tracing::warn!(worker = %self.id, "another process holds this worker's name: leaving its registry and leases alone");
        } else if tokio::time::timeout_at(deadline, self.unregister())
            .await
            .is_err()
        {
            tracing::warn!(worker = %self.id, "could not unregister in time; leases will be recovered after the heartbeat expires");
        }
        tracing::info!(worker = %self.id, released, aborted, unwritten, "worker stopped");
        let report = ShutdownReport {
            released,
            aborted,
            unwritten,
        };
        *lock(&self.report) = Some(report);
        self.stopped.cancel();
        report
    }

    /// Leaves the broker's worker set; what is still leased is recovered and its
    /// losses recorded.
    async fn unregister(&self) {
        match self
            .app
            .broker()
            .unregister(&self.id, &self.incarnation)
            .await
        {
            Ok(left) if !left.is_empty() => {
                tracing::warn!(worker = %self.id, count = left.len(), "messages still leased at exit were recovered");
                if let Err(e) = super::heartbeat::record_losses(
                    &self.app,
                    left,
                    u32::MAX,
                    self.settings.task_events,
                )
                .await
                {
                    tracing::warn!(worker = %self.id, error = %e, "could not record the tasks lost at exit");
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(worker = %self.id, error = %e, "could not unregister; leases will be recovered after the heartbeat expires")
            }
        }
    }

    /// Stops everything at once, recording nothing (crash simulation).
    pub(crate) fn kill(&self) {
        // Stop fetching and dispatching first: a slot freed by a killed task must not
        // start a reserved one.
        self.stop_fetch.cancel();
        self.kill.cancel();
        if let Some(children) = &self.process {
            children.close();
        }
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

    pub(crate) fn lock_running(&self) -> std::sync::MutexGuard<'_, RunningTasks> {
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

    /// Sends a task event through the bookkeeper when task events are on (dropped,
    /// with a warning, when the bookkeeper is that far behind: events are for
    /// monitoring and never hold tasks back).
    pub(crate) fn task_event(&self, event: impl FnOnce() -> Event) {
        if self.settings.task_events {
            let mut e = event();
            e.worker = Some(self.id.clone());
            self.books.offer(Op::Event(e));
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

/// The tasks running on a worker, by delivery (queue and fencing token): two
/// deliveries of one task id are two entries, each stoppable.
#[derive(Default)]
pub(crate) struct RunningTasks(HashMap<(String, u64), Running>);

impl RunningTasks {
    /// Adds a run.
    pub(crate) fn insert(&mut self, run: Running) {
        let key = (run.delivery.queue.clone(), run.delivery.token);
        self.0.insert(key, run);
    }

    /// Removes a run.
    pub(crate) fn remove(&mut self, d: &DeliveryRef) -> Option<Running> {
        self.0.remove(&(d.queue.clone(), d.token))
    }

    /// Stops every run of task `id`; returns how many.
    pub(crate) fn stop_id(&self, id: &str, reason: StopReason) -> usize {
        let mut n = 0;
        for r in self.0.values().filter(|r| r.delivery.id == id) {
            r.stop.stop(reason);
            n += 1;
        }
        n
    }

    /// Whether task `id` is running.
    pub(crate) fn contains_id(&self, id: &str) -> bool {
        self.0.values().any(|r| r.delivery.id == id)
    }

    /// The runs.
    pub(crate) fn values(&self) -> impl Iterator<Item = &Running> {
        self.0.values()
    }

    /// How many run.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// What the heartbeat loop learned, for the cut-off rule and for recovery.
#[derive(Default)]
pub(crate) struct Liveness(Mutex<Beats>);

#[derive(Default)]
struct Beats {
    /// When the last heartbeat the broker accepted was sent (its deadline runs from
    /// no later than that).
    last_ok: Option<Instant>,
    /// The last heartbeat that failed.
    last_failure: Option<Instant>,
    /// Cut off: running tasks were stopped and nothing starts until a beat lands.
    cut_off: bool,
    /// The last beat was refused: another process holds the worker's name.
    name_taken: bool,
}

impl Liveness {
    /// A heartbeat sent at `sent` was accepted; a cut-off ends.
    pub(crate) fn beat_ok(&self, sent: Instant) -> bool {
        let mut b = lock(&self.0);
        b.last_ok = Some(sent);
        b.name_taken = false;
        std::mem::take(&mut b.cut_off)
    }

    /// A beat was refused: another process holds the name. Cuts the worker off; true
    /// if it was not already.
    pub(crate) fn name_taken(&self) -> bool {
        let mut b = lock(&self.0);
        b.name_taken = true;
        !std::mem::replace(&mut b.cut_off, true)
    }

    /// Whether the name belongs to another process now: what this worker leaves
    /// behind in the broker is that process's, not to be recovered at exit.
    pub(crate) fn is_name_taken(&self) -> bool {
        lock(&self.0).name_taken
    }

    pub(crate) fn beat_failed(&self) {
        lock(&self.0).last_failure = Some(Instant::now());
    }

    /// Marks the worker cut off; true if it was not already.
    pub(crate) fn cut_off(&self) -> bool {
        !std::mem::replace(&mut lock(&self.0).cut_off, true)
    }

    /// Whether the worker is cut off (nothing may start).
    pub(crate) fn is_cut_off(&self) -> bool {
        lock(&self.0).cut_off
    }

    /// Whether a heartbeat failed within `d`: recovery waits, since other workers
    /// cut off by the same outage have not had time to beat again.
    pub(crate) fn failed_within(&self, d: Duration) -> bool {
        lock(&self.0).last_failure.is_some_and(|t| t.elapsed() < d)
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
