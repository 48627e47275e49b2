//! The worker's loops: fetch, dispatch, execute, heartbeat and revocations.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Running;
use super::Shared;
use super::bookkeeper::{Op, StartReply};
use super::pool::{Limits, RunEnd, StopReason, StopSwitch, supervise};
use crate::backend::{Delivery, RecoveryOutcome, ResultWrite, Revocation, Settle, Settlement};
use crate::context::TaskContext;
use crate::events::{Event, EventKind};
use crate::message::Envelope;
use crate::result::TaskMeta;
use crate::retry::delay_for;
use crate::routing::fetch_order;
use crate::task::kinds;
use crate::time::{duration_ms, now_ms};
use crate::{TaskFailure, TaskState};

/// Leases messages while there is room, and hands them to the dispatcher.
pub(super) async fn fetch_loop(
    shared: Arc<Shared>,
    dispatch: mpsc::UnboundedSender<Arc<Delivery>>,
) {
    let mut n: u64 = 0;
    let mut backoff = Duration::from_millis(100);
    loop {
        if shared.stop_fetch.is_cancelled() {
            return;
        }
        let freed = shared.slot_freed.notified();
        tokio::pin!(freed);
        freed.as_mut().enable();
        let in_flight = shared.in_flight.load(Ordering::Acquire);
        // the window follows pool_grow, pool_shrink and autoscale
        let limit = shared.window();
        let low_water = (limit / 4).max(1);
        // Refill in batches: wait until a quarter of the window is free (or the
        // worker is idle) rather than fetching one message per freed slot.
        if in_flight >= limit || (in_flight > 0 && in_flight + low_water > limit) {
            tokio::select! {
                _ = &mut freed => {}
                _ = shared.stop_fetch.cancelled() => return,
            }
            continue;
        }
        let changed = shared.queues_changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let consumed: Vec<(String, u8)> = {
            let qs = shared.queues.lock().unwrap_or_else(|p| p.into_inner());
            qs.iter()
                .map(|q| (q.clone(), shared.app.router().queue_priority(q)))
                .collect()
        };
        if consumed.is_empty() {
            tokio::select! {
                _ = &mut changed => {}
                _ = shared.stop_fetch.cancelled() => return,
            }
            continue;
        }
        n += 1;
        let order = fetch_order(&consumed, n, shared.settings.fairness_interval);
        let want = limit - in_flight;
        // A fetch is never abandoned half-way for a consumer change (its messages
        // would be leased to nobody until this worker stops): a change takes effect
        // with the next fetch, at most `fetch_wait` later, and messages of a queue
        // cancelled meanwhile are handed back below.
        let fetched = tokio::select! {
            r = shared.app.broker().fetch(&shared.id, &order, want, shared.settings.fetch_wait) => r,
            _ = shared.stop_fetch.cancelled() => return,
        };
        match fetched {
            Ok(deliveries) => {
                backoff = Duration::from_millis(100);
                let deliveries = hand_back_cancelled(&shared, deliveries).await;
                for d in deliveries {
                    shared.in_flight.fetch_add(1, Ordering::AcqRel);
                    let d = Arc::new(d);
                    shared
                        .reserved
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(d.token, d.clone());
                    // Nothing waits for a slot and one is free: start it here,
                    // saving the hand-over to the dispatcher.
                    if shared.queued.load(Ordering::Acquire) == 0
                        && let Ok(permit) = shared.permits.clone().try_acquire_owned()
                    {
                        shared.tracker.spawn(execute(shared.clone(), d, permit));
                        continue;
                    }
                    shared.queued.fetch_add(1, Ordering::AcqRel);
                    if dispatch.send(d).is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(worker = %shared.id, error = %e, "fetch failed; retrying in {backoff:?}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shared.stop_fetch.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Hands back messages of queues that stopped being consumed while the fetch ran.
async fn hand_back_cancelled(shared: &Shared, deliveries: Vec<Delivery>) -> Vec<Delivery> {
    let (keep, back): (Vec<Delivery>, Vec<Delivery>) = {
        let qs = shared.queues.lock().unwrap_or_else(|p| p.into_inner());
        deliveries.into_iter().partition(|d| qs.contains(&d.queue))
    };
    if !back.is_empty() {
        let refs: Vec<_> = back.iter().map(Delivery::to_ref).collect();
        if let Err(e) = shared.app.broker().release(&shared.id, &refs).await {
            tracing::warn!(worker = %shared.id, error = %e, "could not hand back messages of a cancelled queue; they are recovered when this worker stops");
        }
    }
    keep
}

/// Starts reserved messages as concurrency slots free up. On stop, hands the
/// unstarted ones back to the broker and returns how many.
pub(super) async fn dispatch_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Arc<Delivery>>,
) -> usize {
    let mut pending: Option<Arc<Delivery>> = None;
    loop {
        let next = match pending.take() {
            Some(d) => Some(d),
            None => tokio::select! {
                d = rx.recv() => d,
                _ = shared.stop_fetch.cancelled() => None,
            },
        };
        let Some(delivery) = next else { break };
        let permit = tokio::select! {
            p = shared.permits.clone().acquire_owned() => p,
            _ = shared.stop_fetch.cancelled() => {
                pending = Some(delivery);
                break;
            }
        };
        let Ok(permit) = permit else {
            pending = Some(delivery);
            break;
        };
        if shared.stop_fetch.is_cancelled() {
            pending = Some(delivery);
            break;
        }
        shared.queued.fetch_sub(1, Ordering::AcqRel);
        // Solo has one permit, so it runs one task at a time like the others.
        shared
            .tracker
            .spawn(execute(shared.clone(), delivery, permit));
    }
    // Hand back everything reserved but not started.
    rx.close();
    let mut unstarted: Vec<Arc<Delivery>> = pending.into_iter().collect();
    while let Ok(d) = rx.try_recv() {
        unstarted.push(d);
    }
    let count = unstarted.len();
    if count > 0 {
        let refs: Vec<_> = unstarted.iter().map(|d| d.to_ref()).collect();
        {
            let mut reserved = shared.reserved.lock().unwrap_or_else(|p| p.into_inner());
            for d in &unstarted {
                reserved.remove(&d.token);
            }
        }
        let mut delay = Duration::from_millis(50);
        for attempt in 0..5 {
            match shared.app.broker().release(&shared.id, &refs).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(worker = %shared.id, error = %e, attempt, "could not hand back reserved messages");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        shared.in_flight.fetch_sub(count, Ordering::AcqRel);
    }
    count
}

/// Frees the in-flight slot of a message when dropped.
struct Slot {
    shared: Arc<Shared>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.shared.slot_freed.notify_one();
    }
}

fn write(env: &Envelope, meta: TaskMeta) -> ResultWrite {
    ResultWrite {
        meta,
        ttl: Duration::from_millis(env.result_expires),
        compress: env.compression != crate::options::Compression::None,
        announce: env.announce_result,
    }
}

fn meta_for(env: &Envelope, d: &Delivery, worker: &str, state: TaskState) -> TaskMeta {
    let mut m = TaskMeta::new(&env.id, &env.name, state);
    m.retries = env.retries;
    m.worker = Some(worker.to_string());
    m.queue = Some(d.queue.clone());
    m.fence = Some(d.token);
    m
}

fn failed(mut meta: TaskMeta, failure: TaskFailure) -> TaskMeta {
    meta.error = Some(failure);
    meta
}

/// Runs one delivered message to its end.
async fn execute(shared: Arc<Shared>, delivery: Arc<Delivery>, permit: OwnedSemaphorePermit) {
    shared
        .reserved
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&delivery.token);
    let span = tracing::info_span!("task", task_id = %delivery.id, task_name = tracing::field::Empty, queue = %delivery.queue, worker = %shared.id);
    let slot = Slot {
        shared: shared.clone(),
        _permit: Some(permit),
    };
    execute_inner(shared, delivery).instrument(span).await;
    drop(slot);
}

async fn execute_inner(shared: Arc<Shared>, d: Arc<Delivery>) {
    let books = &shared.books;
    let settle = |action: Settle| Settlement {
        delivery: d.to_ref(),
        action,
    };
    let env: Envelope = match shared.app.codec().decode(&d.payload) {
        Ok(env) => env,
        Err(e) => {
            tracing::error!(error = %e, "malformed message dead-lettered");
            shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
            let mut meta = TaskMeta::new(&d.id, "", TaskState::Failure);
            meta.fence = Some(d.token);
            meta.queue = Some(d.queue.clone());
            meta.error = Some(TaskFailure::new(kinds::MALFORMED, e.to_string()));
            shared.task_event(|| {
                let mut ev = Event::task(EventKind::TaskRejected, &d.id, "");
                ev.queue = Some(d.queue.clone());
                ev.error = meta.error.clone();
                ev
            });
            books.send(Op::Finish {
                result: Some(ResultWrite {
                    meta,
                    ttl: shared.app.config().result_expires,
                    compress: false,
                    announce: false,
                }),
                settlement: settle(Settle::DeadLetter {
                    reason: format!("malformed message: {e}"),
                }),
            });
            return;
        }
    };
    tracing::Span::current().record("task_name", env.name.as_str());
    let base = |state| meta_for(&env, &d, &shared.id, state);
    let event = |kind: EventKind, error: Option<TaskFailure>, runtime: Option<f64>| {
        shared.task_event(|| {
            let mut e = Event::task(kind, &env.id, &env.name);
            e.queue = Some(d.queue.clone());
            e.retries = Some(env.retries);
            e.error = error;
            e.runtime = runtime;
            e
        })
    };
    event(EventKind::TaskReceived, None, None);
    // Ends a task that will not run: its record, its event, its settlement.
    let end_early = |state: TaskState, failure: TaskFailure, kind: EventKind, action: Settle| {
        event(kind, Some(failure.clone()), None);
        books.send(Op::Finish {
            result: Some(write(&env, failed(base(state), failure))),
            settlement: settle(action),
        });
    };

    if let Some(r) = shared.is_revoked(&env.id) {
        tracing::info!(terminate = r.terminate, "revoked before start");
        shared.stats.revoked.fetch_add(1, Ordering::Relaxed);
        end_early(
            TaskState::Revoked,
            TaskFailure::new(kinds::REVOKED, "revoked"),
            EventKind::TaskRevoked,
            Settle::Ack,
        );
        return;
    }
    if env.expires.is_some_and(|exp| exp <= now_ms()) {
        tracing::info!("expired before start");
        shared.stats.revoked.fetch_add(1, Ordering::Relaxed);
        end_early(
            TaskState::Revoked,
            TaskFailure::new(kinds::EXPIRED, "expired before it could start"),
            EventKind::TaskRevoked,
            Settle::Ack,
        );
        return;
    }
    let Some(handler) = shared.app.handler(&env.name) else {
        tracing::error!("task is not registered on this worker; dead-lettered");
        shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
        end_early(
            TaskState::Failure,
            TaskFailure::new(
                kinds::NOT_REGISTERED,
                format!(
                    "task {:?} is not registered on worker {}",
                    env.name, shared.id
                ),
            ),
            EventKind::TaskFailed,
            Settle::DeadLetter {
                reason: format!("unknown task {:?}", env.name),
            },
        );
        return;
    };

    wait_for_rate(&shared, &env.name).await;
    if d.deliveries > 1 && !env.ignore_result {
        match shared.app.backend().get(&env.id).await {
            Ok(Some(m)) if m.state.is_ready() => {
                tracing::info!(state = %m.state, "redelivered after it finished; acked without running again");
                books.send(Op::Finish {
                    result: None,
                    settlement: settle(Settle::Ack),
                });
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not check the result of a redelivered task")
            }
        }
    }
    let started_meta =
        (env.track_started && !env.ignore_result).then(|| write(&env, base(TaskState::Started)));
    // A message that is requeued whether or not it started needs no start mark.
    let reply = if started_meta.is_none() && d.flags.requeue_when_lost() {
        Some(StartReply::Go)
    } else {
        books.start(d.to_ref(), started_meta).await
    };
    match reply {
        Some(StartReply::Go) => {}
        Some(StartReply::Fenced) | None => {
            tracing::warn!("lease lost before start; skipped");
            return;
        }
        Some(StartReply::AlreadyFinal) => {
            tracing::info!("already final (revoked or finished earlier); skipped");
            books.send(Op::Finish {
                result: None,
                settlement: settle(Settle::Ack),
            });
            return;
        }
    }

    event(EventKind::TaskStarted, None, None);
    let stop = StopSwitch::default();
    shared.lock_running().insert(
        env.id.clone(),
        Running {
            name: env.name.clone(),
            priority: d.priority,
            started_at: SystemTime::now(),
            stop: stop.clone(),
            delivery: d.to_ref(),
        },
    );
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
        queue: d.queue.clone(),
        root_id: env.root_id.clone(),
        parent_id: env.parent_id.clone(),
        worker: shared.id.clone(),
        soft_limit: soft_signal.clone(),
        app: Some(shared.app.clone()),
    };
    let started = std::time::Instant::now();
    let end = match handler.call(ctx, &env.args) {
        Ok(fut) => {
            supervise(
                shared.settings.pool,
                fut,
                limits_for(&shared, &env),
                soft_signal,
                stop,
                shared.kill.clone(),
            )
            .await
        }
        Err(e) => RunEnd::Finished(Err(e)),
    };
    shared.lock_running().remove(&env.id);
    let runtime = started.elapsed();
    let (result, action) = match end {
        RunEnd::Killed => return,
        RunEnd::Finished(Ok(output)) => {
            shared.stats.succeeded.fetch_add(1, Ordering::Relaxed);
            count_by_task(&shared, &env.name, true);
            tracing::info!(?runtime, "succeeded");
            let mut m = base(TaskState::Success);
            m.result = Some(output);
            ((!env.ignore_result).then_some(m), Settle::Ack)
        }
        RunEnd::Finished(Err(e)) => on_error(&shared, &env, &d, e),
        RunEnd::Panicked(msg) => {
            shared.stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(panic = %msg, "task panicked");
            let m = failed(
                base(TaskState::Failure),
                TaskFailure::new(kinds::PANIC, msg),
            );
            (Some(m), Settle::Ack)
        }
        RunEnd::HardLimit(limit) => {
            shared.stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(?limit, "hard time limit exceeded; task aborted");
            let m = failed(
                base(TaskState::Failure),
                TaskFailure::new(
                    kinds::TIME_LIMIT,
                    format!("hard time limit ({}s) exceeded", limit.as_secs_f64()),
                ),
            );
            (Some(m), Settle::Ack)
        }
        RunEnd::Stopped(StopReason::Revoked) => {
            shared.stats.revoked.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("terminated by revocation");
            let m = failed(
                base(TaskState::Revoked),
                TaskFailure::new(kinds::REVOKED, "terminated"),
            );
            (Some(m), Settle::Ack)
        }
        RunEnd::Stopped(StopReason::Shutdown) if env.acks_late => {
            tracing::warn!("aborted by shutdown; requeued (acks_late)");
            (None, Settle::Requeue)
        }
        RunEnd::Stopped(StopReason::Shutdown) => {
            shared.stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("aborted by shutdown");
            let m = failed(
                base(TaskState::Failure),
                TaskFailure::new(
                    kinds::WORKER_SHUTDOWN,
                    "the worker shut down before the task finished",
                ),
            );
            (Some(m), Settle::Ack)
        }
    };
    if result
        .as_ref()
        .is_some_and(|m| m.state == TaskState::Failure)
    {
        count_by_task(&shared, &env.name, false);
    }
    if let Some(m) = &result {
        let kind = match m.state {
            TaskState::Success => EventKind::TaskSucceeded,
            TaskState::Retry => EventKind::TaskRetried,
            TaskState::Revoked => EventKind::TaskRevoked,
            TaskState::Rejected => EventKind::TaskRejected,
            _ => EventKind::TaskFailed,
        };
        event(kind, m.error.clone(), Some(runtime.as_secs_f64()));
    }
    let result = result
        .filter(|m| !env.ignore_result || m.state != TaskState::Success)
        .map(|m| write(&env, m));
    shared.books.send(Op::Finish {
        result,
        settlement: settle(action),
    });
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
        match shared.app.broker().acquire_rate(task, rate).await {
            Ok(wait) if wait.is_zero() => return,
            Ok(wait) => {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shared.kill.cancelled() => return,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "rate limiter unavailable; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = shared.kill.cancelled() => return,
                }
            }
        }
    }
}

fn count_by_task(shared: &Shared, task: &str, ok: bool) {
    let mut map = shared.by_task.lock().unwrap_or_else(|p| p.into_inner());
    let entry = map.entry(task.to_string()).or_default();
    if ok {
        entry.0 += 1;
    } else {
        entry.1 += 1;
    }
}

/// Decides what a task error leads to: a retry, a rejection or a failure.
fn on_error(
    shared: &Shared,
    env: &Envelope,
    d: &Delivery,
    e: crate::TaskError,
) -> (Option<TaskMeta>, Settle) {
    let base = |state| meta_for(env, d, &shared.id, state);
    if e.is_reject() {
        shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(error = %e, "task rejected itself");
        let reason = e.to_string();
        return (
            Some(failed(base(TaskState::Rejected), e.to_failure())),
            Settle::DeadLetter { reason },
        );
    }
    let wants_retry = e.retry_requested() || env.retry.autoretries(e.kind());
    if wants_retry && env.retries < env.retry.max_retries {
        let countdown = e
            .retry_countdown()
            .unwrap_or_else(|| delay_for(&env.retry, env.retries));
        let eta = now_ms().saturating_add(duration_ms(countdown));
        let mut next = env.clone();
        next.retries += 1;
        next.eta = Some(eta);
        match shared.app.codec().encode_compact(&next, true) {
            Ok(payload) => {
                shared.stats.retried.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, retry = next.retries, ?countdown, "retrying");
                return (
                    Some(failed(base(TaskState::Retry), e.to_failure())),
                    Settle::Retry { payload, eta },
                );
            }
            Err(enc) => {
                tracing::error!(error = %enc, "retry message could not be encoded");
            }
        }
    }
    shared.stats.failed.fetch_add(1, Ordering::Relaxed);
    let mut failure = e.to_failure();
    if wants_retry {
        failure.chain.push(format!(
            "retries exhausted ({} of max_retries={})",
            env.retries, env.retry.max_retries
        ));
    }
    tracing::error!(error = %e, "failed");
    (Some(failed(base(TaskState::Failure), failure)), Settle::Ack)
}

/// Beats, recovers dead workers' messages and refreshes revocations.
pub(super) async fn heartbeat_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.settings.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let broker = shared.app.broker();
        if let Err(e) = broker
            .heartbeat(&shared.id, shared.settings.worker_lost_after)
            .await
        {
            tracing::warn!(worker = %shared.id, error = %e, "heartbeat failed");
            continue;
        }
        let info = shared.info();
        let beat = Event::worker(EventKind::WorkerHeartbeat, &info);
        let (registered, emitted) = tokio::join!(
            broker.register_worker(&info, shared.settings.worker_lost_after),
            broker.emit(std::slice::from_ref(&beat))
        );
        if let Err(e) = registered.and(emitted) {
            tracing::warn!(worker = %shared.id, error = %e, "registry update failed");
        }
        match broker.recover(shared.settings.max_deliveries).await {
            Ok(recovered) => record_recovered(&shared, recovered),
            Err(e) => tracing::warn!(worker = %shared.id, error = %e, "recovery failed"),
        }
        match broker.revocations().await {
            Ok(list) => {
                let now = now_ms();
                let mut map = shared.revoked.lock().unwrap_or_else(|p| p.into_inner());
                map.retain(|_, r| r.until > now);
                map.extend(list.into_iter().map(|r| (r.id.clone(), r)));
            }
            Err(e) => tracing::warn!(worker = %shared.id, error = %e, "revocation refresh failed"),
        }
        // Rate limits set while this worker was not addressed, or offline.
        match broker.rate_limits().await {
            Ok(list) => {
                *shared.rate_limits.lock().unwrap_or_else(|p| p.into_inner()) =
                    list.into_iter().collect();
            }
            Err(e) => tracing::warn!(worker = %shared.id, error = %e, "rate limit refresh failed"),
        }
    }
}

fn record_recovered(shared: &Shared, recovered: Vec<crate::backend::Recovered>) {
    for r in recovered {
        let (kind, why) = match r.outcome {
            RecoveryOutcome::Requeued => {
                tracing::info!(task_id = %r.id, dead_worker = %r.worker, "requeued a message of a lost worker");
                continue;
            }
            RecoveryOutcome::WorkerLost => (
                kinds::WORKER_LOST,
                format!("worker {} was lost while running the task", r.worker),
            ),
            RecoveryOutcome::TooManyDeliveries => (
                kinds::TOO_MANY_DELIVERIES,
                format!(
                    "delivered more than {} times without finishing; dead-lettered",
                    shared.settings.max_deliveries
                ),
            ),
        };
        tracing::error!(task_id = %r.id, dead_worker = %r.worker, "{why}");
        let env: Option<Envelope> = shared.app.codec().decode(&r.payload).ok();
        let mut meta = TaskMeta::new(
            &r.id,
            env.as_ref().map_or("", |e| e.name.as_str()),
            TaskState::Failure,
        );
        meta.queue = Some(r.queue.clone());
        meta.worker = Some(r.worker.clone());
        meta.retries = env.as_ref().map_or(0, |e| e.retries);
        meta.error = Some(TaskFailure::new(kind, why));
        let ttl = env
            .as_ref()
            .map_or(shared.app.config().result_expires, |e| {
                Duration::from_millis(e.result_expires)
            });
        shared.books.send(Op::Record(ResultWrite {
            meta,
            ttl,
            compress: false,
            announce: env.as_ref().is_some_and(|e| e.announce_result),
        }));
    }
}

/// Applies revocations as they are published: remembered for later deliveries, and a
/// running task is aborted when `terminate` is set.
pub(super) async fn revocation_loop(shared: Arc<Shared>, mut rx: mpsc::Receiver<Revocation>) {
    while let Some(r) = rx.recv().await {
        if r.terminate
            && let Some(run) = shared.lock_running().get(&r.id)
        {
            tracing::warn!(task_id = %r.id, "terminating revoked task");
            run.stop.stop(StopReason::Revoked);
        }
        shared
            .revoked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(r.id.clone(), r);
    }
}
