//! [`MemoryTaskClient`]: what a host application (an HTTP API, a CLI) calls to submit
//! the tasks and read their status, in the guide's shapes.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use hippo_memory_tasks::client::MemoryTaskClient;
//! use hippo_memory_tasks::model::{Memory, MemoryType};
//! use hippo_memory_tasks::store::{InMemoryStore, MemoryStore};
//! use hippo_memory_tasks::tasks::{MemoryServices, register_all};
//! use hippo_queue_core::App;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(InMemoryStore::new());
//! store.put(&Memory::new("user123", "Likes jazz", MemoryType::Preference)).await?;
//! store.put(&Memory::new("user123", "likes jazz!", MemoryType::Preference)).await?;
//! let app = App::builder().router(hippo_memory_tasks::router()).build();
//! register_all(&app, &MemoryServices::new(store.clone()));
//! let worker = app.worker().start().await?;
//!
//! let client = MemoryTaskClient::new(app.clone(), store);
//! let task_id = client.submit_deduplication_task("user123", Some(0.85), false).await?;
//! let status = client.wait(&task_id, Duration::from_secs(10)).await?;
//! assert_eq!(status.state, "SUCCESS");
//! assert_eq!(status.result["duplicates_found"], 1);
//! assert_eq!(status.result["duplicates_merged"], 1);
//! assert!(status.traceback.is_none());
//! worker.shutdown().await;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use hippo_queue_core::codec::from_msgpack;
use hippo_queue_core::{App, SendOptions, Task, TaskState};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::model::Migration;
use crate::store::{MemoryStore, StoreError};
use crate::tasks::{
    AutoSummarizationTask, CompressionArgs, CompressionTask, ConsolidateProceduralRulesTask,
    ConsolidationArgs, ConsolidationTask, DeduplicationArgs, DeduplicationTask, ExpirationArgs,
    ExpireMemoriesTask, HealthCheckArgs, HealthCheckTask, MigrateEmbeddingsArgs,
    MigrateEmbeddingsTask, ProceduralArgs, SummarizationArgs,
};

/// Why a request was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// An argument is out of range or missing.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The queue could not take the task.
    #[error("queue error: {0}")]
    Queue(#[from] hippo_queue_core::Error),
    /// The memory store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No such migration.
    #[error("no migration {0:?}")]
    NoMigration(String),
}

/// The guide's task status: `GET /api/v1/tasks/{task_id}/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
pub struct TaskStatus {
    /// The task.
    pub task_id: String,
    /// `PENDING`, `STARTED`, `RETRY`, `SUCCESS`, `FAILURE`, `REVOKED` or `REJECTED`.
    pub state: String,
    /// The task's result object on success; `{"exc_type", "exc_message"}` on failure;
    /// `null` otherwise.
    pub result: Value,
    /// The error and its causes, for failed tasks.
    pub traceback: Option<String>,
}

/// The guide's answer to a migration request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationStarted {
    /// The migration record's id.
    pub migration_id: String,
    /// The task running it.
    pub task_id: String,
}

/// Submits the memory tasks and reads their status.
#[derive(Clone)]
pub struct MemoryTaskClient {
    app: App,
    store: Arc<dyn MemoryStore>,
}

impl std::fmt::Debug for MemoryTaskClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTaskClient")
            .field("app", &self.app)
            .field("store", &self.store.kind())
            .finish()
    }
}

fn check_user(user_id: &str) -> Result<(), ClientError> {
    if user_id.trim().is_empty() {
        Err(ClientError::InvalidArgument("user_id is empty".into()))
    } else {
        Ok(())
    }
}

fn check_threshold(t: f64) -> Result<(), ClientError> {
    if t.is_finite() && (0.0..=1.0).contains(&t) {
        Ok(())
    } else {
        Err(ClientError::InvalidArgument(format!(
            "similarity_threshold must be between 0 and 1, got {t}"
        )))
    }
}

impl MemoryTaskClient {
    /// A client sending through `app` (the migration records live in `store`).
    pub fn new(app: App, store: Arc<dyn MemoryStore>) -> Self {
        MemoryTaskClient { app, store }
    }

    async fn send<T: Task>(&self, args: T::Args) -> Result<String, ClientError> {
        Ok(self
            .app
            .apply_async::<T>(args, SendOptions::new())
            .await?
            .id()
            .to_string())
    }

    /// `POST /api/v1/tasks/deduplication`: the current model's threshold when `None`.
    pub async fn submit_deduplication_task(
        &self,
        user_id: &str,
        similarity_threshold: Option<f64>,
        dry_run: bool,
    ) -> Result<String, ClientError> {
        check_user(user_id)?;
        if let Some(t) = similarity_threshold {
            check_threshold(t)?;
        }
        self.send::<DeduplicationTask>(DeduplicationArgs {
            user_id: user_id.into(),
            similarity_threshold,
            dry_run,
        })
        .await
    }

    /// `POST /api/v1/tasks/consolidation`: the current model's threshold when `None`.
    pub async fn submit_consolidation_task(
        &self,
        user_id: &str,
        similarity_threshold: Option<f64>,
    ) -> Result<String, ClientError> {
        check_user(user_id)?;
        if let Some(t) = similarity_threshold {
            check_threshold(t)?;
        }
        self.send::<ConsolidationTask>(ConsolidationArgs {
            user_id: user_id.into(),
            similarity_threshold,
        })
        .await
    }

    /// `POST /api/v1/tasks/health-check`.
    pub async fn submit_health_check_task(
        &self,
        user_id: Option<&str>,
    ) -> Result<String, ClientError> {
        if let Some(u) = user_id {
            check_user(u)?;
        }
        self.send::<HealthCheckTask>(HealthCheckArgs {
            user_id: user_id.map(str::to_string),
        })
        .await
    }

    /// `POST /api/v1/tasks/summarization`: 30 days when `None`.
    pub async fn submit_summarization_task(
        &self,
        user_id: &str,
        min_age_days: Option<u32>,
    ) -> Result<String, ClientError> {
        check_user(user_id)?;
        let mut args = SummarizationArgs::new(user_id);
        if let Some(d) = min_age_days {
            args.min_age_days = d;
        }
        self.send::<AutoSummarizationTask>(args).await
    }

    /// Submits `compression_task`.
    pub async fn submit_compression_task(&self, user_id: &str) -> Result<String, ClientError> {
        check_user(user_id)?;
        self.send::<CompressionTask>(CompressionArgs {
            user_id: user_id.into(),
        })
        .await
    }

    /// Submits `expire_memories_task` (everyone when `None`).
    pub async fn submit_expiration_task(
        &self,
        user_id: Option<&str>,
    ) -> Result<String, ClientError> {
        if let Some(u) = user_id {
            check_user(u)?;
        }
        self.send::<ExpireMemoriesTask>(ExpirationArgs {
            user_id: user_id.map(str::to_string),
        })
        .await
    }

    /// `POST /v1/procedural/consolidate?user_id=...`.
    pub async fn submit_procedural_consolidation(
        &self,
        user_id: &str,
    ) -> Result<String, ClientError> {
        check_user(user_id)?;
        self.send::<ConsolidateProceduralRulesTask>(ProceduralArgs {
            user_id: user_id.into(),
        })
        .await
    }

    /// `POST /v1/admin/embeddings/migrate {new_model, new_dimension}`: creates the
    /// migration record, then sends `migrate_embeddings_task` for it.
    pub async fn start_embedding_migration(
        &self,
        new_model: &str,
        new_dimension: usize,
    ) -> Result<MigrationStarted, ClientError> {
        if new_model.trim().is_empty() {
            return Err(ClientError::InvalidArgument("new_model is empty".into()));
        }
        if new_dimension == 0 {
            return Err(ClientError::InvalidArgument(
                "new_dimension must be at least 1".into(),
            ));
        }
        let m = Migration::new(None, new_model, new_dimension);
        self.store.create_migration(&m).await?;
        let task_id = self.resume_embedding_migration(&m.id).await?;
        Ok(MigrationStarted {
            migration_id: m.id,
            task_id,
        })
    }

    /// Sends `migrate_embeddings_task` for an existing migration (to resume one that
    /// stopped at its soft time limit, for example).
    pub async fn resume_embedding_migration(
        &self,
        migration_id: &str,
    ) -> Result<String, ClientError> {
        self.send::<MigrateEmbeddingsTask>(MigrateEmbeddingsArgs {
            migration_id: migration_id.into(),
        })
        .await
    }

    /// `GET /v1/admin/embeddings/migration/{id}`.
    pub async fn get_migration(&self, migration_id: &str) -> Result<Migration, ClientError> {
        self.store
            .get_migration(migration_id)
            .await?
            .ok_or_else(|| ClientError::NoMigration(migration_id.into()))
    }

    /// `POST /v1/admin/embeddings/migration/{id}/cancel`.
    pub async fn cancel_migration(&self, migration_id: &str) -> Result<Migration, ClientError> {
        self.store
            .cancel_migration(migration_id)
            .await?
            .ok_or_else(|| ClientError::NoMigration(migration_id.into()))
    }

    /// `DELETE /api/v1/tasks/{task_id}`: revokes a task (`terminate` aborts a running
    /// one).
    pub async fn revoke_task(&self, task_id: &str, terminate: bool) -> Result<(), ClientError> {
        Ok(self.app.revoke(task_id, terminate).await?)
    }

    /// `GET /api/v1/tasks/{task_id}/status`.
    pub async fn get_task_status(&self, task_id: &str) -> Result<TaskStatus, ClientError> {
        let meta = self
            .app
            .backend()
            .get(task_id)
            .await
            .map_err(hippo_queue_core::Error::from)?;
        Ok(status_of(task_id, meta))
    }

    /// Waits up to `timeout` for the task to finish, then returns its status
    /// (whatever it is by then).
    pub async fn wait(&self, task_id: &str, timeout: Duration) -> Result<TaskStatus, ClientError> {
        let meta = self
            .app
            .backend()
            .wait(task_id, timeout)
            .await
            .map_err(hippo_queue_core::Error::from)?;
        Ok(status_of(task_id, meta))
    }
}

fn status_of(task_id: &str, meta: Option<hippo_queue_core::TaskMeta>) -> TaskStatus {
    let Some(m) = meta else {
        return TaskStatus {
            task_id: task_id.into(),
            state: TaskState::Pending.as_str().into(),
            result: Value::Null,
            traceback: None,
        };
    };
    let result = match (&m.result, &m.error) {
        (Some(bytes), _) if m.state == TaskState::Success => from_msgpack::<Value>(bytes)
            .unwrap_or_else(|e| json!({"undecodable_result": e.to_string()})),
        (_, Some(f)) => json!({"exc_type": f.kind, "exc_message": f.message}),
        _ => Value::Null,
    };
    TaskStatus {
        task_id: task_id.into(),
        state: m.state.as_str().into(),
        result,
        traceback: m.error.as_ref().map(|f| f.traceback()),
    }
}
