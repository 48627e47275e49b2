//! Remote control: inspect and steer running workers from anywhere the app reaches.
//!
//! Run it with `cargo run --example remote_control`. No Redis; about two seconds.
//!
//! `app.control()` broadcasts a `Command` through the broker to every worker (`None`)
//! or to named ones, and gathers one `Reply` per worker. On the in-memory backend the
//! commands travel in process; on Redis the same code reaches workers in other
//! processes, and `hippo-queue inspect ...` / `hippo-queue control ...` send the same
//! commands from a shell. It teaches:
//!
//! - **inspect**: `Ping`, `Active` (the tasks running now) and `Stats`;
//! - **control**: `RateLimit` (enforced across all workers together) and `PoolGrow`.

use std::error::Error as StdError;
use std::time::{Duration, Instant};

use hippo_queue::control::{Command, Control, RateLimit, ReplyBody};
use hippo_queue::{App, Error, Task, TaskContext, TaskError};

/// Sleeps for the given milliseconds: something to see in `Active`.
struct Sleep;

impl Task for Sleep {
    const NAME: &'static str = "demo.sleep";
    type Args = u64;
    type Output = ();

    async fn run(&self, _: &TaskContext, ms: u64) -> Result<(), TaskError> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(())
    }
}

/// Prints the replies' stats: one line per worker.
async fn print_stats(control: &Control, timeout: Duration) -> Result<(), Error> {
    for reply in control.call(None, Command::Stats, timeout).await? {
        if let ReplyBody::Stats(stats) = reply.body {
            let info = &stats.info;
            println!(
                "{}: concurrency {}, {} succeeded, queues {:?}, up {:.1} s",
                reply.worker, info.concurrency, info.succeeded, info.queues, stats.uptime
            );
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn StdError>> {
    let app = App::in_memory();
    app.register(Sleep);
    // Named workers, so that commands can address one of them.
    let alpha = app.worker().name("alpha").concurrency(2).start().await?;
    let beta = app.worker().name("beta").concurrency(2).start().await?;
    let control = app.control();
    let timeout = Duration::from_secs(1);

    // --- Inspect. --------------------------------------------------------------------
    println!("== ping ==");
    for reply in control.call(None, Command::Ping, timeout).await? {
        println!("{}: {:?}", reply.worker, reply.body);
    }

    println!("\n== active ==");
    let sleeping = [
        app.delay::<Sleep>(400).await?,
        app.delay::<Sleep>(400).await?,
    ];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let replies = control.call(None, Command::Active, timeout).await?;
        let running: Vec<_> = replies
            .iter()
            .filter_map(|r| match &r.body {
                ReplyBody::Tasks(tasks) => Some(tasks.iter().map(move |t| (&r.worker, t))),
                _ => None,
            })
            .flatten()
            .collect();
        if running.len() == sleeping.len() {
            for (worker, task) in running {
                println!(
                    "{worker}: running {} {} from {}",
                    task.name, task.id, task.queue
                );
            }
            break;
        }
        if Instant::now() > deadline {
            return Err("the sleeping tasks did not start".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for handle in &sleeping {
        handle.get(Duration::from_secs(5)).await?;
    }

    println!("\n== stats ==");
    print_stats(&control, timeout).await?;

    // --- Control. --------------------------------------------------------------------
    // At most 5 starts of demo.sleep per second, both workers together: 6 tasks now
    // take about a second although there are 4 free slots.
    println!("\n== rate limit ==");
    let rate: RateLimit = "5/s".parse()?;
    let task = Sleep::NAME.to_string();
    let set = Command::RateLimit {
        task: task.clone(),
        rate: Some(rate),
    };
    for reply in control.call(None, set, timeout).await? {
        println!("{}: {:?}", reply.worker, reply.body);
    }
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..6 {
        handles.push(app.delay::<Sleep>(0).await?);
    }
    for handle in &handles {
        handle.get(Duration::from_secs(5)).await?;
    }
    println!("6 tasks at 5/s took {} ms", started.elapsed().as_millis());
    control
        .call(None, Command::RateLimit { task, rate: None }, timeout)
        .await?;

    // Two more concurrency slots for alpha only.
    println!("\n== pool grow ==");
    let only = ["alpha".to_string()];
    for reply in control
        .call(Some(&only), Command::PoolGrow(2), timeout)
        .await?
    {
        println!("{}: {:?}", reply.worker, reply.body);
    }
    print_stats(&control, timeout).await?;

    alpha.shutdown().await;
    beta.shutdown().await;
    Ok(())
}
