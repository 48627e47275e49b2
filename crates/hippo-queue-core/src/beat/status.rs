//! What [`Beat::status`](super::Beat::status) reports: each entry's last and next run,
//! and who leads.

use super::Missed;

/// A scheduler's view of the schedule, from the store.
///
/// ```
/// use hippo_queue_core::App;
/// use hippo_queue_core::beat::{Beat, Entry, MemoryBeatStore, Schedule};
/// # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::beat::BeatError> {
/// let entry = Entry::by_name("hourly", "report", vec![0xc0], Schedule::every_hours(1))?;
/// let beat = Beat::builder(App::in_memory(), MemoryBeatStore::new()).entry(entry).build()?;
/// let status = beat.status().await?;
/// assert!(status.leader.is_none()); // not running
/// assert_eq!(status.entries[0].last_run_ms, None);
/// assert!(status.entries[0].next_run_ms.is_some());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BeatStatus {
    /// This scheduler's id.
    pub beat_id: String,
    /// Whether this scheduler currently holds the lease (as far as it knows).
    pub is_leader: bool,
    /// The lease holder according to the store.
    pub leader: Option<LeaderInfo>,
    /// The entries, in the scheduler's order.
    pub entries: Vec<EntryStatus>,
}

/// The holder of the leader lease.
///
/// ```
/// use hippo_queue_core::beat::LeaderInfo;
/// let l = LeaderInfo { beat_id: "beat-a".into(), expires_ms: 1_000 };
/// assert_eq!(l.beat_id, "beat-a");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaderInfo {
    /// The leading scheduler's id.
    pub beat_id: String,
    /// When its lease expires unless renewed, ms since the epoch.
    pub expires_ms: u64,
}

/// One entry's state.
///
/// ```
/// use hippo_queue_core::beat::{EntryStatus, Missed};
/// let s = EntryStatus {
///     name: "nightly".into(),
///     task: "reports.build".into(),
///     schedule: "every 1d".into(),
///     missed: Missed::RunOnce,
///     last_run_ms: Some(86_400_000),
///     next_run_ms: Some(2 * 86_400_000),
/// };
/// assert!(s.next_run_ms > s.last_run_ms);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EntryStatus {
    /// The entry's name.
    pub name: String,
    /// The task it sends.
    pub task: String,
    /// The schedule, as text (`every 1h`, `cron "0 0 * * * *"`).
    pub schedule: String,
    /// The missed-tick policy.
    pub missed: Missed,
    /// The last tick sent, ms since the epoch (the tick's instant, not the moment it
    /// was sent).
    pub last_run_ms: Option<u64>,
    /// The next tick that will be sent, ms since the epoch; in the past when a tick is
    /// due now (a catch-up waiting for a leader); `None` when the schedule has ended.
    pub next_run_ms: Option<u64>,
}
