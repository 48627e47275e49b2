//! The [`App`]: registered tasks, routing, defaults, and the broker and result backend
//! they run on. Producers send through it; workers are built from it.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::memory::MemoryBackend;
use crate::backend::{Broker, DeliveryFlags, Outgoing, ResultBackend, Revocation};
use crate::codec::{Codec, to_msgpack};
use crate::config::Config;
use crate::defaults;
use crate::events::{Event, EventKind};
use crate::message::{ENVELOPE_VERSION, Envelope, RetrySpec, origin};
use crate::registry::{Handler, Registry};
use crate::result::{AsyncResult, output};
use crate::routing::Router;
use crate::time::{duration_ms, now_ms, shifted, to_ms};
use crate::worker::WorkerBuilder;
use crate::{Error, SendOptions, Task, TaskOptions};

/// How long a revocation is remembered by default: workers that start within this time
/// still honour it.
pub const DEFAULT_REVOCATION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The entry point: registered tasks, routes, defaults, broker and result backend.
/// Cheap to clone.
///
/// ```
/// use std::time::Duration;
/// use hippo_queue_core::{App, SendOptions, Task, TaskContext, TaskError};
///
/// struct Greet;
/// impl Task for Greet {
///     const NAME: &'static str = "greet";
///     type Args = String;
///     type Output = String;
///     async fn run(&self, _: &TaskContext, name: String) -> Result<String, TaskError> {
///         Ok(format!("hello {name}"))
///     }
/// }
///
/// # #[tokio::main] async fn main() -> Result<(), hippo_queue_core::Error> {
/// let app = App::in_memory();
/// app.register(Greet);
/// let worker = app.worker().concurrency(4).start().await?;
/// let later = app
///     .apply_async::<Greet>("ada".into(), SendOptions::new().countdown(Duration::from_millis(50)).priority(9))
///     .await?;
/// assert_eq!(later.get(Duration::from_secs(5)).await?, "hello ada");
/// worker.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct App {
    inner: Arc<AppInner>,
}

struct AppInner {
    broker: Arc<dyn Broker>,
    backend: Arc<dyn ResultBackend>,
    router: Router,
    config: Config,
    defaults: TaskOptions,
    codec: Codec,
    registry: Registry,
    revocation_ttl: Duration,
    task_events: bool,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("router", &self.inner.router)
            .field("tasks", &self.inner.registry.names())
            .finish_non_exhaustive()
    }
}

/// Builds an [`App`].
#[derive(Default)]
pub struct AppBuilder {
    broker: Option<Arc<dyn Broker>>,
    backend: Option<Arc<dyn ResultBackend>>,
    router: Option<Router>,
    config: Option<Config>,
    codec: Option<Codec>,
    revocation_ttl: Option<Duration>,
    task_events: bool,
}

impl AppBuilder {
    /// Uses this broker (default: a fresh in-memory backend).
    pub fn broker(mut self, broker: impl Broker) -> Self {
        self.broker = Some(Arc::new(broker));
        self
    }

    /// Uses this result backend (default: the in-memory backend).
    pub fn backend(mut self, backend: impl ResultBackend) -> Self {
        self.backend = Some(Arc::new(backend));
        self
    }

    /// Uses these queues and routes (default: one queue, `default`).
    pub fn router(mut self, router: Router) -> Self {
        self.router = Some(router);
        self
    }

    /// Uses this configuration (default: [`Config::default`]).
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// Uses these encoding settings (compression threshold, size cap).
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = Some(codec);
        self
    }

    /// How long revocations are remembered.
    pub fn revocation_ttl(mut self, ttl: Duration) -> Self {
        self.revocation_ttl = Some(ttl);
        self
    }

    /// Publishes a `task-sent` event for every task sent (default off).
    pub fn task_events(mut self, on: bool) -> Self {
        self.task_events = on;
        self
    }

    /// Builds the app. Without a broker or backend, one shared in-memory backend serves
    /// both.
    pub fn build(self) -> App {
        let memory = MemoryBackend::new();
        let broker = self
            .broker
            .unwrap_or_else(|| Arc::new(memory.clone()) as Arc<dyn Broker>);
        let backend = self
            .backend
            .unwrap_or_else(|| Arc::new(memory) as Arc<dyn ResultBackend>);
        let config = self.config.unwrap_or_default();
        App {
            inner: Arc::new(AppInner {
                broker,
                backend,
                router: self.router.unwrap_or_default(),
                defaults: config.task_defaults(),
                config,
                codec: self.codec.unwrap_or_default(),
                registry: Registry::default(),
                revocation_ttl: self.revocation_ttl.unwrap_or(DEFAULT_REVOCATION_TTL),
                task_events: self.task_events,
            }),
        }
    }
}

impl App {
    /// A builder.
    pub fn builder() -> AppBuilder {
        AppBuilder::default()
    }

    /// An app on a fresh in-memory backend with default settings.
    pub fn in_memory() -> App {
        App::builder().build()
    }

    /// Registers a task so that workers of this app can run it.
    pub fn register<T: Task>(&self, task: T) -> &Self {
        self.inner.registry.register(task);
        self
    }

    /// Names of the registered tasks, sorted.
    pub fn registered(&self) -> Vec<String> {
        self.inner.registry.names()
    }

    pub(crate) fn handler(&self, name: &str) -> Option<Arc<dyn Handler>> {
        self.inner.registry.get(name)
    }

    /// The broker.
    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.inner.broker
    }

    /// The result backend.
    pub fn backend(&self) -> &Arc<dyn ResultBackend> {
        &self.inner.backend
    }

    /// The router.
    pub fn router(&self) -> &Router {
        &self.inner.router
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The codec.
    pub fn codec(&self) -> &Codec {
        &self.inner.codec
    }

    /// A builder for a worker of this app.
    pub fn worker(&self) -> WorkerBuilder {
        WorkerBuilder::new(self.clone())
    }

    /// Sends a task with its default options (Celery's `delay`).
    pub async fn delay<T: Task>(&self, args: T::Args) -> Result<AsyncResult<T::Output>, Error> {
        self.apply_async::<T>(args, SendOptions::new()).await
    }

    /// Sends a task with per-call options (Celery's `apply_async`).
    pub async fn apply_async<T: Task>(
        &self,
        args: T::Args,
        opts: SendOptions,
    ) -> Result<AsyncResult<T::Output>, Error> {
        let args = to_msgpack(&args)?;
        let (env, out) = self.prepare(T::NAME, args, &T::options(), opts)?;
        self.publish(vec![out], &[&env]).await?;
        Ok(AsyncResult::new(env.id, self.clone()))
    }

    /// Sends a task and waits for its output: a request/response call, equivalent to
    /// `delay(args).await?.get(timeout)`.
    ///
    /// The wait begins before the message is sent, and the message asks the worker to
    /// have its result announced the moment it is stored, so a result backend that
    /// supports it (Redis) delivers the output with no look-up round trip. Errors as
    /// [`AsyncResult::get`], and [`Error::InvalidOptions`] for a task that ignores its
    /// results.
    ///
    /// ```
    /// # use hippo_queue_core::{App, Task, TaskContext, TaskError};
    /// # use std::time::Duration;
    /// struct Add;
    ///
    /// impl Task for Add {
    ///     const NAME: &'static str = "math.add";
    ///     type Args = (i64, i64);
    ///     type Output = i64;
    ///     async fn run(&self, _: &TaskContext, (a, b): (i64, i64)) -> Result<i64, TaskError> {
    ///         Ok(a + b)
    ///     }
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), hippo_queue_core::Error> {
    /// let app = App::in_memory();
    /// app.register(Add);
    /// let worker = app.worker().start().await?;
    /// assert_eq!(app.call::<Add>((2, 3), Duration::from_secs(5)).await?, 5);
    /// worker.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn call<T: Task>(
        &self,
        args: T::Args,
        timeout: Duration,
    ) -> Result<T::Output, Error> {
        self.call_with::<T>(args, SendOptions::new(), timeout).await
    }

    /// [`App::call`] with per-call options.
    pub async fn call_with<T: Task>(
        &self,
        args: T::Args,
        opts: SendOptions,
        timeout: Duration,
    ) -> Result<T::Output, Error> {
        let mut env = self.envelope(T::NAME, to_msgpack(&args)?, &T::options(), opts)?;
        if env.ignore_result {
            return Err(Error::InvalidOptions(format!(
                "task {} ignores its results (ignore_result), so a call cannot wait for one: send it with delay or apply_async",
                env.name
            )));
        }
        let backend = self.backend();
        let mut watch = backend.watch(&env.id);
        env.announce_result = watch.is_some();
        let out = self.outgoing(&env)?;
        self.publish(vec![out], &[&env]).await?;
        let meta = match watch.as_mut() {
            Some(w) => w.wait(timeout).await?,
            None => backend.wait(&env.id, timeout).await?,
        };
        output(&env.id, meta, timeout)
    }

    /// Sends many calls of one task in one round trip.
    pub async fn send_many<T: Task>(
        &self,
        calls: impl IntoIterator<Item = (T::Args, SendOptions)>,
    ) -> Result<Vec<AsyncResult<T::Output>>, Error> {
        let defaults = T::options();
        let mut envs = Vec::new();
        let mut batch = Vec::new();
        for (args, opts) in calls {
            let (env, out) = self.prepare(T::NAME, to_msgpack(&args)?, &defaults, opts)?;
            envs.push(env);
            batch.push(out);
        }
        self.publish(batch, &envs.iter().collect::<Vec<_>>())
            .await?;
        Ok(envs
            .into_iter()
            .map(|env| AsyncResult::new(env.id, self.clone()))
            .collect())
    }

    /// Sends a task by name with MessagePack arguments (for dynamic producers such as
    /// HTTP endpoints or the scheduler). A registered task's default options apply.
    pub async fn send_by_name(
        &self,
        name: &str,
        args_msgpack: Vec<u8>,
        opts: SendOptions,
    ) -> Result<String, Error> {
        let defaults = self.handler(name).map(|h| h.options()).unwrap_or_default();
        let (env, out) = self.prepare(name, args_msgpack, &defaults, opts)?;
        self.publish(vec![out], &[&env]).await?;
        Ok(env.id)
    }

    /// A handle to a task by id.
    pub fn result<T: serde::de::DeserializeOwned>(&self, id: impl Into<String>) -> AsyncResult<T> {
        AsyncResult::new(id.into(), self.clone())
    }

    /// Revokes a task: it will not start, and with `terminate` a running one is aborted
    /// (state REVOKED). Without `terminate`, a task already running finishes and keeps
    /// its result, as in Celery. The revocation is durable: workers started later
    /// honour it until it expires.
    pub async fn revoke(&self, id: &str, terminate: bool) -> Result<(), Error> {
        let until = now_ms().saturating_add(duration_ms(self.inner.revocation_ttl));
        self.inner
            .broker
            .revoke(Revocation {
                id: id.to_string(),
                terminate,
                until,
            })
            .await?;
        Ok(())
    }

    /// Publishes messages, then their `task-sent` events when enabled.
    async fn publish(&self, out: Vec<Outgoing>, envs: &[&Envelope]) -> Result<(), Error> {
        self.inner.broker.publish(out).await?;
        if self.inner.task_events {
            let events: Vec<Event> = envs
                .iter()
                .map(|env| {
                    let mut e = Event::task(EventKind::TaskSent, &env.id, &env.name);
                    e.queue = Some(env.queue.clone());
                    e
                })
                .collect();
            if let Err(e) = self.inner.broker.emit(&events).await {
                tracing::warn!(error = %e, "task-sent events dropped");
            }
        }
        Ok(())
    }

    /// Builds the envelope and the outgoing message of one call.
    pub(crate) fn prepare(
        &self,
        name: &str,
        args: Vec<u8>,
        task_defaults: &TaskOptions,
        call: SendOptions,
    ) -> Result<(Envelope, Outgoing), Error> {
        let env = self.envelope(name, args, task_defaults, call)?;
        let out = self.outgoing(&env)?;
        Ok((env, out))
    }

    /// Routes a call and resolves its options (call over task over app defaults) into
    /// an envelope.
    fn envelope(
        &self,
        name: &str,
        args: Vec<u8>,
        task_defaults: &TaskOptions,
        call: SendOptions,
    ) -> Result<Envelope, Error> {
        let dest = self.inner.router.resolve(
            name,
            call.options.queue.as_deref(),
            call.options.routing_key.as_deref(),
            task_defaults.queue.as_deref(),
            task_defaults.routing_key.as_deref(),
        )?;
        let o = call.options.or(task_defaults).or(&self.inner.defaults);
        o.validate()?;
        let ms = |d: Option<Duration>| d.map(duration_ms);
        let env = Envelope {
            v: ENVELOPE_VERSION,
            id: call
                .task_id
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            name: name.to_string(),
            args,
            retries: 0,
            eta: call.eta.map(to_ms),
            expires: call
                .expires
                .map(|t| shifted(to_ms(t), self.broker().clock_offset_ms())),
            priority: o.priority.unwrap_or(0).min(9),
            queue: dest.queue,
            routing_key: dest.routing_key,
            root_id: call.root_id,
            parent_id: call.parent_id,
            soft_time_limit: ms(o.soft_time_limit),
            time_limit: ms(o.time_limit),
            retry: RetrySpec {
                max_retries: o.max_retries.unwrap_or(defaults::MAX_RETRIES),
                autoretry_for: o.autoretry_for.clone().unwrap_or_default(),
                delay: duration_ms(o.retry_delay.unwrap_or(defaults::RETRY_DELAY)),
                backoff: ms(o.retry_backoff),
                backoff_max: duration_ms(
                    o.retry_backoff_max.unwrap_or(defaults::RETRY_BACKOFF_MAX),
                ),
                jitter: o.retry_jitter.unwrap_or(defaults::RETRY_JITTER),
            },
            acks_late: o.acks_late.unwrap_or(false),
            reject_on_worker_lost: o.reject_on_worker_lost.unwrap_or(false),
            ignore_result: o.ignore_result.unwrap_or(false),
            compression: o.compression.unwrap_or_default(),
            result_expires: duration_ms(o.result_expires.unwrap_or(defaults::RESULT_EXPIRES)),
            track_started: o.track_started.unwrap_or(false),
            origin: origin(),
            sent_at: now_ms(),
            announce_result: false,
        };
        Ok(env)
    }

    /// Encodes an envelope into an outgoing message.
    pub(crate) fn outgoing(&self, env: &Envelope) -> Result<Outgoing, Error> {
        Ok(Outgoing {
            id: env.id.clone(),
            queue: env.queue.clone(),
            priority: env.priority,
            eta: env.eta,
            payload: self.inner.codec.encode_compact(env, true)?,
            flags: DeliveryFlags {
                acks_late: env.acks_late,
                reject_on_worker_lost: env.reject_on_worker_lost,
            },
        })
    }
}
