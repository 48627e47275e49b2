//! Shared support of the fault-injection scenarios: the scale knob, the machine lock,
//! the counting task, child worker processes, the lease sampler, final-state
//! collection and the printed table row.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hippo_queue_core::backend::prelude::*;
use hippo_queue_core::backend::{DeliveryFlags, Outgoing};
use hippo_queue_core::time::now_ms;
use hippo_queue_core::worker::WorkerBuilder;
use hippo_queue_core::{App, SendOptions, Task, TaskContext, TaskError, TaskMeta, TaskOptions};
use hippo_queue_redis::test_server::{RedisServer, Reply};
use hippo_queue_redis::{RedisBackend, RedisConfig};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The queue every scenario uses.
pub const QUEUE: &str = "default";
/// Side channel: task id -> times its body started.
pub const EXECS: &str = "fi:execs";
/// Side channel: task id -> times its body ran to the end.
pub const DONE: &str = "fi:done";
/// Side channel: total body starts.
pub const TOTAL: &str = "fi:total";
/// The database of the side channel when it shares the broker's server.
pub const COUNTER_DB: u8 = 9;
/// The lease hashes of the queue (the broker prefix is `hq`).
pub const LEASE_MATCH: &str = "hq:{default}:lease:*";

// ---------------------------------------------------------------------------------------
// Scale and machine sharing

/// `HQ_FAULT_SCALE`, default 1.
pub fn scale() -> f64 {
    static SCALE: OnceLock<f64> = OnceLock::new();
    *SCALE.get_or_init(|| {
        std::env::var("HQ_FAULT_SCALE")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| *v > 0.0)
            .unwrap_or(1.0)
    })
}

/// A task count scaled by `HQ_FAULT_SCALE` (at least 1).
pub fn count(full: usize) -> usize {
    ((full as f64 * scale()).round() as usize).max(1)
}

/// A duration scaled by `HQ_FAULT_SCALE`, never below `floor`.
pub fn scaled(full: Duration, floor: Duration) -> Duration {
    full.mul_f64(scale()).max(floor)
}

static MACHINE: RwLock<()> = RwLock::const_new(());

/// For CPU-heavy scenarios: nothing else runs meanwhile.
pub async fn heavy() -> RwLockWriteGuard<'static, ()> {
    MACHINE.write().await
}

/// For light scenarios (mostly waiting): they may share the machine with each other,
/// never with a heavy one.
pub async fn light() -> RwLockReadGuard<'static, ()> {
    MACHINE.read().await
}

fn epoch() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// A progress line on stderr (shown with `--nocapture` or when the test fails).
pub fn note(scenario: &str, msg: impl AsRef<str>) {
    eprintln!(
        "[{:>7.2}s] {scenario}: {}",
        epoch().elapsed().as_secs_f64(),
        msg.as_ref()
    );
}

/// Polls `f` every 20 ms until it returns true or `timeout` passes.
pub async fn wait_for<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A small deterministic generator (xorshift64*), enough for durations and garbage.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

// ---------------------------------------------------------------------------------------
// The counting task

/// What happened to one run of a [`Work`] task in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    Started,
    Completed,
    /// The body was dropped before the end (terminated, time limit, worker stop).
    Aborted,
}

/// One entry of an in-process run log.
#[derive(Debug, Clone)]
pub struct Ev {
    pub worker: String,
    pub id: String,
    pub what: What,
    pub at: Instant,
}

/// An in-process run log.
pub type Log = Arc<Mutex<Vec<Ev>>>;

pub fn events(log: &Log) -> Vec<Ev> {
    log.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

fn push(log: &Option<Log>, worker: &str, id: &str, what: What) {
    if let Some(log) = log {
        log.lock().unwrap_or_else(|p| p.into_inner()).push(Ev {
            worker: worker.to_string(),
            id: id.to_string(),
            what,
            at: Instant::now(),
        });
    }
}

/// Logs `Aborted` unless the run reached its end.
struct RunGuard {
    log: Option<Log>,
    worker: String,
    id: String,
    done: bool,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if !self.done {
            push(&self.log, &self.worker, &self.id, What::Aborted);
        }
    }
}

/// Counts its start in the side channel, sleeps `ms`, counts its end.
pub struct Work {
    pub counter: MultiplexedConnection,
    pub log: Option<Log>,
}

impl Task for Work {
    const NAME: &'static str = "fi.work";
    type Args = u64;
    type Output = u64;
    async fn run(&self, ctx: &TaskContext, ms: u64) -> Result<u64, TaskError> {
        let mut c = self.counter.clone();
        let () = redis::pipe()
            .hincr(EXECS, ctx.id(), 1)
            .ignore()
            .incr(TOTAL, 1)
            .ignore()
            .query_async(&mut c)
            .await?;
        push(&self.log, ctx.worker(), ctx.id(), What::Started);
        let mut guard = RunGuard {
            log: self.log.clone(),
            worker: ctx.worker().to_string(),
            id: ctx.id().to_string(),
            done: false,
        };
        tokio::time::sleep(Duration::from_millis(ms)).await;
        guard.done = true;
        push(&self.log, ctx.worker(), ctx.id(), What::Completed);
        let _: i64 = c.hincr(DONE, ctx.id(), 1).await?;
        Ok(ms)
    }
}

/// Returns `bytes` random bytes (a result over the codec's 64 MiB limit when asked).
pub struct Big {
    pub counter: MultiplexedConnection,
}

impl Task for Big {
    const NAME: &'static str = "fi.big";
    type Args = u64;
    type Output = Vec<u8>;
    async fn run(&self, ctx: &TaskContext, bytes: u64) -> Result<Vec<u8>, TaskError> {
        let mut c = self.counter.clone();
        let _: i64 = c.hincr(EXECS, ctx.id(), 1).await?;
        Ok(Rng::new(0x5eed ^ bytes).bytes(bytes as usize))
    }
}

/// acks_late + reject_on_worker_lost: a lost worker's messages are requeued.
pub fn late() -> SendOptions {
    SendOptions::new().with(
        TaskOptions::new()
            .acks_late(true)
            .reject_on_worker_lost(true),
    )
}

// ---------------------------------------------------------------------------------------
// Apps and workers

pub async fn connect(url: &str) -> RedisBackend {
    RedisBackend::connect(RedisConfig::new(url))
        .await
        .expect("connect to the test server")
}

/// A plain connection for the side channel and for staging faults. Replies may be
/// large (the counters of 250,000 tasks) and the machine busy: it waits up to a
/// minute for one, where the client's default gives up after 500 ms.
pub async fn redis_conn(url: &str) -> MultiplexedConnection {
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(60)));
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("redis connection")
}

/// An app on `url` with the scenario tasks registered; they count in `counter_url`.
pub async fn app_on(url: &str, counter_url: &str, log: Option<Log>) -> (App, RedisBackend) {
    app_with(RedisConfig::new(url), counter_url, log).await
}

/// An app on the servers `config` names (a separate results URL, a response timeout),
/// with the scenario tasks registered; they count in `counter_url`.
pub async fn app_with(
    config: RedisConfig,
    counter_url: &str,
    log: Option<Log>,
) -> (App, RedisBackend) {
    let backend = RedisBackend::connect(config)
        .await
        .expect("connect to the test server");
    let app = App::builder()
        .broker(backend.clone())
        .backend(backend.clone())
        .build();
    let counter = redis_conn(counter_url).await;
    app.register(Work {
        counter: counter.clone(),
        log,
    });
    app.register(Big { counter });
    (app, backend)
}

/// Sends one [`Work`] task of `ms` and returns its id.
pub async fn send_one(app: &App, ms: u64, opts: SendOptions) -> String {
    app.apply_async::<Work>(ms, opts)
        .await
        .expect("send")
        .id()
        .to_string()
}

/// Sends [`Work`] tasks of `(ms, options)` in one batch and returns their ids.
pub async fn send_work(
    app: &App,
    tasks: impl IntoIterator<Item = (u64, SendOptions)>,
) -> Vec<String> {
    app.send_many::<Work>(tasks)
        .await
        .expect("send")
        .iter()
        .map(|h| h.id().to_string())
        .collect()
}

/// The usual set-up of a scenario on one server: the app and its backend on database
/// 0, the side channel in [`COUNTER_DB`]. The server stops when the scene is dropped.
pub struct Scene {
    pub server: RedisServer,
    pub url: String,
    pub counter_url: String,
    pub app: App,
    pub backend: RedisBackend,
    pub counters: Counters,
}

impl Scene {
    pub async fn start(log: Option<Log>) -> Scene {
        let server = RedisServer::start();
        let url = server.url(0);
        let counter_url = server.url(COUNTER_DB);
        let (app, backend) = app_on(&url, &counter_url, log).await;
        let counters = Counters::connect(&counter_url).await;
        Scene {
            server,
            url,
            counter_url,
            app,
            backend,
            counters,
        }
    }
}

/// Worker settings of a scenario.
#[derive(Debug, Clone)]
pub struct WorkerCfg {
    pub concurrency: usize,
    pub prefetch: usize,
    pub heartbeat: Duration,
    pub lost_after: Duration,
    pub name: Option<String>,
}

impl WorkerCfg {
    pub fn new(concurrency: usize, prefetch: usize) -> Self {
        WorkerCfg {
            concurrency,
            prefetch,
            heartbeat: Duration::from_millis(250),
            lost_after: Duration::from_millis(1500),
            name: None,
        }
    }
    pub fn lost_after(mut self, d: Duration) -> Self {
        self.lost_after = d;
        self
    }
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }
    pub fn window(&self) -> usize {
        self.concurrency * self.prefetch
    }
    pub fn builder(&self, app: &App) -> WorkerBuilder {
        let mut b = app
            .worker()
            .queues([QUEUE])
            .concurrency(self.concurrency)
            .prefetch_multiplier(self.prefetch)
            .heartbeat_interval(self.heartbeat)
            .worker_lost_after(self.lost_after)
            .fetch_wait(Duration::from_millis(200))
            .shutdown_grace(Duration::from_secs(5));
        if let Some(n) = &self.name {
            b = b.name(n.clone());
        }
        b
    }
}

/// A worker process: this test binary re-run as `child_worker`.
pub struct Child {
    proc: std::process::Child,
    pub label: String,
}

/// What a child worker process runs.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    pub url: String,
    pub counter_url: String,
    pub cfg: WorkerCfg,
    /// A libfaketime offset such as `"+15s"`.
    pub faketime: Option<String>,
}

impl ChildSpec {
    /// A worker on `url` with `cfg`, counting in `counter_url`, on the real clock.
    pub fn new(url: &str, counter_url: &str, cfg: &WorkerCfg) -> ChildSpec {
        ChildSpec {
            url: url.to_string(),
            counter_url: counter_url.to_string(),
            cfg: cfg.clone(),
            faketime: None,
        }
    }
}

const FAKETIME_LIBS: [&str; 2] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
];

fn log_dir() -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault_injection_logs");
    let _ = std::fs::create_dir_all(&d);
    d
}

impl Child {
    pub fn spawn(spec: &ChildSpec, label: &str) -> Child {
        let exe = std::env::current_exe().expect("test binary");
        let mut cmd = Command::new(exe);
        cmd.args([
            "child_worker",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HQ_FI_URL", &spec.url)
        .env("HQ_FI_COUNTER_URL", &spec.counter_url)
        .env("HQ_FI_CONCURRENCY", spec.cfg.concurrency.to_string())
        .env("HQ_FI_PREFETCH", spec.cfg.prefetch.to_string())
        .env(
            "HQ_FI_HEARTBEAT_MS",
            spec.cfg.heartbeat.as_millis().to_string(),
        )
        .env("HQ_FI_LOST_MS", spec.cfg.lost_after.as_millis().to_string())
        .env("HQ_FI_PARENT", std::process::id().to_string())
        .stdout(Stdio::null());
        if let Some(name) = &spec.cfg.name {
            cmd.env("HQ_FI_NAME", name);
        }
        if let Some(offset) = &spec.faketime {
            // What `faketime -f <offset>` does, without the wrapper process in between
            // (so that a kill reaches the worker itself).
            let lib = FAKETIME_LIBS
                .iter()
                .find(|p| std::path::Path::new(p).exists())
                .expect("libfaketime (apt-get install faketime)");
            cmd.env("LD_PRELOAD", lib)
                .env("FAKETIME", offset)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_dir().join(format!("{label}.log")));
        match log {
            Ok(f) => cmd.stderr(Stdio::from(f)),
            Err(_) => cmd.stderr(Stdio::null()),
        };
        let proc = cmd.spawn().expect("spawn worker process");
        Child {
            proc,
            label: label.to_string(),
        }
    }

    /// kill -9, and reap.
    pub fn kill9(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }

    /// The exit status if the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.proc.try_wait().ok().flatten()
    }

    pub fn pid(&self) -> u32 {
        self.proc.id()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The body of `child_worker`.
pub async fn run_child_worker() {
    let Ok(url) = std::env::var("HQ_FI_URL") else {
        return;
    };
    let var = |k: &str| std::env::var(k).ok();
    let num = |k: &str, d: u64| var(k).and_then(|v| v.parse().ok()).unwrap_or(d);
    let counter_url = var("HQ_FI_COUNTER_URL").unwrap_or_else(|| url.clone());
    let mut cfg = WorkerCfg::new(
        num("HQ_FI_CONCURRENCY", 8) as usize,
        num("HQ_FI_PREFETCH", 4) as usize,
    );
    cfg.heartbeat = Duration::from_millis(num("HQ_FI_HEARTBEAT_MS", 250));
    cfg.lost_after = Duration::from_millis(num("HQ_FI_LOST_MS", 1500));
    cfg.name = var("HQ_FI_NAME");
    let (app, _backend) = app_on(&url, &counter_url, None).await;
    let worker = cfg.builder(&app).start().await.expect("child worker start");
    eprintln!(
        "child worker {} started (pid {})",
        worker.id(),
        std::process::id()
    );
    // Until killed; never outlives the test process.
    let parent = num("HQ_FI_PARENT", 0) as u32;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if parent != 0 && std::os::unix::process::parent_id() != parent {
            std::process::exit(0);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The side channel

/// The execution counters of a scenario.
#[derive(Clone)]
pub struct Counters {
    conn: MultiplexedConnection,
}

impl Counters {
    pub async fn connect(url: &str) -> Counters {
        Counters {
            conn: redis_conn(url).await,
        }
    }
    pub async fn execs(&self) -> HashMap<String, i64> {
        let mut c = self.conn.clone();
        c.hgetall(EXECS).await.expect("read counters")
    }
    pub async fn done(&self) -> HashMap<String, i64> {
        let mut c = self.conn.clone();
        c.hgetall(DONE).await.expect("read counters")
    }
    pub async fn execs_of(&self, id: &str) -> i64 {
        let mut c = self.conn.clone();
        let n: Option<i64> = c.hget(EXECS, id).await.expect("read counter");
        n.unwrap_or(0)
    }
    /// Distinct task ids started at least once.
    pub async fn distinct(&self) -> usize {
        let mut c = self.conn.clone();
        c.hlen(EXECS).await.expect("read counters")
    }
    /// Waits up to `timeout` until the body of `id` has started `at_least` times.
    pub async fn wait_execs(&self, id: &str, at_least: i64, timeout: Duration) -> bool {
        wait_for(timeout, || async { self.execs_of(id).await >= at_least }).await
    }
    pub async fn total(&self) -> i64 {
        let mut c = self.conn.clone();
        let n: Option<i64> = c.get(TOTAL).await.expect("read counter");
        n.unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------------------
// Held messages

/// Most messages leased at once: to one worker, and in total.
#[derive(Debug, Clone, Copy, Default)]
pub struct Held {
    pub one: u64,
    pub all: u64,
}

/// Samples the lease hashes every 20 ms on a connection of its own.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<Held>,
}

impl Sampler {
    pub fn start(url: &str) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let client = redis::Client::open(url).expect("url");
        let flag = stop.clone();
        let handle = tokio::spawn(async move {
            let mut held = Held::default();
            let mut conn: Option<MultiplexedConnection> = None;
            while !flag.load(Ordering::Relaxed) {
                if conn.is_none() {
                    conn = client.get_multiplexed_async_connection().await.ok();
                }
                if let Some(c) = conn.as_mut() {
                    match sample(c).await {
                        Ok((one, all)) => {
                            held.one = held.one.max(one);
                            held.all = held.all.max(all);
                        }
                        Err(_) => conn = None,
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            held
        });
        Sampler { stop, handle }
    }

    pub async fn finish(self) -> Held {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.await.unwrap_or_default()
    }
}

async fn sample(c: &mut MultiplexedConnection) -> redis::RedisResult<(u64, u64)> {
    let mut keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, mut batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(LEASE_MATCH)
            .arg("COUNT")
            .arg(1000)
            .query_async(c)
            .await?;
        keys.append(&mut batch);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    if keys.is_empty() {
        return Ok((0, 0));
    }
    let mut pipe = redis::pipe();
    for k in &keys {
        pipe.hlen(k);
    }
    let lens: Vec<u64> = pipe.query_async(c).await?;
    Ok((lens.iter().copied().max().unwrap_or(0), lens.iter().sum()))
}

// ---------------------------------------------------------------------------------------
// Final states

/// Waits until every id has a final record, or no new one appeared for `stall`, or
/// `cap` passed. Returns the records found (final ones only).
/// The error kind of a task's final record, if it ended with one.
pub fn failure_kind(finals: &HashMap<String, TaskMeta>, id: &str) -> Option<String> {
    finals
        .get(id)
        .and_then(|m| m.error.as_ref())
        .map(|e| e.kind.clone())
}

pub async fn wait_final(
    backend: &RedisBackend,
    ids: &[String],
    stall: Duration,
    cap: Duration,
) -> HashMap<String, TaskMeta> {
    let start = Instant::now();
    let mut last_progress = Instant::now();
    let mut found: HashMap<String, TaskMeta> = HashMap::new();
    loop {
        let remaining: Vec<String> = ids
            .iter()
            .filter(|id| !found.contains_key(*id))
            .cloned()
            .collect();
        if remaining.is_empty() {
            return found;
        }
        let got = read_final(backend, remaining).await;
        if !got.is_empty() {
            last_progress = Instant::now();
            found.extend(got);
        }
        if found.len() == ids.len() || last_progress.elapsed() >= stall || start.elapsed() >= cap {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn read_final(backend: &RedisBackend, ids: Vec<String>) -> Vec<(String, TaskMeta)> {
    let chunk = ids.len().div_ceil(8).max(1);
    let mut set = tokio::task::JoinSet::new();
    for part in ids.chunks(chunk) {
        let part = part.to_vec();
        let b = backend.clone();
        set.spawn(async move {
            let mut out = Vec::new();
            for id in part {
                if let Ok(Some(m)) = b.get(&id).await
                    && m.state.is_ready()
                {
                    out.push((id, m));
                }
            }
            out
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.extend(r.unwrap_or_default());
    }
    out
}

// ---------------------------------------------------------------------------------------
// The table row

/// One row of the fault-injection table.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub sent: usize,
    pub success: usize,
    /// Other final states, as `STATE` or `FAILURE:<kind>`.
    pub other: BTreeMap<String, usize>,
    /// Sent tasks with no final record.
    pub lost: usize,
    /// Tasks whose body started more than once.
    pub runs_gt1: usize,
    /// Body starts beyond the first, summed.
    pub extra_runs: i64,
    pub held: Held,
    pub window: usize,
    pub note: String,
}

impl Row {
    pub fn new(
        scenario: &str,
        ids: &[String],
        finals: &HashMap<String, TaskMeta>,
        execs: &HashMap<String, i64>,
        held: Held,
        window: usize,
    ) -> Row {
        let mut success = 0;
        let mut other = BTreeMap::new();
        let mut lost = 0;
        for id in ids {
            match finals.get(id) {
                None => lost += 1,
                Some(m) if m.state == hippo_queue_core::TaskState::Success => success += 1,
                Some(m) => {
                    let key = match &m.error {
                        Some(e) if m.state == hippo_queue_core::TaskState::Failure => {
                            format!("FAILURE:{}", e.kind)
                        }
                        _ => m.state.as_str().to_string(),
                    };
                    *other.entry(key).or_insert(0) += 1;
                }
            }
        }
        let (mut runs_gt1, mut extra_runs) = (0, 0);
        for id in ids {
            let n = execs.get(id).copied().unwrap_or(0);
            if n > 1 {
                runs_gt1 += 1;
                extra_runs += n - 1;
            }
        }
        Row {
            scenario: scenario.to_string(),
            sent: ids.len(),
            success,
            other,
            lost,
            runs_gt1,
            extra_runs,
            held,
            window,
            note: String::new(),
        }
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }

    /// FAILURE records saying the worker was lost.
    pub fn worker_lost(&self) -> usize {
        self.other
            .get("FAILURE:WorkerLostError")
            .copied()
            .unwrap_or(0)
    }

    pub fn other_total(&self) -> usize {
        self.other.values().sum()
    }

    /// Nothing lost, every sent task SUCCESS, no worker held more than its window.
    pub fn assert_all_success_within_window(&self) {
        assert_eq!(
            self.lost, 0,
            "{}: {} of {} tasks have no final record (lost)",
            self.scenario, self.lost, self.sent
        );
        assert_eq!(
            self.success, self.sent,
            "{}: {} of {} tasks SUCCESS; other final states {:?}",
            self.scenario, self.success, self.sent, self.other
        );
        self.assert_held_within_window();
    }

    /// No worker held more messages at once than its prefetch window.
    pub fn assert_held_within_window(&self) {
        assert!(
            self.held.one as usize <= self.window,
            "{}: one worker held {} messages at once, above its window of {}",
            self.scenario,
            self.held.one,
            self.window
        );
    }

    /// At most `bound` body starts beyond the first; `what` says what the bound is.
    pub fn assert_extra_runs_at_most(&self, bound: i64, what: &str) {
        assert!(
            self.extra_runs <= bound,
            "{}: {} extra runs ({} tasks ran more than once), above {what} = {bound}",
            self.scenario,
            self.extra_runs,
            self.runs_gt1
        );
    }

    /// No FAILURE record says WorkerLostError; `why` says what one would mean.
    pub fn assert_no_worker_lost(&self, why: &str) {
        assert_eq!(
            self.worker_lost(),
            0,
            "{}: {} tasks recorded FAILURE WorkerLostError: {why}",
            self.scenario,
            self.worker_lost()
        );
    }

    /// No task body started more than once; `why` says what a second run would mean.
    pub fn assert_no_task_ran_twice(&self, why: &str) {
        assert_eq!(
            self.runs_gt1, 0,
            "{}: {} tasks ran more than once ({} extra runs): {why}",
            self.scenario, self.runs_gt1, self.extra_runs
        );
    }

    pub fn line(&self) -> String {
        let other = if self.other.is_empty() {
            "0".to_string()
        } else {
            self.other
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "| {} | sent {} | SUCCESS {} | other {} | lost {} | run >1 {} (+{} runs) | held max {} per worker, {} total | window {} | {} |",
            self.scenario,
            self.sent,
            self.success,
            other,
            self.lost,
            self.runs_gt1,
            self.extra_runs,
            self.held.one,
            self.held.all,
            self.window,
            self.note
        )
    }

    /// Prints the row and appends it to `target/tmp/fault_injection_table.md`.
    pub fn print(&self) {
        let line = self.line();
        println!("{line}");
        let path =
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fault_injection_table.md");
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line} scale {} |", scale());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Raw records in the queue's keys

/// The integer of a reply from the test server.
pub fn int(r: Result<Reply, String>) -> i64 {
    match r {
        Ok(Reply::Int(n)) => n,
        other => panic!("expected an integer reply, got {other:?}"),
    }
}

/// The task ids of raw records (id length at bytes 4-5).
pub fn record_ids(recs: &[Vec<u8>]) -> Vec<String> {
    recs.iter()
        .filter(|r| r.len() >= 5)
        .filter_map(|r| {
            let n = usize::from(u16::from_be_bytes([r[3], r[4]]));
            r.get(5..5 + n)
                .map(|id| String::from_utf8_lossy(id).into_owned())
        })
        .collect()
}

fn bulk_list(r: Result<Reply, String>) -> Vec<Vec<u8>> {
    match r {
        Ok(Reply::Array(Some(items))) => items
            .into_iter()
            .filter_map(|i| match i {
                Reply::Bulk(Some(b)) => Some(b),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Ids of the records waiting (any priority) or delayed in the default queue.
pub fn queued_ids(server: &RedisServer) -> HashSet<String> {
    let mut recs = Vec::new();
    for p in 0..10 {
        let key = format!("hq:{{default}}:w{p}");
        recs.extend(bulk_list(server.command(&["LRANGE", &key, "0", "-1"])));
    }
    recs.extend(bulk_list(server.command(&[
        "ZRANGE",
        "hq:{default}:delayed",
        "0",
        "-1",
    ])));
    record_ids(&recs).into_iter().collect()
}

/// A well-formed message for the default queue (payload: an empty msgpack map).
pub fn good_outgoing(id: &str, eta: Option<u64>) -> Outgoing {
    Outgoing {
        id: id.to_string(),
        queue: QUEUE.into(),
        priority: 0,
        eta,
        payload: b"M\xc0".to_vec(),
        flags: DeliveryFlags::default(),
    }
}

/// What one fetch past a bad raw record found (see [`fetch_past_bad_record`]).
pub struct PastBadRecord {
    /// `returned N` or `failed: <error>`.
    pub fetch: String,
    /// Good messages delivered by the fetch or still waiting or delayed, of 10.
    pub found: usize,
    /// Messages leased to the fetching worker afterwards.
    pub leased: i64,
}

/// Review Q12: 10 good messages `good-0`..`good-9` published (due in `delay_ms` when
/// given), then `bad` added with the raw command `add` (for example `RPUSH <list>` or
/// `ZADD <set> <score>`), then, once the good ones are due, one fetch of up to 100
/// by a worker `drainer`.
pub async fn fetch_past_bad_record(
    add: &[&[u8]],
    bad: &[u8],
    delay_ms: Option<u64>,
) -> PastBadRecord {
    let server = RedisServer::start();
    let (_app, backend) = app_on(&server.url(0), &server.url(COUNTER_DB), None).await;
    let good: Vec<String> = (0..10).map(|i| format!("good-{i}")).collect();
    let eta = delay_ms.map(|ms| now_ms() + ms);
    backend
        .publish(good.iter().map(|id| good_outgoing(id, eta)).collect())
        .await
        .expect("publish");
    let mut cmd = add.to_vec();
    cmd.push(bad);
    server.command_bytes(&cmd).expect("add the bad record");
    if let Some(ms) = delay_ms {
        tokio::time::sleep(Duration::from_millis(ms + 200)).await;
    }
    backend
        .heartbeat(
            "drainer",
            "test-incarnation",
            Duration::from_secs(60),
            Duration::from_secs(2),
        )
        .await
        .expect("beat");
    let got = backend
        .fetch(
            "drainer",
            &[QUEUE.to_string()],
            100,
            Duration::from_millis(100),
        )
        .await;
    let delivered: HashSet<String> = match &got {
        Ok(ds) => ds.iter().map(|d| d.id.clone()).collect(),
        Err(_) => HashSet::new(),
    };
    let queued = queued_ids(&server);
    let leased = int(server.command(&["HLEN", "hq:{default}:lease:drainer"]));
    let found = good
        .iter()
        .filter(|id| delivered.contains(*id) || queued.contains(*id))
        .count();
    PastBadRecord {
        fetch: match &got {
            Ok(d) => format!("returned {}", d.len()),
            Err(e) => format!("failed: {e}"),
        },
        found,
        leased,
    }
}
