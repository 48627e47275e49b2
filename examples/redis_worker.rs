//! A worker process on Redis: the other half of `redis_producer`.
//!
//! Start `redis-server`, then in one terminal:
//!
//! ```sh
//! cargo run --example redis_worker        # REDIS_URL=redis://localhost:6379/0 by default
//! ```
//!
//! and in another, as many times as you like:
//!
//! ```sh
//! cargo run --example redis_producer -- hello world
//! ```
//!
//! It teaches what a worker process is: it connects with `RedisBackend::connect`,
//! registers the tasks it can run, starts a worker and waits until Ctrl-C (or a remote
//! `hippo-queue control shutdown`), then shuts down gracefully. It prints:
//!
//! ```text
//! connected to redis://localhost:6379/0
//! worker worker-…@host ready
//! shouting "hello" (task 5f0c…)
//! shouting "world" (task 9a41…)
//! ^Cstopping: 0 reserved messages handed back, 0 tasks aborted
//! ```

mod redis_pair;

use std::error::Error as StdError;

use redis_pair::{Shout, connect};

#[tokio::main]
async fn main() -> Result<(), Box<dyn StdError>> {
    let app = connect().await?;
    // Only the worker registers the task: it is the one that runs it.
    app.register(Shout);

    let worker = app.worker().concurrency(4).start().await?;
    println!("worker {} ready", worker.id());

    // Until Ctrl-C (tokio's "signal" feature), or until stopped remotely.
    tokio::select! {
        signal = tokio::signal::ctrl_c() => signal?,
        _ = worker.stopped() => {}
    }
    // Stop fetching, let running tasks finish, hand prefetched messages back.
    let report = worker.shutdown().await;
    println!(
        "stopping: {} reserved messages handed back, {} tasks aborted",
        report.released, report.aborted
    );
    Ok(())
}
