//! Delivery: priorities, routing, consumers, countdowns, bulk sends, garbage.

use super::support::*;

/// Higher message priority runs first; FIFO within a priority.
pub async fn priority_order(b: Backends) {
    let k = kit(&b, Router::default());
    let mut expected = Vec::new();
    for i in 0..30u32 {
        let p = (i * 7 % 10) as u8;
        let label = format!("p{p}-{i:02}");
        expected.push((p, i, label.clone()));
        k.app
            .apply_async::<Record>(label, SendOptions::new().priority(p))
            .await
            .expect("send");
    }
    let w = test_worker(&k.app)
        .concurrency(1)
        .prefetch_multiplier(1)
        .pool(crate::Pool::Solo)
        .start()
        .await
        .expect("worker");
    until("all 30 ran", WAIT, || log_of(&k).len() == 30).await;
    w.shutdown().await;
    expected.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let want: Vec<String> = expected.into_iter().map(|e| e.2).collect();
    assert_eq!(log_of(&k), want);
}

/// Queues are served by queue priority, and a lower queue is not starved.
pub async fn queue_priority_fairness(b: Backends) {
    let router = Router::new("low")
        .queue(Queue::new("high").priority(9))
        .queue(Queue::new("low").priority(1));
    let k = kit(&b, router);
    for i in 0..12 {
        k.app
            .apply_async::<Record>(format!("low-{i}"), SendOptions::new().queue("low"))
            .await
            .expect("send");
        k.app
            .apply_async::<Record>(format!("high-{i}"), SendOptions::new().queue("high"))
            .await
            .expect("send");
    }
    let w = test_worker(&k.app)
        .concurrency(1)
        .prefetch_multiplier(1)
        .fairness_interval(4)
        .pool(crate::Pool::Solo)
        .start()
        .await
        .expect("worker");
    until("all 24 ran", WAIT, || log_of(&k).len() == 24).await;
    w.shutdown().await;
    let log = log_of(&k);
    assert!(log[0].starts_with("high"), "{log:?}");
    let first_low = log
        .iter()
        .position(|l| l.starts_with("low"))
        .expect("low ran");
    let last_high = log
        .iter()
        .rposition(|l| l.starts_with("high"))
        .expect("high ran");
    assert!(first_low < 4, "low queue starved: {log:?}");
    assert!(first_low < last_high, "{log:?}");
    let highs_in_first_half = log[..12].iter().filter(|l| l.starts_with("high")).count();
    assert!(
        highs_in_first_half >= 9,
        "high queue not preferred: {log:?}"
    );
}

/// Routing keys pick queues by topic rules (the guide's four queues).
pub async fn topic_routing(b: Backends) {
    let k = kit(&b, Router::guide_preset());
    let cases = [
        ("memory.dedup", "memory_ops"),
        ("memory", "memory_ops"),
        ("memory.consolidate.user.x", "memory_ops"),
        ("background.health", "background"),
        ("scheduled.expire", "scheduled"),
        ("default", "default"),
    ];
    for (key, _) in cases {
        k.app
            .apply_async::<Record>(key.to_string(), SendOptions::new().routing_key(key))
            .await
            .expect("send");
    }
    let err = k
        .app
        .apply_async::<Record>("x".into(), SendOptions::new().routing_key("nowhere.at.all"))
        .await
        .expect_err("unroutable key must fail");
    assert!(err.to_string().contains("nowhere.at.all"), "{err}");
    for (queue, n) in [
        ("memory_ops", 3),
        ("background", 1),
        ("scheduled", 1),
        ("default", 1),
    ] {
        assert_eq!(stats(&k.app, queue).await.waiting(), n, "queue {queue}");
    }
    let w = test_worker(&k.app).start().await.expect("worker");
    until("all routed tasks ran", WAIT, || {
        log_of(&k).len() == cases.len()
    })
    .await;
    w.shutdown().await;
}

/// Garbage, unknown tasks and wrong argument types get clear errors and the worker
/// keeps running.
pub async fn garbage_messages(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let mut bomb = vec![b'Z'];
    bomb.extend(zstd::bulk::compress(&vec![0u8; 80 << 20], 1).expect("compress"));
    let raw = |id: &str, payload: Vec<u8>| Outgoing {
        id: id.to_string(),
        queue: "default".into(),
        priority: 0,
        eta: None,
        payload,
        flags: DeliveryFlags::default(),
    };
    k.app
        .broker()
        .publish(vec![
            raw("garbage-1", b"\x00\x01not a message".to_vec()),
            raw("garbage-2", b"M\xc1\xc1\xc1".to_vec()),
            raw("garbage-3", Vec::new()),
            raw("bomb", bomb),
        ])
        .await
        .expect("publish");
    for id in ["garbage-1", "garbage-2", "garbage-3", "bomb"] {
        let m = final_meta(&k.app, id).await;
        assert_eq!(m.state, TaskState::Failure, "{id}");
        assert_eq!(m.error.expect("error").kind, kinds::MALFORMED, "{id}");
    }
    let unknown = k
        .app
        .send_by_name(
            "no.such.task",
            crate::codec::to_msgpack(&1).expect("args"),
            SendOptions::new(),
        )
        .await
        .expect("send");
    let m = final_meta(&k.app, &unknown).await;
    assert_eq!(m.error.expect("error").kind, kinds::NOT_REGISTERED);
    let wrong = k
        .app
        .send_by_name(
            "conformance.typed",
            crate::codec::to_msgpack("not a pair").expect("args"),
            SendOptions::new(),
        )
        .await
        .expect("send");
    let m = final_meta(&k.app, &wrong).await;
    let e = m.error.expect("error");
    assert_eq!(e.kind, kinds::ARGUMENTS);
    assert!(e.message.contains("conformance.typed"), "{e:?}");
    let ok = k
        .app
        .delay::<Typed>(Pair {
            a: 2,
            b: "x".into(),
        })
        .await
        .expect("send");
    assert_eq!(ok.get(WAIT).await.expect("still running"), "x2");
    let deadline = Instant::now() + WAIT;
    loop {
        let dead = k
            .app
            .broker()
            .dead_letters("default", 100)
            .await
            .expect("dead");
        if dead.len() == 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expected 5 dead letters: {dead:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(w.stats().rejected >= 5);
    // an oversized message is refused at the producer with a clear error
    let small = App::builder()
        .broker(b.broker.clone())
        .backend(b.results.clone())
        .codec(crate::codec::Codec {
            max_size: 1024,
            ..Default::default()
        })
        .build();
    let err = small
        .delay::<Record>("y".repeat(4096))
        .await
        .expect_err("oversized");
    assert!(err.to_string().contains("exceeds the maximum"), "{err}");
    w.shutdown().await;
}

/// A countdown is an earliest start.
pub async fn countdown_not_early(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let t = Instant::now();
    let h = k
        .app
        .apply_async::<Record>(
            "later".into(),
            SendOptions::new().countdown(Duration::from_millis(500)),
        )
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(stats(&k.app, "default").await.delayed, 1);
    h.get(WAIT).await.expect("ran");
    assert!(
        t.elapsed() >= Duration::from_millis(490),
        "{:?}",
        t.elapsed()
    );
    w.shutdown().await;
}

/// Consumers can be added and cancelled on a running worker.
pub async fn consumers_change(b: Backends) {
    let k = kit(&b, Router::new("a").queue(Queue::new("b")));
    let w = test_worker(&k.app)
        .queues(["a"])
        .start()
        .await
        .expect("worker");
    let on_b = k
        .app
        .apply_async::<Record>("on-b".into(), SendOptions::new().queue("b"))
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(on_b.state().await.expect("state"), TaskState::Pending);
    w.add_consumer("b").expect("add");
    assert_eq!(
        on_b.get(WAIT).await.expect("ran once b is consumed"),
        "on-b"
    );
    w.cancel_consumer("a");
    assert_eq!(w.consumers(), ["b"]);
    let on_a = k
        .app
        .apply_async::<Record>("on-a".into(), SendOptions::new().queue("a"))
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(on_a.state().await.expect("state"), TaskState::Pending);
    assert_eq!(stats(&k.app, "a").await.waiting(), 1);
    w.shutdown().await;
}

/// Bulk sending: many tasks in one call, all run.
pub async fn bulk_send(b: Backends) {
    let k = kit(&b, Router::default());
    let hs = k
        .app
        .send_many::<Record>((0..500).map(|i| (format!("b{i}"), SendOptions::new())))
        .await
        .expect("send");
    let w = test_worker(&k.app)
        .concurrency(8)
        .start()
        .await
        .expect("worker");
    for (i, h) in hs.iter().enumerate() {
        assert_eq!(h.get(WAIT).await.expect("ran"), format!("b{i}"));
    }
    assert_eq!(log_of(&k).len(), 500);
    w.shutdown().await;
}
