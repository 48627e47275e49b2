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
    pub store_results: Script,
    pub rate: Script,
    pub heartbeat: Script,
    pub lost_workers: Script,
    pub worker_state: Script,
    pub unrecorded: Script,
}

impl Scripts {
    pub(crate) fn get() -> &'static Scripts {
        static SCRIPTS: OnceLock<Scripts> = OnceLock::new();
        SCRIPTS.get_or_init(|| Scripts {
            publish: Script::new(include_str!("lua/publish.lua")),
            fetch: Script::new(include_str!("lua/fetch.lua")),
            start: Script::new(include_str!("lua/start.lua")),
            settle: Script::new(include_str!("lua/settle.lua")),
            release: Script::new(include_str!("lua/release.lua")),
            recover: Script::new(include_str!("lua/recover.lua")),
            purge: Script::new(include_str!("lua/purge.lua")),
            store_results: Script::new(include_str!("lua/store_results.lua")),
            rate: Script::new(include_str!("lua/rate.lua")),
            heartbeat: Script::new(include_str!("lua/heartbeat.lua")),
            lost_workers: Script::new(include_str!("lua/lost_workers.lua")),
            worker_state: Script::new(include_str!("lua/worker_state.lua")),
            unrecorded: Script::new(include_str!("lua/unrecorded.lua")),
        })
    }

    fn all(&self) -> [&Script; 13] {
        [
            &self.publish,
            &self.fetch,
            &self.start,
            &self.settle,
            &self.release,
            &self.recover,
            &self.purge,
            &self.store_results,
            &self.rate,
            &self.heartbeat,
            &self.lost_workers,
            &self.worker_state,
            &self.unrecorded,
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
