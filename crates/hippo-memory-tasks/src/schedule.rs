//! The periodic runs, from the guide's variables, as
//! [`hippo_queue_core::beat`] entries.
//!
//! | variable | default | entry |
//! | --- | --- | --- |
//! | `AUTO_DEDUP_ENABLED` | `true` | `auto-deduplication`: fan-out of `deduplication_task` |
//! | `DEDUP_INTERVAL_HOURS` | `24` | its interval |
//! | `AUTO_CONSOLIDATION_ENABLED` | `false` | `auto-consolidation`: fan-out of `consolidation_task` |
//! | `CONSOLIDATION_INTERVAL_HOURS` | `168` | its interval |
//! | `EXPIRATION_INTERVAL_HOURS` | `1` | `expire-memories`: fan-out of `expire_memories_task` |
//! | (fixed) | 5 minutes | `health-check`: `health_check_task` without a user |
//!
//! "Every N hours" fires once per N hours (on multiples of N hours since the epoch,
//! UTC), never every minute of some hour. Each periodic task expires if no worker
//! starts it within its interval, so a backlog does not pile up while workers are
//! down.
//!
//! ```
//! use hippo_memory_tasks::schedule::ScheduleSettings;
//! let env = |k: &str| match k {
//!     "AUTO_CONSOLIDATION_ENABLED" => Some("true".to_string()),
//!     "DEDUP_INTERVAL_HOURS" => Some("12".to_string()),
//!     _ => None,
//! };
//! let s = ScheduleSettings::from_lookup(env)?;
//! assert_eq!(s.dedup_interval_hours, 12);
//! let names: Vec<String> = s.entries()?.iter().map(|e| e.name().to_string()).collect();
//! assert_eq!(names, ["auto-deduplication", "auto-consolidation", "expire-memories", "health-check"]);
//! assert!(ScheduleSettings::from_lookup(|k| (k == "DEDUP_INTERVAL_HOURS").then(|| "0".into())).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::Duration;

use hippo_queue_core::beat::{BeatError, Entry, Schedule};

use crate::tasks::{FanOutArgs, FanOutTarget, FanOutTask, HealthCheckArgs, HealthCheckTask};

/// A variable with a value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value:?} is invalid: {reason}")]
pub struct ScheduleConfigError {
    /// The variable.
    pub var: String,
    /// Its value.
    pub value: String,
    /// What is expected.
    pub reason: String,
}

/// Which periodic runs are on, and how often.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSettings {
    /// `AUTO_DEDUP_ENABLED`.
    pub auto_dedup_enabled: bool,
    /// `DEDUP_INTERVAL_HOURS`.
    pub dedup_interval_hours: u64,
    /// `AUTO_CONSOLIDATION_ENABLED`.
    pub auto_consolidation_enabled: bool,
    /// `CONSOLIDATION_INTERVAL_HOURS`.
    pub consolidation_interval_hours: u64,
    /// `EXPIRATION_INTERVAL_HOURS`.
    pub expiration_interval_hours: u64,
    /// Health checks, minutes.
    pub health_interval_minutes: u64,
    /// Threshold of the periodic deduplication (the model's default when `None`).
    pub dedup_threshold: Option<f64>,
    /// Threshold of the periodic consolidation (the model's default when `None`).
    pub consolidation_threshold: Option<f64>,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        ScheduleSettings {
            auto_dedup_enabled: true,
            dedup_interval_hours: 24,
            auto_consolidation_enabled: false,
            consolidation_interval_hours: 168,
            expiration_interval_hours: 1,
            health_interval_minutes: 5,
            dedup_threshold: None,
            consolidation_threshold: None,
        }
    }
}

fn parse_bool(var: &str, v: &str) -> Result<bool, ScheduleConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ScheduleConfigError {
            var: var.into(),
            value: v.into(),
            reason: "expected true or false".into(),
        }),
    }
}

fn parse_hours(var: &str, v: &str) -> Result<u64, ScheduleConfigError> {
    match v.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ScheduleConfigError {
            var: var.into(),
            value: v.into(),
            reason: "expected a whole number of hours, at least 1".into(),
        }),
    }
}

impl ScheduleSettings {
    /// The settings from the process environment.
    pub fn from_env() -> Result<Self, ScheduleConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// The settings from any lookup of variables (defaults for those missing).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ScheduleConfigError> {
        let mut s = ScheduleSettings::default();
        if let Some(v) = lookup("AUTO_DEDUP_ENABLED") {
            s.auto_dedup_enabled = parse_bool("AUTO_DEDUP_ENABLED", &v)?;
        }
        if let Some(v) = lookup("DEDUP_INTERVAL_HOURS") {
            s.dedup_interval_hours = parse_hours("DEDUP_INTERVAL_HOURS", &v)?;
        }
        if let Some(v) = lookup("AUTO_CONSOLIDATION_ENABLED") {
            s.auto_consolidation_enabled = parse_bool("AUTO_CONSOLIDATION_ENABLED", &v)?;
        }
        if let Some(v) = lookup("CONSOLIDATION_INTERVAL_HOURS") {
            s.consolidation_interval_hours = parse_hours("CONSOLIDATION_INTERVAL_HOURS", &v)?;
        }
        if let Some(v) = lookup("EXPIRATION_INTERVAL_HOURS") {
            s.expiration_interval_hours = parse_hours("EXPIRATION_INTERVAL_HOURS", &v)?;
        }
        Ok(s)
    }

    /// The beat entries: fan-outs on the `scheduled` queue, the health check on
    /// `background`. The daily (and longer) maintenance entries are staggered
    /// ([`stagger`]), so deduplication, consolidation and expiration never start at
    /// the same instant.
    pub fn entries(&self) -> Result<Vec<Entry>, BeatError> {
        let hours = |h: u64| Duration::from_secs(h * 3600);
        let every = |name: &str, h: u64| {
            Schedule::every_hours(h).anchored_at(std::time::UNIX_EPOCH + stagger(name))
        };
        let mut out = Vec::new();
        if self.auto_dedup_enabled {
            out.push(
                Entry::new::<FanOutTask>(
                    "auto-deduplication",
                    FanOutArgs {
                        target: FanOutTarget::Deduplication {
                            similarity_threshold: self.dedup_threshold,
                        },
                    },
                    every("auto-deduplication", self.dedup_interval_hours),
                )?
                .expires(hours(self.dedup_interval_hours)),
            );
        }
        if self.auto_consolidation_enabled {
            out.push(
                Entry::new::<FanOutTask>(
                    "auto-consolidation",
                    FanOutArgs {
                        target: FanOutTarget::Consolidation {
                            similarity_threshold: self.consolidation_threshold,
                        },
                    },
                    every("auto-consolidation", self.consolidation_interval_hours),
                )?
                .expires(hours(self.consolidation_interval_hours)),
            );
        }
        out.push(
            Entry::new::<FanOutTask>(
                "expire-memories",
                FanOutArgs {
                    target: FanOutTarget::Expiration,
                },
                every("expire-memories", self.expiration_interval_hours),
            )?
            .expires(hours(self.expiration_interval_hours)),
        );
        out.push(
            Entry::new::<HealthCheckTask>(
                "health-check",
                HealthCheckArgs { user_id: None },
                Schedule::every_minutes(self.health_interval_minutes),
            )?
            .expires(Duration::from_secs(self.health_interval_minutes * 60)),
        );
        Ok(out)
    }
}

/// How far past the interval's start an entry fires: deduplication at 02:17 UTC,
/// consolidation at 03:41 UTC (of its first day), expiration at 7 minutes past its
/// interval (off the 5-minute health checks). No two of them coincide for whole-hour
/// intervals, and none runs at the midnight every other job picks.
///
/// ```
/// use hippo_memory_tasks::schedule::stagger;
/// assert_eq!(stagger("auto-deduplication").as_secs(), 2 * 3600 + 17 * 60);
/// ```
pub fn stagger(entry: &str) -> Duration {
    let minutes = match entry {
        "auto-deduplication" => 2 * 60 + 17,
        "auto-consolidation" => 3 * 60 + 41,
        "expire-memories" => 7,
        _ => 0,
    };
    Duration::from_secs(minutes * 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_guide() {
        let s = ScheduleSettings::from_lookup(|_| None).unwrap();
        assert_eq!(s, ScheduleSettings::default());
        let e = s.entries().unwrap();
        let names: Vec<&str> = e.iter().map(|e| e.name()).collect();
        assert_eq!(
            names,
            ["auto-deduplication", "expire-memories", "health-check"]
        );
        // every 24 h fires once a day, staggered: dedup at 02:17 UTC, expiration at
        // 7 past each hour, health every 5 minutes
        let (day, minute) = (86_400_000u64, 60_000u64);
        let dedup = (2 * 60 + 17) * minute;
        assert_eq!(e[0].schedule().next_after(1), Some(dedup));
        assert_eq!(e[0].schedule().next_after(dedup), Some(day + dedup));
        assert_eq!(e[1].schedule().next_after(1), Some(7 * minute));
        assert_eq!(e[1].schedule().next_after(7 * minute), Some(67 * minute));
        assert_eq!(e[2].schedule().next_after(1), Some(5 * minute));
        assert_eq!(e[0].task(), "fan_out_task");
        assert_eq!(e[2].task(), "health_check_task");
    }

    #[test]
    fn daily_entries_never_start_together() {
        let s = ScheduleSettings {
            auto_consolidation_enabled: true,
            ..ScheduleSettings::default()
        };
        let e = s.entries().unwrap();
        let week = 7 * 86_400_000u64;
        let mut starts = std::collections::HashSet::new();
        for entry in e.iter().filter(|e| e.name() != "health-check") {
            let mut t = 0;
            while let Some(next) = entry.schedule().next_after(t).filter(|&n| n <= week) {
                assert!(
                    starts.insert(next),
                    "{} starts with another at {next}",
                    entry.name()
                );
                t = next;
            }
        }
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = ScheduleSettings::from_lookup(|k| {
            (k == "AUTO_DEDUP_ENABLED").then(|| "maybe".to_string())
        })
        .unwrap_err();
        assert!(err.to_string().contains("AUTO_DEDUP_ENABLED"));
        assert!(err.to_string().contains("maybe"));
    }
}
