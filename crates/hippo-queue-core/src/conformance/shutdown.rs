//! Graceful shutdown.

use super::support::*;

/// Graceful shutdown lets running tasks finish and hands reserved ones back.
pub async fn graceful_shutdown(b: Backends) {
    let k = kit(&b, Router::default());
    let long = k
        .app
        .delay::<Sleepy>(sleepy(400, false))
        .await
        .expect("send");
    for i in 0..3 {
        k.app.delay::<Record>(format!("r{i}")).await.expect("send");
    }
    let w = test_worker(&k.app)
        .concurrency(1)
        .prefetch_multiplier(4)
        .start()
        .await
        .expect("worker");
    wait_state(&k.app, long.id(), TaskState::Started, WAIT).await;
    let report = w.shutdown().await;
    assert_eq!(report.released, 3);
    assert_eq!(report.aborted, 0);
    assert_eq!(state(&k.app, long.id()).await, TaskState::Success);
    let s = stats(&k.app, "default").await;
    assert_eq!((s.waiting(), s.reserved), (3, 0), "{s:?}");
    assert!(log_of(&k).is_empty());
}

/// When the grace period runs out, an `acks_late` task is requeued, others FAILURE.
pub async fn shutdown_grace_expires(b: Backends) {
    let k = kit(&b, Router::default());
    let late = k
        .app
        .apply_async::<Sleepy>(
            sleepy(60_000, false),
            SendOptions::new().with(TaskOptions::new().acks_late(true)),
        )
        .await
        .expect("send");
    let early = k
        .app
        .delay::<Sleepy>(sleepy(60_000, false))
        .await
        .expect("send");
    let w = test_worker(&k.app)
        .concurrency(2)
        .start()
        .await
        .expect("worker");
    wait_state(&k.app, late.id(), TaskState::Started, WAIT).await;
    wait_state(&k.app, early.id(), TaskState::Started, WAIT).await;
    let report = w.shutdown_within(Duration::from_millis(200)).await;
    assert_eq!(report.aborted, 2);
    let s = stats(&k.app, "default").await;
    assert_eq!(
        (s.waiting(), s.reserved),
        (1, 0),
        "acks_late task requeued: {s:?}"
    );
    let m = final_meta(&k.app, early.id()).await;
    assert_eq!(m.error.expect("error").kind, kinds::WORKER_SHUTDOWN);
    // the solo pool honours the grace period too
    k.app.broker().purge("default").await.expect("purge");
    let solo = test_worker(&k.app)
        .pool(crate::Pool::Solo)
        .start()
        .await
        .expect("worker");
    let long = k
        .app
        .delay::<Sleepy>(sleepy(60_000, false))
        .await
        .expect("send");
    wait_state(&k.app, long.id(), TaskState::Started, WAIT).await;
    let t = Instant::now();
    let report = solo.shutdown_within(Duration::from_millis(200)).await;
    assert_eq!(report.aborted, 1);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}
