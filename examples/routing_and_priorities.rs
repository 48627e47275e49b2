//! Routing and priorities: which queue a message goes to, and in what order it runs.
//!
//! Run it with `cargo run --example routing_and_priorities`. No Redis; well under a
//! second.
//!
//! It teaches:
//!
//! - **queues** bound to routing-key patterns with AMQP topic rules (`*` is one word,
//!   `#` zero or more), each with a queue priority;
//! - **routing keys**: a task's default key, a key per call, a task route by name glob,
//!   an explicit queue, and the error for a key no queue is bound to;
//! - **message priorities** 0-9, higher first, FIFO within a priority;
//! - **a worker consuming several queues**, the higher queue priority first.

use std::error::Error as StdError;
use std::time::Duration;

use hippo_queue::AsyncResult;
use hippo_queue::{App, Error, Queue, Router, SendOptions, Task, TaskContext, TaskError};

const WAIT: Duration = Duration::from_secs(5);

/// A job that says which queue it was taken from.
struct Job;

impl Task for Job {
    const NAME: &'static str = "jobs.run";
    type Args = String;
    type Output = String;

    async fn run(&self, ctx: &TaskContext, label: String) -> Result<String, TaskError> {
        println!("  (worker) ran {label:<24} from {}", ctx.queue());
        Ok(format!("{label} via {}", ctx.queue()))
    }
}

/// Sent with no options at all: a task route (`images.*`) decides where it goes.
struct Thumbnail;

impl Task for Thumbnail {
    const NAME: &'static str = "images.thumbnail";
    type Args = (String, u32);
    type Output = String;

    async fn run(&self, ctx: &TaskContext, (path, px): (String, u32)) -> Result<String, TaskError> {
        println!("  (worker) thumbnail {path} at {px}px from {}", ctx.queue());
        Ok(format!("{path}@{px}px"))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn StdError>> {
    // --- 1. Queues and routes. -------------------------------------------------------
    let router = Router::new("default")
        .queue(Queue::new("default"))
        .queue(Queue::new("memory_ops").routing_key("memory.#").priority(9))
        .queue(
            Queue::new("background")
                .routing_key("background.#")
                .priority(3),
        )
        // Task routes: exact names or globs; the first that matches wins.
        .route("images.*", "background", Some("background.images"));
    let app = App::builder().router(router).build();
    app.register(Job).register(Thumbnail);

    // --- 2. Where each message goes (sent before any worker runs). -------------------
    println!("== routing ==");
    let mut sent: Vec<AsyncResult<String>> = Vec::new();
    let plain = app.delay::<Job>("no options".into()).await?;
    sent.push(plain);
    let by_key = SendOptions::new().routing_key("memory.dedup"); // memory.# matches
    sent.push(
        app.apply_async::<Job>("key memory.dedup".into(), by_key)
            .await?,
    );
    let deep_key = SendOptions::new().routing_key("background.cleanup.nightly");
    sent.push(
        app.apply_async::<Job>("key background.cleanup".into(), deep_key)
            .await?,
    );
    let named = SendOptions::new().queue("memory_ops"); // a queue named outright
    sent.push(
        app.apply_async::<Job>("queue memory_ops".into(), named)
            .await?,
    );
    let thumb = app.delay::<Thumbnail>(("cat.png".into(), 128)).await?;

    // A key that no queue is bound to is refused at once, and nothing is sent.
    let nowhere = SendOptions::new().routing_key("nowhere.at.all");
    match app.apply_async::<Job>("lost".into(), nowhere).await {
        Err(Error::Routing(e)) => println!("routing key nowhere.at.all: refused ({e})"),
        other => return Err(format!("expected a routing error, got {other:?}").into()),
    }

    // --- 3. Message priorities: a backlog in the background queue. -------------------
    println!("\n== priorities ==");
    for (label, priority) in [("low", 0), ("urgent", 9), ("normal", 3), ("high", 6)] {
        let opts = SendOptions::new().queue("background").priority(priority);
        let label = format!("{label} (priority {priority})");
        sent.push(app.apply_async::<Job>(label, opts).await?);
    }
    let names = ["memory_ops", "default", "background"].map(String::from);
    for q in app.broker().queue_stats(&names).await? {
        let by_priority = q.waiting_by_priority;
        println!(
            "{:<10} waiting {} by priority 0..9 {by_priority:?}",
            q.queue,
            q.waiting()
        );
    }

    // --- 4. One worker, three queues, one task at a time, one message per fetch so
    // the order is easy to follow: memory_ops (queue priority 9) first, then default
    // (5), then background (3), each by message priority.
    println!("\n== one worker on three queues ==");
    let worker = app
        .worker()
        .queues(["memory_ops", "default", "background"])
        .concurrency(1)
        .prefetch_multiplier(1)
        .start()
        .await?;
    for handle in &sent {
        handle.get(WAIT).await?;
    }
    println!("thumbnail -> {}", thumb.get(WAIT).await?);
    worker.shutdown().await;
    Ok(())
}
