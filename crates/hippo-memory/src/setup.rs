//! What every program does first: logging, the guide's variables, connecting to the
//! broker and the memory store, and waiting for a signal to stop.

use std::error::Error as StdError;
use std::sync::Arc;

use hippo_memory_tasks::store::{MemoryStore, RedisStore, RedisStoreConfig};
use hippo_queue_core::App;
use hippo_queue_core::config::{Config, redact_url};
use hippo_queue_redis::{RedisBackend, RedisConfig};

/// A boxed error: what the programs report before they exit.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// Logs to stderr at `level` (a `tracing` filter such as `info` or
/// `hippo_queue=debug`); without a level, `RUST_LOG` decides, and `info` without
/// either.
pub fn init_logging(level: Option<&str>) -> Result<(), BoxError> {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::try_new(l)
            .map_err(|e| format!("--loglevel {l:?} is not a valid log filter: {e}"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
    Ok(())
}

/// The URL with its database number replaced (`redis://host:6379/1` -> `/0`).
pub fn with_db(url: &str, db: u8) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, format!("?{q}")),
        None => (rest, String::new()),
    };
    // The authority ends at the first '/' after any credentials.
    let start = rest.rfind('@').map_or(0, |i| i + 1);
    let authority = match rest[start..].find('/') {
        Some(i) => &rest[..start + i],
        None => rest,
    };
    format!("{scheme}://{authority}/{db}{query}")
}

/// What the guide's variables point at: the broker, the results, and the memory store.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// The queue configuration (`CELERY_*`).
    pub config: Config,
    /// `CELERY_BROKER_URL`.
    pub broker_url: String,
    /// `MEMORY_STORE_URL`, or the broker's server on database 0 (the guide's cache
    /// database).
    pub store_url: String,
}

/// Reads the guide's variables; a missing `CELERY_BROKER_URL` is an error that says
/// what to set (`program` names the process in the message).
pub fn endpoints(program: &str) -> Result<Endpoints, BoxError> {
    let config = Config::from_env()?;
    let Some(broker_url) = config.broker_url.clone() else {
        return Err(format!(
            "CELERY_BROKER_URL is not set: the {program} runs in its own process and talks to \
             the others through Redis. Start redis-server and set, as in the guide:\n\
             \n    export CELERY_BROKER_URL=redis://localhost:6379/1\
             \n    export CELERY_RESULT_BACKEND=redis://localhost:6379/2\n\
             \nTo try it in one process without Redis, run `hippo-memory api --embedded` (or, in \
             a checkout, `cargo run --example demo`)."
        )
        .into());
    };
    let store_url = match std::env::var("MEMORY_STORE_URL") {
        Ok(u) if !u.trim().is_empty() => u,
        _ => with_db(&broker_url, 0),
    };
    Ok(Endpoints {
        config,
        broker_url,
        store_url,
    })
}

/// Connects to the broker and result backend and builds the app with the guide's
/// four queues (nothing registered yet).
pub async fn connect_queue(ep: &Endpoints) -> Result<(App, RedisBackend), BoxError> {
    let redis_cfg = RedisConfig::from_core(&ep.config).ok_or("CELERY_BROKER_URL is not set")?;
    let redis = RedisBackend::connect(redis_cfg)
        .await
        .map_err(|e| format!("cannot reach the broker: {e}"))?;
    let app = App::builder()
        .broker(redis.clone())
        .backend(redis.clone())
        .router(hippo_memory_tasks::router())
        .config(ep.config.clone())
        .build();
    Ok((app, redis))
}

/// Connects to the memory store on Redis.
pub async fn connect_store(ep: &Endpoints) -> Result<Arc<dyn MemoryStore>, BoxError> {
    let store = RedisStore::connect(RedisStoreConfig::new(ep.store_url.clone()))
        .await
        .map_err(|e| {
            let url = redact_url(&ep.store_url);
            format!("cannot reach the memory store at {url}: {e}")
        })?;
    Ok(Arc::new(store))
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM; returns the signal's name. The handlers
/// are installed when this is called, so call it before announcing that the program
/// is ready.
pub fn shutdown_signal() -> impl std::future::Future<Output = &'static str> + Send {
    use tokio::signal::unix::{SignalKind, signal};
    let int = signal(SignalKind::interrupt());
    let term = signal(SignalKind::terminate());
    async move {
        match (int, term) {
            (Ok(mut int), Ok(mut term)) => tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            _ => {
                // No signal handlers (should not happen on Unix): wait for Ctrl-C.
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
}
