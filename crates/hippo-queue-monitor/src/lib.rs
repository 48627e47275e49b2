//! # hippo-queue-monitor
//!
//! The monitor of hippo-queue: Flower's HTTP API (same paths, parameters and JSON
//! shapes) over the broker and result backend, as an axum [`Router`] a host
//! application can mount, or served on its own by `hippo-queue monitor`.
//!
//! - **Stateless.** Every answer is read from the backend: the worker registry (a
//!   worker is live while its heartbeats renew its record), the stored task records
//!   through their history index ([`TaskHistory`]), queue lengths. Restarting the
//!   monitor, or running two, loses nothing; tasks finished before it started are
//!   listed; memory stays bounded whatever the history's size.
//! - **Secure by default.** There are no default credentials; without any, the
//!   monitor listens on 127.0.0.1 only ([`MonitorConfig::bind_address`]). Credentials
//!   (basic auth, bearer tokens) cover every route but `/healthcheck`, `/metrics`
//!   included. No response carries `Access-Control-Allow-Origin`. Mutating routes
//!   refuse requests a browser sent from another site ([`csrf`]) and every route in
//!   read-only mode; each action is written to the event stream with who and from
//!   where.
//! - **Flower's metrics.** `/metrics` has Flower's metric names and labels, counted
//!   from the event stream, plus queue depths and dead letters.
//!
//! ```no_run
//! use std::sync::Arc;
//! use hippo_queue_monitor::{Monitor, MonitorConfig};
//! use hippo_queue_redis::{RedisBackend, RedisConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let redis = RedisBackend::connect(RedisConfig::new("redis://127.0.0.1:6379/1")).await?;
//! let config = MonitorConfig::new().basic_auth("admin:change-me")?.url_prefix("flower")?;
//! let router = Monitor::new(config, Arc::new(redis)).router();
//! // mount `router` in an axum application, or serve it:
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5555").await?;
//! axum::serve(listener, router).await?;
//! # Ok(()) }
//! ```
//!
//! The modules, one concept each: [`config`] (settings and their checks), [`auth`]
//! (who is asking), [`query`] and [`search`] (`/api/tasks` parameters), [`task_view`]
//! (a record as Flower shows it), [`timeline`] (a task's events and the operator
//! actions on it), [`task_stats`] (rates and runtimes per task type, for the charts),
//! [`beat_view`] (the beat's entries), [`serve`] (listening).
//!
//! [`TaskHistory`]: hippo_queue_core::backend::TaskHistory

#![warn(missing_docs)]

mod actor;
mod api;
pub mod auth;
pub mod beat_view;
pub mod config;
pub mod csrf;
pub mod dashboard;
mod error;
mod metrics;
pub mod query;
pub mod search;
pub mod serve;
mod state;
pub mod task_stats;
pub mod task_view;
pub mod timeline;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::middleware;
use axum::routing::{get, post};

pub use config::{ConfigError, DEFAULT_PORT, MonitorConfig};
pub use error::ApiError;
pub use state::{INSPECT_TIMEOUT, Source};

use crate::state::Shared;

/// The monitor: settings and the backend it reads.
#[derive(Clone)]
pub struct Monitor {
    shared: Shared,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Monitor {
    /// A monitor of `source` (such as a `RedisBackend`).
    pub fn new(config: MonitorConfig, source: Arc<dyn Source>) -> Self {
        Monitor {
            shared: Shared::new(config, source),
        }
    }

    /// The settings.
    pub fn config(&self) -> &MonitorConfig {
        &self.shared.config
    }

    /// The routes, under the configured URL prefix.
    pub fn router(&self) -> Router {
        let s = self.shared.clone();
        let guarded = Router::new()
            .route("/api/workers", get(api::workers::list))
            .route("/api/tasks", get(api::tasks::list))
            .route("/api/task/types", get(api::tasks::types))
            .route("/api/task/info/{id}", get(api::tasks::info))
            .route("/api/task/result/{id}", get(api::tasks::result))
            .route("/api/task/timeline/{id}", get(api::tasks::timeline))
            .route("/api/task/stats", get(api::tasks::stats))
            .route("/api/beat", get(api::beat::status))
            .route("/api/queues/length", get(api::queues::length))
            .route("/api/queue/dead-letters/{queue}", get(api::dead::list))
            .route("/metrics", get(api::metrics))
            .route("/", get(dashboard::index))
            .route("/static/app.js", get(dashboard::script))
            .route("/static/app.css", get(dashboard::style))
            .route("/api/live", get(dashboard::live))
            .route_layer(middleware::from_fn_with_state(s.clone(), auth::require));
        let mutating = Router::new()
            .route(
                "/api/worker/shutdown/{worker}",
                post(api::control::shutdown),
            )
            .route(
                "/api/worker/pool/restart/{worker}",
                post(api::control::pool_restart),
            )
            .route(
                "/api/worker/pool/grow/{worker}",
                post(api::control::pool_grow),
            )
            .route(
                "/api/worker/pool/shrink/{worker}",
                post(api::control::pool_shrink),
            )
            .route(
                "/api/worker/pool/autoscale/{worker}",
                post(api::control::autoscale),
            )
            .route(
                "/api/worker/queue/add-consumer/{worker}",
                post(api::control::add_consumer),
            )
            .route(
                "/api/worker/queue/cancel-consumer/{worker}",
                post(api::control::cancel_consumer),
            )
            .route("/api/task/apply/{name}", post(api::apply::apply))
            .route(
                "/api/task/async-apply/{name}",
                post(api::apply::async_apply),
            )
            .route("/api/task/send-task/{name}", post(api::apply::send_task))
            .route("/api/task/revoke/{id}", post(api::control::revoke))
            .route("/api/task/retry/{id}", post(api::dead::retry_task))
            .route("/api/queue/pause/{queue}", post(api::queues::pause))
            .route("/api/queue/resume/{queue}", post(api::queues::resume))
            .route(
                "/api/queue/dead-letters/{queue}/retry",
                post(api::dead::retry_queue),
            )
            .route("/api/task/timeout/{name}", post(api::control::timeout))
            .route(
                "/api/task/rate-limit/{name}",
                post(api::control::rate_limit),
            )
            // outermost last: credentials, then the origin, then read-only mode
            .route_layer(middleware::from_fn_with_state(s.clone(), api::read_only))
            .route_layer(middleware::from_fn(csrf::guard))
            .route_layer(middleware::from_fn_with_state(s.clone(), auth::require));
        let open = Router::new().route("/healthcheck", get(api::healthcheck));
        let routes = guarded.merge(mutating).merge(open).with_state(s.clone());
        let routes = match s.config.prefix() {
            "" => routes,
            // the page at `<prefix>/` too (the nested `/` is `<prefix>`, redirected)
            prefix => Router::new()
                .route(
                    &format!("{prefix}/"),
                    get(dashboard::index)
                        .route_layer(middleware::from_fn_with_state(s.clone(), auth::require)),
                )
                .with_state(s.clone())
                .nest(prefix, routes),
        };
        routes.layer(middleware::map_response(no_sniff))
    }
}

/// Every response says its content type is to be believed.
async fn no_sniff(mut res: axum::response::Response) -> axum::response::Response {
    res.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}
