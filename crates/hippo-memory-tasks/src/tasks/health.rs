//! `health_check_task`: infrastructure checks, and the memory health report of a user.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use chrono::{DateTime, Utc};
use hippo_queue_core::{Task, TaskContext, TaskError, TaskOptions};
use serde::{Deserialize, Serialize};

use super::{
    MemoryServices, cpu, ensure_embeddings, options, require_user, similarity_error, store_error,
};
use crate::model::{Memory, MemoryType};
use crate::similarity::{Matrix, Search, SimilarityError, dot, similar_groups};
use crate::store::load_user;

/// Weight of freshness in the overall score.
pub const FRESHNESS_WEIGHT: f64 = 0.30;
/// Weight of diversity.
pub const DIVERSITY_WEIGHT: f64 = 0.25;
/// Weight of consistency.
pub const CONSISTENCY_WEIGHT: f64 = 0.25;
/// Weight of coverage.
pub const COVERAGE_WEIGHT: f64 = 0.20;
/// Below this overall score the report raises an alert.
pub const ALERT_BELOW: f64 = 60.0;
/// Similarity at or above which memories are exact duplicates.
pub const EXACT_DUPLICATE: f32 = 0.98;
/// Similarity at or above which memories are near duplicates.
pub const NEAR_DUPLICATE: f32 = 0.85;
/// Memories compared pairwise for the diversity score.
const DIVERSITY_SAMPLE: usize = 50;
/// Clusters listed per kind in a report.
const CLUSTERS_LISTED: usize = 20;

/// Arguments of `health_check_task`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthCheckArgs {
    /// A user to report on; infrastructure checks only when `None`.
    #[serde(default)]
    pub user_id: Option<String>,
}

/// The band of an overall score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HealthStatus {
    /// 90 and above.
    Excellent,
    /// 75 and above.
    Good,
    /// 60 and above.
    Fair,
    /// 40 and above.
    Poor,
    /// Below 40.
    Critical,
}

impl HealthStatus {
    /// The band of a score.
    ///
    /// ```
    /// use hippo_memory_tasks::tasks::HealthStatus;
    /// assert_eq!(HealthStatus::of(90.0), HealthStatus::Excellent);
    /// assert_eq!(HealthStatus::of(89.9), HealthStatus::Good);
    /// assert_eq!(HealthStatus::of(59.99), HealthStatus::Poor);
    /// assert_eq!(HealthStatus::of(10.0), HealthStatus::Critical);
    /// ```
    pub fn of(score: f64) -> Self {
        if score >= 90.0 {
            HealthStatus::Excellent
        } else if score >= 75.0 {
            HealthStatus::Good
        } else if score >= 60.0 {
            HealthStatus::Fair
        } else if score >= 40.0 {
            HealthStatus::Poor
        } else {
            HealthStatus::Critical
        }
    }
}

/// The four sub-scores, 0-100.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SubScores {
    /// How recent and used the memories are.
    pub freshness: f64,
    /// How varied their types, tags and contents are.
    pub diversity: f64,
    /// How complete and confident they are.
    pub consistency: f64,
    /// How much of types, time and volume they cover.
    pub coverage: f64,
}

/// A cluster of duplicates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DuplicateCluster {
    /// `exact` (similarity >= 0.98) or `near` (>= 0.85).
    pub kind: String,
    /// Its memories.
    pub memory_ids: Vec<String>,
}

/// The memory health report of a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryHealthReport {
    /// Whose memories.
    pub user_id: String,
    /// Weighted overall score, 0-100.
    pub overall_score: f64,
    /// Its band.
    pub status: HealthStatus,
    /// Whether the score is below 60.
    pub alert: bool,
    /// The sub-scores.
    pub scores: SubScores,
    /// Memories examined.
    pub total_memories: u64,
    /// Expired, unconfident or neglected memories.
    pub stale_memories: u64,
    /// Memories whose own consistency score is below 50.
    pub low_quality_memories: u64,
    /// Clusters of exact duplicates.
    pub exact_duplicate_clusters: u64,
    /// Clusters of near duplicates (not exact).
    pub near_duplicate_clusters: u64,
    /// Some of the clusters (at most 20 of each kind).
    pub duplicate_clusters: Vec<DuplicateCluster>,
    /// Memories per type.
    pub type_distribution: BTreeMap<String, u64>,
    /// What is wrong.
    pub issues: Vec<String>,
    /// What to do about it.
    pub recommendations: Vec<String>,
    /// When it was computed.
    pub generated_at: DateTime<Utc>,
}

/// One infrastructure check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InfraCheck {
    /// `broker`, `store`, `embedder` or `llm`.
    pub name: String,
    /// `ok`, `failed` or `skipped`.
    pub status: String,
    /// How long it took.
    pub latency_ms: f64,
    /// What was seen.
    pub detail: String,
}

/// Result of `health_check_task`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthCheckResult {
    /// `healthy` when no check failed, else `degraded`.
    pub status: String,
    /// The infrastructure checks.
    pub checks: Vec<InfraCheck>,
    /// The user's report, when a user was given.
    pub report: Option<MemoryHealthReport>,
    /// When the checks ran.
    pub checked_at: DateTime<Utc>,
}

/// Checks the infrastructure and reports on a user's memories (queue `background`,
/// routing key `background.health`). See [`health_report`] for the scores.
pub struct HealthCheckTask {
    services: MemoryServices,
}

impl HealthCheckTask {
    /// The task on these services.
    pub fn new(services: MemoryServices) -> Self {
        HealthCheckTask { services }
    }
}

/// `50 e^(-age/90) + 50 e^(-days_since_update/60) + min(2 access, 20)`, at most 100.
pub fn freshness(m: &Memory, now: DateTime<Utc>) -> f64 {
    let age = m.age_days(now).max(0.0);
    let since = m.days_since_update(now).max(0.0);
    (50.0 * (-age / 90.0).exp()
        + 50.0 * (-since / 60.0).exp()
        + (2.0 * m.access_count as f64).min(20.0))
    .min(100.0)
}

/// `0.4 confidence*100 + 0.3 importance*10 + 0.3 completeness`, completeness 25 for
/// each of: tags, metadata, a text longer than 10 characters, a type.
pub fn consistency(m: &Memory) -> f64 {
    let mut completeness = 25.0; // every memory has a type
    if !m.tags.is_empty() {
        completeness += 25.0;
    }
    if !m.metadata.is_empty() {
        completeness += 25.0;
    }
    if m.text_length() > 10 {
        completeness += 25.0;
    }
    0.4 * m.confidence * 100.0 + 0.3 * m.importance * 10.0 + 0.3 * completeness
}

/// Stale: expired, confidence below 0.3, never accessed and not updated for 60 days,
/// or older than 90 days and not updated for 30.
pub fn is_stale(m: &Memory, now: DateTime<Utc>) -> bool {
    let since = m.days_since_update(now);
    m.is_expired(now)
        || m.confidence < 0.3
        || (m.access_count == 0 && since > 60.0)
        || (m.age_days(now) > 90.0 && since > 30.0)
}

/// The share of memory types present, 0-100, over the nine types that exist.
pub fn type_share(memories: &[Memory]) -> f64 {
    let present: BTreeSet<MemoryType> = memories.iter().map(|m| m.memory_type).collect();
    present.len() as f64 / MemoryType::ALL.len() as f64 * 100.0
}

/// The report on a user's memories (their vectors must be set, unit length).
///
/// - freshness: the mean of [`freshness`];
/// - diversity: `0.3 type_share + 0.3 min(unique_tags / n * 100, 100) + 0.4 (1 -
///   mean pairwise cosine of the 50 oldest) * 100` (that last part 50 when n = 1);
/// - consistency: the mean of [`consistency`];
/// - coverage: `0.3 type_share + 0.3 min(date_range_days / 30 * 100, 100) + 0.4
///   min(n, 100)` (the date part 50 when n = 1);
/// - overall: `0.30 freshness + 0.25 diversity + 0.25 consistency + 0.20 coverage`.
///
/// `type_share` counts the types present out of the nine that exist, so it never
/// passes 100.
pub fn health_report(
    user_id: &str,
    memories: &[Memory],
    now: DateTime<Utc>,
    search: &Search<'_>,
) -> Result<MemoryHealthReport, SimilarityError> {
    let n = memories.len();
    let nf = n.max(1) as f64;
    let share = type_share(memories);
    let fresh = memories.iter().map(|m| freshness(m, now)).sum::<f64>() / nf;
    let per_consistency: Vec<f64> = memories.iter().map(consistency).collect();
    let cons = per_consistency.iter().sum::<f64>() / nf;

    let unique_tags: BTreeSet<&String> = memories.iter().flat_map(|m| &m.tags).collect();
    let mut by_age: Vec<&Memory> = memories.iter().collect();
    by_age.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    let sample: Vec<&[f32]> = by_age
        .iter()
        .take(DIVERSITY_SAMPLE)
        .filter_map(|m| m.embedding.as_deref())
        .collect();
    let content_part = if sample.len() < 2 {
        50.0
    } else {
        let mut sum = 0.0f64;
        let mut pairs = 0usize;
        for i in 0..sample.len() {
            for j in i + 1..sample.len() {
                sum += f64::from(dot(sample[i], sample[j]));
                pairs += 1;
            }
        }
        ((1.0 - sum / pairs as f64) * 100.0).clamp(0.0, 100.0)
    };
    let diversity = if n == 0 {
        0.0
    } else {
        0.3 * share + 0.3 * (unique_tags.len() as f64 / nf * 100.0).min(100.0) + 0.4 * content_part
    };

    let date_part = match (by_age.first(), by_age.last()) {
        _ if n == 1 => 50.0,
        (Some(first), Some(last)) if n > 1 => {
            let range = crate::model::days_between(first.created_at, last.created_at);
            (range / 30.0 * 100.0).min(100.0)
        }
        _ => 0.0,
    };
    let coverage = if n == 0 {
        0.0
    } else {
        0.3 * share + 0.3 * date_part + 0.4 * (n as f64).min(100.0)
    };
    let scores = SubScores {
        freshness: fresh,
        diversity,
        consistency: cons,
        coverage,
    };
    let overall = FRESHNESS_WEIGHT * fresh
        + DIVERSITY_WEIGHT * diversity
        + CONSISTENCY_WEIGHT * cons
        + COVERAGE_WEIGHT * coverage;

    let stale = memories.iter().filter(|m| is_stale(m, now)).count() as u64;
    let low_quality = per_consistency.iter().filter(|c| **c < 50.0).count() as u64;

    // Duplicate clusters: components at >= 0.98 are exact; components at >= 0.85 that
    // are not wholly one exact cluster are near.
    let dim = memories
        .iter()
        .find_map(|m| m.embedding.as_ref().map(Vec::len))
        .unwrap_or(0);
    let vectored: Vec<usize> = (0..n)
        .filter(|&i| {
            memories[i]
                .embedding
                .as_ref()
                .is_some_and(|v| v.len() == dim)
        })
        .collect();
    let matrix = Matrix::from_rows(
        dim,
        vectored
            .iter()
            .filter_map(|&i| memories[i].embedding.as_deref()),
    )?;
    let exact = similar_groups(
        &matrix,
        &Search::at_least(EXACT_DUPLICATE).inclusive_copy(search),
    )?;
    let near = similar_groups(
        &matrix,
        &Search::at_least(NEAR_DUPLICATE).inclusive_copy(search),
    )?;
    let exact_sets: BTreeSet<Vec<usize>> = exact.iter().cloned().collect();
    let near_only: Vec<&Vec<usize>> = near.iter().filter(|g| !exact_sets.contains(*g)).collect();
    let ids = |g: &Vec<usize>| -> Vec<String> {
        g.iter()
            .map(|&k| memories[vectored[k]].id.clone())
            .collect()
    };
    let mut clusters: Vec<DuplicateCluster> = exact
        .iter()
        .take(CLUSTERS_LISTED)
        .map(|g| DuplicateCluster {
            kind: "exact".into(),
            memory_ids: ids(g),
        })
        .collect();
    clusters.extend(
        near_only
            .iter()
            .take(CLUSTERS_LISTED)
            .map(|g| DuplicateCluster {
                kind: "near".into(),
                memory_ids: ids(g),
            }),
    );

    let mut types = BTreeMap::new();
    for m in memories {
        *types
            .entry(m.memory_type.as_str().to_string())
            .or_insert(0u64) += 1;
    }

    let mut issues = Vec::new();
    let mut recommendations = Vec::new();
    let pct = |k: u64| k as f64 / nf * 100.0;
    if overall < ALERT_BELOW {
        issues.push(format!(
            "health score {overall:.1} is below {ALERT_BELOW:.0}"
        ));
    }
    if pct(stale) > 20.0 {
        issues.push(format!(
            "{stale} of {n} memories are stale ({:.0}%)",
            pct(stale)
        ));
        recommendations.push(
            "run expire_memories_task, and review memories that are unconfident or unused for 60 days"
                .into(),
        );
    }
    if !exact.is_empty() {
        issues.push(format!("{} clusters of exact duplicates", exact.len()));
        recommendations.push("run deduplication_task to merge exact duplicates".into());
    }
    if !near_only.is_empty() {
        issues.push(format!("{} clusters of near duplicates", near_only.len()));
        recommendations.push("run consolidation_task to merge related memories".into());
    }
    if pct(low_quality) > 20.0 {
        issues.push(format!(
            "{low_quality} of {n} memories are low quality (consistency below 50)"
        ));
        recommendations
            .push("add tags and metadata to memories, and confirm unconfident ones".into());
    }
    if n > 1 && diversity < 50.0 {
        issues.push(format!("low diversity ({diversity:.1})"));
        recommendations.push("store more kinds of memories (goals, habits, events)".into());
    }
    if fresh < 40.0 {
        issues.push(format!("memories are old or unused (freshness {fresh:.1})"));
        recommendations.push("run auto_summarization_task and compression_task".into());
    }

    Ok(MemoryHealthReport {
        user_id: user_id.to_string(),
        overall_score: overall,
        status: HealthStatus::of(overall),
        alert: overall < ALERT_BELOW,
        scores,
        total_memories: n as u64,
        stale_memories: stale,
        low_quality_memories: low_quality,
        exact_duplicate_clusters: exact.len() as u64,
        near_duplicate_clusters: near_only.len() as u64,
        duplicate_clusters: clusters,
        type_distribution: types,
        issues,
        recommendations,
        generated_at: now,
    })
}

impl<'a> Search<'a> {
    /// This search's threshold and mode with `other`'s threads and stop flag.
    fn inclusive_copy(self, other: &Search<'a>) -> Search<'a> {
        Search {
            threads: other.threads,
            stop: other.stop,
            ..self
        }
    }
}

fn check(name: &str, started: Instant, result: Result<String, String>) -> InfraCheck {
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (status, detail) = match result {
        Ok(d) => ("ok", d),
        Err(d) => ("failed", d),
    };
    InfraCheck {
        name: name.into(),
        status: status.into(),
        latency_ms,
        detail,
    }
}

fn skipped(name: &str, detail: &str) -> InfraCheck {
    InfraCheck {
        name: name.into(),
        status: "skipped".into(),
        latency_ms: 0.0,
        detail: detail.into(),
    }
}

impl Task for HealthCheckTask {
    const NAME: &'static str = "health_check_task";
    type Args = HealthCheckArgs;
    type Output = HealthCheckResult;

    fn options() -> TaskOptions {
        options("background", "background.health", 120, 180)
    }

    async fn run(
        &self,
        ctx: &TaskContext,
        args: HealthCheckArgs,
    ) -> Result<HealthCheckResult, TaskError> {
        let store = self.services.store.as_ref();
        if let Some(user) = &args.user_id {
            require_user(store, user).await?;
        }
        let mut checks = Vec::new();

        let t = Instant::now();
        checks.push(match ctx.app() {
            Some(app) => {
                let queues: Vec<String> = app
                    .router()
                    .queues()
                    .iter()
                    .map(|q| q.name.clone())
                    .collect();
                let r = app.broker().queue_stats(&queues).await;
                check(
                    "broker",
                    t,
                    r.map(|stats| {
                        stats
                            .iter()
                            .map(|s| format!("{}: {} waiting", s.queue, s.waiting()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .map_err(|e| e.to_string()),
                )
            }
            None => skipped("broker", "not running inside an app"),
        });

        let t = Instant::now();
        let r = store.ping().await;
        checks.push(check(
            "store",
            t,
            r.map(|_| format!("{} store answers", store.kind()))
                .map_err(|e| e.to_string()),
        ));

        let embedder = self.services.embedder().clone();
        let t = Instant::now();
        let r = embedder.embed(&["health check".to_string()]).await;
        checks.push(check(
            "embedder",
            t,
            match r {
                Ok(v) if v.len() == 1 && v[0].len() == embedder.dimension() => Ok(format!(
                    "{} answers with {} dimensions",
                    embedder.model(),
                    embedder.dimension()
                )),
                Ok(v) => Err(format!(
                    "{} answered {} vectors of {} components",
                    embedder.model(),
                    v.len(),
                    v.first().map_or(0, Vec::len)
                )),
                Err(e) => Err(e.to_string()),
            },
        ));
        checks.push(match &self.services.llm {
            Some(llm) => skipped(
                "llm",
                &format!("{} configured (not called by health checks)", llm.name()),
            ),
            None => skipped("llm", "no language model configured: heuristics in use"),
        });

        let report = match &args.user_id {
            Some(user) => {
                let mut memories = load_user(store, user).await.map_err(store_error)?;
                ensure_embeddings(&mut memories, embedder.as_ref()).await?;
                let user = user.clone();
                let threads = self.services.threads;
                let report = cpu(ctx, move |stop| {
                    health_report(
                        &user,
                        &memories,
                        Utc::now(),
                        &Search::above(0.0).threads(threads).stop_on(stop),
                    )
                })
                .await?
                .map_err(similarity_error)?;
                Some(report)
            }
            None => None,
        };
        let failed = checks.iter().any(|c| c.status == "failed");
        Ok(HealthCheckResult {
            status: if failed { "degraded" } else { "healthy" }.into(),
            checks,
            report,
            checked_at: Utc::now(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::HashEmbedder;
    use chrono::Duration;

    fn mem(text: &str, ty: MemoryType, age_days: i64, now: DateTime<Utc>) -> Memory {
        let mut m = Memory::new("u", text, ty);
        m.created_at = now - Duration::days(age_days);
        m.updated_at = m.created_at;
        m.embedding = Some(HashEmbedder::default().embed_one(text));
        m
    }

    #[test]
    fn formulas_by_hand() {
        let now = Utc::now();
        let m = mem("short", MemoryType::Fact, 0, now);
        // fresh memory, never accessed: 50 + 50 + 0
        assert!((freshness(&m, now) - 100.0).abs() < 1e-6);
        let mut old = mem("an old memory text", MemoryType::Fact, 90, now);
        old.access_count = 3;
        let want = 50.0 * (-1.0f64).exp() + 50.0 * (-1.5f64).exp() + 6.0;
        assert!((freshness(&old, now) - want).abs() < 1e-6);
        // consistency: 0.4*90 + 0.3*50 + 0.3*(25 type + 25 text) = 36 + 15 + 15
        assert!((consistency(&old) - 66.0).abs() < 1e-9);
        assert!((consistency(&m) - 58.5).abs() < 1e-9);

        let r = health_report("u", std::slice::from_ref(&m), now, &Search::above(0.0)).unwrap();
        let share = 100.0 / 9.0;
        let diversity = 0.3 * share + 0.0 + 0.4 * 50.0;
        let coverage = 0.3 * share + 0.3 * 50.0 + 0.4 * 1.0;
        assert!((r.scores.diversity - diversity).abs() < 1e-9);
        assert!((r.scores.coverage - coverage).abs() < 1e-9);
        let overall = 0.3 * 100.0 + 0.25 * diversity + 0.25 * 58.5 + 0.2 * coverage;
        assert!((r.overall_score - overall).abs() < 1e-9);
        assert_eq!(r.status, HealthStatus::of(overall));
    }

    #[test]
    fn type_share_never_passes_100() {
        let now = Utc::now();
        let all: Vec<Memory> = MemoryType::ALL
            .iter()
            .enumerate()
            .map(|(i, t)| {
                mem(
                    &format!("memory number {i} about things"),
                    *t,
                    i as i64,
                    now,
                )
            })
            .collect();
        assert!((type_share(&all) - 100.0).abs() < 1e-9);
        let r = health_report("u", &all, now, &Search::above(0.0)).unwrap();
        assert!(r.scores.diversity <= 100.0 && r.scores.coverage <= 100.0);
    }

    #[test]
    fn stale_and_duplicates() {
        let now = Utc::now();
        let mut unconfident = mem("not sure about this one", MemoryType::Fact, 1, now);
        unconfident.confidence = 0.2;
        let neglected = mem("nobody ever read this memory", MemoryType::Fact, 61, now);
        let ok = mem("a perfectly normal memory", MemoryType::Goal, 1, now);
        let copy = mem("a perfectly normal memory", MemoryType::Goal, 2, now);
        let near = mem("a perfectly normal memory!!", MemoryType::Goal, 3, now);
        assert!(is_stale(&unconfident, now));
        assert!(is_stale(&neglected, now));
        assert!(!is_stale(&ok, now));
        let r = health_report(
            "u",
            &[unconfident, neglected, ok, copy, near],
            now,
            &Search::above(0.0),
        )
        .unwrap();
        assert_eq!(r.stale_memories, 2);
        assert_eq!(r.exact_duplicate_clusters, 1);
        assert!(r.issues.iter().any(|i| i.contains("exact duplicates")));
    }
}
