//! What the checks share: the imports, the kit of test tasks on fresh backends, and
//! waiting helpers.

#![allow(unused_imports)]

pub(super) use std::sync::atomic::{AtomicU32, Ordering};
pub(super) use std::sync::{Arc, Mutex};
pub(super) use std::time::{Duration, Instant};

pub(super) use serde::{Deserialize, Serialize};

pub(super) use crate::backend::{
    Broker, DeliveryFlags, Outgoing, RecoveryOutcome, ResultBackend, ResultWrite, Revocation,
    Settle, SettleOutcome, Settlement, WriteOutcome,
};
pub(super) use crate::control::{Command, ReplyBody, TaskInfo};
pub(super) use crate::events::EventKind;
pub(super) use crate::result::TaskMeta;
pub(super) use crate::task::kinds;
pub(super) use crate::testing::test_worker;
pub(super) use crate::{
    App, Error, Queue, Router, SendOptions, Task, TaskContext, TaskError, TaskOptions, TaskState,
};

pub(super) use super::Backends;
pub(super) use super::tasks::*;

pub(super) struct Kit {
    pub(super) app: App,
    pub(super) log: Log,
    pub(super) attempts: Arc<Mutex<Vec<Instant>>>,
    pub(super) runs: Arc<AtomicU32>,
    pub(super) soft_seen: Arc<AtomicU32>,
}

pub(super) fn kit(b: &Backends, router: Router) -> Kit {
    let app = b.app(router);
    let log: Log = Arc::default();
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let runs = Arc::new(AtomicU32::new(0));
    let soft_seen = Arc::new(AtomicU32::new(0));
    app.register(Record(log.clone()))
        .register(Flaky {
            attempts: attempts.clone(),
        })
        .register(Sleepy {
            runs: runs.clone(),
            soft_seen: soft_seen.clone(),
        })
        .register(Panicker)
        .register(Typed)
        .register(Big)
        .register(Stamp(attempts.clone()));
    Kit {
        app,
        log,
        attempts,
        runs,
        soft_seen,
    }
}

pub(super) fn log_of(k: &Kit) -> Vec<String> {
    k.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

pub(super) const WAIT: Duration = Duration::from_secs(15);

pub(super) async fn state(app: &App, id: &str) -> TaskState {
    app.result::<()>(id).state().await.expect("state")
}

/// Waits until a task function has been entered `n` times.
pub(super) async fn wait_runs(runs: &AtomicU32, n: u32) {
    let deadline = Instant::now() + WAIT;
    while runs.load(Ordering::SeqCst) < n {
        assert!(
            Instant::now() < deadline,
            "the task did not run {n} times within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(super) async fn wait_state(app: &App, id: &str, want: TaskState, within: Duration) -> TaskMeta {
    let deadline = Instant::now() + within;
    loop {
        if let Some(m) = app.backend().get(id).await.expect("get")
            && m.state == want
        {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "task {id} did not reach {want} within {within:?} (now {})",
            state(app, id).await
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub(super) async fn final_meta(app: &App, id: &str) -> TaskMeta {
    let m = app
        .backend()
        .wait(id, WAIT)
        .await
        .expect("wait")
        .unwrap_or_else(|| panic!("no record for {id}"));
    assert!(m.state.is_ready(), "task {id} not ready: {}", m.state);
    m
}

pub(super) fn sleepy(ms: u64, honor_soft: bool) -> SleepArgs {
    SleepArgs { ms, honor_soft }
}

pub(super) async fn until<F: Fn() -> bool>(what: &str, within: Duration, f: F) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(super) async fn stats(app: &App, queue: &str) -> crate::backend::QueueStats {
    app.broker()
        .queue_stats(&[queue.to_string()])
        .await
        .expect("queue stats")
        .remove(0)
}

pub(super) async fn raw_send(app: &App, opts: TaskOptions) -> String {
    app.apply_async::<Record>("raw".into(), SendOptions::new().with(opts))
        .await
        .expect("send")
        .id()
        .to_string()
}
