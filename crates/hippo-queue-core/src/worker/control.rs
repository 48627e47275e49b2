//! The worker's side of remote control: answering inspect commands, applying control
//! commands, and autoscaling.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Shared;
use super::pool::StopReason;
use crate::control::{
    Command, QueueInfo, REPLY_TTL, Reply, ReplyBody, Request, Stats, TaskInfo, grown_concurrency,
    memory_rss, time_limits,
};
use crate::message::Envelope;
use crate::time::{now_ms, to_ms};

/// Answers control requests addressed to this worker.
pub(super) async fn control_loop(shared: Arc<Shared>, mut rx: mpsc::Receiver<Request>) {
    while let Some(req) = rx.recv().await {
        if !req.is_for(&shared.id) {
            continue;
        }
        tracing::info!(worker = %shared.id, command = req.command.name(), "control request");
        let shutdown = matches!(req.command, Command::Shutdown);
        let body = match req.command.validate() {
            Ok(()) => handle_isolated(&shared, req.command).await,
            Err(e) => {
                tracing::warn!(worker = %shared.id, error = %e, "control request refused");
                ReplyBody::Error(e.to_string())
            }
        };
        let reply = Reply {
            request_id: req.id,
            worker: shared.id.clone(),
            body,
        };
        if let Err(e) = shared.app.broker().reply(&reply, REPLY_TTL).await {
            tracing::warn!(worker = %shared.id, error = %e, "control reply failed");
        }
        if shutdown {
            let grace = shared.settings.shutdown_grace;
            let s = shared.clone();
            tokio::spawn(async move { s.shutdown(grace).await });
            return;
        }
    }
}

/// Runs [`handle`] in a task of its own, so that a bug in one command becomes an error
/// reply and the control loop goes on answering.
async fn handle_isolated(shared: &Arc<Shared>, command: Command) -> ReplyBody {
    let name = command.name();
    let s = shared.clone();
    match tokio::spawn(async move { handle(&s, command).await }).await {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(worker = %shared.id, command = name, error = %e, "control command failed");
            ReplyBody::Error(format!(
                "{name} failed on this worker ({e}); the worker goes on, see its log"
            ))
        }
    }
}

fn task_info(d: &crate::backend::Delivery, shared: &Shared, time: Option<u64>) -> TaskInfo {
    let name = shared
        .app
        .codec()
        .decode::<Envelope>(&d.payload)
        .map(|e| e.name)
        .unwrap_or_default();
    TaskInfo {
        id: d.id.clone(),
        name,
        queue: d.queue.clone(),
        priority: d.priority,
        time,
    }
}

async fn handle(shared: &Arc<Shared>, command: Command) -> ReplyBody {
    match command {
        Command::Ping => ReplyBody::Pong,
        Command::Active => ReplyBody::Tasks(
            shared
                .lock_running()
                .values()
                .map(|r| TaskInfo {
                    id: r.delivery.id.clone(),
                    name: r.name.clone(),
                    queue: r.delivery.queue.clone(),
                    priority: r.priority,
                    time: Some(to_ms(r.started_at)),
                })
                .collect(),
        ),
        Command::Reserved => {
            let reserved: Vec<_> = shared
                .reserved
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned()
                .collect();
            ReplyBody::Tasks(
                reserved
                    .iter()
                    .map(|d| task_info(d, shared, None))
                    .collect(),
            )
        }
        Command::Scheduled => {
            let queues = shared
                .queues
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let mut out = Vec::new();
            for q in queues {
                match shared.app.broker().scheduled(&q, 1000).await {
                    Ok(list) => {
                        out.extend(list.iter().map(|(eta, d)| task_info(d, shared, Some(*eta))))
                    }
                    Err(e) => return ReplyBody::Error(e.to_string()),
                }
            }
            ReplyBody::Tasks(out)
        }
        Command::Revoked => {
            let now = now_ms();
            let mut ids: Vec<String> = shared
                .revoked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .filter(|r| r.until > now)
                .map(|r| r.id.clone())
                .collect();
            ids.sort();
            ReplyBody::Names(ids)
        }
        Command::Registered => ReplyBody::Names(shared.app.registered()),
        Command::Stats => {
            let by_task = shared
                .by_task
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let (mut ok, mut failed) = (BTreeMap::new(), BTreeMap::new());
            for (name, (s, f)) in by_task {
                if s > 0 {
                    ok.insert(name.clone(), s);
                }
                if f > 0 {
                    failed.insert(name, f);
                }
            }
            ReplyBody::Stats(Box::new(Stats {
                info: shared.info(),
                uptime: shared.started_at.elapsed().map_or(0.0, |d| d.as_secs_f64()),
                memory_rss: memory_rss(),
                succeeded_by_task: ok,
                failed_by_task: failed,
                autoscale: *shared.autoscale.lock().unwrap_or_else(|p| p.into_inner()),
            }))
        }
        Command::ActiveQueues => {
            let router = shared.app.router();
            let queues = shared
                .queues
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            ReplyBody::Queues(
                queues
                    .into_iter()
                    .map(|q| QueueInfo {
                        routing_key: router
                            .get(&q)
                            .map_or_else(|| q.clone(), |d| d.routing_key.clone()),
                        priority: router.queue_priority(&q),
                        name: q,
                    })
                    .collect(),
            )
        }
        Command::QueryTask(ids) => {
            let running = shared.lock_running();
            let reserved = shared.reserved.lock().unwrap_or_else(|p| p.into_inner());
            ReplyBody::TaskStates(
                ids.into_iter()
                    .map(|id| {
                        let state = if running.contains_id(&id) {
                            "active"
                        } else if reserved.values().any(|d| d.id == id) {
                            "reserved"
                        } else {
                            "unknown"
                        };
                        (id, state.to_string())
                    })
                    .collect(),
            )
        }
        Command::Shutdown => ReplyBody::Ok("shutting down".into()),
        Command::PoolRestart => {
            // Take every slot: running tasks finish, no new one starts; then give
            // them back.
            let n = shared.concurrency.load(Ordering::Acquire) as u32;
            match shared.permits.clone().acquire_many_owned(n).await {
                Ok(all) => {
                    if let Some(children) = &shared.process {
                        children.restart();
                    }
                    drop(all);
                    ReplyBody::Ok(format!("pool restarted ({n} slots)"))
                }
                Err(e) => ReplyBody::Error(e.to_string()),
            }
        }
        Command::PoolGrow(n) => {
            let current = shared.concurrency.load(Ordering::Acquire);
            if let Err(e) = grown_concurrency(current, n) {
                return ReplyBody::Error(e.to_string());
            }
            shared.grow(n);
            ReplyBody::Ok(format!(
                "pool grown to {}",
                shared.concurrency.load(Ordering::Relaxed)
            ))
        }
        Command::PoolShrink(n) => {
            let removed = shared.shrink(n);
            ReplyBody::Ok(format!(
                "pool shrunk by {removed} to {}",
                shared.concurrency.load(Ordering::Relaxed)
            ))
        }
        Command::Autoscale { max, min } => {
            // Bounds checked by `Command::validate` in `control_loop`.
            *shared.autoscale.lock().unwrap_or_else(|p| p.into_inner()) = Some((max, min));
            ReplyBody::Ok(format!("autoscale between {min} and {max}"))
        }
        Command::AddConsumer(q) => {
            if let Err(e) = crate::routing::validate_queue_name(&q) {
                return ReplyBody::Error(e.to_string());
            }
            let mut qs = shared.queues.lock().unwrap_or_else(|p| p.into_inner());
            if qs.contains(&q) {
                return ReplyBody::Ok(format!("already consuming {q}"));
            }
            qs.push(q.clone());
            drop(qs);
            shared.queues_changed.notify_waiters();
            ReplyBody::Ok(format!("now consuming {q}"))
        }
        Command::CancelConsumer(q) => {
            shared
                .queues
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|x| *x != q);
            shared.queues_changed.notify_waiters();
            ReplyBody::Ok(format!("no longer consuming {q}"))
        }
        Command::RateLimit { task, rate } => {
            let mut limits = shared.rate_limits.lock().unwrap_or_else(|p| p.into_inner());
            match rate {
                Some(r) => {
                    limits.insert(task.clone(), r);
                    ReplyBody::Ok(format!("rate limit of {task} set to {r}"))
                }
                None => {
                    limits.remove(&task);
                    ReplyBody::Ok(format!("rate limit of {task} removed"))
                }
            }
        }
        Command::TimeLimit { task, soft, hard } => {
            let (soft, hard) = match time_limits(soft, hard) {
                Ok(limits) => limits,
                Err(e) => return ReplyBody::Error(e.to_string()),
            };
            let mut limits = shared.time_limits.lock().unwrap_or_else(|p| p.into_inner());
            if soft.is_none() && hard.is_none() {
                // `0 0` clears the override: the messages' own limits apply again.
                limits.remove(&task);
                return ReplyBody::Ok(format!("time limits of {task} reset to the task's own"));
            }
            limits.insert(task.clone(), (soft, hard));
            drop(limits);
            let show = |d: Option<Duration>| {
                d.map_or_else(|| "none".to_string(), |d| format!("{}s", d.as_secs_f64()))
            };
            ReplyBody::Ok(format!(
                "time limits of {task} set to soft {}, hard {}",
                show(soft),
                show(hard)
            ))
        }
        Command::Revoke { id, terminate } => {
            let running = shared.lock_running();
            match (running.contains_id(&id), terminate) {
                (true, true) => {
                    running.stop_id(&id, StopReason::Revoked);
                    ReplyBody::Ok(format!("terminating {id}"))
                }
                (true, false) => ReplyBody::Ok(format!("{id} is running; it will finish")),
                (false, _) => ReplyBody::Ok(format!("{id} revoked")),
            }
        }
    }
}

/// Adjusts concurrency to the backlog between the autoscale bounds: grows while
/// reserved messages wait for a slot, shrinks one slot per idle second.
pub(super) async fn autoscale_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut idle_ticks = 0u32;
    loop {
        tick.tick().await;
        let Some((max, min)) = *shared.autoscale.lock().unwrap_or_else(|p| p.into_inner()) else {
            continue;
        };
        let cur = shared.concurrency.load(Ordering::Acquire);
        let waiting = shared
            .reserved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        let running = shared.lock_running().len();
        // With a small prefetch window nothing waits in the worker: look at the
        // broker's backlog when every slot is busy.
        let waiting = if waiting == 0 && running >= cur && cur < max {
            backlog(&shared).await
        } else {
            waiting
        };
        if cur < min {
            shared.grow(min - cur);
        } else if cur > max {
            shared.shrink(cur - max);
        } else if waiting > 0 && cur < max {
            idle_ticks = 0;
            let n = waiting.min(max - cur);
            shared.grow(n);
            tracing::info!(worker = %shared.id, to = cur + n, "autoscale: grown");
        } else if waiting == 0 && running < cur && cur > min {
            idle_ticks += 1;
            if idle_ticks >= 4 {
                idle_ticks = 0;
                let n = shared.shrink(1);
                if n > 0 {
                    tracing::info!(worker = %shared.id, to = cur - n, "autoscale: shrunk");
                }
            }
        } else {
            idle_ticks = 0;
        }
    }
}

/// Messages waiting in the broker for the queues this worker consumes.
async fn backlog(shared: &Shared) -> usize {
    let queues = shared
        .queues
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    match shared.app.broker().queue_stats(&queues).await {
        Ok(stats) => stats.iter().map(|s| s.waiting() as usize).sum(),
        Err(e) => {
            tracing::warn!(worker = %shared.id, error = %e, "autoscale could not read queue lengths");
            0
        }
    }
}
