//! The process pool against a real Redis: a task runs in a child process of the
//! worker's program, and what the task does to its child (spin, leak, abort, be
//! killed) stays in the child.
//!
//! The test binary is the program: `pool_child` (ignored in normal runs) is what a
//! child runs, registering the same tasks as the parent and calling
//! `serve_if_child`, as a user's `main` does.

use hippo_queue_redis::test_server as support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hippo_queue_core::control::{Command, ReplyBody};
use hippo_queue_core::task::kinds;
use hippo_queue_core::worker::{ChildCommand, Pool, serve_if_child};
use hippo_queue_core::{
    App, AsyncResult, SendOptions, Task, TaskContext, TaskError, TaskMeta, TaskOptions, TaskState,
    WorkerBuilder,
};
use hippo_queue_redis::{RedisBackend, RedisConfig};

/// Its child's pid.
struct Pid;
impl Task for Pid {
    const NAME: &'static str = "pool.pid";
    type Args = ();
    type Output = u32;
    async fn run(&self, _: &TaskContext, _: ()) -> Result<u32, TaskError> {
        Ok(std::process::id())
    }
}

/// CPU-bound forever: no `.await`, no end.
struct Spin;
impl Task for Spin {
    const NAME: &'static str = "pool.spin";
    type Args = ();
    type Output = ();
    fn options() -> TaskOptions {
        TaskOptions::new().time_limit(Duration::from_millis(500))
    }
    #[allow(clippy::empty_loop)]
    async fn run(&self, _: &TaskContext, _: ()) -> Result<(), TaskError> {
        loop {}
    }
}

/// Keeps `mib` MiB it never frees (touched, so they are resident), then its pid.
struct Leak;
impl Task for Leak {
    const NAME: &'static str = "pool.leak";
    type Args = usize;
    type Output = u32;
    async fn run(&self, _: &TaskContext, mib: usize) -> Result<u32, TaskError> {
        let block = vec![1u8; mib * 1024 * 1024];
        std::mem::forget(block);
        Ok(std::process::id())
    }
}

/// Kills its own process.
struct Abort;
impl Task for Abort {
    const NAME: &'static str = "pool.abort";
    type Args = ();
    type Output = ();
    async fn run(&self, _: &TaskContext, _: ()) -> Result<(), TaskError> {
        std::process::abort()
    }
}

/// Writes its pid to a file, sleeps, returns its pid.
struct Hold;
impl Task for Hold {
    const NAME: &'static str = "pool.hold";
    type Args = (PathBuf, u64);
    type Output = u32;
    async fn run(&self, _: &TaskContext, (file, ms): (PathBuf, u64)) -> Result<u32, TaskError> {
        let pid = std::process::id();
        std::fs::write(&file, pid.to_string())?;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(pid)
    }
}

/// Writes its pid to a file, then spins forever.
struct HoldAndSpin;
impl Task for HoldAndSpin {
    const NAME: &'static str = "pool.hold_and_spin";
    type Args = PathBuf;
    type Output = ();
    #[allow(clippy::empty_loop)]
    async fn run(&self, _: &TaskContext, file: PathBuf) -> Result<(), TaskError> {
        std::fs::write(&file, std::process::id().to_string())?;
        loop {}
    }
}

/// Waits for its soft limit and says so.
struct Patient;
impl Task for Patient {
    const NAME: &'static str = "pool.patient";
    type Args = ();
    type Output = String;
    fn options() -> TaskOptions {
        TaskOptions::new()
            .soft_time_limit(Duration::from_millis(300))
            .time_limit(Duration::from_secs(10))
    }
    async fn run(&self, ctx: &TaskContext, _: ()) -> Result<String, TaskError> {
        ctx.soft_limit().await;
        Ok(format!("soft limit seen in {}", std::process::id()))
    }
}

/// The registration code parent and children share.
fn register(app: &App) {
    app.register(Pid);
    app.register(Spin);
    app.register(Leak);
    app.register(Abort);
    app.register(Hold);
    app.register(Patient);
    app.register(HoldAndSpin);
}

/// What each child runs. Runs only when a pool starts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the process pool's child, started by the tests"]
async fn pool_child() {
    let app = App::in_memory();
    register(&app);
    serve_if_child(&app).await;
}

/// A worker in a process of its own (for the test that kills it). Runs only when that
/// test starts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a worker process, started by the tests"]
async fn worker_process() {
    let Ok(url) = std::env::var("HQ_POOL_WORKER_URL") else {
        return;
    };
    let backend = RedisBackend::connect(RedisConfig::new(url))
        .await
        .expect("connect");
    let app = App::builder()
        .broker(backend.clone())
        .backend(backend)
        .build();
    register(&app);
    let _worker = pool(&app, 1).start().await.expect("worker");
    // Until killed (and never longer than a minute).
    tokio::time::sleep(Duration::from_secs(60)).await;
}

fn child_command() -> ChildCommand {
    let exe = std::env::current_exe().expect("test binary");
    ChildCommand::new(
        exe,
        ["pool_child", "--exact", "--ignored", "--nocapture", "-q"],
    )
}

struct Kit {
    _redis: support::RedisServer,
    app: App,
}

async fn kit() -> Kit {
    let redis = support::RedisServer::start();
    let backend = RedisBackend::connect(RedisConfig::new(redis.url(0)))
        .await
        .expect("connect");
    let app = App::builder()
        .broker(backend.clone())
        .backend(backend)
        .build();
    register(&app);
    Kit { _redis: redis, app }
}

fn pool(app: &App, concurrency: usize) -> WorkerBuilder {
    app.worker()
        .pool(Pool::Process)
        .child_command(child_command())
        .concurrency(concurrency)
        .prefetch_multiplier(1)
        .fetch_wait(Duration::from_millis(100))
        .child_kill_grace(Duration::from_millis(500))
}

const WAIT: Duration = Duration::from_secs(20);

async fn pid(app: &App) -> u32 {
    let r = app.delay::<Pid>(()).await.expect("send");
    r.get(WAIT).await.expect("pid task")
}

/// The final record of a task, whatever its state.
async fn final_meta<T>(r: &AsyncResult<T>) -> TaskMeta
where
    T: serde::de::DeserializeOwned,
{
    let _ = r.get(WAIT).await;
    r.meta().await.expect("read").expect("a record")
}

fn alive(pid: u32) -> bool {
    // A zombie is dead for this purpose: its parent has not reaped it yet.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

async fn gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_bound_loop_is_killed_at_its_hard_limit_and_a_fresh_child_takes_the_slot() {
    let k = kit().await;
    let worker = pool(&k.app, 1).start().await.expect("worker");
    let first = pid(&k.app).await;
    let spin = k.app.delay::<Spin>(()).await.expect("send");
    let meta = final_meta(&spin).await;
    assert_eq!(meta.state, TaskState::Failure);
    let f = meta.error.expect("failure");
    assert_eq!(f.kind, kinds::TIME_LIMIT, "{f:?}");
    assert!(
        gone(first).await,
        "the spinning child {first} was not killed"
    );
    let second = pid(&k.app).await;
    assert_ne!(first, second, "the slot kept its killed child");
    assert_eq!(pid(&k.app).await, second, "the fresh child serves on");
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tasks_per_child_replaces_the_child_every_n_tasks() {
    let k = kit().await;
    let worker = pool(&k.app, 1)
        .max_tasks_per_child(3)
        .start()
        .await
        .expect("worker");
    let mut pids = Vec::new();
    for _ in 0..9 {
        pids.push(pid(&k.app).await);
    }
    let groups: Vec<&[u32]> = pids.chunks(3).collect();
    for g in &groups {
        assert!(
            g.iter().all(|p| *p == g[0]),
            "one child per 3 tasks: {pids:?}"
        );
    }
    let distinct: HashSet<u32> = pids.iter().copied().collect();
    assert_eq!(distinct.len(), 3, "a new child every 3 tasks: {pids:?}");
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaking_child_is_replaced_above_max_memory_per_child() {
    let k = kit().await;
    let worker = pool(&k.app, 1)
        .max_memory_per_child(100 * 1024)
        .start()
        .await
        .expect("worker");
    let small = k.app.delay::<Leak>(1).await.expect("send");
    let a = small.get(WAIT).await.expect("small leak");
    assert_eq!(pid(&k.app).await, a, "a child under the limit goes on");
    let big = k.app.delay::<Leak>(150).await.expect("send");
    let b = big.get(WAIT).await.expect("big leak");
    assert_eq!(a, b);
    assert!(gone(a).await, "the child over the limit was not retired");
    let c = pid(&k.app).await;
    assert_ne!(c, a, "the leaking child was replaced");
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_aborts_fails_naming_the_signal_and_the_worker_goes_on() {
    let k = kit().await;
    let worker = pool(&k.app, 1).start().await.expect("worker");
    let r = k.app.delay::<Abort>(()).await.expect("send");
    let meta = final_meta(&r).await;
    assert_eq!(meta.state, TaskState::Failure);
    let f = meta.error.expect("failure");
    assert_eq!(f.kind, kinds::WORKER_LOST);
    assert!(f.message.contains("SIGABRT"), "{}", f.message);
    pid(&k.app).await;
    assert!(!worker.is_stopped());
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soft_limit_reaches_the_task_in_its_child() {
    let k = kit().await;
    let worker = pool(&k.app, 1).start().await.expect("worker");
    let r = k.app.delay::<Patient>(()).await.expect("send");
    let said = r.get(WAIT).await.expect("patient");
    assert!(said.starts_with("soft limit seen in"), "{said}");
    assert_ne!(said, format!("soft limit seen in {}", std::process::id()));
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_restart_under_load_replaces_every_child_and_loses_nothing() {
    let k = kit().await;
    let worker = pool(&k.app, 2).start().await.expect("worker");
    let dir = tempdir();
    let mut before = HashSet::new();
    for _ in 0..4 {
        before.insert(pid(&k.app).await);
    }
    let mut load = Vec::new();
    for i in 0..30 {
        let file = dir.join(format!("load-{i}"));
        load.push(k.app.delay::<Hold>((file, 20)).await.expect("send"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let replies = k
        .app
        .control()
        .call(None, Command::PoolRestart, Duration::from_secs(10))
        .await
        .expect("pool_restart");
    assert!(
        matches!(&replies[..], [r] if matches!(&r.body, ReplyBody::Ok(_))),
        "{replies:?}"
    );
    for r in &load {
        r.get(WAIT).await.expect("every task of the load succeeds");
    }
    for _ in 0..4 {
        let p = pid(&k.app).await;
        assert!(
            !before.contains(&p),
            "{p} is a child from before the restart"
        );
    }
    for p in before {
        assert!(gone(p).await, "child {p} outlived the restart");
    }
    worker.shutdown().await;
}

/// Sends a `Hold` with `opts`, kills its child with SIGKILL mid-task; returns the
/// task's final record, its output if it succeeded, the killed pid and the pid that
/// serves next.
async fn killed_mid_task(opts: SendOptions) -> (TaskMeta, Option<u32>, u32, u32) {
    let k = kit().await;
    let worker = pool(&k.app, 1).start().await.expect("worker");
    let dir = tempdir();
    let file = dir.join("pid");
    let r = k
        .app
        .apply_async::<Hold>((file.clone(), 3_000), opts)
        .await
        .expect("send");
    let victim = read_pid(&file).await;
    std::fs::remove_file(&file).expect("remove pid file");
    let status = std::process::Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let meta = final_meta(&r).await;
    let output = r.get(WAIT).await.ok();
    let after = pid(&k.app).await;
    assert!(!worker.is_stopped());
    worker.shutdown().await;
    (meta, output, victim, after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_child_mid_task_is_failure_naming_sigkill() {
    let (meta, _, victim, after) = killed_mid_task(SendOptions::new()).await;
    assert_eq!(meta.state, TaskState::Failure);
    let f = meta.error.expect("failure");
    assert_eq!(f.kind, kinds::WORKER_LOST);
    assert!(f.message.contains("SIGKILL"), "{}", f.message);
    assert_ne!(victim, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_child_mid_task_requeues_under_acks_late_and_reject_on_worker_lost() {
    let opts = SendOptions {
        options: TaskOptions::new()
            .acks_late(true)
            .reject_on_worker_lost(true),
        ..SendOptions::default()
    };
    let (meta, output, victim, after) = killed_mid_task(opts).await;
    assert_eq!(meta.state, TaskState::Success, "{meta:?}");
    let ran_in = output.expect("the output of the second run");
    assert_ne!(ran_in, victim, "the second run is in a fresh child");
    assert_eq!(ran_in, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_grow_gives_the_new_slot_its_own_child() {
    let k = kit().await;
    let worker = pool(&k.app, 1).start().await.expect("worker");
    let replies = k
        .app
        .control()
        .call(None, Command::PoolGrow(1), Duration::from_secs(5))
        .await
        .expect("pool_grow");
    assert!(matches!(&replies[..], [r] if matches!(&r.body, ReplyBody::Ok(_))));
    assert_eq!(worker.concurrency(), 2);
    let dir = tempdir();
    let a = k
        .app
        .delay::<Hold>((dir.join("a"), 800))
        .await
        .expect("send");
    let b = k
        .app
        .delay::<Hold>((dir.join("b"), 800))
        .await
        .expect("send");
    let started = Instant::now();
    let (pa, pb) = (a.get(WAIT).await.expect("a"), b.get(WAIT).await.expect("b"));
    assert_ne!(pa, pb, "two slots, two children");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the two ran at once"
    );
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_does_not_serve_is_named_at_start() {
    let k = kit().await;
    let err = k
        .app
        .worker()
        .pool(Pool::Process)
        .child_command(ChildCommand::new("true", Vec::<String>::new()))
        .start()
        .await
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert!(msg.contains("serve_if_child"), "{msg}");
    assert!(msg.contains("exited with code 0"), "{msg}");
}

/// A fresh directory for pid files.
fn tempdir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("hq-pool-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

async fn read_pid(file: &Path) -> u32 {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(s) = std::fs::read_to_string(file)
            && let Ok(p) = s.trim().parse()
        {
            return p;
        }
        assert!(Instant::now() < deadline, "the task never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscale_grows_the_process_pool_under_a_backlog() {
    let k = kit().await;
    let worker = pool(&k.app, 1)
        .autoscale(3, 1)
        .start()
        .await
        .expect("worker");
    let dir = tempdir();
    let mut held = Vec::new();
    for i in 0..6 {
        let file = dir.join(format!("h{i}"));
        held.push(k.app.delay::<Hold>((file, 1_000)).await.expect("send"));
    }
    let mut pids = HashSet::new();
    for r in &held {
        pids.insert(r.get(WAIT).await.expect("held"));
    }
    assert!(worker.concurrency() > 1, "autoscale never grew the pool");
    assert!(pids.len() > 1, "more slots, more children: {pids:?}");
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_dies_with_its_worker() {
    let k = kit().await;
    let url = k._redis.url(0);
    let mut worker = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "worker_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "-q",
        ])
        .env("HQ_POOL_WORKER_URL", &url)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("worker process");
    let dir = tempdir();
    let file = dir.join("spinner");
    k.app
        .delay::<HoldAndSpin>(file.clone())
        .await
        .expect("send");
    let child = read_pid(&file).await;
    assert!(alive(child));
    worker.kill().expect("kill -9 the worker");
    let _ = worker.wait();
    assert!(
        gone(child).await,
        "the spinning child {child} outlived its worker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_kills_the_child_and_records_revoked() {
    let k = kit().await;
    let worker = pool(&k.app, 1).start().await.expect("worker");
    let dir = tempdir();
    let file = dir.join("spinner");
    let r = k
        .app
        .delay::<HoldAndSpin>(file.clone())
        .await
        .expect("send");
    let child = read_pid(&file).await;
    r.revoke(true).await.expect("revoke");
    let meta = final_meta(&r).await;
    assert_eq!(meta.state, TaskState::Revoked, "{meta:?}");
    assert!(gone(child).await, "the terminated child {child} lives on");
    assert_ne!(pid(&k.app).await, child);
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_a_spinning_child_when_the_grace_runs_out() {
    let k = kit().await;
    let worker = pool(&k.app, 1).start().await.expect("worker");
    let dir = tempdir();
    let file = dir.join("spinner");
    let r = k
        .app
        .delay::<HoldAndSpin>(file.clone())
        .await
        .expect("send");
    let child = read_pid(&file).await;
    let report = worker.shutdown_within(Duration::from_millis(300)).await;
    assert_eq!(report.aborted, 1);
    assert!(
        gone(child).await,
        "the spinning child {child} outlived the shutdown"
    );
    let meta = r.meta().await.expect("read").expect("record");
    assert_eq!(meta.state, TaskState::Failure, "{meta:?}");
    assert_eq!(meta.error.expect("failure").kind, kinds::WORKER_SHUTDOWN);
}
