//! What monitors read: workers that stopped, the age of waiting messages, the event
//! log read backwards.

use super::support::*;
use crate::events::Event;
use crate::time::now_ms;

/// A worker that stopped is gone from `workers` and still in `workers_seen`, with
/// its last record.
pub async fn workers_seen_after_they_stop(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let id = w.id().to_string();
    let broker = k.app.broker().clone();
    let seen = broker.workers_seen().await.expect("workers seen");
    let me = seen
        .iter()
        .find(|i| i.id == id)
        .expect("a live worker is seen");
    assert_eq!(me.queues, ["default"]);
    w.shutdown().await;
    let live = broker.workers().await.expect("workers");
    assert!(!live.iter().any(|i| i.id == id), "stopped, so not live");
    let seen = broker.workers_seen().await.expect("workers seen");
    assert!(
        seen.iter().any(|i| i.id == id),
        "a stopped worker stays seen: {seen:?}"
    );
}

/// The oldest waiting message of each priority is reported with its send time; empty
/// levels and unknown queues have none.
pub async fn oldest_waiting_per_priority(b: Backends) {
    let k = kit(&b, Router::default());
    let before = now_ms();
    let first = k
        .app
        .apply_async::<Record>("old".into(), SendOptions::new().priority(7))
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(20)).await;
    k.app
        .apply_async::<Record>("new".into(), SendOptions::new().priority(7))
        .await
        .expect("send");
    k.app
        .apply_async::<Record>("low".into(), SendOptions::new().priority(2))
        .await
        .expect("send");
    let after = now_ms();
    let queues = ["default".to_string(), "nothing-here".to_string()];
    let oldest = k
        .app
        .broker()
        .oldest_waiting(&queues)
        .await
        .expect("oldest");
    assert_eq!(oldest.len(), 2);
    assert_eq!(oldest[0].queue, "default");
    let p7 = oldest[0].since_by_priority[7].expect("priority 7 waits");
    assert!(
        (before..=after).contains(&p7),
        "{p7} not within {before}..={after} ({})",
        first.id()
    );
    let p2 = oldest[0].since_by_priority[2].expect("priority 2 waits");
    assert!(p7 <= p2, "the head of 7 is the first sent");
    for p in [0, 1, 3, 4, 5, 6, 8, 9] {
        assert_eq!(
            oldest[0].since_by_priority[p], None,
            "priority {p} is empty"
        );
    }
    assert_eq!(oldest[1].since_by_priority, [None; 10]);
    let ages = oldest[0].ages_ms(after + 1_000);
    assert!(ages[7].is_some_and(|a| a >= 1_000));
}

/// `events_before` reads the log newest first, and its cursors page backwards
/// through what `events` reads forwards.
pub async fn events_read_backwards(b: Backends) {
    let broker = b.broker.clone();
    let sent: Vec<Event> = (0..5)
        .map(|i| Event::task(EventKind::TaskSent, &format!("back-{i}"), "t"))
        .collect();
    broker.emit(&sent).await.expect("emit");
    let forwards = broker.events(None, 100).await.expect("events");
    let ours: Vec<&(String, Event)> = forwards
        .iter()
        .filter(|(_, e)| e.task_id.as_deref().is_some_and(|t| t.starts_with("back-")))
        .collect();
    assert_eq!(ours.len(), 5);
    let newest = broker.events_before(None, 3).await.expect("newest");
    assert_eq!(newest.len(), 3);
    assert_eq!(newest[0].1.task_id.as_deref(), Some("back-4"));
    assert_eq!(newest[2].1.task_id.as_deref(), Some("back-2"));
    let older = broker
        .events_before(Some(&newest[2].0), 100)
        .await
        .expect("older");
    let ids: Vec<&str> = older
        .iter()
        .filter_map(|(_, e)| e.task_id.as_deref())
        .filter(|t| t.starts_with("back-"))
        .collect();
    assert_eq!(ids, ["back-1", "back-0"]);
    // the cursors are the forward cursors
    assert_eq!(newest[0].0, ours[4].0);
}
