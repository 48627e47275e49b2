//! Configuration: a builder-style struct, the guide's environment variables, and the
//! guide's presets.
//!
//! | variable | field | default |
//! | --- | --- | --- |
//! | `HIPPO_QUEUE_PRESET` | base preset: `development`, `production-medium`, `production-high`, `cpu-intensive` | none |
//! | `CELERY_BROKER_URL` | [`Config::broker_url`] | none (in-memory) |
//! | `CELERY_RESULT_BACKEND` | [`Config::result_backend`] | none (same as broker) |
//! | `CELERY_WORKER_CONCURRENCY` | [`Config::worker_concurrency`] | CPU count |
//! | `CELERY_WORKER_PREFETCH_MULTIPLIER` | [`Config::worker_prefetch_multiplier`] | 4 |
//! | `CELERY_WORKER_MAX_TASKS_PER_CHILD` | [`Config::worker_max_tasks_per_child`] | none |
//! | `CELERY_TASK_ACKS_LATE` | [`Config::task_acks_late`] | false |
//! | `CELERY_TASK_SOFT_TIME_LIMIT` | [`Config::task_soft_time_limit`] (seconds) | none |
//! | `CELERY_TASK_TIME_LIMIT` | [`Config::task_time_limit`] (seconds) | none |
//! | `CELERY_TASK_REJECT_ON_WORKER_LOST` | [`Config::task_reject_on_worker_lost`] | false |
//! | `CELERY_RESULT_EXPIRES` | [`Config::result_expires`] (seconds) | 3600 |
//! | `CELERY_RESULT_COMPRESSION` | [`Config::result_compression`]: `none`, `zstd`, or `gzip`/`zlib`/`bzip2` (compressed with zstd) | none |
//! | `CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP` | [`Config::broker_connection_retry_on_startup`] | true |
//! | `CELERY_BROKER_CONNECTION_MAX_RETRIES` | [`Config::broker_connection_max_retries`] (0: forever) | 100 |
//! | `CELERY_REDIS_BACKEND_HEALTH_CHECK_INTERVAL` | [`Config::redis_backend_health_check_interval`] (seconds; 0: off) | off |
//!
//! `CELERY_WORKER_MAX_TASKS_PER_CHILD` is accepted and validated; it takes effect with
//! the process pool. A bad value is an error naming the variable and the value:
//!
//! ```
//! use hippo_queue_core::config::Config;
//! let env = |k: &str| match k {
//!     "CELERY_WORKER_CONCURRENCY" => Some("eight".to_string()),
//!     _ => None,
//! };
//! let err = Config::from_lookup(env).unwrap_err();
//! assert!(err.to_string().contains("CELERY_WORKER_CONCURRENCY"));
//! assert!(err.to_string().contains("eight"));
//! ```

use std::time::Duration;

use crate::defaults;
use crate::options::{Compression, TaskOptions};

/// A configuration value that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// An environment variable has a value that cannot be used.
    #[error("{var}={value:?} is invalid: {reason}")]
    InvalidVar {
        /// The variable.
        var: String,
        /// Its value; for a URL, with the password hidden ([`redact_url`]).
        value: String,
        /// What is expected.
        reason: String,
    },
    /// Settings contradict each other.
    #[error("invalid configuration: {0}")]
    Inconsistent(String),
}

/// The guide's configuration presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Preset {
    /// concurrency 2, prefetch 2, max tasks per child 100, acks early.
    Development,
    /// concurrency 4, prefetch 4, max tasks per child 1000, acks late.
    ProductionMedium,
    /// concurrency 8, prefetch 2, max tasks per child 500, acks late.
    ProductionHigh,
    /// concurrency = CPU count, prefetch 1, max tasks per child 200.
    CpuIntensive,
}

impl std::str::FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "development" | "dev" => Ok(Preset::Development),
            "production-medium" | "production" | "medium" => Ok(Preset::ProductionMedium),
            "production-high" | "high" => Ok(Preset::ProductionHigh),
            "cpu-intensive" | "cpu" => Ok(Preset::CpuIntensive),
            _ => Err(
                "expected development, production-medium, production-high or cpu-intensive"
                    .to_string(),
            ),
        }
    }
}

/// Queue-wide configuration: connection URLs, worker sizing, task defaults and result
/// settings.
///
/// ```
/// use std::time::Duration;
/// use hippo_queue_core::config::{Config, Preset};
/// let cfg = Config::preset(Preset::ProductionMedium)
///     .task_soft_time_limit(Duration::from_secs(300))
///     .task_time_limit(Duration::from_secs(600));
/// assert_eq!(cfg.worker_concurrency, 4);
/// assert!(cfg.task_acks_late);
/// cfg.validate().unwrap();
/// ```
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// Broker URL (`redis://host:6379/1`); `None` for the in-memory backend.
    pub broker_url: Option<String>,
    /// Result backend URL; `None` for the broker's server.
    pub result_backend: Option<String>,
    /// Tasks run at once by one worker.
    pub worker_concurrency: usize,
    /// Messages reserved per concurrency slot.
    pub worker_prefetch_multiplier: usize,
    /// Tasks a pool child runs before it is replaced (process pool).
    pub worker_max_tasks_per_child: Option<u32>,
    /// Default `acks_late`.
    pub task_acks_late: bool,
    /// Default soft time limit.
    pub task_soft_time_limit: Option<Duration>,
    /// Default hard time limit.
    pub task_time_limit: Option<Duration>,
    /// Default `reject_on_worker_lost`.
    pub task_reject_on_worker_lost: bool,
    /// How long results are kept.
    pub result_expires: Duration,
    /// Default result compression.
    pub result_compression: Compression,
    /// Whether a process started before its broker waits for it (Celery's
    /// `broker_connection_retry_on_startup`).
    pub broker_connection_retry_on_startup: bool,
    /// How many times a startup connection is retried before giving up; `None`
    /// retries forever (Celery's `broker_connection_max_retries`).
    pub broker_connection_max_retries: Option<u32>,
    /// How often idle shared connections are checked with `PING`; `None`: never
    /// (Celery's `redis_backend_health_check_interval`).
    pub redis_backend_health_check_interval: Option<Duration>,
}

/// Shows every field, with the URLs' passwords hidden ([`redact_url`]).
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Config {
            broker_url,
            result_backend,
            worker_concurrency,
            worker_prefetch_multiplier,
            worker_max_tasks_per_child,
            task_acks_late,
            task_soft_time_limit,
            task_time_limit,
            task_reject_on_worker_lost,
            result_expires,
            result_compression,
            broker_connection_retry_on_startup,
            broker_connection_max_retries,
            redis_backend_health_check_interval,
        } = self;
        f.debug_struct("Config")
            .field("broker_url", &broker_url.as_deref().map(redact_url))
            .field("result_backend", &result_backend.as_deref().map(redact_url))
            .field("worker_concurrency", worker_concurrency)
            .field("worker_prefetch_multiplier", worker_prefetch_multiplier)
            .field("worker_max_tasks_per_child", worker_max_tasks_per_child)
            .field("task_acks_late", task_acks_late)
            .field("task_soft_time_limit", task_soft_time_limit)
            .field("task_time_limit", task_time_limit)
            .field("task_reject_on_worker_lost", task_reject_on_worker_lost)
            .field("result_expires", result_expires)
            .field("result_compression", result_compression)
            .field(
                "broker_connection_retry_on_startup",
                broker_connection_retry_on_startup,
            )
            .field(
                "broker_connection_max_retries",
                broker_connection_max_retries,
            )
            .field(
                "redis_backend_health_check_interval",
                redis_backend_health_check_interval,
            )
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            broker_url: None,
            result_backend: None,
            worker_concurrency: cpu_count(),
            worker_prefetch_multiplier: defaults::PREFETCH_MULTIPLIER,
            worker_max_tasks_per_child: None,
            task_acks_late: false,
            task_soft_time_limit: None,
            task_time_limit: None,
            task_reject_on_worker_lost: false,
            result_expires: defaults::RESULT_EXPIRES,
            result_compression: Compression::None,
            // Celery's defaults: wait for the broker at startup, 100 retries.
            broker_connection_retry_on_startup: true,
            broker_connection_max_retries: Some(100),
            // Celery's default: not configured.
            redis_backend_health_check_interval: None,
        }
    }
}

fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl Config {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// One of the guide's presets.
    pub fn preset(preset: Preset) -> Self {
        let base = Config::default();
        match preset {
            Preset::Development => Config {
                worker_concurrency: 2,
                worker_prefetch_multiplier: 2,
                worker_max_tasks_per_child: Some(100),
                task_acks_late: false,
                ..base
            },
            Preset::ProductionMedium => Config {
                worker_concurrency: 4,
                worker_prefetch_multiplier: defaults::PREFETCH_MULTIPLIER,
                worker_max_tasks_per_child: Some(1000),
                task_acks_late: true,
                task_reject_on_worker_lost: true,
                ..base
            },
            Preset::ProductionHigh => Config {
                worker_concurrency: 8,
                worker_prefetch_multiplier: 2,
                worker_max_tasks_per_child: Some(500),
                task_acks_late: true,
                task_reject_on_worker_lost: true,
                ..base
            },
            Preset::CpuIntensive => Config {
                worker_concurrency: cpu_count(),
                worker_prefetch_multiplier: 1,
                worker_max_tasks_per_child: Some(200),
                ..base
            },
        }
    }

    /// Reads the process environment (see the module docs).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads variables through `lookup`, for tests and custom sources.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let mut cfg = match get("HIPPO_QUEUE_PRESET") {
            Some(v) => Config::preset(v.parse().map_err(|reason| ConfigError::InvalidVar {
                var: "HIPPO_QUEUE_PRESET".into(),
                value: v.clone(),
                reason,
            })?),
            None => Config::default(),
        };
        if let Some(v) = get("CELERY_BROKER_URL") {
            cfg.broker_url = Some(url("CELERY_BROKER_URL", &v)?);
        }
        if let Some(v) = get("CELERY_RESULT_BACKEND") {
            cfg.result_backend = Some(url("CELERY_RESULT_BACKEND", &v)?);
        }
        if let Some(v) = get("CELERY_WORKER_CONCURRENCY") {
            cfg.worker_concurrency = positive("CELERY_WORKER_CONCURRENCY", &v)? as usize;
        }
        if let Some(v) = get("CELERY_WORKER_PREFETCH_MULTIPLIER") {
            cfg.worker_prefetch_multiplier =
                positive("CELERY_WORKER_PREFETCH_MULTIPLIER", &v)? as usize;
        }
        if let Some(v) = get("CELERY_WORKER_MAX_TASKS_PER_CHILD") {
            cfg.worker_max_tasks_per_child =
                Some(positive("CELERY_WORKER_MAX_TASKS_PER_CHILD", &v)? as u32);
        }
        if let Some(v) = get("CELERY_TASK_ACKS_LATE") {
            cfg.task_acks_late = boolean("CELERY_TASK_ACKS_LATE", &v)?;
        }
        if let Some(v) = get("CELERY_TASK_SOFT_TIME_LIMIT") {
            cfg.task_soft_time_limit = Some(seconds("CELERY_TASK_SOFT_TIME_LIMIT", &v)?);
        }
        if let Some(v) = get("CELERY_TASK_TIME_LIMIT") {
            cfg.task_time_limit = Some(seconds("CELERY_TASK_TIME_LIMIT", &v)?);
        }
        if let Some(v) = get("CELERY_TASK_REJECT_ON_WORKER_LOST") {
            cfg.task_reject_on_worker_lost = boolean("CELERY_TASK_REJECT_ON_WORKER_LOST", &v)?;
        }
        if let Some(v) = get("CELERY_RESULT_EXPIRES") {
            cfg.result_expires = seconds("CELERY_RESULT_EXPIRES", &v)?;
        }
        if let Some(v) = get("CELERY_RESULT_COMPRESSION") {
            cfg.result_compression = compression("CELERY_RESULT_COMPRESSION", &v)?;
        }
        if let Some(v) = get("CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP") {
            cfg.broker_connection_retry_on_startup =
                boolean("CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP", &v)?;
        }
        if let Some(v) = get("CELERY_BROKER_CONNECTION_MAX_RETRIES") {
            cfg.broker_connection_max_retries =
                max_retries("CELERY_BROKER_CONNECTION_MAX_RETRIES", &v)?;
        }
        if let Some(v) = get("CELERY_REDIS_BACKEND_HEALTH_CHECK_INTERVAL") {
            cfg.redis_backend_health_check_interval =
                seconds_or_off("CELERY_REDIS_BACKEND_HEALTH_CHECK_INTERVAL", &v)?;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.worker_concurrency == 0 {
            return Err(ConfigError::Inconsistent(
                "worker_concurrency must be at least 1".into(),
            ));
        }
        if self.worker_prefetch_multiplier == 0 {
            return Err(ConfigError::Inconsistent(
                "worker_prefetch_multiplier must be at least 1".into(),
            ));
        }
        if let (Some(soft), Some(hard)) = (self.task_soft_time_limit, self.task_time_limit)
            && hard <= soft
        {
            return Err(ConfigError::Inconsistent(format!(
                "task_time_limit ({}s) must be above task_soft_time_limit ({}s)",
                hard.as_secs_f64(),
                soft.as_secs_f64()
            )));
        }
        Ok(())
    }

    /// Sets the broker URL.
    pub fn broker_url(mut self, url: impl Into<String>) -> Self {
        self.broker_url = Some(url.into());
        self
    }

    /// Sets the result backend URL.
    pub fn result_backend(mut self, url: impl Into<String>) -> Self {
        self.result_backend = Some(url.into());
        self
    }

    /// Sets the worker concurrency.
    pub fn worker_concurrency(mut self, n: usize) -> Self {
        self.worker_concurrency = n;
        self
    }

    /// Sets the prefetch multiplier.
    pub fn worker_prefetch_multiplier(mut self, n: usize) -> Self {
        self.worker_prefetch_multiplier = n;
        self
    }

    /// Sets the default `acks_late`.
    pub fn task_acks_late(mut self, on: bool) -> Self {
        self.task_acks_late = on;
        self
    }

    /// Sets the default soft time limit.
    pub fn task_soft_time_limit(mut self, d: Duration) -> Self {
        self.task_soft_time_limit = Some(d);
        self
    }

    /// Sets the default hard time limit.
    pub fn task_time_limit(mut self, d: Duration) -> Self {
        self.task_time_limit = Some(d);
        self
    }

    /// Sets the default `reject_on_worker_lost`.
    pub fn task_reject_on_worker_lost(mut self, on: bool) -> Self {
        self.task_reject_on_worker_lost = on;
        self
    }

    /// Sets how long results are kept.
    pub fn result_expires(mut self, d: Duration) -> Self {
        self.result_expires = d;
        self
    }

    /// Sets the default result compression.
    pub fn result_compression(mut self, c: Compression) -> Self {
        self.result_compression = c;
        self
    }

    /// Sets whether a process started before its broker waits for it.
    pub fn broker_connection_retry_on_startup(mut self, on: bool) -> Self {
        self.broker_connection_retry_on_startup = on;
        self
    }

    /// Sets how many startup connection retries are made (`None`: forever).
    pub fn broker_connection_max_retries(mut self, n: Option<u32>) -> Self {
        self.broker_connection_max_retries = n;
        self
    }

    /// Sets how often idle shared connections are checked (`None`: never).
    pub fn redis_backend_health_check_interval(mut self, every: Option<Duration>) -> Self {
        self.redis_backend_health_check_interval = every;
        self
    }

    /// The task defaults these settings imply (the base of every task's options).
    pub fn task_defaults(&self) -> TaskOptions {
        TaskOptions {
            priority: Some(0),
            max_retries: Some(defaults::MAX_RETRIES),
            autoretry_for: Some(Vec::new()),
            retry_delay: Some(defaults::RETRY_DELAY),
            retry_backoff: None,
            retry_backoff_max: Some(defaults::RETRY_BACKOFF_MAX),
            retry_jitter: Some(defaults::RETRY_JITTER),
            soft_time_limit: self.task_soft_time_limit,
            time_limit: self.task_time_limit,
            acks_late: Some(self.task_acks_late),
            reject_on_worker_lost: Some(self.task_reject_on_worker_lost),
            ignore_result: Some(false),
            compression: Some(self.result_compression),
            result_expires: Some(self.result_expires),
            track_started: Some(false),
            queue: None,
            routing_key: None,
        }
    }
}

/// Query parameters whose value is a credential (redis-rs reads `pass` and `user` on
/// `unix://` and `redis+unix://` URLs).
const SECRET_PARAMS: [&str; 5] = ["pass", "password", "auth", "token", "secret"];

/// A URL fit for messages and logs: the password of `user:password@` (or the whole
/// user part when it has no `:`) and the values of `pass=`/`password=`-style query
/// parameters become `***`. Over-hides rather than under-hides on malformed input.
///
/// ```
/// use hippo_queue_core::config::redact_url;
/// assert_eq!(redact_url("redis://u:s3cret@host:6379/1"), "redis://u:***@host:6379/1");
/// assert_eq!(redact_url("unix:///r.sock?pass=s3cret&db=1"), "unix:///r.sock?pass=***&db=1");
/// assert_eq!(redact_url("redis://host:6379/1"), "redis://host:6379/1");
/// ```
pub fn redact_url(url: &str) -> String {
    let start = url.find("://").map_or(0, |s| s + 3);
    let mut hide = vec![false; url.len()];
    // The user part: up to the last '@' (a password may hold '@').
    if let Some(at) = url[start..].rfind('@').map(|a| start + a) {
        let from = url[start..at].find(':').map_or(start, |c| start + c + 1);
        hide[from..at].iter_mut().for_each(|h| *h = true);
    }
    // `?pass=…` / `&password=…`: hide up to the next '&' or '#'.
    for (i, c) in url.char_indices().skip_while(|&(i, _)| i < start) {
        if c != '?' && c != '&' {
            continue;
        }
        let rest = &url[i + 1..];
        let Some(eq) = rest.find('=') else { continue };
        let key = &rest[..eq];
        if key.contains(['&', '#', '?'])
            || !SECRET_PARAMS.iter().any(|k| k.eq_ignore_ascii_case(key))
        {
            continue;
        }
        let from = i + 1 + eq + 1;
        let to = url[from..].find(['&', '#']).map_or(url.len(), |e| from + e);
        hide[from..to].iter_mut().for_each(|h| *h = true);
    }
    let mut out = String::with_capacity(url.len());
    let mut hiding = false;
    for (i, c) in url.char_indices() {
        if hide[i] {
            if !hiding {
                out.push_str("***");
            }
            hiding = true;
        } else {
            hiding = false;
            out.push(c);
        }
    }
    out
}

fn invalid(var: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError::InvalidVar {
        var: var.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

fn positive(var: &str, v: &str) -> Result<u64, ConfigError> {
    match v.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(invalid(var, v, "expected a whole number of at least 1")),
    }
}

/// A retry count; 0 (or `none`) is "forever", as in Celery's documentation.
fn max_retries(var: &str, v: &str) -> Result<Option<u32>, ConfigError> {
    let v = v.trim();
    if v.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    match v.parse::<u32>() {
        Ok(0) => Ok(None),
        Ok(n) => Ok(Some(n)),
        Err(_) => Err(invalid(
            var,
            v,
            "expected a whole number of retries (0 or none: retry forever)",
        )),
    }
}

/// Seconds, where 0 turns the feature off.
fn seconds_or_off(var: &str, v: &str) -> Result<Option<Duration>, ConfigError> {
    if v.trim().parse::<f64>() == Ok(0.0) {
        return Ok(None);
    }
    seconds(var, v).map(Some)
}

fn boolean(var: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(var, v, "expected true or false")),
    }
}

fn seconds(var: &str, v: &str) -> Result<Duration, ConfigError> {
    match v.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s < 1e12 => Ok(Duration::from_secs_f64(s)),
        _ => Err(invalid(var, v, "expected a positive number of seconds")),
    }
}

fn compression(var: &str, v: &str) -> Result<Compression, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "none" | "off" | "false" => Ok(Compression::None),
        "zstd" | "gzip" | "zlib" | "bzip2" => Ok(Compression::Zstd),
        _ => Err(invalid(var, v, "expected none, zstd or gzip")),
    }
}

fn url(var: &str, v: &str) -> Result<String, ConfigError> {
    let v = v.trim();
    let scheme_ok = [
        "redis://",
        "rediss://",
        "memory://",
        "redis+unix://",
        "unix://",
    ]
    .iter()
    .any(|s| v.starts_with(s));
    if scheme_ok {
        Ok(v.to_string())
    } else {
        Err(invalid(
            var,
            &redact_url(v),
            "expected a redis://, rediss://, redis+unix://, unix:// or memory:// URL",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn guide_variables_are_read() {
        let cfg = Config::from_lookup(lookup(&[
            ("CELERY_BROKER_URL", "redis://localhost:6379/1"),
            ("CELERY_RESULT_BACKEND", "redis://localhost:6379/2"),
            ("CELERY_WORKER_CONCURRENCY", "4"),
            ("CELERY_WORKER_PREFETCH_MULTIPLIER", "4"),
            ("CELERY_WORKER_MAX_TASKS_PER_CHILD", "1000"),
            ("CELERY_TASK_ACKS_LATE", "true"),
            ("CELERY_TASK_SOFT_TIME_LIMIT", "300"),
            ("CELERY_TASK_TIME_LIMIT", "600"),
            ("CELERY_TASK_REJECT_ON_WORKER_LOST", "true"),
            ("CELERY_RESULT_EXPIRES", "3600"),
            ("CELERY_RESULT_COMPRESSION", "gzip"),
        ]))
        .unwrap();
        assert_eq!(cfg.broker_url.as_deref(), Some("redis://localhost:6379/1"));
        assert_eq!(
            cfg.result_backend.as_deref(),
            Some("redis://localhost:6379/2")
        );
        assert_eq!(cfg.worker_concurrency, 4);
        assert_eq!(cfg.worker_max_tasks_per_child, Some(1000));
        assert!(cfg.task_acks_late && cfg.task_reject_on_worker_lost);
        assert_eq!(cfg.task_soft_time_limit, Some(Duration::from_secs(300)));
        assert_eq!(cfg.task_time_limit, Some(Duration::from_secs(600)));
        assert_eq!(cfg.result_compression, Compression::Zstd);
        let d = cfg.task_defaults();
        assert_eq!(d.acks_late, Some(true));
        assert_eq!(d.max_retries, Some(3));
    }

    #[test]
    fn bad_values_name_the_variable_and_value() {
        for (var, value) in [
            ("CELERY_WORKER_CONCURRENCY", "0"),
            ("CELERY_WORKER_PREFETCH_MULTIPLIER", "-1"),
            ("CELERY_WORKER_MAX_TASKS_PER_CHILD", "lots"),
            ("CELERY_TASK_ACKS_LATE", "maybe"),
            ("CELERY_TASK_SOFT_TIME_LIMIT", "5m"),
            ("CELERY_RESULT_EXPIRES", "NaN"),
            ("CELERY_RESULT_COMPRESSION", "lz4"),
            ("CELERY_BROKER_URL", "amqp://localhost//"),
            ("HIPPO_QUEUE_PRESET", "turbo"),
        ] {
            let err = Config::from_lookup(lookup(&[(var, value)])).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(var) && text.contains(value), "{text}");
        }
    }

    #[test]
    fn connection_variables_are_read() {
        let d = Config::default();
        assert!(d.broker_connection_retry_on_startup);
        assert_eq!(d.broker_connection_max_retries, Some(100));
        assert_eq!(d.redis_backend_health_check_interval, None);
        let cfg = Config::from_lookup(lookup(&[
            ("CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP", "false"),
            ("CELERY_BROKER_CONNECTION_MAX_RETRIES", "7"),
            ("CELERY_REDIS_BACKEND_HEALTH_CHECK_INTERVAL", "25"),
        ]))
        .unwrap();
        assert!(!cfg.broker_connection_retry_on_startup);
        assert_eq!(cfg.broker_connection_max_retries, Some(7));
        assert_eq!(
            cfg.redis_backend_health_check_interval,
            Some(Duration::from_secs(25))
        );
        let forever = Config::from_lookup(lookup(&[
            ("CELERY_BROKER_CONNECTION_MAX_RETRIES", "0"),
            ("CELERY_REDIS_BACKEND_HEALTH_CHECK_INTERVAL", "0"),
        ]))
        .unwrap();
        assert_eq!(forever.broker_connection_max_retries, None);
        assert_eq!(forever.redis_backend_health_check_interval, None);
        for (var, value) in [
            ("CELERY_BROKER_CONNECTION_MAX_RETRIES", "-1"),
            ("CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP", "sometimes"),
            ("CELERY_REDIS_BACKEND_HEALTH_CHECK_INTERVAL", "inf"),
        ] {
            let err = Config::from_lookup(lookup(&[(var, value)])).unwrap_err();
            assert!(err.to_string().contains(var), "{err}");
        }
    }

    #[test]
    fn bad_urls_do_not_echo_passwords() {
        for (var, value) in [
            ("CELERY_BROKER_URL", "amqp://guest:s3cret@localhost//"),
            ("CELERY_RESULT_BACKEND", "rpc://u:s3cret@host"),
            ("CELERY_BROKER_URL", "localhost?pass=s3cret"),
        ] {
            let err = Config::from_lookup(lookup(&[(var, value)])).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(var), "{text}");
            assert!(!text.contains("s3cret"), "{text}");
            assert!(!format!("{err:?}").contains("s3cret"), "{err:?}");
        }
    }

    #[test]
    fn debug_hides_url_passwords() {
        let cfg = Config::default()
            .broker_url("redis://u:s3cret@host:6379/1")
            .result_backend("redis+unix:///r.sock?db=2&pass=s3cret");
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("redis://u:***@host:6379/1"), "{shown}");
        assert!(shown.contains("worker_concurrency"), "{shown}");
    }

    #[test]
    fn hard_limit_must_exceed_soft() {
        let err = Config::from_lookup(lookup(&[
            ("CELERY_TASK_SOFT_TIME_LIMIT", "3600"),
            ("CELERY_TASK_TIME_LIMIT", "600"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("must be above"), "{err}");
    }

    #[test]
    fn presets_match_the_guide() {
        let dev = Config::preset(Preset::Development);
        assert_eq!(
            (
                dev.worker_concurrency,
                dev.worker_prefetch_multiplier,
                dev.worker_max_tasks_per_child,
                dev.task_acks_late
            ),
            (2, 2, Some(100), false)
        );
        let med = Config::preset(Preset::ProductionMedium);
        assert_eq!(
            (
                med.worker_concurrency,
                med.worker_prefetch_multiplier,
                med.worker_max_tasks_per_child,
                med.task_acks_late
            ),
            (4, 4, Some(1000), true)
        );
        let high = Config::preset(Preset::ProductionHigh);
        assert_eq!(
            (
                high.worker_concurrency,
                high.worker_prefetch_multiplier,
                high.worker_max_tasks_per_child,
                high.task_acks_late
            ),
            (8, 2, Some(500), true)
        );
        let cpu = Config::preset(Preset::CpuIntensive);
        assert_eq!(cpu.worker_prefetch_multiplier, 1);
        assert_eq!(cpu.worker_max_tasks_per_child, Some(200));
        let from_env = Config::from_lookup(lookup(&[
            ("HIPPO_QUEUE_PRESET", "production-high"),
            ("CELERY_WORKER_CONCURRENCY", "16"),
        ]))
        .unwrap();
        assert_eq!(from_env.worker_concurrency, 16);
        assert_eq!(from_env.worker_prefetch_multiplier, 2);
    }
}
