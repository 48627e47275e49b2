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

use crate::tasks::{
    CONSOLIDATION_THRESHOLD, DEDUP_THRESHOLD, FanOutArgs, FanOutTarget, FanOutTask,
    HealthCheckArgs, HealthCheckTask,
};

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
    /// Threshold of the periodic deduplication.
    pub dedup_threshold: f64,
    /// Threshold of the periodic consolidation.
    pub consolidation_threshold: f64,
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
            dedup_threshold: DEDUP_THRESHOLD,
            consolidation_threshold: CONSOLIDATION_THRESHOLD,
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
    /// `background`.
    pub fn entries(&self) -> Result<Vec<Entry>, BeatError> {
        let hours = |h: u64| Duration::from_secs(h * 3600);
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
                    Schedule::every_hours(self.dedup_interval_hours),
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
                    Schedule::every_hours(self.consolidation_interval_hours),
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
                Schedule::every_hours(self.expiration_interval_hours),
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
        // every 24 h fires once a day, at 00:00 UTC
        let day = 86_400_000u64;
        assert_eq!(e[0].schedule().next_after(1), Some(day));
        assert_eq!(e[0].schedule().next_after(day), Some(2 * day));
        assert_eq!(e[1].schedule().next_after(1), Some(3_600_000));
        assert_eq!(e[2].schedule().next_after(1), Some(300_000));
        assert_eq!(e[0].task(), "fan_out_task");
        assert_eq!(e[2].task(), "health_check_task");
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
