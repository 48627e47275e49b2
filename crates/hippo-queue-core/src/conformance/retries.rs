//! Retries: counts, backoff in the broker, autoretry, the delivery limit.

use super::support::*;

/// Autoretry runs `max_retries + 1` times with exponential backoff within bounds, then
/// fails with the chain of causes.
pub async fn retry_count_and_backoff(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let opts = TaskOptions::new()
        .autoretry_for_kind("flaky")
        .max_retries(3)
        .retry_backoff(Duration::from_millis(100))
        .retry_backoff_max(Duration::from_millis(250))
        .retry_jitter(false);
    let h = k
        .app
        .apply_async::<Flaky>(
            FlakyArgs {
                kind: "flaky".into(),
                fail_times: 100,
                explicit_retry_ms: None,
            },
            SendOptions::new().with(opts),
        )
        .await
        .expect("send");
    let m = final_meta(&k.app, h.id()).await;
    w.shutdown().await;
    assert_eq!(m.state, TaskState::Failure);
    assert_eq!(m.retries, 3);
    let err = m.error.expect("error recorded");
    assert_eq!(err.kind, "flaky");
    assert!(
        err.chain.iter().any(|c| c.contains("upstream said no")),
        "{err:?}"
    );
    assert!(
        err.chain.iter().any(|c| c.contains("retries exhausted")),
        "{err:?}"
    );
    let attempts = k.attempts.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(attempts.len(), 4, "one run plus three retries");
    let bounds = [100u64, 200, 250];
    for (i, pair) in attempts.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        let want = Duration::from_millis(bounds[i]);
        assert!(
            gap + Duration::from_millis(15) >= want,
            "retry {i} too early: {gap:?} < {want:?}"
        );
        assert!(
            gap <= want + Duration::from_millis(1500),
            "retry {i} too late: {gap:?}"
        );
    }
    // the typed handle reports the failure with its traceback
    let got = h
        .get(Duration::from_secs(1))
        .await
        .expect_err("failed task");
    assert!(
        matches!(
            got,
            Error::TaskFailed {
                state: TaskState::Failure,
                ..
            }
        ),
        "{got}"
    );
    assert!(
        h.traceback()
            .await
            .expect("tb")
            .expect("some")
            .contains("caused by")
    );
}

/// A retry waits in the broker's delayed set, not in worker memory.
pub async fn retry_waits_in_broker(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let h = k
        .app
        .delay::<Flaky>(FlakyArgs {
            kind: "transient".into(),
            fail_times: 1,
            explicit_retry_ms: Some(1500),
        })
        .await
        .expect("send");
    wait_state(&k.app, h.id(), TaskState::Retry, WAIT).await;
    // give the settle a moment to land, then look at the broker
    tokio::time::sleep(Duration::from_millis(200)).await;
    let s = stats(&k.app, "default").await;
    assert_eq!((s.delayed, s.reserved, s.waiting()), (1, 0, 0), "{s:?}");
    assert_eq!(w.stats().in_flight, 0);
    assert_eq!(h.get(WAIT).await.expect("succeeds on retry"), 1);
    w.shutdown().await;
}

/// Only the chosen error kinds are retried automatically; an explicit retry request is
/// always honoured.
pub async fn autoretry_only_chosen_kinds(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let opts = TaskOptions::new()
        .autoretry_for_kind("transient")
        .retry_backoff(Duration::from_millis(10))
        .retry_backoff_max(Duration::from_millis(20));
    let send = |kind: &str, explicit: Option<u64>| {
        let app = k.app.clone();
        let opts = opts.clone();
        let kind = kind.to_string();
        async move {
            app.apply_async::<Flaky>(
                FlakyArgs {
                    kind,
                    fail_times: 1,
                    explicit_retry_ms: explicit,
                },
                SendOptions::new().with(opts),
            )
            .await
            .expect("send")
        }
    };
    let retried = send("transient", None).await;
    let not_retried = send("fatal", None).await;
    let explicit = send("fatal", Some(10)).await;
    assert_eq!(retried.get(WAIT).await.expect("retried"), 1);
    assert_eq!(explicit.get(WAIT).await.expect("explicit retry"), 1);
    let m = final_meta(&k.app, not_retried.id()).await;
    assert_eq!((m.state, m.retries), (TaskState::Failure, 0));
    w.shutdown().await;
}

/// Sends an `acks_late` + `reject_on_worker_lost` message and loses its worker three
/// times: the third recovery dead-letters it. Returns its id.
async fn lose_until_dead(app: &App) -> String {
    let broker = app.broker().clone();
    let id = raw_send(
        app,
        TaskOptions::new()
            .acks_late(true)
            .reject_on_worker_lost(true),
    )
    .await;
    let q = vec!["default".to_string()];
    for round in 0..3 {
        let worker = format!("doomed-{round}");
        broker
            .heartbeat(
                &worker,
                "test-incarnation",
                Duration::from_millis(100),
                Duration::from_millis(100) / 2,
            )
            .await
            .expect("beat");
        let d = broker
            .fetch(&worker, &q, 1, Duration::from_secs(1))
            .await
            .expect("fetch");
        assert_eq!(d.len(), 1, "round {round}");
        broker
            .start(&worker, &[d[0].to_ref()])
            .await
            .expect("start");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let rec = broker.recover(3).await.expect("recover");
        let want = if round < 2 {
            RecoveryOutcome::Requeued
        } else {
            RecoveryOutcome::TooManyDeliveries
        };
        assert_eq!(
            rec.iter().map(|r| r.outcome).collect::<Vec<_>>(),
            [want],
            "round {round}"
        );
    }
    id
}

/// A message whose workers keep dying is dead-lettered after `max_deliveries`.
pub async fn too_many_deliveries(b: Backends) {
    let k = kit(&b, Router::default());
    let id = lose_until_dead(&k.app).await;
    let broker = k.app.broker().clone();
    let dead = broker.dead_letters("default", 10).await.expect("dead");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, id);
}

/// Dead letters chosen by id go back to their queue with their delivery count reset;
/// the others stay.
pub async fn dead_letters_requeued(b: Backends) {
    let k = kit(&b, Router::default());
    let first = lose_until_dead(&k.app).await;
    let second = lose_until_dead(&k.app).await;
    let broker = k.app.broker().clone();
    let none = broker
        .requeue_dead_letters("default", &["no-such-id".to_string()])
        .await
        .expect("requeue nothing");
    assert!(none.is_empty());
    let back = broker
        .requeue_dead_letters("default", std::slice::from_ref(&first))
        .await
        .expect("requeue");
    assert_eq!(back, std::slice::from_ref(&first));
    let dead = broker.dead_letters("default", 10).await.expect("dead");
    assert_eq!(
        dead.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        [second.as_str()]
    );
    let q = vec!["default".to_string()];
    let d = broker
        .fetch("rescuer", &q, 10, Duration::from_secs(1))
        .await
        .expect("fetch");
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].id, first);
    assert_eq!(d[0].deliveries, 1, "the delivery count starts again");
}
