//! Remote inspection and control of workers (Celery's `inspect` and `control`).
//!
//! A [`Control`] client broadcasts a [`Command`] to every worker (or to named ones)
//! through the broker and gathers their [`Reply`]s until all live workers answered or
//! the timeout passed. Reply queues expire by themselves.
//!
//! ```
//! use std::time::Duration;
//! use hippo_queue_core::App;
//! use hippo_queue_core::control::{Command, ReplyBody};
//!
//! # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::Error> {
//! let app = App::in_memory();
//! let worker = app.worker().start().await?;
//! let replies = app.control().call(None, Command::Ping, Duration::from_secs(1)).await?;
//! assert_eq!(replies.len(), 1);
//! assert!(matches!(replies[0].body, ReplyBody::Pong));
//! worker.shutdown().await;
//! # Ok(()) }
//! ```

use std::time::Duration;

pub use crate::backend::control_bus::{
    Command, InvalidCommand, MAX_CONCURRENCY, MAX_TIME_LIMIT_SECS, QueueInfo, REPLY_TTL, Reply,
    ReplyBody, Request, Stats, TaskInfo, grown_concurrency, time_limits,
};
use crate::backend::inspection::QueueStats;
pub use crate::backend::rate_limits::{MAX_RATE_PER_SEC, RateLimit};
use crate::time::now_ms;
use crate::{App, Error};

/// The client side of remote control. Get one with [`App::control`].
#[derive(Clone, Debug)]
pub struct Control {
    app: App,
}

impl App {
    /// Remote inspection and control of this app's workers.
    pub fn control(&self) -> Control {
        Control { app: self.clone() }
    }
}

impl Control {
    /// Broadcasts `command` to `destination` (all workers when `None`) and gathers
    /// replies until every addressed live worker answered or `timeout` passed.
    ///
    /// Returns [`Error::InvalidCommand`] without sending anything when the command's
    /// values are out of range (see [`Command::validate`]).
    pub async fn call(
        &self,
        destination: Option<&[String]>,
        command: Command,
        timeout: Duration,
    ) -> Result<Vec<Reply>, Error> {
        command.validate()?;
        let broker = self.app.broker();
        if let Command::RateLimit { task, rate } = &command {
            broker.set_rate_limit(task, *rate).await?;
        }
        if let Command::Revoke { id, terminate } = &command {
            self.app.revoke(id, *terminate).await?;
        }
        let expected = match destination {
            Some(d) => d.len(),
            None => broker.workers().await?.len(),
        };
        let request = Request {
            id: uuid::Uuid::new_v4().to_string(),
            destination: destination.map(<[String]>::to_vec),
            command,
            sent_at: now_ms(),
        };
        broker.broadcast(&request).await?;
        let mut replies = broker
            .collect_replies(&request.id, expected, timeout)
            .await?;
        replies.sort_by(|a, b| a.worker.cmp(&b.worker));
        Ok(replies)
    }

    /// Lengths of the given queues (no worker involved).
    pub async fn queue_stats(&self, queues: &[String]) -> Result<Vec<QueueStats>, Error> {
        Ok(self.app.broker().queue_stats(queues).await?)
    }
}
/// Resident memory of this process in bytes (Linux; 0 elsewhere).
pub(crate) fn memory_rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}
