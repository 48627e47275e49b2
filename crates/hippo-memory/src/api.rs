//! The HTTP API of the guide, served: the routes, their OpenAPI document and the task
//! log come from `hippo_memory_tasks::api`; this program reads its flags, connects,
//! and serves.
//!
//! With `CELERY_BROKER_URL` set, tasks go through Redis to `hippo-memory worker`
//! processes. With `--embedded`, the API runs a worker in its own process on the
//! in-memory backend and store (nothing is kept when it stops). The first line on
//! stdout is `api listening on http://ADDR`, for scripts started with `--port 0`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use hippo_memory_tasks::api::task_log::{InMemoryTaskLog, RedisTaskLog};
use hippo_memory_tasks::api::{ApiState, ApiStateBuilder, router};
use hippo_memory_tasks::store::{InMemoryStore, MemoryStore};
use hippo_memory_tasks::tasks::{MemoryServices, register_all};
use hippo_queue_core::config::{Config, redact_url};
use hippo_queue_core::{App, WorkerHandle};

use crate::{BoxError, models, samples, setup};

const EXAMPLES: &str = "\
Examples:
  $ hippo-memory api --load-samples                 # http://127.0.0.1:8000
  $ hippo-memory api --embedded --load-samples      # no Redis: one process
  $ curl http://localhost:8000/openapi.json

Environment:
  CELERY_BROKER_URL         the broker (required unless --embedded)
  CELERY_RESULT_BACKEND     where results and the task log are kept (default: the broker)
  MEMORY_STORE_URL          the memory store (default: the broker's server, database 0)
  EMBEDDING_MODEL           the model migrations move from (with --embedded)";

/// Serve the HTTP API of HippocampAI's background tasks.
#[derive(Debug, Parser)]
#[command(name = "api", version, after_help = EXAMPLES)]
pub struct ApiArgs {
    /// Port to listen on (0: any free port; the address is printed)
    #[arg(
        short,
        long,
        env = "API_PORT",
        default_value_t = 8000,
        help_heading = "Server Options"
    )]
    pub port: u16,
    /// Address to listen on
    #[arg(
        long,
        env = "API_HOST",
        default_value = "127.0.0.1",
        help_heading = "Server Options"
    )]
    pub host: String,
    /// Log level or filter: error, warn, info, debug, trace [env: RUST_LOG] [default:
    /// info]
    #[arg(
        short = 'l',
        long,
        value_name = "LEVEL",
        help_heading = "Server Options"
    )]
    pub loglevel: Option<String>,
    /// Run a worker in this process on the in-memory backend and store, without Redis
    #[arg(long, help_heading = "Backend Options")]
    pub embedded: bool,
    /// Add sample memories and procedural rules for user123 (and alice) if user123
    /// has none, so that the guide's examples have something to work on
    #[arg(long, help_heading = "Backend Options")]
    pub load_samples: bool,
}

/// The API's state and, with `embedded`, its worker.
async fn connect(embedded: bool) -> Result<(ApiState, Option<WorkerHandle>), BoxError> {
    if embedded {
        let embedders = models::embedders(&models::current_model_from_env(), Duration::ZERO)?;
        let store: Arc<dyn MemoryStore> = Arc::new(InMemoryStore::new());
        let app = App::builder()
            .router(hippo_memory_tasks::router())
            .config(Config::from_env()?)
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
        setup::endpoints("api").map_err(|e| format!("{e}\nOr start the API with --embedded."))?;
    let (app, redis) = setup::connect_queue(&ep).await?;
    let store = setup::connect_store(&ep).await?;
    let results_url = ep
        .config
        .result_backend
        .clone()
        .unwrap_or_else(|| ep.broker_url.clone());
    let ttl = ep.config.result_expires + Duration::from_secs(3600);
    let log = RedisTaskLog::connect(&results_url, ttl)
        .await
        .map_err(|e| {
            let url = redact_url(&results_url);
            format!("cannot reach the result backend at {url}: {e}")
        })?;
    let state = with_models(ApiState::builder(app, store))
        .task_log(Arc::new(log.beat(Arc::new(redis))))
        .mode("redis")
        .build();
    Ok((state, None))
}

/// The embedding models migrations may move to.
fn with_models(mut b: ApiStateBuilder) -> ApiStateBuilder {
    for &(name, dim) in models::KNOWN_MODELS {
        b = b.model(name, dim);
    }
    b
}

/// Serves the API until a signal stops it.
pub async fn run(args: ApiArgs) -> Result<(), BoxError> {
    let (state, worker) = connect(args.embedded).await?;
    if args.load_samples {
        let n = samples::load_samples(state.store().as_ref(), samples::GUIDE_USER, "alice").await?;
        if n > 0 {
            tracing::info!(
                "loaded {n} sample memories for {} and alice",
                samples::GUIDE_USER
            );
        }
    }
    let mode = state.mode().to_string();
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", args.host, args.port))?;
    let addr: SocketAddr = listener.local_addr()?;
    let shutdown = setup::shutdown_signal();
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
