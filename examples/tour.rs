//! An embedded tour of hippo-queue: no Redis, no extra process.
//!
//! Run it with `cargo run --example tour`. Set `RUST_LOG=info` (or `debug`) to also
//! see the worker's logs.
//!
//! It defines four tasks, starts two in-process workers on the in-memory backend with
//! the guide's four queues, and shows typed arguments and results, topic routing,
//! message priorities, automatic retries with exponential backoff, a countdown,
//! revoking a running task, queue statistics and a graceful shutdown.

use std::error::Error as StdError;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hippo_queue::{
    App, Error, Pool, Router, SendOptions, Task, TaskContext, TaskError, TaskOptions, TaskState,
};
use serde::{Deserialize, Serialize};

const WAIT: Duration = Duration::from_secs(10);

// --- 1. Tasks: a name, typed arguments, a typed output and default options. ---------

/// Arguments and output are any serde types; they travel as MessagePack.
#[derive(Serialize, Deserialize)]
struct Document {
    title: String,
    body: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct WordStats {
    title: String,
    words: usize,
    lines: usize,
}

/// Counts words. Its routing key `memory.index` matches the `memory_ops` queue's
/// pattern `memory.#`, so that is where it goes.
struct WordCount;

impl Task for WordCount {
    const NAME: &'static str = "demo.word_count";
    type Args = Document;
    type Output = WordStats;
    fn options() -> TaskOptions {
        TaskOptions::new().routing_key("memory.index")
    }
    async fn run(&self, _: &TaskContext, doc: Document) -> Result<WordStats, TaskError> {
        Ok(WordStats {
            words: doc.body.split_whitespace().count(),
            lines: doc.body.lines().count(),
            title: doc.title,
        })
    }
}

/// Adler-32 of a text. A task is a value, so it can hold state: here a counter that
/// records the order in which the calls ran.
struct Checksum {
    runs: Arc<AtomicUsize>,
}

impl Task for Checksum {
    const NAME: &'static str = "demo.checksum";
    type Args = String;
    type Output = (usize, String); // (run order, checksum)
    fn options() -> TaskOptions {
        TaskOptions::new().queue("background")
    }
    async fn run(&self, _: &TaskContext, text: String) -> Result<(usize, String), TaskError> {
        let (mut a, mut b) = (1u32, 0u32);
        for byte in text.bytes() {
            a = (a + u32::from(byte)) % 65_521;
            b = (b + a) % 65_521;
        }
        let order = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        Ok((order, format!("{:08x}", (b << 16) | a)))
    }
}

/// The error a flaky upstream returns. Any `std::error::Error` converts into a
/// `TaskError` whose kind is its type name, which `autoretry_for::<E>()` matches.
#[derive(Debug)]
struct UpstreamBusy(u32);

impl std::fmt::Display for UpstreamBusy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "upstream busy on attempt {}", self.0)
    }
}

impl StdError for UpstreamBusy {}

/// Fails twice, then succeeds: retried automatically with exponential backoff
/// (a backoff of 100 ms, then 200 ms; jitter off so the demo is predictable).
struct FlakyFetch;

impl Task for FlakyFetch {
    const NAME: &'static str = "demo.flaky_fetch";
    type Args = String;
    type Output = String;
    fn options() -> TaskOptions {
        TaskOptions::new()
            .autoretry_for::<UpstreamBusy>()
            .max_retries(5)
            .retry_backoff(Duration::from_millis(100))
            .retry_jitter(false)
    }
    async fn run(&self, ctx: &TaskContext, url: String) -> Result<String, TaskError> {
        let attempt = ctx.retries() + 1;
        if attempt < 3 {
            return Err(UpstreamBusy(attempt).into());
        }
        Ok(format!("{url}: 200 OK on attempt {attempt}"))
    }
}

/// Takes a minute unless stopped. `track_started` records STARTED when it begins.
struct SlowReport;

impl Task for SlowReport {
    const NAME: &'static str = "demo.slow_report";
    type Args = ();
    type Output = String;
    fn options() -> TaskOptions {
        TaskOptions::new().track_started(true)
    }
    async fn run(&self, _: &TaskContext, _: ()) -> Result<String, TaskError> {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok("report ready".into())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn StdError>> {
    // Logs only on request, so that the default output stays readable.
    if std::env::var_os("RUST_LOG").is_some() {
        let filter = tracing_subscriber::EnvFilter::from_default_env();
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }

    // --- 2. The app: in-memory broker and result backend, the guide's four queues:
    // memory_ops (memory.#, 9), default (5), background (background.#, 3), scheduled (1).
    let app = App::builder().router(Router::guide_preset()).build();
    let runs = Arc::new(AtomicUsize::new(0));
    app.register(WordCount)
        .register(Checksum { runs })
        .register(FlakyFetch)
        .register(SlowReport);
    println!("registered tasks: {}", app.registered().join(", "));

    // --- 3. A backlog with priorities (0-9, higher first), sent before any worker. ---
    println!("\n== priorities ==");
    let mut backlog = Vec::new();
    for (text, priority) in [("low", 0), ("urgent", 9), ("normal", 3), ("high", 6)] {
        let opts = SendOptions::new().priority(priority);
        let handle = app.apply_async::<Checksum>(text.into(), opts).await?;
        backlog.push((text, priority, handle));
    }
    let stats = app.broker().queue_stats(&["background".into()]).await?;
    let by_priority = stats[0].waiting_by_priority;
    println!("background queue, waiting by priority 0..9: {by_priority:?}");

    // --- 4. Workers are tokio tasks on this runtime. One runs memory_ops and default
    // four at a time; a solo worker drains background one task at a time.
    let worker = app
        .worker()
        .queues(["memory_ops", "default"])
        .concurrency(4)
        .start()
        .await?;
    let background = app
        .worker()
        .queues(["background"])
        .pool(Pool::Solo)
        .start()
        .await?;
    for (text, priority, handle) in &backlog {
        let (order, sum) = handle.get(WAIT).await?;
        println!("checksum({text:?}) priority {priority}: {sum}, ran #{order}");
    }

    // --- 5. Send, then wait for the typed result. -----------------------------------
    println!("\n== typed task ==");
    let body = "an old silent pond\na frog jumps into the pond\nsplash! silence again";
    let doc = Document {
        title: "haiku".into(),
        body: body.into(),
    };
    let stats = app.delay::<WordCount>(doc).await?.get(WAIT).await?;
    println!("word_count -> {stats:?}");

    // --- 6. Automatic retries with exponential backoff. -----------------------------
    println!("\n== retries ==");
    let url = "https://example.org/feed".to_string();
    let flaky = app.delay::<FlakyFetch>(url).await?;
    let body = flaky.get(WAIT).await?;
    // The stored record says how many retries it took.
    let retries = flaky.meta().await?.map_or(0, |m| m.retries);
    println!("flaky_fetch -> {body:?} after {retries} retries");

    // --- 7. A countdown: the message waits in the broker's delayed set. -------------
    println!("\n== countdown ==");
    let started = Instant::now();
    let doc = Document {
        title: "later".into(),
        body: "sent now, run soon".into(),
    };
    let later = SendOptions::new().countdown(Duration::from_millis(500));
    let handle = app.apply_async::<WordCount>(doc, later).await?;
    let stats = app.broker().queue_stats(&["memory_ops".into()]).await?;
    let (delayed, waiting) = (stats[0].delayed, stats[0].waiting());
    println!("memory_ops: {delayed} delayed, {waiting} waiting");
    let words = handle.get(WAIT).await?.words;
    let ms = started.elapsed().as_millis();
    println!("word_count -> {words} words, {ms} ms after sending");

    // --- 8. Revoke a running task with terminate. ------------------------------------
    println!("\n== revocation ==");
    let slow = app.delay::<SlowReport>(()).await?;
    let deadline = Instant::now() + WAIT;
    while slow.state().await? != TaskState::Started {
        if Instant::now() > deadline {
            return Err("slow_report did not start".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (state, running) = (slow.state().await?, worker.active().len());
    println!("slow_report is {state}, tasks running: {running}");
    slow.revoke(true).await?;
    while !worker.active().is_empty() {
        if Instant::now() > deadline {
            return Err("slow_report was not terminated".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (state, running) = (slow.state().await?, worker.active().len());
    println!("after revoke(terminate): {state}, tasks running: {running}");
    match slow.get(WAIT).await {
        Err(Error::TaskFailed { state, failure, .. }) => println!("get() -> {state}: {failure}"),
        other => println!("get() -> unexpected {other:?}"),
    }

    // --- 9. Statistics, then a graceful shutdown. ----------------------------------
    println!("\n== stats ==");
    let names = ["memory_ops", "default", "background", "scheduled"].map(String::from);
    for q in app.broker().queue_stats(&names).await? {
        let (name, waiting, delayed, dead) = (&q.queue, q.waiting(), q.delayed, q.dead_letter);
        println!("queue {name:<10} waiting {waiting} delayed {delayed} dead-lettered {dead}");
    }
    for (name, w) in [("main", &worker), ("background", &background)] {
        let s = w.stats();
        let (ok, failed, retried, revoked) = (s.succeeded, s.failed, s.retried, s.revoked);
        println!(
            "worker {name:<10} succeeded {ok} failed {failed} retried {retried} revoked {revoked}"
        );
    }
    // Stop fetching, hand back reserved messages, let running tasks finish.
    let report = worker.shutdown().await;
    background.shutdown().await;
    let (released, aborted) = (report.released, report.aborted);
    println!("\nshut down: {released} reserved messages handed back, {aborted} tasks aborted");
    Ok(())
}
