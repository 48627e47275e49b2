//! The records the tasks work on: [`Memory`], [`MemoryType`], the embedding
//! [`Migration`] record and [`ProceduralRule`].
//!
//! Field names and defaults follow HippocampAI's memory record, so the JSON form of a
//! [`Memory`] is the one its API exchanges (the type field is `type`).
//!
//! ```
//! use hippo_memory_tasks::model::{Memory, MemoryType};
//! let m = Memory::new("alice", "Prefers green tea in the morning", MemoryType::Preference);
//! assert_eq!(m.importance, 5.0);
//! assert_eq!(m.confidence, 0.9);
//! assert_eq!(m.text_length(), 32);
//! assert_eq!(m.token_count(), 8);
//! let json = serde_json::to_value(&m).unwrap();
//! assert_eq!(json["type"], "preference");
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Free-form metadata of a memory or a rule.
pub type Metadata = BTreeMap<String, Value>;

/// The nine kinds of memory.
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MemoryType {
    /// What the user likes or wants.
    Preference,
    /// A fact about the user or the world.
    Fact,
    /// Something the user wants to achieve.
    Goal,
    /// Something the user does regularly.
    Habit,
    /// Something that happened.
    Event,
    /// Situational context.
    Context,
    /// A summary of other memories.
    Summary,
    /// How to do something.
    Procedural,
    /// Something to remember in the future.
    Prospective,
}

impl MemoryType {
    /// Every type, in declaration order.
    pub const ALL: [MemoryType; 9] = [
        MemoryType::Preference,
        MemoryType::Fact,
        MemoryType::Goal,
        MemoryType::Habit,
        MemoryType::Event,
        MemoryType::Context,
        MemoryType::Summary,
        MemoryType::Procedural,
        MemoryType::Prospective,
    ];

    /// The snake-case name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            MemoryType::Preference => "preference",
            MemoryType::Fact => "fact",
            MemoryType::Goal => "goal",
            MemoryType::Habit => "habit",
            MemoryType::Event => "event",
            MemoryType::Context => "context",
            MemoryType::Summary => "summary",
            MemoryType::Procedural => "procedural",
            MemoryType::Prospective => "prospective",
        }
    }
}

impl fmt::Display for MemoryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MemoryType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MemoryType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!(
                    "unknown memory type {s:?}: expected one of preference, fact, goal, habit, \
                     event, context, summary, procedural, prospective"
                )
            })
    }
}

fn default_importance() -> f64 {
    5.0
}

fn default_confidence() -> f64 {
    0.9
}

/// One memory of one user.
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// UUID string.
    pub id: String,
    /// The remembered text.
    pub text: String,
    /// The owner.
    pub user_id: String,
    /// The session it came from.
    #[serde(default)]
    pub session_id: Option<String>,
    /// Its kind.
    #[serde(rename = "type")]
    pub memory_type: MemoryType,
    /// 0-10, default 5.
    #[serde(default = "default_importance")]
    pub importance: f64,
    /// 0-1, default 0.9.
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// Tags, in insertion order, without repeats.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Creation time (UTC).
    pub created_at: DateTime<Utc>,
    /// Last update (UTC).
    pub updated_at: DateTime<Utc>,
    /// When it expires; it is expired strictly after this instant.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// How often it was read.
    #[serde(default)]
    pub access_count: u64,
    /// Free-form metadata (`consolidated_from`, `merged_from`, `summary_level`, ...).
    #[serde(default)]
    #[cfg_attr(feature = "api", schema(value_type = Object))]
    pub metadata: Metadata,
    /// The agent that wrote it.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Its vector (unit length when written by this crate's tasks).
    #[serde(default)]
    pub embedding: Option<Vec<f32>>,
    /// The model that produced `embedding`.
    #[serde(default)]
    pub embed_model: Option<String>,
    /// Rolled into a summary or a consolidated memory (kept, out of the active set).
    #[serde(default)]
    pub is_archived: bool,
    /// Set by the store: 1 on the first write, one more on each write after. A task
    /// writes only if the memory still has the version it read (see
    /// [`ChangeSet::expect`](crate::store::ChangeSet::expect)).
    #[serde(default)]
    pub version: u64,
}

impl Memory {
    /// A memory created now, with a fresh id and the default importance and
    /// confidence.
    pub fn new(user_id: impl Into<String>, text: impl Into<String>, ty: MemoryType) -> Self {
        let now = Utc::now();
        Memory {
            id: uuid::Uuid::new_v4().to_string(),
            text: text.into(),
            user_id: user_id.into(),
            session_id: None,
            memory_type: ty,
            importance: default_importance(),
            confidence: default_confidence(),
            tags: Vec::new(),
            created_at: now,
            updated_at: now,
            expires_at: None,
            access_count: 0,
            metadata: Metadata::new(),
            agent_id: None,
            embedding: None,
            embed_model: None,
            is_archived: false,
            version: 0,
        }
    }

    /// Number of characters of the text (Python's `len`).
    pub fn text_length(&self) -> usize {
        self.text.chars().count()
    }

    /// Estimated tokens: `text_length / 4`.
    pub fn token_count(&self) -> usize {
        self.text_length() / 4
    }

    /// Expired: `expires_at` is set and `now` is strictly after it.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|e| now > e)
    }

    /// Age in days (fractional) at `now`.
    pub fn age_days(&self, now: DateTime<Utc>) -> f64 {
        days_between(self.created_at, now)
    }

    /// Days since the last update (fractional) at `now`.
    pub fn days_since_update(&self, now: DateTime<Utc>) -> f64 {
        days_between(self.updated_at, now)
    }

    /// Adds tags not already present, keeping order.
    pub fn add_tags<'a>(&mut self, tags: impl IntoIterator<Item = &'a String>) {
        for t in tags {
            if !self.tags.contains(t) {
                self.tags.push(t.clone());
            }
        }
    }

    /// Bytes this memory takes in a store: its JSON record without the vector, plus
    /// 4 bytes per vector component.
    pub fn stored_size(&self) -> usize {
        let vector = self.embedding.as_ref().map_or(0, |v| v.len() * 4);
        let mut bare = self.clone();
        bare.embedding = None;
        serde_json::to_vec(&bare).map_or(0, |v| v.len()) + vector
    }

    /// The string list stored under a metadata key (empty when absent).
    pub fn metadata_list(&self, key: &str) -> Vec<String> {
        match self.metadata.get(key) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Fractional days from `from` to `to` (negative when `to` is earlier).
pub fn days_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds() as f64 / 86_400_000.0
}

/// The state of an embedding migration.
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MigrationStatus {
    /// Created, not started.
    Pending,
    /// Running, or its worker died and it waits to be resumed.
    InProgress,
    /// Stopped while running (a revoke with `terminate`, or its worker stopped it);
    /// sending the task again resumes it.
    Interrupted,
    /// Every memory was processed.
    Completed,
    /// Stopped by an error.
    Failed,
    /// Stopped on request.
    Cancelled,
}

impl MigrationStatus {
    /// Its name on the wire and in records (`in_progress`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationStatus::Pending => "pending",
            MigrationStatus::InProgress => "in_progress",
            MigrationStatus::Interrupted => "interrupted",
            MigrationStatus::Completed => "completed",
            MigrationStatus::Failed => "failed",
            MigrationStatus::Cancelled => "cancelled",
        }
    }

    /// Completed, failed or cancelled.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            MigrationStatus::Completed | MigrationStatus::Failed | MigrationStatus::Cancelled
        )
    }
}

/// Where a migration has got to: every memory up to and including (`user_id`,
/// `memory_id`), in the order users and their memories are listed, is done.
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationCheckpoint {
    /// The user of the last finished memory.
    pub user_id: String,
    /// The last finished memory of that user.
    pub memory_id: String,
}

/// A persisted embedding migration: re-embed every memory with `new_model`.
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Migration {
    /// Its id (`mig_<uuid>`).
    pub id: String,
    /// The model the memories were on when it was created (informational).
    pub old_model: Option<String>,
    /// The model to move to.
    pub new_model: String,
    /// The new model's vector size.
    pub new_dimension: usize,
    /// Where it stands.
    pub status: MigrationStatus,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// First start.
    pub started_at: Option<DateTime<Utc>>,
    /// End (completed, failed or cancelled).
    pub completed_at: Option<DateTime<Utc>>,
    /// Memories counted when it started.
    pub total_memories: u64,
    /// Memories on the new model.
    pub migrated_count: u64,
    /// Memories that could not be re-embedded.
    pub failed_count: u64,
    /// The error that stopped it, or the last per-memory error.
    pub error: Option<String>,
    /// Progress, saved with the counters after every batch.
    #[serde(default)]
    pub checkpoint: Option<MigrationCheckpoint>,
    /// Whether cancellation was asked for (kept apart from the record by the stores,
    /// so that progress writes never undo it).
    #[serde(default)]
    pub cancel_requested: bool,
}

impl Migration {
    /// A pending migration to `new_model`.
    pub fn new(old_model: Option<String>, new_model: impl Into<String>, dim: usize) -> Self {
        Migration {
            id: format!("mig_{}", uuid::Uuid::new_v4().simple()),
            old_model,
            new_model: new_model.into(),
            new_dimension: dim,
            status: MigrationStatus::Pending,
            created_at: Utc::now(),
            started_at: None,
            completed_at: None,
            total_memories: 0,
            migrated_count: 0,
            failed_count: 0,
            error: None,
            checkpoint: None,
            cancel_requested: false,
        }
    }
}

/// Default confidence of a procedural rule.
pub const RULE_DEFAULT_CONFIDENCE: f64 = 0.7;
/// Default success rate of a procedural rule.
pub const RULE_DEFAULT_SUCCESS_RATE: f64 = 0.5;

/// A learned rule of how to act for a user.
#[cfg_attr(feature = "api", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProceduralRule {
    /// Its id.
    pub id: String,
    /// The owner.
    pub user_id: String,
    /// The rule.
    pub rule_text: String,
    /// 0-1, default 0.7.
    pub confidence: f64,
    /// 0-1, default 0.5, updated by [`ProceduralRule::record_outcome`].
    pub success_rate: f64,
    /// The interactions it was learned from.
    #[serde(default)]
    pub source_interactions: Vec<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update.
    pub updated_at: DateTime<Utc>,
    /// Whether it is applied.
    pub active: bool,
    /// Free-form metadata.
    #[serde(default)]
    #[cfg_attr(feature = "api", schema(value_type = Object))]
    pub metadata: Metadata,
}

impl ProceduralRule {
    /// An active rule with the default confidence and success rate.
    pub fn new(user_id: impl Into<String>, rule_text: impl Into<String>) -> Self {
        let now = Utc::now();
        ProceduralRule {
            id: uuid::Uuid::new_v4().to_string(),
            user_id: user_id.into(),
            rule_text: rule_text.into(),
            confidence: RULE_DEFAULT_CONFIDENCE,
            success_rate: RULE_DEFAULT_SUCCESS_RATE,
            source_interactions: Vec::new(),
            created_at: now,
            updated_at: now,
            active: true,
            metadata: Metadata::new(),
        }
    }

    /// Updates the success rate with an outcome: `0.9 * old + 0.1 * outcome`.
    ///
    /// ```
    /// use hippo_memory_tasks::model::ProceduralRule;
    /// let mut r = ProceduralRule::new("u", "greet by name");
    /// r.record_outcome(true);
    /// assert!((r.success_rate - 0.55).abs() < 1e-12);
    /// ```
    pub fn record_outcome(&mut self, success: bool) {
        let outcome = if success { 1.0 } else { 0.0 };
        self.success_rate = 0.9 * self.success_rate + 0.1 * outcome;
        self.updated_at = Utc::now();
    }

    /// The ranking score: `confidence * success_rate`.
    pub fn score(&self) -> f64 {
        self.confidence * self.success_rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn migration_status_names_are_the_serde_names() {
        use MigrationStatus::*;
        for st in [
            Pending,
            InProgress,
            Interrupted,
            Completed,
            Failed,
            Cancelled,
        ] {
            assert_eq!(serde_json::to_value(st).unwrap(), st.as_str());
        }
    }

    #[test]
    fn expiry_is_strict() {
        let mut m = Memory::new("u", "x", MemoryType::Fact);
        let at = Utc::now();
        m.expires_at = Some(at);
        assert!(!m.is_expired(at));
        assert!(m.is_expired(at + Duration::milliseconds(1)));
        m.expires_at = None;
        assert!(!m.is_expired(at + Duration::days(999)));
    }

    #[test]
    fn json_round_trip_and_defaults() {
        let json = serde_json::json!({
            "id": "1", "text": "hello", "user_id": "u", "type": "habit",
            "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z"
        });
        let m: Memory = serde_json::from_value(json).unwrap();
        assert_eq!(m.memory_type, MemoryType::Habit);
        assert_eq!(m.importance, 5.0);
        assert_eq!(m.confidence, 0.9);
        assert!(!m.is_archived);
        let back: Memory = serde_json::from_value(serde_json::to_value(&m).unwrap()).unwrap();
        assert_eq!(back, m);
        assert_eq!(
            "Prospective".parse::<MemoryType>().unwrap(),
            MemoryType::Prospective
        );
        assert!("other".parse::<MemoryType>().is_err());
    }
}
