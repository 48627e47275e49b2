//! Connection settings of the Redis backend.

use std::time::Duration;

use hippo_queue_core::config::redact_url;

/// Settings of a [`RedisBackend`](crate::RedisBackend).
///
/// ```
/// use std::time::Duration;
/// use hippo_queue_redis::RedisConfig;
/// // The guide's layout: broker on db 1, results on db 2.
/// let cfg = RedisConfig::new("redis://localhost:6379/1")
///     .results_url("redis://localhost:6379/2")
///     .prefix("hippocampai")
///     .pool_size(32)
///     .recovery_grace(Duration::from_secs(10));
/// assert_eq!(cfg.results_url.as_deref(), Some("redis://localhost:6379/2"));
/// ```
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Broker URL: `redis://[user[:password]@]host[:port][/db]` or `rediss://…` (with
    /// the `tls` feature).
    pub broker_url: String,
    /// Result backend URL; the broker's when `None`.
    pub results_url: Option<String>,
    /// Prefix of every key and channel, so several apps can share a server.
    pub prefix: String,
    /// Most connections the pool opens at once per server. Connections the backend
    /// keeps for itself (one shared multiplexed connection, one blocking connection per
    /// worker, one per control call while it gathers replies) are taken out of the pool,
    /// so the process may hold more than this in total.
    pub pool_size: usize,
    /// How long one Redis reply may take before the connection is considered broken.
    pub response_timeout: Duration,
    /// After a connection failure, recovery of dead workers waits this long, so that
    /// workers cut off by the same outage can beat again before they are judged dead.
    pub recovery_grace: Duration,
    /// How long a dead-lettered loss may wait for its FAILURE record (written by the
    /// worker that recovered it) before any worker's recovery writes it instead: the
    /// recoverer may have died in between.
    pub loss_record_timeout: Duration,
    /// Most entries kept in each queue's dead-letter list (oldest dropped beyond).
    pub dead_letter_cap: u64,
    /// Number of result shards (hash tags) results are spread over.
    pub result_shards: u32,
    /// Approximate number of events kept in the event stream.
    pub event_cap: u64,
    /// Whether `connect` waits for a server that is not reachable yet (false here;
    /// true, as in Celery, through [`RedisConfig::from_core`]).
    pub connection_retry_on_startup: bool,
    /// Retries before `connect` gives up; `None`: forever.
    pub connection_max_retries: Option<u32>,
    /// How often each server's shared connection is checked with `PING`; `None`:
    /// never.
    pub health_check_interval: Option<Duration>,
}

/// Shows every field, with the URLs' passwords hidden.
impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let RedisConfig {
            broker_url,
            results_url,
            prefix,
            pool_size,
            response_timeout,
            recovery_grace,
            loss_record_timeout,
            dead_letter_cap,
            result_shards,
            event_cap,
            connection_retry_on_startup,
            connection_max_retries,
            health_check_interval,
        } = self;
        f.debug_struct("RedisConfig")
            .field("broker_url", &redact_url(broker_url))
            .field("results_url", &results_url.as_deref().map(redact_url))
            .field("prefix", prefix)
            .field("pool_size", pool_size)
            .field("response_timeout", response_timeout)
            .field("recovery_grace", recovery_grace)
            .field("loss_record_timeout", loss_record_timeout)
            .field("dead_letter_cap", dead_letter_cap)
            .field("result_shards", result_shards)
            .field("event_cap", event_cap)
            .field("connection_retry_on_startup", connection_retry_on_startup)
            .field("connection_max_retries", connection_max_retries)
            .field("health_check_interval", health_check_interval)
            .finish()
    }
}

impl RedisConfig {
    /// Settings for a broker URL, results on the same server and database.
    pub fn new(broker_url: impl Into<String>) -> Self {
        RedisConfig {
            broker_url: broker_url.into(),
            results_url: None,
            prefix: "hq".into(),
            pool_size: 16,
            response_timeout: Duration::from_secs(10),
            recovery_grace: Duration::from_secs(10),
            loss_record_timeout: Duration::from_secs(30),
            dead_letter_cap: 100_000,
            result_shards: 64,
            event_cap: 100_000,
            // Fail fast by default (tests, the command line); the guide's variables
            // (`from_core`) wait, as Celery does.
            connection_retry_on_startup: false,
            connection_max_retries: Some(100),
            health_check_interval: None,
        }
    }

    /// Stores results at another URL (another database or server).
    pub fn results_url(mut self, url: impl Into<String>) -> Self {
        self.results_url = Some(url.into());
        self
    }

    /// Sets the key prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the pool size.
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n.max(2);
        self
    }

    /// Sets the reply timeout.
    pub fn response_timeout(mut self, d: Duration) -> Self {
        self.response_timeout = d;
        self
    }

    /// Sets the recovery grace after a connection failure.
    pub fn recovery_grace(mut self, d: Duration) -> Self {
        self.recovery_grace = d;
        self
    }

    /// Sets how long a dead-lettered loss waits for its FAILURE record before another
    /// worker writes it (default 30 s).
    pub fn loss_record_timeout(mut self, d: Duration) -> Self {
        self.loss_record_timeout = d;
        self
    }

    /// Sets how many events the event stream keeps (approximately).
    pub fn event_cap(mut self, n: u64) -> Self {
        self.event_cap = n.max(100);
        self
    }

    /// Sets the number of result shards (hash tags results are spread over; 64).
    pub fn result_shards(mut self, n: u32) -> Self {
        self.result_shards = n.max(1);
        self
    }

    /// Sets whether `connect` waits for a server that is not reachable yet.
    pub fn connection_retry_on_startup(mut self, on: bool) -> Self {
        self.connection_retry_on_startup = on;
        self
    }

    /// Sets how many times `connect` retries before giving up (`None`: forever).
    pub fn connection_max_retries(mut self, n: Option<u32>) -> Self {
        self.connection_max_retries = n;
        self
    }

    /// Sets how often each server's shared connection is checked with `PING`
    /// (`None`: never).
    pub fn health_check_interval(mut self, every: Option<Duration>) -> Self {
        self.health_check_interval = every;
        self
    }

    /// Sets the dead-letter cap per queue.
    pub fn dead_letter_cap(mut self, n: u64) -> Self {
        self.dead_letter_cap = n.max(1);
        self
    }

    /// The settings from the guide's variables: `CELERY_BROKER_URL`,
    /// `CELERY_RESULT_BACKEND` and the connection settings (retry on startup, max
    /// retries, health check interval) of a core
    /// [`Config`](hippo_queue_core::config::Config).
    /// `None` when no broker URL is configured.
    pub fn from_core(config: &hippo_queue_core::config::Config) -> Option<Self> {
        let broker = config.broker_url.as_ref().filter(|u| {
            u.starts_with("redis://")
                || u.starts_with("rediss://")
                || u.starts_with("unix://")
                || u.starts_with("redis+unix://")
        })?;
        let mut cfg = RedisConfig::new(broker.clone());
        cfg.results_url = config.result_backend.clone();
        cfg.connection_retry_on_startup = config.broker_connection_retry_on_startup;
        cfg.connection_max_retries = config.broker_connection_max_retries;
        cfg.health_check_interval = config.redis_backend_health_check_interval;
        Some(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::RedisConfig;

    #[test]
    fn debug_hides_url_passwords() {
        let cfg = RedisConfig::new("redis://u:s3cret@host:6379/1")
            .results_url("redis+unix:///r.sock?pass=s3cret");
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("redis://u:***@host:6379/1"), "{shown}");
        assert!(shown.contains("pool_size"), "{shown}");
    }
}
