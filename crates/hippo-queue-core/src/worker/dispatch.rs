//! The dispatch loop: starts reserved messages as concurrency slots free up, and on
//! stop hands the unstarted ones back to the broker.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Shared;
use super::WRITE_OUT;
use super::execute::execute;
use super::window::Hold;
use crate::backend::Delivery;

/// A message in the worker's hands, with its place in the window.
pub(crate) struct Leased {
    /// The message.
    pub delivery: Arc<Delivery>,
    /// Its place in the window, freed once its settlement is written.
    pub hold: Hold,
}

/// Starts reserved messages as concurrency slots free up. On stop, hands the
/// unstarted ones back to the broker and returns how many.
pub(super) async fn dispatch_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Leased>,
) -> HandedBack {
    let mut pending: Option<Leased> = None;
    loop {
        let next = match pending.take() {
            Some(d) => Some(d),
            None => tokio::select! {
                d = rx.recv() => d,
                _ = shared.stop_fetch.cancelled() => None,
            },
        };
        let Some(leased) = next else { break };
        let permit = tokio::select! {
            p = shared.permits.clone().acquire_owned() => p,
            _ = shared.stop_fetch.cancelled() => {
                pending = Some(leased);
                break;
            }
        };
        let Ok(permit) = permit else {
            pending = Some(leased);
            break;
        };
        if shared.stop_fetch.is_cancelled() {
            pending = Some(leased);
            break;
        }
        shared.queued.fetch_sub(1, Ordering::AcqRel);
        // Solo has one permit, so it runs one task at a time like the others.
        shared
            .tracker
            .spawn(execute(shared.clone(), leased, permit));
    }
    rx.close();
    let mut unstarted: Vec<Leased> = pending.into_iter().collect();
    while let Ok(d) = rx.try_recv() {
        unstarted.push(d);
    }
    hand_back(&shared, unstarted).await
}

/// What a stopping dispatcher did with the reserved messages.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct HandedBack {
    /// Handed back to their queues.
    pub released: usize,
    /// Could not be handed back in time: still leased, left to recovery.
    pub stranded: usize,
}

/// Hands reserved messages back to their queues.
async fn hand_back(shared: &Shared, unstarted: Vec<Leased>) -> HandedBack {
    let count = unstarted.len();
    if count == 0 {
        return HandedBack::default();
    }
    let refs: Vec<_> = unstarted.iter().map(|l| l.delivery.to_ref()).collect();
    {
        let mut reserved = shared.reserved.lock().unwrap_or_else(|p| p.into_inner());
        for l in &unstarted {
            reserved.remove(&(l.delivery.queue.clone(), l.delivery.token));
        }
    }
    let release = async {
        let mut delay = Duration::from_millis(50);
        for attempt in 0..5 {
            match shared.app.broker().release(&shared.id, &refs).await {
                Ok(()) => return true,
                Err(e) => {
                    tracing::warn!(worker = %shared.id, error = %e, attempt, "could not hand back reserved messages");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        false
    };
    let released = tokio::time::timeout(WRITE_OUT, release)
        .await
        .unwrap_or(false);
    if !released {
        tracing::warn!(worker = %shared.id, count, "could not hand back reserved messages; they are recovered with the worker");
    }
    // Handed back (or recovered with the worker when it unregisters): out of the
    // window either way.
    drop(unstarted);
    if released {
        HandedBack {
            released: count,
            stranded: 0,
        }
    } else {
        HandedBack {
            released: 0,
            stranded: count,
        }
    }
}
