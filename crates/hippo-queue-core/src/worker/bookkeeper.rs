//! Batches a worker's writes: start marks, results and settlements of many tasks go to
//! the backends in one round trip each, in two overlapping stages.
//!
//! Results are always stored before their message is settled, so a crash between the
//! two redelivers a task whose result is already final (and the fencing rule keeps it).
//!
//! Both stages read bounded channels: a writer that falls behind makes the tasks
//! that report to it wait, and the prefetch window (a message counts until its
//! settlement is written) stops fetching. A write the backend refuses for good (an
//! encoding or size error, not an outage) never blocks the batch behind it: the
//! batch is written one by one, and a result that cannot be stored is replaced by a
//! FAILURE record naming why.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::window::Hold;
use crate::App;
use crate::TaskState;
use crate::backend::{
    BackendError, DeliveryRef, ResultWrite, SettleOutcome, Settlement, WriteOutcome,
};
use crate::events::Event;
use crate::task::kinds;

/// Most operations written in one batch.
const MAX_BATCH: usize = 512;
/// Most bytes of results written in one batch (at least one result).
const MAX_BATCH_BYTES: usize = 32 << 20;
/// Operations waiting for the recording stage.
const BOOKS_CAPACITY: usize = 4096;
/// Settlements waiting for the settling stage.
const SETTLE_CAPACITY: usize = 4096;

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
        /// The message's place in the window, freed once the settlement is written.
        hold: Option<Hold>,
    },
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
    Settle(Settlement, Option<Hold>),
    Flush(oneshot::Sender<()>),
}

/// The bytes of results an operation writes.
trait Weight {
    fn weight(&self) -> usize;
}

impl Weight for Op {
    fn weight(&self) -> usize {
        let result = |w: &ResultWrite| w.meta.result.as_ref().map_or(0, Vec::len);
        match self {
            Op::Start { meta: Some(w), .. } => result(w),
            Op::Finish {
                result: Some(w), ..
            } => result(w),
            _ => 0,
        }
    }
}

impl Weight for Settling {
    fn weight(&self) -> usize {
        match self {
            Settling::Settle(s, _) => match &s.action {
                crate::backend::Settle::Retry { payload, .. } => payload.len(),
                _ => 0,
            },
            Settling::Flush(_) => 0,
        }
    }
}

/// Takes up to `MAX_BATCH` items and `MAX_BATCH_BYTES` bytes: waits for the first,
/// then takes what is ready.
async fn next_batch<T: Weight>(
    rx: &mut mpsc::Receiver<T>,
    kill: &CancellationToken,
) -> Option<Vec<T>> {
    let first = tokio::select! {
        // once killed, nothing more is written (as after a crash)
        biased;
        _ = kill.cancelled() => None,
        item = rx.recv() => item,
    }?;
    let mut bytes = first.weight();
    let mut batch = Vec::with_capacity(64);
    batch.push(first);
    while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
        match rx.try_recv() {
            Ok(item) => {
                bytes += item.weight();
                batch.push(item);
            }
            Err(_) => break,
        }
    }
    Some(batch)
}

impl Bookkeeper {
    /// Runs two stages: one stores results and start marks, the other settles
    /// messages whose results are stored. Each batches whatever arrived while its
    /// previous write was in flight, and the two overlap.
    pub(crate) async fn run(self, rx: mpsc::Receiver<Op>) {
        let me = Arc::new(self);
        let (tx, settle_rx) = mpsc::channel(SETTLE_CAPACITY);
        let settler = tokio::spawn(me.clone().settle_stage(settle_rx));
        me.record_stage(rx, tx).await;
        let _ = settler.await;
    }

    async fn record_stage(&self, mut rx: mpsc::Receiver<Op>, settle: mpsc::Sender<Settling>) {
        while let Some(ops) = next_batch(&mut rx, &self.kill).await {
            if !self.record(ops, &settle).await {
                return;
            }
        }
    }

    async fn settle_stage(self: Arc<Self>, mut rx: mpsc::Receiver<Settling>) {
        while let Some(items) = next_batch(&mut rx, &self.kill).await {
            let mut settlements = Vec::with_capacity(items.len());
            let mut holds = Vec::with_capacity(items.len());
            let mut flushes = Vec::new();
            for item in items {
                match item {
                    Settling::Settle(s, hold) => {
                        settlements.push(s);
                        holds.push(hold);
                    }
                    Settling::Flush(tx) => flushes.push(tx),
                }
            }
            if !settlements.is_empty() {
                let Some(outcomes) = self.settle(&settlements).await else {
                    return;
                };
                for (s, o) in settlements.iter().zip(outcomes) {
                    match o {
                        Some(SettleOutcome::Done) => {}
                        Some(SettleOutcome::Fenced) => {
                            tracing::warn!(task_id = %s.delivery.id, "settle refused: the lease was recovered by another worker")
                        }
                        None => {
                            tracing::error!(task_id = %s.delivery.id, "settle could not be written; the message stays leased until this worker stops")
                        }
                    }
                }
            }
            // Written: these messages leave the window.
            drop(holds);
            for f in flushes {
                let _ = f.send(());
            }
        }
    }

    /// Settles a batch; a batch the broker refuses for good is settled one by one,
    /// and a settlement refused alone is given up (`None`). `None` overall when the
    /// worker was killed.
    async fn settle(&self, settlements: &[Settlement]) -> Option<Vec<Option<SettleOutcome>>> {
        let broker = self.app.broker();
        match self
            .retrying("settle", || broker.settle(&self.worker, settlements))
            .await?
        {
            Ok(outcomes) => Some(outcomes.into_iter().map(Some).collect()),
            Err(e) => {
                tracing::error!(worker = %self.worker, error = %e, "settle batch refused; settling one by one");
                let mut out = Vec::with_capacity(settlements.len());
                for s in settlements {
                    let one = std::slice::from_ref(s);
                    match self
                        .retrying("settle", || broker.settle(&self.worker, one))
                        .await?
                    {
                        Ok(o) => out.push(o.first().copied()),
                        Err(e) => {
                            tracing::error!(task_id = %s.delivery.id, error = %e, "settle refused");
                            out.push(None);
                        }
                    }
                }
                Some(out)
            }
        }
    }

    /// Stores one batch of results and start marks, answers the starts, and passes
    /// the settlements on. Returns false when the worker was killed.
    async fn record(&self, ops: Vec<Op>, settle: &mpsc::Sender<Settling>) -> bool {
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
                Op::Finish {
                    result,
                    settlement,
                    hold,
                } => {
                    if let Some(r) = result {
                        writes.push(r);
                    }
                    after.push(Settling::Settle(settlement, hold));
                }
                Op::Event(e) => events.push(e),
                Op::Flush(tx) => after.push(Settling::Flush(tx)),
            }
        }
        let broker = self.app.broker().clone();
        let store = async {
            if writes.is_empty() {
                Some(Vec::new())
            } else {
                self.store(writes).await
            }
        };
        let start = async {
            if starts.is_empty() {
                return Some(Vec::new());
            }
            match self
                .retrying("mark started", || broker.start(&self.worker, &starts))
                .await?
            {
                Ok(outcomes) => Some(outcomes),
                Err(e) => {
                    // Not run: their leases go back through reconciliation.
                    tracing::error!(worker = %self.worker, error = %e, "start marks refused; the tasks are not run");
                    Some(vec![SettleOutcome::Fenced; starts.len()])
                }
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
            if settle.send(item).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Stores a batch of results. A batch the backend refuses for good is stored one
    /// by one, and a record refused alone is replaced by a FAILURE record naming why
    /// (given up, with an error, if even that is refused). `None` when killed.
    async fn store(&self, writes: Vec<ResultWrite>) -> Option<Vec<WriteOutcome>> {
        let backend = self.app.backend();
        let e = match self
            .retrying("store results", || backend.store(&writes))
            .await?
        {
            Ok(outcomes) => return Some(outcomes),
            Err(e) => e,
        };
        tracing::error!(worker = %self.worker, error = %e, "result batch refused; storing one by one");
        let mut out = Vec::with_capacity(writes.len());
        for w in writes {
            let one = std::slice::from_ref(&w);
            match self.retrying("store result", || backend.store(one)).await? {
                Ok(o) => out.push(o.first().copied().unwrap_or(WriteOutcome::Refused)),
                Err(e) => {
                    tracing::error!(task_id = %w.meta.task_id, error = %e, "result refused; a FAILURE record takes its place");
                    let failure = [unstorable(w, &e)];
                    match self
                        .retrying("store result", || backend.store(&failure))
                        .await?
                    {
                        Ok(o) => out.push(o.first().copied().unwrap_or(WriteOutcome::Refused)),
                        Err(e) => {
                            tracing::error!(task_id = %failure[0].meta.task_id, error = %e, "no record could be stored");
                            out.push(WriteOutcome::Refused);
                        }
                    }
                }
            }
        }
        Some(out)
    }

    /// Calls until the call succeeds or the value is refused for what it is
    /// ([`BackendError::is_rejected`]); every other error is retried with backoff
    /// (an outage passes; a misconfiguration, such as a missing permission, is logged
    /// as an error until it is fixed, and nothing is acknowledged meanwhile). `None`
    /// when the worker is killed while waiting.
    async fn retrying<T, F, Fut>(&self, what: &str, mut call: F) -> Option<Result<T, BackendError>>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, BackendError>>,
    {
        let mut delay = Duration::from_millis(50);
        loop {
            match call().await {
                Ok(v) => return Some(Ok(v)),
                Err(e) if e.is_rejected() => return Some(Err(e)),
                Err(e) => {
                    if e.is_retryable() {
                        tracing::warn!(worker = %self.worker, error = %e, "{what} failed; retrying in {delay:?}");
                    } else {
                        tracing::error!(worker = %self.worker, error = %e, "{what} failed; retrying in {delay:?} (fix the cause: nothing is acknowledged meanwhile)");
                    }
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

/// The record of a result that cannot be stored: FAILURE, without the output,
/// naming why.
fn unstorable(mut w: ResultWrite, e: &BackendError) -> ResultWrite {
    let kind = if w.meta.result.is_some() {
        kinds::RESULT_NOT_STORED
    } else {
        kinds::ERROR
    };
    w.meta.state = TaskState::Failure;
    w.meta.result = None;
    w.meta.error = Some(crate::TaskFailure::new(
        kind,
        format!("the task's result could not be stored: {e}"),
    ));
    w
}

/// A cheap handle for sending operations.
#[derive(Clone)]
pub(crate) struct Books(mpsc::Sender<Op>);

impl Books {
    /// A handle and the receiver the bookkeeper reads.
    pub(crate) fn new() -> (Books, mpsc::Receiver<Op>) {
        let (tx, rx) = mpsc::channel(BOOKS_CAPACITY);
        (Books(tx), rx)
    }

    /// Sends an operation, waiting while the bookkeeper is behind.
    pub(crate) async fn send(&self, op: Op) {
        // The bookkeeper only stops when the worker is killed; then nothing may be
        // written anyway.
        let _ = self.0.send(op).await;
    }

    /// Sends an operation if there is room now (for events, which may be dropped).
    pub(crate) fn offer(&self, op: Op) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.0.try_send(op) {
            tracing::warn!("task event dropped: the worker's writer is behind");
        }
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
        })
        .await;
        rx.await.ok()
    }

    pub(crate) async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Flush(tx)).await;
        let _ = rx.await;
    }
}
