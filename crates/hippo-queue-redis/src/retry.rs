//! Waiting for Redis at startup, and keeping idle shared connections checked.
//!
//! A worker, beat or API started before Redis (a container restart, a deploy order)
//! waits for it, as Celery's `broker_connection_retry_on_startup` and
//! `broker_connection_max_retries` say: one log line per failed attempt, with the URL's
//! password hidden, and a backoff that doubles from half a second up to
//! [`MAX_BACKOFF`]. An invalid URL is never retried.
//!
//! With `redis_backend_health_check_interval`, a task sends `PING` on each server's
//! shared connection at that interval; a failed `PING` drops the connection (the next
//! command opens a new one) instead of leaving the first real command to find it dead.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::config::RedisConfig;
use crate::conn::{ConnectError, Server, redact};

/// The longest wait between two connection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// The first wait between two connection attempts.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// How startup connection failures are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StartupRetry {
    /// Retry at all.
    pub on_startup: bool,
    /// Retries after the first attempt; `None` retries forever.
    pub max_retries: Option<u32>,
}

impl StartupRetry {
    pub(crate) fn from_config(config: &RedisConfig) -> Self {
        StartupRetry {
            on_startup: config.connection_retry_on_startup,
            max_retries: config.connection_max_retries,
        }
    }

    /// How long to wait before attempt `failed + 1`, after `failed` failed attempts
    /// (`failed >= 1`), or `None` to give up.
    pub(crate) fn delay(&self, failed: u32) -> Option<Duration> {
        if !self.on_startup || self.max_retries.is_some_and(|max| failed > max) {
            return None;
        }
        let doublings = failed.saturating_sub(1).min(16);
        Some((FIRST_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF))
    }
}

/// [`Server::connect`], retried by `retry` while the server is unreachable.
pub(crate) async fn connect_server(
    url: &str,
    config: &RedisConfig,
    retry: StartupRetry,
) -> Result<Server, ConnectError> {
    let mut failed = 0u32;
    loop {
        let err = match Server::connect(url, config.pool_size, config.response_timeout).await {
            Ok(server) => {
                if failed > 0 {
                    tracing::info!(url = %redact(url), attempts = failed + 1, "connected to Redis");
                }
                return Ok(server);
            }
            Err(e @ ConnectError::InvalidUrl { .. }) => return Err(e),
            Err(e) => e,
        };
        failed += 1;
        let Some(wait) = retry.delay(failed) else {
            return Err(if failed == 1 {
                err
            } else {
                ConnectError::GaveUp {
                    url: redact(url),
                    attempts: failed,
                    reason: err.to_string(),
                }
            });
        };
        tracing::warn!(
            url = %redact(url),
            attempt = failed,
            max_retries = ?retry.max_retries,
            retry_in = ?wait,
            error = %err,
            "Redis is not reachable; retrying"
        );
        tokio::time::sleep(wait).await;
    }
}

/// Connects to the broker server and, when it is another one, the results server,
/// waiting for them as `config` says, and starts their health checks. This is the
/// connection step of [`RedisBackend::connect`](crate::RedisBackend::connect).
pub(crate) async fn connect_servers(
    config: &RedisConfig,
) -> Result<(Arc<Server>, Arc<Server>), ConnectError> {
    let retry = StartupRetry::from_config(config);
    let broker = Arc::new(connect_server(&config.broker_url, config, retry).await?);
    let results = match &config.results_url {
        Some(url) if *url != config.broker_url => {
            Arc::new(connect_server(url, config, retry).await?)
        }
        _ => broker.clone(),
    };
    if let Some(every) = config.health_check_interval {
        spawn_health_check(&broker, every);
        if !Arc::ptr_eq(&broker, &results) {
            spawn_health_check(&results, every);
        }
    }
    Ok((broker, results))
}

/// Sends `PING` on the server's shared connection every `every` until the server is
/// dropped. A failure drops the shared connection, so the next command opens a new one.
pub(crate) fn spawn_health_check(server: &Arc<Server>, every: Duration) {
    let weak: Weak<Server> = Arc::downgrade(server);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(server) = weak.upgrade() else { return };
            if let Err(e) = ping(&server).await {
                tracing::warn!(url = %server.url, error = %e, "Redis health check failed; reconnecting on next use");
            }
        }
    });
}

async fn ping(server: &Server) -> Result<(), hippo_queue_core::BackendError> {
    let mut conn = server.conn().await?;
    redis::cmd("PING")
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| server.error(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(on_startup: bool, max_retries: Option<u32>) -> StartupRetry {
        StartupRetry {
            on_startup,
            max_retries,
        }
    }

    #[test]
    fn no_retry_when_disabled() {
        assert_eq!(policy(false, Some(100)).delay(1), None);
        assert_eq!(policy(false, None).delay(1), None);
    }

    #[test]
    fn gives_up_after_max_retries() {
        let p = policy(true, Some(2));
        assert!(p.delay(1).is_some() && p.delay(2).is_some());
        assert_eq!(p.delay(3), None);
        assert_eq!(policy(true, Some(0)).delay(1), None);
    }

    #[test]
    fn retries_forever_without_a_maximum() {
        assert_eq!(policy(true, None).delay(u32::MAX), Some(MAX_BACKOFF));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = policy(true, None);
        let waits: Vec<_> = (1..=6).filter_map(|n| p.delay(n)).collect();
        assert_eq!(
            waits,
            [500, 1000, 2000, 4000, 4000, 4000].map(Duration::from_millis)
        );
    }

    #[tokio::test]
    async fn waits_for_a_server_started_later() {
        let mut server = crate::test_server::RedisServer::start();
        let url = server.url(1);
        server.kill();
        let config = RedisConfig::new(url.clone())
            .connection_retry_on_startup(true)
            .connection_max_retries(Some(20));
        let restart = tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_secs(2));
            server.restart();
            server
        });
        let started = std::time::Instant::now();
        let connected = connect_servers(&config).await;
        let _server = restart.await.expect("restart");
        let (broker, _) = connected.expect("connected once the server is up");
        assert!(started.elapsed() >= Duration::from_secs(2));
        ping(&broker).await.expect("answers");
    }

    #[tokio::test]
    async fn gives_up_with_a_clear_error() {
        let mut server = crate::test_server::RedisServer::start();
        let url = server.url(1).replace("redis://", "redis://u:s3cret@");
        server.kill();
        let config = RedisConfig::new(url)
            .connection_retry_on_startup(true)
            .connection_max_retries(Some(2));
        let err = connect_servers(&config).await.err().expect("gave up");
        assert!(
            matches!(err, ConnectError::GaveUp { attempts: 3, .. }),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("3 attempts") && !text.contains("s3cret"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn fails_at_once_without_retry() {
        let mut server = crate::test_server::RedisServer::start();
        let url = server.url(1);
        server.kill();
        let err = connect_servers(&RedisConfig::new(url)).await.err();
        assert!(
            matches!(err, Some(ConnectError::Unreachable { .. })),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn health_check_reconnects_after_a_restart() {
        let mut server = crate::test_server::RedisServer::start();
        let config =
            RedisConfig::new(server.url(1)).health_check_interval(Some(Duration::from_millis(200)));
        let (broker, _) = connect_servers(&config).await.expect("connected");
        server.restart();
        // The health check finds the dead shared connection and drops it; the next
        // command then succeeds on a new one.
        tokio::time::sleep(Duration::from_millis(700)).await;
        ping(&broker)
            .await
            .expect("the shared connection was replaced");
    }
}
