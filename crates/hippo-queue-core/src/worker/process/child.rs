//! The child's side: connect to the parent, then run one task at a time for it.

use std::path::PathBuf;

use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::wire::{self, ChildEnd, FromChild, RunTask, ToChild, WireError, WireFault};
use crate::context::TaskContext;
use crate::task::kinds;
use crate::{App, TaskError};

/// The variable that marks a pool child: the path of the parent's socket.
pub(super) const SOCKET_ENV: &str = "HIPPO_QUEUE_POOL_CHILD";
/// The variable that carries the token the child proves itself with.
pub(super) const TOKEN_ENV: &str = "HIPPO_QUEUE_POOL_TOKEN";

/// Whether this process is a child of a worker's process pool.
pub fn is_pool_child() -> bool {
    std::env::var_os(SOCKET_ENV).is_some()
}

/// Serves the worker's process pool when this process is one of its children, then
/// exits the process; returns at once otherwise.
///
/// This is the one call a program that starts a worker with
/// [`Pool::Process`](crate::worker::Pool::Process) needs: the pool runs the program
/// again as its children, and each child must register the same tasks and then come
/// here instead of going on with `main`. Call it right after registering the tasks,
/// before anything a child must not do (binding ports, starting beat, printing a
/// banner):
///
/// ```no_run
/// # use hippo_queue_core::{App, Task, TaskContext, TaskError};
/// # struct Crunch;
/// # impl Task for Crunch {
/// #     const NAME: &'static str = "crunch";
/// #     type Args = u64; type Output = u64;
/// #     async fn run(&self, _: &TaskContext, n: u64) -> Result<u64, TaskError> { Ok(n) }
/// # }
/// use hippo_queue_core::worker::{Pool, serve_if_child};
///
/// #[tokio::main]
/// async fn main() -> Result<(), hippo_queue_core::Error> {
///     let app = App::in_memory();
///     app.register(Crunch);
///     serve_if_child(&app).await; // a pool child never returns from here
///     let worker = app.worker().pool(Pool::Process).concurrency(4).start().await?;
///     worker.stopped().await;
///     Ok(())
/// }
/// ```
///
/// [`WorkerBuilder::start`](crate::WorkerBuilder::start) makes the same check, so a
/// program that forgets the call still works, having run everything before `start`
/// in every child.
pub async fn serve_if_child(app: &App) {
    let Some(socket) = std::env::var_os(SOCKET_ENV).map(PathBuf::from) else {
        return;
    };
    let token = std::env::var(TOKEN_ENV).unwrap_or_default();
    let code = match serve(app, socket, token).await {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "pool child: lost its parent");
            1
        }
    };
    std::process::exit(code);
}

/// Runs the parent's tasks until it closes the socket.
async fn serve(app: &App, socket: PathBuf, token: String) -> Result<(), WireFault> {
    // A child must not outlive its worker (a task spinning in an orphan would run
    // forever): the kernel kills it when the parent dies.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        tracing::warn!(error = %e, "pool child: could not ask to die with its parent");
    }
    let stream = UnixStream::connect(&socket).await?;
    let (rd, mut wr) = stream.into_split();
    let pid = std::process::id();
    wire::write(&mut wr, &FromChild::Hello { token, pid }).await?;
    let mut frames = wire::reader(rd);
    loop {
        let task = match frames.recv().await {
            Some(Ok(ToChild::Run(task))) => task,
            // A soft limit that arrived after its task ended.
            Some(Ok(ToChild::SoftLimit)) => continue,
            Some(Err(WireFault::Closed)) | None => return Ok(()),
            Some(Err(e)) => return Err(e),
        };
        let span = tracing::info_span!("task", task_id = %task.id, task_name = %task.name, pid);
        let end = run_one(app, task, &mut frames).instrument(span).await?;
        let rss = crate::control::memory_rss();
        wire::write(&mut wr, &FromChild::Done { end, rss }).await?;
    }
}

/// Runs one task, passing a soft limit on to its context. The parent closing the
/// socket mid-task (it was killed, or gave up on the task) ends the process.
async fn run_one(
    app: &App,
    task: RunTask,
    frames: &mut mpsc::Receiver<Result<ToChild, WireFault>>,
) -> Result<ChildEnd, WireFault> {
    let Some(handler) = app.handler(&task.name) else {
        let e = TaskError::new(
            kinds::NOT_REGISTERED,
            format!(
                "task {:?} is not registered in the pool's child process: register it before \
                 calling serve_if_child",
                task.name
            ),
        );
        return Ok(ChildEnd::Error(WireError::from(&e)));
    };
    let soft = CancellationToken::new();
    let ctx = TaskContext {
        id: task.id,
        name: task.name,
        retries: task.retries,
        max_retries: task.max_retries,
        queue: task.queue,
        root_id: task.root_id,
        parent_id: task.parent_id,
        worker: task.worker,
        soft_limit: soft.clone(),
        app: Some(app.clone()),
    };
    let fut = match handler.call(ctx, &task.args) {
        Ok(fut) => fut,
        Err(e) => return Ok(ChildEnd::Error(WireError::from(&e))),
    };
    let mut join = tokio::spawn(fut);
    loop {
        tokio::select! {
            r = &mut join => {
                return Ok(match r {
                    Ok(Ok(out)) => ChildEnd::Output(out),
                    Ok(Err(e)) => ChildEnd::Error(WireError::from(&e)),
                    Err(e) if e.is_panic() => ChildEnd::Panicked(super::super::pool::panic_message(e.into_panic())),
                    Err(e) => ChildEnd::Panicked(e.to_string()),
                });
            }
            frame = frames.recv() => match frame {
                Some(Ok(ToChild::SoftLimit)) => soft.cancel(),
                Some(Ok(ToChild::Run(_))) => {
                    tracing::error!("pool child: the parent sent a task while one runs");
                    std::process::exit(1);
                }
                Some(Err(WireFault::Closed)) | None => std::process::exit(0),
                Some(Err(e)) => return Err(e),
            },
        }
    }
}
