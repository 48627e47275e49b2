//! Hello, hippo-queue: the smallest complete program.
//!
//! Run it with `cargo run --example hello`. No Redis, no extra process.
//!
//! It teaches the four things every program does:
//!
//! 1. define a task: a type that implements [`Task`] with a plain `async fn run`
//!    (no attribute macro), typed arguments and a typed output;
//! 2. build an app: here [`App::in_memory`], broker and result backend in this process;
//! 3. start a worker: a tokio task on this runtime that runs the registered tasks;
//! 4. send with `delay` and wait for the result with `get`.

use std::error::Error as StdError;
use std::time::Duration;

use hippo_queue::{App, Task, TaskContext, TaskError};
use serde::{Deserialize, Serialize};

/// The arguments: any serde type. They travel to the worker as MessagePack.
#[derive(Serialize, Deserialize)]
struct Greeting {
    name: String,
    excited: bool,
}

/// The task itself. A task is a value, so it could also hold its dependencies
/// (a database pool, an HTTP client); this one needs none.
struct SayHello;

impl Task for SayHello {
    /// The name the message carries; workers look the task up by it.
    const NAME: &'static str = "hello.say_hello";
    type Args = Greeting;
    type Output = String;

    async fn run(&self, ctx: &TaskContext, args: Greeting) -> Result<String, TaskError> {
        let mark = if args.excited { "!" } else { "." };
        // The context says which task this is: its id, queue, retries so far...
        println!("  (worker) running {} on queue {}", ctx.id(), ctx.queue());
        Ok(format!("Hello, {}{mark}", args.name))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn StdError>> {
    // The app: the in-memory broker and result backend, one default queue.
    let app = App::in_memory();
    app.register(SayHello);

    // A worker consuming the app's queues, on this tokio runtime.
    let worker = app.worker().start().await?;
    println!("worker {} started", worker.id());

    // `delay` sends the task and returns at once with a handle to its result...
    let args = Greeting {
        name: "world".into(),
        excited: true,
    };
    let handle = app.delay::<SayHello>(args).await?;
    println!("sent task {}", handle.id());

    // ...and `get` waits for the result (woken when it is stored, no polling).
    let greeting = handle.get(Duration::from_secs(5)).await?;
    println!("result: {greeting}");
    println!("state: {}", handle.state().await?);

    // Stop fetching, let running tasks finish, hand back what was prefetched.
    worker.shutdown().await;
    println!("worker stopped");
    Ok(())
}
