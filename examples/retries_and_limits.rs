//! Retries and time limits: what happens when a task fails or runs too long.
//!
//! Run it with `cargo run --example retries_and_limits`. No Redis; about a second.
//!
//! It teaches:
//!
//! - **autoretry with backoff**: an error of a listed type is retried automatically,
//!   after `retry_backoff × 2^n` (jitter off here, so the delays are predictable);
//! - **`max_retries`**: a task runs at most `max_retries + 1` times, then is FAILURE
//!   with its last error, whose cause chain says the retries ran out;
//! - **the soft time limit**: the task is told (`ctx.soft_limit()`) and can stop cleanly;
//! - **the hard time limit**: the run is aborted, FAILURE `TimeLimitExceeded`;
//! - how to see a FAILURE and its cause: `Error::TaskFailed` and `TaskFailure::traceback`.

use std::error::Error as StdError;
use std::time::Duration;

use hippo_queue::{App, AsyncResult, Error, Task, TaskContext, TaskError, TaskOptions};

/// The error a busy upstream service returns. Any `std::error::Error` converts into a
/// `TaskError` with `?`; its kind is the type's name, which `autoretry_for` matches.
#[derive(Debug)]
struct Busy;

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("upstream busy")
    }
}

impl StdError for Busy {}

/// Retried automatically on `Busy`: after 50 ms, then 100 ms, then 200 ms.
struct Fetch;

impl Task for Fetch {
    const NAME: &'static str = "limits.fetch";
    /// How many attempts the upstream is busy for.
    type Args = u32;
    type Output = String;

    fn options() -> TaskOptions {
        TaskOptions::new()
            .autoretry_for::<Busy>()
            .max_retries(3)
            .retry_backoff(Duration::from_millis(50))
            .retry_jitter(false)
    }

    async fn run(&self, ctx: &TaskContext, busy_for: u32) -> Result<String, TaskError> {
        let attempt = ctx.retries() + 1;
        println!(
            "  (worker) fetch, attempt {attempt} of {}",
            ctx.max_retries() + 1
        );
        if attempt <= busy_for {
            return Err(Busy.into()); // what `?` does with a `Result<_, Busy>`
        }
        Ok(format!("answered on attempt {attempt}"))
    }
}

/// Works in steps and stops cleanly at the soft limit; the hard limit is the backstop.
struct Crunch;

impl Task for Crunch {
    const NAME: &'static str = "limits.crunch";
    /// Milliseconds of work.
    type Args = u64;
    type Output = String;

    fn options() -> TaskOptions {
        TaskOptions::new()
            .soft_time_limit(Duration::from_millis(200))
            .time_limit(Duration::from_millis(500))
    }

    async fn run(&self, ctx: &TaskContext, ms: u64) -> Result<String, TaskError> {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms)) => Ok(format!("{ms} ms of work done")),
            _ = ctx.soft_limit() => {
                println!("  (worker) crunch: soft limit reached, saving progress");
                Err(TaskError::soft_time_limit())
            }
        }
    }
}

/// Ignores the soft limit: only the hard limit stops it.
struct Stubborn;

impl Task for Stubborn {
    const NAME: &'static str = "limits.stubborn";
    type Args = ();
    type Output = String;

    fn options() -> TaskOptions {
        TaskOptions::new()
            .soft_time_limit(Duration::from_millis(100))
            .time_limit(Duration::from_millis(300))
    }

    async fn run(&self, _: &TaskContext, _: ()) -> Result<String, TaskError> {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok("finished after a minute".into())
    }
}

/// Waits for a result and prints it, or the failure with its causes.
async fn report<T: serde::de::DeserializeOwned + std::fmt::Debug>(
    what: &str,
    handle: AsyncResult<T>,
) -> Result<(), Error> {
    match handle.get(Duration::from_secs(10)).await {
        Ok(out) => println!("{what}: SUCCESS {out:?}"),
        Err(Error::TaskFailed { state, failure, .. }) => {
            println!(
                "{what}: {state}\n  {}",
                failure.traceback().replace('\n', "\n  ")
            );
        }
        Err(e) => return Err(e),
    }
    let retries = handle.meta().await?.map_or(0, |m| m.retries);
    println!("  retries: {retries}");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn StdError>> {
    let app = App::in_memory();
    app.register(Fetch).register(Crunch).register(Stubborn);
    let worker = app.worker().concurrency(4).start().await?;

    println!("== busy twice, then fine: retried until it succeeds ==");
    report("fetch(2)", app.delay::<Fetch>(2).await?).await?;

    println!("\n== always busy: max_retries=3, then FAILURE ==");
    report("fetch(99)", app.delay::<Fetch>(99).await?).await?;

    println!("\n== within the soft limit ==");
    report("crunch(50)", app.delay::<Crunch>(50).await?).await?;

    println!("\n== past the soft limit: the task stops itself ==");
    report("crunch(5000)", app.delay::<Crunch>(5000).await?).await?;

    println!("\n== past the hard limit: the run is aborted ==");
    report("stubborn", app.delay::<Stubborn>(()).await?).await?;

    let s = worker.stats();
    println!(
        "\nworker: {} succeeded, {} failed, {} retried",
        s.succeeded, s.failed, s.retried
    );
    worker.shutdown().await;
    Ok(())
}
