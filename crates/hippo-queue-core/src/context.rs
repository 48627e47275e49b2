//! What a running task knows about itself: its ids, its retry count, and its soft time
//! limit.

use tokio_util::sync::CancellationToken;

use crate::App;

/// The context a task runs in (Celery's `self.request`, plus the soft-limit signal).
///
/// ```
/// # use hippo_queue_core::{TaskContext, TaskError};
/// async fn long_job(ctx: &TaskContext) -> Result<u32, TaskError> {
///     let mut done = 0;
///     for _chunk in 0..1000 {
///         if ctx.soft_limit_reached() {
///             // save progress, then stop cleanly
///             return Err(TaskError::soft_time_limit());
///         }
///         done += 1;
///         tokio::task::yield_now().await;
///     }
///     Ok(done)
/// }
/// ```
#[derive(Clone)]
pub struct TaskContext {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) retries: u32,
    pub(crate) max_retries: u32,
    pub(crate) queue: String,
    pub(crate) root_id: Option<String>,
    pub(crate) parent_id: Option<String>,
    pub(crate) worker: String,
    pub(crate) soft_limit: CancellationToken,
    pub(crate) app: Option<App>,
}

impl TaskContext {
    /// A context for calling a task directly in a unit test.
    pub fn for_test(id: impl Into<String>, name: impl Into<String>) -> Self {
        TaskContext {
            id: id.into(),
            name: name.into(),
            retries: 0,
            max_retries: crate::defaults::MAX_RETRIES,
            queue: "default".into(),
            root_id: None,
            parent_id: None,
            worker: "test".into(),
            soft_limit: CancellationToken::new(),
            app: None,
        }
    }

    /// This task's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// This task's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many times this task was retried before this run.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The retry limit in force.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// The queue the message came from.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The root task of the workflow (this task's id when it has no parent).
    pub fn root_id(&self) -> &str {
        self.root_id.as_deref().unwrap_or(&self.id)
    }

    /// The task that sent this one.
    pub fn parent_id(&self) -> Option<&str> {
        self.parent_id.as_deref()
    }

    /// The worker running the task.
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// Whether the soft time limit has passed.
    pub fn soft_limit_reached(&self) -> bool {
        self.soft_limit.is_cancelled()
    }

    /// Completes when the soft time limit passes (never, without a limit). Use it in a
    /// `tokio::select!` to stop waiting work cleanly.
    pub async fn soft_limit(&self) {
        self.soft_limit.cancelled().await
    }

    /// The app the task runs in, to send follow-up tasks (their `parent_id` and
    /// `root_id` are set from this task when sent with [`TaskContext::child_options`]).
    pub fn app(&self) -> Option<&App> {
        self.app.as_ref()
    }

    /// Send options that mark a task as this one's child.
    pub fn child_options(&self) -> crate::SendOptions {
        crate::SendOptions {
            parent_id: Some(self.id.clone()),
            root_id: Some(self.root_id().to_string()),
            ..Default::default()
        }
    }

    /// Signals the soft limit now (for tests of a task's clean-up path).
    pub fn trigger_soft_limit(&self) {
        self.soft_limit.cancel();
    }
}

impl std::fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskContext")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("retries", &self.retries)
            .field("queue", &self.queue)
            .field("worker", &self.worker)
            .finish()
    }
}
