//! `hippo-queue monitor`: serves the monitor (Flower's API) on Redis.
//!
//! Flower's settings are read from the environment as Flower reads them
//! (`FLOWER_PORT`, `FLOWER_ADDRESS`, `FLOWER_BASIC_AUTH`, `FLOWER_URL_PREFIX`), and so
//! is the guide's `FLOWER_USER` / `FLOWER_PASSWORD` pair. No secret is ever printed:
//! `--help` hides the values of the variables that carry them.

use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use hippo_queue_monitor::serve::{banner, bind, serve};
use hippo_queue_monitor::{DEFAULT_PORT, Monitor, MonitorConfig};

use crate::cli::Conn;

/// `monitor` options.
#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// Port to listen on.
    #[arg(long, env = "FLOWER_PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Address to listen on (default: 127.0.0.1 without credentials, 0.0.0.0 with).
    #[arg(long, env = "FLOWER_ADDRESS")]
    pub address: Option<IpAddr>,
    /// Basic-auth credentials, user:password[,user:password…].
    #[arg(long, env = "FLOWER_BASIC_AUTH", hide_env_values = true)]
    pub basic_auth: Option<String>,
    /// Bearer tokens accepted in `Authorization: Bearer …` (repeat or separate by
    /// commas; at least 16 characters each).
    #[arg(
        long = "bearer-token",
        env = "HIPPO_MONITOR_TOKENS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub bearer_tokens: Vec<String>,
    /// Bearer tokens that open `/metrics` only (for a Prometheus server).
    #[arg(
        long = "metrics-token",
        env = "HIPPO_MONITOR_METRICS_TOKENS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub metrics_tokens: Vec<String>,
    /// Serve under this path prefix (behind a reverse proxy), such as `flower`.
    #[arg(long, env = "FLOWER_URL_PREFIX", default_value = "")]
    pub url_prefix: String,
    /// Refuse every mutating route.
    #[arg(long, env = "FLOWER_READ_ONLY")]
    pub read_only: bool,
}

/// The settings from the options and the guide's `FLOWER_USER` / `FLOWER_PASSWORD`.
pub fn config(
    args: &MonitorArgs,
    user: Option<&str>,
    password: Option<&str>,
) -> Result<MonitorConfig, hippo_queue_monitor::ConfigError> {
    let mut c = MonitorConfig::new()
        .port(args.port)
        .read_only(args.read_only)
        .url_prefix(&args.url_prefix)?
        .user_password(user, password)?
        .bearer_tokens(&args.bearer_tokens)?
        .metrics_tokens(&args.metrics_tokens)?;
    if let Some(list) = &args.basic_auth {
        c = c.basic_auth(list)?;
    }
    if let Some(a) = args.address {
        c = c.address(a);
    }
    Ok(c)
}

/// Runs the monitor until Ctrl-C.
pub async fn run(conn: &Conn, args: &MonitorArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let user = std::env::var("FLOWER_USER").ok();
    let password = std::env::var("FLOWER_PASSWORD").ok();
    let config = config(args, user.as_deref(), password.as_deref())?;
    let redis = crate::run::redis_backend(conn).await?;
    let monitor = Monitor::new(config, Arc::new(redis));
    let listener = bind(&monitor).await?;
    eprintln!("{}", banner(&monitor, listener.local_addr()?));
    serve(&monitor, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}
