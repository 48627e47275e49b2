//! When an entry fires: a cron expression or a fixed, anchored interval, evaluated at
//! a fixed UTC offset (UTC by default).
//!
//! Ticks are instants in milliseconds since the Unix epoch. A schedule answers two
//! questions, both in constant work whatever the gap: the first tick strictly after a
//! time ([`Schedule::next_after`]) and the last tick at or before a time
//! ([`Schedule::last_at_or_before`]).
//!
//! ## Cron expressions
//! - 5 fields, standard Unix cron: `minute hour day-of-month month day-of-week`, days
//!   of the week `0`-`7` (`0` and `7` are Sunday) or names (`MON`-`FRI`). The seconds
//!   field is taken as `0`. Restricting both day fields is refused, because Unix cron
//!   matches either day while the underlying `cron` crate requires both: use the
//!   6-field form to mean both, or two entries to mean either.
//! - 6 or 7 fields, seconds first: `second minute hour day-of-month month day-of-week
//!   [year]`, in the `cron` crate's syntax, where days of the week are `1`-`7` with `1`
//!   Sunday (names mean the same in both forms and are the safer choice).
//! - The shorthands `@yearly`, `@monthly`, `@weekly`, `@daily` and `@hourly`.
//!
//! An expression that restricts the hours but leaves the minute at `*` fires every
//! minute of each selected hour (`hour="*/24"` written without a minute fires 60 times
//! a day, not once), and one that restricts the minutes or hours but leaves the second
//! at `*` fires every second of each selected minute. [`Schedule::cron`] refuses both
//! with an error naming the fix; [`Schedule::cron_allowing_bursts`] keeps them.
//!
//! ```
//! use hippo_queue_core::beat::{Schedule, ScheduleError};
//! // The mistake: "every 24 hours" without a minute fires every minute of hour 0.
//! let err = Schedule::cron("* */24 * * *").unwrap_err();
//! assert!(matches!(err, ScheduleError::Bursts { .. }));
//! assert!(err.to_string().contains("\"0 */24 * * *\""));
//! // The fix: once a day at 00:00 UTC.
//! let daily = Schedule::cron("0 */24 * * *")?;
//! assert_eq!(daily.next_after(0), Some(86_400_000));
//! # Ok::<(), ScheduleError>(())
//! ```
//!
//! ## Intervals
//! [`Schedule::every`] (and [`Schedule::every_minutes`], [`Schedule::every_hours`])
//! fires once per interval, at fixed instants: multiples of the interval counted from
//! the Unix epoch (shifted by the offset, so `every_hours(24)` at `+02:00` fires at
//! local midnight), or from an anchor set with [`Schedule::anchored_at`]. The instants
//! do not depend on when a scheduler started, so every scheduler agrees on them, and
//! "every N hours" fires once per N hours even when N does not divide 24 (which
//! `0 */N * * *` cannot do).
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use hippo_queue_core::beat::Schedule;
//! let hourly = Schedule::every_hours(1);
//! assert_eq!(hourly.next_after(5_000), Some(3_600_000));
//! assert_eq!(hourly.last_at_or_before(7_300_000), Some(7_200_000));
//! let from_anchor = Schedule::every(Duration::from_secs(10))
//!     .anchored_at(UNIX_EPOCH + Duration::from_secs(3));
//! assert_eq!(from_anchor.next_after(5_000), Some(13_000));
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Datelike, FixedOffset, Offset, TimeZone, Utc};
use cron::TimeUnitSpec;

use crate::time::duration_ms;

/// Why a schedule cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The cron expression cannot be parsed.
    #[error("invalid cron expression {expr:?}: {reason}")]
    InvalidCron {
        /// The expression as given.
        expr: String,
        /// What is wrong.
        reason: String,
    },
    /// The cron expression fires in bursts: a finer field is `*` while a coarser one is
    /// restricted (for example `hour="*/24"` with no minute).
    #[error(
        "cron expression {expr:?} fires every {unit} of each {coarser} it selects, because its {field} field is `*`: \
         set the {field} to fire once, e.g. {suggestion:?}, or use Schedule::every_hours / Schedule::every_minutes for a fixed interval \
         (Schedule::cron_allowing_bursts accepts the expression as written)"
    )]
    Bursts {
        /// The expression as given.
        expr: String,
        /// The field left at `*` (`"minute"` or `"second"`).
        field: &'static str,
        /// The unit it fires at (`"minute"` or `"second"`).
        unit: &'static str,
        /// The restricted coarser unit (`"hour"` or `"minute"`).
        coarser: &'static str,
        /// The expression with the offending fields set to `0`.
        suggestion: String,
    },
    /// The interval is shorter than one millisecond.
    #[error("an interval of {0:?} is too short: interval schedules need at least 1 ms")]
    ZeroInterval(Duration),
    /// An anchor was set on a cron schedule.
    #[error("anchored_at applies to interval schedules only, not to cron expression {0:?}")]
    AnchorOnCron(String),
}

/// When an entry fires: a cron expression or a fixed interval, at a fixed UTC offset.
///
/// ```
/// use chrono::FixedOffset;
/// use hippo_queue_core::beat::Schedule;
/// // 03:30 every day at UTC+02:00, i.e. 01:30 UTC.
/// let offset = FixedOffset::east_opt(2 * 3600).ok_or("offset")?;
/// let s = Schedule::cron("30 3 * * *")?.with_offset(offset);
/// assert_eq!(s.next_after(0), Some((3600 + 1800) * 1000));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Schedule {
    kind: Kind,
    offset: FixedOffset,
    anchor: Option<i64>,
}

#[derive(Clone)]
enum Kind {
    Cron {
        source: String,
        normalized: String,
        cron: Box<cron::Schedule>,
    },
    Interval {
        every: Duration,
    },
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({self})")
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Cron { normalized, .. } => write!(f, "cron \"{normalized}\"")?,
            Kind::Interval { every } => {
                write!(f, "every {}", human(*every))?;
                if let Some(a) = self.anchor {
                    write!(f, " from {a} ms")?;
                }
            }
        }
        if self.offset.local_minus_utc() != 0 {
            write!(f, " at UTC{}", self.offset)?;
        }
        Ok(())
    }
}

fn human(d: Duration) -> String {
    let ms = duration_ms(d);
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

impl Schedule {
    /// A cron expression (5 fields, or 6-7 with seconds first; see the module docs),
    /// in UTC. Expressions that fire in bursts (a `*` minute under restricted hours, a
    /// `*` second under restricted minutes or hours) are refused with
    /// [`ScheduleError::Bursts`].
    ///
    /// ```
    /// use hippo_queue_core::beat::Schedule;
    /// assert!(Schedule::cron("0 */6 * * *").is_ok()); // 00:00, 06:00, 12:00, 18:00
    /// assert!(Schedule::cron("*/15 * * * *").is_ok()); // every 15 minutes
    /// assert!(Schedule::cron("30 0 9 * * MON-FRI").is_ok()); // 09:00:30 on weekdays
    /// assert!(Schedule::cron("* 9 * * *").is_err()); // every minute from 09:00 to 09:59
    /// assert!(Schedule::cron("0 25 * * *").is_err()); // no hour 25
    /// ```
    pub fn cron(expr: &str) -> Result<Schedule, ScheduleError> {
        Self::parse_cron(expr, false)
    }

    /// A cron expression, accepting expressions that fire in bursts (every minute of
    /// the selected hours, every second of the selected minutes) on purpose.
    ///
    /// ```
    /// use hippo_queue_core::beat::Schedule;
    /// // Every minute between 09:00 and 09:59, deliberately.
    /// let s = Schedule::cron_allowing_bursts("* 9 * * *")?;
    /// assert_eq!(s.next_after(9 * 3_600_000), Some(9 * 3_600_000 + 60_000));
    /// # Ok::<(), hippo_queue_core::beat::ScheduleError>(())
    /// ```
    pub fn cron_allowing_bursts(expr: &str) -> Result<Schedule, ScheduleError> {
        Self::parse_cron(expr, true)
    }

    fn parse_cron(expr: &str, allow_bursts: bool) -> Result<Schedule, ScheduleError> {
        let invalid = |reason: String| ScheduleError::InvalidCron {
            expr: expr.to_string(),
            reason,
        };
        let (normalized, five) = normalize(expr)?;
        let cron = cron::Schedule::from_str(&normalized).map_err(|e| invalid(e.to_string()))?;
        if !allow_bursts && !normalized.starts_with('@') {
            check_bursts(expr, five, &cron)?;
        }
        Ok(Schedule {
            kind: Kind::Cron {
                source: expr.trim().to_string(),
                normalized,
                cron: Box::new(cron),
            },
            offset: utc(),
            anchor: None,
        })
    }

    /// Fires once every `interval`, at multiples of it counted from the Unix epoch (or
    /// from [`anchored_at`](Self::anchored_at)). An interval under 1 ms is refused by
    /// [`validate`](Self::validate) (and so by [`Entry`](super::Entry) construction).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hippo_queue_core::beat::Schedule;
    /// let s = Schedule::every(Duration::from_millis(250));
    /// assert_eq!(s.next_after(1_000), Some(1_250));
    /// assert_eq!(s.next_after(1_001), Some(1_250));
    /// ```
    pub fn every(interval: Duration) -> Schedule {
        Schedule {
            kind: Kind::Interval { every: interval },
            offset: utc(),
            anchor: None,
        }
    }

    /// Fires every `n` minutes, on the minute (see [`every`](Self::every)).
    ///
    /// ```
    /// use hippo_queue_core::beat::Schedule;
    /// assert_eq!(Schedule::every_minutes(5).next_after(61_000), Some(300_000));
    /// ```
    pub fn every_minutes(n: u64) -> Schedule {
        Self::every(Duration::from_secs(n.saturating_mul(60)))
    }

    /// Fires every `n` hours, on the hour: once per `n` hours, whatever `n` (see
    /// [`every`](Self::every)).
    ///
    /// ```
    /// use hippo_queue_core::beat::Schedule;
    /// let s = Schedule::every_hours(24);
    /// assert_eq!(s.next_after(1), Some(86_400_000));
    /// assert_eq!(s.next_after(86_400_000), Some(2 * 86_400_000));
    /// ```
    pub fn every_hours(n: u64) -> Schedule {
        Self::every(Duration::from_secs(n.saturating_mul(3600)))
    }

    /// Counts an interval schedule's ticks from `anchor` instead of the epoch: it fires
    /// at `anchor`, `anchor + interval`, and so on, and never before `anchor`. Only for
    /// interval schedules: on a cron schedule [`validate`](Self::validate) fails.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use hippo_queue_core::beat::Schedule;
    /// let s = Schedule::every_hours(24).anchored_at(UNIX_EPOCH + Duration::from_secs(3 * 3600));
    /// assert_eq!(s.next_after(0), Some(3 * 3_600_000));
    /// assert_eq!(s.last_at_or_before(3 * 3_600_000 - 1), None);
    /// ```
    pub fn anchored_at(mut self, anchor: SystemTime) -> Schedule {
        let ms = match anchor.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        };
        self.anchor = Some(ms);
        self
    }

    /// Evaluates the schedule at this UTC offset (default UTC): cron fields are local
    /// times at the offset, and unanchored intervals count from local midnight of
    /// 1970-01-01.
    ///
    /// ```
    /// use chrono::FixedOffset;
    /// use hippo_queue_core::beat::Schedule;
    /// let minus5 = FixedOffset::west_opt(5 * 3600).ok_or("offset")?;
    /// let s = Schedule::every_hours(24).with_offset(minus5);
    /// assert_eq!(s.next_after(0), Some(5 * 3_600_000)); // midnight at UTC-05:00
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_offset(mut self, offset: FixedOffset) -> Schedule {
        self.offset = offset;
        self
    }

    /// The UTC offset the schedule is evaluated at.
    ///
    /// ```
    /// use hippo_queue_core::beat::Schedule;
    /// assert_eq!(Schedule::every_hours(1).offset().local_minus_utc(), 0);
    /// ```
    pub fn offset(&self) -> FixedOffset {
        self.offset
    }

    /// The interval of an interval schedule.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hippo_queue_core::beat::Schedule;
    /// assert_eq!(Schedule::every_minutes(2).interval(), Some(Duration::from_secs(120)));
    /// ```
    pub fn interval(&self) -> Option<Duration> {
        match &self.kind {
            Kind::Interval { every } => Some(*every),
            Kind::Cron { .. } => None,
        }
    }

    /// The cron expression as given, and as evaluated (5-field expressions get a
    /// seconds field and days of the week in the `cron` crate's numbering).
    ///
    /// ```
    /// use hippo_queue_core::beat::Schedule;
    /// let s = Schedule::cron("0 9 * * 1-5")?;
    /// assert_eq!(s.cron_expression(), Some(("0 9 * * 1-5", "0 0 9 * * 2,3,4,5,6")));
    /// # Ok::<(), hippo_queue_core::beat::ScheduleError>(())
    /// ```
    pub fn cron_expression(&self) -> Option<(&str, &str)> {
        match &self.kind {
            Kind::Cron {
                source, normalized, ..
            } => Some((source, normalized)),
            Kind::Interval { .. } => None,
        }
    }

    /// Checks what construction could not: an interval of at least 1 ms, and no anchor
    /// on a cron schedule.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hippo_queue_core::beat::Schedule;
    /// assert!(Schedule::every(Duration::ZERO).validate().is_err());
    /// assert!(Schedule::every_hours(1).validate().is_ok());
    /// ```
    pub fn validate(&self) -> Result<(), ScheduleError> {
        match &self.kind {
            Kind::Interval { every } if duration_ms(*every) == 0 => {
                Err(ScheduleError::ZeroInterval(*every))
            }
            Kind::Cron { source, .. } if self.anchor.is_some() => {
                Err(ScheduleError::AnchorOnCron(source.clone()))
            }
            _ => Ok(()),
        }
    }

    /// The first tick strictly after `after_ms` (ms since the epoch); `None` when the
    /// schedule has no further tick (a cron year field in the past, or an invalid
    /// interval).
    ///
    /// ```
    /// use hippo_queue_core::beat::Schedule;
    /// let s = Schedule::cron("*/5 * * * *")?;
    /// assert_eq!(s.next_after(0), Some(300_000));
    /// assert_eq!(s.next_after(300_000), Some(600_000));
    /// # Ok::<(), hippo_queue_core::beat::ScheduleError>(())
    /// ```
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        match &self.kind {
            Kind::Interval { every } => {
                let every = i128::from(duration_ms(*every));
                if every == 0 {
                    return None;
                }
                let (anchor, bounded) = self.interval_anchor();
                let after = i128::from(after_ms);
                let tick = if bounded && after < anchor {
                    anchor
                } else {
                    anchor + ((after - anchor).div_euclid(every) + 1) * every
                };
                u64::try_from(tick).ok()
            }
            Kind::Cron { cron, .. } => {
                // Ticks are whole seconds: strictly after `after_ms` means strictly
                // after its whole second.
                let dt = self.datetime(after_ms / 1000)?;
                let next = cron.after(&dt).next()?;
                secs_to_ms(next.timestamp())
            }
        }
    }

    /// The last tick at or before `at_ms` (ms since the epoch); `None` when there is
    /// none (before an interval's anchor, or before a cron schedule's first year).
    ///
    /// ```
    /// use hippo_queue_core::beat::Schedule;
    /// let s = Schedule::cron("0 0 */6 * * *")?;
    /// assert_eq!(s.last_at_or_before(6 * 3_600_000), Some(6 * 3_600_000));
    /// assert_eq!(s.last_at_or_before(6 * 3_600_000 - 1), Some(0));
    /// # Ok::<(), hippo_queue_core::beat::ScheduleError>(())
    /// ```
    pub fn last_at_or_before(&self, at_ms: u64) -> Option<u64> {
        match &self.kind {
            Kind::Interval { every } => {
                let every = i128::from(duration_ms(*every));
                if every == 0 {
                    return None;
                }
                let (anchor, bounded) = self.interval_anchor();
                let at = i128::from(at_ms);
                if bounded && at < anchor {
                    return None;
                }
                u64::try_from(anchor + (at - anchor).div_euclid(every) * every).ok()
            }
            Kind::Cron { cron, .. } => {
                // Strictly before the next whole second is at or before `at_ms`.
                let dt = self.datetime(at_ms / 1000 + 1)?;
                let found = cron.after(&dt).next_back();
                if let Some(prev) = found.filter(|p| self.is_last_before(cron, p, &dt)) {
                    return secs_to_ms(prev.timestamp());
                }
                // The `cron` crate's backward search misses ticks when the year it
                // starts in is not in the year field: start at the end of the latest
                // year of the field before it instead.
                let year = u32::try_from(dt.year()).ok()?;
                let before = cron.years().range(..year).next_back()?;
                let start = self
                    .offset
                    .with_ymd_and_hms(i32::try_from(before).ok()? + 1, 1, 1, 0, 0, 0)
                    .single()?;
                let prev = cron
                    .after(&start)
                    .next_back()
                    .filter(|p| self.is_last_before(cron, p, &dt))?;
                secs_to_ms(prev.timestamp())
            }
        }
    }

    /// Whether `tick` is the last tick strictly before `bound`.
    fn is_last_before(
        &self,
        cron: &cron::Schedule,
        tick: &DateTime<FixedOffset>,
        bound: &DateTime<FixedOffset>,
    ) -> bool {
        tick < bound && cron.after(tick).next().is_none_or(|n| n >= *bound)
    }

    /// The anchor of an interval in ms, and whether ticks stop before it.
    fn interval_anchor(&self) -> (i128, bool) {
        match self.anchor {
            Some(a) => (i128::from(a), true),
            None => (-i128::from(self.offset.local_minus_utc()) * 1000, false),
        }
    }

    fn datetime(&self, secs: u64) -> Option<DateTime<FixedOffset>> {
        let secs = i64::try_from(secs).ok()?;
        Some(DateTime::from_timestamp(secs, 0)?.with_timezone(&self.offset))
    }
}

fn utc() -> FixedOffset {
    Utc.fix()
}

fn secs_to_ms(secs: i64) -> Option<u64> {
    u64::try_from(secs).ok()?.checked_mul(1000)
}

/// Turns an expression into the `cron` crate's 6/7-field form; reports whether it had
/// 5 fields.
fn normalize(expr: &str) -> Result<(String, bool), ScheduleError> {
    let invalid = |reason: String| ScheduleError::InvalidCron {
        expr: expr.to_string(),
        reason,
    };
    let fields: Vec<&str> = expr.split_whitespace().collect();
    match fields.as_slice() {
        [one] if one.starts_with('@') => Ok((one.to_ascii_lowercase(), false)),
        [minute, hour, dom, month, dow] => {
            let restricted = |f: &str| f != "*" && f != "?";
            if restricted(dom) && restricted(dow) {
                return Err(invalid(
                    "both day-of-month and day-of-week are restricted: Unix cron would fire on either, \
                     this scheduler only on days matching both; use the 6-field form (seconds first) \
                     to mean both, or two entries to mean either"
                        .into(),
                ));
            }
            let dow = unix_days_of_week(dow).map_err(invalid)?;
            let (minute, hour) = (whole_span_steps(minute, 60), whole_span_steps(hour, 24));
            Ok((format!("0 {minute} {hour} {dom} {month} {dow}"), true))
        }
        [_, _, _, _, _, _] | [_, _, _, _, _, _, _] => {
            let mut fields: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
            for (i, span) in [(0, 60), (1, 60), (2, 24)] {
                fields[i] = whole_span_steps(&fields[i], span);
            }
            Ok((fields.join(" "), false))
        }
        _ => Err(invalid(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week), 6 or 7 with seconds first \
             (second minute hour day-of-month month day-of-week [year]), or @hourly/@daily/@weekly/@monthly/@yearly; \
             found {} field(s)",
            fields.len()
        ))),
    }
}

/// Rewrites steps as long as the field's whole span (`*/24` hours, `*/60` minutes),
/// which the `cron` crate refuses, as their only value: the start (`*/24` is hour 0).
fn whole_span_steps(field: &str, span: u32) -> String {
    field
        .split(',')
        .map(|item| match item.split_once('/') {
            Some((base, step)) if step.parse::<u32>().is_ok_and(|s| s >= span) => match base {
                "*" => "0".to_string(),
                _ => base.split('-').next().unwrap_or(base).to_string(),
            },
            _ => item.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Rewrites a Unix day-of-week field (0-7, 0 and 7 Sunday) as the `cron` crate's
/// (1-7, 1 Sunday), as an explicit list of days.
fn unix_days_of_week(field: &str) -> Result<String, String> {
    if field == "*" || field == "?" {
        return Ok(field.to_string());
    }
    let mut days = [false; 7];
    for item in field.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((b, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("bad step {s:?} in day-of-week item {item:?}"))?;
                (b, Some(step))
            }
            None => (item, None),
        };
        let (lo, hi) = if base == "*" {
            (0, 6)
        } else if let Some((a, b)) = base.split_once('-') {
            (unix_day(a)?, unix_day(b)?)
        } else {
            let d = unix_day(base)?;
            // "N/step" runs from N to the end of the week, as in Vixie cron.
            (d, if step.is_some() { 6 } else { d })
        };
        if lo > hi {
            return Err(format!("day-of-week range {base:?} runs backwards"));
        }
        let mut d = lo;
        while d <= hi {
            days[(d % 7) as usize] = true;
            d += step.unwrap_or(1);
        }
    }
    Ok(days
        .iter()
        .enumerate()
        .filter(|(_, on)| **on)
        .map(|(d, _)| (d + 1).to_string())
        .collect::<Vec<_>>()
        .join(","))
}

fn unix_day(s: &str) -> Result<u32, String> {
    if let Ok(n) = s.parse::<u32>() {
        return if n <= 7 {
            Ok(n)
        } else {
            Err(format!(
                "day of week {n} is out of range: use 0-7 (0 and 7 are Sunday) or SUN-SAT"
            ))
        };
    }
    const NAMES: [(&str, &str); 7] = [
        ("sun", "sunday"),
        ("mon", "monday"),
        ("tue", "tuesday"),
        ("wed", "wednesday"),
        ("thu", "thursday"),
        ("fri", "friday"),
        ("sat", "saturday"),
    ];
    let lower = match s.to_ascii_lowercase().as_str() {
        "tues" => "tue".to_string(),
        "thurs" => "thu".to_string(),
        other => other.to_string(),
    };
    NAMES
        .iter()
        .position(|(short, full)| lower == *short || lower == *full)
        .map(|p| p as u32)
        .ok_or_else(|| format!("{s:?} is not a day of the week"))
}

/// Refuses expressions where a finer field is `*` under a restricted coarser one.
fn check_bursts(expr: &str, five: bool, cron: &cron::Schedule) -> Result<(), ScheduleError> {
    let seconds_all = cron.seconds().is_all();
    let minutes_all = cron.minutes().is_all();
    let hours_all = cron.hours().is_all();
    let minute_bursts = minutes_all && !hours_all;
    let second_bursts = !five && seconds_all && !(minutes_all && hours_all);
    if !minute_bursts && !second_bursts {
        return Ok(());
    }
    let mut fields: Vec<String> = expr.split_whitespace().map(str::to_string).collect();
    // Field positions in the expression as given.
    let (sec_at, min_at) = if five { (None, 0) } else { (Some(0), 1) };
    if minute_bursts {
        fields[min_at] = "0".into();
    }
    if second_bursts && let Some(i) = sec_at {
        fields[i] = "0".into();
    }
    let suggestion = fields.join(" ");
    Err(if minute_bursts {
        ScheduleError::Bursts {
            expr: expr.to_string(),
            field: "minute",
            unit: "minute",
            coarser: "hour",
            suggestion,
        }
    } else {
        ScheduleError::Bursts {
            expr: expr.to_string(),
            field: "second",
            unit: "second",
            coarser: if minutes_all { "hour" } else { "minute" },
            suggestion,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;
    const HOUR: u64 = 3_600_000;
    const DAY: u64 = 86_400_000;

    fn cron(e: &str) -> Schedule {
        match Schedule::cron(e) {
            Ok(s) => s,
            Err(err) => panic!("{e}: {err}"),
        }
    }

    #[test]
    fn five_field_cron_fires_on_the_minute() {
        let s = cron("*/15 * * * *");
        assert_eq!(s.next_after(0), Some(15 * MIN));
        assert_eq!(s.next_after(15 * MIN - 1), Some(15 * MIN));
        assert_eq!(s.next_after(15 * MIN), Some(30 * MIN));
        assert_eq!(s.next_after(15 * MIN + 500), Some(30 * MIN));
        assert_eq!(s.last_at_or_before(15 * MIN), Some(15 * MIN));
        assert_eq!(s.last_at_or_before(30 * MIN - 1), Some(15 * MIN));
        assert_eq!(s.cron_expression().map(|c| c.1), Some("0 */15 * * * *"));
    }

    #[test]
    fn six_and_seven_field_cron_have_seconds() {
        let s = cron("*/10 * * * * *");
        assert_eq!(s.next_after(0), Some(10_000));
        assert_eq!(s.next_after(10_001), Some(20_000));
        let s = cron("30 0 12 * * * 1970");
        assert_eq!(s.next_after(0), Some(12 * HOUR + 30_000));
        assert_eq!(
            s.last_at_or_before(365 * DAY * 2),
            Some(364 * DAY + 12 * HOUR + 30_000)
        );
        // the year field ends the schedule
        assert_eq!(s.next_after(365 * DAY), None);
    }

    #[test]
    fn shorthands_are_accepted() {
        assert_eq!(cron("@hourly").next_after(1), Some(HOUR));
        assert_eq!(cron("@daily").next_after(1), Some(DAY));
    }

    #[test]
    fn unix_days_of_week_are_translated() {
        // 1970-01-01 was a Thursday; the first Monday is 1970-01-05.
        let monday = 4 * DAY;
        assert_eq!(cron("0 0 * * 1").next_after(0), Some(monday));
        assert_eq!(cron("0 0 * * MON").next_after(0), Some(monday));
        assert_eq!(cron("0 0 * * 0").next_after(0), Some(3 * DAY)); // Sunday
        assert_eq!(cron("0 0 * * 7").next_after(0), Some(3 * DAY)); // Sunday too
        assert_eq!(cron("0 0 * * 1-5").next_after(0), Some(DAY)); // Friday the 2nd
        assert_eq!(cron("0 0 * * 5-7").next_after(DAY), Some(2 * DAY)); // Sat
        assert_eq!(
            cron("0 0 * * 1-5").cron_expression().map(|c| c.1),
            Some("0 0 0 * * 2,3,4,5,6")
        );
        assert_eq!(
            cron("0 0 * * */2").cron_expression().map(|c| c.1),
            Some("0 0 0 * * 1,3,5,7")
        );
        assert_eq!(
            cron("0 0 * * 1/2").cron_expression().map(|c| c.1),
            Some("0 0 0 * * 2,4,6")
        );
        // six fields use the cron crate's numbering: 2 is Monday
        assert_eq!(cron("0 0 0 * * 2").next_after(0), Some(monday));
    }

    #[test]
    fn bad_expressions_are_refused() {
        for bad in [
            "",
            "* * * *",
            "0 25 * * *",
            "61 * * * *",
            "0 0 * * 8",
            "0 0 * * 5-2",
            "0 0 1 * MON",
            "a b c d e",
            "* * * * * * * *",
        ] {
            assert!(
                matches!(Schedule::cron(bad), Err(ScheduleError::InvalidCron { .. })),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn every_n_hours_without_a_minute_is_refused() {
        for (expr, fix) in [
            ("* */24 * * *", "0 */24 * * *"),
            ("* */2 * * *", "0 */2 * * *"),
            ("* 9 * * *", "0 9 * * *"),
            ("0 * */24 * * *", "0 0 */24 * * *"),
            ("* * */24 * * *", "0 0 */24 * * *"),
        ] {
            match Schedule::cron(expr) {
                Err(ScheduleError::Bursts {
                    field: "minute",
                    suggestion,
                    ..
                }) => assert_eq!(suggestion, fix),
                other => panic!("{expr}: {other:?}"),
            }
        }
        let msg = Schedule::cron("* */24 * * *")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("every minute of each hour"), "{msg}");
        assert!(msg.contains("\"0 */24 * * *\""), "{msg}");
        // seconds left at * under a fixed minute
        match Schedule::cron("* 0 * * * *") {
            Err(ScheduleError::Bursts {
                field: "second",
                suggestion,
                ..
            }) => assert_eq!(suggestion, "0 0 * * * *"),
            other => panic!("{other:?}"),
        }
        // what people mean instead
        assert_eq!(cron("0 */24 * * *").next_after(1), Some(DAY));
        assert_eq!(cron("0 */24 * * *").next_after(DAY), Some(2 * DAY));
        // all-star expressions are plain "every minute" / "every second"
        assert!(Schedule::cron("* * * * *").is_ok());
        assert!(Schedule::cron("* * * * * *").is_ok());
        assert!(Schedule::cron("*/5 * * * * *").is_ok());
        assert!(Schedule::cron("0 0 * * * MON").is_ok());
    }

    #[test]
    fn steps_spanning_the_whole_field_mean_its_start() {
        assert_eq!(
            cron("0 */24 * * *").cron_expression().map(|c| c.1),
            Some("0 0 0 * * *")
        );
        assert_eq!(
            cron("0 */60 3/24 * * *").cron_expression().map(|c| c.1),
            Some("0 0 3 * * *")
        );
        assert_eq!(cron("0 */12 * * *").next_after(1), Some(12 * HOUR));
    }

    #[test]
    fn last_tick_is_found_across_years() {
        let s = cron("0 0 0 1 1 * 1970,1975");
        assert_eq!(s.last_at_or_before(3 * 365 * DAY), Some(0));
        assert_eq!(s.next_after(0), Some(1_826 * DAY)); // 1975-01-01
        assert_eq!(s.last_at_or_before(2_000 * DAY), Some(1_826 * DAY));
        assert_eq!(
            cron("@yearly").last_at_or_before(400 * DAY),
            Some(365 * DAY)
        );
    }

    #[test]
    fn bursts_can_be_allowed_explicitly() {
        let s = Schedule::cron_allowing_bursts("* */24 * * *").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.next_after(0), Some(MIN));
        assert_eq!(s.next_after(59 * MIN), Some(DAY));
    }

    #[test]
    fn intervals_are_anchored_to_the_epoch() {
        let s = Schedule::every(Duration::from_millis(300));
        assert_eq!(s.next_after(0), Some(300));
        assert_eq!(s.next_after(299), Some(300));
        assert_eq!(s.next_after(300), Some(600));
        assert_eq!(s.last_at_or_before(599), Some(300));
        assert_eq!(s.last_at_or_before(600), Some(600));
        // every 5 hours is every 5 hours, across midnight
        let s = Schedule::every_hours(5);
        assert_eq!(s.next_after(20 * HOUR), Some(25 * HOUR));
        assert_eq!(s.next_after(25 * HOUR), Some(30 * HOUR));
        // every 24 hours fires once a day, not once a minute
        let s = Schedule::every_hours(24);
        let mut t = 0;
        let mut ticks = Vec::new();
        while let Some(n) = s.next_after(t).filter(|n| *n <= 3 * DAY) {
            ticks.push(n);
            t = n;
        }
        assert_eq!(ticks, [DAY, 2 * DAY, 3 * DAY]);
    }

    #[test]
    fn intervals_can_have_an_anchor_and_an_offset() {
        let anchor = UNIX_EPOCH + Duration::from_millis(1_700);
        let s = Schedule::every(Duration::from_secs(1)).anchored_at(anchor);
        assert_eq!(s.next_after(0), Some(1_700));
        assert_eq!(s.next_after(1_700), Some(2_700));
        assert_eq!(s.last_at_or_before(1_699), None);
        assert_eq!(s.last_at_or_before(5_000), Some(4_700));
        let plus1 = FixedOffset::east_opt(3600).unwrap_or_else(|| unreachable!());
        let s = Schedule::every_hours(24).with_offset(plus1);
        assert_eq!(s.next_after(0), Some(23 * HOUR)); // local midnight
        assert!(s.to_string().contains("UTC+01:00"), "{s}");
        let s = cron("0 12 * * *").with_offset(plus1);
        assert_eq!(s.next_after(0), Some(11 * HOUR));
        assert_eq!(s.last_at_or_before(DAY), Some(11 * HOUR));
    }

    #[test]
    fn invalid_intervals_and_anchors_fail_validation() {
        assert!(matches!(
            Schedule::every(Duration::from_micros(10)).validate(),
            Err(ScheduleError::ZeroInterval(_))
        ));
        assert_eq!(Schedule::every(Duration::ZERO).next_after(0), None);
        assert!(matches!(
            cron("0 * * * *").anchored_at(UNIX_EPOCH).validate(),
            Err(ScheduleError::AnchorOnCron(_))
        ));
    }

    #[test]
    fn schedules_display_what_they_do() {
        assert_eq!(Schedule::every_hours(24).to_string(), "every 1d");
        assert_eq!(
            Schedule::every(Duration::from_millis(250)).to_string(),
            "every 250ms"
        );
        assert_eq!(cron("0 9 * * *").to_string(), "cron \"0 0 9 * * *\"");
    }
}
