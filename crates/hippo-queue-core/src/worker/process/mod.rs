//! The process pool: tasks run in child processes of the worker's own program, so a
//! task that spins, leaks or crashes takes only its child with it.
//!
//! ## The protocol
//! 1. The parent binds a Unix socket at a fresh path and runs its own program again
//!    (or the configured [`ChildCommand`]) with `HIPPO_QUEUE_POOL_CHILD` set to that
//!    path and `HIPPO_QUEUE_POOL_TOKEN` to a fresh token.
//! 2. The child's `main` registers its tasks and calls
//!    [`serve_if_child`](crate::worker::serve_if_child), which connects and sends
//!    `Hello { token, pid }` (`wire.rs`). The parent checks both and removes the path.
//! 3. For each task the parent sends `Run` (ids, context, arguments); the child runs
//!    it on its own runtime and answers `Done` (output, error or panic, and its
//!    resident memory). A soft limit is one more frame, `SoftLimit`, that reaches the
//!    task's context.
//! 4. The hard limit, a `terminate` revocation or the shutdown's end sends SIGTERM to
//!    the child, then SIGKILL after the grace; a child whose socket closes mid-task
//!    died (abort, segfault, OOM kill), and its exit status names the signal.
//! 5. Between tasks, `recycle.rs` decides whether the child goes on:
//!    `max_tasks_per_child`, `max_memory_per_child`, `pool_restart` (a new
//!    generation) and shrinking retire it. A retired child's socket is closed and it
//!    exits; a new child is started when a slot next needs one.

mod child;
pub(crate) mod recycle;
mod wire;

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use child::{is_pool_child, serve_if_child};
use recycle::{ChildState, Retire, Rules};
pub(crate) use wire::RunTask;
use wire::{ChildEnd, FromChild, ToChild, WireFault};

use super::pool::{Limits, RunEnd, StopSwitch};
use crate::TaskError;

/// The program a process pool runs as its children.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChildCommand {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
}

impl ChildCommand {
    /// A program and its arguments.
    pub fn new<I, S>(program: impl Into<PathBuf>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        ChildCommand {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }

    /// This program, with the arguments it was started with (the default).
    pub fn this_program() -> Result<Self, std::io::Error> {
        Ok(ChildCommand {
            program: std::env::current_exe()?,
            args: std::env::args_os().skip(1).collect(),
        })
    }
}

/// How a process pool starts, limits and replaces its children.
#[derive(Debug, Clone)]
pub(crate) struct ProcessSettings {
    /// What to run (None: this program, as it was started).
    pub command: Option<ChildCommand>,
    /// When a child is replaced between tasks.
    pub rules: Rules,
    /// How long a child has between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// How long a new child has to connect.
    pub start_timeout: Duration,
}

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChildError {
    /// The program could not be found or run.
    #[error("could not start the pool's child process {program:?}: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The child did not connect in time, or exited first.
    #[error(
        "the pool's child process (pid {pid}) {what} before it connected; does the program \
         call hippo_queue::worker::serve_if_child(&app) after registering its tasks?"
    )]
    NoHello {
        /// The child's pid.
        pid: u32,
        /// What happened instead.
        what: String,
    },
    /// The socket could not be set up.
    #[error("the pool's socket failed: {0}")]
    Socket(String),
}

/// One child process, idle or running a task.
struct Child {
    pid: u32,
    process: tokio::process::Child,
    tx: OwnedWriteHalf,
    rx: mpsc::Receiver<Result<FromChild, WireFault>>,
    tasks_run: u64,
    generation: u64,
}

/// A worker's child processes.
pub(crate) struct ProcessPool {
    settings: ProcessSettings,
    command: ChildCommand,
    idle: Mutex<Vec<Child>>,
    /// Bumped by `restart`: children of older generations are retired.
    generation: AtomicU64,
    closed: AtomicBool,
}

impl ProcessPool {
    /// A pool with no children yet; `prestart` starts them.
    pub(crate) fn new(settings: ProcessSettings) -> Result<Self, ChildError> {
        let command = match &settings.command {
            Some(c) => c.clone(),
            None => ChildCommand::this_program().map_err(|source| ChildError::Spawn {
                program: PathBuf::from("<this program>"),
                source,
            })?,
        };
        Ok(ProcessPool {
            settings,
            command,
            idle: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        })
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Child>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts `n` children, so that the first tasks do not wait for them.
    pub(crate) async fn prestart(&self, n: usize) -> Result<(), ChildError> {
        for _ in 0..n {
            let child = self.spawn().await?;
            if self.closed.load(Ordering::Acquire) {
                self.retire(child, Retire::Surplus);
                return Ok(());
            }
            self.lock_idle().push(child);
        }
        Ok(())
    }

    /// Retires every idle child and makes running ones retire after their task
    /// (`pool_restart`).
    pub(crate) fn restart(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let idle = std::mem::take(&mut *self.lock_idle());
        for child in idle {
            self.retire(child, Retire::Restarted);
        }
    }

    /// Retires every idle child; running ones end with their tasks.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let idle = std::mem::take(&mut *self.lock_idle());
        for child in idle {
            self.retire(child, Retire::Surplus);
        }
    }

    async fn spawn(&self) -> Result<Child, ChildError> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let path = std::env::temp_dir().join(format!(
            "hippo-queue-{}-{}.sock",
            std::process::id(),
            &token[..16]
        ));
        let listener = UnixListener::bind(&path)
            .map_err(|e| ChildError::Socket(format!("binding {}: {e}", path.display())))?;
        let result = self.connect(&listener, &path, &token).await;
        let _ = std::fs::remove_file(&path);
        let child = result?;
        tracing::debug!(pid = child.pid, "pool child started");
        Ok(child)
    }

    async fn connect(
        &self,
        listener: &UnixListener,
        path: &std::path::Path,
        token: &str,
    ) -> Result<Child, ChildError> {
        let program = &self.command.program;
        let mut process = tokio::process::Command::new(program)
            .args(&self.command.args)
            .env(child::SOCKET_ENV, path)
            .env(child::TOKEN_ENV, token)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ChildError::Spawn {
                program: program.clone(),
                source,
            })?;
        let pid = process.id().unwrap_or(0);
        let no_hello = |what: String| ChildError::NoHello { pid, what };
        let deadline = tokio::time::sleep(self.settings.start_timeout);
        tokio::pin!(deadline);
        let stream = tokio::select! {
            r = listener.accept() => r.map_err(|e| ChildError::Socket(e.to_string()))?.0,
            status = process.wait() => {
                let what = match status {
                    Ok(s) => recycle::describe_exit(s.code(), s.signal()),
                    Err(e) => format!("could not be waited for ({e})"),
                };
                return Err(no_hello(what));
            }
            _ = &mut deadline => {
                return Err(no_hello(format!("did not connect within {:?}", self.settings.start_timeout)));
            }
        };
        let (rd, tx) = stream.into_split();
        let mut rx = wire::reader(rd);
        let hello = tokio::select! {
            h = rx.recv() => h,
            _ = &mut deadline => None,
        };
        match hello {
            Some(Ok(FromChild::Hello { token: t, pid: p })) if t == token && p == pid => {
                Ok(Child {
                    pid,
                    process,
                    tx,
                    rx,
                    tasks_run: 0,
                    generation: self.generation.load(Ordering::Acquire),
                })
            }
            other => Err(no_hello(format!("sent {other:?} instead of its hello"))),
        }
    }

    /// An idle child of the current generation, or a new one.
    async fn checkout(&self) -> Result<Child, ChildError> {
        let generation = self.generation.load(Ordering::Acquire);
        loop {
            let mut next = self.lock_idle().pop();
            // A child that died while idle (the OOM killer, an operator) is reaped
            // here, before a task could be lost with it.
            let dead = next
                .as_mut()
                .is_some_and(|c| !matches!(c.process.try_wait(), Ok(None)));
            match next {
                Some(c) if dead => {
                    tracing::warn!(pid = c.pid, "an idle pool child had died; replaced");
                }
                Some(c) if c.generation == generation => return Ok(c),
                Some(c) => self.retire(c, Retire::Restarted),
                None => return self.spawn().await,
            }
        }
    }

    /// Puts a child back after its task, unless `recycle::verdict` retires it.
    fn checkin(&self, mut child: Child, rss: u64, slots: usize) {
        child.tasks_run += 1;
        let state = ChildState {
            tasks_run: child.tasks_run,
            rss,
            generation: child.generation,
        };
        let mut idle = self.lock_idle();
        let wanted = !self.closed.load(Ordering::Acquire) && idle.len() < slots;
        let generation = self.generation.load(Ordering::Acquire);
        match recycle::verdict(self.settings.rules, state, generation, wanted) {
            None => idle.push(child),
            Some(why) => {
                drop(idle);
                self.retire(child, why);
            }
        }
    }

    /// Closes a child's socket (it exits) and reaps it; SIGKILL if it lingers.
    fn retire(&self, child: Child, why: Retire) {
        tracing::info!(
            pid = child.pid,
            tasks = child.tasks_run,
            "pool child retired: {why}"
        );
        let Child {
            pid,
            mut process,
            tx,
            rx,
            ..
        } = child;
        drop(tx);
        drop(rx);
        let grace = self.settings.kill_grace;
        tokio::spawn(async move {
            if tokio::time::timeout(grace, process.wait()).await.is_err() {
                tracing::warn!(pid, "a retired pool child did not exit; killed");
                let _ = process.kill().await;
            }
        });
    }

    /// SIGTERM, then SIGKILL after the grace; reaped in the background.
    fn terminate(&self, child: Child) {
        let Child {
            pid, mut process, ..
        } = child;
        tracing::warn!(pid, "pool child terminated");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let grace = self.settings.kill_grace;
        tokio::spawn(async move {
            if tokio::time::timeout(grace, process.wait()).await.is_err() {
                tracing::warn!(pid, "pool child ignored SIGTERM; killed");
                let _ = process.kill().await;
            }
        });
    }

    /// How a child whose socket closed ended.
    async fn reap(&self, child: Child) -> String {
        let Child {
            pid, mut process, ..
        } = child;
        let how = match tokio::time::timeout(self.settings.kill_grace, process.wait()).await {
            Ok(Ok(s)) => recycle::describe_exit(s.code(), s.signal()),
            Ok(Err(e)) => format!("could not be waited for ({e})"),
            Err(_) => {
                let _ = process.kill().await;
                "closed its socket and was killed".to_string()
            }
        };
        format!("the pool's child process (pid {pid}) died while running the task: {how}")
    }

    /// Runs one task in a child under its limits.
    pub(crate) async fn run(
        &self,
        task: RunTask,
        limits: Limits,
        soft_signal: CancellationToken,
        stop: StopSwitch,
        kill: CancellationToken,
        slots: usize,
    ) -> RunEnd {
        let mut child = match self.checkout().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "no pool child for the task");
                return RunEnd::Finished(Err(TaskError::new(
                    crate::task::kinds::POOL_ERROR,
                    e.to_string(),
                )));
            }
        };
        if wire::write(&mut child.tx, &ToChild::Run(task))
            .await
            .is_err()
        {
            return RunEnd::ChildLost(self.reap(child).await);
        }
        let timers = super::pool::Timers::new(&limits);
        let mut soft_sent = false;
        enum Ev {
            Done(ChildEnd, u64),
            Lost,
            Soft,
            Hard,
            Stop,
            Kill,
        }
        loop {
            let ev = tokio::select! {
                frame = child.rx.recv() => match frame {
                    Some(Ok(FromChild::Done { end, rss })) => Ev::Done(end, rss),
                    _ => Ev::Lost,
                },
                _ = tokio::time::sleep_until(timers.soft_at), if !soft_sent && limits.soft.is_some() => Ev::Soft,
                _ = tokio::time::sleep_until(timers.hard_at), if limits.hard.is_some() => Ev::Hard,
                _ = stop.cancelled() => Ev::Stop,
                _ = kill.cancelled() => Ev::Kill,
            };
            match ev {
                Ev::Soft => {
                    soft_sent = true;
                    tracing::warn!(limit = ?limits.soft, pid = child.pid, "soft time limit exceeded");
                    soft_signal.cancel();
                    let _ = wire::write(&mut child.tx, &ToChild::SoftLimit).await;
                }
                Ev::Done(end, rss) => {
                    self.checkin(child, rss, slots);
                    return match end {
                        ChildEnd::Output(out) => RunEnd::Finished(Ok(out)),
                        ChildEnd::Error(e) => RunEnd::Finished(Err(e.into())),
                        ChildEnd::Panicked(msg) => RunEnd::Panicked(msg),
                    };
                }
                Ev::Lost => return RunEnd::ChildLost(self.reap(child).await),
                Ev::Hard => {
                    self.terminate(child);
                    return RunEnd::HardLimit(limits.hard.unwrap_or_default());
                }
                Ev::Stop => {
                    self.terminate(child);
                    return RunEnd::Stopped(stop.reason());
                }
                Ev::Kill => {
                    let mut process = child.process;
                    let _ = process.start_kill();
                    return RunEnd::Killed;
                }
            }
        }
    }
}
