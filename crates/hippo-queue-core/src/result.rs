//! Stored task records and the handle to a sent task.

use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::from_msgpack;
use crate::{App, Error, TaskFailure, TaskState};

/// The stored record of a task (Celery's task meta).
///
/// Stored with its fields by position ([`Codec::encode_compact`](crate::codec::Codec::encode_compact)):
/// a new field goes at the end, with `#[serde(default)]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskMeta {
    /// Task id.
    pub task_id: String,
    /// Task name.
    pub name: String,
    /// State.
    pub state: TaskState,
    /// The output, MessagePack, for SUCCESS.
    #[serde(with = "serde_bytes")]
    pub result: Option<Vec<u8>>,
    /// The error, for FAILURE, RETRY, REVOKED and REJECTED.
    pub error: Option<TaskFailure>,
    /// Retries so far.
    pub retries: u32,
    /// The worker that wrote it.
    pub worker: Option<String>,
    /// Queue.
    pub queue: Option<String>,
    /// When it was written, ms since the epoch.
    pub date_done: u64,
    /// The fencing token of the lease it was written under (`None`: written outside any
    /// lease, such as a revocation).
    pub fence: Option<u64>,
}

impl TaskMeta {
    /// A record with no result or error.
    pub fn new(task_id: impl Into<String>, name: impl Into<String>, state: TaskState) -> Self {
        TaskMeta {
            task_id: task_id.into(),
            name: name.into(),
            state,
            result: None,
            error: None,
            retries: 0,
            worker: None,
            queue: None,
            date_done: crate::time::now_ms(),
            fence: None,
        }
    }
}

/// The fencing rule every result backend applies: a ready (final) record is never
/// replaced; a write without a fence (a revocation) is otherwise always accepted; a
/// write under a lease older than the stored record's is refused.
///
/// ```
/// use hippo_queue_core::{TaskMeta, TaskState, result::accepts};
/// let mut started = TaskMeta::new("t", "n", TaskState::Started);
/// started.fence = Some(7);
/// let mut stale = TaskMeta::new("t", "n", TaskState::Success);
/// stale.fence = Some(3);
/// assert!(!accepts(Some(&started), &stale));
/// stale.fence = Some(7);
/// assert!(accepts(Some(&started), &stale));
/// ```
pub fn accepts(existing: Option<&TaskMeta>, new: &TaskMeta) -> bool {
    let Some(old) = existing else { return true };
    if old.state.is_ready() {
        return false;
    }
    match (old.fence, new.fence) {
        (_, None) | (None, _) => true,
        (Some(o), Some(n)) => n >= o,
    }
}

/// A handle to a sent task (Celery's `AsyncResult`), typed by the task's output.
///
/// ```
/// # use hippo_queue_core::{App, Task, TaskContext, TaskError};
/// # struct Double;
/// # impl Task for Double {
/// #     const NAME: &'static str = "double";
/// #     type Args = u32; type Output = u32;
/// #     async fn run(&self, _: &TaskContext, x: u32) -> Result<u32, TaskError> { Ok(x * 2) }
/// # }
/// # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::Error> {
/// let app = App::in_memory();
/// app.register(Double);
/// let worker = app.worker().start().await?;
/// let handle = app.delay::<Double>(21).await?;
/// assert_eq!(handle.get(std::time::Duration::from_secs(5)).await?, 42);
/// assert!(handle.successful().await?);
/// worker.shutdown().await;
/// # Ok(()) }
/// ```
pub struct AsyncResult<T> {
    id: String,
    app: App,
    _out: PhantomData<fn() -> T>,
}

/// The output of a task from its record as a wait ended: the output of a SUCCESS,
/// [`Error::TaskFailed`] for other final states, [`Error::Timeout`] otherwise.
pub(crate) fn output<T: DeserializeOwned>(
    id: &str,
    meta: Option<TaskMeta>,
    timeout: Duration,
) -> Result<T, Error> {
    match meta {
        Some(m) if m.state == TaskState::Success => match m.result {
            Some(bytes) => Ok(from_msgpack(&bytes)?),
            None => Err(Error::NoResult(id.to_string())),
        },
        Some(m) if m.state.is_ready() => Err(Error::TaskFailed {
            task_id: id.to_string(),
            state: m.state,
            failure: m
                .error
                .unwrap_or_else(|| TaskFailure::new(m.state.as_str(), "no error recorded")),
        }),
        _ => Err(Error::Timeout(timeout)),
    }
}

impl<T> Clone for AsyncResult<T> {
    fn clone(&self) -> Self {
        AsyncResult {
            id: self.id.clone(),
            app: self.app.clone(),
            _out: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult").field("id", &self.id).finish()
    }
}

impl<T: DeserializeOwned> AsyncResult<T> {
    pub(crate) fn new(id: String, app: App) -> Self {
        AsyncResult {
            id,
            app,
            _out: PhantomData,
        }
    }

    /// The task id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The stored record, if any.
    pub async fn meta(&self) -> Result<Option<TaskMeta>, Error> {
        Ok(self.app.backend().get(&self.id).await?)
    }

    /// The current state (PENDING when nothing is stored).
    pub async fn state(&self) -> Result<TaskState, Error> {
        Ok(self.meta().await?.map_or(TaskState::Pending, |m| m.state))
    }

    /// Whether the task has finished (SUCCESS, FAILURE, REVOKED or REJECTED).
    pub async fn ready(&self) -> Result<bool, Error> {
        Ok(self.state().await?.is_ready())
    }

    /// Whether the task succeeded.
    pub async fn successful(&self) -> Result<bool, Error> {
        Ok(self.state().await? == TaskState::Success)
    }

    /// Whether the task failed (FAILURE or REJECTED).
    pub async fn failed(&self) -> Result<bool, Error> {
        Ok(matches!(
            self.state().await?,
            TaskState::Failure | TaskState::Rejected
        ))
    }

    /// The error of a failed, retried, revoked or rejected task.
    pub async fn error(&self) -> Result<Option<TaskFailure>, Error> {
        Ok(self.meta().await?.and_then(|m| m.error))
    }

    /// The error with its chain of causes, rendered (Celery's `traceback`).
    pub async fn traceback(&self) -> Result<Option<String>, Error> {
        Ok(self.error().await?.map(|f| f.traceback()))
    }

    /// Waits for the task to finish, woken by the result's arrival, and returns its
    /// output. Errors: [`Error::Timeout`], [`Error::TaskFailed`] for other final states,
    /// [`Error::NoResult`] for a success whose result is not stored.
    pub async fn get(&self, timeout: Duration) -> Result<T, Error> {
        let meta = self.app.backend().wait(&self.id, timeout).await?;
        output(&self.id, meta, timeout)
    }

    /// Revokes the task; with `terminate`, a running task is aborted.
    pub async fn revoke(&self, terminate: bool) -> Result<(), Error> {
        self.app.revoke(&self.id, terminate).await
    }

    /// Deletes the stored result.
    pub async fn forget(&self) -> Result<(), Error> {
        Ok(self.app.backend().forget(&self.id).await?)
    }
}
