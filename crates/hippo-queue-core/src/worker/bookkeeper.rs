//! Batches a worker's writes: start marks, results and settlements of many tasks go to
//! the backends in one round trip each.
//!
//! Results are always stored before their message is settled, so a crash between the
//! two redelivers a task whose result is already final (and the fencing rule keeps it).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::App;
use crate::backend::{DeliveryRef, ResultWrite, SettleOutcome, Settlement, WriteOutcome};

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
    /// Everything before this has been written.
    Flush(oneshot::Sender<()>),
}

pub(crate) struct Bookkeeper {
    pub app: App,
    pub worker: String,
    pub kill: CancellationToken,
}

impl Bookkeeper {
    pub(crate) async fn run(self, mut rx: mpsc::UnboundedReceiver<Op>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let first = tokio::select! {
                op = rx.recv() => op,
                _ = self.kill.cancelled() => return,
            };
            let Some(first) = first else { return };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            if !self.write(std::mem::take(&mut batch)).await {
                return;
            }
        }
    }

    /// Writes one batch, retrying backend errors with backoff until they succeed or
    /// the worker is killed. Returns false when killed.
    async fn write(&self, ops: Vec<Op>) -> bool {
        let mut starts = Vec::new();
        let mut start_metas: Vec<Option<usize>> = Vec::new();
        let mut replies = Vec::new();
        let mut settlements = Vec::new();
        let mut writes = Vec::new();
        let mut flushes = Vec::new();
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
                    settlements.push(settlement);
                }
                Op::Record(w) => writes.push(w),
                Op::Flush(tx) => flushes.push(tx),
            }
        }
        // Results and start marks go out together; settlements only after their
        // results are stored.
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
        let (Some(stored), Some(started)) = tokio::join!(store, start) else {
            return false;
        };
        if !settlements.is_empty() {
            match self
                .retrying("settle", || broker.settle(&self.worker, &settlements))
                .await
            {
                Some(outcomes) => {
                    for (s, o) in settlements.iter().zip(outcomes) {
                        if o == SettleOutcome::Fenced {
                            tracing::warn!(task_id = %s.delivery.id, "settle refused: the lease was recovered by another worker");
                        }
                    }
                }
                None => return false,
            }
        }
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
        for f in flushes {
            let _ = f.send(());
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
