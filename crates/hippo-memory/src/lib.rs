//! HippocampAI's background-task programs on hippo-queue, as the Celery guide runs
//! them:
//!
//! | Celery | hippo-memory |
//! | --- | --- |
//! | `celery -A src.hippocampai.celery_app worker --loglevel=info` | `hippo-memory worker --loglevel=info` |
//! | `celery -A src.hippocampai.celery_app beat --loglevel=info` | `hippo-memory beat --loglevel=info` |
//! | `uvicorn hippocampai.api.async_app:app --port 8000` | `hippo-memory api --port 8000` |
//!
//! ```sh
//! cargo install --path crates/hippo-memory
//! export CELERY_BROKER_URL=redis://localhost:6379/1
//! export CELERY_RESULT_BACKEND=redis://localhost:6379/2
//! hippo-memory worker --loglevel=info --concurrency=4
//! ```
//!
//! The library is what the programs are made of, so that the `hippo-queue`
//! repository's examples (`worker`, `beat`, `api`, `demo`) run the same code:
//!
//! - [`worker`], [`beat`], [`api`]: each program's flags ([`clap`]) and its `run`;
//! - [`setup`]: logging, the guide's `CELERY_*` variables, connecting to the broker and
//!   the memory store, the shutdown signal;
//! - [`models`]: the embedding models a worker is given;
//! - [`samples`]: memories and procedural rules to try the tasks on.

#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod api;
pub mod beat;
pub mod models;
pub mod samples;
pub mod setup;
pub mod worker;

pub use setup::BoxError;

use std::future::Future;

/// Runs one program to its end and exits the process: sets up logging at
/// `loglevel`, runs `program`, and exits with 0, with 2 for a bad log level, or with 1
/// for any other error (printed on stderr after `name`). Exiting here, rather than
/// returning from `main`, does not wait for background threads still blocked on I/O.
pub async fn run_and_exit(
    name: &str,
    loglevel: Option<&str>,
    program: impl Future<Output = Result<(), BoxError>>,
) -> ! {
    if let Err(e) = setup::init_logging(loglevel) {
        eprintln!("{name}: {e}");
        std::process::exit(2);
    }
    match program.await {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::exit(1);
        }
    }
}
