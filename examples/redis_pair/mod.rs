//! What `redis_producer` and `redis_worker` share: the task type and how to reach
//! Redis. A producer needs the task's type (its name, arguments and output), not the
//! code it runs; here both sides include the same module with `mod redis_pair;`.

use hippo_queue::App;
use hippo_queue::config::redact_url;
use hippo_queue::redis::{RedisBackend, RedisConfig};
use hippo_queue::{Task, TaskContext, TaskError};
use serde::{Deserialize, Serialize};

/// What the task returns: the text, shouted, and the worker that shouted it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Shouted {
    pub text: String,
    pub by: String,
}

/// Upper-cases a text.
pub struct Shout;

impl Task for Shout {
    const NAME: &'static str = "pair.shout";
    type Args = String;
    type Output = Shouted;

    async fn run(&self, ctx: &TaskContext, text: String) -> Result<Shouted, TaskError> {
        println!("shouting {text:?} (task {})", ctx.id());
        Ok(Shouted {
            text: text.to_uppercase(),
            by: ctx.worker().to_string(),
        })
    }
}

/// Connects to `REDIS_URL` (default `redis://localhost:6379/0`) and builds the app
/// both processes use: the same Redis, the same (default) router and key prefix.
/// One `RedisBackend` is both the broker and the result backend.
pub async fn connect() -> Result<App, Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://localhost:6379/0".into());
    // `connect` checks the server (and waits for it, with backoff, if it is starting).
    let redis = RedisBackend::connect(RedisConfig::new(url.as_str())).await?;
    // Never print a password that may be in the URL.
    println!("connected to {}", redact_url(&url));
    Ok(App::builder().broker(redis.clone()).backend(redis).build())
}
