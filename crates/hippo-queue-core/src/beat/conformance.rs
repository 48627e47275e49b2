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
    published(store).await;
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
