//! A producer process on Redis: sends tasks that a `redis_worker` process runs.
//!
//! With `redis-server` and `cargo run --example redis_worker` running:
//!
//! ```sh
//! cargo run --example redis_producer -- hello world   # REDIS_URL as for the worker
//! ```
//!
//! It teaches the producer's side: it builds the same app on the same Redis
//! (`RedisBackend::connect`), registers nothing, sends with `delay` and waits with
//! `get`, which is woken by the result's announcement on Redis pub/sub. It prints:
//!
//! ```text
//! connected to redis://localhost:6379/0
//! sent "hello" as task 5f0c…
//! sent "world" as task 9a41…
//! "hello" -> "HELLO" (by worker-…@host)
//! "world" -> "WORLD" (by worker-…@host)
//! ```
//!
//! With no worker running, `get` gives up after 10 seconds; the messages stay in
//! Redis, and a worker started later runs them.

mod redis_pair;

use std::error::Error as StdError;
use std::time::Duration;

use hippo_queue::Error;
use redis_pair::{Shout, connect};

#[tokio::main]
async fn main() -> Result<(), Box<dyn StdError>> {
    let mut words: Vec<String> = std::env::args().skip(1).collect();
    if words.is_empty() {
        words = vec!["hello".into(), "world".into()];
    }
    let app = connect().await?;

    // Send them all first: the worker runs them concurrently.
    let mut sent = Vec::new();
    for word in words {
        let handle = app.delay::<Shout>(word.clone()).await?;
        println!("sent {word:?} as task {}", handle.id());
        sent.push((word, handle));
    }

    for (word, handle) in sent {
        match handle.get(Duration::from_secs(10)).await {
            Ok(out) => println!("{word:?} -> {:?} (by {})", out.text, out.by),
            Err(Error::Timeout(_)) => {
                return Err(format!("no result for {word:?}: is redis_worker running?").into());
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
