//! Events and the worker registry.

use super::support::*;

/// Workers register and publish worker events; task events are published when enabled
/// and can be read from a cursor.
pub async fn events_and_registry(b: Backends) {
    let app = App::builder()
        .broker(b.broker.clone())
        .backend(b.results.clone())
        .task_events(true)
        .build();
    let log: Log = Arc::default();
    app.register(Record(log.clone()));
    let w = test_worker(&app)
        .task_events(true)
        .start()
        .await
        .expect("worker");
    let h = app.delay::<Record>("evt".into()).await.expect("send");
    h.get(WAIT).await.expect("ran");
    let broker = app.broker().clone();
    let workers = broker.workers().await.expect("workers");
    let me = workers.iter().find(|i| i.id == w.id()).expect("registered");
    assert_eq!(me.queues, ["default"]);
    assert!(me.pid > 0 && !me.hostname.is_empty());
    let want = [
        EventKind::TaskSent,
        EventKind::TaskReceived,
        EventKind::TaskStarted,
        EventKind::TaskSucceeded,
    ];
    let deadline = Instant::now() + WAIT;
    let mut seen: Vec<EventKind>;
    loop {
        let events = broker.events(None, 10_000).await.expect("events");
        seen = events
            .iter()
            .filter(|(_, e)| e.task_id.as_deref() == Some(h.id()))
            .map(|(_, e)| e.kind)
            .collect();
        let online = events
            .iter()
            .any(|(_, e)| e.kind == EventKind::WorkerOnline && e.worker.as_deref() == Some(w.id()));
        if online && want.iter().all(|k| seen.contains(k)) {
            break;
        }
        assert!(Instant::now() < deadline, "events missing: {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let succeeded = broker
        .events(None, 10_000)
        .await
        .expect("events")
        .into_iter()
        .find(|(_, e)| e.kind == EventKind::TaskSucceeded && e.task_id.as_deref() == Some(h.id()))
        .expect("succeeded event");
    assert!(succeeded.1.runtime.is_some());
    // a cursor returns only what came after it
    let after = broker
        .events(Some(&succeeded.0), 10_000)
        .await
        .expect("events");
    assert!(after.iter().all(|(id, _)| *id != succeeded.0));
    // a task revoked before it starts publishes task-revoked
    let skipped = app
        .apply_async::<Record>(
            "skip".into(),
            SendOptions::new().countdown(Duration::from_millis(300)),
        )
        .await
        .expect("send");
    app.revoke(skipped.id(), false).await.expect("revoke");
    assert_eq!(
        final_meta(&app, skipped.id()).await.state,
        TaskState::Revoked
    );
    let deadline = Instant::now() + WAIT;
    while !broker
        .events(Some(&succeeded.0), 10_000)
        .await
        .expect("events")
        .iter()
        .any(|(_, e)| {
            e.kind == EventKind::TaskRevoked && e.task_id.as_deref() == Some(skipped.id())
        })
    {
        assert!(Instant::now() < deadline, "no task-revoked event");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let id = w.id().to_string();
    w.shutdown().await;
    assert!(
        !broker
            .workers()
            .await
            .expect("workers")
            .iter()
            .any(|i| i.id == id)
    );
    let events = broker
        .events(Some(&succeeded.0), 10_000)
        .await
        .expect("events");
    assert!(events.iter().any(
        |(_, e)| e.kind == EventKind::WorkerOffline && e.worker.as_deref() == Some(id.as_str())
    ));
}
