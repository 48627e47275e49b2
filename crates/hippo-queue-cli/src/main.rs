//! `hippo-queue`: the command line of hippo-queue, with Celery's vocabulary.
//!
//! ```text
//! hippo-queue inspect active
//! hippo-queue control autoscale 10 3
//! hippo-queue control pool_restart
//! hippo-queue call memory.dedup --kwargs '{"user_id": "alice"}'
//! hippo-queue status
//! hippo-queue purge --force
//! hippo-queue queues
//! hippo-queue result 4f1c…
//! hippo-queue events --follow
//! hippo-queue monitor --basic-auth admin:secret
//! ```
//!
//! Exit codes: 0 success; 1 error (Redis unreachable, bad reply); 2 usage error;
//! 3 nothing answered (no worker replied, unknown task); 4 the task ended in FAILURE,
//! REVOKED or REJECTED (`result`). `doctor` has its own: 0 all fine, 1 warnings,
//! 2 errors (Redis unreachable included).

mod call;
mod cli;
mod dead_letters;
mod doctor;
mod monitor;
mod purge;
mod render;
mod run;
mod status;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match run::run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(run::EXIT_ERROR)
        }
    }
}
