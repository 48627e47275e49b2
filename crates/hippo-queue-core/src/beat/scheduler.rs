//! [`Beat`]: the scheduler loop. Any number of them may run against one store; the one
//! holding the leader lease sends, the others wait to take over.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::App;
use crate::time::{duration_ms, now_ms};

use super::plan::{Plan, next_run, plan, sent_marker_ttl};
use super::{BeatError, BeatStatus, BeatStore, Entry, EntryStatus, LeaderInfo};

/// Default leader lease: a follower takes over at most about this long after the
/// leader dies.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(hippo_queue_core::beat::DEFAULT_LEASE_TTL, Duration::from_secs(10));
/// ```
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
/// Default longest sleep of the loop between checks.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(hippo_queue_core::beat::DEFAULT_RESOLUTION, Duration::from_secs(1));
/// ```
pub const DEFAULT_RESOLUTION: Duration = Duration::from_secs(1);
/// Default lateness up to which a tick still counts as on time for
/// [`Missed::Skip`](super::Missed::Skip) entries.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(hippo_queue_core::beat::DEFAULT_TOLERANCE, Duration::from_secs(1));
/// ```
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(1);

/// The periodic-task scheduler (Celery's beat): sends each entry's task at each tick of
/// its schedule, through an [`App`].
///
/// Run one `Beat` per process that should be able to schedule (a dedicated process, or
/// inside each worker process like `worker --beat`): they elect a leader through the
/// [`BeatStore`], only the leader sends, and each tick of each entry is sent at most
/// once, whatever the number of schedulers (see the [module docs](super)).
///
/// ```
/// use std::time::Duration;
/// use hippo_queue_core::App;
/// use hippo_queue_core::beat::{Beat, Entry, MemoryBeatStore, Schedule};
/// # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::beat::BeatError> {
/// let app = App::in_memory();
/// let entry = Entry::by_name("tick", "heartbeat.ping", vec![0xc0], Schedule::every(Duration::from_millis(50)))?;
/// let beat = Beat::builder(app.clone(), MemoryBeatStore::new())
///     .entry(entry)
///     .lease_ttl(Duration::from_secs(2))
///     .build()?;
/// let handle = beat.spawn();
/// tokio::time::sleep(Duration::from_millis(300)).await;
/// handle.shutdown().await;
/// let waiting = app.broker().queue_stats(&["default".into()]).await?[0].waiting();
/// assert!(waiting >= 3, "{waiting}");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Beat {
    inner: Arc<Inner>,
}

struct Inner {
    app: App,
    store: Arc<dyn BeatStore>,
    entries: Vec<Entry>,
    id: String,
    lease_ttl: Duration,
    resolution: Duration,
    tolerance: Duration,
    started_ms: AtomicU64,
    leading: AtomicBool,
}

impl std::fmt::Debug for Beat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Beat")
            .field("id", &self.inner.id)
            .field("entries", &self.inner.entries)
            .field("lease_ttl", &self.inner.lease_ttl)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Beat`].
///
/// ```
/// use std::time::Duration;
/// use hippo_queue_core::App;
/// use hippo_queue_core::beat::{Beat, Entry, MemoryBeatStore, Schedule};
/// # fn main() -> Result<(), hippo_queue_core::beat::BeatError> {
/// let beat = Beat::builder(App::in_memory(), MemoryBeatStore::new())
///     .id("beat-1")
///     .entry(Entry::by_name("hourly", "reports.build", vec![0xc0], Schedule::every_hours(1))?)
///     .lease_ttl(Duration::from_secs(10))
///     .resolution(Duration::from_secs(1))
///     .tolerance(Duration::from_secs(1))
///     .build()?;
/// assert_eq!(beat.id(), "beat-1");
/// # Ok(()) }
/// ```
pub struct BeatBuilder {
    app: App,
    store: Arc<dyn BeatStore>,
    entries: Vec<Entry>,
    id: Option<String>,
    lease_ttl: Duration,
    resolution: Duration,
    tolerance: Duration,
}

impl BeatBuilder {
    /// Adds an entry.
    ///
    /// ```
    /// # use hippo_queue_core::App;
    /// # use hippo_queue_core::beat::{Beat, Entry, MemoryBeatStore, Schedule};
    /// let b = Beat::builder(App::in_memory(), MemoryBeatStore::new())
    ///     .entry(Entry::by_name("a", "t", vec![0xc0], Schedule::every_hours(1))?);
    /// # Ok::<(), hippo_queue_core::beat::BeatError>(())
    /// ```
    pub fn entry(mut self, entry: Entry) -> Self {
        self.entries.push(entry);
        self
    }

    /// Adds entries.
    ///
    /// ```
    /// # use hippo_queue_core::App;
    /// # use hippo_queue_core::beat::{Beat, Entry, MemoryBeatStore, Schedule};
    /// let a = Entry::by_name("a", "t", vec![0xc0], Schedule::every_hours(1))?;
    /// let b = Entry::by_name("b", "t", vec![0xc0], Schedule::every_hours(2))?;
    /// let beat = Beat::builder(App::in_memory(), MemoryBeatStore::new()).entries([a, b]).build()?;
    /// assert_eq!(beat.entries().len(), 2);
    /// # Ok::<(), hippo_queue_core::beat::BeatError>(())
    /// ```
    pub fn entries(mut self, entries: impl IntoIterator<Item = Entry>) -> Self {
        self.entries.extend(entries);
        self
    }

    /// The scheduler's id in the lease (default `beat-<random>@<host>`); it must be
    /// unique among the schedulers sharing a store.
    ///
    /// ```
    /// # use hippo_queue_core::App;
    /// # use hippo_queue_core::beat::{Beat, MemoryBeatStore};
    /// let beat = Beat::builder(App::in_memory(), MemoryBeatStore::new()).id("beat-a").build()?;
    /// assert_eq!(beat.id(), "beat-a");
    /// # Ok::<(), hippo_queue_core::beat::BeatError>(())
    /// ```
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// How long the leader lease lasts unless renewed (default 10 s, at least 100 ms).
    /// The leader renews it every third of it; when the leader dies, a follower takes
    /// over within about one lease (plus a third, the followers' polling period).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hippo_queue_core::App;
    /// # use hippo_queue_core::beat::{Beat, MemoryBeatStore};
    /// assert!(Beat::builder(App::in_memory(), MemoryBeatStore::new())
    ///     .lease_ttl(Duration::from_millis(10))
    ///     .build()
    ///     .is_err());
    /// ```
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// The longest the loop sleeps between checks (default 1 s). The loop also wakes at
    /// each entry's next tick and at each lease renewal, so this only bounds how long a
    /// wall-clock jump goes unnoticed.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hippo_queue_core::App;
    /// # use hippo_queue_core::beat::{Beat, MemoryBeatStore};
    /// let beat = Beat::builder(App::in_memory(), MemoryBeatStore::new())
    ///     .resolution(Duration::from_millis(200))
    ///     .build()?;
    /// # Ok::<(), hippo_queue_core::beat::BeatError>(())
    /// ```
    pub fn resolution(mut self, d: Duration) -> Self {
        self.resolution = d;
        self
    }

    /// How late a tick may be sent and still count as on time (default 1 s). A
    /// [`Missed::Skip`](super::Missed::Skip) entry drops a tick found later than this;
    /// a [`Missed::RunOnce`](super::Missed::RunOnce) entry sends it anyway.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hippo_queue_core::App;
    /// # use hippo_queue_core::beat::{Beat, MemoryBeatStore};
    /// let beat = Beat::builder(App::in_memory(), MemoryBeatStore::new())
    ///     .tolerance(Duration::from_millis(500))
    ///     .build()?;
    /// # Ok::<(), hippo_queue_core::beat::BeatError>(())
    /// ```
    pub fn tolerance(mut self, d: Duration) -> Self {
        self.tolerance = d;
        self
    }

    /// Checks the settings and builds the scheduler: entry names must be unique, the
    /// lease at least 100 ms, the resolution above zero, entry queues valid names.
    ///
    /// ```
    /// # use hippo_queue_core::App;
    /// # use hippo_queue_core::beat::{Beat, Entry, MemoryBeatStore, Schedule};
    /// let a = Entry::by_name("same", "t", vec![0xc0], Schedule::every_hours(1))?;
    /// let err = Beat::builder(App::in_memory(), MemoryBeatStore::new())
    ///     .entries([a.clone(), a])
    ///     .build()
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("same"));
    /// # Ok::<(), hippo_queue_core::beat::BeatError>(())
    /// ```
    pub fn build(self) -> Result<Beat, BeatError> {
        if self.lease_ttl < Duration::from_millis(100) {
            return Err(BeatError::InvalidSettings(format!(
                "lease_ttl of {:?} is too short: use at least 100 ms (default 10 s)",
                self.lease_ttl
            )));
        }
        if self.resolution.is_zero() {
            return Err(BeatError::InvalidSettings(
                "resolution must be above zero (default 1 s)".into(),
            ));
        }
        let mut seen = HashSet::new();
        for e in &self.entries {
            if !seen.insert(e.name()) {
                return Err(BeatError::InvalidEntry {
                    entry: e.name().to_string(),
                    reason: "two entries have this name: names key the store, make them unique"
                        .into(),
                });
            }
            e.validate_routing()?;
        }
        let id = match self.id {
            Some(id) if id.trim().is_empty() => {
                return Err(BeatError::InvalidSettings("the beat id is empty".into()));
            }
            Some(id) => id,
            None => format!(
                "beat-{}@{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12],
                crate::message::hostname()
            ),
        };
        Ok(Beat {
            inner: Arc::new(Inner {
                app: self.app,
                store: self.store,
                entries: self.entries,
                id,
                lease_ttl: self.lease_ttl,
                resolution: self.resolution,
                tolerance: self.tolerance,
                started_ms: AtomicU64::new(now_ms()),
                leading: AtomicBool::new(false),
            }),
        })
    }
}

/// What the loop remembers while it leads.
#[derive(Default)]
struct Leading {
    /// Local deadline of our lease, if we hold (or held) it.
    lease: Option<Instant>,
    /// Last tick per entry, as read from or claimed in the store.
    cursors: HashMap<String, Option<u64>>,
    /// The last skipped tick reported per entry (to report each once).
    reported_skips: HashMap<String, u64>,
}

impl Leading {
    fn valid(&self) -> bool {
        self.lease.is_some_and(|until| Instant::now() < until)
    }

    fn reset(&mut self) {
        self.cursors.clear();
        self.reported_skips.clear();
    }
}

impl Beat {
    /// A builder for a scheduler sending through `app` and coordinating through
    /// `store`.
    ///
    /// ```
    /// use hippo_queue_core::App;
    /// use hippo_queue_core::beat::{Beat, MemoryBeatStore};
    /// let beat = Beat::builder(App::in_memory(), MemoryBeatStore::new()).build()?;
    /// # Ok::<(), hippo_queue_core::beat::BeatError>(())
    /// ```
    ///
    /// A shared store is passed as it is (`Arc<T>` and `Box<T>` of a store are stores):
    ///
    /// ```
    /// use std::sync::Arc;
    /// use hippo_queue_core::App;
    /// use hippo_queue_core::beat::{Beat, BeatStore, MemoryBeatStore};
    /// let store: Arc<dyn BeatStore> = Arc::new(MemoryBeatStore::new());
    /// let beat = Beat::builder(App::in_memory(), store.clone()).build()?;
    /// # Ok::<(), hippo_queue_core::beat::BeatError>(())
    /// ```
    pub fn builder(app: App, store: impl BeatStore) -> BeatBuilder {
        BeatBuilder {
            app,
            store: Arc::new(store),
            entries: Vec::new(),
            id: None,
            lease_ttl: DEFAULT_LEASE_TTL,
            resolution: DEFAULT_RESOLUTION,
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// The scheduler's id.
    ///
    /// ```
    /// # use hippo_queue_core::App;
    /// # use hippo_queue_core::beat::{Beat, MemoryBeatStore};
    /// let beat = Beat::builder(App::in_memory(), MemoryBeatStore::new()).build()?;
    /// assert!(beat.id().starts_with("beat-"));
    /// # Ok::<(), hippo_queue_core::beat::BeatError>(())
    /// ```
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The entries.
    ///
    /// ```
    /// # use hippo_queue_core::App;
    /// # use hippo_queue_core::beat::{Beat, MemoryBeatStore};
    /// let beat = Beat::builder(App::in_memory(), MemoryBeatStore::new()).build()?;
    /// assert!(beat.entries().is_empty());
    /// # Ok::<(), hippo_queue_core::beat::BeatError>(())
    /// ```
    pub fn entries(&self) -> &[Entry] {
        &self.inner.entries
    }

    /// Whether this scheduler's loop holds the lease right now (as far as it knows).
    ///
    /// ```
    /// # use hippo_queue_core::App;
    /// # use hippo_queue_core::beat::{Beat, MemoryBeatStore};
    /// let beat = Beat::builder(App::in_memory(), MemoryBeatStore::new()).build()?;
    /// assert!(!beat.is_leader()); // not running
    /// # Ok::<(), hippo_queue_core::beat::BeatError>(())
    /// ```
    pub fn is_leader(&self) -> bool {
        self.inner.leading.load(Ordering::Relaxed)
    }

    /// Starts the loop on the current tokio runtime (call it from within one); the
    /// handle stops it.
    ///
    /// ```
    /// # use hippo_queue_core::App;
    /// # use hippo_queue_core::beat::{Beat, MemoryBeatStore};
    /// # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::beat::BeatError> {
    /// let beat = Beat::builder(App::in_memory(), MemoryBeatStore::new()).build()?;
    /// let handle = beat.spawn();
    /// handle.shutdown().await; // gives the lease up
    /// # Ok(()) }
    /// ```
    pub fn spawn(&self) -> BeatHandle {
        let token = CancellationToken::new();
        let beat = self.clone();
        let stop = token.clone();
        let join = tokio::spawn(async move { beat.run(stop).await });
        BeatHandle {
            beat: self.clone(),
            token: Some(token),
            join: Some(join),
        }
    }

    /// Runs the loop until `shutdown` is cancelled, then gives the lease up if held.
    /// For embedding in a host's own task structure; [`spawn`](Self::spawn) does it for
    /// you. Store and send failures are logged and retried, never fatal. Run one loop
    /// per `Beat`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio_util::sync::CancellationToken;
    /// # use hippo_queue_core::App;
    /// # use hippo_queue_core::beat::{Beat, MemoryBeatStore};
    /// # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::beat::BeatError> {
    /// let beat = Beat::builder(App::in_memory(), MemoryBeatStore::new()).build()?;
    /// let stop = CancellationToken::new();
    /// let host = tokio::spawn({
    ///     let (beat, stop) = (beat.clone(), stop.clone());
    ///     async move { beat.run(stop).await }
    /// });
    /// tokio::time::sleep(Duration::from_millis(20)).await;
    /// stop.cancel();
    /// host.await.ok();
    /// # Ok(()) }
    /// ```
    pub async fn run(&self, shutdown: CancellationToken) {
        let span = tracing::info_span!("beat", beat = %self.inner.id);
        self.run_loop(shutdown).instrument(span).await;
    }

    async fn run_loop(&self, shutdown: CancellationToken) {
        let inner = &*self.inner;
        inner.started_ms.store(now_ms(), Ordering::Relaxed);
        tracing::info!(
            entries = inner.entries.len(),
            lease_ttl = ?inner.lease_ttl,
            "beat started"
        );
        let mut state = Leading::default();
        let mut next_lease_step = Instant::now();
        loop {
            if Instant::now() >= next_lease_step {
                next_lease_step = self.lease_step(&mut state).await;
            }
            let leading = state.valid();
            inner.leading.store(leading, Ordering::Relaxed);
            let mut wake = next_lease_step.min(Instant::now() + inner.resolution);
            if leading {
                for entry in &inner.entries {
                    if !state.valid() {
                        break;
                    }
                    let span = tracing::info_span!("beat_entry", entry = %entry.name());
                    if let Some(at) = self.step(entry, &mut state).instrument(span).await {
                        wake = wake.min(at);
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep_until(wake) => {}
            }
        }
        inner.leading.store(false, Ordering::Relaxed);
        if state.lease.is_some() {
            match inner.store.release_leader(&inner.id).await {
                Ok(true) => tracing::info!("gave the leader lease up"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "could not give the leader lease up; it expires by itself")
                }
            }
        }
        tracing::info!("beat stopped");
    }

    /// Renews the lease when held, else tries to take it. Returns when to act next.
    async fn lease_step(&self, state: &mut Leading) -> Instant {
        let inner = &*self.inner;
        let ttl = inner.lease_ttl;
        let renew_every = ttl / 3;
        let retry = (ttl / 10).max(Duration::from_millis(10));
        let started = Instant::now();
        if state.lease.is_some() {
            match inner.store.renew_leader(&inner.id, ttl).await {
                Ok(true) => {
                    state.lease = Some(started + ttl);
                    self.publish_status(ttl).await;
                    return started + renew_every;
                }
                Ok(false) => {
                    tracing::warn!("lost the leader lease; following");
                    state.lease = None;
                    state.reset();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not renew the leader lease; retrying");
                    return Instant::now() + retry;
                }
            }
        }
        match inner.store.try_acquire_leader(&inner.id, ttl).await {
            Ok(true) => {
                state.lease = Some(started + ttl);
                state.reset();
                tracing::info!("became the leader");
                inner.leading.store(true, Ordering::Relaxed);
                self.publish_status(ttl).await;
                let names: Vec<String> = inner.entries.iter().map(|e| e.name().into()).collect();
                match inner.store.last_runs(&names).await {
                    Ok(lasts) => state.cursors.extend(names.into_iter().zip(lasts)),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read the last ticks; reading them per entry")
                    }
                }
                started + renew_every
            }
            Ok(false) => started + renew_every,
            Err(e) => {
                tracing::warn!(error = %e, "could not reach the beat store; retrying");
                Instant::now() + retry
            }
        }
    }

    /// Publishes this leader's status for other processes, kept for three lease
    /// periods.
    async fn publish_status(&self, ttl: Duration) {
        match self.status().await {
            Ok(status) => {
                if let Err(e) = self.inner.store.publish_status(&status, ttl * 3).await {
                    tracing::warn!(error = %e, "could not publish the beat status");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not compute the beat status"),
        }
    }

    /// Sends what is due for one entry; returns when it wants the loop back.
    async fn step(&self, entry: &Entry, state: &mut Leading) -> Option<Instant> {
        let inner = &*self.inner;
        let backoff = inner.resolution.min(Duration::from_millis(500));
        let last = match state.cursors.get(entry.name()) {
            Some(last) => *last,
            None => match inner.store.last_run(entry.name()).await {
                Ok(last) => {
                    state.cursors.insert(entry.name().to_string(), last);
                    last
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the last tick; retrying");
                    return Some(Instant::now() + backoff);
                }
            },
        };
        let now = now_ms();
        let cursor = last.unwrap_or_else(|| inner.started_ms.load(Ordering::Relaxed));
        let tolerance = duration_ms(inner.tolerance);
        match plan(
            entry.schedule(),
            entry.missed_policy(),
            cursor,
            now,
            tolerance,
        ) {
            Plan::Done => None,
            Plan::Wait(next) => Some(instant_at(next)),
            Plan::Skip { last_missed, next } => {
                if state.reported_skips.get(entry.name()) != Some(&last_missed) {
                    state
                        .reported_skips
                        .insert(entry.name().to_string(), last_missed);
                    tracing::info!(
                        last_sent = ?last,
                        last_missed,
                        next = ?next,
                        "missed ticks dropped (Missed::Skip)"
                    );
                }
                next.map(instant_at)
            }
            Plan::Send { tick, catch_up } => {
                match inner
                    .store
                    .claim_tick_as(entry.name(), tick, &inner.id)
                    .await
                {
                    Ok(true) => {
                        state.cursors.insert(entry.name().to_string(), Some(tick));
                        self.send(entry, tick, catch_up, now).await;
                        entry.schedule().next_after(tick).map(instant_at)
                    }
                    Ok(false) => {
                        tracing::debug!(tick, "tick already claimed by another scheduler");
                        state.cursors.remove(entry.name());
                        Some(Instant::now() + Duration::from_millis(10))
                    }
                    Err(e) => {
                        tracing::warn!(tick, error = %e, "could not claim the tick; retrying");
                        Some(Instant::now() + backoff)
                    }
                }
            }
        }
    }

    /// Sends a claimed tick. A failure loses the tick: it is claimed, so no scheduler
    /// sends it again (ticks are sent at most once). A tick whose sent-marker exists was
    /// sent already (its claim was lost since) and is not sent again.
    async fn send(&self, entry: &Entry, tick: u64, catch_up: bool, now: u64) {
        let app = &self.inner.app;
        let task_id = entry.task_id(tick);
        let ttl = sent_marker_ttl(entry.schedule(), tick);
        match self.inner.store.mark_sent(&task_id, ttl).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    tick,
                    task_id = %task_id,
                    "tick sent already (its claim was lost, its sent-marker is there); not sent again"
                );
                return;
            }
            Err(e) => tracing::warn!(
                tick,
                task_id = %task_id,
                error = %e,
                "could not record the tick as sent; sending it on the strength of its claim"
            ),
        }
        let result = match entry.send_options(app, tick) {
            Ok(opts) => app
                .send_by_name(entry.task(), entry.args().to_vec(), opts)
                .await
                .map_err(BeatError::from),
            Err(e) => Err(e),
        };
        match result {
            Ok(task_id) => tracing::info!(
                tick,
                late_ms = now.saturating_sub(tick),
                catch_up,
                task = entry.task(),
                task_id = %task_id,
                "sent"
            ),
            Err(e) => tracing::error!(
                tick,
                task = entry.task(),
                error = %e,
                "the claimed tick could not be sent and is lost (ticks are sent at most once)"
            ),
        }
    }

    /// Each entry's last and next run, and the current leader, from the store.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hippo_queue_core::App;
    /// use hippo_queue_core::beat::{Beat, Entry, MemoryBeatStore, Schedule};
    /// # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::beat::BeatError> {
    /// let entry = Entry::by_name("fast", "t", vec![0xc0], Schedule::every(Duration::from_millis(20)))?;
    /// let beat = Beat::builder(App::in_memory(), MemoryBeatStore::new()).id("beat-a").entry(entry).build()?;
    /// let handle = beat.spawn();
    /// tokio::time::sleep(Duration::from_millis(150)).await;
    /// let status = beat.status().await?;
    /// assert!(status.is_leader);
    /// assert_eq!(status.leader.map(|l| l.beat_id).as_deref(), Some("beat-a"));
    /// let e = &status.entries[0];
    /// assert!(e.last_run_ms.is_some() && e.next_run_ms > e.last_run_ms);
    /// handle.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn status(&self) -> Result<BeatStatus, BeatError> {
        let inner = &*self.inner;
        let names: Vec<String> = inner.entries.iter().map(|e| e.name().into()).collect();
        let lasts = inner.store.last_runs(&names).await?;
        let leader = inner.store.leader().await?;
        let now = now_ms();
        let started = inner.started_ms.load(Ordering::Relaxed);
        let tolerance = duration_ms(inner.tolerance);
        let entries = inner
            .entries
            .iter()
            .zip(lasts)
            .map(|(e, last)| EntryStatus {
                name: e.name().to_string(),
                task: e.task().to_string(),
                schedule: e.schedule().to_string(),
                missed: e.missed_policy(),
                last_run_ms: last,
                next_run_ms: next_run(plan(
                    e.schedule(),
                    e.missed_policy(),
                    last.unwrap_or(started),
                    now,
                    tolerance,
                )),
            })
            .collect();
        Ok(BeatStatus {
            beat_id: inner.id.clone(),
            is_leader: self.is_leader(),
            leader: leader.map(|(beat_id, expires_ms)| LeaderInfo {
                beat_id,
                expires_ms,
            }),
            entries,
        })
    }
}

/// The monotonic instant of a wall-clock time (now if it has passed).
fn instant_at(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms.saturating_sub(now_ms()))
}

/// A running scheduler loop started by [`Beat::spawn`]. Dropping the handle stops the
/// loop in the background (giving the lease up); [`shutdown`](Self::shutdown) also
/// waits for it.
///
/// ```
/// # use hippo_queue_core::App;
/// # use hippo_queue_core::beat::{Beat, MemoryBeatStore};
/// # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::beat::BeatError> {
/// let beat = Beat::builder(App::in_memory(), MemoryBeatStore::new()).build()?;
/// let handle = beat.spawn();
/// assert_eq!(handle.beat().id(), beat.id());
/// handle.shutdown().await;
/// # Ok(()) }
/// ```
pub struct BeatHandle {
    beat: Beat,
    token: Option<CancellationToken>,
    join: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for BeatHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BeatHandle")
            .field("beat", &self.beat.inner.id)
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl BeatHandle {
    /// The scheduler.
    ///
    /// ```
    /// # use hippo_queue_core::App;
    /// # use hippo_queue_core::beat::{Beat, MemoryBeatStore};
    /// # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::beat::BeatError> {
    /// let handle = Beat::builder(App::in_memory(), MemoryBeatStore::new()).build()?.spawn();
    /// let _status = handle.beat().status().await?;
    /// # Ok(()) }
    /// ```
    pub fn beat(&self) -> &Beat {
        &self.beat
    }

    /// Whether the loop has ended.
    ///
    /// ```
    /// # use hippo_queue_core::App;
    /// # use hippo_queue_core::beat::{Beat, MemoryBeatStore};
    /// # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::beat::BeatError> {
    /// let handle = Beat::builder(App::in_memory(), MemoryBeatStore::new()).build()?.spawn();
    /// assert!(!handle.is_finished());
    /// # Ok(()) }
    /// ```
    pub fn is_finished(&self) -> bool {
        self.join.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the loop, gives the lease up (a follower takes over at once), and waits.
    ///
    /// ```
    /// # use hippo_queue_core::App;
    /// # use hippo_queue_core::beat::{Beat, MemoryBeatStore};
    /// # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::beat::BeatError> {
    /// let handle = Beat::builder(App::in_memory(), MemoryBeatStore::new()).build()?.spawn();
    /// handle.shutdown().await;
    /// # Ok(()) }
    /// ```
    pub async fn shutdown(mut self) {
        if let Some(token) = self.token.take() {
            token.cancel();
        }
        if let Some(join) = self.join.take()
            && let Err(e) = join.await
            && e.is_panic()
        {
            tracing::error!(beat = %self.beat.inner.id, "the beat loop panicked");
        }
    }

    /// Stops the loop abruptly, as a crash would: the lease is not given up, so the
    /// other schedulers take over only when it expires. For failover drills and tests.
    ///
    /// ```
    /// # use hippo_queue_core::App;
    /// # use hippo_queue_core::beat::{Beat, MemoryBeatStore};
    /// # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::beat::BeatError> {
    /// let handle = Beat::builder(App::in_memory(), MemoryBeatStore::new()).build()?.spawn();
    /// handle.abort().await;
    /// # Ok(()) }
    /// ```
    pub async fn abort(mut self) {
        self.token.take();
        if let Some(join) = self.join.take() {
            join.abort();
            let _ = join.await;
        }
        self.beat.inner.leading.store(false, Ordering::Relaxed);
    }
}

impl Drop for BeatHandle {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            token.cancel();
        }
    }
}
