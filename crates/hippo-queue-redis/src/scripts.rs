//! The Lua scripts. Each one changes the state of messages of one queue (or records
//! of one result shard) atomically, declares every key it touches, and works on a
//! bounded batch.

use std::sync::OnceLock;

use redis::aio::MultiplexedConnection;
use redis::{RedisError, Script};

pub(crate) struct Scripts {
    pub publish: Script,
    pub fetch: Script,
    pub start: Script,
    pub settle: Script,
    pub release: Script,
    pub recover: Script,
    pub purge: Script,
    pub requeue_dead: Script,
    pub store_results: Script,
    pub rate: Script,
    pub heartbeat: Script,
    pub lost_workers: Script,
    pub worker_state: Script,
    pub unrecorded: Script,
    pub forget_worker: Script,
    pub pause: Script,
}

/// A script with the shared prelude (`lua/prelude.lua`: the record's fields, the
/// dead letters, the wake-up, the server's clock) in front of it.
macro_rules! script {
    ($name:literal) => {
        Script::new(concat!(
            include_str!("lua/prelude.lua"),
            include_str!(concat!("lua/", $name, ".lua"))
        ))
    };
}

impl Scripts {
    pub(crate) fn get() -> &'static Scripts {
        static SCRIPTS: OnceLock<Scripts> = OnceLock::new();
        SCRIPTS.get_or_init(|| Scripts {
            publish: script!("publish"),
            fetch: script!("fetch"),
            start: script!("start"),
            settle: script!("settle"),
            release: script!("release"),
            recover: script!("recover"),
            purge: script!("purge"),
            requeue_dead: script!("requeue_dead"),
            store_results: script!("store_results"),
            rate: script!("rate"),
            heartbeat: script!("heartbeat"),
            lost_workers: script!("lost_workers"),
            worker_state: script!("worker_state"),
            unrecorded: script!("unrecorded"),
            forget_worker: script!("forget_worker"),
            pause: script!("pause"),
        })
    }

    fn all(&self) -> [&Script; 16] {
        [
            &self.publish,
            &self.fetch,
            &self.start,
            &self.settle,
            &self.release,
            &self.recover,
            &self.purge,
            &self.requeue_dead,
            &self.store_results,
            &self.rate,
            &self.heartbeat,
            &self.lost_workers,
            &self.worker_state,
            &self.unrecorded,
            &self.forget_worker,
            &self.pause,
        ]
    }

    /// Loads every script in one round trip.
    pub(crate) async fn load_all(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<(), RedisError> {
        let mut pipe = redis::pipe();
        for s in self.all() {
            pipe.load_script(s).ignore();
        }
        pipe.query_async::<()>(conn).await
    }
}
