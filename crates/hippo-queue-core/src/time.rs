//! Wall-clock helpers. Message timestamps (eta, expires, heartbeats in stored records)
//! are milliseconds since the Unix epoch, so that every process agrees on them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    to_ms(SystemTime::now())
}

/// Milliseconds since the Unix epoch for `t` (0 for times before the epoch).
pub fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The `SystemTime` for a millisecond timestamp.
pub fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Saturating conversion of a duration to whole milliseconds.
pub fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `ms` moved by `offset_ms` (another clock's reading minus this one's), never below 1.
pub fn shifted(ms: u64, offset_ms: i64) -> u64 {
    (ms as i64).saturating_add(offset_ms).max(1) as u64
}
