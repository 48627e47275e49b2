//! A periodic task: what to send ([`Entry`]), when ([`Schedule`]), and what to do
//! about ticks missed while no scheduler ran ([`Missed`]).

use std::time::{Duration, SystemTime};

use crate::codec::to_msgpack;
use crate::options::{SendOptions, TaskOptions};
use crate::routing::validate_queue_name;
use crate::{App, Task};

use super::{BeatError, Schedule};

/// What a scheduler does with ticks that came due while no scheduler was sending
/// (every beat stopped, or the leader died and its lease had not expired yet).
///
/// ```
/// use hippo_queue_core::beat::Missed;
/// assert_eq!(Missed::default(), Missed::RunOnce);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Missed {
    /// Drop them: nothing is sent for missed ticks, and the entry next fires at its
    /// next tick. A tick sent later than the scheduler's tolerance (see
    /// [`BeatBuilder::tolerance`](super::BeatBuilder::tolerance)) counts as missed.
    Skip,
    /// Send one catch-up task for all of them, as soon as a scheduler leads again: the
    /// task of the most recent missed tick. Earlier missed ticks are dropped. Then
    /// continue with the next tick. This is Celery beat's behaviour, and the default.
    #[default]
    RunOnce,
}

/// One periodic task: a name (unique within a scheduler; it keys the task's place in
/// the [`BeatStore`](super::BeatStore)), a task name with MessagePack arguments, send
/// options, a [`Schedule`] and a [`Missed`] policy.
///
/// ```
/// use std::time::Duration;
/// use hippo_queue_core::beat::{Entry, Missed, Schedule};
/// use hippo_queue_core::{Task, TaskContext, TaskError};
///
/// struct Dedup;
/// impl Task for Dedup {
///     const NAME: &'static str = "memory.dedup";
///     type Args = Option<String>; // a user id, or everyone
///     type Output = u64;
///     async fn run(&self, _: &TaskContext, _: Option<String>) -> Result<u64, TaskError> { Ok(0) }
/// }
///
/// let entry = Entry::new::<Dedup>("dedup-every-24h", None, Schedule::every_hours(24))?
///     .queue("scheduled")
///     .priority(1)
///     .expires(Duration::from_secs(3600))
///     .missed(Missed::RunOnce);
/// assert_eq!(entry.task(), "memory.dedup");
/// assert_eq!(entry.task_id(86_400_000), "beat:dedup-every-24h@86400000");
/// # Ok::<(), hippo_queue_core::beat::BeatError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Entry {
    name: String,
    task: String,
    args: Vec<u8>,
    options: TaskOptions,
    defaults: Option<TaskOptions>,
    expires: Option<Duration>,
    schedule: Schedule,
    missed: Missed,
}

impl Entry {
    /// An entry sending task `T` with `args`. `T`'s default options (queue, retries,
    /// limits) apply even when the scheduler's app does not register `T`.
    ///
    /// Fails when the name is not 1-200 ASCII letters, digits, `.`, `-`, `_` or `:`, when
    /// the arguments cannot be encoded, or when the schedule is invalid.
    ///
    /// ```
    /// # use hippo_queue_core::{Task, TaskContext, TaskError};
    /// # struct Cleanup;
    /// # impl Task for Cleanup {
    /// #     const NAME: &'static str = "cleanup";
    /// #     type Args = u32; type Output = ();
    /// #     async fn run(&self, _: &TaskContext, _: u32) -> Result<(), TaskError> { Ok(()) }
    /// # }
    /// use hippo_queue_core::beat::{Entry, Schedule};
    /// let e = Entry::new::<Cleanup>("cleanup-hourly", 7, Schedule::every_hours(1))?;
    /// assert_eq!(e.name(), "cleanup-hourly");
    /// assert!(Entry::new::<Cleanup>("has spaces", 7, Schedule::every_hours(1)).is_err());
    /// # Ok::<(), hippo_queue_core::beat::BeatError>(())
    /// ```
    pub fn new<T: Task>(
        name: impl Into<String>,
        args: T::Args,
        schedule: Schedule,
    ) -> Result<Entry, BeatError> {
        let args = to_msgpack(&args)?;
        Self::build(
            name.into(),
            T::NAME.to_string(),
            args,
            schedule,
            Some(T::options()),
        )
    }

    /// An entry sending a task by name with MessagePack arguments (see
    /// [`codec::to_msgpack`](crate::codec::to_msgpack)). The default options of a task
    /// registered with the scheduler's app apply.
    ///
    /// ```
    /// use hippo_queue_core::beat::{Entry, Schedule};
    /// use hippo_queue_core::codec::to_msgpack;
    /// let e = Entry::by_name("expire", "memory.expire", to_msgpack(&())?, Schedule::cron("0 * * * *")?)?;
    /// assert_eq!(e.task(), "memory.expire");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn by_name(
        name: impl Into<String>,
        task: impl Into<String>,
        args_msgpack: Vec<u8>,
        schedule: Schedule,
    ) -> Result<Entry, BeatError> {
        Self::build(name.into(), task.into(), args_msgpack, schedule, None)
    }

    fn build(
        name: String,
        task: String,
        args: Vec<u8>,
        schedule: Schedule,
        defaults: Option<TaskOptions>,
    ) -> Result<Entry, BeatError> {
        validate_name(&name)?;
        if task.is_empty() {
            return Err(BeatError::InvalidEntry {
                entry: name,
                reason: "the task name is empty".into(),
            });
        }
        schedule.validate()?;
        Ok(Entry {
            name,
            task,
            args,
            options: TaskOptions::new(),
            defaults,
            expires: None,
            schedule,
            missed: Missed::default(),
        })
    }

    /// Sends to this queue.
    ///
    /// ```
    /// # use hippo_queue_core::beat::{Entry, Schedule};
    /// let e = Entry::by_name("e", "t", vec![0xc0], Schedule::every_hours(1))?.queue("scheduled");
    /// # Ok::<(), hippo_queue_core::beat::BeatError>(())
    /// ```
    pub fn queue(mut self, queue: &str) -> Self {
        self.options.queue = Some(queue.to_string());
        self
    }

    /// Sends with this routing key.
    ///
    /// ```
    /// # use hippo_queue_core::beat::{Entry, Schedule};
    /// let e = Entry::by_name("e", "t", vec![0xc0], Schedule::every_hours(1))?
    ///     .routing_key("scheduled.dedup");
    /// # Ok::<(), hippo_queue_core::beat::BeatError>(())
    /// ```
    pub fn routing_key(mut self, key: &str) -> Self {
        self.options.routing_key = Some(key.to_string());
        self
    }

    /// Sends with this priority (0-9, higher first; larger values are clamped to 9).
    ///
    /// ```
    /// # use hippo_queue_core::beat::{Entry, Schedule};
    /// let e = Entry::by_name("e", "t", vec![0xc0], Schedule::every_hours(1))?.priority(1);
    /// # Ok::<(), hippo_queue_core::beat::BeatError>(())
    /// ```
    pub fn priority(mut self, priority: u8) -> Self {
        self.options.priority = Some(priority.min(9));
        self
    }

    /// Each sent task expires (is REVOKED instead of run) if no worker starts it within
    /// `ttl` of being sent. Handy so that a backlog of periodic tasks does not pile up
    /// while workers are down.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hippo_queue_core::beat::{Entry, Schedule};
    /// let e = Entry::by_name("e", "t", vec![0xc0], Schedule::every_hours(1))?
    ///     .expires(Duration::from_secs(3000));
    /// # Ok::<(), hippo_queue_core::beat::BeatError>(())
    /// ```
    pub fn expires(mut self, ttl: Duration) -> Self {
        self.expires = Some(ttl);
        self
    }

    /// Overrides any other task option (retries, time limits, ...), over the entry's
    /// settings so far.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hippo_queue_core::beat::{Entry, Schedule};
    /// use hippo_queue_core::TaskOptions;
    /// let e = Entry::by_name("e", "t", vec![0xc0], Schedule::every_hours(1))?
    ///     .options(TaskOptions::new().soft_time_limit(Duration::from_secs(300)));
    /// # Ok::<(), hippo_queue_core::beat::BeatError>(())
    /// ```
    pub fn options(mut self, overrides: TaskOptions) -> Self {
        self.options = overrides.or(&self.options);
        self
    }

    /// Sets the missed-tick policy (default [`Missed::RunOnce`]).
    ///
    /// ```
    /// # use hippo_queue_core::beat::{Entry, Missed, Schedule};
    /// let e = Entry::by_name("e", "t", vec![0xc0], Schedule::every_hours(1))?.missed(Missed::Skip);
    /// assert_eq!(e.missed_policy(), Missed::Skip);
    /// # Ok::<(), hippo_queue_core::beat::BeatError>(())
    /// ```
    pub fn missed(mut self, policy: Missed) -> Self {
        self.missed = policy;
        self
    }

    /// The entry's name.
    ///
    /// ```
    /// # use hippo_queue_core::beat::{Entry, Schedule};
    /// let e = Entry::by_name("e", "t", vec![0xc0], Schedule::every_hours(1))?;
    /// assert_eq!(e.name(), "e");
    /// # Ok::<(), hippo_queue_core::beat::BeatError>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The task name sent.
    ///
    /// ```
    /// # use hippo_queue_core::beat::{Entry, Schedule};
    /// let e = Entry::by_name("e", "t", vec![0xc0], Schedule::every_hours(1))?;
    /// assert_eq!(e.task(), "t");
    /// # Ok::<(), hippo_queue_core::beat::BeatError>(())
    /// ```
    pub fn task(&self) -> &str {
        &self.task
    }

    /// The MessagePack arguments sent.
    ///
    /// ```
    /// # use hippo_queue_core::beat::{Entry, Schedule};
    /// let e = Entry::by_name("e", "t", vec![0xc0], Schedule::every_hours(1))?;
    /// assert_eq!(e.args(), [0xc0]);
    /// # Ok::<(), hippo_queue_core::beat::BeatError>(())
    /// ```
    pub fn args(&self) -> &[u8] {
        &self.args
    }

    /// The schedule.
    ///
    /// ```
    /// # use hippo_queue_core::beat::{Entry, Schedule};
    /// let e = Entry::by_name("e", "t", vec![0xc0], Schedule::every_hours(1))?;
    /// assert_eq!(e.schedule().to_string(), "every 1h");
    /// # Ok::<(), hippo_queue_core::beat::BeatError>(())
    /// ```
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The missed-tick policy.
    ///
    /// ```
    /// # use hippo_queue_core::beat::{Entry, Missed, Schedule};
    /// let e = Entry::by_name("e", "t", vec![0xc0], Schedule::every_hours(1))?;
    /// assert_eq!(e.missed_policy(), Missed::RunOnce);
    /// # Ok::<(), hippo_queue_core::beat::BeatError>(())
    /// ```
    pub fn missed_policy(&self) -> Missed {
        self.missed
    }

    /// The id of the task sent for a tick: `beat:<entry>@<tick ms>`. One tick, one id,
    /// so the task of any tick can be looked up with [`App::result`].
    ///
    /// ```
    /// # use hippo_queue_core::beat::{Entry, Schedule};
    /// let e = Entry::by_name("nightly", "t", vec![0xc0], Schedule::every_hours(24))?;
    /// assert_eq!(e.task_id(86_400_000), "beat:nightly@86400000");
    /// # Ok::<(), hippo_queue_core::beat::BeatError>(())
    /// ```
    pub fn task_id(&self, tick_ms: u64) -> String {
        format!("beat:{}@{tick_ms}", self.name)
    }

    /// The options of the task sent for a tick. With a typed entry, routing follows the
    /// app's rules for a registered task (call over routes over the task's defaults)
    /// whether or not the app registers it.
    pub(crate) fn send_options(&self, app: &App, tick_ms: u64) -> Result<SendOptions, BeatError> {
        let mut options = self.options.clone();
        if let Some(defaults) = &self.defaults {
            let dest = app
                .router()
                .resolve(
                    &self.task,
                    options.queue.as_deref(),
                    options.routing_key.as_deref(),
                    defaults.queue.as_deref(),
                    defaults.routing_key.as_deref(),
                )
                .map_err(crate::Error::from)?;
            options = options.or(defaults);
            options.queue = Some(dest.queue);
            options.routing_key = Some(dest.routing_key);
        }
        let mut send = SendOptions::new()
            .with(options)
            .task_id(self.task_id(tick_ms));
        if let Some(ttl) = self.expires {
            send = send.expires_at(SystemTime::now() + ttl);
        }
        Ok(send)
    }

    /// Checks the queue name early, so that a typo fails at startup, not at the first
    /// tick.
    pub(crate) fn validate_routing(&self) -> Result<(), BeatError> {
        if let Some(q) = &self.options.queue {
            validate_queue_name(q).map_err(|e| BeatError::InvalidEntry {
                entry: self.name.clone(),
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }
}

fn validate_name(name: &str) -> Result<(), BeatError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if ok {
        Ok(())
    } else {
        Err(BeatError::InvalidEntry {
            entry: name.to_string(),
            reason: "entry names are 1-200 ASCII letters, digits, '.', '-', '_' or ':'".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::{Queue, Router};
    use crate::{TaskContext, TaskError};

    struct Report;
    impl Task for Report {
        const NAME: &'static str = "reports.daily";
        type Args = String;
        type Output = ();
        fn options() -> TaskOptions {
            TaskOptions::new().queue("reports").max_retries(7)
        }
        async fn run(&self, _: &TaskContext, _: String) -> Result<(), TaskError> {
            Ok(())
        }
    }

    fn entry() -> Entry {
        Entry::new::<Report>("daily", "eu".into(), Schedule::every_hours(24))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn typed_entries_keep_the_task_defaults() {
        let app = App::builder()
            .router(Router::new("default").queue(Queue::new("reports")))
            .build();
        let opts = entry()
            .send_options(&app, 5)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(opts.options.queue.as_deref(), Some("reports"));
        assert_eq!(opts.options.max_retries, Some(7));
        assert_eq!(opts.task_id.as_deref(), Some("beat:daily@5"));
        assert!(opts.expires.is_none());
    }

    #[test]
    fn routes_and_overrides_beat_task_defaults() {
        let app = App::builder()
            .router(
                Router::new("default")
                    .queue(Queue::new("reports"))
                    .queue(Queue::new("scheduled"))
                    .route("reports.*", "scheduled", None),
            )
            .build();
        let opts = entry()
            .send_options(&app, 5)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(opts.options.queue.as_deref(), Some("scheduled"));
        let opts = entry()
            .queue("default")
            .priority(12)
            .expires(Duration::from_secs(60))
            .send_options(&app, 5)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(opts.options.queue.as_deref(), Some("default"));
        assert_eq!(opts.options.priority, Some(9));
        assert!(opts.expires.is_some());
    }

    #[test]
    fn bad_entries_are_refused() {
        assert!(Entry::by_name("", "t", vec![], Schedule::every_hours(1)).is_err());
        assert!(Entry::by_name("x y", "t", vec![], Schedule::every_hours(1)).is_err());
        assert!(Entry::by_name("x", "", vec![], Schedule::every_hours(1)).is_err());
        assert!(Entry::by_name("x", "t", vec![], Schedule::every(Duration::ZERO)).is_err());
        let bad_queue = Entry::by_name("x", "t", vec![], Schedule::every_hours(1))
            .map(|e| e.queue("no spaces"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(bad_queue.validate_routing().is_err());
    }
}
