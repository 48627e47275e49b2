//! The test tasks the checks run.

use super::support::*;

pub(super) type Log = Arc<Mutex<Vec<String>>>;

/// Appends its argument to a log.
pub(super) struct Record(pub(super) Log);

impl Task for Record {
    const NAME: &'static str = "conformance.record";
    type Args = String;
    type Output = String;
    async fn run(&self, _: &TaskContext, label: String) -> Result<String, TaskError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(label.clone());
        Ok(label)
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct FlakyArgs {
    pub(super) kind: String,
    pub(super) fail_times: u32,
    pub(super) explicit_retry_ms: Option<u64>,
}

/// Fails `fail_times` times with an error of `kind`, then succeeds.
pub(super) struct Flaky {
    pub(super) attempts: Arc<Mutex<Vec<Instant>>>,
}

impl Task for Flaky {
    const NAME: &'static str = "conformance.flaky";
    type Args = FlakyArgs;
    type Output = u32;
    async fn run(&self, ctx: &TaskContext, a: FlakyArgs) -> Result<u32, TaskError> {
        self.attempts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Instant::now());
        if ctx.retries() < a.fail_times {
            let e = TaskError::new(a.kind, format!("attempt {} failed", ctx.retries()))
                .caused_by("the upstream said no");
            return Err(match a.explicit_retry_ms {
                Some(ms) => e.retry_in(Duration::from_millis(ms)),
                None => e,
            });
        }
        Ok(ctx.retries())
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct SleepArgs {
    pub(super) ms: u64,
    pub(super) honor_soft: bool,
}

/// Sleeps; notes when it saw the soft limit; optionally stops at it.
pub(super) struct Sleepy {
    pub(super) runs: Arc<AtomicU32>,
    pub(super) soft_seen: Arc<AtomicU32>,
}

impl Task for Sleepy {
    const NAME: &'static str = "conformance.sleepy";
    type Args = SleepArgs;
    type Output = u64;
    fn options() -> TaskOptions {
        TaskOptions::new().track_started(true)
    }
    async fn run(&self, ctx: &TaskContext, a: SleepArgs) -> Result<u64, TaskError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let sleep = tokio::time::sleep(Duration::from_millis(a.ms));
        tokio::pin!(sleep);
        tokio::select! {
            _ = &mut sleep => return Ok(a.ms),
            _ = ctx.soft_limit() => {}
        }
        self.soft_seen.fetch_add(1, Ordering::SeqCst);
        if a.honor_soft {
            return Err(TaskError::soft_time_limit());
        }
        sleep.await;
        Ok(a.ms)
    }
}

/// Records when it started.
pub(super) struct Stamp(pub(super) Arc<Mutex<Vec<Instant>>>);

impl Task for Stamp {
    const NAME: &'static str = "conformance.stamp";
    type Args = ();
    type Output = ();
    async fn run(&self, _: &TaskContext, _: ()) -> Result<(), TaskError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Instant::now());
        Ok(())
    }
}

/// Panics.
pub(super) struct Panicker;

impl Task for Panicker {
    const NAME: &'static str = "conformance.panic";
    type Args = ();
    type Output = ();
    async fn run(&self, _: &TaskContext, _: ()) -> Result<(), TaskError> {
        panic!("deliberate panic in a task")
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct Pair {
    pub(super) a: i64,
    pub(super) b: String,
}

/// Needs structured arguments.
pub(super) struct Typed;

impl Task for Typed {
    const NAME: &'static str = "conformance.typed";
    type Args = Pair;
    type Output = String;
    async fn run(&self, _: &TaskContext, p: Pair) -> Result<String, TaskError> {
        Ok(format!("{}{}", p.b, p.a))
    }
}

/// Returns a large string (for compression).
pub(super) struct Big;

impl Task for Big {
    const NAME: &'static str = "conformance.big";
    type Args = usize;
    type Output = String;
    fn options() -> TaskOptions {
        TaskOptions::new().compression(crate::Compression::Zstd)
    }
    async fn run(&self, _: &TaskContext, n: usize) -> Result<String, TaskError> {
        Ok("hippo ".repeat(n))
    }
}
