//! The checks every [`BeatStore`] passes (feature `conformance`): lease exclusivity,
//! renewal, release and expiry, and the monotonic per-tick claim; and helpers for
//! scheduler tests that read back the tasks a scheduler sent.
//!
//! ```
//! use hippo_queue_core::beat::MemoryBeatStore;
//! use hippo_queue_core::beat::conformance::check_store;
//! # #[tokio::main] async fn main() {
//! check_store(&MemoryBeatStore::new()).await;
//! # }
//! ```

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::App;
use crate::message::Envelope;
use crate::time::now_ms;

use super::{BeatStore, Entry, Missed, Schedule};

/// Runs every check against `store`, which must be empty and unused by anything else.
/// Panics with a description of the first failure. Takes about half a second (the
/// lease expiry check waits for a 200 ms lease to run out).
///
/// ```
/// # #[tokio::main] async fn main() {
/// let store = hippo_queue_core::beat::MemoryBeatStore::new();
/// hippo_queue_core::beat::conformance::check_store(&store).await;
/// # }
/// ```
pub async fn check_store<S: BeatStore + ?Sized>(store: &S) {
    lease(store).await;
    claims(store).await;
    claims_by_scheduler(store).await;
    sent_markers(store).await;
    published(store).await;
    run_counts(store).await;
}

/// Each new claim of an entry's tick counts one run; a scheduler's repeated claim of
/// its own tick and a refused claim do not; `forget` starts the count again.
async fn run_counts<S: BeatStore + ?Sized>(s: &S) {
    let names = ["counted".to_string(), "never-claimed".to_string()];
    let counts = ok("run counts", s.run_counts(&names)).await;
    if counts.iter().all(Option::is_none) {
        return; // a store that does not count
    }
    assert!(ok("claim as", s.claim_tick_as("counted", 1_000, "beat:a")).await);
    assert!(ok("claim as", s.claim_tick_as("counted", 1_000, "beat:a")).await);
    assert!(!ok("claim as", s.claim_tick_as("counted", 1_000, "beat:b")).await);
    assert!(!ok("claim", s.claim_tick("counted", 500)).await);
    assert!(ok("claim", s.claim_tick("counted", 2_000)).await);
    assert_eq!(
        ok("run counts", s.run_counts(&names)).await,
        [Some(2), Some(0)],
        "two ticks claimed, none of the other entry"
    );
    ok("forget", s.forget("counted")).await;
    assert_eq!(
        ok("run counts", s.run_counts(&names)).await,
        [Some(0), Some(0)],
        "forgotten, counted afresh"
    );
}

/// A scheduler recognises its own claim (B1); nobody else does.
async fn claims_by_scheduler<S: BeatStore + ?Sized>(s: &S) {
    assert!(ok("claim as", s.claim_tick_as("by", 1_000, "beat:a")).await);
    assert!(
        ok("claim as", s.claim_tick_as("by", 1_000, "beat:a")).await,
        "a scheduler's own claim of the same tick is its own again"
    );
    assert!(
        !ok("claim as", s.claim_tick_as("by", 1_000, "beat:b")).await,
        "another scheduler's claim of the same tick fails"
    );
    assert!(!ok("claim", s.claim_tick("by", 1_000)).await);
    assert!(!ok("claim as", s.claim_tick_as("by", 999, "beat:a")).await);
    assert_eq!(ok("last run", s.last_run("by")).await, Some(1_000));
    assert!(ok("claim as", s.claim_tick_as("by", 2_000, "beat:b")).await);
    assert!(!ok("claim as", s.claim_tick_as("by", 2_000, "beat:a")).await);
    ok("forget", s.forget("by")).await;
}

/// A sent-marker is set once (B2).
async fn sent_markers<S: BeatStore + ?Sized>(s: &S) {
    let ttl = Duration::from_secs(60);
    assert!(ok("mark", s.mark_sent("beat:m@1000", ttl)).await);
    assert!(
        !ok("mark", s.mark_sent("beat:m@1000", ttl)).await,
        "a tick is marked sent once"
    );
    assert!(ok("mark", s.mark_sent("beat:m@2000", ttl)).await);
}

async fn published<S: BeatStore + ?Sized>(s: &S) {
    use super::{BeatStatus, EntryStatus, LeaderInfo, Missed};
    assert_eq!(ok("published", s.published_status()).await, None);
    let status = BeatStatus {
        beat_id: "a".into(),
        is_leader: true,
        leader: Some(LeaderInfo {
            beat_id: "a".into(),
            expires_ms: 1,
        }),
        entries: vec![EntryStatus {
            name: "e".into(),
            task: "t".into(),
            schedule: "every 1m".into(),
            missed: Missed::Skip,
            last_run_ms: Some(60_000),
            next_run_ms: Some(120_000),
        }],
    };
    ok(
        "publish",
        s.publish_status(&status, Duration::from_millis(300)),
    )
    .await;
    assert_eq!(
        ok("published", s.published_status()).await,
        Some(status),
        "the published status reads back"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        ok("published", s.published_status()).await,
        None,
        "the published status expires"
    );
}

async fn ok<T, E: std::fmt::Display>(what: &str, r: impl Future<Output = Result<T, E>>) -> T {
    match r.await {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}

async fn lease<S: BeatStore + ?Sized>(s: &S) {
    let ttl = Duration::from_millis(200);
    let long = Duration::from_secs(10);
    assert_eq!(
        ok("leader", s.leader()).await,
        None,
        "a new store has no leader"
    );
    assert!(
        ok("acquire a", s.try_acquire_leader("a", ttl)).await,
        "a free lease is taken"
    );
    assert!(
        !ok("acquire b", s.try_acquire_leader("b", ttl)).await,
        "a held lease is not taken"
    );
    assert!(
        ok("acquire a again", s.try_acquire_leader("a", ttl)).await,
        "the holder may acquire again"
    );
    let before = now_ms();
    let leader = ok("leader", s.leader()).await;
    let (id, expires) = leader.unwrap_or_else(|| panic!("no leader reported"));
    assert_eq!(id, "a");
    assert!(
        expires > before && expires <= now_ms() + 250,
        "lease expiry {expires} is not within the ttl of now {before}"
    );
    assert!(
        !ok("renew b", s.renew_leader("b", ttl)).await,
        "a non-holder cannot renew"
    );
    assert!(
        !ok("release b", s.release_leader("b")).await,
        "a non-holder cannot release"
    );
    assert!(
        ok("renew a", s.renew_leader("a", long)).await,
        "the holder renews"
    );
    assert!(
        ok("release a", s.release_leader("a")).await,
        "the holder releases"
    );
    assert_eq!(
        ok("leader", s.leader()).await,
        None,
        "a released lease is free"
    );
    assert!(
        ok("acquire b", s.try_acquire_leader("b", ttl)).await,
        "a released lease is taken at once"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        ok("leader", s.leader()).await,
        None,
        "an expired lease is free"
    );
    assert!(
        !ok("renew b", s.renew_leader("b", ttl)).await,
        "an expired lease cannot be renewed"
    );
    assert!(
        ok("acquire c", s.try_acquire_leader("c", long)).await,
        "an expired lease is taken"
    );
    assert!(
        !ok("acquire b", s.try_acquire_leader("b", ttl)).await,
        "the old holder cannot take it back"
    );
    assert!(ok("release c", s.release_leader("c")).await);
}

async fn claims<S: BeatStore + ?Sized>(s: &S) {
    assert_eq!(ok("last_run", s.last_run("e1")).await, None);
    assert!(
        ok("claim", s.claim_tick("e1", 1_000)).await,
        "a first tick is claimed"
    );
    assert!(
        !ok("claim", s.claim_tick("e1", 1_000)).await,
        "a tick is claimed once"
    );
    assert!(
        !ok("claim", s.claim_tick("e1", 999)).await,
        "an older tick is refused"
    );
    assert!(ok("claim", s.claim_tick("e1", 1_700_000_000_123)).await);
    assert!(
        !ok("claim", s.claim_tick("e1", 1_700_000_000_122)).await,
        "large ticks compare exactly"
    );
    assert_eq!(
        ok("last_run", s.last_run("e1")).await,
        Some(1_700_000_000_123)
    );
    assert!(
        ok("claim", s.claim_tick("e2", 5)).await,
        "entries are independent"
    );
    let names = ["e1".to_string(), "e2".to_string(), "e3".to_string()];
    assert_eq!(
        ok("last_runs", s.last_runs(&names)).await,
        [Some(1_700_000_000_123), Some(5), None]
    );
    ok("forget", s.forget("e1")).await;
    assert_eq!(ok("last_run", s.last_run("e1")).await, None);
    assert!(
        ok("claim", s.claim_tick("e1", 10)).await,
        "a forgotten entry starts afresh"
    );
    // concurrent claims of one tick: exactly one wins
    let wins = race_claims(s, "race", 42).await;
    assert_eq!(wins, 1, "one of several concurrent claims of a tick wins");
}

async fn race_claims<S: BeatStore + ?Sized>(s: &S, entry: &str, tick: u64) -> usize {
    let (a, b, c, d) = tokio::join!(
        s.claim_tick(entry, tick),
        s.claim_tick(entry, tick),
        s.claim_tick(entry, tick),
        s.claim_tick(entry, tick)
    );
    [a, b, c, d]
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("claim: {e}")))
        .filter(|won| *won)
        .count()
}

/// Sent ticks per entry: tick -> when it was sent (ms).
pub type Sent = BTreeMap<String, BTreeMap<u64, u64>>;

/// An entry sending the (unregistered) task `beat.probe` every `every_ms`, for
/// scheduler tests that read the sent tasks back with [`drain_sent`].
pub fn probe_entry(name: &str, every_ms: u64, missed: Missed) -> Entry {
    Entry::by_name(
        name,
        "beat.probe",
        vec![0xc0],
        Schedule::every(Duration::from_millis(every_ms)),
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .missed(missed)
}

/// Takes every task sent to the `default` queue out of the broker, by entry and tick;
/// panics on a task id or a tick seen twice.
pub async fn drain_sent(app: &App) -> Sent {
    let mut sent = Sent::new();
    let mut ids = HashSet::new();
    loop {
        let batch = app
            .broker()
            .fetch("probe", &["default".to_string()], 1000, Duration::ZERO)
            .await
            .unwrap_or_else(|e| panic!("fetch: {e}"));
        if batch.is_empty() {
            return sent;
        }
        for d in batch {
            assert!(ids.insert(d.id.clone()), "task {} was sent twice", d.id);
            let env: Envelope = app
                .codec()
                .decode(&d.payload)
                .unwrap_or_else(|e| panic!("{e}"));
            let (name, tick) = env
                .id
                .strip_prefix("beat:")
                .and_then(|rest| rest.rsplit_once('@'))
                .unwrap_or_else(|| panic!("unexpected id {}", env.id));
            let tick: u64 = tick.parse().unwrap_or_else(|e| panic!("{e}"));
            let dup = sent
                .entry(name.to_string())
                .or_default()
                .insert(tick, env.sent_at);
            assert!(dup.is_none(), "tick {tick} of {name} was sent twice");
        }
    }
}

/// The sent ticks of one entry, in order, with when each was sent.
pub fn ticks(sent: &Sent, name: &str) -> Vec<(u64, u64)> {
    sent.get(name)
        .map(|m| m.iter().map(|(t, s)| (*t, *s)).collect())
        .unwrap_or_default()
}

/// Sleeps until half-way between two ticks of `every`, at least `down` ticks from now:
/// the moment a restarted scheduler comes back in the missed-tick checks.
pub async fn sleep_past_ticks(down: u64, every: u64) {
    let mut until = crate::time::now_ms() + down * every;
    until += (every + every / 2 - until % every) % every;
    tokio::time::sleep(Duration::from_millis(
        until.saturating_sub(crate::time::now_ms()),
    ))
    .await;
}

/// Consecutive sent ticks further apart than one interval.
pub fn gaps(ticks: &[(u64, u64)], every: u64) -> Vec<(u64, u64)> {
    ticks
        .windows(2)
        .filter(|w| w[1].0 - w[0].0 != every)
        .map(|w| (w[0].0, w[1].0))
        .collect()
}

/// A store whose first tick claim takes effect but whose reply is lost (the caller
/// gets an error, as after a response timeout). The tick concerned is kept.
#[derive(Clone)]
pub struct LoseFirstClaimReply<S> {
    inner: S,
    lost: std::sync::Arc<std::sync::Mutex<Option<u64>>>,
}

impl<S> LoseFirstClaimReply<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        LoseFirstClaimReply {
            inner,
            lost: Default::default(),
        }
    }

    /// The tick whose claim reply was lost, once it happened.
    pub fn lost_tick(&self) -> Option<u64> {
        *self.lost.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loses the reply of the first claim: `Err` once it has taken effect.
    fn lose_first(
        &self,
        tick_ms: u64,
        result: Result<bool, crate::BackendError>,
    ) -> Result<bool, crate::BackendError> {
        let mut lost = self.lost.lock().unwrap_or_else(|p| p.into_inner());
        if lost.is_none() && matches!(result, Ok(true)) {
            *lost = Some(tick_ms);
            return Err(crate::BackendError::unavailable(
                "the claim's reply was lost (simulated response timeout)",
            ));
        }
        result
    }
}

#[async_trait::async_trait]
impl<S: BeatStore + Clone> BeatStore for LoseFirstClaimReply<S> {
    async fn try_acquire_leader(
        &self,
        beat_id: &str,
        ttl: Duration,
    ) -> Result<bool, crate::BackendError> {
        self.inner.try_acquire_leader(beat_id, ttl).await
    }
    async fn renew_leader(
        &self,
        beat_id: &str,
        ttl: Duration,
    ) -> Result<bool, crate::BackendError> {
        self.inner.renew_leader(beat_id, ttl).await
    }
    async fn release_leader(&self, beat_id: &str) -> Result<bool, crate::BackendError> {
        self.inner.release_leader(beat_id).await
    }
    async fn leader(&self) -> Result<Option<(String, u64)>, crate::BackendError> {
        self.inner.leader().await
    }
    async fn last_run(&self, entry: &str) -> Result<Option<u64>, crate::BackendError> {
        self.inner.last_run(entry).await
    }
    async fn claim_tick(&self, entry: &str, tick_ms: u64) -> Result<bool, crate::BackendError> {
        let result = self.inner.claim_tick(entry, tick_ms).await;
        self.lose_first(tick_ms, result)
    }
    async fn claim_tick_as(
        &self,
        entry: &str,
        tick_ms: u64,
        beat_id: &str,
    ) -> Result<bool, crate::BackendError> {
        let result = self.inner.claim_tick_as(entry, tick_ms, beat_id).await;
        self.lose_first(tick_ms, result)
    }
    async fn mark_sent(&self, task_id: &str, ttl: Duration) -> Result<bool, crate::BackendError> {
        self.inner.mark_sent(task_id, ttl).await
    }
    async fn forget(&self, entry: &str) -> Result<(), crate::BackendError> {
        self.inner.forget(entry).await
    }
    async fn publish_status(
        &self,
        status: &super::BeatStatus,
        ttl: Duration,
    ) -> Result<(), crate::BackendError> {
        self.inner.publish_status(status, ttl).await
    }
    async fn published_status(&self) -> Result<Option<super::BeatStatus>, crate::BackendError> {
        self.inner.published_status().await
    }
}

/// Review item B1: a claim that took effect but whose reply was lost is recognised by
/// its scheduler on the retry, and the tick is sent. `app` must have no other sender
/// on its `default` queue; `store` must be empty.
pub async fn lost_claim_reply_still_sends<S: BeatStore + Clone>(app: &App, store: S) {
    let store = LoseFirstClaimReply::new(store);
    let beat = super::Beat::builder(app.clone(), store.clone())
        .id("beat-lost-reply")
        .entry(probe_entry("lost-reply", 1000, Missed::RunOnce))
        .lease_ttl(Duration::from_secs(2))
        .resolution(Duration::from_millis(100))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let handle = beat.spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while store.lost_tick().is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    handle.shutdown().await;
    let lost = store.lost_tick().expect("a tick was claimed");
    let sent = ticks(&drain_sent(app).await, "lost-reply");
    assert!(
        sent.iter().any(|(t, _)| *t == lost),
        "the tick {lost} whose claim reply was lost was not sent (sent: {sent:?})"
    );
}

/// Review item B2: a tick already sent is not sent again by the next leader when its
/// claim is gone (the last-tick record evicted or lost in a failover): `forget` after
/// the send, then a leader change. `app` must have no other sender on its `default`
/// queue; `store` must be empty. Panics (in [`drain_sent`]) on a task id sent twice.
pub async fn sent_tick_not_sent_again<S: BeatStore + Clone>(app: &App, store: S) {
    let entry = probe_entry("resent", 1000, Missed::RunOnce);
    let build = |id: &str| {
        super::Beat::builder(app.clone(), store.clone())
            .id(id)
            .entry(entry.clone())
            .lease_ttl(Duration::from_millis(300))
            .resolution(Duration::from_millis(50))
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    // Both schedulers start half-way between two ticks, so both started before the
    // first tick they see.
    sleep_past_ticks(0, 1000).await;
    let a = build("beat-a").spawn();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let b = build("beat-b").spawn();
    // Wait for the first tick to be claimed and sent.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let tick = loop {
        if let Some(t) = ok("last run", store.last_run("resent")).await {
            break t;
        }
        assert!(std::time::Instant::now() < deadline, "no tick was sent");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The claim is lost; the leader changes before the next tick.
    ok("forget", store.forget("resent")).await;
    a.shutdown().await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(now_ms() < tick + 1000, "the test ran into the next tick");
    b.shutdown().await;
    let sent = ticks(&drain_sent(app).await, "resent");
    assert_eq!(
        sent.iter().filter(|(t, _)| *t == tick).count(),
        1,
        "{sent:?}"
    );
}
