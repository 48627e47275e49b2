//! Where schedulers keep what they must agree on: the leader lease and, per entry, the
//! last tick sent. [`MemoryBeatStore`] keeps it in process; `hippo-queue-redis`
//! implements [`BeatStore`] for its `RedisBackend`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use super::BeatStatus;
use crate::BackendError;
use crate::time::{duration_ms, now_ms};

/// Shared state of the schedulers of one deployment.
///
/// Two guarantees make a double send impossible, even while two schedulers both
/// believe they lead (a stalled leader whose lease expired, a clock jump):
/// - [`claim_tick`](Self::claim_tick) is an atomic compare-and-set: it records a tick
///   only if it is newer than the stored one, so each tick of an entry is claimed at
///   most once, by one scheduler, and the stored tick never goes back;
/// - a scheduler sends a tick only after claiming it.
///
/// The lease decides who normally sends, so that followers do not race the leader on
/// every tick. Times are milliseconds since the Unix epoch.
///
/// ```
/// use std::time::Duration;
/// use hippo_queue_core::beat::{BeatStore, MemoryBeatStore};
/// # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::BackendError> {
/// let store = MemoryBeatStore::new();
/// assert!(store.try_acquire_leader("beat-a", Duration::from_secs(10)).await?);
/// assert!(!store.try_acquire_leader("beat-b", Duration::from_secs(10)).await?);
/// assert!(store.claim_tick("nightly", 1_000).await?);
/// assert!(!store.claim_tick("nightly", 1_000).await?); // the same tick again
/// assert!(!store.claim_tick("nightly", 500).await?); // an older tick
/// assert_eq!(store.last_run("nightly").await?, Some(1_000));
/// # Ok(()) }
/// ```
#[async_trait]
pub trait BeatStore: Send + Sync + 'static {
    /// Takes the leader lease for `ttl` if nobody holds it, or extends it if `beat_id`
    /// already does. Returns whether `beat_id` now leads.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hippo_queue_core::beat::{BeatStore, MemoryBeatStore};
    /// # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::BackendError> {
    /// let store = MemoryBeatStore::new();
    /// let ttl = Duration::from_secs(10);
    /// assert!(store.try_acquire_leader("a", ttl).await?);
    /// assert!(store.try_acquire_leader("a", ttl).await?); // extends
    /// assert!(!store.try_acquire_leader("b", ttl).await?);
    /// # Ok(()) }
    /// ```
    async fn try_acquire_leader(&self, beat_id: &str, ttl: Duration) -> Result<bool, BackendError>;

    /// Extends the lease for `ttl` from now if `beat_id` still holds it. `false` means
    /// the lease expired or another scheduler holds it: stop sending.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hippo_queue_core::beat::{BeatStore, MemoryBeatStore};
    /// # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::BackendError> {
    /// let store = MemoryBeatStore::new();
    /// let ttl = Duration::from_secs(10);
    /// store.try_acquire_leader("a", ttl).await?;
    /// assert!(store.renew_leader("a", ttl).await?);
    /// assert!(!store.renew_leader("b", ttl).await?);
    /// # Ok(()) }
    /// ```
    async fn renew_leader(&self, beat_id: &str, ttl: Duration) -> Result<bool, BackendError>;

    /// Gives the lease up if `beat_id` holds it (so that a follower takes over at once
    /// instead of after the lease expires). Returns whether it was held.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hippo_queue_core::beat::{BeatStore, MemoryBeatStore};
    /// # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::BackendError> {
    /// let store = MemoryBeatStore::new();
    /// store.try_acquire_leader("a", Duration::from_secs(10)).await?;
    /// assert!(!store.release_leader("b").await?);
    /// assert!(store.release_leader("a").await?);
    /// assert!(store.try_acquire_leader("b", Duration::from_secs(10)).await?);
    /// # Ok(()) }
    /// ```
    async fn release_leader(&self, beat_id: &str) -> Result<bool, BackendError>;

    /// The current leader and when its lease expires (ms), if any.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hippo_queue_core::beat::{BeatStore, MemoryBeatStore};
    /// # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::BackendError> {
    /// let store = MemoryBeatStore::new();
    /// assert_eq!(store.leader().await?, None);
    /// store.try_acquire_leader("a", Duration::from_secs(10)).await?;
    /// let (id, expires_ms) = store.leader().await?.ok_or(hippo_queue_core::BackendError::backend("no leader"))?;
    /// assert_eq!(id, "a");
    /// assert!(expires_ms > hippo_queue_core::time::now_ms());
    /// # Ok(()) }
    /// ```
    async fn leader(&self) -> Result<Option<(String, u64)>, BackendError>;

    /// The last tick (ms) sent for an entry, if any.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hippo_queue_core::beat::{BeatStore, MemoryBeatStore};
    /// # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::BackendError> {
    /// let store = MemoryBeatStore::new();
    /// assert_eq!(store.last_run("nightly").await?, None);
    /// store.claim_tick("nightly", 86_400_000).await?;
    /// assert_eq!(store.last_run("nightly").await?, Some(86_400_000));
    /// # Ok(()) }
    /// ```
    async fn last_run(&self, entry: &str) -> Result<Option<u64>, BackendError>;

    /// The last ticks of several entries, in order. The default asks one at a time.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hippo_queue_core::beat::{BeatStore, MemoryBeatStore};
    /// # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::BackendError> {
    /// let store = MemoryBeatStore::new();
    /// store.claim_tick("a", 5).await?;
    /// let names = ["a".to_string(), "b".to_string()];
    /// assert_eq!(store.last_runs(&names).await?, [Some(5), None]);
    /// # Ok(()) }
    /// ```
    async fn last_runs(&self, entries: &[String]) -> Result<Vec<Option<u64>>, BackendError> {
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            out.push(self.last_run(e).await?);
        }
        Ok(out)
    }

    /// Atomically records `tick_ms` as the entry's last tick if it is newer than the
    /// stored one (or none is stored). `true` means this caller owns the tick and must
    /// send it; `false` means it was claimed already (or a newer one was).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hippo_queue_core::beat::{BeatStore, MemoryBeatStore};
    /// # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::BackendError> {
    /// let store = MemoryBeatStore::new();
    /// assert!(store.claim_tick("e", 2_000).await?);
    /// assert!(!store.claim_tick("e", 2_000).await?); // claimed once only
    /// assert!(!store.claim_tick("e", 1_000).await?); // never backwards
    /// assert!(store.claim_tick("e", 3_000).await?);
    /// # Ok(()) }
    /// ```
    async fn claim_tick(&self, entry: &str, tick_ms: u64) -> Result<bool, BackendError>;

    /// [`claim_tick`](Self::claim_tick) by the scheduler `beat_id`, which the claim
    /// records: claiming again a tick that `beat_id` claimed is `true` again. So a
    /// scheduler whose claim took effect but whose reply was lost (a response timeout)
    /// recognises the claim as its own on the retry and sends the tick; any other
    /// scheduler still gets `false`. The default ignores `beat_id` (no recognition).
    ///
    /// ```
    /// # use hippo_queue_core::beat::{BeatStore, MemoryBeatStore};
    /// # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::BackendError> {
    /// let store = MemoryBeatStore::new();
    /// assert!(store.claim_tick_as("e", 2_000, "beat-a").await?);
    /// assert!(store.claim_tick_as("e", 2_000, "beat-a").await?); // our own claim
    /// assert!(!store.claim_tick_as("e", 2_000, "beat-b").await?);
    /// assert!(!store.claim_tick("e", 2_000).await?);
    /// assert_eq!(store.last_run("e").await?, Some(2_000));
    /// # Ok(()) }
    /// ```
    async fn claim_tick_as(
        &self,
        entry: &str,
        tick_ms: u64,
        beat_id: &str,
    ) -> Result<bool, BackendError> {
        let _ = beat_id;
        self.claim_tick(entry, tick_ms).await
    }

    /// Records, for `ttl`, that the task `task_id` of a claimed tick is being sent.
    /// `false` means it was recorded already: the tick was sent before (its claim was
    /// since lost, for instance evicted or not replicated before a failover) and must
    /// not be sent again. The default records nothing and returns `true`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hippo_queue_core::beat::{BeatStore, MemoryBeatStore};
    /// # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::BackendError> {
    /// let store = MemoryBeatStore::new();
    /// let ttl = Duration::from_secs(60);
    /// assert!(store.mark_sent("beat:e@2000", ttl).await?);
    /// assert!(!store.mark_sent("beat:e@2000", ttl).await?);
    /// # Ok(()) }
    /// ```
    async fn mark_sent(&self, task_id: &str, ttl: Duration) -> Result<bool, BackendError> {
        let _ = (task_id, ttl);
        Ok(true)
    }

    /// Forgets an entry's last tick (for entries removed from the schedule). A
    /// scheduler that still has the entry starts it afresh.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hippo_queue_core::beat::{BeatStore, MemoryBeatStore};
    /// # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::BackendError> {
    /// let store = MemoryBeatStore::new();
    /// store.claim_tick("retired", 5).await?;
    /// store.forget("retired").await?;
    /// assert_eq!(store.last_run("retired").await?, None);
    /// # Ok(()) }
    /// ```
    async fn forget(&self, entry: &str) -> Result<(), BackendError>;

    /// Publishes the leader's view of the schedule, kept for `ttl`, so that other
    /// processes (the `hippo-queue beat status` command) can show it.
    async fn publish_status(&self, status: &BeatStatus, ttl: Duration) -> Result<(), BackendError>;

    /// The last status a leader published, if it has not expired.
    async fn published_status(&self) -> Result<Option<BeatStatus>, BackendError>;

    /// How many ticks of each entry were claimed (sent) since the entry was first
    /// scheduled or last [`forget`](BeatStore::forget)-ten (Celery's
    /// `total_run_count`); a claim its scheduler makes again after a lost reply counts
    /// once. `None` for a store that does not count (the default).
    ///
    /// ```
    /// # use hippo_queue_core::beat::{BeatStore, MemoryBeatStore};
    /// # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::BackendError> {
    /// let store = MemoryBeatStore::new();
    /// store.claim_tick_as("hourly", 1_000, "beat-a").await?;
    /// store.claim_tick_as("hourly", 1_000, "beat-a").await?; // the same claim again
    /// store.claim_tick_as("hourly", 2_000, "beat-a").await?;
    /// let names = ["hourly".to_string(), "never".to_string()];
    /// assert_eq!(store.run_counts(&names).await?, [Some(2), Some(0)]);
    /// # Ok(()) }
    /// ```
    async fn run_counts(&self, entries: &[String]) -> Result<Vec<Option<u64>>, BackendError> {
        Ok(vec![None; entries.len()])
    }
}

/// A [`BeatStore`] in process memory, for schedulers in one process (tests, an
/// embedded app on the in-memory backend). Clones share the same state. Nothing
/// survives the process.
///
/// ```
/// use std::time::Duration;
/// use hippo_queue_core::beat::{BeatStore, MemoryBeatStore};
/// # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::BackendError> {
/// let store = MemoryBeatStore::new();
/// let shared = store.clone();
/// store.try_acquire_leader("beat-a", Duration::from_secs(5)).await?;
/// assert_eq!(shared.leader().await?.map(|(id, _)| id).as_deref(), Some("beat-a"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryBeatStore {
    inner: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    leader: Option<(String, u64)>,
    /// Entry -> last tick claimed and the claimer ("" when unnamed).
    last: HashMap<String, (u64, String)>,
    /// Entry -> ticks claimed.
    runs: HashMap<String, u64>,
    /// Sent-marker -> when it expires (ms).
    sent: HashMap<String, u64>,
    status: Option<(BeatStatus, u64)>,
}

/// What a tick claim does, given the stored last tick and its claimer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Newer than the stored tick (or none): record it, the caller sends it.
    New,
    /// The stored tick, claimed by this very caller: it is the caller's (a retry after
    /// a lost reply).
    Ours,
    /// The stored tick claimed by another, or an older tick: not the caller's.
    Taken,
}

/// Decides a claim of `tick` by `beat_id` ("": unnamed, never recognised) against
/// the stored `(tick, claimer)`. Pure: the Redis script implements the same rule.
pub(crate) fn decide_claim(stored: Option<(u64, &str)>, tick: u64, beat_id: &str) -> Claim {
    match stored {
        None => Claim::New,
        Some((last, _)) if last < tick => Claim::New,
        Some((last, by)) if last == tick && !beat_id.is_empty() && by == beat_id => Claim::Ours,
        Some(_) => Claim::Taken,
    }
}

impl State {
    /// The leader whose lease has not expired.
    fn live_leader(&mut self, now: u64) -> Option<&(String, u64)> {
        if self.leader.as_ref().is_some_and(|(_, until)| *until <= now) {
            self.leader = None;
        }
        self.leader.as_ref()
    }
}

impl MemoryBeatStore {
    /// An empty store.
    ///
    /// ```
    /// let store = hippo_queue_core::beat::MemoryBeatStore::new();
    /// # let _ = store;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl BeatStore for MemoryBeatStore {
    async fn try_acquire_leader(&self, beat_id: &str, ttl: Duration) -> Result<bool, BackendError> {
        let now = now_ms();
        let mut s = self.lock();
        match s.live_leader(now) {
            Some((id, _)) if id != beat_id => Ok(false),
            _ => {
                s.leader = Some((beat_id.to_string(), now.saturating_add(duration_ms(ttl))));
                Ok(true)
            }
        }
    }

    async fn renew_leader(&self, beat_id: &str, ttl: Duration) -> Result<bool, BackendError> {
        let now = now_ms();
        let mut s = self.lock();
        match s.live_leader(now) {
            Some((id, _)) if id == beat_id => {
                s.leader = Some((beat_id.to_string(), now.saturating_add(duration_ms(ttl))));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release_leader(&self, beat_id: &str) -> Result<bool, BackendError> {
        let mut s = self.lock();
        match s.live_leader(now_ms()) {
            Some((id, _)) if id == beat_id => {
                s.leader = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn leader(&self) -> Result<Option<(String, u64)>, BackendError> {
        Ok(self.lock().live_leader(now_ms()).cloned())
    }

    async fn last_run(&self, entry: &str) -> Result<Option<u64>, BackendError> {
        Ok(self.lock().last.get(entry).map(|(t, _)| *t))
    }

    async fn claim_tick(&self, entry: &str, tick_ms: u64) -> Result<bool, BackendError> {
        self.claim_tick_as(entry, tick_ms, "").await
    }

    async fn claim_tick_as(
        &self,
        entry: &str,
        tick_ms: u64,
        beat_id: &str,
    ) -> Result<bool, BackendError> {
        let mut s = self.lock();
        let stored = s.last.get(entry).map(|(t, by)| (*t, by.as_str()));
        match decide_claim(stored, tick_ms, beat_id) {
            Claim::New => {
                s.last
                    .insert(entry.to_string(), (tick_ms, beat_id.to_string()));
                *s.runs.entry(entry.to_string()).or_default() += 1;
                Ok(true)
            }
            Claim::Ours => Ok(true),
            Claim::Taken => Ok(false),
        }
    }

    async fn mark_sent(&self, task_id: &str, ttl: Duration) -> Result<bool, BackendError> {
        let now = now_ms();
        let mut s = self.lock();
        s.sent.retain(|_, until| *until > now);
        if s.sent.contains_key(task_id) {
            return Ok(false);
        }
        s.sent
            .insert(task_id.to_string(), now.saturating_add(duration_ms(ttl)));
        Ok(true)
    }

    async fn forget(&self, entry: &str) -> Result<(), BackendError> {
        let mut s = self.lock();
        s.last.remove(entry);
        s.runs.remove(entry);
        Ok(())
    }

    async fn run_counts(&self, entries: &[String]) -> Result<Vec<Option<u64>>, BackendError> {
        let s = self.lock();
        Ok(entries
            .iter()
            .map(|e| Some(s.runs.get(e).copied().unwrap_or(0)))
            .collect())
    }

    async fn publish_status(&self, status: &BeatStatus, ttl: Duration) -> Result<(), BackendError> {
        self.lock().status = Some((status.clone(), now_ms().saturating_add(duration_ms(ttl))));
        Ok(())
    }

    async fn published_status(&self) -> Result<Option<BeatStatus>, BackendError> {
        let now = now_ms();
        Ok(self
            .lock()
            .status
            .as_ref()
            .filter(|(_, until)| *until > now)
            .map(|(s, _)| s.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::{Claim, decide_claim};

    #[test]
    fn a_newer_tick_is_new() {
        assert_eq!(decide_claim(None, 5, "a"), Claim::New);
        assert_eq!(decide_claim(Some((4, "b")), 5, "a"), Claim::New);
        assert_eq!(decide_claim(Some((4, "")), 5, ""), Claim::New);
    }

    #[test]
    fn the_same_tick_is_ours_only_if_we_claimed_it() {
        assert_eq!(decide_claim(Some((5, "a")), 5, "a"), Claim::Ours);
        assert_eq!(decide_claim(Some((5, "b")), 5, "a"), Claim::Taken);
        assert_eq!(
            decide_claim(Some((5, "")), 5, ""),
            Claim::Taken,
            "unnamed never matches"
        );
        assert_eq!(decide_claim(Some((5, "a")), 5, ""), Claim::Taken);
    }

    #[test]
    fn an_older_tick_is_taken() {
        assert_eq!(decide_claim(Some((6, "a")), 5, "a"), Claim::Taken);
    }
}

forward!(BeatStore {
    async fn try_acquire_leader(&self, beat_id: &str, ttl: Duration) -> Result<bool, BackendError>;
    async fn renew_leader(&self, beat_id: &str, ttl: Duration) -> Result<bool, BackendError>;
    async fn release_leader(&self, beat_id: &str) -> Result<bool, BackendError>;
    async fn leader(&self) -> Result<Option<(String, u64)>, BackendError>;
    async fn last_run(&self, entry: &str) -> Result<Option<u64>, BackendError>;
    async fn last_runs(&self, entries: &[String]) -> Result<Vec<Option<u64>>, BackendError>;
    async fn claim_tick(&self, entry: &str, tick_ms: u64) -> Result<bool, BackendError>;
    async fn claim_tick_as(&self, entry: &str, tick_ms: u64, beat_id: &str) -> Result<bool, BackendError>;
    async fn mark_sent(&self, task_id: &str, ttl: Duration) -> Result<bool, BackendError>;
    async fn forget(&self, entry: &str) -> Result<(), BackendError>;
    async fn publish_status(&self, status: &BeatStatus, ttl: Duration) -> Result<(), BackendError>;
    async fn published_status(&self) -> Result<Option<BeatStatus>, BackendError>;
    async fn run_counts(&self, entries: &[String]) -> Result<Vec<Option<u64>>, BackendError>;
});
