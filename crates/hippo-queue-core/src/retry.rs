//! Retry delays: a fixed delay, or exponential backoff with an upper bound and full
//! jitter, as Celery computes them.
//!
//! Without jitter, retry number `n` (0 for the first retry) waits
//! `min(backoff_max, factor * 2^n)`; with full jitter, a uniform draw from
//! `[0, that]`.
//!
//! ```
//! use std::time::Duration;
//! use hippo_queue_core::retry::backoff;
//! let d = backoff(Duration::from_secs(1), Duration::from_secs(600), 3, false);
//! assert_eq!(d, Duration::from_secs(8));
//! let capped = backoff(Duration::from_secs(1), Duration::from_secs(600), 20, false);
//! assert_eq!(capped, Duration::from_secs(600));
//! let jittered = backoff(Duration::from_secs(1), Duration::from_secs(600), 3, true);
//! assert!(jittered <= Duration::from_secs(8));
//! ```

use std::time::Duration;

use crate::message::RetrySpec;

/// The wait before retry number `retries` (0-based) with exponential backoff.
pub fn backoff(factor: Duration, max: Duration, retries: u32, jitter: bool) -> Duration {
    let exp = 2u32.checked_pow(retries.min(31)).unwrap_or(u32::MAX);
    let bound = factor.checked_mul(exp).unwrap_or(max).min(max);
    if jitter {
        let ms = bound.as_millis() as u64;
        Duration::from_millis(fastrand::u64(0..=ms))
    } else {
        bound
    }
}

/// The wait before the next retry of a message whose retry count is `retries`, when
/// the task did not ask for a countdown of its own.
pub fn delay_for(spec: &RetrySpec, retries: u32) -> Duration {
    match spec.backoff {
        Some(factor) => backoff(
            Duration::from_millis(factor),
            Duration::from_millis(spec.backoff_max),
            retries,
            spec.jitter,
        ),
        None => Duration::from_millis(spec.delay),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_hold_for_every_retry() {
        let f = Duration::from_millis(100);
        let max = Duration::from_secs(600);
        for n in 0..40 {
            let bound = backoff(f, max, n, false);
            assert!(bound <= max);
            for _ in 0..50 {
                assert!(backoff(f, max, n, true) <= bound);
            }
        }
        assert_eq!(backoff(f, max, 0, false), f);
        assert_eq!(backoff(f, max, 1, false), f * 2);
    }

    #[test]
    fn jitter_spreads() {
        let draws: std::collections::HashSet<_> = (0..100)
            .map(|_| backoff(Duration::from_secs(1), Duration::from_secs(600), 4, true))
            .collect();
        assert!(draws.len() > 50);
    }
}
