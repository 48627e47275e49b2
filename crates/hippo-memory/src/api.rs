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
use hippo_memory_tasks::api::serve::{ServeOptions, serve};
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
  API_TOKENS                bearer tokens, comma-separated (required beyond the loopback)
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
    /// Bearer tokens, comma-separated, each of 16 characters or more; required when
    /// listening beyond the loopback
    #[arg(
        long = "tokens",
        env = "API_TOKENS",
        hide_env_values = true,
        value_name = "TOKEN,...",
        help_heading = "Server Options"
    )]
    pub tokens: Option<String>,
    /// Host names the API answers to, comma-separated [default on the loopback:
    /// localhost,127.0.0.1,::1; elsewhere: any]
    #[arg(
        long,
        env = "API_ALLOWED_HOSTS",
        value_name = "HOST,...",
        help_heading = "Server Options"
    )]
    pub allowed_hosts: Option<String>,
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
async fn connect(
    embedded: bool,
    tokens: Vec<String>,
    hosts: Vec<String>,
) -> Result<(ApiState, Option<WorkerHandle>), BoxError> {
    let secured = |b: ApiStateBuilder| -> Result<ApiStateBuilder, BoxError> {
        Ok(b.bearer_tokens(tokens.clone())?
            .allowed_hosts(hosts.clone()))
    };
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
        let state = secured(with_models(ApiState::builder(app, store)))?
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
    let state = secured(with_models(ApiState::builder(app, store)))?
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

/// The host names an API on the loopback answers to when none are given.
const LOOPBACK_HOSTS: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// Splits a comma-separated list, dropping empty items.
fn list(v: Option<&str>) -> Vec<String> {
    v.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Whether `host` (a name or an address to listen on) is the loopback only.
fn is_loopback(host: &str) -> bool {
    match host
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<std::net::IpAddr>()
    {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// The access settings for listening on `host`: tokens are required beyond the
/// loopback; on the loopback the host names default to the loopback's.
fn access(
    host: &str,
    tokens: Option<&str>,
    hosts: Option<&str>,
) -> Result<(Vec<String>, Vec<String>), String> {
    let tokens = list(tokens);
    let mut hosts = list(hosts);
    if is_loopback(host) {
        if hosts.is_empty() {
            hosts = LOOPBACK_HOSTS.iter().map(|h| h.to_string()).collect();
        }
    } else if tokens.is_empty() {
        return Err(format!(
            "listening on {host} (beyond the loopback) needs bearer tokens: set API_TOKENS \
             (or --tokens) to one or more random strings of 16 characters or more, or \
             listen on 127.0.0.1"
        ));
    }
    Ok((tokens, hosts))
}

/// Serves the API until a signal stops it.
pub async fn run(args: ApiArgs) -> Result<(), BoxError> {
    let (tokens, hosts) = access(
        &args.host,
        args.tokens.as_deref(),
        args.allowed_hosts.as_deref(),
    )?;
    let (state, worker) = connect(args.embedded, tokens, hosts).await?;
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
    let stop = async move {
        let s = shutdown.await;
        *seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
    };
    serve(listener, router(state), ServeOptions::default(), stop).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_required_beyond_the_loopback() {
        let e = access("0.0.0.0", None, None).unwrap_err();
        assert!(e.contains("API_TOKENS"), "{e}");
        let (tokens, hosts) = access("0.0.0.0", Some("0123456789abcdef, "), None).unwrap();
        assert_eq!(tokens, ["0123456789abcdef"]);
        assert!(hosts.is_empty());
        for lo in ["127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.2"] {
            let (tokens, hosts) = access(lo, None, None).unwrap();
            assert!(tokens.is_empty());
            assert_eq!(hosts, LOOPBACK_HOSTS, "{lo}");
        }
        let (_, hosts) = access("127.0.0.1", None, Some("api.internal")).unwrap();
        assert_eq!(hosts, ["api.internal"]);
        assert!(access("api.example.com", None, None).is_err());
    }
}
