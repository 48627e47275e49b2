//! A paused queue on the in-memory store: nothing is leased until it is resumed, and
//! the other queues go on (the Redis store is checked by the monitor's tests).

use std::time::Duration;

use hippo_queue_core::backend::prelude::*;
use hippo_queue_core::{App, SendOptions, Task, TaskContext, TaskError, TaskState};

struct Echo;

impl Task for Echo {
    const NAME: &'static str = "echo";
    type Args = u32;
    type Output = u32;
    async fn run(&self, _: &TaskContext, n: u32) -> Result<u32, TaskError> {
        Ok(n)
    }
}

#[tokio::test]
async fn a_paused_queue_waits_for_its_resume() {
    let app = App::in_memory();
    app.register(Echo);
    let worker = app
        .worker()
        .queues(["default", "other"])
        .fetch_wait(Duration::from_millis(50))
        .start()
        .await
        .expect("worker");
    let broker = app.broker();
    assert!(broker.set_paused("default", true).await.expect("pause"));
    assert!(
        !broker.set_paused("default", true).await.expect("again"),
        "already paused"
    );
    let held = app.delay::<Echo>(1).await.expect("send");
    let other = app
        .apply_async::<Echo>(2, SendOptions::new().queue("other"))
        .await
        .expect("send");
    assert_eq!(
        other
            .get(Duration::from_secs(5))
            .await
            .expect("other queue"),
        2
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(held.state().await.expect("state"), TaskState::Pending);
    let stats = broker
        .queue_stats(&["default".to_string()])
        .await
        .expect("stats");
    assert!(stats[0].paused);
    assert_eq!(stats[0].waiting(), 1);
    assert!(broker.set_paused("default", false).await.expect("resume"));
    assert_eq!(held.get(Duration::from_secs(5)).await.expect("resumed"), 1);
    worker.shutdown().await;
}
