//! What every handler shares: the settings, the backend, and an [`App`] over it for
//! remote control.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use hippo_queue_core::App;
use hippo_queue_core::backend::{Broker, ResultBackend, TaskHistory};
use hippo_queue_core::beat::BeatStore;

use crate::config::MonitorConfig;
use crate::metrics::Metrics;

/// What the monitor reads: a broker with every capability, a result backend, the
/// task history, and the beat store (for the beat's status).
/// `hippo_queue_redis::RedisBackend` is one. `forget` is both a result backend's and a
/// beat store's: call it as `ResultBackend::forget(source, id)`.
pub trait Source: Broker + ResultBackend + TaskHistory + BeatStore {}

impl<T: Broker + ResultBackend + TaskHistory + BeatStore + ?Sized> Source for T {}

/// How long worker inspection waits for replies (Flower's `inspect_timeout`).
pub const INSPECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The handlers' state (cheap to clone).
#[derive(Clone)]
pub(crate) struct Shared(Arc<Inner>);

pub(crate) struct Inner {
    pub config: MonitorConfig,
    pub source: Arc<dyn Source>,
    pub app: App,
    pub metrics: Metrics,
    /// Permits for open live feeds.
    pub live: Arc<tokio::sync::Semaphore>,
}

impl Shared {
    pub(crate) fn new(config: MonitorConfig, source: Arc<dyn Source>) -> Self {
        let app = App::builder()
            .broker(source.clone())
            .backend(source.clone())
            .build();
        Shared(Arc::new(Inner {
            config,
            source,
            app,
            metrics: Metrics::new(),
            live: Arc::new(tokio::sync::Semaphore::new(crate::dashboard::MAX_LIVE)),
        }))
    }
}

impl Deref for Shared {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
