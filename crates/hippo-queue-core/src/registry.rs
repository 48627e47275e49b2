//! Task registry: task names mapped to type-erased handlers.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use crate::codec::{from_msgpack, to_msgpack};
use crate::task::kinds;
use crate::{Task, TaskContext, TaskError, TaskOptions};

/// The future of one task run: the output as MessagePack, or the task's error.
pub(crate) type TaskFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, TaskError>> + Send>>;

/// A registered task with its types erased.
pub(crate) trait Handler: Send + Sync {
    fn options(&self) -> TaskOptions;
    /// Decodes the arguments and returns the run's future; an argument error is
    /// returned at once.
    fn call(&self, ctx: TaskContext, args: &[u8]) -> Result<TaskFuture, TaskError>;
}

struct TaskHandler<T>(Arc<T>);

impl<T: Task> Handler for TaskHandler<T> {
    fn options(&self) -> TaskOptions {
        T::options()
    }

    fn call(&self, ctx: TaskContext, args: &[u8]) -> Result<TaskFuture, TaskError> {
        let args: T::Args = from_msgpack(args).map_err(|e| {
            TaskError::new(
                kinds::ARGUMENTS,
                format!("arguments do not match task {}: {e}", T::NAME),
            )
        })?;
        let task = self.0.clone();
        Ok(Box::pin(async move {
            let out = task.run(&ctx, args).await?;
            to_msgpack(&out).map_err(|e| {
                TaskError::new(
                    "ResultEncodeError",
                    format!("output of task {} cannot be serialised: {e}", T::NAME),
                )
            })
        }))
    }
}

/// The tasks an app can run.
#[derive(Default)]
pub(crate) struct Registry {
    tasks: RwLock<HashMap<String, Arc<dyn Handler>>>,
}

impl Registry {
    pub(crate) fn register<T: Task>(&self, task: T) {
        let handler: Arc<dyn Handler> = Arc::new(TaskHandler(Arc::new(task)));
        self.tasks
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(T::NAME.to_string(), handler);
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<dyn Handler>> {
        self.tasks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .tasks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }
}
