//! `call`: send a task and wait for its result in one step.
//!
//! Run it with `cargo run --example call`. No Redis; about half a second.
//!
//! When the caller is going to wait anyway (a request handler that needs the answer),
//! `app.call::<T>(args, timeout)` replaces `app.delay::<T>(args).await?.get(timeout)`:
//! it registers its wait before the message leaves and the worker announces the
//! result, so nothing is read back. It teaches:
//!
//! - a `call` that succeeds, and `call_with` with send options (here a priority);
//! - a `call` that times out: `Error::Timeout`, while the task itself keeps running;
//! - a `call` whose task fails: `Error::TaskFailed` with the state and the cause;
//! - a `call` refused at once: a task that ignores its results cannot be waited for.

use std::error::Error as StdError;
use std::time::Duration;

use hippo_queue::{App, Error, SendOptions, Task, TaskContext, TaskError, TaskOptions};

/// Divides, slowly: `(numerator, denominator, milliseconds to take)`.
struct Divide;

impl Task for Divide {
    const NAME: &'static str = "math.divide";
    type Args = (i64, i64, u64);
    type Output = i64;

    async fn run(&self, _: &TaskContext, (n, d, ms): (i64, i64, u64)) -> Result<i64, TaskError> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        if d == 0 {
            // A kind and a message; the caller sees both.
            return Err(TaskError::new("ZeroDivisionError", format!("{n} / 0")));
        }
        Ok(n / d)
    }
}

/// Fire and forget: its SUCCESS is never stored, so nobody can wait for it.
struct Audit;

impl Task for Audit {
    const NAME: &'static str = "audit.log";
    type Args = String;
    type Output = ();

    fn options() -> TaskOptions {
        TaskOptions::new().ignore_result(true)
    }

    async fn run(&self, _: &TaskContext, line: String) -> Result<(), TaskError> {
        println!("  (worker) audit: {line}");
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn StdError>> {
    let app = App::in_memory();
    app.register(Divide).register(Audit);
    let worker = app.worker().concurrency(2).start().await?;
    let timeout = Duration::from_secs(2);

    // 1. Send and wait in one step: the output, typed.
    let q = app.call::<Divide>((84, 2, 10), timeout).await?;
    println!("call divide(84, 2)      -> {q}");

    // `call_with` takes the same SendOptions as `apply_async`.
    let urgent = SendOptions::new().priority(9);
    let q = app.call_with::<Divide>((10, 3, 0), urgent, timeout).await?;
    println!("call_with divide(10, 3) -> {q} (sent with priority 9)");

    // 2. Not ready within the timeout. The task is not cancelled: it still runs to
    // its end (the graceful shutdown below waits for it).
    let short = Duration::from_millis(100);
    match app.call::<Divide>((1, 1, 400), short).await {
        Err(Error::Timeout(after)) => {
            println!("call divide(1, 1) slow  -> timed out after {after:?}")
        }
        other => return Err(format!("expected a timeout, got {other:?}").into()),
    }

    // 3. The task fails: the error says which state and why.
    match app.call::<Divide>((1, 0, 0), timeout).await {
        Err(Error::TaskFailed {
            task_id,
            state,
            failure,
        }) => {
            println!("call divide(1, 0)       -> {state}: {failure} (task {task_id})");
        }
        other => return Err(format!("expected a failure, got {other:?}").into()),
    }

    // 4. Refused before anything is sent: its result would never come.
    match app
        .call::<Audit>("nobody waits for this".into(), timeout)
        .await
    {
        Err(Error::InvalidOptions(why)) => println!("call audit              -> refused: {why}"),
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }
    worker.shutdown().await;
    Ok(())
}
