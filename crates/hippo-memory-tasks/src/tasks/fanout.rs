//! `fan_out_task`: the scheduler's all-users run, sent as one small task per user.

use std::collections::BTreeSet;

use chrono::Utc;
use hippo_queue_core::{SendOptions, Task, TaskContext, TaskError, TaskOptions};
use serde::{Deserialize, Serialize};

use super::{
    ConsolidationArgs, ConsolidationTask, DeduplicationArgs, DeduplicationTask, ExpirationArgs,
    ExpireMemoriesTask, MemoryServices, check_threshold, options, store_error,
};
use crate::store::{DEFAULT_PAGE, PageRequest};

/// Which per-user task a fan-out sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum FanOutTarget {
    /// `deduplication_task` for every user.
    Deduplication {
        /// The threshold passed on (the model's default when `None`).
        #[serde(default)]
        similarity_threshold: Option<f64>,
    },
    /// `consolidation_task` for every user.
    Consolidation {
        /// The threshold passed on (the model's default when `None`).
        #[serde(default)]
        similarity_threshold: Option<f64>,
    },
    /// `expire_memories_task` for every user that has an expired memory.
    Expiration,
}

impl FanOutTarget {
    /// Deduplication with the default threshold.
    pub fn deduplication() -> Self {
        FanOutTarget::Deduplication {
            similarity_threshold: None,
        }
    }

    /// Consolidation with the default threshold.
    pub fn consolidation() -> Self {
        FanOutTarget::Consolidation {
            similarity_threshold: None,
        }
    }

    fn task_name(&self) -> &'static str {
        match self {
            FanOutTarget::Deduplication { .. } => DeduplicationTask::NAME,
            FanOutTarget::Consolidation { .. } => ConsolidationTask::NAME,
            FanOutTarget::Expiration => ExpireMemoriesTask::NAME,
        }
    }
}

/// Arguments of `fan_out_task`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FanOutArgs {
    /// What to send.
    pub target: FanOutTarget,
}

/// Result of `fan_out_task`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FanOutResult {
    /// The task sent.
    pub task: String,
    /// Tasks sent, one per user.
    pub tasks_sent: u64,
}

/// Sends one per-user task for every user (queue `scheduled`, routing key
/// `scheduled.fan_out`), page by page, instead of one task over everyone.
///
/// Expiration is sent only to users with an expired memory in the expiry index. Each
/// child's id is `<fan-out id>/<user>`, so a fan-out that runs again after a crash
/// sends the same ids, and workers do not rerun a child that already finished.
pub struct FanOutTask {
    services: MemoryServices,
}

impl FanOutTask {
    /// The task on these services.
    pub fn new(services: MemoryServices) -> Self {
        FanOutTask { services }
    }
}

impl Task for FanOutTask {
    const NAME: &'static str = "fan_out_task";
    type Args = FanOutArgs;
    type Output = FanOutResult;

    fn options() -> TaskOptions {
        options("scheduled", "scheduled.fan_out", 300, 600)
    }

    async fn run(&self, ctx: &TaskContext, args: FanOutArgs) -> Result<FanOutResult, TaskError> {
        match &args.target {
            FanOutTarget::Deduplication {
                similarity_threshold: t,
            }
            | FanOutTarget::Consolidation {
                similarity_threshold: t,
            } => {
                check_threshold("similarity_threshold", *t, 0.5)?;
            }
            FanOutTarget::Expiration => {}
        }
        let Some(app) = ctx.app() else {
            return Err(super::invalid(
                "fan_out_task sends tasks and must run in an app (a worker or eager mode)",
            ));
        };
        let store = self.services.store.as_ref();
        let child = |user: &str| {
            let mut o: SendOptions = ctx.child_options();
            o.task_id = Some(format!("{}/{user}", ctx.id()));
            o
        };
        let mut sent = 0u64;
        let send = |users: Vec<String>| {
            let target = args.target.clone();
            async move {
                let n = users.len() as u64;
                let r = match target {
                    FanOutTarget::Deduplication {
                        similarity_threshold,
                    } => app
                        .send_many::<DeduplicationTask>(users.iter().map(|u| {
                            (
                                DeduplicationArgs {
                                    user_id: u.clone(),
                                    similarity_threshold,
                                    dry_run: false,
                                },
                                child(u),
                            )
                        }))
                        .await
                        .map(|_| ()),
                    FanOutTarget::Consolidation {
                        similarity_threshold,
                    } => app
                        .send_many::<ConsolidationTask>(users.iter().map(|u| {
                            (
                                ConsolidationArgs {
                                    user_id: u.clone(),
                                    similarity_threshold,
                                },
                                child(u),
                            )
                        }))
                        .await
                        .map(|_| ()),
                    FanOutTarget::Expiration => app
                        .send_many::<ExpireMemoriesTask>(users.iter().map(|u| {
                            (
                                ExpirationArgs {
                                    user_id: Some(u.clone()),
                                },
                                child(u),
                            )
                        }))
                        .await
                        .map(|_| ()),
                };
                r.map(|_| n).map_err(|e| {
                    TaskError::new("BrokerError", format!("sending tasks: {e}")).retry()
                })
            }
        };
        let mut page = PageRequest::first(DEFAULT_PAGE);
        match args.target {
            FanOutTarget::Expiration => {
                let now = Utc::now();
                let mut users = BTreeSet::new();
                loop {
                    let p = store.expired(now, None, &page).await.map_err(store_error)?;
                    users.extend(p.items.into_iter().map(|e| e.user_id));
                    match p.next {
                        Some(c) => page = page.after(c),
                        None => break,
                    }
                }
                let users: Vec<String> = users.into_iter().collect();
                for chunk in users.chunks(DEFAULT_PAGE) {
                    sent += send(chunk.to_vec()).await?;
                }
            }
            _ => loop {
                let p = store.list_users(&page).await.map_err(store_error)?;
                if !p.items.is_empty() {
                    sent += send(p.items).await?;
                }
                match p.next {
                    Some(c) => page = page.after(c),
                    None => break,
                }
            },
        }
        Ok(FanOutResult {
            task: args.target.task_name().to_string(),
            tasks_sent: sent,
        })
    }
}
