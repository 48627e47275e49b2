//! Serving the router with a deadline on reading a request's headers: a client that
//! opens connections and trickles its headers (slowloris) is cut off after
//! [`DEFAULT_HEADER_TIMEOUT`], which `axum::serve` does not do. The body's deadline is
//! the router's own ([`ApiStateBuilder::body_timeout`](super::ApiStateBuilder::body_timeout)).
//!
//! ```
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use hippo_memory_tasks::api::{ApiState, router, serve::serve};
//! use hippo_memory_tasks::store::InMemoryStore;
//! use hippo_queue_core::App;
//!
//! let app = App::builder().router(hippo_memory_tasks::router()).build();
//! let api = router(ApiState::builder(app, Arc::new(InMemoryStore::new())).build());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let stop = async {}; // a signal, in a real program: here it stops at once
//! serve(listener, api, Default::default(), stop).await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// How long a client has to send a request's headers, on a new connection or
/// between two requests on a kept-alive one.
///
/// # Default
/// 10 seconds.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How connections are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeOptions {
    /// See [`DEFAULT_HEADER_TIMEOUT`].
    pub header_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
        }
    }
}

impl ServeOptions {
    /// These options with another header timeout.
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }
}

/// Serves `router` on `listener` (HTTP/1.1 and HTTP/2) until `shutdown` completes,
/// then waits for the requests in progress to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // out of file descriptors and the like: wait and go on
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}
