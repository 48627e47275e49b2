//! Listening: binds the configured address (the loopback only without credentials)
//! and serves the monitor until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::Monitor;
use crate::config::ConfigError;

/// Why the monitor could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The settings refuse the address.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The address could not be bound or the server failed.
    #[error("{addr}: {source}")]
    Io {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// What the operator is told when the monitor starts: where it listens and how it is
/// protected (never a credential).
pub fn banner(monitor: &Monitor, addr: SocketAddr) -> String {
    let c = monitor.config();
    let url = format!("http://{addr}{}/", c.prefix());
    let auth = if c.has_auth() {
        "authentication required"
    } else {
        "no authentication configured: serving the loopback address only (set --basic-auth \
         or a bearer token to serve other addresses)"
    };
    let mode = if c.is_read_only() { ", read-only" } else { "" };
    format!("monitor on {url} ({auth}{mode})")
}

/// Binds the configured address.
pub async fn bind(monitor: &Monitor) -> Result<TcpListener, ServeError> {
    let addr = monitor.config().bind_address()?;
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Io { addr, source })
}

/// Serves on a bound listener until `shutdown` completes.
pub async fn serve(
    monitor: &Monitor,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().map_err(|source| ServeError::Io {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    let app = monitor
        .router()
        .into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| ServeError::Io { addr, source })
}
