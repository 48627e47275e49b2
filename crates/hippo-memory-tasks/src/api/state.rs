//! [`ApiState`]: what the handlers share, built once by the host application.

use std::sync::Arc;
use std::time::Duration;

use hippo_queue_core::App;

use super::access::{Access, valid_token};
use super::task_log::{InMemoryTaskLog, TaskLog};
use crate::client::MemoryTaskClient;
use crate::store::MemoryStore;

/// How long a request with `"async": false` waits for its task.
///
/// # Default
/// 300 seconds.
pub const DEFAULT_SYNC_WAIT: Duration = Duration::from_secs(300);

/// The most memories one page of `GET /v1/memories` lists.
///
/// # Default
/// 1,000.
pub const DEFAULT_MAX_PAGE: usize = 1000;

/// The size of a page of `GET /v1/memories` without `limit`.
pub const DEFAULT_PAGE: usize = 50;

/// The largest request body taken, in bytes (413 above it).
///
/// # Default
/// 1 MiB: the largest request, a memory's text, is far below it.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

/// How long a request's body may take to arrive once its headers are read (408
/// after it): a client trickling a body cannot hold a connection.
///
/// # Default
/// 10 seconds.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// A bearer token refused by [`ApiStateBuilder::bearer_tokens`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidToken(String);

/// The state behind [`router`](super::router): the queue, the memory store, where
/// submitted task ids are recorded, and the embedding models migrations may move to.
///
/// ```
/// use std::sync::Arc;
/// use hippo_memory_tasks::api::ApiState;
/// use hippo_memory_tasks::store::InMemoryStore;
/// use hippo_queue_core::App;
///
/// let app = App::builder().router(hippo_memory_tasks::router()).build();
/// let state = ApiState::builder(app, Arc::new(InMemoryStore::new()))
///     .model("hippo-hash-384-v2", 384)
///     .mode("embedded")
///     .build();
/// let router: axum::Router = hippo_memory_tasks::api::router(state);
/// # let _ = router;
/// ```
#[derive(Clone)]
pub struct ApiState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) app: App,
    pub(crate) client: MemoryTaskClient,
    pub(crate) store: Arc<dyn MemoryStore>,
    pub(crate) tasks: Arc<dyn TaskLog>,
    pub(crate) models: Vec<(String, usize)>,
    pub(crate) mode: String,
    pub(crate) sync_wait: Duration,
    pub(crate) max_page: usize,
    pub(crate) access: Access,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("mode", &self.inner.mode)
            .field("models", &self.inner.models)
            .field("sync_wait", &self.inner.sync_wait)
            .field("max_page", &self.inner.max_page)
            .field("access", &self.inner.access)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// A builder sending tasks through `app`, with memories in `store`.
    pub fn builder(app: App, store: Arc<dyn MemoryStore>) -> ApiStateBuilder {
        ApiStateBuilder {
            app,
            store,
            tasks: None,
            models: Vec::new(),
            mode: "embedded".into(),
            sync_wait: DEFAULT_SYNC_WAIT,
            max_page: DEFAULT_MAX_PAGE,
            access: Access {
                tokens: Vec::new(),
                hosts: Vec::new(),
                body_limit: DEFAULT_BODY_LIMIT,
                body_timeout: DEFAULT_BODY_TIMEOUT,
            },
        }
    }

    /// The queue.
    pub fn app(&self) -> &App {
        &self.inner.app
    }

    /// The memory store.
    pub fn store(&self) -> &Arc<dyn MemoryStore> {
        &self.inner.store
    }

    /// How the API runs, as `GET /health` says it.
    pub fn mode(&self) -> &str {
        &self.inner.mode
    }
}

/// Builds an [`ApiState`]; every setting has the default its doc states.
#[must_use]
pub struct ApiStateBuilder {
    app: App,
    store: Arc<dyn MemoryStore>,
    tasks: Option<Arc<dyn TaskLog>>,
    models: Vec<(String, usize)>,
    mode: String,
    sync_wait: Duration,
    max_page: usize,
    access: Access,
}

impl std::fmt::Debug for ApiStateBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiStateBuilder")
            .field("mode", &self.mode)
            .field("models", &self.models)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl ApiStateBuilder {
    /// Where submitted task ids are recorded.
    ///
    /// # Default
    /// An [`InMemoryTaskLog`]: right for an API that runs its own worker; an API in
    /// front of separate workers uses a
    /// [`RedisTaskLog`](super::task_log::RedisTaskLog) so that every API process and
    /// restart knows the ids.
    pub fn task_log(mut self, log: Arc<dyn TaskLog>) -> Self {
        self.tasks = Some(log);
        self
    }

    /// An embedding model migrations may move to, and its vector size.
    ///
    /// # Default
    /// None: a migration request must then give `new_dimension`, and any model name is
    /// taken.
    pub fn model(mut self, name: impl Into<String>, dimension: usize) -> Self {
        self.models.push((name.into(), dimension));
        self
    }

    /// How the API runs, as `GET /health` reports it.
    ///
    /// # Default
    /// `embedded`.
    pub fn mode(mut self, mode: impl Into<String>) -> Self {
        self.mode = mode.into();
        self
    }

    /// How long a request with `"async": false` waits for its task.
    ///
    /// # Default
    /// [`DEFAULT_SYNC_WAIT`] (300 s).
    pub fn sync_wait(mut self, wait: Duration) -> Self {
        self.sync_wait = wait;
        self
    }

    /// The largest `limit` of `GET /v1/memories`.
    ///
    /// # Default
    /// [`DEFAULT_MAX_PAGE`] (1,000).
    pub fn max_page(mut self, n: usize) -> Self {
        self.max_page = n.max(1);
        self
    }

    /// Bearer tokens, any of which opens every route (`Authorization: Bearer
    /// <token>`, 401 otherwise); each of at least
    /// [`MIN_TOKEN_LEN`](super::access::MIN_TOKEN_LEN) printable characters.
    ///
    /// # Default
    /// None: every request is let through. A server listening beyond the loopback
    /// must set them (`hippo-memory api` refuses to start otherwise).
    pub fn bearer_tokens<I, S>(mut self, tokens: I) -> Result<Self, InvalidToken>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for t in tokens {
            let t = t.into();
            valid_token(&t).map_err(InvalidToken)?;
            self.access.tokens.push(t);
        }
        Ok(self)
    }

    /// The host names the API answers to (the `Host` header without its port; 400
    /// for any other). For an API on the loopback, `localhost`, `127.0.0.1` and
    /// `::1` keep a web page elsewhere from reaching it through DNS rebinding.
    ///
    /// # Default
    /// None: any host.
    pub fn allowed_hosts<I, S>(mut self, hosts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.access.hosts.extend(
            hosts
                .into_iter()
                .map(Into::into)
                .filter(|h| !h.trim().is_empty()),
        );
        self
    }

    /// The largest request body, in bytes.
    ///
    /// # Default
    /// [`DEFAULT_BODY_LIMIT`] (1 MiB).
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.access.body_limit = bytes;
        self
    }

    /// How long a body may take to arrive.
    ///
    /// # Default
    /// [`DEFAULT_BODY_TIMEOUT`] (10 s).
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.access.body_timeout = timeout;
        self
    }

    /// The state.
    pub fn build(self) -> ApiState {
        let client = MemoryTaskClient::new(self.app.clone(), self.store.clone());
        let tasks = self
            .tasks
            .unwrap_or_else(|| Arc::new(InMemoryTaskLog::new()));
        ApiState {
            inner: Arc::new(Inner {
                app: self.app,
                client,
                store: self.store,
                tasks,
                models: self.models,
                mode: self.mode,
                sync_wait: self.sync_wait,
                max_page: self.max_page,
                access: self.access,
            }),
        }
    }
}
