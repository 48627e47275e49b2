//! The scheduler on a real `redis-server`: several schedulers with their own
//! connections, a leader killed mid-way, restarts, and schedulers that all believe they
//! lead. Checked on the tasks that reached the broker.

use std::time::Duration;

use async_trait::async_trait;
use hippo_queue_core::beat::conformance::{
    Sent, check_store, drain_sent, gaps, probe_entry, sleep_past_ticks, ticks,
};
use hippo_queue_core::beat::{Beat, BeatHandle, BeatStatus, BeatStore, Entry, Missed};
use hippo_queue_core::time::now_ms;
use hippo_queue_core::{App, BackendError};
use hippo_queue_redis::test_server::RedisServer;
use hippo_queue_redis::{RedisBackend, RedisConfig};

const TOLERANCE: u64 = 100;

async fn connect(server: &RedisServer) -> RedisBackend {
    RedisBackend::connect(RedisConfig::new(server.url(1)).response_timeout(Duration::from_secs(2)))
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

fn app(backend: &RedisBackend) -> App {
    App::builder()
        .broker(backend.clone())
        .backend(backend.clone())
        .build()
}

/// A scheduler as a separate process would run it: its own connection.
async fn beat_on(
    server: &RedisServer,
    id: &str,
    entries: &[Entry],
    ttl_ms: u64,
) -> (Beat, RedisBackend) {
    let backend = connect(server).await;
    let beat = Beat::builder(app(&backend), backend.clone())
        .id(id)
        .entries(entries.iter().cloned())
        .lease_ttl(Duration::from_millis(ttl_ms))
        .tolerance(Duration::from_millis(TOLERANCE))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    (beat, backend)
}

/// Takes every sent task out of the queue, through a connection of its own.
async fn drain(server: &RedisServer) -> Sent {
    drain_sent(&app(&connect(server).await)).await
}

async fn leader(store: &RedisBackend) -> Option<String> {
    store
        .leader()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|(id, _)| id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beat_redis_store_conformance() {
    let server = RedisServer::start();
    let backend = connect(&server).await;
    check_store(&backend).await;
    // keys live under the prefix, and the lease expires by itself
    let other = RedisBackend::connect(RedisConfig::new(server.url(1)).prefix("other"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(backend.claim_tick("shared-name", 7).await.unwrap_or(false));
    assert!(
        other.claim_tick("shared-name", 7).await.unwrap_or(false),
        "prefixes keep deployments apart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beat_three_schedulers_on_redis_send_each_tick_once_and_survive_a_dead_leader() {
    let server = RedisServer::start();
    let (every, ttl) = (250, 1000);
    let entries = [
        probe_entry("once", every, Missed::RunOnce),
        probe_entry("skip", every, Missed::Skip),
    ];
    let mut handles: Vec<Option<BeatHandle>> = Vec::new();
    let mut stores = Vec::new();
    for i in 0..3 {
        let (beat, store) = beat_on(&server, &format!("b{i}"), &entries, ttl).await;
        handles.push(Some(beat.spawn()));
        stores.push(store);
    }
    let started = now_ms();
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // one leader, as the store and the schedulers agree
    let old = leader(&stores[0])
        .await
        .unwrap_or_else(|| panic!("no leader"));
    let leading: Vec<&str> = handles
        .iter()
        .flatten()
        .filter(|h| h.beat().is_leader())
        .map(|h| h.beat().id())
        .collect();
    assert_eq!(leading, [old.as_str()]);
    let status = handles[0]
        .as_ref()
        .map(|h| h.beat().clone())
        .unwrap_or_else(|| panic!("no beat"))
        .status()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        status.leader.map(|l| l.beat_id).as_deref(),
        Some(old.as_str())
    );

    // kill the leader without giving the lease up
    let i: usize = old[1..].parse().unwrap_or_else(|e| panic!("{e}"));
    let killed_at = now_ms();
    if let Some(h) = handles[i].take() {
        h.abort().await;
    }
    let new = loop {
        match leader(&stores[(i + 1) % 3]).await {
            Some(id) if id != old => break id,
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    let took_over = now_ms() - killed_at;
    assert!(
        (ttl / 2..=ttl + ttl / 3 + 250).contains(&took_over),
        "takeover after {took_over} ms, lease {ttl} ms"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for h in handles.into_iter().flatten() {
        h.shutdown().await;
    }
    let stopped = now_ms();
    let sent = drain(&server).await;

    // RunOnce: every tick once, except one gap at the failover, closed by a single
    // catch-up (the latest tick due when the follower took over)
    let once = ticks(&sent, "once");
    assert!(once.len() >= 15, "only {} ticks", once.len());
    assert!(once[0].0 > started - every && once[once.len() - 1].0 <= stopped);
    let g = gaps(&once, every);
    assert!(g.len() <= 1, "once: gaps {g:?}");
    if let [(before, after)] = g.as_slice() {
        assert!(
            *before <= killed_at + every,
            "gap {g:?} starts after the kill at {killed_at}"
        );
        assert!(
            after - before <= ttl + ttl / 3 + 2 * every + 250,
            "gap {g:?}"
        );
        let late = sent["once"][after] - after;
        assert!(
            late < every + 50,
            "the catch-up is the latest due tick (late {late} ms)"
        );
    }
    // Skip: every sent tick on time, and the ones before and after the failover
    // are all there
    let skip = ticks(&sent, "skip");
    for (tick, sent_at) in &skip {
        assert!(
            sent_at - tick <= TOLERANCE + 50,
            "skip sent tick {tick} late at {sent_at}"
        );
    }
    let g = gaps(&skip, every);
    assert!(g.len() <= 1, "skip: gaps {g:?}");
    println!(
        "{} + {} ticks sent, leader {old} killed, {new} took over after {took_over} ms",
        once.len(),
        skip.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beat_restart_on_redis_keeps_its_place_and_applies_the_missed_policy() {
    let server = RedisServer::start();
    let every = 300;
    let entries = [
        probe_entry("once", every, Missed::RunOnce),
        probe_entry("skip", every, Missed::Skip),
    ];
    let (first, first_store) = beat_on(&server, "first", &entries, 1000).await;
    let first = first.spawn();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    first.shutdown().await;
    assert_eq!(
        leader(&first_store).await,
        None,
        "a clean stop gives the lease up"
    );
    drop(first_store);
    let before = drain(&server).await;
    let last_once = ticks(&before, "once").last().map_or(0, |t| t.0);
    let last_skip = ticks(&before, "skip").last().map_or(0, |t| t.0);
    assert!(last_once > 0 && last_skip > 0, "{before:?}");

    // down for at least two ticks; back half-way between two ticks
    sleep_past_ticks(3, every).await;
    let (second, _store) = beat_on(&server, "second", &entries, 1000).await;
    let restarted = now_ms();
    let second = second.spawn();
    tokio::time::sleep(Duration::from_millis(3 * every + every / 2)).await;
    let status = second
        .beat()
        .status()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    second.shutdown().await;
    let after = drain(&server).await;

    let catch_up = restarted - restarted % every;
    // RunOnce: the missed ticks get one task, the latest one's, then the schedule goes on
    let once = ticks(&after, "once");
    assert!(!once.is_empty(), "nothing sent after the restart");
    assert_eq!(
        once[0].0, catch_up,
        "once: {once:?}, restart at {restarted}"
    );
    assert!(catch_up - last_once >= 2 * every, "ticks were missed");
    assert!(
        once[0].1 - once[0].0 > TOLERANCE,
        "sent late, as a catch-up"
    );
    assert_eq!(gaps(&once, every), []);
    // Skip: nothing for the missed ticks; the first tick after the restart, on time
    let skip = ticks(&after, "skip");
    assert!(!skip.is_empty(), "nothing sent after the restart");
    assert_eq!(
        skip[0].0,
        catch_up + every,
        "skip: {skip:?}, restart at {restarted}"
    );
    assert!(skip.iter().all(|(t, s)| s - t <= TOLERANCE + 50));
    assert_eq!(gaps(&skip, every), []);
    // the stored place was kept: nothing repeated
    assert!(once[0].0 > last_once && skip[0].0 > last_skip);
    let last = status
        .entries
        .iter()
        .find(|e| e.name == "skip")
        .and_then(|e| e.last_run_ms);
    assert!(last >= Some(skip[0].0));
}

/// A store that tells every scheduler it leads: only the per-tick claim stands between
/// them and double sends.
#[derive(Clone)]
struct EveryoneLeads(RedisBackend);

#[async_trait]
impl BeatStore for EveryoneLeads {
    async fn try_acquire_leader(&self, _: &str, _: Duration) -> Result<bool, BackendError> {
        Ok(true)
    }
    async fn renew_leader(&self, _: &str, _: Duration) -> Result<bool, BackendError> {
        Ok(true)
    }
    async fn release_leader(&self, _: &str) -> Result<bool, BackendError> {
        Ok(true)
    }
    async fn leader(&self) -> Result<Option<(String, u64)>, BackendError> {
        Ok(None)
    }
    async fn last_run(&self, entry: &str) -> Result<Option<u64>, BackendError> {
        self.0.last_run(entry).await
    }
    async fn claim_tick(&self, entry: &str, tick_ms: u64) -> Result<bool, BackendError> {
        self.0.claim_tick(entry, tick_ms).await
    }
    async fn forget(&self, entry: &str) -> Result<(), BackendError> {
        self.0.forget(entry).await
    }
    async fn publish_status(&self, status: &BeatStatus, ttl: Duration) -> Result<(), BackendError> {
        self.0.publish_status(status, ttl).await
    }
    async fn published_status(&self) -> Result<Option<BeatStatus>, BackendError> {
        self.0.published_status().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beat_schedulers_that_all_think_they_lead_still_send_each_tick_once() {
    let server = RedisServer::start();
    let every = 100;
    let entries = [probe_entry("split-brain", every, Missed::RunOnce)];
    let mut handles = Vec::new();
    for i in 0..4 {
        let backend = connect(&server).await;
        let beat = Beat::builder(app(&backend), EveryoneLeads(backend.clone()))
            .id(format!("b{i}"))
            .entries(entries.iter().cloned())
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        handles.push(beat.spawn());
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(handles.iter().all(|h| h.beat().is_leader()));
    for h in handles {
        h.shutdown().await;
    }
    let sent = drain(&server).await; // fails on any tick sent twice
    let t = ticks(&sent, "split-brain");
    assert!(t.len() >= 12, "only {} ticks", t.len());
    assert_eq!(gaps(&t, every), []);
}

/// Review item B1 on Redis: a claim whose reply was lost is recognised as the
/// scheduler's own, and the tick is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beat_lost_claim_reply_still_sends() {
    let server = RedisServer::start();
    let backend = connect(&server).await;
    hippo_queue_core::beat::conformance::lost_claim_reply_still_sends(&app(&backend), backend)
        .await;
}

/// Review item B2 on Redis: `HDEL <prefix>:beat:last <entry>` after a send (what an
/// eviction or a failover to a lagging replica does), then a leader change: the tick is
/// not sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beat_sent_tick_not_sent_again() {
    let server = RedisServer::start();
    let backend = connect(&server).await;
    hippo_queue_core::beat::conformance::sent_tick_not_sent_again(&app(&backend), backend).await;
}
