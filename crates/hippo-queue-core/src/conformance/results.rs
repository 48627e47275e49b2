//! Results: expiry, waiting, `call`, ignored and compressed results.

use super::support::*;

/// Results expire after `result_expires`; the state is PENDING again.
pub async fn result_expiry(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let h = k
        .app
        .apply_async::<Record>(
            "short".into(),
            SendOptions::new().with(TaskOptions::new().result_expires(Duration::from_millis(1000))),
        )
        .await
        .expect("send");
    assert_eq!(h.get(WAIT).await.expect("ran"), "short");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(h.state().await.expect("state"), TaskState::Pending);
    assert!(h.meta().await.expect("meta").is_none());
    let long = k.app.delay::<Record>("long".into()).await.expect("send");
    long.get(WAIT).await.expect("ran");
    long.forget().await.expect("forget");
    assert_eq!(long.state().await.expect("state"), TaskState::Pending);
    w.shutdown().await;
}

/// `get` returns as soon as the result arrives, and times out otherwise.
pub async fn get_waits_and_times_out(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let h = k
        .app
        .delay::<Sleepy>(sleepy(300, false))
        .await
        .expect("send");
    let t = Instant::now();
    assert_eq!(h.get(WAIT).await.expect("result"), 300);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let never = k.app.result::<u64>("never-sent");
    let t = Instant::now();
    let err = never
        .get(Duration::from_millis(200))
        .await
        .expect_err("timeout");
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(t.elapsed() >= Duration::from_millis(190));
    assert_eq!(never.state().await.expect("state"), TaskState::Pending);
    w.shutdown().await;
}

/// `call` sends and waits in one step: the output, the failure of a failed task, a
/// timeout, and a clear refusal for a task that ignores its results.
pub async fn call_round_trip(b: Backends) {
    let k = kit(&b, Router::default());
    // no worker yet: the call times out
    let t = Instant::now();
    let err = k
        .app
        .call::<Record>("early".into(), Duration::from_millis(300))
        .await
        .expect_err("nobody runs it yet");
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(t.elapsed() >= Duration::from_millis(290));

    let w = test_worker(&k.app).start().await.expect("worker");
    for i in 0..20 {
        let label = format!("call-{i}");
        assert_eq!(
            k.app
                .call::<Record>(label.clone(), WAIT)
                .await
                .expect("output"),
            label
        );
    }
    // a delayed call waits for its countdown
    let t = Instant::now();
    let out = k
        .app
        .call_with::<Record>(
            "later".into(),
            SendOptions::new().countdown(Duration::from_millis(300)),
            WAIT,
        )
        .await
        .expect("output");
    assert_eq!(out, "later");
    assert!(t.elapsed() >= Duration::from_millis(290));

    let err = k
        .app
        .call::<Panicker>((), WAIT)
        .await
        .expect_err("it panics");
    match err {
        Error::TaskFailed { state, failure, .. } => {
            assert_eq!(state, TaskState::Failure);
            assert_eq!(failure.kind, kinds::PANIC);
        }
        other => panic!("expected TaskFailed, got {other}"),
    }
    let err = k
        .app
        .call_with::<Record>(
            "quiet".into(),
            SendOptions::new().with(TaskOptions::new().ignore_result(true)),
            WAIT,
        )
        .await
        .expect_err("nothing to wait for");
    assert!(matches!(err, Error::InvalidOptions(_)), "{err}");
    assert!(err.to_string().contains("ignore_result"), "{err}");
    // the early call ran once a worker came; the refused one was never sent
    until("early ran", WAIT, || {
        log_of(&k).contains(&"early".to_string())
    })
    .await;
    assert!(!log_of(&k).contains(&"quiet".to_string()));
    w.shutdown().await;
}

/// `ignore_result` runs the task without storing its result.
pub async fn ignore_result(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let h = k
        .app
        .apply_async::<Record>(
            "quiet".into(),
            SendOptions::new().with(TaskOptions::new().ignore_result(true)),
        )
        .await
        .expect("send");
    until("ran", WAIT, || log_of(&k).len() == 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.state().await.expect("state"), TaskState::Pending);
    w.shutdown().await;
}

/// Large results are stored compressed and read back intact.
pub async fn compressed_result(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app).start().await.expect("worker");
    let h = k.app.delay::<Big>(100_000).await.expect("send");
    let out = h.get(WAIT).await.expect("ran");
    assert_eq!(out.len(), 600_000);
    w.shutdown().await;
}
