//! Remote control: inspect, commands, rate limits, autoscale, input validation.

use super::support::*;

pub(super) async fn call(
    app: &App,
    dest: Option<&[String]>,
    command: Command,
) -> Vec<crate::control::Reply> {
    app.control()
        .call(dest, command, Duration::from_secs(5))
        .await
        .expect("control call")
}

pub(super) fn tasks(body: &ReplyBody) -> Vec<TaskInfo> {
    match body {
        ReplyBody::Tasks(t) => t.clone(),
        other => panic!("expected tasks, got {other:?}"),
    }
}

/// Every inspect command answers from a live worker.
pub async fn control_inspect(b: Backends) {
    let k = kit(&b, Router::default());
    let long = k
        .app
        .delay::<Sleepy>(sleepy(60_000, false))
        .await
        .expect("send");
    let r1 = k.app.delay::<Record>("r1".into()).await.expect("send");
    let r2 = k.app.delay::<Record>("r2".into()).await.expect("send");
    let later = k
        .app
        .apply_async::<Record>(
            "later".into(),
            SendOptions::new().countdown(Duration::from_secs(600)),
        )
        .await
        .expect("send");
    k.app
        .revoke("some-revoked-id", false)
        .await
        .expect("revoke");
    let w = test_worker(&k.app)
        .concurrency(1)
        .prefetch_multiplier(4)
        .start()
        .await
        .expect("worker");
    wait_state(&k.app, long.id(), TaskState::Started, WAIT).await;
    let app = &k.app;
    let pong = call(app, None, Command::Ping).await;
    assert_eq!(pong.len(), 1);
    assert_eq!(pong[0].worker, w.id());
    assert_eq!(pong[0].body, ReplyBody::Pong);
    let reg = call(app, None, Command::Registered).await;
    assert!(
        matches!(&reg[0].body, ReplyBody::Names(n) if n.contains(&"conformance.record".to_string()))
    );
    let active = tasks(&call(app, None, Command::Active).await[0].body);
    assert_eq!(
        active.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        [long.id()]
    );
    assert_eq!(active[0].name, Sleepy::NAME);
    let reserved = tasks(&call(app, None, Command::Reserved).await[0].body);
    let mut ids: Vec<&str> = reserved.iter().map(|t| t.id.as_str()).collect();
    ids.sort();
    let mut want = vec![r1.id(), r2.id()];
    want.sort();
    assert_eq!(ids, want);
    assert!(reserved.iter().all(|t| t.name == Record::NAME));
    let scheduled = tasks(&call(app, None, Command::Scheduled).await[0].body);
    assert_eq!(scheduled.len(), 1);
    assert_eq!(scheduled[0].id, later.id());
    assert!(scheduled[0].time.is_some_and(|t| t > crate::time::now_ms()));
    let revoked = call(app, None, Command::Revoked).await;
    assert!(
        matches!(&revoked[0].body, ReplyBody::Names(n) if n.contains(&"some-revoked-id".to_string()))
    );
    let stats = call(app, None, Command::Stats).await;
    match &stats[0].body {
        ReplyBody::Stats(st) => {
            assert_eq!(st.info.id, w.id());
            assert_eq!(st.info.concurrency, 1);
            assert_eq!(st.info.prefetch_multiplier, 4);
            assert_eq!(st.info.active, 1);
            assert!(st.uptime > 0.0);
        }
        other => panic!("expected stats, got {other:?}"),
    }
    let queues = call(app, None, Command::ActiveQueues).await;
    assert!(
        matches!(&queues[0].body, ReplyBody::Queues(q) if q.len() == 1 && q[0].name == "default")
    );
    let q = call(
        app,
        None,
        Command::QueryTask(vec![long.id().into(), r1.id().into(), "nope".into()]),
    )
    .await;
    match &q[0].body {
        ReplyBody::TaskStates(m) => {
            assert_eq!(m[long.id()], "active");
            assert_eq!(m[r1.id()], "reserved");
            assert_eq!(m["nope"], "unknown");
        }
        other => panic!("expected task states, got {other:?}"),
    }
    // revoke with terminate through the control client
    call(
        app,
        None,
        Command::Revoke {
            id: long.id().into(),
            terminate: true,
        },
    )
    .await;
    assert_eq!(final_meta(app, long.id()).await.state, TaskState::Revoked);
    r1.get(WAIT).await.expect("reserved ones run next");
    let stats = call(app, None, Command::Stats).await;
    match &stats[0].body {
        ReplyBody::Stats(st) => assert!(
            st.succeeded_by_task
                .get(Record::NAME)
                .is_some_and(|n| *n >= 1)
        ),
        other => panic!("expected stats, got {other:?}"),
    }
    w.shutdown().await;
}

/// Control commands change live workers; replies come only from addressed workers.
pub async fn control_commands(b: Backends) {
    let k = kit(&b, Router::new("default").queue(Queue::new("extra")));
    let a = test_worker(&k.app)
        .queues(["default"])
        .concurrency(1)
        .start()
        .await
        .expect("worker a");
    let b2 = test_worker(&k.app)
        .queues(["default"])
        .concurrency(1)
        .start()
        .await
        .expect("worker b");
    let app = &k.app;
    assert_eq!(call(app, None, Command::Ping).await.len(), 2);
    let only_a = vec![a.id().to_string()];
    let r = call(app, Some(&only_a), Command::PoolGrow(2)).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].worker, a.id());
    assert_eq!((a.concurrency(), b2.concurrency()), (3, 1));
    call(app, Some(&only_a), Command::PoolShrink(1)).await;
    assert_eq!(a.concurrency(), 2);
    call(app, Some(&only_a), Command::PoolShrink(10)).await;
    assert_eq!(a.concurrency(), 1, "at least one slot stays");
    // consumers
    call(app, Some(&only_a), Command::AddConsumer("extra".into())).await;
    let x = app
        .apply_async::<Record>("x".into(), SendOptions::new().queue("extra"))
        .await
        .expect("send");
    assert_eq!(x.get(WAIT).await.expect("ran on extra"), "x");
    assert_eq!(a.consumers(), ["default", "extra"]);
    call(app, Some(&only_a), Command::CancelConsumer("extra".into())).await;
    assert_eq!(a.consumers(), ["default"]);
    // time limits
    call(
        app,
        None,
        Command::TimeLimit {
            task: Sleepy::NAME.into(),
            soft: Some(0.1),
            hard: Some(0.3),
        },
    )
    .await;
    let slow = app
        .delay::<Sleepy>(sleepy(30_000, false))
        .await
        .expect("send");
    let m = final_meta(app, slow.id()).await;
    assert_eq!(m.error.expect("error").kind, kinds::TIME_LIMIT);
    let bad = app
        .control()
        .call(
            Some(&only_a),
            Command::TimeLimit {
                task: Sleepy::NAME.into(),
                soft: Some(2.0),
                hard: Some(1.0),
            },
            Duration::from_secs(5),
        )
        .await;
    assert!(matches!(bad, Err(Error::InvalidCommand(_))), "{bad:?}");
    let r = call(app, None, Command::PoolRestart).await;
    assert!(r.iter().all(|r| matches!(r.body, ReplyBody::Ok(_))));
    // remote shutdown
    let r = call(app, Some(&only_a), Command::Shutdown).await;
    assert_eq!(r.len(), 1);
    tokio::time::timeout(WAIT, a.stopped())
        .await
        .expect("worker a stopped");
    assert!(a.is_stopped() && !b2.is_stopped());
    assert_eq!(call(app, None, Command::Ping).await.len(), 1);
    b2.shutdown().await;
}

/// A rate limit holds across two workers.
pub async fn rate_limit_across_workers(b: Backends) {
    let k = kit(&b, Router::default());
    let w1 = test_worker(&k.app)
        .concurrency(4)
        .start()
        .await
        .expect("worker");
    let w2 = test_worker(&k.app)
        .concurrency(4)
        .start()
        .await
        .expect("worker");
    let replies = call(
        &k.app,
        None,
        Command::RateLimit {
            task: Stamp::NAME.into(),
            rate: Some("20/s".parse().expect("rate")),
        },
    )
    .await;
    assert_eq!(replies.len(), 2);
    let hs = k
        .app
        .send_many::<Stamp>((0..41).map(|_| ((), SendOptions::new())))
        .await
        .expect("send");
    for h in &hs {
        h.get(WAIT).await.expect("ran");
    }
    let mut starts = k.attempts.lock().unwrap_or_else(|p| p.into_inner()).clone();
    starts.sort();
    let span = starts[starts.len() - 1] - starts[0];
    let rate = (starts.len() - 1) as f64 / span.as_secs_f64();
    assert!(
        (18.0..=22.0).contains(&rate),
        "measured {rate:.2}/s against a limit of 20/s"
    );
    assert!(
        w1.stats().succeeded > 0 && w2.stats().succeeded > 0,
        "both workers ran tasks"
    );
    let limits = k.app.broker().rate_limits().await.expect("limits");
    assert_eq!(limits.len(), 1);
    w1.shutdown().await;
    w2.shutdown().await;
}

/// Autoscale grows under a backlog and shrinks when idle.
pub async fn autoscale(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app)
        .concurrency(1)
        .prefetch_multiplier(8)
        .start()
        .await
        .expect("worker");
    call(&k.app, None, Command::Autoscale { max: 4, min: 1 }).await;
    let hs = k
        .app
        .send_many::<Sleepy>((0..12).map(|_| (sleepy(400, false), SendOptions::new())))
        .await
        .expect("send");
    until("grown to 4", WAIT, || w.concurrency() == 4).await;
    for h in &hs {
        h.get(WAIT).await.expect("ran");
    }
    until("shrunk to 1", WAIT, || w.concurrency() == 1).await;
    let bad = raw_call(&k.app, Command::Autoscale { max: 1, min: 3 }, 1).await;
    assert!(matches!(bad[0].body, ReplyBody::Error(_)));
    let bad = k
        .app
        .control()
        .call(None, Command::Autoscale { max: 1, min: 3 }, WAIT)
        .await;
    assert!(matches!(bad, Err(Error::InvalidCommand(_))), "{bad:?}");
    w.shutdown().await;
    // with prefetch 1 nothing waits in the worker: the broker's backlog drives it
    let w = test_worker(&k.app)
        .concurrency(1)
        .prefetch_multiplier(1)
        .start()
        .await
        .expect("worker");
    call(&k.app, None, Command::Autoscale { max: 3, min: 1 }).await;
    let hs = k
        .app
        .send_many::<Sleepy>((0..9).map(|_| (sleepy(400, false), SendOptions::new())))
        .await
        .expect("send");
    until("grown to 3 from the broker's backlog", WAIT, || {
        w.concurrency() == 3
    })
    .await;
    for h in &hs {
        h.get(WAIT).await.expect("ran");
    }
    w.shutdown().await;
}

/// Publishes `command` as any client could, past [`crate::control::Control::call`]'s
/// own checks, and gathers the replies of the `expected` workers.
pub(super) async fn raw_call(
    app: &App,
    command: Command,
    expected: usize,
) -> Vec<crate::control::Reply> {
    let request = crate::control::Request {
        id: uuid::Uuid::new_v4().to_string(),
        destination: None,
        command,
        sent_at: crate::time::now_ms(),
    };
    app.broker().broadcast(&request).await.expect("broadcast");
    app.broker()
        .collect_replies(&request.id, expected, Duration::from_secs(5))
        .await
        .expect("collect replies")
}

/// Absurd control values (an infinite time limit, a pool of `usize::MAX` slots) are
/// refused with an error reply, and every worker still answers the next command.
pub async fn control_input_validated(b: Backends) {
    let k = kit(&b, Router::default());
    let w1 = test_worker(&k.app)
        .concurrency(1)
        .start()
        .await
        .expect("w1");
    let w2 = test_worker(&k.app)
        .concurrency(1)
        .start()
        .await
        .expect("w2");
    let app = &k.app;
    let bad = [
        Command::TimeLimit {
            task: Sleepy::NAME.into(),
            soft: Some(10.0),
            hard: Some(f64::INFINITY),
        },
        Command::TimeLimit {
            task: Sleepy::NAME.into(),
            soft: Some(f64::NAN),
            hard: Some(1e30),
        },
        Command::TimeLimit {
            task: Sleepy::NAME.into(),
            soft: Some(-1.0),
            hard: None,
        },
        Command::PoolGrow(usize::MAX),
        Command::Autoscale {
            max: usize::MAX,
            min: 1,
        },
    ];
    for command in bad {
        let name = format!("{command:?}");
        let replies = raw_call(app, command, 2).await;
        assert_eq!(replies.len(), 2, "both workers answer {name}");
        for r in &replies {
            assert!(
                matches!(&r.body, ReplyBody::Error(e) if !e.is_empty()),
                "{name} refused: {:?}",
                r.body
            );
        }
        let pongs = raw_call(app, Command::Ping, 2).await;
        assert_eq!(pongs.len(), 2, "every worker answers Ping after {name}");
    }
    assert_eq!((w1.concurrency(), w2.concurrency()), (1, 1));
    // The client refuses it before sending.
    let refused = app
        .control()
        .call(
            None,
            Command::TimeLimit {
                task: Sleepy::NAME.into(),
                soft: None,
                hard: Some(f64::INFINITY),
            },
            WAIT,
        )
        .await;
    assert!(
        matches!(refused, Err(Error::InvalidCommand(_))),
        "{refused:?}"
    );
    w1.shutdown().await;
    w2.shutdown().await;
}
