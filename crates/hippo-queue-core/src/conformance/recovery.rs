//! Recovery: dead and killed workers, fencing, worker names, lost fetch replies.

use super::support::*;

/// A worker name held by a live worker is refused; the leases of a dead holder are
/// recovered before a new worker with its name starts; `leases` lists what the
/// backend holds for a worker.
pub async fn worker_names_and_leases(b: Backends) {
    let k = kit(&b, Router::default());
    let broker = k.app.broker().clone();
    let q = vec!["default".to_string()];
    let h = raw_send(
        &k.app,
        TaskOptions::new()
            .acks_late(true)
            .reject_on_worker_lost(true),
    )
    .await;
    assert_eq!(broker.worker_lease("w-dead").await.expect("lease"), None);
    broker
        .heartbeat(
            "w-dead",
            "test-incarnation",
            Duration::from_millis(300),
            Duration::from_millis(100),
        )
        .await
        .expect("beat");
    let d = broker
        .fetch("w-dead", &q, 1, Duration::from_secs(1))
        .await
        .expect("fetch");
    assert_eq!(d.len(), 1);
    let leases = broker.leases("w-dead", &q).await.expect("leases");
    assert_eq!(
        leases.iter().map(|l| l.token).collect::<Vec<_>>(),
        [d[0].token]
    );
    assert!(
        broker
            .worker_lease("w-dead")
            .await
            .expect("lease")
            .is_some_and(|l| !l.is_zero())
    );
    // alive: a second worker with its name waits for the lease, sees it renewed, and
    // is refused
    let beating = {
        let broker = broker.clone();
        tokio::spawn(async move {
            for _ in 0..8 {
                let _ = broker
                    .heartbeat(
                        "w-dead",
                        "test-incarnation",
                        Duration::from_millis(300),
                        Duration::from_millis(100),
                    )
                    .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let refused = test_worker(&k.app).name("w-dead").start().await;
    assert!(refused.is_err(), "a live name must be refused");
    let _ = beating.await;
    // dead: its lease is recovered first, and the task runs on the new worker
    tokio::time::sleep(Duration::from_millis(400)).await;
    let w = test_worker(&k.app)
        .name("w-dead")
        .start()
        .await
        .expect("a dead name is taken over");
    wait_state(&k.app, &h, TaskState::Success, WAIT).await;
    w.shutdown().await;
}

/// Two processes started at the same moment under one name: the claim is atomic, so
/// exactly one starts and the other is refused; once the first has gone, the name is
/// free again.
pub async fn one_name_started_twice_at_once(b: Backends) {
    let k = kit(&b, Router::default());
    for round in 0..5 {
        let (a, b) = tokio::join!(
            test_worker(&k.app).name("twin").start(),
            test_worker(&k.app).name("twin").start()
        );
        let started: Vec<_> = [a, b].into_iter().filter_map(Result::ok).collect();
        assert_eq!(
            started.len(),
            1,
            "round {round}: {} workers started under one name",
            started.len()
        );
        for w in started {
            w.shutdown().await;
        }
    }
}

/// Messages leased to a live worker whose fetch reply never reached it (here: a fetch
/// made under its name from outside) are handed back by the worker's reconciliation
/// and run, within about `worker_lost_after`.
pub async fn lost_fetch_reply_reconciled(b: Backends) {
    let k = kit(&b, Router::default());
    let w = test_worker(&k.app)
        .name("w-reconcile")
        .queues(["other"])
        .start()
        .await
        .expect("worker");
    let h = k.app.delay::<Sleepy>(sleepy(1, false)).await.expect("send");
    // The worker does not consume `default` yet: the lease is made for it, as by a
    // fetch whose reply was lost.
    let q = vec!["default".to_string()];
    let lost = k
        .app
        .broker()
        .fetch("w-reconcile", &q, 10, Duration::from_secs(1))
        .await
        .expect("fetch");
    assert_eq!(lost.len(), 1);
    w.add_consumer("default").expect("consume default");
    let t = Instant::now();
    wait_state(&k.app, h.id(), TaskState::Success, Duration::from_secs(5)).await;
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "the lost lease was handed back only after {:?}",
        t.elapsed()
    );
    assert_eq!(k.runs.load(Ordering::SeqCst), 1);
    w.shutdown().await;
}

/// Recovery of a dead worker: reserved messages always requeued; started ones requeued
/// with `acks_late` + `reject_on_worker_lost`, dead-lettered as worker-lost otherwise.
pub async fn lost_worker_recovery(b: Backends) {
    let k = kit(&b, Router::default());
    let broker = k.app.broker().clone();
    let both = raw_send(
        &k.app,
        TaskOptions::new()
            .acks_late(true)
            .reject_on_worker_lost(true),
    )
    .await;
    let late_only = raw_send(
        &k.app,
        TaskOptions::new()
            .acks_late(true)
            .reject_on_worker_lost(false),
    )
    .await;
    let early = raw_send(&k.app, TaskOptions::new().acks_late(false)).await;
    let unstarted = raw_send(&k.app, TaskOptions::new().acks_late(false)).await;
    broker
        .heartbeat(
            "ghost",
            "test-incarnation",
            Duration::from_millis(200),
            Duration::from_millis(200) / 2,
        )
        .await
        .expect("beat");
    let ds = broker
        .fetch(
            "ghost",
            &["default".to_string()],
            10,
            Duration::from_secs(1),
        )
        .await
        .expect("fetch");
    assert_eq!(ds.len(), 4);
    let started: Vec<_> = ds
        .iter()
        .filter(|d| d.id != unstarted)
        .map(|d| d.to_ref())
        .collect();
    let outcomes = broker.start("ghost", &started).await.expect("start");
    assert!(outcomes.iter().all(|o| *o == SettleOutcome::Done));
    // still alive: nothing is recovered
    assert!(broker.recover(5).await.expect("recover").is_empty());
    tokio::time::sleep(Duration::from_millis(350)).await;
    let rec = broker.recover(5).await.expect("recover");
    let outcome = |id: &str| rec.iter().find(|r| r.id == id).map(|r| r.outcome);
    assert_eq!(rec.len(), 4, "{rec:?}");
    assert_eq!(outcome(&both), Some(RecoveryOutcome::Requeued));
    assert_eq!(outcome(&unstarted), Some(RecoveryOutcome::Requeued));
    assert_eq!(outcome(&late_only), Some(RecoveryOutcome::WorkerLost));
    assert_eq!(outcome(&early), Some(RecoveryOutcome::WorkerLost));
    let s = stats(&k.app, "default").await;
    assert_eq!((s.waiting(), s.reserved, s.dead_letter), (2, 0, 2), "{s:?}");
    let dead = broker
        .dead_letters("default", 10)
        .await
        .expect("dead letters");
    assert_eq!(dead.len(), 2);
    // the requeued ones complete on a live worker
    let w = test_worker(&k.app).start().await.expect("worker");
    assert_eq!(final_meta(&k.app, &both).await.state, TaskState::Success);
    assert_eq!(
        final_meta(&k.app, &unstarted).await.state,
        TaskState::Success
    );
    w.shutdown().await;
}

/// A worker killed mid-task: with `acks_late` + `reject_on_worker_lost` another worker
/// runs the task again and it completes; reserved messages are not lost.
pub async fn killed_worker_acks_late(b: Backends) {
    let k = kit(&b, Router::default());
    let opts = TaskOptions::new()
        .acks_late(true)
        .reject_on_worker_lost(true);
    let long = k
        .app
        .apply_async::<Sleepy>(sleepy(600, false), SendOptions::new().with(opts.clone()))
        .await
        .expect("send");
    let mut queued = Vec::new();
    for i in 0..5 {
        queued.push(
            k.app
                .apply_async::<Record>(format!("q{i}"), SendOptions::new().with(opts.clone()))
                .await
                .expect("send"),
        );
    }
    let a = test_worker(&k.app)
        .concurrency(1)
        .prefetch_multiplier(8)
        .start()
        .await
        .expect("worker a");
    wait_state(&k.app, long.id(), TaskState::Started, WAIT).await;
    // STARTED is stored alongside the start mark, a moment before the task runs.
    wait_runs(&k.runs, 1).await;
    assert_eq!(
        stats(&k.app, "default").await.reserved,
        6,
        "all reserved by a"
    );
    a.kill();
    let b2 = test_worker(&k.app).start().await.expect("worker b");
    assert_eq!(long.get(WAIT).await.expect("completed after recovery"), 600);
    for q in &queued {
        q.get(WAIT).await.expect("reserved message completed");
    }
    assert_eq!(k.runs.load(Ordering::SeqCst), 2, "ran once on each worker");
    b2.shutdown().await;
}

/// A worker killed mid-task without `acks_late`: the running task ends FAILURE
/// (worker lost), the reserved ones still run.
pub async fn killed_worker_early_ack(b: Backends) {
    let k = kit(&b, Router::default());
    let long = k
        .app
        .delay::<Sleepy>(sleepy(60_000, false))
        .await
        .expect("send");
    let queued = k.app.delay::<Record>("q".into()).await.expect("send");
    let a = test_worker(&k.app)
        .concurrency(1)
        .prefetch_multiplier(4)
        .start()
        .await
        .expect("worker a");
    wait_state(&k.app, long.id(), TaskState::Started, WAIT).await;
    // STARTED is stored alongside the start mark, a moment before the task runs.
    wait_runs(&k.runs, 1).await;
    a.kill();
    let b2 = test_worker(&k.app).start().await.expect("worker b");
    let m = final_meta(&k.app, long.id()).await;
    assert_eq!(m.state, TaskState::Failure);
    assert_eq!(m.error.expect("error").kind, kinds::WORKER_LOST);
    assert_eq!(queued.get(WAIT).await.expect("reserved one ran"), "q");
    assert_eq!(k.runs.load(Ordering::SeqCst), 1, "not run twice");
    b2.shutdown().await;
}

/// A stale worker's ack and result are refused once its message was recovered and
/// handed to another worker.
pub async fn fencing(b: Backends) {
    let k = kit(&b, Router::default());
    let broker = k.app.broker().clone();
    let id = raw_send(
        &k.app,
        TaskOptions::new()
            .acks_late(true)
            .reject_on_worker_lost(true),
    )
    .await;
    let q = vec!["default".to_string()];
    broker
        .heartbeat(
            "stale",
            "test-incarnation",
            Duration::from_millis(150),
            Duration::from_millis(150) / 2,
        )
        .await
        .expect("beat");
    let old = broker
        .fetch("stale", &q, 1, Duration::from_secs(1))
        .await
        .expect("fetch")
        .remove(0);
    broker.start("stale", &[old.to_ref()]).await.expect("start");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rec = broker.recover(5).await.expect("recover");
    assert_eq!(rec.len(), 1);
    broker
        .heartbeat(
            "fresh",
            "test-incarnation",
            Duration::from_secs(30),
            Duration::from_secs(30) / 2,
        )
        .await
        .expect("beat");
    let new = broker
        .fetch("fresh", &q, 1, Duration::from_secs(1))
        .await
        .expect("fetch")
        .remove(0);
    assert_eq!(new.id, id);
    assert!(new.token > old.token, "tokens grow with each delivery");
    assert_eq!(new.deliveries, 2);
    let write = |state: TaskState, token: u64| {
        let mut m = TaskMeta::new(&id, "conformance.record", state);
        m.fence = Some(token);
        ResultWrite {
            meta: m,
            ttl: Duration::from_secs(60),
            compress: false,
            announce: false,
        }
    };
    let results = k.app.backend().clone();
    assert_eq!(
        results
            .store(&[write(TaskState::Started, new.token)])
            .await
            .expect("store"),
        [WriteOutcome::Stored]
    );
    // the stale worker finishes now: both its result and its ack are refused
    assert_eq!(
        results
            .store(&[write(TaskState::Success, old.token)])
            .await
            .expect("store"),
        [WriteOutcome::Refused]
    );
    let ack = |d: &crate::backend::Delivery| Settlement {
        delivery: d.to_ref(),
        action: Settle::Ack,
    };
    assert_eq!(
        broker.settle("stale", &[ack(&old)]).await.expect("settle"),
        [SettleOutcome::Fenced]
    );
    assert_eq!(
        broker.start("stale", &[old.to_ref()]).await.expect("start"),
        [SettleOutcome::Fenced]
    );
    // the fresh worker's writes go through
    assert_eq!(
        results
            .store(&[write(TaskState::Success, new.token)])
            .await
            .expect("store"),
        [WriteOutcome::Stored]
    );
    assert_eq!(
        broker.settle("fresh", &[ack(&new)]).await.expect("settle"),
        [SettleOutcome::Done]
    );
    // a final record is never replaced
    assert_eq!(
        results
            .store(&[write(TaskState::Failure, new.token + 100)])
            .await
            .expect("store"),
        [WriteOutcome::Refused]
    );
    assert_eq!(state(&k.app, &id).await, TaskState::Success);
    let s = stats(&k.app, "default").await;
    assert_eq!((s.waiting(), s.reserved, s.delayed), (0, 0, 0));
}

/// A message redelivered after its task already finished is acked without running
/// again.
pub async fn redelivered_finished_not_rerun(b: Backends) {
    let k = kit(&b, Router::default());
    let broker = k.app.broker().clone();
    let h = k
        .app
        .apply_async::<Sleepy>(
            sleepy(1, false),
            SendOptions::new().with(
                TaskOptions::new()
                    .acks_late(true)
                    .reject_on_worker_lost(true),
            ),
        )
        .await
        .expect("send");
    broker
        .heartbeat(
            "finisher",
            "test-incarnation",
            Duration::from_millis(150),
            Duration::from_millis(150) / 2,
        )
        .await
        .expect("beat");
    let q = vec!["default".to_string()];
    let d = broker
        .fetch("finisher", &q, 1, Duration::from_secs(1))
        .await
        .expect("fetch")
        .remove(0);
    // it finished and stored its result, then died before acking
    let mut m = TaskMeta::new(h.id(), Sleepy::NAME, TaskState::Success);
    m.result = Some(crate::codec::to_msgpack(&1u64).expect("encode"));
    m.fence = Some(d.token);
    k.app
        .backend()
        .store(&[ResultWrite {
            meta: m,
            ttl: Duration::from_secs(60),
            compress: false,
            announce: false,
        }])
        .await
        .expect("store");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let w = test_worker(&k.app).start().await.expect("worker");
    let deadline = Instant::now() + WAIT;
    loop {
        let s = stats(&k.app, "default").await;
        if s.waiting() == 0 && s.reserved == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "not consumed: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(k.runs.load(Ordering::SeqCst), 0, "not run again");
    assert_eq!(h.get(WAIT).await.expect("result kept"), 1);
    w.shutdown().await;
}
