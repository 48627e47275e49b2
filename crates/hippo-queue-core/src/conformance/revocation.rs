//! Revocation: before start, durable, incremental, terminate, expiry.

use super::support::*;

/// A task revoked before it starts never runs and is REVOKED.
pub async fn revoke_before_start(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let h = k
        .app
        .apply_async::<Sleepy>(
            sleepy(1, false),
            SendOptions::new().countdown(Duration::from_millis(400)),
        )
        .await
        .expect("send");
    h.revoke(false).await.expect("revoke");
    let m = final_meta(&k.app, h.id()).await;
    assert_eq!(m.state, TaskState::Revoked);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        k.runs.load(Ordering::SeqCst),
        0,
        "a revoked task must not run"
    );
    assert_eq!(stats(&k.app, "default").await.delayed, 0);
    w.shutdown().await;
}

/// Revocations survive until workers that start later see them.
pub async fn revocation_is_durable(b: Backends) {
    let k = kit(&b, Router::default());
    let h = k.app.delay::<Sleepy>(sleepy(1, false)).await.expect("send");
    k.app.revoke(h.id(), false).await.expect("revoke");
    // no worker was running; one starts now
    let w = test_worker(&k.app).start().await.expect("worker");
    let deadline = Instant::now() + WAIT;
    while stats(&k.app, "default").await.waiting() > 0 {
        assert!(Instant::now() < deadline, "message not consumed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(k.runs.load(Ordering::SeqCst), 0);
    assert_eq!(state(&k.app, h.id()).await, TaskState::Revoked);
    let revs = k.app.broker().revocations().await.expect("revocations");
    assert!(revs.iter().any(|r| r.id == h.id()));
    w.shutdown().await;
}

/// `revocations_after` returns what was revoked after a cursor, in order, in bounded
/// reads.
pub async fn revocations_read_incrementally(b: Backends) {
    let broker = b.broker.clone();
    let rev = |id: &str| Revocation {
        id: id.to_string(),
        terminate: id.ends_with('t'),
        until: crate::time::now_ms() + 60_000,
    };
    broker.revoke(rev("before")).await.expect("revoke");
    let (none, start) = broker.revocations_after(None, 10).await.expect("cursor");
    assert!(none.is_empty(), "no cursor reads nothing: {none:?}");
    for id in ["a", "b-t", "c"] {
        broker.revoke(rev(id)).await.expect("revoke");
    }
    let (first, next) = broker
        .revocations_after(Some(&start), 2)
        .await
        .expect("read");
    assert_eq!(
        first.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["a", "b-t"]
    );
    assert!(first[1].terminate);
    let (rest, end) = broker
        .revocations_after(Some(&next), 10)
        .await
        .expect("read");
    assert_eq!(
        rest.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["c"]
    );
    let (empty, same) = broker
        .revocations_after(Some(&end), 10)
        .await
        .expect("read");
    assert!(empty.is_empty());
    assert_eq!(same, end, "an empty read keeps the cursor");
}

/// `revoke(terminate)` aborts a running task: REVOKED, and the worker goes on.
pub async fn revoke_running_with_terminate(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let h = k
        .app
        .delay::<Sleepy>(sleepy(60_000, false))
        .await
        .expect("send");
    wait_state(&k.app, h.id(), TaskState::Started, WAIT).await;
    assert_eq!(w.active().len(), 1);
    let t = Instant::now();
    h.revoke(true).await.expect("revoke");
    let m = final_meta(&k.app, h.id()).await;
    assert_eq!(m.state, TaskState::Revoked);
    until("the task left the worker", Duration::from_secs(5), || {
        w.active().is_empty()
    })
    .await;
    assert!(t.elapsed() < Duration::from_secs(5));
    let next = k.app.delay::<Record>("next".into()).await.expect("send");
    assert_eq!(next.get(WAIT).await.expect("ran"), "next");
    assert_eq!(w.stats().revoked, 1);
    w.shutdown().await;
}

/// A task that expires before it starts is REVOKED and never runs.
pub async fn expired_task_is_revoked(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let h = k
        .app
        .apply_async::<Sleepy>(
            sleepy(1, false),
            SendOptions::new()
                .countdown(Duration::from_millis(300))
                .expires_in(Duration::from_millis(100)),
        )
        .await
        .expect("send");
    let m = final_meta(&k.app, h.id()).await;
    assert_eq!(m.state, TaskState::Revoked);
    assert_eq!(m.error.expect("error").kind, kinds::EXPIRED);
    assert_eq!(k.runs.load(Ordering::SeqCst), 0);
    w.shutdown().await;
}

/// A revoke without `terminate` does not stop a running task, which keeps its result
/// (as in Celery).
pub async fn revoke_running_keeps_result(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let h = k
        .app
        .delay::<Sleepy>(sleepy(300, false))
        .await
        .expect("send");
    wait_state(&k.app, h.id(), TaskState::Started, WAIT).await;
    h.revoke(false).await.expect("revoke");
    assert_eq!(h.get(WAIT).await.expect("finished"), 300);
    w.shutdown().await;
}
