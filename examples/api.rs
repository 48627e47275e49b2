//! The HTTP API of the guide, served: the routes, their OpenAPI document and the task
//! log come from `hippo_memory_tasks::api` (feature `api`); this program reads its
//! flags, connects, and serves.
//!
//! ```sh
//! export CELERY_BROKER_URL=redis://localhost:6379/1
//! export CELERY_RESULT_BACKEND=redis://localhost:6379/2
//! cargo run --example api -- --load-samples       # http://localhost:8000
//! cargo run --example api -- --embedded --load-samples   # no Redis: one process
//! ```
//!
//! The routes are listed in the `api` module's documentation and at
//! `GET /openapi.json`. With `CELERY_BROKER_URL` set, tasks go through Redis to the
//! `worker` example's processes. With `--embedded`, the API runs a worker in its own
//! process on the in-memory backend and store (nothing is kept when it stops).
//!
//! The program is `hippo_memory::api` (crates/hippo-memory/src/api.rs), the same code
//! as the installable `hippo-memory api`.

use clap::Parser;
use hippo_memory::api::{self, ApiArgs};

#[tokio::main]
async fn main() {
    let args = ApiArgs::parse();
    let level = args.loglevel.clone();
    hippo_memory::run_and_exit("api", level.as_deref(), api::run(args)).await
}
