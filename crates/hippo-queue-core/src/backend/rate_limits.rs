//! Rate limits shared by every worker: the [`RateLimits`] capability and the
//! [`RateLimit`] it stores.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::BackendError;
use super::control_bus::InvalidCommand;

/// A rate limit: at most `count` task starts per `per`, across all workers.
///
/// ```
/// use std::time::Duration;
/// use hippo_queue_core::control::RateLimit;
/// let r: RateLimit = "100/m".parse().unwrap();
/// assert_eq!(r.interval(), Duration::from_millis(600));
/// assert!("ten/s".parse::<RateLimit>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Starts allowed per period.
    pub count: u32,
    /// The period, in seconds (1, 60 or 3600).
    pub per_secs: u32,
}

impl RateLimit {
    /// The spacing between two starts.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(u64::from(self.per_secs)) / self.count.max(1)
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.per_secs {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl std::str::FromStr for RateLimit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("invalid rate limit {s:?}: expected N/s, N/m or N/h with N >= 1");
        let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        let per_secs = match unit.trim() {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(bad());
        }
        let rate = RateLimit { count, per_secs };
        rate.check().map_err(|e| e.to_string())?;
        Ok(rate)
    }
}
/// The finest rate limit: one start per millisecond.
pub const MAX_RATE_PER_SEC: u64 = 1000;

impl RateLimit {
    /// Checks the limit is `N/s`, `N/m` or `N/h`, `N >= 1`, and no finer than
    /// [`MAX_RATE_PER_SEC`] (the backends count in milliseconds).
    pub fn check(&self) -> Result<(), InvalidCommand> {
        let per_ok = matches!(self.per_secs, 1 | 60 | 3600);
        let fine_ok = u64::from(self.count) <= MAX_RATE_PER_SEC * u64::from(self.per_secs);
        if per_ok && self.count >= 1 && fine_ok {
            Ok(())
        } else {
            Err(InvalidCommand::RateOutOfRange {
                count: self.count,
                per_secs: self.per_secs,
            })
        }
    }
}

/// Task start rates shared by every worker (Celery's `rate_limit`).
#[async_trait]
pub trait RateLimits: Send + Sync + 'static {
    /// Stores (or clears) a task's rate limit.
    async fn set_rate_limit(&self, task: &str, rate: Option<RateLimit>)
    -> Result<(), BackendError>;

    /// The rate limits in force, by task name.
    async fn rate_limits(&self) -> Result<Vec<(String, RateLimit)>, BackendError>;

    /// Takes a start slot of a rate-limited task (shared by all workers): returns zero
    /// when the task may start now, or how long to wait before asking again.
    async fn acquire_rate(&self, task: &str, rate: RateLimit) -> Result<Duration, BackendError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rate_limits_parse() {
        assert_eq!(
            "10/s".parse::<RateLimit>().unwrap().interval(),
            Duration::from_millis(100)
        );
        assert_eq!(
            "1000/h".parse::<RateLimit>().unwrap().interval(),
            Duration::from_millis(3600)
        );
        assert_eq!("100/m".parse::<RateLimit>().unwrap().to_string(), "100/m");
        for bad in ["", "10", "0/s", "-1/s", "10/d", "x/s"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
    }

    #[test]
    fn too_fine_rate_limits_do_not_parse() {
        assert!("1000/s".parse::<RateLimit>().is_ok());
        assert!("60000/m".parse::<RateLimit>().is_ok());
        let err = "1001/s".parse::<RateLimit>().expect_err("refused");
        assert!(err.contains("at most 1000 starts a second"), "{err}");
    }
}
