//! Running a task: time limits, panics, pools.

use super::support::*;

/// The soft limit is signalled first; a task that ignores it is aborted at the hard
/// limit and marked FAILURE.
pub async fn soft_then_hard_limit(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let opts = TaskOptions::new()
        .soft_time_limit(Duration::from_millis(150))
        .time_limit(Duration::from_millis(500));
    let sent = Instant::now();
    let h = k
        .app
        .apply_async::<Sleepy>(sleepy(30_000, false), SendOptions::new().with(opts))
        .await
        .expect("send");
    let m = final_meta(&k.app, h.id()).await;
    let took = sent.elapsed();
    assert_eq!(m.state, TaskState::Failure);
    assert_eq!(m.error.expect("error").kind, kinds::TIME_LIMIT);
    assert_eq!(
        k.soft_seen.load(Ordering::SeqCst),
        1,
        "soft limit was signalled"
    );
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // the slot was freed: the worker still runs tasks
    let next = k.app.delay::<Record>("after".into()).await.expect("send");
    assert_eq!(next.get(WAIT).await.expect("ran"), "after");
    // hard must exceed soft
    let bad = TaskOptions::new()
        .soft_time_limit(Duration::from_secs(3600))
        .time_limit(Duration::from_secs(600));
    let err = k
        .app
        .apply_async::<Sleepy>(sleepy(1, false), SendOptions::new().with(bad))
        .await
        .expect_err("hard below soft is refused");
    assert!(err.to_string().contains("must be above"), "{err}");
    w.shutdown().await;
}

/// A task may clean up at the soft limit and fail with a soft-limit error.
pub async fn soft_limit_cleanup(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let opts = TaskOptions::new()
        .soft_time_limit(Duration::from_millis(100))
        .time_limit(Duration::from_secs(20));
    let sent = Instant::now();
    let h = k
        .app
        .apply_async::<Sleepy>(sleepy(30_000, true), SendOptions::new().with(opts))
        .await
        .expect("send");
    let m = final_meta(&k.app, h.id()).await;
    assert_eq!(m.state, TaskState::Failure);
    assert_eq!(m.error.expect("error").kind, kinds::SOFT_TIME_LIMIT);
    assert!(sent.elapsed() < Duration::from_secs(5));
    w.shutdown().await;
}

/// A panic is a FAILURE, not a crash.
pub async fn panic_is_failure(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let h = k.app.delay::<Panicker>(()).await.expect("send");
    let m = final_meta(&k.app, h.id()).await;
    assert_eq!(m.state, TaskState::Failure);
    let e = m.error.expect("error");
    assert_eq!(e.kind, kinds::PANIC);
    assert!(e.message.contains("deliberate panic"), "{e:?}");
    let next = k.app.delay::<Record>("alive".into()).await.expect("send");
    assert_eq!(next.get(WAIT).await.expect("ran"), "alive");
    w.shutdown().await;
}

/// The blocking and solo pools run tasks with the same semantics.
pub async fn blocking_and_solo_pools(b: Backends) {
    for pool in [crate::Pool::Blocking, crate::Pool::Solo] {
        let k = kit(&b, Router::default());
        let w = test_worker(&k.app)
            .pool(pool)
            .concurrency(2)
            .start()
            .await
            .expect("worker");
        let ok = k
            .app
            .delay::<Record>(format!("{pool:?}"))
            .await
            .expect("send");
        assert_eq!(ok.get(WAIT).await.expect("ran"), format!("{pool:?}"));
        let p = k.app.delay::<Panicker>(()).await.expect("send");
        assert_eq!(final_meta(&k.app, p.id()).await.state, TaskState::Failure);
        let limited = k
            .app
            .apply_async::<Sleepy>(
                sleepy(30_000, false),
                SendOptions::new().with(
                    TaskOptions::new()
                        .soft_time_limit(Duration::from_millis(100))
                        .time_limit(Duration::from_millis(300)),
                ),
            )
            .await
            .expect("send");
        let m = final_meta(&k.app, limited.id()).await;
        assert_eq!(m.error.expect("error").kind, kinds::TIME_LIMIT, "{pool:?}");
        let after = k.app.delay::<Record>("after".into()).await.expect("send");
        after.get(WAIT).await.expect("slot freed");
        w.shutdown().await;
    }
}
