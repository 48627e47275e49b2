//! What `hippo-queue doctor` reads from the broker's server: persistence, eviction
//! policy, the server clock and whether a beat ever ran.

use hippo_queue_core::BackendError;
use redis::Value;

use crate::RedisBackend;
use crate::values::{array, string};

/// Settings of the broker's Redis server that decide what hippo-queue can promise.
/// A field is `None` when the server does not let it be read (`CONFIG` renamed or
/// disabled, as on some managed services).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReport {
    /// `appendonly`: the append-only file is on.
    pub appendonly: Option<bool>,
    /// `save`: the RDB snapshot rules (empty: no snapshots).
    pub save: Option<String>,
    /// `maxmemory-policy`.
    pub maxmemory_policy: Option<String>,
    /// The server's clock (`TIME`), ms since the epoch.
    pub time_ms: u64,
    /// Entries with a last tick in the beat store (a beat has run on this server).
    pub beat_entries: u64,
}

impl RedisBackend {
    /// Reads the broker server's persistence and eviction settings, its clock, and
    /// how many beat entries it knows.
    pub async fn server_report(&self) -> Result<ServerReport, BackendError> {
        let server = &self.inner.broker;
        let mut pipe = redis::pipe();
        pipe.cmd("TIME")
            .cmd("HKEYS")
            .arg(format!("{}:beat:last", self.inner.config.prefix));
        let (time, beat_fields): (Value, Vec<String>) = server.query(&pipe).await?;
        // the hash also holds each entry's run count, under `#runs:<entry>`
        let beat_entries = beat_fields.iter().filter(|f| !f.starts_with('#')).count() as u64;
        let time = array(time)?;
        let (secs, micros) = match time.as_slice() {
            [s, us] => (
                string(s.clone())?.parse::<u64>().unwrap_or(0),
                string(us.clone())?.parse::<u64>().unwrap_or(0),
            ),
            _ => {
                return Err(BackendError::protocol("TIME did not return two values"));
            }
        };
        let config = |name: &'static str| async move {
            let mut pipe = redis::pipe();
            pipe.cmd("CONFIG").arg("GET").arg(name);
            let (v,): (Value,) = server.query(&pipe).await.ok()?;
            // RESP3 answers a map, RESP2 a flat [name, value] array.
            let value = match v {
                Value::Map(pairs) => pairs.into_iter().next()?.1,
                other => array(other).ok()?.into_iter().nth(1)?,
            };
            string(value).ok()
        };
        Ok(ServerReport {
            appendonly: config("appendonly").await.map(|v| v == "yes"),
            save: config("save").await,
            maxmemory_policy: config("maxmemory-policy").await,
            time_ms: secs * 1000 + micros / 1000,
            beat_entries,
        })
    }
}
