//! The bodies the API takes and gives, shared by the server and the client.
//!
//! Requests keep every field optional so that a missing one is a 422 naming it
//! (rather than serde's generic message); they refuse unknown fields.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{Memory, Metadata, Migration, ProceduralRule};

fn default_true() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// `POST /api/v1/tasks/deduplication`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DeduplicationRequest {
    /// The user whose memories are deduplicated (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "api", schema(required = true))]
    pub user_id: Option<String>,
    /// 0..1; default: the embedding model's (0.88 lexical, 0.81 all-MiniLM-L6-v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "api", schema(minimum = 0.0, maximum = 1.0))]
    pub similarity_threshold: Option<f64>,
    /// `false`: wait for the task and answer with its status.
    #[serde(
        rename = "async",
        default = "default_true",
        skip_serializing_if = "is_true"
    )]
    pub run_async: bool,
    /// Report the duplicates without merging them.
    #[serde(default)]
    pub dry_run: bool,
}

impl DeduplicationRequest {
    /// Deduplication of `user_id` with the model's threshold, answered at once.
    pub fn new(user_id: impl Into<String>) -> Self {
        DeduplicationRequest {
            user_id: Some(user_id.into()),
            similarity_threshold: None,
            run_async: true,
            dry_run: false,
        }
    }
}

/// `POST /api/v1/tasks/consolidation`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ConsolidationRequest {
    /// The user (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "api", schema(required = true))]
    pub user_id: Option<String>,
    /// 0..1; default: the embedding model's (0.85 lexical, 0.75 all-MiniLM-L6-v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "api", schema(minimum = 0.0, maximum = 1.0))]
    pub similarity_threshold: Option<f64>,
    /// `false`: wait for the task.
    #[serde(
        rename = "async",
        default = "default_true",
        skip_serializing_if = "is_true"
    )]
    pub run_async: bool,
}

impl ConsolidationRequest {
    /// Consolidation of `user_id` with the model's threshold.
    pub fn new(user_id: impl Into<String>) -> Self {
        ConsolidationRequest {
            user_id: Some(user_id.into()),
            similarity_threshold: None,
            run_async: true,
        }
    }
}

/// `POST /api/v1/tasks/summarization`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SummarizationRequest {
    /// The user (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "api", schema(required = true))]
    pub user_id: Option<String>,
    /// Summarise memories older than this (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_age_days: Option<u32>,
    /// `false`: wait for the task.
    #[serde(
        rename = "async",
        default = "default_true",
        skip_serializing_if = "is_true"
    )]
    pub run_async: bool,
}

impl SummarizationRequest {
    /// Summarisation of `user_id` with the default age.
    pub fn new(user_id: impl Into<String>) -> Self {
        SummarizationRequest {
            user_id: Some(user_id.into()),
            min_age_days: None,
            run_async: true,
        }
    }
}

/// A task of one user: `POST /api/v1/tasks/compression`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct UserRequest {
    /// The user (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "api", schema(required = true))]
    pub user_id: Option<String>,
    /// `false`: wait for the task.
    #[serde(
        rename = "async",
        default = "default_true",
        skip_serializing_if = "is_true"
    )]
    pub run_async: bool,
}

impl UserRequest {
    /// The task for `user_id`.
    pub fn new(user_id: impl Into<String>) -> Self {
        UserRequest {
            user_id: Some(user_id.into()),
            run_async: true,
        }
    }
}

/// A task of one user or of everyone: `POST /api/v1/tasks/{health-check,expiration}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct OptionalUserRequest {
    /// The user; omitted: every user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// `false`: wait for the task.
    #[serde(
        rename = "async",
        default = "default_true",
        skip_serializing_if = "is_true"
    )]
    pub run_async: bool,
}

impl OptionalUserRequest {
    /// The task for `user_id`, or for everyone.
    pub fn new(user_id: Option<String>) -> Self {
        OptionalUserRequest {
            user_id,
            run_async: true,
        }
    }
}

/// The answer to a submission (202).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct Submitted {
    /// The task's id, for `GET /api/v1/tasks/{task_id}/status`.
    pub task_id: String,
    /// Always `PENDING`.
    pub status: String,
    /// The queue it was routed to.
    pub queue: String,
}

/// `DELETE /api/v1/tasks/{task_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct Revoked {
    /// The task.
    pub task_id: String,
    /// Always true.
    pub revoked: bool,
    /// Whether a running task is aborted.
    pub terminate: bool,
    /// Its state when it was revoked.
    pub state: String,
}

/// `POST /v1/admin/embeddings/migrate`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MigrateRequest {
    /// The model to move to (required; one of the models the API knows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "api", schema(required = true))]
    pub new_model: Option<String>,
    /// Its vector size (default: the known model's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "api", schema(minimum = 1))]
    pub new_dimension: Option<usize>,
}

impl MigrateRequest {
    /// A migration to `new_model`.
    pub fn new(new_model: impl Into<String>) -> Self {
        MigrateRequest {
            new_model: Some(new_model.into()),
            new_dimension: None,
        }
    }
}

/// The answer to a migration request (202): its ids, then the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct MigrationStartedBody {
    /// The migration record's id.
    pub migration_id: String,
    /// The task running it.
    pub task_id: String,
    /// The queue of that task.
    pub queue: String,
    /// The record.
    #[serde(flatten)]
    pub record: Migration,
}

/// `POST /v1/procedural/rules`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RuleRequest {
    /// The owner (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "api", schema(required = true))]
    pub user_id: Option<String>,
    /// The rule (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "api", schema(required = true))]
    pub rule_text: Option<String>,
    /// 0..1, default 0.7.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "api", schema(minimum = 0.0, maximum = 1.0))]
    pub confidence: Option<f64>,
    /// 0..1, default 0.5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "api", schema(minimum = 0.0, maximum = 1.0))]
    pub success_rate: Option<f64>,
}

impl RuleRequest {
    /// A rule for `user_id` with the default confidence and success rate.
    pub fn new(user_id: impl Into<String>, rule_text: impl Into<String>) -> Self {
        RuleRequest {
            user_id: Some(user_id.into()),
            rule_text: Some(rule_text.into()),
            confidence: None,
            success_rate: None,
        }
    }
}

/// `GET /v1/procedural/rules`: a user's rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct RulePage {
    /// The owner.
    pub user_id: String,
    /// How many rules.
    pub total: usize,
    /// The rules.
    pub rules: Vec<ProceduralRule>,
}

/// `POST /v1/memories`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MemoryRequest {
    /// The text (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "api", schema(required = true))]
    pub text: Option<String>,
    /// The owner (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "api", schema(required = true))]
    pub user_id: Option<String>,
    /// One of the nine memory types (default `fact`).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub memory_type: Option<String>,
    /// 0..10, default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "api", schema(minimum = 0.0, maximum = 10.0))]
    pub importance: Option<f64>,
    /// 0..1, default 0.9.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "api", schema(minimum = 0.0, maximum = 1.0))]
    pub confidence: Option<f64>,
    /// Tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The session it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The agent that wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    #[cfg_attr(feature = "api", schema(value_type = Object))]
    pub metadata: Metadata,
    /// Days until it expires (above 0); not with `expires_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_days: Option<f64>,
    /// When it expires; not with `ttl_days`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl MemoryRequest {
    /// A `fact` memory of `user_id`.
    pub fn new(user_id: impl Into<String>, text: impl Into<String>) -> Self {
        MemoryRequest {
            user_id: Some(user_id.into()),
            text: Some(text.into()),
            ..MemoryRequest::default()
        }
    }
}

/// `GET /v1/memories`: one page of a user's memories, ordered by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct MemoryPage {
    /// The owner.
    pub user_id: String,
    /// How many memories the user has.
    pub total: u64,
    /// This page (without vectors).
    pub memories: Vec<Memory>,
    /// The `cursor` of the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// `DELETE /v1/memories/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct Deleted {
    /// Always true.
    pub deleted: bool,
    /// The memory.
    pub id: String,
    /// Its owner.
    pub user_id: String,
}

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct Health {
    /// `ok`, or `unavailable` when the broker or the store cannot be reached.
    pub status: String,
    /// How the API runs (`embedded`, `redis`, or what the host says).
    pub mode: String,
    /// `ok` or the broker's error.
    pub broker: String,
    /// `ok` or the store's error.
    pub store: String,
    /// Live workers.
    pub workers: usize,
}

/// Every error answer: `{"error": "what is wrong"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct ErrorBody {
    /// What is wrong, and what to do about it.
    pub error: String,
}
