//! Task options: the defaults a task declares and the overrides a call makes.
//!
//! Every field is optional so that options can be layered: the call's
//! [`SendOptions`] over the task's [`TaskOptions`] over the app's configured defaults.
//! The layered result travels inside the message, so a worker applies exactly what the
//! producer asked for.
//!
//! ```
//! use std::time::Duration;
//! use hippo_queue_core::TaskOptions;
//! let opts = TaskOptions::new()
//!     .queue("memory_ops")
//!     .priority(9)
//!     .max_retries(5)
//!     .retry_backoff(Duration::from_secs(2))
//!     .soft_time_limit(Duration::from_secs(300))
//!     .time_limit(Duration::from_secs(600))
//!     .acks_late(true);
//! assert!(opts.validate().is_ok());
//! let bad = TaskOptions::new()
//!     .soft_time_limit(Duration::from_secs(60))
//!     .time_limit(Duration::from_secs(30));
//! assert!(bad.validate().is_err());
//! ```

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::Error;

/// Whether results are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Compression {
    /// Never compress.
    #[default]
    None,
    /// zstd above the codec's threshold.
    Zstd,
}

/// Default options of a task, or per-call overrides of them (through [`SendOptions`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskOptions {
    /// Target queue.
    pub queue: Option<String>,
    /// Routing key, matched against queue bindings.
    pub routing_key: Option<String>,
    /// Message priority 0-9, higher runs first; 0 when unset.
    pub priority: Option<u8>,
    /// Maximum number of retries (`u32::MAX`: unlimited).
    ///
    /// # Default
    /// [`defaults::MAX_RETRIES`](crate::defaults::MAX_RETRIES) (3).
    pub max_retries: Option<u32>,
    /// Error kinds retried automatically (see [`TaskError::kind`](crate::TaskError::kind));
    /// `"*"` retries every error.
    pub autoretry_for: Option<Vec<String>>,
    /// Delay before a retry when no backoff is set (Celery's `default_retry_delay`).
    ///
    /// # Default
    /// [`defaults::RETRY_DELAY`](crate::defaults::RETRY_DELAY) (180 s).
    pub retry_delay: Option<Duration>,
    /// Exponential backoff factor: retry `n` waits `min(backoff_max, factor * 2^n)`.
    pub retry_backoff: Option<Duration>,
    /// Upper bound of the backoff.
    ///
    /// # Default
    /// [`defaults::RETRY_BACKOFF_MAX`](crate::defaults::RETRY_BACKOFF_MAX) (600 s).
    pub retry_backoff_max: Option<Duration>,
    /// Full jitter: the wait is drawn uniformly from `[0, backoff]`.
    ///
    /// # Default
    /// [`defaults::RETRY_JITTER`](crate::defaults::RETRY_JITTER) (true).
    pub retry_jitter: Option<bool>,
    /// Soft time limit: the task is told and may clean up.
    pub soft_time_limit: Option<Duration>,
    /// Hard time limit: the task is aborted and marked FAILURE.
    pub time_limit: Option<Duration>,
    /// Acknowledge after the task finishes (at least once) instead of when it starts.
    pub acks_late: Option<bool>,
    /// With `acks_late`, requeue a started task whose worker died instead of failing it.
    pub reject_on_worker_lost: Option<bool>,
    /// Do not store the result.
    pub ignore_result: Option<bool>,
    /// Compress the result above the codec's threshold.
    pub compression: Option<Compression>,
    /// How long results are kept.
    ///
    /// # Default
    /// The configuration's `result_expires`
    /// ([`defaults::RESULT_EXPIRES`](crate::defaults::RESULT_EXPIRES), 1 h).
    pub result_expires: Option<Duration>,
    /// Record STARTED when the task starts (default false, as in Celery: it costs one
    /// more write per task).
    pub track_started: Option<bool>,
}

macro_rules! setters {
    ($( $(#[$doc:meta])* $name:ident : $ty:ty ),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.$name = Some(value.into());
                self
            }
        )*
    };
}

impl TaskOptions {
    /// Options with nothing set.
    pub fn new() -> Self {
        Self::default()
    }

    setters! {
        /// Sets the queue.
        queue: &str,
        /// Sets the routing key.
        routing_key: &str,
        /// Sets the maximum number of retries.
        max_retries: u32,
        /// Sets the delay used for retries without backoff.
        retry_delay: Duration,
        /// Enables exponential backoff with this factor.
        retry_backoff: Duration,
        /// Sets the backoff's upper bound.
        retry_backoff_max: Duration,
        /// Enables or disables full jitter.
        retry_jitter: bool,
        /// Sets the soft time limit.
        soft_time_limit: Duration,
        /// Sets the hard time limit.
        time_limit: Duration,
        /// Enables late acknowledgement.
        acks_late: bool,
        /// Requeues started tasks of lost workers (with `acks_late`).
        reject_on_worker_lost: bool,
        /// Skips storing the result.
        ignore_result: bool,
        /// Sets result compression.
        compression: Compression,
        /// Sets how long results are kept.
        result_expires: Duration,
        /// Records STARTED when the task starts.
        track_started: bool,
    }

    /// Sets the priority, 0-9 (higher runs first); larger values are clamped to 9.
    pub fn priority(mut self, priority: u8) -> Self {
        self.priority = Some(priority.min(9));
        self
    }

    /// Retries automatically on errors of this kind (a [`TaskError::kind`](crate::TaskError::kind)
    /// string such as `"timeout"`, or `"*"` for all).
    pub fn autoretry_for_kind(mut self, kind: impl Into<String>) -> Self {
        self.autoretry_for
            .get_or_insert_with(Vec::new)
            .push(kind.into());
        self
    }

    /// Retries automatically when the task fails with an error of type `E` converted
    /// with `?` (its kind is `std::any::type_name::<E>()`).
    pub fn autoretry_for<E: 'static>(self) -> Self {
        self.autoretry_for_kind(std::any::type_name::<E>())
    }

    /// Fills every unset field from `base`.
    pub fn or(self, base: &TaskOptions) -> TaskOptions {
        TaskOptions {
            queue: self.queue.or_else(|| base.queue.clone()),
            routing_key: self.routing_key.or_else(|| base.routing_key.clone()),
            priority: self.priority.or(base.priority),
            max_retries: self.max_retries.or(base.max_retries),
            autoretry_for: self.autoretry_for.or_else(|| base.autoretry_for.clone()),
            retry_delay: self.retry_delay.or(base.retry_delay),
            retry_backoff: self.retry_backoff.or(base.retry_backoff),
            retry_backoff_max: self.retry_backoff_max.or(base.retry_backoff_max),
            retry_jitter: self.retry_jitter.or(base.retry_jitter),
            soft_time_limit: self.soft_time_limit.or(base.soft_time_limit),
            time_limit: self.time_limit.or(base.time_limit),
            acks_late: self.acks_late.or(base.acks_late),
            reject_on_worker_lost: self.reject_on_worker_lost.or(base.reject_on_worker_lost),
            ignore_result: self.ignore_result.or(base.ignore_result),
            compression: self.compression.or(base.compression),
            result_expires: self.result_expires.or(base.result_expires),
            track_started: self.track_started.or(base.track_started),
        }
    }

    /// Checks the options for contradictions: a priority above 9, or a hard time limit
    /// not above the soft one.
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(p) = self.priority
            && p > 9
        {
            return Err(Error::InvalidOptions(format!(
                "priority {p} is out of range: use 0-9 (higher runs first)"
            )));
        }
        if let (Some(soft), Some(hard)) = (self.soft_time_limit, self.time_limit)
            && hard <= soft
        {
            return Err(Error::InvalidOptions(format!(
                "time_limit ({hard:?}) must be above soft_time_limit ({soft:?})"
            )));
        }
        for (name, d) in [
            ("soft_time_limit", self.soft_time_limit),
            ("time_limit", self.time_limit),
        ] {
            if d == Some(Duration::ZERO) {
                return Err(Error::InvalidOptions(format!(
                    "{name} of zero would stop every task at once: leave it unset for no limit"
                )));
            }
        }
        Ok(())
    }
}

/// Per-call options: [`TaskOptions`] overrides plus `countdown`/`eta`, `expires` and ids
/// (Celery's `apply_async` keyword arguments).
///
/// ```
/// use std::time::Duration;
/// use hippo_queue_core::SendOptions;
/// let opts = SendOptions::new()
///     .countdown(Duration::from_secs(10))
///     .expires_in(Duration::from_secs(60))
///     .priority(9)
///     .queue("memory_ops");
/// assert_eq!(opts.options.priority, Some(9));
/// ```
#[derive(Debug, Clone, Default)]
pub struct SendOptions {
    /// Overrides of the task's options.
    pub options: TaskOptions,
    /// Earliest start time.
    pub eta: Option<SystemTime>,
    /// A task not started by this time is REVOKED instead of run.
    pub expires: Option<SystemTime>,
    /// Use this task id instead of a fresh one.
    pub task_id: Option<String>,
    /// The parent task's id (set automatically for tasks sent from a task).
    pub parent_id: Option<String>,
    /// The root task's id of a workflow.
    pub root_id: Option<String>,
}

impl SendOptions {
    /// No overrides.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs the task no earlier than `delay` from now.
    pub fn countdown(mut self, delay: Duration) -> Self {
        self.eta = Some(SystemTime::now() + delay);
        self
    }

    /// Runs the task no earlier than `eta`.
    pub fn eta(mut self, eta: SystemTime) -> Self {
        self.eta = Some(eta);
        self
    }

    /// Revokes the task if it has not started within `ttl` from now.
    pub fn expires_in(mut self, ttl: Duration) -> Self {
        self.expires = Some(SystemTime::now() + ttl);
        self
    }

    /// Revokes the task if it has not started by `at`.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expires = Some(at);
        self
    }

    /// Uses a chosen task id.
    pub fn task_id(mut self, id: impl Into<String>) -> Self {
        self.task_id = Some(id.into());
        self
    }

    /// Overrides the queue.
    pub fn queue(mut self, queue: &str) -> Self {
        self.options.queue = Some(queue.into());
        self
    }

    /// Overrides the routing key.
    pub fn routing_key(mut self, key: &str) -> Self {
        self.options.routing_key = Some(key.into());
        self
    }

    /// Overrides the priority (0-9, higher first).
    pub fn priority(mut self, priority: u8) -> Self {
        self.options.priority = Some(priority.min(9));
        self
    }

    /// Overrides any other option.
    pub fn with(mut self, overrides: TaskOptions) -> Self {
        self.options = overrides.or(&self.options);
        self
    }
}
