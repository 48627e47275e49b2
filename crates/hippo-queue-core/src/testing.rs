//! Helpers for testing code that uses tasks: eager mode (run a task inline, like
//! Celery's `task.apply()`) and a quick in-process worker.
//!
//! ```
//! use hippo_queue_core::{App, Task, TaskContext, TaskError, TaskState};
//!
//! struct Square;
//! impl Task for Square {
//!     const NAME: &'static str = "square";
//!     type Args = i64;
//!     type Output = i64;
//!     async fn run(&self, _: &TaskContext, x: i64) -> Result<i64, TaskError> { Ok(x * x) }
//! }
//!
//! # #[tokio::main] async fn main() {
//! let app = App::in_memory();
//! app.register(Square);
//! let r = app.apply::<Square>(7).await.unwrap();
//! assert_eq!(r.state, TaskState::Success);
//! assert_eq!(r.output.unwrap(), 49);
//! # }
//! ```

use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::codec::{from_msgpack, to_msgpack};
use crate::context::TaskContext;
use crate::task::kinds;
use crate::worker::WorkerBuilder;
use crate::{App, Error, SendOptions, Task, TaskFailure, TaskState};

/// The outcome of an eager run.
#[derive(Debug)]
pub struct EagerResult<T> {
    /// Task id.
    pub id: String,
    /// Final state.
    pub state: TaskState,
    /// The output, or the failure.
    pub output: Result<T, TaskFailure>,
    /// Retries performed.
    pub retries: u32,
}

impl App {
    /// Runs a registered task inline, in this task, with its options (time limits
    /// enforced, retries performed at once without waiting for their countdown).
    /// Nothing goes through the broker or the result backend.
    pub async fn apply<T: Task>(&self, args: T::Args) -> Result<EagerResult<T::Output>, Error> {
        self.apply_with::<T>(args, SendOptions::new()).await
    }

    /// [`App::apply`] with per-call options.
    pub async fn apply_with<T: Task>(
        &self,
        args: T::Args,
        opts: SendOptions,
    ) -> Result<EagerResult<T::Output>, Error> {
        let handler = self
            .handler(T::NAME)
            .ok_or_else(|| Error::NotRegistered(T::NAME.to_string()))?;
        let (env, _) = self.prepare(T::NAME, to_msgpack(&args)?, &T::options(), opts)?;
        let mut retries = 0;
        loop {
            let soft = CancellationToken::new();
            let ctx = TaskContext {
                id: env.id.clone(),
                name: env.name.clone(),
                retries,
                max_retries: env.retry.max_retries,
                queue: env.queue.clone(),
                root_id: env.root_id.clone(),
                parent_id: env.parent_id.clone(),
                worker: "eager".into(),
                soft_limit: soft.clone(),
                app: Some(self.clone()),
            };
            let outcome = match handler.call(ctx, &env.args) {
                Err(e) => Err(e),
                Ok(fut) => {
                    let run = tokio::spawn(fut);
                    run_limited(run, &env, soft).await
                }
            };
            let failure = match outcome {
                Ok(bytes) => {
                    return Ok(EagerResult {
                        id: env.id,
                        state: TaskState::Success,
                        output: Ok(from_msgpack::<T::Output>(&bytes)?),
                        retries,
                    });
                }
                Err(e) => e,
            };
            let wants_retry = failure.retry_requested() || env.retry.autoretries(failure.kind());
            if wants_retry && retries < env.retry.max_retries && !failure.is_reject() {
                retries += 1;
                continue;
            }
            return Ok(EagerResult {
                id: env.id,
                state: if failure.is_reject() {
                    TaskState::Rejected
                } else {
                    TaskState::Failure
                },
                output: Err(failure.to_failure()),
                retries,
            });
        }
    }
}

async fn run_limited(
    mut run: tokio::task::JoinHandle<Result<Vec<u8>, crate::TaskError>>,
    env: &crate::message::Envelope,
    soft: CancellationToken,
) -> Result<Vec<u8>, crate::TaskError> {
    let far = Duration::from_secs(100 * 365 * 24 * 3600);
    let soft_in = env.soft_time_limit.map_or(far, Duration::from_millis);
    let hard_in = env.time_limit.map_or(far, Duration::from_millis);
    let start = tokio::time::Instant::now();
    let joined = tokio::select! {
        r = &mut run => r,
        _ = tokio::time::sleep_until(start + hard_in) => {
            run.abort();
            return Err(crate::TaskError::new(kinds::TIME_LIMIT, "hard time limit exceeded"));
        }
        _ = tokio::time::sleep_until(start + soft_in) => {
            soft.cancel();
            tokio::select! {
                r = &mut run => r,
                _ = tokio::time::sleep_until(start + hard_in) => {
                    run.abort();
                    return Err(crate::TaskError::new(kinds::TIME_LIMIT, "hard time limit exceeded"));
                }
            }
        }
    };
    match joined {
        Ok(r) => r,
        Err(e) if e.is_panic() => Err(crate::TaskError::new(kinds::PANIC, "task panicked")),
        Err(e) => Err(crate::TaskError::new(kinds::ERROR, e.to_string())),
    }
}

/// A worker builder tuned for tests: fast heartbeats (100 ms, lost after 1 s), short
/// fetch waits and a short shutdown grace.
pub fn test_worker(app: &App) -> WorkerBuilder {
    app.worker()
        .heartbeat_interval(Duration::from_millis(100))
        .worker_lost_after(Duration::from_millis(1000))
        .fetch_wait(Duration::from_millis(200))
        .shutdown_grace(Duration::from_secs(5))
}

/// Waits until the task is ready, and returns its state.
pub async fn wait_ready(app: &App, id: &str, timeout: Duration) -> Result<TaskState, Error> {
    Ok(app
        .backend()
        .wait(id, timeout)
        .await?
        .map_or(TaskState::Pending, |m| m.state))
}

/// Decodes the stored output of a successful task.
pub async fn stored_output<T: DeserializeOwned>(app: &App, id: &str) -> Result<Option<T>, Error> {
    match app.backend().get(id).await? {
        Some(m) => match m.result {
            Some(bytes) => Ok(Some(from_msgpack(&bytes)?)),
            None => Ok(None),
        },
        None => Ok(None),
    }
}
