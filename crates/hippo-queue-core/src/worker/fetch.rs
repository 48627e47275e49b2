//! The fetch loop: leases messages while the prefetch window has room, and hands
//! them to the dispatcher (or starts one at once when a slot is free).
//!
//! It also reconciles, every `worker_lost_after`, the leases the broker holds for
//! this worker with the messages in its window: a lease the worker never received
//! (a fetch whose reply was lost to a timeout or a dropped connection) is handed
//! back. Reconciling here, between two fetches, means no fetch is in flight whose
//! leases could be mistaken for lost ones.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Shared;
use super::dispatch::Leased;
use super::execute::execute;
use crate::backend::{Delivery, DeliveryRef};
use crate::routing::fetch_order;

/// Leases messages while there is room, and hands them to the dispatcher.
pub(super) async fn fetch_loop(shared: Arc<Shared>, dispatch: mpsc::Sender<Leased>) {
    let mut n: u64 = 0;
    let mut backoff = Duration::from_millis(100);
    // Every queue this worker has fetched from: where its leases can be.
    let mut fetched_from: BTreeSet<String> = BTreeSet::new();
    let mut next_reconcile = Instant::now() + shared.settings.worker_lost_after;
    // Leases that reconciliation could not hand back (started, their settlement given
    // up): reported once, not on every pass.
    let mut stranded: HashSet<(String, u64)> = HashSet::new();
    loop {
        if shared.stop_fetch.is_cancelled() {
            return;
        }
        if shared.liveness.is_cut_off() {
            // Cut off from the broker: fetch nothing until a heartbeat lands (a fetch
            // sent now could run later, its reply lost, and lease to nobody).
            tokio::select! {
                _ = tokio::time::sleep(shared.settings.heartbeat_interval) => {}
                _ = shared.stop_fetch.cancelled() => return,
            }
            continue;
        }
        if Instant::now() >= next_reconcile {
            reconcile(&shared, &fetched_from, &mut stranded).await;
            next_reconcile = Instant::now() + shared.settings.worker_lost_after;
        }
        let freed = shared.window.freed();
        tokio::pin!(freed);
        freed.as_mut().enable();
        let held = shared.window.len();
        // the window follows pool_grow, pool_shrink and autoscale
        let limit = shared.window();
        let low_water = (limit / 4).max(1);
        // Refill in batches: wait until a quarter of the window is free (or the
        // worker is idle) rather than fetching one message per freed place.
        if held >= limit || (held > 0 && held + low_water > limit) {
            tokio::select! {
                _ = &mut freed => {}
                _ = tokio::time::sleep_until(next_reconcile) => {}
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
        fetched_from.extend(order.iter().cloned());
        let want = limit - held;
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
                if !hand_over(&shared, &dispatch, deliveries).await {
                    return;
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

/// Puts fetched messages in the window and starts or queues them. False when the
/// dispatcher has stopped.
async fn hand_over(
    shared: &Arc<Shared>,
    dispatch: &mpsc::Sender<Leased>,
    deliveries: Vec<Delivery>,
) -> bool {
    for d in deliveries {
        let d = Arc::new(d);
        let hold = shared.window.hold(&d);
        shared
            .reserved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((d.queue.clone(), d.token), d.clone());
        let leased = Leased { delivery: d, hold };
        // Nothing waits for a slot and one is free: start it here, saving the
        // hand-over to the dispatcher.
        if shared.queued.load(Ordering::Acquire) == 0
            && let Ok(permit) = shared.permits.clone().try_acquire_owned()
        {
            shared
                .tracker
                .spawn(execute(shared.clone(), leased, permit));
            continue;
        }
        shared.queued.fetch_add(1, Ordering::AcqRel);
        if dispatch.send(leased).await.is_err() {
            return false;
        }
    }
    true
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
            tracing::warn!(worker = %shared.id, error = %e, "could not hand back messages of a cancelled queue; the next reconciliation does");
        }
    }
    keep
}

/// Hands back the leases the broker holds for this worker that are not in its
/// window. Started ones cannot be handed back (a settlement the broker refused for
/// good): they stay until the worker leaves, and are reported once in `stranded`.
async fn reconcile(
    shared: &Shared,
    queues: &BTreeSet<String>,
    stranded: &mut HashSet<(String, u64)>,
) {
    if queues.is_empty() {
        return;
    }
    let queues: Vec<String> = queues.iter().cloned().collect();
    let broker = shared.app.broker();
    let leases = match broker.leases(&shared.id, &queues).await {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!(worker = %shared.id, error = %e, "could not list leases");
            return;
        }
    };
    let unknown = shared.window.unknown(leases);
    stranded.retain(|k| unknown.iter().any(|l| (&l.queue, l.token) == (&k.0, k.1)));
    let new: Vec<DeliveryRef> = unknown
        .into_iter()
        .filter(|l| !stranded.contains(&(l.queue.clone(), l.token)))
        .collect();
    if new.is_empty() {
        return;
    }
    tracing::warn!(worker = %shared.id, count = new.len(), "leases this worker does not hold (a lost fetch reply, or a settlement given up); handing back the unstarted ones");
    if let Err(e) = broker.release(&shared.id, &new).await {
        tracing::warn!(worker = %shared.id, error = %e, "could not hand back unknown leases; trying again later");
        return;
    }
    // What is still leased now had started: it stays until the worker leaves.
    stranded.extend(new.into_iter().map(|l| (l.queue, l.token)));
}
