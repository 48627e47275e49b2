//! Runs one delivered message to its end: decode, screen (revoked, expired,
//! unknown), rate limit, start mark, run under the pool's supervisor, then record
//! and settle what [`decide`] says.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::bookkeeper::{Op, StartReply};
use super::dispatch::Leased;
use super::outcome::{Decision, Facts, Next, decide};
use super::pool::{Limits, RunEnd, StopReason, StopSwitch, supervise};
use super::process::RunTask;
use super::window::Hold;
use super::{Running, Shared};
use crate::backend::{Delivery, ResultWrite, Settle, Settlement};
use crate::context::TaskContext;
use crate::events::{Event, EventKind};
use crate::message::Envelope;
use crate::registry::Handler;
use crate::result::TaskMeta;
use crate::task::kinds;
use crate::time::{duration_ms, now_ms, shifted};
use crate::{TaskFailure, TaskState};

/// Runs one delivered message to its end.
pub(super) async fn execute(shared: Arc<Shared>, leased: Leased, permit: OwnedSemaphorePermit) {
    let Leased { delivery: d, hold } = leased;
    shared
        .reserved
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&(d.queue.clone(), d.token));
    let span = tracing::info_span!("task", task_id = %d.id, task_name = tracing::field::Empty, queue = %d.queue, worker = %shared.id);
    // Boxed: the run's state is a few kilobytes, and the spawned task is moved
    // whole when it is created and when it finishes (three copies of it per task,
    // the largest single cost in a no-op drain's profile); a box is moved once.
    Box::pin(run_delivery(&shared, d, hold, permit).instrument(span)).await;
}

async fn run_delivery(
    shared: &Arc<Shared>,
    d: Arc<Delivery>,
    hold: Hold,
    permit: OwnedSemaphorePermit,
) {
    let env: Envelope = match shared.app.codec().decode(&d.payload) {
        Ok(env) => env,
        Err(e) => return malformed(shared, &d, hold, e.to_string()).await,
    };
    tracing::Span::current().record("task_name", env.name.as_str());
    let job = Job { shared, env, d };
    job.event(EventKind::TaskReceived, None, None);
    let handler = match job.screen() {
        Ok(handler) => handler,
        Err((state, failure, action)) => {
            return job.end_early(state, failure, action, hold).await;
        }
    };
    wait_for_rate(shared, &job.env.name).await;
    if job.d.deliveries > 1 && job.finished_earlier().await {
        return job.finish(None, Settle::Ack, hold).await;
    }
    if shared.liveness.is_cut_off() {
        // Cut off from the broker: another worker may hold this message by now. Its
        // lease stays (recovered by others, or handed back by reconciliation).
        tracing::warn!("cut off from the broker; not started");
        return;
    }
    // Active from before its STARTED record can be seen.
    let stop = job.register();
    match job.mark_started().await {
        Some(StartReply::Go) => {}
        Some(StartReply::Fenced) | None => {
            shared.lock_running().remove(&job.d.to_ref());
            tracing::warn!("lease lost before start; skipped");
            return;
        }
        // The STARTED record was refused: under a final record, or under a newer
        // fence only (fencing tokens restarted after the broker lost its counter);
        // the lease is ours either way, so only a final record stops the run.
        Some(StartReply::AlreadyFinal) if !job.finished_earlier().await => {}
        Some(StartReply::AlreadyFinal) => {
            shared.lock_running().remove(&job.d.to_ref());
            tracing::info!("already final (revoked or finished earlier); skipped");
            return job.finish(None, Settle::Ack, hold).await;
        }
    }
    let started = std::time::Instant::now();
    let end = job.run(stop, &handler).await;
    // The slot is free once the run ends; the message stays in the window until
    // its settlement is written.
    drop(permit);
    let facts = Facts {
        acks_late: job.env.acks_late,
        retries: job.env.retries,
        retry: &job.env.retry,
        max_output: shared.app.codec().max_size,
        requeue_when_lost: job.d.flags.requeue_when_lost(),
        deliveries: job.d.deliveries,
        max_deliveries: shared.settings.max_deliveries,
    };
    let decision = decide(end, &facts);
    job.conclude(decision, started.elapsed(), hold).await;
}

/// A message that is not an envelope: FAILURE record and dead letter.
async fn malformed(shared: &Shared, d: &Delivery, hold: Hold, why: String) {
    tracing::error!(error = %why, "malformed message dead-lettered");
    shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
    let mut meta = TaskMeta::new(&d.id, "", TaskState::Failure);
    meta.fence = Some(d.token);
    meta.queue = Some(d.queue.clone());
    meta.error = Some(TaskFailure::new(kinds::MALFORMED, why.clone()));
    shared.task_event(|| {
        let mut ev = Event::task(EventKind::TaskRejected, &d.id, "");
        ev.queue = Some(d.queue.clone());
        ev.error = meta.error.clone();
        ev
    });
    shared
        .books
        .send(Op::Finish {
            result: Some(ResultWrite {
                meta,
                ttl: shared.app.config().result_expires,
                compress: false,
                announce: false,
            }),
            settlement: Settlement {
                delivery: d.to_ref(),
                action: Settle::DeadLetter {
                    reason: format!("malformed message: {why}"),
                },
            },
            hold: Some(hold),
        })
        .await;
}

/// One decoded message on its way through the worker.
struct Job<'a> {
    shared: &'a Arc<Shared>,
    env: Envelope,
    d: Arc<Delivery>,
}

impl Job<'_> {
    /// A record of this delivery in `state`.
    fn meta(&self, state: TaskState) -> TaskMeta {
        let mut m = TaskMeta::new(&self.env.id, &self.env.name, state);
        m.retries = self.env.retries;
        m.worker = Some(self.shared.id.clone());
        m.queue = Some(self.d.queue.clone());
        m.fence = Some(self.d.token);
        m
    }

    fn write(&self, meta: TaskMeta) -> ResultWrite {
        ResultWrite {
            meta,
            ttl: Duration::from_millis(self.env.result_expires),
            compress: self.env.compression != crate::options::Compression::None,
            announce: self.env.announce_result,
        }
    }

    fn event(&self, kind: EventKind, error: Option<TaskFailure>, runtime: Option<f64>) {
        self.shared.task_event(|| {
            let mut e = Event::task(kind, &self.env.id, &self.env.name);
            e.queue = Some(self.d.queue.clone());
            e.retries = Some(self.env.retries);
            e.error = error;
            e.runtime = runtime;
            e
        })
    }

    /// Records (unless `None`) and settles; the message leaves the window once the
    /// settlement is written.
    async fn finish(&self, meta: Option<TaskMeta>, action: Settle, hold: Hold) {
        let result = meta.map(|m| self.write(m));
        self.shared
            .books
            .send(Op::Finish {
                result,
                settlement: Settlement {
                    delivery: self.d.to_ref(),
                    action,
                },
                hold: Some(hold),
            })
            .await;
    }

    /// The task's handler, or why the message must not run: revoked, expired, or a
    /// task this worker does not know.
    fn screen(&self) -> Result<Arc<dyn Handler>, (TaskState, TaskFailure, Settle)> {
        let shared = self.shared;
        if let Some(r) = shared.is_revoked(&self.env.id) {
            tracing::info!(terminate = r.terminate, "revoked before start");
            let f = TaskFailure::new(kinds::REVOKED, "revoked");
            return Err((TaskState::Revoked, f, Settle::Ack));
        }
        // The expiry is on the broker's clock (see `Messages::clock_offset_ms`).
        let now = shifted(now_ms(), shared.app.broker().clock_offset_ms());
        if self.env.expires.is_some_and(|exp| exp <= now) {
            tracing::info!("expired before start");
            let f = TaskFailure::new(kinds::EXPIRED, "expired before it could start");
            return Err((TaskState::Revoked, f, Settle::Ack));
        }
        shared.app.handler(&self.env.name).ok_or_else(|| {
            tracing::error!("task is not registered on this worker; dead-lettered");
            let f = TaskFailure::new(
                kinds::NOT_REGISTERED,
                format!(
                    "task {:?} is not registered on worker {}",
                    self.env.name, shared.id
                ),
            );
            let reason = format!("unknown task {:?}", self.env.name);
            (TaskState::Failure, f, Settle::DeadLetter { reason })
        })
    }

    /// Ends a message that will not run: its record, its event, its settlement.
    async fn end_early(&self, state: TaskState, failure: TaskFailure, action: Settle, hold: Hold) {
        count(self.shared, &self.env.name, state, false);
        let kind = match state {
            TaskState::Revoked => EventKind::TaskRevoked,
            _ => EventKind::TaskFailed,
        };
        self.event(kind, Some(failure.clone()), None);
        let mut meta = self.meta(state);
        meta.error = Some(failure);
        self.finish(Some(meta), action, hold).await;
    }

    /// Whether the task already has a final record (a redelivered message that
    /// finished before its worker died, or one revoked meanwhile).
    async fn finished_earlier(&self) -> bool {
        if self.env.ignore_result {
            return false;
        }
        match self.shared.app.backend().get(&self.env.id).await {
            Ok(Some(m)) if m.state.is_ready() => {
                tracing::info!(state = %m.state, "redelivered after it finished; acked without running again");
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(error = %e, "could not check the result of a redelivered task");
                false
            }
        }
    }

    /// Marks the message started (with STARTED stored when `track_started` is on).
    async fn mark_started(&self) -> Option<StartReply> {
        let env = &self.env;
        let started_meta = (env.track_started && !env.ignore_result)
            .then(|| self.write(self.meta(TaskState::Started)));
        // A message that is requeued whether or not it started needs no start mark.
        if started_meta.is_none() && self.d.flags.requeue_when_lost() {
            return Some(StartReply::Go);
        }
        self.shared.books.start(self.d.to_ref(), started_meta).await
    }

    /// Makes the task visible to `active`, `terminate` and shutdown.
    fn register(&self) -> StopSwitch {
        let stop = StopSwitch::default();
        self.shared.lock_running().insert(Running {
            name: self.env.name.clone(),
            priority: self.d.priority,
            started_at: SystemTime::now(),
            stop: stop.clone(),
            delivery: self.d.to_ref(),
        });
        stop
    }

    /// Runs the task on the pool.
    async fn run(&self, stop: StopSwitch, handler: &Arc<dyn Handler>) -> RunEnd {
        let shared = self.shared;
        let env = &self.env;
        self.event(EventKind::TaskStarted, None, None);
        // A terminate that arrived between the revocation check and now.
        if shared.is_revoked(&env.id).is_some_and(|r| r.terminate) {
            stop.stop(StopReason::Revoked);
        }
        let soft_signal = CancellationToken::new();
        let ctx = TaskContext {
            id: env.id.clone(),
            name: env.name.clone(),
            retries: env.retries,
            max_retries: env.retry.max_retries,
            queue: self.d.queue.clone(),
            root_id: env.root_id.clone(),
            parent_id: env.parent_id.clone(),
            worker: shared.id.clone(),
            soft_limit: soft_signal.clone(),
            app: Some(shared.app.clone()),
        };
        let limits = limits_for(shared, env);
        let kill = shared.kill.clone();
        let end = if let Some(children) = &shared.process {
            // The child decodes the arguments and builds its own context.
            let task = RunTask {
                id: env.id.clone(),
                name: env.name.clone(),
                retries: env.retries,
                max_retries: env.retry.max_retries,
                queue: self.d.queue.clone(),
                root_id: env.root_id.clone(),
                parent_id: env.parent_id.clone(),
                worker: shared.id.clone(),
                args: env.args.clone(),
            };
            let slots = shared.concurrency.load(Ordering::Relaxed);
            children
                .run(task, limits, soft_signal, stop, kill, slots)
                .await
        } else {
            match handler.call(ctx, &env.args) {
                Ok(fut) => {
                    let pool = shared.settings.pool;
                    let max_abandoned = shared.settings.max_abandoned_threads;
                    supervise(pool, max_abandoned, fut, limits, soft_signal, stop, kill).await
                }
                Err(e) => RunEnd::Finished(Err(e)),
            }
        };
        shared.lock_running().remove(&self.d.to_ref());
        end
    }

    /// Records and settles what the run led to.
    async fn conclude(&self, decision: Decision, runtime: Duration, hold: Hold) {
        let (state, output, failure, next) = match decision {
            Decision::Abandon => return,
            Decision::Requeue => {
                tracing::warn!("stopped before it finished; requeued (acks_late)");
                return self.finish(None, Settle::Requeue, hold).await;
            }
            Decision::Finish {
                state,
                output,
                failure,
                next,
            } => (state, output, failure, next),
        };
        let (state, failure, action) = match next {
            Next::Ack => (state, failure, Settle::Ack),
            Next::DeadLetter { reason } => (state, failure, Settle::DeadLetter { reason }),
            Next::Retry { countdown } => match self.retry_message(countdown) {
                Ok(action) => (state, failure, action),
                Err(why) => {
                    tracing::error!(error = %why, "retry message could not be encoded");
                    let mut f = failure.unwrap_or_else(|| TaskFailure::new(kinds::ERROR, ""));
                    f.chain.push(format!("the retry could not be sent: {why}"));
                    (TaskState::Failure, Some(f), Settle::Ack)
                }
            },
        };
        count(self.shared, &self.env.name, state, true);
        match (&state, &failure) {
            (TaskState::Success, _) => tracing::info!(?runtime, "succeeded"),
            (_, Some(f)) => {
                tracing::warn!(%state, kind = %f.kind, error = %f.message, "did not succeed")
            }
            _ => {}
        }
        let kind = match state {
            TaskState::Success => EventKind::TaskSucceeded,
            TaskState::Retry => EventKind::TaskRetried,
            TaskState::Revoked => EventKind::TaskRevoked,
            TaskState::Rejected => EventKind::TaskRejected,
            _ => EventKind::TaskFailed,
        };
        self.event(kind, failure.clone(), Some(runtime.as_secs_f64()));
        let meta = (!(self.env.ignore_result && state == TaskState::Success)).then(|| {
            let mut m = self.meta(state);
            m.result = output;
            m.error = failure;
            m
        });
        self.finish(meta, action, hold).await;
    }

    /// The settlement that sends the message again after `countdown`.
    fn retry_message(&self, countdown: Duration) -> Result<Settle, crate::codec::CodecError> {
        let eta = now_ms().saturating_add(duration_ms(countdown));
        let mut next = self.env.clone();
        next.retries += 1;
        next.eta = Some(eta);
        let payload = self.shared.app.codec().encode_compact(&next, true)?;
        tracing::warn!(retry = next.retries, ?countdown, "retrying");
        Ok(Settle::Retry { payload, eta })
    }
}

/// Counts a final state in the worker's statistics.
fn count(shared: &Shared, task: &str, state: TaskState, ran: bool) {
    let s = &shared.stats;
    let counter = match state {
        TaskState::Success => &s.succeeded,
        TaskState::Retry => &s.retried,
        TaskState::Revoked => &s.revoked,
        TaskState::Rejected => &s.rejected,
        TaskState::Failure if !ran => &s.rejected,
        _ => &s.failed,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    if matches!(state, TaskState::Success | TaskState::Failure) && ran {
        let mut map = shared.by_task.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(task.to_string()).or_default();
        if state == TaskState::Success {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }
}

/// The time limits of a run: the worker's override for the task (`time_limit`
/// command), else the message's.
fn limits_for(shared: &Shared, env: &Envelope) -> Limits {
    let overrides = shared
        .time_limits
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&env.name)
        .copied();
    match overrides {
        Some((soft, hard)) => Limits { soft, hard },
        None => Limits {
            soft: env.soft_time_limit.map(Duration::from_millis),
            hard: env.time_limit.map(Duration::from_millis),
        },
    }
}

/// Waits for a start slot of a rate-limited task (shared by all workers).
async fn wait_for_rate(shared: &Shared, task: &str) {
    loop {
        let rate = shared
            .rate_limits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(task)
            .copied();
        let Some(rate) = rate else { return };
        let wait = match shared.app.broker().acquire_rate(task, rate).await {
            Ok(wait) if wait.is_zero() => return,
            Ok(wait) => wait,
            Err(e) => {
                tracing::warn!(error = %e, "rate limiter unavailable; retrying");
                Duration::from_millis(200)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.kill.cancelled() => return,
        }
    }
}
