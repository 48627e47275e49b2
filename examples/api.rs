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

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use common::BoxError;
use hippo_memory_tasks::api::task_log::{InMemoryTaskLog, RedisTaskLog};
use hippo_memory_tasks::api::{ApiState, router};
use hippo_memory_tasks::store::{InMemoryStore, MemoryStore};
use hippo_memory_tasks::tasks::{MemoryServices, register_all};
use hippo_queue::{App, WorkerHandle};

/// The HTTP API of HippocampAI's background tasks.
#[derive(Debug, Parser)]
#[command(name = "api", version)]
struct Args {
    /// Port to listen on (0: any free port; the address is printed).
    #[arg(short, long, env = "API_PORT", default_value_t = 8000)]
    port: u16,
    /// Address to listen on.
    #[arg(long, env = "API_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Run a worker in this process on the in-memory backend and store, without
    /// Redis.
    #[arg(long)]
    embedded: bool,
    /// Add sample memories and procedural rules for user123 (and alice) if user123
    /// has none, so that the guide's examples have something to work on.
    #[arg(long)]
    load_samples: bool,
    /// Log level or filter (default: RUST_LOG, else info).
    #[arg(short = 'l', long)]
    loglevel: Option<String>,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(e) = common::init_logging(args.loglevel.as_deref()) {
        eprintln!("api: {e}");
        std::process::exit(2);
    }
    if let Err(e) = run(args).await {
        eprintln!("api: {e}");
        std::process::exit(1);
    }
}

/// The API's state and, with `--embedded`, its worker.
async fn connect(embedded: bool) -> Result<(ApiState, Option<WorkerHandle>), BoxError> {
    if embedded {
        let embedders = common::embedders(&common::current_model_from_env(), Duration::ZERO)?;
        let store: Arc<dyn MemoryStore> = Arc::new(InMemoryStore::new());
        let app = App::builder()
            .router(hippo_memory_tasks::router())
            .config(hippo_queue::config::Config::from_env()?)
            .build();
        register_all(
            &app,
            &MemoryServices::new(store.clone()).embedders(embedders),
        );
        let worker = app.worker().start().await?;
        let state = with_models(ApiState::builder(app, store))
            .task_log(Arc::new(InMemoryTaskLog::new()))
            .mode("embedded")
            .build();
        return Ok((state, Some(worker)));
    }
    let ep =
        common::endpoints("api").map_err(|e| format!("{e}\nOr start the API with --embedded."))?;
    let (app, redis) = common::connect_queue(&ep).await?;
    let store = common::connect_store(&ep).await?;
    let results_url = ep
        .config
        .result_backend
        .clone()
        .unwrap_or_else(|| ep.broker_url.clone());
    let ttl = ep.config.result_expires + Duration::from_secs(3600);
    let log = RedisTaskLog::connect(&results_url, ttl)
        .await
        .map_err(|e| {
            let url = hippo_queue::config::redact_url(&results_url);
            format!("cannot reach the result backend at {url}: {e}")
        })?;
    let state = with_models(ApiState::builder(app, store))
        .task_log(Arc::new(log.beat(Arc::new(redis))))
        .mode("redis")
        .build();
    Ok((state, None))
}

/// The embedding models migrations may move to.
fn with_models(
    mut b: hippo_memory_tasks::api::ApiStateBuilder,
) -> hippo_memory_tasks::api::ApiStateBuilder {
    for &(name, dim) in common::KNOWN_MODELS {
        b = b.model(name, dim);
    }
    b
}

async fn run(args: Args) -> Result<(), BoxError> {
    let (state, worker) = connect(args.embedded).await?;
    if args.load_samples {
        let n = common::load_samples(state.store().as_ref(), common::GUIDE_USER, "alice").await?;
        if n > 0 {
            tracing::info!(
                "loaded {n} sample memories for {} and alice",
                common::GUIDE_USER
            );
        }
    }
    let mode = state.mode().to_string();
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", args.host, args.port))?;
    let addr: SocketAddr = listener.local_addr()?;
    let shutdown = common::shutdown_signal();
    // The first line on stdout is the address (read by scripts started with --port 0).
    println!("api listening on http://{addr}");
    tracing::info!(mode, "api listening on http://{addr}");
    let signal = Arc::new(Mutex::new(None::<&'static str>));
    let seen = signal.clone();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            let s = shutdown.await;
            *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
        })
        .await?;
    let s = signal
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .unwrap_or("a signal");
    tracing::info!("api stopping on {s}");
    if let Some(w) = worker {
        w.shutdown().await;
    }
    tracing::info!("api stopped");
    Ok(())
}
