//! The blocking pool refuses tasks, naming why, once threads given up at their hard
//! limit would starve the runtime; it takes tasks again once they end.
//!
//! One test in its own binary: the count of abandoned threads is per process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hippo_queue_core::task::kinds;
use hippo_queue_core::worker::{Pool, abandoned_threads};
use hippo_queue_core::{App, Task, TaskContext, TaskError, TaskOptions, TaskState};

/// Released at the end of the test, so the spinning thread can end.
static RELEASE: AtomicBool = AtomicBool::new(false);

/// CPU-bound until released: never awaits.
struct Spin;
impl Task for Spin {
    const NAME: &'static str = "blocking.spin";
    type Args = ();
    type Output = ();
    fn options() -> TaskOptions {
        TaskOptions::new().time_limit(Duration::from_millis(100))
    }
    async fn run(&self, _: &TaskContext, _: ()) -> Result<(), TaskError> {
        while !RELEASE.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        Ok(())
    }
}

struct Ping;
impl Task for Ping {
    const NAME: &'static str = "blocking.ping";
    type Args = ();
    type Output = String;
    async fn run(&self, _: &TaskContext, _: ()) -> Result<String, TaskError> {
        Ok("pong".into())
    }
}

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blocking_pool_refuses_tasks_while_abandoned_threads_are_at_the_limit() {
    let app = App::in_memory();
    app.register(Spin);
    app.register(Ping);
    let worker = app
        .worker()
        .pool(Pool::Blocking)
        .concurrency(2)
        .max_abandoned_threads(1)
        .start()
        .await
        .expect("worker");

    let spin = app.delay::<Spin>(()).await.expect("send");
    let _ = spin.get(WAIT).await;
    let meta = spin.meta().await.expect("read").expect("record");
    assert_eq!(meta.state, TaskState::Failure);
    assert_eq!(meta.error.expect("failure").kind, kinds::TIME_LIMIT);
    assert_eq!(abandoned_threads(), 1, "the spinning thread is still held");

    let refused = app.delay::<Ping>(()).await.expect("send");
    let _ = refused.get(WAIT).await;
    let meta = refused.meta().await.expect("read").expect("record");
    assert_eq!(meta.state, TaskState::Failure);
    let f = meta.error.expect("failure");
    assert_eq!(f.kind, kinds::POOL_EXHAUSTED);
    assert!(f.message.contains("Pool::Process"), "{}", f.message);

    RELEASE.store(true, Ordering::Release);
    let deadline = Instant::now() + WAIT;
    while abandoned_threads() > 0 {
        assert!(
            Instant::now() < deadline,
            "the released thread was not counted back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ok = app.delay::<Ping>(()).await.expect("send");
    assert_eq!(ok.get(WAIT).await.expect("served again"), "pong");
    worker.shutdown().await;
}
