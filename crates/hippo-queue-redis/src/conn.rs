//! Connections to one Redis server: a shared multiplexed connection for ordinary
//! commands (it pipelines concurrent callers by itself), a deadpool of dedicated
//! connections for blocking waits, and the script cache.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use deadpool_redis::{Manager, Pool, Runtime};
use hippo_queue_core::BackendError;
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, ErrorKind, FromRedisValue, Pipeline, RedisError, ServerErrorKind,
};

use crate::scripts::Scripts;

/// Why the backend could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL is not a Redis URL this build can use.
    #[error("invalid Redis URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL, with its password hidden.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to Redis at {url}: {reason}")]
    Unreachable {
        /// The URL, with its password hidden.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The server stayed unreachable through every startup retry.
    #[error(
        "gave up connecting to Redis at {url} after {attempts} attempts (raise \
         CELERY_BROKER_CONNECTION_MAX_RETRIES, or set it to 0 to wait forever): {reason}"
    )]
    GaveUp {
        /// The URL, with its password hidden.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        reason: String,
    },
}

/// Hides the password of a URL for messages (`user:***@`, `?pass=***`).
pub(crate) fn redact(url: &str) -> String {
    hippo_queue_core::config::redact_url(url)
}

pub(crate) struct Server {
    pub url: String,
    pool: Pool,
    shared: Mutex<Option<MultiplexedConnection>>,
    last_failure: Mutex<Option<Instant>>,
    pub client: redis::Client,
    pub scripts: &'static Scripts,
}

impl Server {
    pub(crate) async fn connect(
        url: &str,
        pool_size: usize,
        response_timeout: Duration,
    ) -> Result<Self, ConnectError> {
        let shown = redact(url);
        if !(url.starts_with("redis://")
            || url.starts_with("rediss://")
            || url.starts_with("redis+unix://")
            || url.starts_with("unix://"))
        {
            return Err(ConnectError::InvalidUrl {
                url: shown,
                reason: "expected redis://[user[:password]@]host[:port][/db] or rediss://".into(),
            });
        }
        let invalid = |e: RedisError| ConnectError::InvalidUrl {
            url: shown.clone(),
            reason: e.to_string(),
        };
        let client = redis::Client::open(url).map_err(invalid)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(response_timeout));
        let manager = Manager::new_with_config(url, config).map_err(invalid)?;
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| ConnectError::InvalidUrl {
                url: shown.clone(),
                reason: e.to_string(),
            })?;
        let server = Server {
            url: shown.clone(),
            pool,
            shared: Mutex::new(None),
            last_failure: Mutex::new(None),
            client,
            scripts: Scripts::get(),
        };
        let mut conn = server.conn().await.map_err(|e| ConnectError::Unreachable {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
        server
            .scripts
            .load_all(&mut conn)
            .await
            .map_err(|e| ConnectError::Unreachable {
                url: shown,
                reason: e.to_string(),
            })?;
        Ok(server)
    }

    /// The shared connection (created on first use and after a failure).
    pub(crate) async fn conn(&self) -> Result<MultiplexedConnection, BackendError> {
        if let Some(c) = self.lock_shared().as_ref() {
            return Ok(c.clone());
        }
        let obj = self.pool.get().await.map_err(|e| {
            self.note_failure();
            BackendError::unavailable(format!("{}: {e}", self.url)).with_source(e)
        })?;
        let conn = deadpool_redis::Connection::take(obj);
        *self.lock_shared() = Some(conn.clone());
        Ok(conn)
    }

    /// A dedicated pooled connection, for blocking commands.
    pub(crate) async fn dedicated(&self) -> Result<deadpool_redis::Connection, BackendError> {
        self.pool.get().await.map_err(|e| {
            self.note_failure();
            BackendError::unavailable(format!("{}: {e}", self.url)).with_source(e)
        })
    }

    fn lock_shared(&self) -> std::sync::MutexGuard<'_, Option<MultiplexedConnection>> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn note_failure(&self) {
        *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// Whether a connection failure happened within `grace`.
    pub(crate) fn failed_within(&self, grace: Duration) -> bool {
        self.last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() < grace)
    }

    /// Maps a Redis error, dropping the shared connection when it is broken or
    /// points at a server that can no longer take writes (a demoted master answers
    /// READONLY until the connection is opened again, through the new address).
    /// Outage answers (loading, read-only, out of memory, busy) are
    /// [`BackendErrorKind::Busy`](hippo_queue_core::BackendErrorKind::Busy): retrying later helps, as for a lost connection.
    pub(crate) fn error(&self, e: RedisError) -> BackendError {
        let outage = outage_code(&e);
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || e.is_unrecoverable_error()
        {
            self.note_failure();
            self.lock_shared().take();
            BackendError::unavailable(format!("{}: {e}", self.url)).with_source(e)
        } else if let Some(code) = outage {
            self.note_failure();
            if matches!(code, "READONLY" | "MASTERDOWN") {
                self.lock_shared().take();
            }
            BackendError::busy(format!("{}: {e}", self.url)).with_source(e)
        } else {
            BackendError::backend(format!("{}: {e}", self.url)).with_source(e)
        }
    }

    /// Runs a pipeline on the shared connection; after a server restart (scripts
    /// flushed) the scripts are loaded again and the pipeline is retried once. A
    /// pipeline whose scripts are missing had no effect, so the retry is safe.
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        pipe: &Pipeline,
    ) -> Result<T, BackendError> {
        let mut conn = self.conn().await?;
        self.query_on(&mut conn, pipe).await
    }

    /// [`Server::query`] on a pooled connection of its own, so that nothing queued on
    /// the shared connection (a 64 MiB publish, say) delays it: for heartbeats.
    pub(crate) async fn query_alone<T: FromRedisValue>(
        &self,
        pipe: &Pipeline,
    ) -> Result<T, BackendError> {
        let mut conn = self.dedicated().await?;
        self.query_on(&mut conn, pipe).await
    }

    async fn query_on<T: FromRedisValue>(
        &self,
        conn: &mut MultiplexedConnection,
        pipe: &Pipeline,
    ) -> Result<T, BackendError> {
        match pipe.query_async::<T>(conn).await {
            Ok(v) => Ok(v),
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.scripts
                    .load_all(conn)
                    .await
                    .map_err(|e| self.error(e))?;
                pipe.query_async::<T>(conn).await.map_err(|e| self.error(e))
            }
            Err(e) => Err(self.error(e)),
        }
    }
}

/// Error codes of a server that is up but cannot serve now: worth waiting for.
const OUTAGE_CODES: [&str; 9] = [
    "LOADING",
    "READONLY",
    "MASTERDOWN",
    "OOM",
    "BUSY",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "NOREPLICAS",
    "MISCONF",
];

/// The outage code of an error, if it is one (errors inside a pipeline carry their
/// code only in their text).
fn outage_code(e: &RedisError) -> Option<&'static str> {
    if let Some(code) = e.code()
        && let Some(c) = OUTAGE_CODES.iter().find(|c| **c == code)
    {
        return Some(c);
    }
    let text = e.to_string();
    let words: Vec<&str> = text.split(|ch: char| !ch.is_ascii_alphanumeric()).collect();
    OUTAGE_CODES.into_iter().find(|c| words.contains(c))
}

#[cfg(test)]
mod tests {
    use super::{outage_code, redact};

    #[test]
    fn outage_answers_are_recognised() {
        let oom = redis::RedisError::from((
            redis::ErrorKind::Extension,
            "An error was signalled by the server",
            "OOM command not allowed when used memory > 'maxmemory'.".to_string(),
        ));
        assert_eq!(outage_code(&oom), Some("OOM"));
        let other = redis::RedisError::from((
            redis::ErrorKind::Extension,
            "An error was signalled by the server",
            "ERR user_script:1: something".to_string(),
        ));
        assert_eq!(outage_code(&other), None);
    }

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact("redis://:secret@host:6379/1"),
            "redis://:***@host:6379/1"
        );
        assert_eq!(
            redact("redis://user:secret@host/2"),
            "redis://user:***@host/2"
        );
        assert_eq!(redact("redis://host:6379/1"), "redis://host:6379/1");
    }

    #[test]
    fn query_passwords_are_hidden() {
        for (url, shown) in [
            (
                "redis+unix:///r.sock?pass=s3cret",
                "redis+unix:///r.sock?pass=***",
            ),
            (
                "unix:///r.sock?db=1&pass=s3cret&user=u",
                "unix:///r.sock?db=1&pass=***&user=u",
            ),
            (
                "unix:///r.sock?password=s3cret",
                "unix:///r.sock?password=***",
            ),
            (
                "redis+unix:///r.sock?PASS=s3cret",
                "redis+unix:///r.sock?PASS=***",
            ),
        ] {
            assert_eq!(redact(url), shown);
        }
    }

    #[test]
    fn awkward_passwords_are_hidden() {
        for url in [
            "redis://u:p@ss@s3cret@host:6379/1",
            "redis://:s3cret@@host/1",
            "redis+unix:///r.sock?pass=s3@cret",
            "redis://u:s3cret@host/1?pass=s3cret",
            "redis://s3cret@host/1",
        ] {
            let shown = redact(url);
            assert!(
                !shown.contains("s3cret") && !shown.contains("cret"),
                "{url} -> {shown}"
            );
        }
        assert_eq!(
            redact("redis://u:p@ss@host:6379/1"),
            "redis://u:***@host:6379/1"
        );
    }
}
