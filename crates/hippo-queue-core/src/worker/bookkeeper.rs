//! Batches a worker's writes: start marks, results and settlements of many tasks go to
//! the backends in one round trip each, in two overlapping stages.
//!
//! Results are always stored before their message is settled, so a crash between the
//! two redelivers a task whose result is already final (and the fencing rule keeps it).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::App;
use crate::backend::{DeliveryRef, ResultWrite, SettleOutcome, Settlement, WriteOutcome};
use crate::events::Event;

/// Most operations written in one batch.
const MAX_BATCH: usize = 512;

/// The answer to a start request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartReply {
    /// Run it.
    Go,
    /// The lease is gone: do not run, do not settle.
    Fenced,
    /// The stored state is already final (revoked, or finished by an earlier
    /// delivery): do not run, just ack.
    AlreadyFinal,
}

pub(crate) enum Op {
    Start {
        delivery: DeliveryRef,
        meta: Option<ResultWrite>,
        reply: oneshot::Sender<StartReply>,
    },
    Finish {
        result: Option<ResultWrite>,
        settlement: Settlement,
    },
    /// Results with no message to settle (recovered tasks, garbage messages already
    /// settled).
    Record(ResultWrite),
    /// A task event, written with the batch.
    Event(Event),
    /// Everything before this has been written.
    Flush(oneshot::Sender<()>),
}

pub(crate) struct Bookkeeper {
    pub app: App,
    pub worker: String,
    pub kill: CancellationToken,
}

/// What the recording stage hands to the settling stage.
enum Settling {
    Settle(Settlement),
    Flush(oneshot::Sender<()>),
}

/// Takes up to `MAX_BATCH` items: waits for the first, then takes what is ready.
async fn next_batch<T>(
    rx: &mut mpsc::UnboundedReceiver<T>,
    kill: &CancellationToken,
) -> Option<Vec<T>> {
    let first = tokio::select! {
        // once killed, nothing more is written (as after a crash)
        biased;
        _ = kill.cancelled() => None,
        item = rx.recv() => item,
    }?;
    let mut batch = Vec::with_capacity(64);
    batch.push(first);
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
    Some(batch)
}

impl Bookkeeper {
    /// Runs two stages: one stores results and start marks, the other settles
    /// messages whose results are stored. Each batches whatever arrived while its
    /// previous write was in flight, and the two overlap.
    pub(crate) async fn run(self, rx: mpsc::UnboundedReceiver<Op>) {
        let me = Arc::new(self);
        let (tx, settle_rx) = mpsc::unbounded_channel();
        let settler = tokio::spawn(me.clone().settle_stage(settle_rx));
        me.record_stage(rx, tx).await;
        let _ = settler.await;
    }

    async fn record_stage(
        &self,
        mut rx: mpsc::UnboundedReceiver<Op>,
        settle: mpsc::UnboundedSender<Settling>,
    ) {
        while let Some(ops) = next_batch(&mut rx, &self.kill).await {
            if !self.record(ops, &settle).await {
                return;
            }
        }
    }

    async fn settle_stage(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Settling>) {
        let broker = self.app.broker().clone();
        while let Some(items) = next_batch(&mut rx, &self.kill).await {
            let mut settlements = Vec::with_capacity(items.len());
            let mut flushes = Vec::new();
            for item in items {
                match item {
                    Settling::Settle(s) => settlements.push(s),
                    Settling::Flush(tx) => flushes.push(tx),
                }
            }
            if !settlements.is_empty() {
                let Some(outcomes) = self
                    .retrying("settle", || broker.settle(&self.worker, &settlements))
                    .await
                else {
                    return;
                };
                for (s, o) in settlements.iter().zip(outcomes) {
                    if o == SettleOutcome::Fenced {
                        tracing::warn!(task_id = %s.delivery.id, "settle refused: the lease was recovered by another worker");
                    }
                }
            }
            for f in flushes {
                let _ = f.send(());
            }
        }
    }

    /// Stores one batch of results and start marks, answers the starts, and passes
    /// the settlements on. Returns false when the worker was killed.
    async fn record(&self, ops: Vec<Op>, settle: &mpsc::UnboundedSender<Settling>) -> bool {
        let mut starts = Vec::new();
        let mut start_metas: Vec<Option<usize>> = Vec::new();
        let mut replies = Vec::new();
        let mut writes = Vec::new();
        let mut after = Vec::new();
        let mut events = Vec::new();
        for op in ops {
            match op {
                Op::Start {
                    delivery,
                    meta,
                    reply,
                } => {
                    start_metas.push(meta.map(|m| {
                        writes.push(m);
                        writes.len() - 1
                    }));
                    starts.push(delivery);
                    replies.push(reply);
                }
                Op::Finish { result, settlement } => {
                    if let Some(r) = result {
                        writes.push(r);
                    }
                    after.push(Settling::Settle(settlement));
                }
                Op::Record(w) => writes.push(w),
                Op::Event(e) => events.push(e),
                Op::Flush(tx) => after.push(Settling::Flush(tx)),
            }
        }
        let backend = self.app.backend().clone();
        let broker = self.app.broker().clone();
        let store = async {
            if writes.is_empty() {
                Some(Vec::new())
            } else {
                self.retrying("store results", || backend.store(&writes))
                    .await
            }
        };
        let start = async {
            if starts.is_empty() {
                Some(Vec::new())
            } else {
                self.retrying("mark started", || broker.start(&self.worker, &starts))
                    .await
            }
        };
        let emit = async {
            if !events.is_empty()
                && let Err(e) = broker.emit(&events).await
            {
                // Events are for monitoring: never hold tasks back for them.
                tracing::warn!(worker = %self.worker, error = %e, "events dropped");
            }
        };
        let (Some(stored), Some(started), ()) = tokio::join!(store, start, emit) else {
            return false;
        };
        for ((reply, outcome), meta_idx) in replies.into_iter().zip(started).zip(start_metas) {
            let answer = if outcome == SettleOutcome::Fenced {
                StartReply::Fenced
            } else if meta_idx.is_some_and(|i| stored.get(i) == Some(&WriteOutcome::Refused)) {
                StartReply::AlreadyFinal
            } else {
                StartReply::Go
            };
            let _ = reply.send(answer);
        }
        for item in after {
            // The settling stage only stops when the worker is killed.
            let _ = settle.send(item);
        }
        true
    }

    async fn retrying<T, E, F, Fut>(&self, what: &str, mut call: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        let mut delay = Duration::from_millis(50);
        loop {
            match call().await {
                Ok(v) => return Some(v),
                Err(e) => {
                    tracing::warn!(worker = %self.worker, error = %e, "{what} failed; retrying in {delay:?}");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.kill.cancelled() => return None,
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// A cheap handle for sending operations.
#[derive(Clone)]
pub(crate) struct Books(pub(crate) Arc<mpsc::UnboundedSender<Op>>);

impl Books {
    pub(crate) fn send(&self, op: Op) {
        // The bookkeeper only stops when the worker is killed; then nothing may be
        // written anyway.
        let _ = self.0.send(op);
    }

    pub(crate) async fn start(
        &self,
        delivery: DeliveryRef,
        meta: Option<ResultWrite>,
    ) -> Option<StartReply> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Start {
            delivery,
            meta,
            reply: tx,
        });
        rx.await.ok()
    }

    pub(crate) async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Flush(tx));
        let _ = rx.await;
    }
}
