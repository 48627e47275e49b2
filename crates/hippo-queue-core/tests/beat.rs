//! The scheduler on the in-memory backend and store: several schedulers, leader
//! failover, restarts and the missed-tick policies, checked on the tasks actually sent.

use std::time::Duration;

use hippo_queue_core::App;
use hippo_queue_core::beat::conformance::{
    check_store, drain_sent, gaps, probe_entry, sleep_past_ticks, ticks,
};
use hippo_queue_core::beat::{Beat, BeatHandle, BeatStore, Entry, MemoryBeatStore, Missed};
use hippo_queue_core::time::now_ms;

fn beat(app: &App, store: &MemoryBeatStore, id: &str, entries: &[Entry], ttl_ms: u64) -> Beat {
    Beat::builder(app.clone(), store.clone())
        .id(id)
        .entries(entries.iter().cloned())
        .lease_ttl(Duration::from_millis(ttl_ms))
        .tolerance(Duration::from_millis(30))
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn leader(store: &MemoryBeatStore) -> Option<String> {
    store
        .leader()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|(id, _)| id)
}

#[tokio::test]
async fn beat_memory_store_conformance() {
    check_store(&MemoryBeatStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beat_lost_claim_reply_still_sends() {
    hippo_queue_core::beat::conformance::lost_claim_reply_still_sends(
        &App::in_memory(),
        MemoryBeatStore::new(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beat_sent_tick_not_sent_again() {
    hippo_queue_core::beat::conformance::sent_tick_not_sent_again(
        &App::in_memory(),
        MemoryBeatStore::new(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beat_three_schedulers_send_every_tick_once() {
    let app = App::in_memory();
    let store = MemoryBeatStore::new();
    let entries = [
        probe_entry("fast", 100, Missed::RunOnce),
        probe_entry("skip", 100, Missed::Skip),
    ];
    let start = now_ms();
    let handles: Vec<BeatHandle> = (0..3)
        .map(|i| beat(&app, &store, &format!("b{i}"), &entries, 1000).spawn())
        .collect();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let leaders = handles.iter().filter(|h| h.beat().is_leader()).count();
    assert_eq!(leaders, 1, "exactly one scheduler leads");
    let status = handles[0]
        .beat()
        .status()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.leader.is_some());
    for h in handles {
        h.shutdown().await;
    }
    let stop = now_ms();
    let sent = drain_sent(&app).await;
    for name in ["fast", "skip"] {
        let t = ticks(&sent, name);
        assert!(t.len() >= 10, "{name}: only {} ticks", t.len());
        assert_eq!(gaps(&t, 100), [], "{name}: ticks lost");
        assert!(t[0].0 > start && t[t.len() - 1].0 <= stop);
        // the status reports the last tick sent
        let e = status.entries.iter().find(|e| e.name == name);
        assert!(e.and_then(|e| e.last_run_ms).is_some());
    }
    assert_eq!(leader(&store).await, None, "stopping gives the lease up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beat_follower_takes_over_from_a_dead_leader() {
    let app = App::in_memory();
    let store = MemoryBeatStore::new();
    let (every, ttl) = (100, 400);
    let entries = [
        probe_entry("once", every, Missed::RunOnce),
        probe_entry("skip", every, Missed::Skip),
    ];
    let mut handles: Vec<Option<BeatHandle>> = (0..3)
        .map(|i| Some(beat(&app, &store, &format!("b{i}"), &entries, ttl).spawn()))
        .collect();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let old = leader(&store).await.unwrap_or_else(|| panic!("no leader"));
    let i: usize = old[1..].parse().unwrap_or_else(|e| panic!("{e}"));
    let killed_at = now_ms();
    if let Some(h) = handles[i].take() {
        h.abort().await;
    }
    // the lease outlives its holder, then a follower takes it
    let new = loop {
        match leader(&store).await {
            Some(id) if id != old => break id,
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    let took_over = now_ms() - killed_at;
    assert!(
        took_over <= ttl + ttl / 3 + 150,
        "takeover took {took_over} ms"
    );
    assert_ne!(new, old);
    tokio::time::sleep(Duration::from_millis(600)).await;
    for h in handles.into_iter().flatten() {
        h.shutdown().await;
    }
    let sent = drain_sent(&app).await;

    // RunOnce: one gap, closed by a single catch-up: the latest tick due at takeover
    let once = ticks(&sent, "once");
    let g = gaps(&once, every);
    assert!(g.len() <= 1, "once: gaps {g:?}");
    if let [(before, after)] = g.as_slice() {
        assert!(*before <= killed_at + every, "gap starts before the kill");
        assert!(
            after - before <= ttl + ttl / 3 + 2 * every + 100,
            "gap {g:?}"
        );
        let sent_at = sent["once"][after];
        assert!(
            sent_at - after < every + 50,
            "the catch-up is the latest tick"
        );
    }
    // Skip: never sends a late tick
    for (tick, sent_at) in ticks(&sent, "skip") {
        assert!(
            sent_at - tick <= 30 + 50,
            "skip sent tick {tick} late at {sent_at}"
        );
    }
    assert!(once.len() >= 8 && ticks(&sent, "skip").len() >= 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beat_graceful_stop_hands_the_lease_over_at_once() {
    let app = App::in_memory();
    let store = MemoryBeatStore::new();
    let entries = [probe_entry("once", 100, Missed::RunOnce)];
    let ttl = 3000;
    let a = beat(&app, &store, "a", &entries, ttl).spawn();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let b = beat(&app, &store, "b", &entries, ttl).spawn();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(leader(&store).await.as_deref(), Some("a"));
    a.shutdown().await;
    tokio::time::sleep(Duration::from_millis(ttl / 3 + 200)).await;
    assert_eq!(
        leader(&store).await.as_deref(),
        Some("b"),
        "b leads long before a's lease would expire"
    );
    b.shutdown().await;
    let sent = drain_sent(&app).await;
    let once = ticks(&sent, "once");
    // b polls every ttl/3, so up to ~1 s of ticks are collapsed into one catch-up
    assert!(gaps(&once, 100).len() <= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beat_restart_keeps_its_place_and_applies_the_missed_policy() {
    let app = App::in_memory();
    let store = MemoryBeatStore::new();
    let every = 200;
    let entries = [
        probe_entry("once", every, Missed::RunOnce),
        probe_entry("skip", every, Missed::Skip),
    ];
    let first = beat(&app, &store, "first", &entries, 1000).spawn();
    tokio::time::sleep(Duration::from_millis(700)).await;
    first.shutdown().await;
    let before = drain_sent(&app).await;
    let last_once = *before["once"].keys().last().unwrap_or(&0);
    let last_skip = *before["skip"].keys().last().unwrap_or(&0);
    assert!(last_once > 0 && last_skip > 0);

    // down for at least two ticks, back half-way between two ticks
    sleep_past_ticks(3, every).await;
    let second = beat(&app, &store, "second", &entries, 1000).spawn();
    let restarted = now_ms();
    tokio::time::sleep(Duration::from_millis(3 * every + every / 2)).await;
    let status = second
        .beat()
        .status()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    second.shutdown().await;
    let after = drain_sent(&app).await;

    // RunOnce: one catch-up for the missed ticks (the latest), then on schedule
    let once = ticks(&after, "once");
    let catch_up = restarted - restarted % every;
    assert_eq!(
        once[0].0, catch_up,
        "once: {once:?} (restart at {restarted})"
    );
    assert!(
        once[0].1 - once[0].0 >= every / 2 - 20,
        "sent late, as a catch-up"
    );
    assert!(catch_up - last_once >= 2 * every, "ticks were missed");
    assert_eq!(gaps(&once, every), []);
    // Skip: nothing for the missed ticks; the next tick after the restart
    let skip = ticks(&after, "skip");
    assert_eq!(skip[0].0, catch_up + every, "skip: {skip:?}");
    assert_eq!(gaps(&skip, every), []);
    // no tick repeated, none before the stored place
    assert!(once[0].0 > last_once && skip[0].0 > last_skip);
    let reported = status
        .entries
        .iter()
        .find(|e| e.name == "once")
        .and_then(|e| e.last_run_ms);
    assert!(reported >= Some(once[once.len() - 2].0));
}

#[tokio::test]
async fn beat_settings_are_checked() {
    let app = App::in_memory();
    let store = MemoryBeatStore::new();
    let e = probe_entry("x", 100, Missed::Skip);
    assert!(
        Beat::builder(app.clone(), store.clone())
            .entries([e.clone(), e.clone()])
            .build()
            .is_err()
    );
    assert!(
        Beat::builder(app.clone(), store.clone())
            .resolution(Duration::ZERO)
            .build()
            .is_err()
    );
    assert!(Beat::builder(app, store).id(" ").build().is_err());
}
