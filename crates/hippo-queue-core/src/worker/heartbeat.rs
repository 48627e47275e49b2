//! Staying alive and finding the lost: the heartbeat (alone in its loop, so that
//! nothing slow delays it), the maintenance loop (registry, recovery, revocations,
//! rate limits), the live revocation feed, and the claim of a worker name at start.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::pool::StopReason;
use super::{Settings, Shared};
use crate::backend::{
    BackendError, BeatReply, Recovered, RecoveryOutcome, ResultWrite, Revocation,
};
use crate::events::{Event, EventKind};
use crate::message::Envelope;
use crate::result::TaskMeta;
use crate::task::kinds;
use crate::time::now_ms;
use crate::{App, Error, TaskFailure, TaskState};

/// Beats every `heartbeat_interval`. A worker whose heartbeats have not landed for
/// `worker_lost_after - heartbeat_interval` (counted from the last accepted beat's
/// sending, so before any other worker may declare it lost), or that learns it was
/// recovered, is cut off: it stops its running tasks and starts nothing until a beat
/// lands again. A broker that answers that it cannot serve (out of memory, read-only,
/// loading) recovers nobody meanwhile, so that stops nothing.
pub(super) async fn heartbeat_loop(shared: Arc<Shared>) {
    let s = &shared.settings;
    let mut tick = tokio::time::interval(s.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_ok = Instant::now();
    let margin = s.worker_lost_after.saturating_sub(s.heartbeat_interval);
    // Took the name over from a dead process and its leases are not recovered yet.
    let mut inherited = false;
    loop {
        tick.tick().await;
        let sent = Instant::now();
        let beat = shared.app.broker().heartbeat(
            &shared.id,
            &shared.incarnation,
            s.worker_lost_after,
            s.heartbeat_interval,
        );
        // A beat that takes longer than an interval is as good as failed.
        let why = match tokio::time::timeout(s.heartbeat_interval, beat).await {
            Ok(Ok(BeatReply::Alive)) => {
                last_ok = sent;
                if inherited {
                    // a takeover whose recovery failed: nothing starts until it is done
                    if !inherit(&shared).await {
                        continue;
                    }
                    inherited = false;
                }
                if shared.liveness.beat_ok(sent) {
                    tracing::warn!(worker = %shared.id, "broker reachable again; tasks start again");
                }
                continue;
            }
            Ok(Ok(BeatReply::Unknown)) => {
                // Recovered by another worker (judged dead): what it runs is theirs.
                last_ok = sent;
                shared.liveness.beat_ok(sent);
                cut_off(&shared, "this worker was recovered by another one");
                continue;
            }
            Ok(Ok(BeatReply::TakenOver)) => {
                // The process that took this worker's name has died in turn: the name
                // is this worker's again, and what the other leased under it is
                // recovered before anything starts.
                tracing::warn!(worker = %shared.id, "took this worker's name back from a dead process; recovering its leases");
                inherited = true;
                last_ok = sent;
                if inherit(&shared).await {
                    inherited = false;
                    shared.liveness.beat_ok(sent);
                }
                continue;
            }
            Ok(Ok(BeatReply::Taken)) => {
                // Judged dead, and another process started under this name since:
                // this one stays cut off while that one lives.
                if shared.liveness.name_taken() {
                    let stopped = shared.stop_all(StopReason::ConnectionLost);
                    tracing::error!(worker = %shared.id, stopped, "another live process holds this worker's name; running tasks stopped, nothing starts while it lives");
                }
                continue;
            }
            Ok(Err(e)) if e.is_busy() => {
                // Up, but refusing: nobody can recover anyone meanwhile.
                shared.liveness.beat_failed();
                tracing::warn!(worker = %shared.id, error = %e, "heartbeat refused");
                continue;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_string(),
        };
        shared.liveness.beat_failed();
        tracing::warn!(worker = %shared.id, error = %why, "heartbeat failed");
        if last_ok.elapsed() >= margin {
            cut_off(&shared, "cut off from the broker for about its lease");
        }
    }
}

/// Recovers what a dead process leased under this worker's name (after a takeover);
/// returns whether it is done.
async fn inherit(shared: &Shared) -> bool {
    let s = &shared.settings;
    match shared
        .app
        .broker()
        .recover_worker(&shared.id, s.max_deliveries)
        .await
    {
        Ok(left) => {
            if let Err(e) = record_losses(&shared.app, left, s.max_deliveries, s.task_events).await
            {
                tracing::warn!(worker = %shared.id, error = %e, "could not record the lost tasks; another recovery will");
            }
            true
        }
        Err(e) => {
            tracing::warn!(worker = %shared.id, error = %e, "could not recover the previous holder's leases; trying again at the next beat");
            false
        }
    }
}

/// Stops the running tasks (`acks_late` ones are requeued, under their fencing token)
/// and holds new starts until a beat lands.
fn cut_off(shared: &Shared, why: &str) {
    if shared.liveness.cut_off() {
        let stopped = shared.stop_all(StopReason::ConnectionLost);
        tracing::error!(worker = %shared.id, stopped, "{why}; running tasks stopped");
    }
}

/// Updates the registry, recovers dead workers' messages, and refreshes
/// revocations and rate limits, every heartbeat interval.
pub(super) async fn maintenance_loop(shared: Arc<Shared>) {
    let s = &shared.settings;
    let mut tick = tokio::time::interval(s.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if shared.liveness.is_name_taken() {
            // The registry record and the heartbeat events under this name are the
            // holder's now.
            continue;
        }
        let broker = shared.app.broker();
        let info = shared.info();
        let beat = Event::worker(EventKind::WorkerHeartbeat, &info);
        let (registered, emitted) = tokio::join!(
            broker.register_worker(&info, s.worker_lost_after),
            broker.emit(std::slice::from_ref(&beat))
        );
        if let Err(e) = registered.and(emitted) {
            tracing::warn!(worker = %shared.id, error = %e, "registry update failed");
        }
        // Workers cut off by the outage this worker just saw have not had time to
        // beat again: recovering them now would run their tasks twice.
        if !shared.liveness.failed_within(s.worker_lost_after) {
            match broker.recover(s.max_deliveries).await {
                Ok(recovered) => {
                    if let Err(e) =
                        record_losses(&shared.app, recovered, s.max_deliveries, s.task_events).await
                    {
                        tracing::warn!(worker = %shared.id, error = %e, "could not record the lost tasks; another recovery will");
                    }
                }
                Err(e) => tracing::warn!(worker = %shared.id, error = %e, "recovery failed"),
            }
        }
        refresh_revocations(&shared).await;
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

/// Most revocations read per heartbeat.
const REVOCATIONS_PER_BEAT: usize = 10_000;

/// Reads the revocations made since the last read (the live feed may have missed
/// them: a full buffer, a reconnect), and stops running tasks they terminate.
async fn refresh_revocations(shared: &Shared) {
    let cursor = shared
        .revocation_cursor
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let read = shared
        .app
        .broker()
        .revocations_after(Some(&cursor), REVOCATIONS_PER_BEAT)
        .await;
    let list = match read {
        Ok((list, next)) => {
            *shared
                .revocation_cursor
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = next;
            list
        }
        Err(e) => {
            tracing::warn!(worker = %shared.id, error = %e, "revocation refresh failed");
            return;
        }
    };
    let now = now_ms();
    {
        let running = shared.lock_running();
        for r in list.iter().filter(|r| r.terminate) {
            if running.stop_id(&r.id, StopReason::Revoked) > 0 {
                tracing::warn!(task_id = %r.id, "terminating revoked task");
            }
        }
    }
    let mut map = shared.revoked.lock().unwrap_or_else(|p| p.into_inner());
    map.retain(|_, r| r.until > now);
    map.extend(list.into_iter().map(|r| (r.id.clone(), r)));
}

/// Applies revocations as they are published: remembered for later deliveries, and
/// running tasks are aborted when `terminate` is set.
pub(super) async fn revocation_loop(shared: Arc<Shared>, mut rx: mpsc::Receiver<Revocation>) {
    while let Some(r) = rx.recv().await {
        if r.terminate && shared.lock_running().stop_id(&r.id, StopReason::Revoked) > 0 {
            tracing::warn!(task_id = %r.id, "terminating revoked task");
        }
        shared
            .revoked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(r.id.clone(), r);
    }
}

/// Claims the name `id` for this process with its first heartbeat, then recovers the
/// messages a dead process that held the name left leased (a fixed name restarted
/// after a crash), so that they are not hidden behind the new worker's heartbeats.
///
/// The claim is one atomic step in the broker: of two processes started at once under
/// one name, one gets it and the other is refused. A holder whose deadline still runs
/// is waited for, up to its deadline; if it beats meanwhile, it is alive and the name
/// is refused.
pub(super) async fn claim_name(
    app: &App,
    id: &str,
    incarnation: &str,
    s: &Settings,
) -> Result<(), Error> {
    let broker = app.broker();
    let beat = || broker.heartbeat(id, incarnation, s.worker_lost_after, s.heartbeat_interval);
    if beat().await? == BeatReply::Taken {
        let left = broker.worker_lease(id).await?.unwrap_or_default();
        tracing::warn!(worker = %id, ?left, "a worker with this name was beating recently; waiting for its lease to run out");
        tokio::time::sleep(left + Duration::from_millis(50)).await;
        if beat().await? == BeatReply::Taken {
            return Err(Error::InvalidOptions(format!(
                "a live worker is already named {id:?} (it is still heartbeating): give each worker a unique name (-n name@host)"
            )));
        }
    }
    // Nothing is fetched under the name yet: every lease it has is a dead holder's.
    let recovered = broker.recover_worker(id, s.max_deliveries).await?;
    if !recovered.is_empty() {
        tracing::warn!(worker = %id, count = recovered.len(), "recovered the messages of this name's previous, dead incarnation");
    }
    record_losses(app, recovered, s.max_deliveries, s.task_events).await?;
    Ok(())
}

/// Writes the FAILURE records of recovered messages that were dead-lettered, then
/// tells the broker they are written (until then it hands them out again, so that a
/// recoverer that dies here leaves them to the next).
pub(super) async fn record_losses(
    app: &App,
    recovered: Vec<Recovered>,
    max_deliveries: u32,
    task_events: bool,
) -> Result<(), BackendError> {
    let losses: Vec<_> = recovered
        .iter()
        .filter(|r| r.outcome != RecoveryOutcome::Requeued)
        .map(Recovered::delivery_ref)
        .collect();
    let writes = recovered_records(app, recovered, max_deliveries);
    if !writes.is_empty() {
        app.backend().store(&writes).await?;
    }
    if task_events && !writes.is_empty() {
        // monitoring only: a failure to write them loses no task
        if let Err(e) = app.broker().emit(&loss_events(&writes)).await {
            tracing::warn!(error = %e, "could not write the task-failed events of lost tasks");
        }
    }
    app.broker().losses_recorded(&losses).await
}

/// The task-failed events of lost tasks whose FAILURE records are written (Celery
/// sends one for a `WorkerLostError`), each under the worker that ran the task.
fn loss_events(writes: &[ResultWrite]) -> Vec<Event> {
    writes
        .iter()
        .map(|w| {
            let m = &w.meta;
            let mut e = Event::task(EventKind::TaskFailed, &m.task_id, &m.name);
            e.worker = m.worker.clone();
            e.queue = m.queue.clone();
            e.retries = Some(m.retries);
            e.error = m.error.clone();
            e
        })
        .collect()
}

/// The FAILURE records of recovered messages that were dead-lettered.
fn recovered_records(
    app: &App,
    recovered: Vec<Recovered>,
    max_deliveries: u32,
) -> Vec<ResultWrite> {
    let mut out = Vec::new();
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
                    "delivered more than {max_deliveries} times without finishing; dead-lettered"
                ),
            ),
        };
        tracing::error!(task_id = %r.id, dead_worker = %r.worker, "{why}");
        let env: Option<Envelope> = app.codec().decode(&r.payload).ok();
        let mut meta = TaskMeta::new(
            &r.id,
            env.as_ref().map_or("", |e| e.name.as_str()),
            TaskState::Failure,
        );
        meta.queue = Some(r.queue.clone());
        meta.worker = Some(r.worker.clone());
        meta.retries = env.as_ref().map_or(0, |e| e.retries);
        meta.error = Some(TaskFailure::new(kind, why));
        let ttl = env.as_ref().map_or(app.config().result_expires, |e| {
            Duration::from_millis(e.result_expires)
        });
        out.push(ResultWrite {
            meta,
            ttl,
            compress: false,
            announce: env.as_ref().is_some_and(|e| e.announce_result),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_task_is_a_task_failed_event_of_the_worker_that_ran_it() {
        let mut meta = TaskMeta::new("t1", "add", TaskState::Failure);
        meta.queue = Some("q".into());
        meta.worker = Some("dead@host".into());
        meta.retries = 2;
        meta.error = Some(TaskFailure::new(
            kinds::WORKER_LOST,
            "worker dead@host was lost",
        ));
        let write = ResultWrite {
            meta,
            ttl: Duration::from_secs(60),
            compress: false,
            announce: false,
        };
        let events = loss_events(&[write]);
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.kind, EventKind::TaskFailed);
        assert_eq!(e.task_id.as_deref(), Some("t1"));
        assert_eq!(e.task_name.as_deref(), Some("add"));
        assert_eq!(e.worker.as_deref(), Some("dead@host"));
        assert_eq!(e.queue.as_deref(), Some("q"));
        assert_eq!(e.retries, Some(2));
        assert_eq!(
            e.error.as_ref().map(|f| f.kind.as_str()),
            Some(kinds::WORKER_LOST)
        );
    }
}
