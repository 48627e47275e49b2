//! The backend conformance suite: the behaviours every [`Broker`] and
//! [`ResultBackend`] must show, run through real workers.
//!
//! A backend crate runs the whole suite from one integration test file:
//!
//! ```ignore
//! hippo_queue_core::conformance_suite!(async {
//!     let backend = MyBackend::connect(...).await.unwrap();
//!     hippo_queue_core::conformance::Backends::new(backend.clone(), backend)
//! });
//! ```
//!
//! The factory is called once per test and must return fresh, empty backends.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::backend::{
    Broker, DeliveryFlags, Outgoing, RecoveryOutcome, ResultBackend, ResultWrite, Revocation,
    Settle, SettleOutcome, Settlement, WriteOutcome,
};
use crate::control::{Command, ReplyBody, TaskInfo};
use crate::events::EventKind;
use crate::result::TaskMeta;
use crate::task::kinds;
use crate::testing::test_worker;
use crate::{
    App, Error, Queue, Router, SendOptions, Task, TaskContext, TaskError, TaskOptions, TaskState,
};

/// The backends under test.
#[derive(Clone)]
pub struct Backends {
    /// The broker.
    pub broker: Arc<dyn Broker>,
    /// The result backend.
    pub results: Arc<dyn ResultBackend>,
    guard: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl Backends {
    /// Wraps a broker and a result backend.
    pub fn new(broker: impl Broker, results: impl ResultBackend) -> Self {
        Backends {
            broker: Arc::new(broker),
            results: Arc::new(results),
            guard: None,
        }
    }

    /// Keeps `guard` (a test server, a temporary directory) alive as long as the test.
    pub fn with_guard(mut self, guard: impl std::any::Any + Send + Sync) -> Self {
        self.guard = Some(Arc::new(guard));
        self
    }

    /// Whether a guard is attached.
    pub fn has_guard(&self) -> bool {
        self.guard.is_some()
    }

    fn app(&self, router: Router) -> App {
        App::builder()
            .broker(self.broker.clone())
            .backend(self.results.clone())
            .router(router)
            .build()
    }
}

/// Generates one `#[tokio::test]` per conformance check, each on fresh backends from
/// `$factory` (an expression evaluating to a future of [`Backends`]).
#[macro_export]
macro_rules! conformance_suite {
    ($factory:expr) => {
        $crate::conformance_suite!(@tests $factory;
            priority_order, queue_priority_fairness, topic_routing, retry_count_and_backoff,
            retry_waits_in_broker, autoretry_only_chosen_kinds, soft_then_hard_limit,
            soft_limit_cleanup, revoke_before_start, revocation_is_durable,
            revoke_running_with_terminate, expired_task_is_revoked, lost_worker_recovery,
            killed_worker_acks_late, killed_worker_early_ack, graceful_shutdown,
            shutdown_grace_expires, result_expiry, garbage_messages, fencing, panic_is_failure,
            get_waits_and_times_out, call_round_trip, countdown_not_early, consumers_change, bulk_send,
            ignore_result, compressed_result, too_many_deliveries, blocking_and_solo_pools,
            events_and_registry, revoke_running_keeps_result, redelivered_finished_not_rerun,
            control_inspect, control_commands, rate_limit_across_workers, autoscale,
            control_input_validated, revocations_read_incrementally, worker_names_and_leases,
            one_name_started_twice_at_once, lost_fetch_reply_reconciled
        );
    };
    (@tests $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let backends = $factory.await;
                $crate::conformance::$name(backends).await;
            }
        )*
    };
}

// ---------------------------------------------------------------------------------------
// Test tasks

type Log = Arc<Mutex<Vec<String>>>;

/// Appends its argument to a log.
struct Record(Log);

impl Task for Record {
    const NAME: &'static str = "conformance.record";
    type Args = String;
    type Output = String;
    async fn run(&self, _: &TaskContext, label: String) -> Result<String, TaskError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(label.clone());
        Ok(label)
    }
}

#[derive(Serialize, Deserialize)]
struct FlakyArgs {
    kind: String,
    fail_times: u32,
    explicit_retry_ms: Option<u64>,
}

/// Fails `fail_times` times with an error of `kind`, then succeeds.
struct Flaky {
    attempts: Arc<Mutex<Vec<Instant>>>,
}

impl Task for Flaky {
    const NAME: &'static str = "conformance.flaky";
    type Args = FlakyArgs;
    type Output = u32;
    async fn run(&self, ctx: &TaskContext, a: FlakyArgs) -> Result<u32, TaskError> {
        self.attempts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Instant::now());
        if ctx.retries() < a.fail_times {
            let e = TaskError::new(a.kind, format!("attempt {} failed", ctx.retries()))
                .caused_by("the upstream said no");
            return Err(match a.explicit_retry_ms {
                Some(ms) => e.retry_in(Duration::from_millis(ms)),
                None => e,
            });
        }
        Ok(ctx.retries())
    }
}

#[derive(Serialize, Deserialize)]
struct SleepArgs {
    ms: u64,
    honor_soft: bool,
}

/// Sleeps; notes when it saw the soft limit; optionally stops at it.
struct Sleepy {
    runs: Arc<AtomicU32>,
    soft_seen: Arc<AtomicU32>,
}

impl Task for Sleepy {
    const NAME: &'static str = "conformance.sleepy";
    type Args = SleepArgs;
    type Output = u64;
    fn options() -> TaskOptions {
        TaskOptions::new().track_started(true)
    }
    async fn run(&self, ctx: &TaskContext, a: SleepArgs) -> Result<u64, TaskError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let sleep = tokio::time::sleep(Duration::from_millis(a.ms));
        tokio::pin!(sleep);
        tokio::select! {
            _ = &mut sleep => return Ok(a.ms),
            _ = ctx.soft_limit() => {}
        }
        self.soft_seen.fetch_add(1, Ordering::SeqCst);
        if a.honor_soft {
            return Err(TaskError::soft_time_limit());
        }
        sleep.await;
        Ok(a.ms)
    }
}

/// Records when it started.
struct Stamp(Arc<Mutex<Vec<Instant>>>);

impl Task for Stamp {
    const NAME: &'static str = "conformance.stamp";
    type Args = ();
    type Output = ();
    async fn run(&self, _: &TaskContext, _: ()) -> Result<(), TaskError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Instant::now());
        Ok(())
    }
}

/// Panics.
struct Panicker;

impl Task for Panicker {
    const NAME: &'static str = "conformance.panic";
    type Args = ();
    type Output = ();
    async fn run(&self, _: &TaskContext, _: ()) -> Result<(), TaskError> {
        panic!("deliberate panic in a task")
    }
}

#[derive(Serialize, Deserialize)]
struct Pair {
    a: i64,
    b: String,
}

/// Needs structured arguments.
struct Typed;

impl Task for Typed {
    const NAME: &'static str = "conformance.typed";
    type Args = Pair;
    type Output = String;
    async fn run(&self, _: &TaskContext, p: Pair) -> Result<String, TaskError> {
        Ok(format!("{}{}", p.b, p.a))
    }
}

/// Returns a large string (for compression).
struct Big;

impl Task for Big {
    const NAME: &'static str = "conformance.big";
    type Args = usize;
    type Output = String;
    fn options() -> TaskOptions {
        TaskOptions::new().compression(crate::Compression::Zstd)
    }
    async fn run(&self, _: &TaskContext, n: usize) -> Result<String, TaskError> {
        Ok("hippo ".repeat(n))
    }
}

struct Kit {
    app: App,
    log: Log,
    attempts: Arc<Mutex<Vec<Instant>>>,
    runs: Arc<AtomicU32>,
    soft_seen: Arc<AtomicU32>,
}

fn kit(b: &Backends, router: Router) -> Kit {
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

fn log_of(k: &Kit) -> Vec<String> {
    k.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

const WAIT: Duration = Duration::from_secs(15);

async fn state(app: &App, id: &str) -> TaskState {
    app.result::<()>(id).state().await.expect("state")
}

/// Waits until a task function has been entered `n` times.
async fn wait_runs(runs: &AtomicU32, n: u32) {
    let deadline = Instant::now() + WAIT;
    while runs.load(Ordering::SeqCst) < n {
        assert!(
            Instant::now() < deadline,
            "the task did not run {n} times within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn wait_state(app: &App, id: &str, want: TaskState, within: Duration) -> TaskMeta {
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

async fn final_meta(app: &App, id: &str) -> TaskMeta {
    let m = app
        .backend()
        .wait(id, WAIT)
        .await
        .expect("wait")
        .unwrap_or_else(|| panic!("no record for {id}"));
    assert!(m.state.is_ready(), "task {id} not ready: {}", m.state);
    m
}

fn sleepy(ms: u64, honor_soft: bool) -> SleepArgs {
    SleepArgs { ms, honor_soft }
}

async fn until<F: Fn() -> bool>(what: &str, within: Duration, f: F) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn stats(app: &App, queue: &str) -> crate::backend::QueueStats {
    app.broker()
        .queue_stats(&[queue.to_string()])
        .await
        .expect("queue stats")
        .remove(0)
}

// ---------------------------------------------------------------------------------------
// The checks

/// Higher message priority runs first; FIFO within a priority.
pub async fn priority_order(b: Backends) {
    let k = kit(&b, Router::default());
    let mut expected = Vec::new();
    for i in 0..30u32 {
        let p = (i * 7 % 10) as u8;
        let label = format!("p{p}-{i:02}");
        expected.push((p, i, label.clone()));
        k.app
            .apply_async::<Record>(label, SendOptions::new().priority(p))
            .await
            .expect("send");
    }
    let w = test_worker(&k.app)
        .concurrency(1)
        .prefetch_multiplier(1)
        .pool(crate::Pool::Solo)
        .start()
        .await
        .expect("worker");
    until("all 30 ran", WAIT, || log_of(&k).len() == 30).await;
    w.shutdown().await;
    expected.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let want: Vec<String> = expected.into_iter().map(|e| e.2).collect();
    assert_eq!(log_of(&k), want);
}

/// Queues are served by queue priority, and a lower queue is not starved.
pub async fn queue_priority_fairness(b: Backends) {
    let router = Router::new("low")
        .queue(Queue::new("high").priority(9))
        .queue(Queue::new("low").priority(1));
    let k = kit(&b, router);
    for i in 0..12 {
        k.app
            .apply_async::<Record>(format!("low-{i}"), SendOptions::new().queue("low"))
            .await
            .expect("send");
        k.app
            .apply_async::<Record>(format!("high-{i}"), SendOptions::new().queue("high"))
            .await
            .expect("send");
    }
    let w = test_worker(&k.app)
        .concurrency(1)
        .prefetch_multiplier(1)
        .fairness_interval(4)
        .pool(crate::Pool::Solo)
        .start()
        .await
        .expect("worker");
    until("all 24 ran", WAIT, || log_of(&k).len() == 24).await;
    w.shutdown().await;
    let log = log_of(&k);
    assert!(log[0].starts_with("high"), "{log:?}");
    let first_low = log
        .iter()
        .position(|l| l.starts_with("low"))
        .expect("low ran");
    let last_high = log
        .iter()
        .rposition(|l| l.starts_with("high"))
        .expect("high ran");
    assert!(first_low < 4, "low queue starved: {log:?}");
    assert!(first_low < last_high, "{log:?}");
    let highs_in_first_half = log[..12].iter().filter(|l| l.starts_with("high")).count();
    assert!(
        highs_in_first_half >= 9,
        "high queue not preferred: {log:?}"
    );
}

/// Routing keys pick queues by topic rules (the guide's four queues).
pub async fn topic_routing(b: Backends) {
    let k = kit(&b, Router::guide_preset());
    let cases = [
        ("memory.dedup", "memory_ops"),
        ("memory", "memory_ops"),
        ("memory.consolidate.user.x", "memory_ops"),
        ("background.health", "background"),
        ("scheduled.expire", "scheduled"),
        ("default", "default"),
    ];
    for (key, _) in cases {
        k.app
            .apply_async::<Record>(key.to_string(), SendOptions::new().routing_key(key))
            .await
            .expect("send");
    }
    let err = k
        .app
        .apply_async::<Record>("x".into(), SendOptions::new().routing_key("nowhere.at.all"))
        .await
        .expect_err("unroutable key must fail");
    assert!(err.to_string().contains("nowhere.at.all"), "{err}");
    for (queue, n) in [
        ("memory_ops", 3),
        ("background", 1),
        ("scheduled", 1),
        ("default", 1),
    ] {
        assert_eq!(stats(&k.app, queue).await.waiting(), n, "queue {queue}");
    }
    let w = test_worker(&k.app).start().await.expect("worker");
    until("all routed tasks ran", WAIT, || {
        log_of(&k).len() == cases.len()
    })
    .await;
    w.shutdown().await;
}

/// Autoretry runs `max_retries + 1` times with exponential backoff within bounds, then
/// fails with the chain of causes.
pub async fn retry_count_and_backoff(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let opts = TaskOptions::new()
        .autoretry_for_kind("flaky")
        .max_retries(3)
        .retry_backoff(Duration::from_millis(100))
        .retry_backoff_max(Duration::from_millis(250))
        .retry_jitter(false);
    let h = k
        .app
        .apply_async::<Flaky>(
            FlakyArgs {
                kind: "flaky".into(),
                fail_times: 100,
                explicit_retry_ms: None,
            },
            SendOptions::new().with(opts),
        )
        .await
        .expect("send");
    let m = final_meta(&k.app, h.id()).await;
    w.shutdown().await;
    assert_eq!(m.state, TaskState::Failure);
    assert_eq!(m.retries, 3);
    let err = m.error.expect("error recorded");
    assert_eq!(err.kind, "flaky");
    assert!(
        err.chain.iter().any(|c| c.contains("upstream said no")),
        "{err:?}"
    );
    assert!(
        err.chain.iter().any(|c| c.contains("retries exhausted")),
        "{err:?}"
    );
    let attempts = k.attempts.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(attempts.len(), 4, "one run plus three retries");
    let bounds = [100u64, 200, 250];
    for (i, pair) in attempts.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        let want = Duration::from_millis(bounds[i]);
        assert!(
            gap + Duration::from_millis(15) >= want,
            "retry {i} too early: {gap:?} < {want:?}"
        );
        assert!(
            gap <= want + Duration::from_millis(1500),
            "retry {i} too late: {gap:?}"
        );
    }
    // the typed handle reports the failure with its traceback
    let got = h
        .get(Duration::from_secs(1))
        .await
        .expect_err("failed task");
    assert!(
        matches!(
            got,
            Error::TaskFailed {
                state: TaskState::Failure,
                ..
            }
        ),
        "{got}"
    );
    assert!(
        h.traceback()
            .await
            .expect("tb")
            .expect("some")
            .contains("caused by")
    );
}

/// A retry waits in the broker's delayed set, not in worker memory.
pub async fn retry_waits_in_broker(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let h = k
        .app
        .delay::<Flaky>(FlakyArgs {
            kind: "transient".into(),
            fail_times: 1,
            explicit_retry_ms: Some(1500),
        })
        .await
        .expect("send");
    wait_state(&k.app, h.id(), TaskState::Retry, WAIT).await;
    // give the settle a moment to land, then look at the broker
    tokio::time::sleep(Duration::from_millis(200)).await;
    let s = stats(&k.app, "default").await;
    assert_eq!((s.delayed, s.reserved, s.waiting()), (1, 0, 0), "{s:?}");
    assert_eq!(w.stats().in_flight, 0);
    assert_eq!(h.get(WAIT).await.expect("succeeds on retry"), 1);
    w.shutdown().await;
}

/// Only the chosen error kinds are retried automatically; an explicit retry request is
/// always honoured.
pub async fn autoretry_only_chosen_kinds(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let opts = TaskOptions::new()
        .autoretry_for_kind("transient")
        .retry_backoff(Duration::from_millis(10))
        .retry_backoff_max(Duration::from_millis(20));
    let send = |kind: &str, explicit: Option<u64>| {
        let app = k.app.clone();
        let opts = opts.clone();
        let kind = kind.to_string();
        async move {
            app.apply_async::<Flaky>(
                FlakyArgs {
                    kind,
                    fail_times: 1,
                    explicit_retry_ms: explicit,
                },
                SendOptions::new().with(opts),
            )
            .await
            .expect("send")
        }
    };
    let retried = send("transient", None).await;
    let not_retried = send("fatal", None).await;
    let explicit = send("fatal", Some(10)).await;
    assert_eq!(retried.get(WAIT).await.expect("retried"), 1);
    assert_eq!(explicit.get(WAIT).await.expect("explicit retry"), 1);
    let m = final_meta(&k.app, not_retried.id()).await;
    assert_eq!((m.state, m.retries), (TaskState::Failure, 0));
    w.shutdown().await;
}

/// The soft limit is signalled first; a task that ignores it is aborted at the hard
/// limit and marked FAILURE.
pub async fn soft_then_hard_limit(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let opts = TaskOptions::new()
        .soft_time_limit(Duration::from_millis(150))
        .time_limit(Duration::from_millis(500));
    let sent = Instant::now();
    let h = k
        .app
        .apply_async::<Sleepy>(sleepy(30_000, false), SendOptions::new().with(opts))
        .await
        .expect("send");
    let m = final_meta(&k.app, h.id()).await;
    let took = sent.elapsed();
    assert_eq!(m.state, TaskState::Failure);
    assert_eq!(m.error.expect("error").kind, kinds::TIME_LIMIT);
    assert_eq!(
        k.soft_seen.load(Ordering::SeqCst),
        1,
        "soft limit was signalled"
    );
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // the slot was freed: the worker still runs tasks
    let next = k.app.delay::<Record>("after".into()).await.expect("send");
    assert_eq!(next.get(WAIT).await.expect("ran"), "after");
    // hard must exceed soft
    let bad = TaskOptions::new()
        .soft_time_limit(Duration::from_secs(3600))
        .time_limit(Duration::from_secs(600));
    let err = k
        .app
        .apply_async::<Sleepy>(sleepy(1, false), SendOptions::new().with(bad))
        .await
        .expect_err("hard below soft is refused");
    assert!(err.to_string().contains("must be above"), "{err}");
    w.shutdown().await;
}

/// A task may clean up at the soft limit and fail with a soft-limit error.
pub async fn soft_limit_cleanup(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let opts = TaskOptions::new()
        .soft_time_limit(Duration::from_millis(100))
        .time_limit(Duration::from_secs(20));
    let sent = Instant::now();
    let h = k
        .app
        .apply_async::<Sleepy>(sleepy(30_000, true), SendOptions::new().with(opts))
        .await
        .expect("send");
    let m = final_meta(&k.app, h.id()).await;
    assert_eq!(m.state, TaskState::Failure);
    assert_eq!(m.error.expect("error").kind, kinds::SOFT_TIME_LIMIT);
    assert!(sent.elapsed() < Duration::from_secs(5));
    w.shutdown().await;
}

/// A task revoked before it starts never runs and is REVOKED.
pub async fn revoke_before_start(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let h = k
        .app
        .apply_async::<Sleepy>(
            sleepy(1, false),
            SendOptions::new().countdown(Duration::from_millis(400)),
        )
        .await
        .expect("send");
    h.revoke(false).await.expect("revoke");
    let m = final_meta(&k.app, h.id()).await;
    assert_eq!(m.state, TaskState::Revoked);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        k.runs.load(Ordering::SeqCst),
        0,
        "a revoked task must not run"
    );
    assert_eq!(stats(&k.app, "default").await.delayed, 0);
    w.shutdown().await;
}

/// Revocations survive until workers that start later see them.
pub async fn revocation_is_durable(b: Backends) {
    let k = kit(&b, Router::default());
    let h = k.app.delay::<Sleepy>(sleepy(1, false)).await.expect("send");
    k.app.revoke(h.id(), false).await.expect("revoke");
    // no worker was running; one starts now
    let w = test_worker(&k.app).start().await.expect("worker");
    let deadline = Instant::now() + WAIT;
    while stats(&k.app, "default").await.waiting() > 0 {
        assert!(Instant::now() < deadline, "message not consumed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(k.runs.load(Ordering::SeqCst), 0);
    assert_eq!(state(&k.app, h.id()).await, TaskState::Revoked);
    let revs = k.app.broker().revocations().await.expect("revocations");
    assert!(revs.iter().any(|r| r.id == h.id()));
    w.shutdown().await;
}

/// `revocations_after` returns what was revoked after a cursor, in order, in bounded
/// reads.
pub async fn revocations_read_incrementally(b: Backends) {
    let broker = b.broker.clone();
    let rev = |id: &str| Revocation {
        id: id.to_string(),
        terminate: id.ends_with('t'),
        until: crate::time::now_ms() + 60_000,
    };
    broker.revoke(rev("before")).await.expect("revoke");
    let (none, start) = broker.revocations_after(None, 10).await.expect("cursor");
    assert!(none.is_empty(), "no cursor reads nothing: {none:?}");
    for id in ["a", "b-t", "c"] {
        broker.revoke(rev(id)).await.expect("revoke");
    }
    let (first, next) = broker
        .revocations_after(Some(&start), 2)
        .await
        .expect("read");
    assert_eq!(
        first.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["a", "b-t"]
    );
    assert!(first[1].terminate);
    let (rest, end) = broker
        .revocations_after(Some(&next), 10)
        .await
        .expect("read");
    assert_eq!(
        rest.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["c"]
    );
    let (empty, same) = broker
        .revocations_after(Some(&end), 10)
        .await
        .expect("read");
    assert!(empty.is_empty());
    assert_eq!(same, end, "an empty read keeps the cursor");
}

/// A worker name held by a live worker is refused; the leases of a dead holder are
/// recovered before a new worker with its name starts; `leases` lists what the
/// backend holds for a worker.
pub async fn worker_names_and_leases(b: Backends) {
    let k = kit(&b, Router::default());
    let broker = k.app.broker().clone();
    let q = vec!["default".to_string()];
    let h = raw_send(
        &k.app,
        TaskOptions::new()
            .acks_late(true)
            .reject_on_worker_lost(true),
    )
    .await;
    assert_eq!(broker.worker_lease("w-dead").await.expect("lease"), None);
    broker
        .heartbeat(
            "w-dead",
            "test-incarnation",
            Duration::from_millis(300),
            Duration::from_millis(100),
        )
        .await
        .expect("beat");
    let d = broker
        .fetch("w-dead", &q, 1, Duration::from_secs(1))
        .await
        .expect("fetch");
    assert_eq!(d.len(), 1);
    let leases = broker.leases("w-dead", &q).await.expect("leases");
    assert_eq!(
        leases.iter().map(|l| l.token).collect::<Vec<_>>(),
        [d[0].token]
    );
    assert!(
        broker
            .worker_lease("w-dead")
            .await
            .expect("lease")
            .is_some_and(|l| !l.is_zero())
    );
    // alive: a second worker with its name waits for the lease, sees it renewed, and
    // is refused
    let beating = {
        let broker = broker.clone();
        tokio::spawn(async move {
            for _ in 0..8 {
                let _ = broker
                    .heartbeat(
                        "w-dead",
                        "test-incarnation",
                        Duration::from_millis(300),
                        Duration::from_millis(100),
                    )
                    .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let refused = test_worker(&k.app).name("w-dead").start().await;
    assert!(refused.is_err(), "a live name must be refused");
    let _ = beating.await;
    // dead: its lease is recovered first, and the task runs on the new worker
    tokio::time::sleep(Duration::from_millis(400)).await;
    let w = test_worker(&k.app)
        .name("w-dead")
        .start()
        .await
        .expect("a dead name is taken over");
    wait_state(&k.app, &h, TaskState::Success, WAIT).await;
    w.shutdown().await;
}

/// Two processes started at the same moment under one name: the claim is atomic, so
/// exactly one starts and the other is refused; once the first has gone, the name is
/// free again.
pub async fn one_name_started_twice_at_once(b: Backends) {
    let k = kit(&b, Router::default());
    for round in 0..5 {
        let (a, b) = tokio::join!(
            test_worker(&k.app).name("twin").start(),
            test_worker(&k.app).name("twin").start()
        );
        let started: Vec<_> = [a, b].into_iter().filter_map(Result::ok).collect();
        assert_eq!(
            started.len(),
            1,
            "round {round}: {} workers started under one name",
            started.len()
        );
        for w in started {
            w.shutdown().await;
        }
    }
}

/// Messages leased to a live worker whose fetch reply never reached it (here: a fetch
/// made under its name from outside) are handed back by the worker's reconciliation
/// and run, within about `worker_lost_after`.
pub async fn lost_fetch_reply_reconciled(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app)
        .name("w-reconcile")
        .queues(["other"])
        .start()
        .await
        .expect("worker");
    let h = k.app.delay::<Sleepy>(sleepy(1, false)).await.expect("send");
    // The worker does not consume `default` yet: the lease is made for it, as by a
    // fetch whose reply was lost.
    let q = vec!["default".to_string()];
    let lost = k
        .app
        .broker()
        .fetch("w-reconcile", &q, 10, Duration::from_secs(1))
        .await
        .expect("fetch");
    assert_eq!(lost.len(), 1);
    w.add_consumer("default").expect("consume default");
    let t = Instant::now();
    wait_state(&k.app, h.id(), TaskState::Success, Duration::from_secs(5)).await;
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "the lost lease was handed back only after {:?}",
        t.elapsed()
    );
    assert_eq!(k.runs.load(Ordering::SeqCst), 1);
    w.shutdown().await;
}

/// `revoke(terminate)` aborts a running task: REVOKED, and the worker goes on.
pub async fn revoke_running_with_terminate(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let h = k
        .app
        .delay::<Sleepy>(sleepy(60_000, false))
        .await
        .expect("send");
    wait_state(&k.app, h.id(), TaskState::Started, WAIT).await;
    assert_eq!(w.active().len(), 1);
    let t = Instant::now();
    h.revoke(true).await.expect("revoke");
    let m = final_meta(&k.app, h.id()).await;
    assert_eq!(m.state, TaskState::Revoked);
    until("the task left the worker", Duration::from_secs(5), || {
        w.active().is_empty()
    })
    .await;
    assert!(t.elapsed() < Duration::from_secs(5));
    let next = k.app.delay::<Record>("next".into()).await.expect("send");
    assert_eq!(next.get(WAIT).await.expect("ran"), "next");
    assert_eq!(w.stats().revoked, 1);
    w.shutdown().await;
}

/// A task that expires before it starts is REVOKED and never runs.
pub async fn expired_task_is_revoked(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let h = k
        .app
        .apply_async::<Sleepy>(
            sleepy(1, false),
            SendOptions::new()
                .countdown(Duration::from_millis(300))
                .expires_in(Duration::from_millis(100)),
        )
        .await
        .expect("send");
    let m = final_meta(&k.app, h.id()).await;
    assert_eq!(m.state, TaskState::Revoked);
    assert_eq!(m.error.expect("error").kind, kinds::EXPIRED);
    assert_eq!(k.runs.load(Ordering::SeqCst), 0);
    w.shutdown().await;
}

async fn raw_send(app: &App, opts: TaskOptions) -> String {
    app.apply_async::<Record>("raw".into(), SendOptions::new().with(opts))
        .await
        .expect("send")
        .id()
        .to_string()
}

/// Recovery of a dead worker: reserved messages always requeued; started ones requeued
/// with `acks_late` + `reject_on_worker_lost`, dead-lettered as worker-lost otherwise.
pub async fn lost_worker_recovery(b: Backends) {
    let k = kit(&b, Router::default());
    let broker = k.app.broker().clone();
    let both = raw_send(
        &k.app,
        TaskOptions::new()
            .acks_late(true)
            .reject_on_worker_lost(true),
    )
    .await;
    let late_only = raw_send(
        &k.app,
        TaskOptions::new()
            .acks_late(true)
            .reject_on_worker_lost(false),
    )
    .await;
    let early = raw_send(&k.app, TaskOptions::new().acks_late(false)).await;
    let unstarted = raw_send(&k.app, TaskOptions::new().acks_late(false)).await;
    broker
        .heartbeat(
            "ghost",
            "test-incarnation",
            Duration::from_millis(200),
            Duration::from_millis(200) / 2,
        )
        .await
        .expect("beat");
    let ds = broker
        .fetch(
            "ghost",
            &["default".to_string()],
            10,
            Duration::from_secs(1),
        )
        .await
        .expect("fetch");
    assert_eq!(ds.len(), 4);
    let started: Vec<_> = ds
        .iter()
        .filter(|d| d.id != unstarted)
        .map(|d| d.to_ref())
        .collect();
    let outcomes = broker.start("ghost", &started).await.expect("start");
    assert!(outcomes.iter().all(|o| *o == SettleOutcome::Done));
    // still alive: nothing is recovered
    assert!(broker.recover(5).await.expect("recover").is_empty());
    tokio::time::sleep(Duration::from_millis(350)).await;
    let rec = broker.recover(5).await.expect("recover");
    let outcome = |id: &str| rec.iter().find(|r| r.id == id).map(|r| r.outcome);
    assert_eq!(rec.len(), 4, "{rec:?}");
    assert_eq!(outcome(&both), Some(RecoveryOutcome::Requeued));
    assert_eq!(outcome(&unstarted), Some(RecoveryOutcome::Requeued));
    assert_eq!(outcome(&late_only), Some(RecoveryOutcome::WorkerLost));
    assert_eq!(outcome(&early), Some(RecoveryOutcome::WorkerLost));
    let s = stats(&k.app, "default").await;
    assert_eq!((s.waiting(), s.reserved, s.dead_letter), (2, 0, 2), "{s:?}");
    let dead = broker
        .dead_letters("default", 10)
        .await
        .expect("dead letters");
    assert_eq!(dead.len(), 2);
    // the requeued ones complete on a live worker
    let w = test_worker(&k.app).start().await.expect("worker");
    assert_eq!(final_meta(&k.app, &both).await.state, TaskState::Success);
    assert_eq!(
        final_meta(&k.app, &unstarted).await.state,
        TaskState::Success
    );
    w.shutdown().await;
}

/// A worker killed mid-task: with `acks_late` + `reject_on_worker_lost` another worker
/// runs the task again and it completes; reserved messages are not lost.
pub async fn killed_worker_acks_late(b: Backends) {
    let k = kit(&b, Router::default());
    let opts = TaskOptions::new()
        .acks_late(true)
        .reject_on_worker_lost(true);
    let long = k
        .app
        .apply_async::<Sleepy>(sleepy(600, false), SendOptions::new().with(opts.clone()))
        .await
        .expect("send");
    let mut queued = Vec::new();
    for i in 0..5 {
        queued.push(
            k.app
                .apply_async::<Record>(format!("q{i}"), SendOptions::new().with(opts.clone()))
                .await
                .expect("send"),
        );
    }
    let a = test_worker(&k.app)
        .concurrency(1)
        .prefetch_multiplier(8)
        .start()
        .await
        .expect("worker a");
    wait_state(&k.app, long.id(), TaskState::Started, WAIT).await;
    // STARTED is stored alongside the start mark, a moment before the task runs.
    wait_runs(&k.runs, 1).await;
    assert_eq!(
        stats(&k.app, "default").await.reserved,
        6,
        "all reserved by a"
    );
    a.kill();
    let b2 = test_worker(&k.app).start().await.expect("worker b");
    assert_eq!(long.get(WAIT).await.expect("completed after recovery"), 600);
    for q in &queued {
        q.get(WAIT).await.expect("reserved message completed");
    }
    assert_eq!(k.runs.load(Ordering::SeqCst), 2, "ran once on each worker");
    b2.shutdown().await;
}

/// A worker killed mid-task without `acks_late`: the running task ends FAILURE
/// (worker lost), the reserved ones still run.
pub async fn killed_worker_early_ack(b: Backends) {
    let k = kit(&b, Router::default());
    let long = k
        .app
        .delay::<Sleepy>(sleepy(60_000, false))
        .await
        .expect("send");
    let queued = k.app.delay::<Record>("q".into()).await.expect("send");
    let a = test_worker(&k.app)
        .concurrency(1)
        .prefetch_multiplier(4)
        .start()
        .await
        .expect("worker a");
    wait_state(&k.app, long.id(), TaskState::Started, WAIT).await;
    // STARTED is stored alongside the start mark, a moment before the task runs.
    wait_runs(&k.runs, 1).await;
    a.kill();
    let b2 = test_worker(&k.app).start().await.expect("worker b");
    let m = final_meta(&k.app, long.id()).await;
    assert_eq!(m.state, TaskState::Failure);
    assert_eq!(m.error.expect("error").kind, kinds::WORKER_LOST);
    assert_eq!(queued.get(WAIT).await.expect("reserved one ran"), "q");
    assert_eq!(k.runs.load(Ordering::SeqCst), 1, "not run twice");
    b2.shutdown().await;
}

/// Graceful shutdown lets running tasks finish and hands reserved ones back.
pub async fn graceful_shutdown(b: Backends) {
    let k = kit(&b, Router::default());
    let long = k
        .app
        .delay::<Sleepy>(sleepy(400, false))
        .await
        .expect("send");
    for i in 0..3 {
        k.app.delay::<Record>(format!("r{i}")).await.expect("send");
    }
    let w = test_worker(&k.app)
        .concurrency(1)
        .prefetch_multiplier(4)
        .start()
        .await
        .expect("worker");
    wait_state(&k.app, long.id(), TaskState::Started, WAIT).await;
    let report = w.shutdown().await;
    assert_eq!(report.released, 3);
    assert_eq!(report.aborted, 0);
    assert_eq!(state(&k.app, long.id()).await, TaskState::Success);
    let s = stats(&k.app, "default").await;
    assert_eq!((s.waiting(), s.reserved), (3, 0), "{s:?}");
    assert!(log_of(&k).is_empty());
}

/// When the grace period runs out, an `acks_late` task is requeued, others FAILURE.
pub async fn shutdown_grace_expires(b: Backends) {
    let k = kit(&b, Router::default());
    let late = k
        .app
        .apply_async::<Sleepy>(
            sleepy(60_000, false),
            SendOptions::new().with(TaskOptions::new().acks_late(true)),
        )
        .await
        .expect("send");
    let early = k
        .app
        .delay::<Sleepy>(sleepy(60_000, false))
        .await
        .expect("send");
    let w = test_worker(&k.app)
        .concurrency(2)
        .start()
        .await
        .expect("worker");
    wait_state(&k.app, late.id(), TaskState::Started, WAIT).await;
    wait_state(&k.app, early.id(), TaskState::Started, WAIT).await;
    let report = w.shutdown_within(Duration::from_millis(200)).await;
    assert_eq!(report.aborted, 2);
    let s = stats(&k.app, "default").await;
    assert_eq!(
        (s.waiting(), s.reserved),
        (1, 0),
        "acks_late task requeued: {s:?}"
    );
    let m = final_meta(&k.app, early.id()).await;
    assert_eq!(m.error.expect("error").kind, kinds::WORKER_SHUTDOWN);
    // the solo pool honours the grace period too
    k.app.broker().purge("default").await.expect("purge");
    let solo = test_worker(&k.app)
        .pool(crate::Pool::Solo)
        .start()
        .await
        .expect("worker");
    let long = k
        .app
        .delay::<Sleepy>(sleepy(60_000, false))
        .await
        .expect("send");
    wait_state(&k.app, long.id(), TaskState::Started, WAIT).await;
    let t = Instant::now();
    let report = solo.shutdown_within(Duration::from_millis(200)).await;
    assert_eq!(report.aborted, 1);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

/// Results expire after `result_expires`; the state is PENDING again.
pub async fn result_expiry(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let h = k
        .app
        .apply_async::<Record>(
            "short".into(),
            SendOptions::new().with(TaskOptions::new().result_expires(Duration::from_millis(1000))),
        )
        .await
        .expect("send");
    assert_eq!(h.get(WAIT).await.expect("ran"), "short");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(h.state().await.expect("state"), TaskState::Pending);
    assert!(h.meta().await.expect("meta").is_none());
    let long = k.app.delay::<Record>("long".into()).await.expect("send");
    long.get(WAIT).await.expect("ran");
    long.forget().await.expect("forget");
    assert_eq!(long.state().await.expect("state"), TaskState::Pending);
    w.shutdown().await;
}

/// Garbage, unknown tasks and wrong argument types get clear errors and the worker
/// keeps running.
pub async fn garbage_messages(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let mut bomb = vec![b'Z'];
    bomb.extend(zstd::bulk::compress(&vec![0u8; 80 << 20], 1).expect("compress"));
    let raw = |id: &str, payload: Vec<u8>| Outgoing {
        id: id.to_string(),
        queue: "default".into(),
        priority: 0,
        eta: None,
        payload,
        flags: DeliveryFlags::default(),
    };
    k.app
        .broker()
        .publish(vec![
            raw("garbage-1", b"\x00\x01not a message".to_vec()),
            raw("garbage-2", b"M\xc1\xc1\xc1".to_vec()),
            raw("garbage-3", Vec::new()),
            raw("bomb", bomb),
        ])
        .await
        .expect("publish");
    for id in ["garbage-1", "garbage-2", "garbage-3", "bomb"] {
        let m = final_meta(&k.app, id).await;
        assert_eq!(m.state, TaskState::Failure, "{id}");
        assert_eq!(m.error.expect("error").kind, kinds::MALFORMED, "{id}");
    }
    let unknown = k
        .app
        .send_by_name(
            "no.such.task",
            crate::codec::to_msgpack(&1).expect("args"),
            SendOptions::new(),
        )
        .await
        .expect("send");
    let m = final_meta(&k.app, &unknown).await;
    assert_eq!(m.error.expect("error").kind, kinds::NOT_REGISTERED);
    let wrong = k
        .app
        .send_by_name(
            "conformance.typed",
            crate::codec::to_msgpack("not a pair").expect("args"),
            SendOptions::new(),
        )
        .await
        .expect("send");
    let m = final_meta(&k.app, &wrong).await;
    let e = m.error.expect("error");
    assert_eq!(e.kind, kinds::ARGUMENTS);
    assert!(e.message.contains("conformance.typed"), "{e:?}");
    let ok = k
        .app
        .delay::<Typed>(Pair {
            a: 2,
            b: "x".into(),
        })
        .await
        .expect("send");
    assert_eq!(ok.get(WAIT).await.expect("still running"), "x2");
    let deadline = Instant::now() + WAIT;
    loop {
        let dead = k
            .app
            .broker()
            .dead_letters("default", 100)
            .await
            .expect("dead");
        if dead.len() == 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expected 5 dead letters: {dead:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(w.stats().rejected >= 5);
    // an oversized message is refused at the producer with a clear error
    let small = App::builder()
        .broker(b.broker.clone())
        .backend(b.results.clone())
        .codec(crate::codec::Codec {
            max_size: 1024,
            ..Default::default()
        })
        .build();
    let err = small
        .delay::<Record>("y".repeat(4096))
        .await
        .expect_err("oversized");
    assert!(err.to_string().contains("exceeds the maximum"), "{err}");
    w.shutdown().await;
}

/// A stale worker's ack and result are refused once its message was recovered and
/// handed to another worker.
pub async fn fencing(b: Backends) {
    let k = kit(&b, Router::default());
    let broker = k.app.broker().clone();
    let id = raw_send(
        &k.app,
        TaskOptions::new()
            .acks_late(true)
            .reject_on_worker_lost(true),
    )
    .await;
    let q = vec!["default".to_string()];
    broker
        .heartbeat(
            "stale",
            "test-incarnation",
            Duration::from_millis(150),
            Duration::from_millis(150) / 2,
        )
        .await
        .expect("beat");
    let old = broker
        .fetch("stale", &q, 1, Duration::from_secs(1))
        .await
        .expect("fetch")
        .remove(0);
    broker.start("stale", &[old.to_ref()]).await.expect("start");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rec = broker.recover(5).await.expect("recover");
    assert_eq!(rec.len(), 1);
    broker
        .heartbeat(
            "fresh",
            "test-incarnation",
            Duration::from_secs(30),
            Duration::from_secs(30) / 2,
        )
        .await
        .expect("beat");
    let new = broker
        .fetch("fresh", &q, 1, Duration::from_secs(1))
        .await
        .expect("fetch")
        .remove(0);
    assert_eq!(new.id, id);
    assert!(new.token > old.token, "tokens grow with each delivery");
    assert_eq!(new.deliveries, 2);
    let write = |state: TaskState, token: u64| {
        let mut m = TaskMeta::new(&id, "conformance.record", state);
        m.fence = Some(token);
        ResultWrite {
            meta: m,
            ttl: Duration::from_secs(60),
            compress: false,
            announce: false,
        }
    };
    let results = k.app.backend().clone();
    assert_eq!(
        results
            .store(&[write(TaskState::Started, new.token)])
            .await
            .expect("store"),
        [WriteOutcome::Stored]
    );
    // the stale worker finishes now: both its result and its ack are refused
    assert_eq!(
        results
            .store(&[write(TaskState::Success, old.token)])
            .await
            .expect("store"),
        [WriteOutcome::Refused]
    );
    let ack = |d: &crate::backend::Delivery| Settlement {
        delivery: d.to_ref(),
        action: Settle::Ack,
    };
    assert_eq!(
        broker.settle("stale", &[ack(&old)]).await.expect("settle"),
        [SettleOutcome::Fenced]
    );
    assert_eq!(
        broker.start("stale", &[old.to_ref()]).await.expect("start"),
        [SettleOutcome::Fenced]
    );
    // the fresh worker's writes go through
    assert_eq!(
        results
            .store(&[write(TaskState::Success, new.token)])
            .await
            .expect("store"),
        [WriteOutcome::Stored]
    );
    assert_eq!(
        broker.settle("fresh", &[ack(&new)]).await.expect("settle"),
        [SettleOutcome::Done]
    );
    // a final record is never replaced
    assert_eq!(
        results
            .store(&[write(TaskState::Failure, new.token + 100)])
            .await
            .expect("store"),
        [WriteOutcome::Refused]
    );
    assert_eq!(state(&k.app, &id).await, TaskState::Success);
    let s = stats(&k.app, "default").await;
    assert_eq!((s.waiting(), s.reserved, s.delayed), (0, 0, 0));
}

/// A panic is a FAILURE, not a crash.
pub async fn panic_is_failure(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let h = k.app.delay::<Panicker>(()).await.expect("send");
    let m = final_meta(&k.app, h.id()).await;
    assert_eq!(m.state, TaskState::Failure);
    let e = m.error.expect("error");
    assert_eq!(e.kind, kinds::PANIC);
    assert!(e.message.contains("deliberate panic"), "{e:?}");
    let next = k.app.delay::<Record>("alive".into()).await.expect("send");
    assert_eq!(next.get(WAIT).await.expect("ran"), "alive");
    w.shutdown().await;
}

/// `get` returns as soon as the result arrives, and times out otherwise.
pub async fn get_waits_and_times_out(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let h = k
        .app
        .delay::<Sleepy>(sleepy(300, false))
        .await
        .expect("send");
    let t = Instant::now();
    assert_eq!(h.get(WAIT).await.expect("result"), 300);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let never = k.app.result::<u64>("never-sent");
    let t = Instant::now();
    let err = never
        .get(Duration::from_millis(200))
        .await
        .expect_err("timeout");
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(t.elapsed() >= Duration::from_millis(190));
    assert_eq!(never.state().await.expect("state"), TaskState::Pending);
    w.shutdown().await;
}

/// `call` sends and waits in one step: the output, the failure of a failed task, a
/// timeout, and a clear refusal for a task that ignores its results.
pub async fn call_round_trip(b: Backends) {
    let k = kit(&b, Router::default());
    // no worker yet: the call times out
    let t = Instant::now();
    let err = k
        .app
        .call::<Record>("early".into(), Duration::from_millis(300))
        .await
        .expect_err("nobody runs it yet");
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(t.elapsed() >= Duration::from_millis(290));

    let w = test_worker(&k.app).start().await.expect("worker");
    for i in 0..20 {
        let label = format!("call-{i}");
        assert_eq!(
            k.app
                .call::<Record>(label.clone(), WAIT)
                .await
                .expect("output"),
            label
        );
    }
    // a delayed call waits for its countdown
    let t = Instant::now();
    let out = k
        .app
        .call_with::<Record>(
            "later".into(),
            SendOptions::new().countdown(Duration::from_millis(300)),
            WAIT,
        )
        .await
        .expect("output");
    assert_eq!(out, "later");
    assert!(t.elapsed() >= Duration::from_millis(290));

    let err = k
        .app
        .call::<Panicker>((), WAIT)
        .await
        .expect_err("it panics");
    match err {
        Error::TaskFailed { state, failure, .. } => {
            assert_eq!(state, TaskState::Failure);
            assert_eq!(failure.kind, kinds::PANIC);
        }
        other => panic!("expected TaskFailed, got {other}"),
    }
    let err = k
        .app
        .call_with::<Record>(
            "quiet".into(),
            SendOptions::new().with(TaskOptions::new().ignore_result(true)),
            WAIT,
        )
        .await
        .expect_err("nothing to wait for");
    assert!(matches!(err, Error::InvalidOptions(_)), "{err}");
    assert!(err.to_string().contains("ignore_result"), "{err}");
    // the early call ran once a worker came; the refused one was never sent
    until("early ran", WAIT, || {
        log_of(&k).contains(&"early".to_string())
    })
    .await;
    assert!(!log_of(&k).contains(&"quiet".to_string()));
    w.shutdown().await;
}

/// A countdown is an earliest start.
pub async fn countdown_not_early(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let t = Instant::now();
    let h = k
        .app
        .apply_async::<Record>(
            "later".into(),
            SendOptions::new().countdown(Duration::from_millis(500)),
        )
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(stats(&k.app, "default").await.delayed, 1);
    h.get(WAIT).await.expect("ran");
    assert!(
        t.elapsed() >= Duration::from_millis(490),
        "{:?}",
        t.elapsed()
    );
    w.shutdown().await;
}

/// Consumers can be added and cancelled on a running worker.
pub async fn consumers_change(b: Backends) {
    let k = kit(&b, Router::new("a").queue(Queue::new("b")));
    let w = test_worker(&k.app)
        .queues(["a"])
        .start()
        .await
        .expect("worker");
    let on_b = k
        .app
        .apply_async::<Record>("on-b".into(), SendOptions::new().queue("b"))
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(on_b.state().await.expect("state"), TaskState::Pending);
    w.add_consumer("b").expect("add");
    assert_eq!(
        on_b.get(WAIT).await.expect("ran once b is consumed"),
        "on-b"
    );
    w.cancel_consumer("a");
    assert_eq!(w.consumers(), ["b"]);
    let on_a = k
        .app
        .apply_async::<Record>("on-a".into(), SendOptions::new().queue("a"))
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(on_a.state().await.expect("state"), TaskState::Pending);
    assert_eq!(stats(&k.app, "a").await.waiting(), 1);
    w.shutdown().await;
}

/// Bulk sending: many tasks in one call, all run.
pub async fn bulk_send(b: Backends) {
    let k = kit(&b, Router::default());
    let hs = k
        .app
        .send_many::<Record>((0..500).map(|i| (format!("b{i}"), SendOptions::new())))
        .await
        .expect("send");
    let w = test_worker(&k.app)
        .concurrency(8)
        .start()
        .await
        .expect("worker");
    for (i, h) in hs.iter().enumerate() {
        assert_eq!(h.get(WAIT).await.expect("ran"), format!("b{i}"));
    }
    assert_eq!(log_of(&k).len(), 500);
    w.shutdown().await;
}

/// `ignore_result` runs the task without storing its result.
pub async fn ignore_result(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let h = k
        .app
        .apply_async::<Record>(
            "quiet".into(),
            SendOptions::new().with(TaskOptions::new().ignore_result(true)),
        )
        .await
        .expect("send");
    until("ran", WAIT, || log_of(&k).len() == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.state().await.expect("state"), TaskState::Pending);
    w.shutdown().await;
}

/// Large results are stored compressed and read back intact.
pub async fn compressed_result(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let h = k.app.delay::<Big>(100_000).await.expect("send");
    let out = h.get(WAIT).await.expect("ran");
    assert_eq!(out.len(), 600_000);
    w.shutdown().await;
}

/// A message whose workers keep dying is dead-lettered after `max_deliveries`.
pub async fn too_many_deliveries(b: Backends) {
    let k = kit(&b, Router::default());
    let broker = k.app.broker().clone();
    let id = raw_send(
        &k.app,
        TaskOptions::new()
            .acks_late(true)
            .reject_on_worker_lost(true),
    )
    .await;
    let q = vec!["default".to_string()];
    for round in 0..3 {
        let worker = format!("doomed-{round}");
        broker
            .heartbeat(
                &worker,
                "test-incarnation",
                Duration::from_millis(100),
                Duration::from_millis(100) / 2,
            )
            .await
            .expect("beat");
        let d = broker
            .fetch(&worker, &q, 1, Duration::from_secs(1))
            .await
            .expect("fetch");
        assert_eq!(d.len(), 1, "round {round}");
        broker
            .start(&worker, &[d[0].to_ref()])
            .await
            .expect("start");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let rec = broker.recover(3).await.expect("recover");
        let want = if round < 2 {
            RecoveryOutcome::Requeued
        } else {
            RecoveryOutcome::TooManyDeliveries
        };
        assert_eq!(
            rec.iter().map(|r| r.outcome).collect::<Vec<_>>(),
            [want],
            "round {round}"
        );
    }
    let dead = broker.dead_letters("default", 10).await.expect("dead");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, id);
}

/// The blocking and solo pools run tasks with the same semantics.
pub async fn blocking_and_solo_pools(b: Backends) {
    for pool in [crate::Pool::Blocking, crate::Pool::Solo] {
        let k = kit(&b, Router::default());
        let w = test_worker(&k.app)
            .pool(pool)
            .concurrency(2)
            .start()
            .await
            .expect("worker");
        let ok = k
            .app
            .delay::<Record>(format!("{pool:?}"))
            .await
            .expect("send");
        assert_eq!(ok.get(WAIT).await.expect("ran"), format!("{pool:?}"));
        let p = k.app.delay::<Panicker>(()).await.expect("send");
        assert_eq!(final_meta(&k.app, p.id()).await.state, TaskState::Failure);
        let limited = k
            .app
            .apply_async::<Sleepy>(
                sleepy(30_000, false),
                SendOptions::new().with(
                    TaskOptions::new()
                        .soft_time_limit(Duration::from_millis(100))
                        .time_limit(Duration::from_millis(300)),
                ),
            )
            .await
            .expect("send");
        let m = final_meta(&k.app, limited.id()).await;
        assert_eq!(m.error.expect("error").kind, kinds::TIME_LIMIT, "{pool:?}");
        let after = k.app.delay::<Record>("after".into()).await.expect("send");
        after.get(WAIT).await.expect("slot freed");
        w.shutdown().await;
    }
}

/// Workers register and publish worker events; task events are published when enabled
/// and can be read from a cursor.
pub async fn events_and_registry(b: Backends) {
    let app = App::builder()
        .broker(b.broker.clone())
        .backend(b.results.clone())
        .task_events(true)
        .build();
    let log: Log = Arc::default();
    app.register(Record(log.clone()));
    let w = test_worker(&app)
        .task_events(true)
        .start()
        .await
        .expect("worker");
    let h = app.delay::<Record>("evt".into()).await.expect("send");
    h.get(WAIT).await.expect("ran");
    let broker = app.broker().clone();
    let workers = broker.workers().await.expect("workers");
    let me = workers.iter().find(|i| i.id == w.id()).expect("registered");
    assert_eq!(me.queues, ["default"]);
    assert!(me.pid > 0 && !me.hostname.is_empty());
    let want = [
        EventKind::TaskSent,
        EventKind::TaskReceived,
        EventKind::TaskStarted,
        EventKind::TaskSucceeded,
    ];
    let deadline = Instant::now() + WAIT;
    let mut seen: Vec<EventKind>;
    loop {
        let events = broker.events(None, 10_000).await.expect("events");
        seen = events
            .iter()
            .filter(|(_, e)| e.task_id.as_deref() == Some(h.id()))
            .map(|(_, e)| e.kind)
            .collect();
        let online = events
            .iter()
            .any(|(_, e)| e.kind == EventKind::WorkerOnline && e.worker.as_deref() == Some(w.id()));
        if online && want.iter().all(|k| seen.contains(k)) {
            break;
        }
        assert!(Instant::now() < deadline, "events missing: {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let succeeded = broker
        .events(None, 10_000)
        .await
        .expect("events")
        .into_iter()
        .find(|(_, e)| e.kind == EventKind::TaskSucceeded && e.task_id.as_deref() == Some(h.id()))
        .expect("succeeded event");
    assert!(succeeded.1.runtime.is_some());
    // a cursor returns only what came after it
    let after = broker
        .events(Some(&succeeded.0), 10_000)
        .await
        .expect("events");
    assert!(after.iter().all(|(id, _)| *id != succeeded.0));
    // a task revoked before it starts publishes task-revoked
    let skipped = app
        .apply_async::<Record>(
            "skip".into(),
            SendOptions::new().countdown(Duration::from_millis(300)),
        )
        .await
        .expect("send");
    app.revoke(skipped.id(), false).await.expect("revoke");
    assert_eq!(
        final_meta(&app, skipped.id()).await.state,
        TaskState::Revoked
    );
    let deadline = Instant::now() + WAIT;
    while !broker
        .events(Some(&succeeded.0), 10_000)
        .await
        .expect("events")
        .iter()
        .any(|(_, e)| {
            e.kind == EventKind::TaskRevoked && e.task_id.as_deref() == Some(skipped.id())
        })
    {
        assert!(Instant::now() < deadline, "no task-revoked event");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let id = w.id().to_string();
    w.shutdown().await;
    assert!(
        !broker
            .workers()
            .await
            .expect("workers")
            .iter()
            .any(|i| i.id == id)
    );
    let events = broker
        .events(Some(&succeeded.0), 10_000)
        .await
        .expect("events");
    assert!(events.iter().any(
        |(_, e)| e.kind == EventKind::WorkerOffline && e.worker.as_deref() == Some(id.as_str())
    ));
}

/// A revoke without `terminate` does not stop a running task, which keeps its result
/// (as in Celery).
pub async fn revoke_running_keeps_result(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let h = k
        .app
        .delay::<Sleepy>(sleepy(300, false))
        .await
        .expect("send");
    wait_state(&k.app, h.id(), TaskState::Started, WAIT).await;
    h.revoke(false).await.expect("revoke");
    assert_eq!(h.get(WAIT).await.expect("finished"), 300);
    w.shutdown().await;
}

/// A message redelivered after its task already finished is acked without running
/// again.
pub async fn redelivered_finished_not_rerun(b: Backends) {
    let k = kit(&b, Router::default());
    let broker = k.app.broker().clone();
    let h = k
        .app
        .apply_async::<Sleepy>(
            sleepy(1, false),
            SendOptions::new().with(
                TaskOptions::new()
                    .acks_late(true)
                    .reject_on_worker_lost(true),
            ),
        )
        .await
        .expect("send");
    broker
        .heartbeat(
            "finisher",
            "test-incarnation",
            Duration::from_millis(150),
            Duration::from_millis(150) / 2,
        )
        .await
        .expect("beat");
    let q = vec!["default".to_string()];
    let d = broker
        .fetch("finisher", &q, 1, Duration::from_secs(1))
        .await
        .expect("fetch")
        .remove(0);
    // it finished and stored its result, then died before acking
    let mut m = TaskMeta::new(h.id(), Sleepy::NAME, TaskState::Success);
    m.result = Some(crate::codec::to_msgpack(&1u64).expect("encode"));
    m.fence = Some(d.token);
    k.app
        .backend()
        .store(&[ResultWrite {
            meta: m,
            ttl: Duration::from_secs(60),
            compress: false,
            announce: false,
        }])
        .await
        .expect("store");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let w = test_worker(&k.app).start().await.expect("worker");
    let deadline = Instant::now() + WAIT;
    loop {
        let s = stats(&k.app, "default").await;
        if s.waiting() == 0 && s.reserved == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "not consumed: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(k.runs.load(Ordering::SeqCst), 0, "not run again");
    assert_eq!(h.get(WAIT).await.expect("result kept"), 1);
    w.shutdown().await;
}

async fn call(app: &App, dest: Option<&[String]>, command: Command) -> Vec<crate::control::Reply> {
    app.control()
        .call(dest, command, Duration::from_secs(5))
        .await
        .expect("control call")
}

fn tasks(body: &ReplyBody) -> Vec<TaskInfo> {
    match body {
        ReplyBody::Tasks(t) => t.clone(),
        other => panic!("expected tasks, got {other:?}"),
    }
}

/// Every inspect command answers from a live worker.
pub async fn control_inspect(b: Backends) {
    let k = kit(&b, Router::default());
    let long = k
        .app
        .delay::<Sleepy>(sleepy(60_000, false))
        .await
        .expect("send");
    let r1 = k.app.delay::<Record>("r1".into()).await.expect("send");
    let r2 = k.app.delay::<Record>("r2".into()).await.expect("send");
    let later = k
        .app
        .apply_async::<Record>(
            "later".into(),
            SendOptions::new().countdown(Duration::from_secs(600)),
        )
        .await
        .expect("send");
    k.app
        .revoke("some-revoked-id", false)
        .await
        .expect("revoke");
    let w = test_worker(&k.app)
        .concurrency(1)
        .prefetch_multiplier(4)
        .start()
        .await
        .expect("worker");
    wait_state(&k.app, long.id(), TaskState::Started, WAIT).await;
    let app = &k.app;
    let pong = call(app, None, Command::Ping).await;
    assert_eq!(pong.len(), 1);
    assert_eq!(pong[0].worker, w.id());
    assert_eq!(pong[0].body, ReplyBody::Pong);
    let reg = call(app, None, Command::Registered).await;
    assert!(
        matches!(&reg[0].body, ReplyBody::Names(n) if n.contains(&"conformance.record".to_string()))
    );
    let active = tasks(&call(app, None, Command::Active).await[0].body);
    assert_eq!(
        active.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        [long.id()]
    );
    assert_eq!(active[0].name, Sleepy::NAME);
    let reserved = tasks(&call(app, None, Command::Reserved).await[0].body);
    let mut ids: Vec<&str> = reserved.iter().map(|t| t.id.as_str()).collect();
    ids.sort();
    let mut want = vec![r1.id(), r2.id()];
    want.sort();
    assert_eq!(ids, want);
    assert!(reserved.iter().all(|t| t.name == Record::NAME));
    let scheduled = tasks(&call(app, None, Command::Scheduled).await[0].body);
    assert_eq!(scheduled.len(), 1);
    assert_eq!(scheduled[0].id, later.id());
    assert!(scheduled[0].time.is_some_and(|t| t > crate::time::now_ms()));
    let revoked = call(app, None, Command::Revoked).await;
    assert!(
        matches!(&revoked[0].body, ReplyBody::Names(n) if n.contains(&"some-revoked-id".to_string()))
    );
    let stats = call(app, None, Command::Stats).await;
    match &stats[0].body {
        ReplyBody::Stats(st) => {
            assert_eq!(st.info.id, w.id());
            assert_eq!(st.info.concurrency, 1);
            assert_eq!(st.info.prefetch_multiplier, 4);
            assert_eq!(st.info.active, 1);
            assert!(st.uptime > 0.0);
        }
        other => panic!("expected stats, got {other:?}"),
    }
    let queues = call(app, None, Command::ActiveQueues).await;
    assert!(
        matches!(&queues[0].body, ReplyBody::Queues(q) if q.len() == 1 && q[0].name == "default")
    );
    let q = call(
        app,
        None,
        Command::QueryTask(vec![long.id().into(), r1.id().into(), "nope".into()]),
    )
    .await;
    match &q[0].body {
        ReplyBody::TaskStates(m) => {
            assert_eq!(m[long.id()], "active");
            assert_eq!(m[r1.id()], "reserved");
            assert_eq!(m["nope"], "unknown");
        }
        other => panic!("expected task states, got {other:?}"),
    }
    // revoke with terminate through the control client
    call(
        app,
        None,
        Command::Revoke {
            id: long.id().into(),
            terminate: true,
        },
    )
    .await;
    assert_eq!(final_meta(app, long.id()).await.state, TaskState::Revoked);
    r1.get(WAIT).await.expect("reserved ones run next");
    let stats = call(app, None, Command::Stats).await;
    match &stats[0].body {
        ReplyBody::Stats(st) => assert!(
            st.succeeded_by_task
                .get(Record::NAME)
                .is_some_and(|n| *n >= 1)
        ),
        other => panic!("expected stats, got {other:?}"),
    }
    w.shutdown().await;
}

/// Control commands change live workers; replies come only from addressed workers.
pub async fn control_commands(b: Backends) {
    let k = kit(&b, Router::new("default").queue(Queue::new("extra")));
    let a = test_worker(&k.app)
        .queues(["default"])
        .concurrency(1)
        .start()
        .await
        .expect("worker a");
    let b2 = test_worker(&k.app)
        .queues(["default"])
        .concurrency(1)
        .start()
        .await
        .expect("worker b");
    let app = &k.app;
    assert_eq!(call(app, None, Command::Ping).await.len(), 2);
    let only_a = vec![a.id().to_string()];
    let r = call(app, Some(&only_a), Command::PoolGrow(2)).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].worker, a.id());
    assert_eq!((a.concurrency(), b2.concurrency()), (3, 1));
    call(app, Some(&only_a), Command::PoolShrink(1)).await;
    assert_eq!(a.concurrency(), 2);
    call(app, Some(&only_a), Command::PoolShrink(10)).await;
    assert_eq!(a.concurrency(), 1, "at least one slot stays");
    // consumers
    call(app, Some(&only_a), Command::AddConsumer("extra".into())).await;
    let x = app
        .apply_async::<Record>("x".into(), SendOptions::new().queue("extra"))
        .await
        .expect("send");
    assert_eq!(x.get(WAIT).await.expect("ran on extra"), "x");
    assert_eq!(a.consumers(), ["default", "extra"]);
    call(app, Some(&only_a), Command::CancelConsumer("extra".into())).await;
    assert_eq!(a.consumers(), ["default"]);
    // time limits
    call(
        app,
        None,
        Command::TimeLimit {
            task: Sleepy::NAME.into(),
            soft: Some(0.1),
            hard: Some(0.3),
        },
    )
    .await;
    let slow = app
        .delay::<Sleepy>(sleepy(30_000, false))
        .await
        .expect("send");
    let m = final_meta(app, slow.id()).await;
    assert_eq!(m.error.expect("error").kind, kinds::TIME_LIMIT);
    let bad = app
        .control()
        .call(
            Some(&only_a),
            Command::TimeLimit {
                task: Sleepy::NAME.into(),
                soft: Some(2.0),
                hard: Some(1.0),
            },
            Duration::from_secs(5),
        )
        .await;
    assert!(matches!(bad, Err(Error::InvalidCommand(_))), "{bad:?}");
    let r = call(app, None, Command::PoolRestart).await;
    assert!(r.iter().all(|r| matches!(r.body, ReplyBody::Ok(_))));
    // remote shutdown
    let r = call(app, Some(&only_a), Command::Shutdown).await;
    assert_eq!(r.len(), 1);
    tokio::time::timeout(WAIT, a.stopped())
        .await
        .expect("worker a stopped");
    assert!(a.is_stopped() && !b2.is_stopped());
    assert_eq!(call(app, None, Command::Ping).await.len(), 1);
    b2.shutdown().await;
}

/// A rate limit holds across two workers.
pub async fn rate_limit_across_workers(b: Backends) {
    let k = kit(&b, Router::default());
    let w1 = test_worker(&k.app)
        .concurrency(4)
        .start()
        .await
        .expect("worker");
    let w2 = test_worker(&k.app)
        .concurrency(4)
        .start()
        .await
        .expect("worker");
    let replies = call(
        &k.app,
        None,
        Command::RateLimit {
            task: Stamp::NAME.into(),
            rate: Some("20/s".parse().expect("rate")),
        },
    )
    .await;
    assert_eq!(replies.len(), 2);
    let hs = k
        .app
        .send_many::<Stamp>((0..41).map(|_| ((), SendOptions::new())))
        .await
        .expect("send");
    for h in &hs {
        h.get(WAIT).await.expect("ran");
    }
    let mut starts = k.attempts.lock().unwrap_or_else(|p| p.into_inner()).clone();
    starts.sort();
    let span = starts[starts.len() - 1] - starts[0];
    let rate = (starts.len() - 1) as f64 / span.as_secs_f64();
    assert!(
        (18.0..=22.0).contains(&rate),
        "measured {rate:.2}/s against a limit of 20/s"
    );
    assert!(
        w1.stats().succeeded > 0 && w2.stats().succeeded > 0,
        "both workers ran tasks"
    );
    let limits = k.app.broker().rate_limits().await.expect("limits");
    assert_eq!(limits.len(), 1);
    w1.shutdown().await;
    w2.shutdown().await;
}

/// Autoscale grows under a backlog and shrinks when idle.
pub async fn autoscale(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app)
        .concurrency(1)
        .prefetch_multiplier(8)
        .start()
        .await
        .expect("worker");
    call(&k.app, None, Command::Autoscale { max: 4, min: 1 }).await;
    let hs = k
        .app
        .send_many::<Sleepy>((0..12).map(|_| (sleepy(400, false), SendOptions::new())))
        .await
        .expect("send");
    until("grown to 4", WAIT, || w.concurrency() == 4).await;
    for h in &hs {
        h.get(WAIT).await.expect("ran");
    }
    until("shrunk to 1", WAIT, || w.concurrency() == 1).await;
    let bad = raw_call(&k.app, Command::Autoscale { max: 1, min: 3 }, 1).await;
    assert!(matches!(bad[0].body, ReplyBody::Error(_)));
    let bad = k
        .app
        .control()
        .call(None, Command::Autoscale { max: 1, min: 3 }, WAIT)
        .await;
    assert!(matches!(bad, Err(Error::InvalidCommand(_))), "{bad:?}");
    w.shutdown().await;
    // with prefetch 1 nothing waits in the worker: the broker's backlog drives it
    let w = test_worker(&k.app)
        .concurrency(1)
        .prefetch_multiplier(1)
        .start()
        .await
        .expect("worker");
    call(&k.app, None, Command::Autoscale { max: 3, min: 1 }).await;
    let hs = k
        .app
        .send_many::<Sleepy>((0..9).map(|_| (sleepy(400, false), SendOptions::new())))
        .await
        .expect("send");
    until("grown to 3 from the broker's backlog", WAIT, || {
        w.concurrency() == 3
    })
    .await;
    for h in &hs {
        h.get(WAIT).await.expect("ran");
    }
    w.shutdown().await;
}

/// Publishes `command` as any client could, past [`crate::control::Control::call`]'s
/// own checks, and gathers the replies of the `expected` workers.
async fn raw_call(app: &App, command: Command, expected: usize) -> Vec<crate::control::Reply> {
    let request = crate::control::Request {
        id: uuid::Uuid::new_v4().to_string(),
        destination: None,
        command,
        sent_at: crate::time::now_ms(),
    };
    app.broker().broadcast(&request).await.expect("broadcast");
    app.broker()
        .collect_replies(&request.id, expected, Duration::from_secs(5))
        .await
        .expect("collect replies")
}

/// Absurd control values (an infinite time limit, a pool of `usize::MAX` slots) are
/// refused with an error reply, and every worker still answers the next command.
pub async fn control_input_validated(b: Backends) {
    let k = kit(&b, Router::default());
    let w1 = test_worker(&k.app)
        .concurrency(1)
        .start()
        .await
        .expect("w1");
    let w2 = test_worker(&k.app)
        .concurrency(1)
        .start()
        .await
        .expect("w2");
    let app = &k.app;
    let bad = [
        Command::TimeLimit {
            task: Sleepy::NAME.into(),
            soft: Some(10.0),
            hard: Some(f64::INFINITY),
        },
        Command::TimeLimit {
            task: Sleepy::NAME.into(),
            soft: Some(f64::NAN),
            hard: Some(1e30),
        },
        Command::TimeLimit {
            task: Sleepy::NAME.into(),
            soft: Some(-1.0),
            hard: None,
        },
        Command::PoolGrow(usize::MAX),
        Command::Autoscale {
            max: usize::MAX,
            min: 1,
        },
    ];
    for command in bad {
        let name = format!("{command:?}");
        let replies = raw_call(app, command, 2).await;
        assert_eq!(replies.len(), 2, "both workers answer {name}");
        for r in &replies {
            assert!(
                matches!(&r.body, ReplyBody::Error(e) if !e.is_empty()),
                "{name} refused: {:?}",
                r.body
            );
        }
        let pongs = raw_call(app, Command::Ping, 2).await;
        assert_eq!(pongs.len(), 2, "every worker answers Ping after {name}");
    }
    assert_eq!((w1.concurrency(), w2.concurrency()), (1, 1));
    // The client refuses it before sending.
    let refused = app
        .control()
        .call(
            None,
            Command::TimeLimit {
                task: Sleepy::NAME.into(),
                soft: None,
                hard: Some(f64::INFINITY),
            },
            WAIT,
        )
        .await;
    assert!(
        matches!(refused, Err(Error::InvalidCommand(_))),
        "{refused:?}"
    );
    w1.shutdown().await;
    w2.shutdown().await;
}
