//! The HTTP API of the guide (axum): submit the memory tasks, follow and cancel them,
//! run embedding migrations and procedural-rule consolidation, and add, list and
//! delete memories.
//!
//! ```sh
//! export CELERY_BROKER_URL=redis://localhost:6379/1
//! export CELERY_RESULT_BACKEND=redis://localhost:6379/2
//! cargo run --example api -- --load-samples       # http://localhost:8000
//! cargo run --example api -- --embedded --load-samples   # no Redis: one process
//! ```
//!
//! | method and path | what |
//! | --- | --- |
//! | `POST /api/v1/tasks/{deduplication,consolidation,health-check,summarization,compression,expiration}` | submit a task: `{"task_id", "status": "PENDING", "queue"}` |
//! | `GET /api/v1/tasks/{task_id}/status` | `{"task_id", "state", "result", "traceback"}` |
//! | `DELETE /api/v1/tasks/{task_id}` | revoke (terminate when running) |
//! | `POST /v1/admin/embeddings/migrate` | start a migration `{"new_model", "new_dimension"}` |
//! | `GET /v1/admin/embeddings/migration/{id}` | the migration record |
//! | `POST /v1/admin/embeddings/migration/{id}/cancel` | cancel it |
//! | `POST /v1/procedural/consolidate?user_id=...` | consolidate a user's procedural rules |
//! | `POST /v1/procedural/rules`, `GET /v1/procedural/rules?user_id=...` | add, list rules |
//! | `POST /v1/memories`, `GET /v1/memories?user_id=...`, `GET`/`DELETE /v1/memories/{id}?user_id=...` | memories |
//! | `GET /health` | broker, store and workers |
//! | `GET /openapi.json` | the OpenAPI 3 description |
//!
//! Errors are JSON, `{"error": "what is wrong"}`: 400 for malformed JSON, 422 for a
//! missing or invalid field, 404 for an unknown task, user, memory or migration, 409
//! for a migration that already ended, 503 when Redis cannot be reached.
//!
//! With `CELERY_BROKER_URL` set, tasks go through Redis to the `worker` example's
//! processes. With `--embedded`, the API runs a worker in its own process on the
//! in-memory backend and store (nothing is kept when it stops).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use clap::Parser;
use common::BoxError;
use hippo_memory_tasks::client::{ClientError, MemoryTaskClient};
use hippo_memory_tasks::model::{Memory, MemoryType, Metadata, Migration, ProceduralRule};
use hippo_memory_tasks::store::{InMemoryStore, MemoryStore, PageRequest, StoreError, load_rules};
use hippo_memory_tasks::tasks::{
    AutoSummarizationTask, CompressionTask, ConsolidateProceduralRulesTask, ConsolidationTask,
    DeduplicationTask, ExpireMemoriesTask, HealthCheckTask, MemoryServices, MigrateEmbeddingsTask,
    register_all,
};
use hippo_queue::beat::BeatStore;
use hippo_queue::redis::RedisBackend;
use hippo_queue::{App, Task, WorkerHandle};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// How long a request with `"async": false` waits for its task.
const SYNC_WAIT: Duration = Duration::from_secs(300);
/// The most memories one page lists.
const MAX_LIMIT: usize = 1000;

/// The HTTP API of HippocampAI's background tasks.
#[derive(Debug, Parser)]
#[command(name = "api", version)]
struct Args {
    /// Port to listen on (0: any free port; the address is printed).
    #[arg(short, long, env = "API_PORT", default_value_t = 8000)]
    port: u16,
    /// Address to listen on.
    #[arg(long, env = "API_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Run a worker in this process on the in-memory backend and store, without
    /// Redis.
    #[arg(long)]
    embedded: bool,
    /// Add sample memories and procedural rules for user123 (and alice) if user123
    /// has none, so that the guide's examples have something to work on.
    #[arg(long)]
    load_samples: bool,
    /// Log level or filter (default: RUST_LOG, else info).
    #[arg(short = 'l', long)]
    loglevel: Option<String>,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(e) = common::init_logging(args.loglevel.as_deref()) {
        eprintln!("api: {e}");
        std::process::exit(2);
    }
    if let Err(e) = run(args).await {
        eprintln!("api: {e}");
        std::process::exit(1);
    }
}

// --- State ----------------------------------------------------------------------------

/// The ids of the tasks submitted through the API, so that an id nobody submitted is
/// a 404 rather than an eternal PENDING (Celery's answer for any unknown id).
#[hippo_queue::async_trait]
trait TaskLog: Send + Sync {
    async fn record(&self, id: &str, name: &str) -> Result<(), String>;
    async fn contains(&self, id: &str) -> Result<bool, String>;
}

#[derive(Default)]
struct MemoryTaskLog(Mutex<HashMap<String, String>>);

#[hippo_queue::async_trait]
impl TaskLog for MemoryTaskLog {
    async fn record(&self, id: &str, name: &str) -> Result<(), String> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(id.to_string(), name.to_string());
        Ok(())
    }
    async fn contains(&self, id: &str) -> Result<bool, String> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Ok(m.contains_key(id))
    }
}

/// `hippo:api:task:<id>` -> task name, on the results server, kept as long as results.
/// The ids of the ticks beat has sent (`beat:<entry>@<ms>`) are known too.
struct RedisTaskLog {
    client: redis::Client,
    conn: Mutex<Option<redis::aio::MultiplexedConnection>>,
    ttl_secs: u64,
    beat: RedisBackend,
}

impl RedisTaskLog {
    fn key(id: &str) -> String {
        format!("hippo:api:task:{id}")
    }

    /// Runs a command, reconnecting once when the connection was lost (a Redis
    /// restart).
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, String> {
        for attempt in 0..2 {
            let cached = self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let mut conn = match cached {
                Some(c) => c,
                None => {
                    let c = self
                        .client
                        .get_multiplexed_async_connection()
                        .await
                        .map_err(|e| e.to_string())?;
                    *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
                    c
                }
            };
            match cmd.query_async::<T>(&mut conn).await {
                Ok(v) => return Ok(v),
                Err(e) if attempt == 0 && (e.is_io_error() || e.is_connection_dropped()) => {
                    *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Err("the result backend is unreachable".into())
    }
}

#[hippo_queue::async_trait]
impl TaskLog for RedisTaskLog {
    async fn record(&self, id: &str, name: &str) -> Result<(), String> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(Self::key(id))
            .arg(name)
            .arg("EX")
            .arg(self.ttl_secs.max(1));
        self.query::<()>(&cmd).await
    }

    async fn contains(&self, id: &str) -> Result<bool, String> {
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(Self::key(id));
        if self.query::<bool>(&cmd).await? {
            return Ok(true);
        }
        // A periodic task: known once beat has claimed its tick.
        let tick = id
            .strip_prefix("beat:")
            .and_then(|rest| rest.rsplit_once('@'))
            .and_then(|(entry, ms)| Some((entry, ms.parse::<u64>().ok()?)));
        match tick {
            Some((entry, ms)) => {
                let last = self.beat.last_run(entry).await.map_err(|e| e.to_string())?;
                Ok(last.is_some_and(|last| last >= ms))
            }
            None => Ok(false),
        }
    }
}

struct AppState {
    app: App,
    client: MemoryTaskClient,
    store: Arc<dyn MemoryStore>,
    tasks: Box<dyn TaskLog>,
    mode: &'static str,
}

type Shared = Arc<AppState>;

async fn run(args: Args) -> Result<(), BoxError> {
    let (state, worker): (AppState, Option<WorkerHandle>) = if args.embedded {
        let embedders = common::embedders(&common::current_model_from_env(), Duration::ZERO)?;
        let store: Arc<dyn MemoryStore> = Arc::new(InMemoryStore::new());
        let app = App::builder()
            .router(hippo_memory_tasks::router())
            .config(hippo_queue::config::Config::from_env()?)
            .build();
        register_all(
            &app,
            &MemoryServices::new(store.clone()).embedders(embedders),
        );
        let worker = app.worker().start().await?;
        let state = AppState {
            client: MemoryTaskClient::new(app.clone(), store.clone()),
            app,
            store,
            tasks: Box::new(MemoryTaskLog::default()),
            mode: "embedded",
        };
        (state, Some(worker))
    } else {
        let ep = common::endpoints("api")
            .map_err(|e| format!("{e}\nOr start the API with --embedded."))?;
        let (app, redis) = common::connect_queue(&ep).await?;
        let store = common::connect_store(&ep).await?;
        let results_url = ep
            .config
            .result_backend
            .clone()
            .unwrap_or_else(|| ep.broker_url.clone());
        let client = redis::Client::open(results_url.as_str()).map_err(|e| {
            let url = hippo_queue::config::redact_url(&results_url);
            format!("invalid result backend URL {url}: {e}")
        })?;
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| {
                let url = hippo_queue::config::redact_url(&results_url);
                format!("cannot reach the result backend at {url}: {e}")
            })?;
        let tasks = RedisTaskLog {
            client,
            conn: Mutex::new(Some(conn)),
            ttl_secs: ep.config.result_expires.as_secs() + 3600,
            beat: redis,
        };
        let state = AppState {
            client: MemoryTaskClient::new(app.clone(), store.clone()),
            app,
            store,
            tasks: Box::new(tasks),
            mode: "redis",
        };
        (state, None)
    };
    if args.load_samples {
        let n = common::load_samples(state.store.as_ref(), common::GUIDE_USER, "alice").await?;
        if n > 0 {
            tracing::info!(
                "loaded {n} sample memories for {} and alice",
                common::GUIDE_USER
            );
        }
    }
    let state: Shared = Arc::new(state);
    let router = routes(state.clone());

    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", args.host, args.port))?;
    let addr: SocketAddr = listener.local_addr()?;
    let shutdown = common::shutdown_signal();
    // The first line on stdout is the address (read by scripts started with --port 0).
    println!("api listening on http://{addr}");
    tracing::info!(mode = state.mode, "api listening on http://{addr}");
    let signal = Arc::new(Mutex::new(None::<&'static str>));
    let seen = signal.clone();
    axum::serve(listener, router)
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

fn routes(state: Shared) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi))
        .route("/api/v1/tasks/deduplication", post(submit_deduplication))
        .route("/api/v1/tasks/consolidation", post(submit_consolidation))
        .route("/api/v1/tasks/health-check", post(submit_health_check))
        .route("/api/v1/tasks/summarization", post(submit_summarization))
        .route("/api/v1/tasks/compression", post(submit_compression))
        .route("/api/v1/tasks/expiration", post(submit_expiration))
        .route("/api/v1/tasks/{task_id}/status", get(task_status))
        .route(
            "/api/v1/tasks/{task_id}",
            axum::routing::delete(revoke_task),
        )
        .route("/v1/admin/embeddings/migrate", post(start_migration))
        .route("/v1/admin/embeddings/migration/{id}", get(get_migration))
        .route(
            "/v1/admin/embeddings/migration/{id}/cancel",
            post(cancel_migration),
        )
        .route("/v1/procedural/consolidate", post(consolidate_rules))
        .route("/v1/procedural/rules", post(add_rule).get(list_rules))
        .route("/v1/memories", post(add_memory).get(list_memories))
        .route("/v1/memories/{id}", get(get_memory).delete(delete_memory))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

// --- Errors ---------------------------------------------------------------------------

/// An error answer: `{"error": message}` with a status code.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::InvalidArgument(m) => ApiError::invalid(m),
            ClientError::NoMigration(id) => ApiError::not_found(format!("no migration {id:?}")),
            ClientError::Queue(e) => ApiError::unavailable(format!("the queue failed: {e}")),
            ClientError::Store(e) => e.into(),
            other => ApiError::unavailable(other.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(m) => ApiError::invalid(m),
            other => ApiError::unavailable(other.to_string()),
        }
    }
}

impl From<hippo_queue::Error> for ApiError {
    fn from(e: hippo_queue::Error) -> Self {
        ApiError::unavailable(format!("the queue failed: {e}"))
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; the endpoints are listed at GET /openapi.json")
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} is not allowed on {}; the endpoints are listed at GET /openapi.json",
            uri.path()
        ),
    )
}

type ApiResult = Result<Response, ApiError>;

// --- Request parsing --------------------------------------------------------------------

/// Parses a JSON body (an empty body is `{}`): 400 when it is not JSON, 422 when a
/// field is missing, unknown or of the wrong type.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the request body is not valid JSON: {e}"),
            ),
            Category::Data => ApiError::invalid(format!("invalid request body: {e}")),
        }
    })
}

/// Query parameters, or a 400 naming the problem.
fn query(
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(m)| m)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad query string: {e}")))
}

/// A required, non-empty `user_id`.
fn user_id(v: Option<String>, place: &str) -> Result<String, ApiError> {
    match v {
        Some(u) if !u.trim().is_empty() => Ok(u),
        Some(_) => Err(ApiError::invalid(format!("user_id {place} is empty"))),
        None => Err(ApiError::invalid(format!("user_id {place} is required"))),
    }
}

fn check_threshold(t: Option<f64>) -> Result<Option<f64>, ApiError> {
    match t {
        Some(t) if !(t.is_finite() && (0.0..=1.0).contains(&t)) => Err(ApiError::invalid(format!(
            "similarity_threshold must be between 0 and 1 (a cosine similarity), got {t}"
        ))),
        other => Ok(other),
    }
}

/// 404 unless the user has memories.
async fn known_user(s: &AppState, user: &str) -> Result<(), ApiError> {
    if s.store.user_exists(user).await? {
        Ok(())
    } else {
        Err(ApiError::not_found(format!(
            "unknown user {user:?}: no memories are stored for this user (add some with POST /v1/memories)"
        )))
    }
}

fn queue_of<T: Task>() -> String {
    T::options().queue.unwrap_or_else(|| "default".into())
}

fn default_true() -> bool {
    true
}

/// The guide's answer to a submission.
#[derive(Serialize)]
struct Submitted {
    task_id: String,
    status: &'static str,
    queue: String,
}

/// Records a submitted task and answers: 202 `{"task_id", "status", "queue"}`, or,
/// with `"async": false`, 200 and the task's status once it has finished.
async fn submitted<T: Task>(s: &AppState, task_id: String, run_async: bool) -> ApiResult {
    if let Err(e) = s.tasks.record(&task_id, T::NAME).await {
        tracing::warn!(task_id, error = %e, "task id not recorded");
    }
    tracing::info!(task_id, task = T::NAME, "task submitted");
    if run_async {
        let body = Submitted {
            task_id,
            status: "PENDING",
            queue: queue_of::<T>(),
        };
        Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
    } else {
        let status = s.client.wait(&task_id, SYNC_WAIT).await?;
        Ok(axum::Json(status).into_response())
    }
}

// --- Tasks ----------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DedupRequest {
    user_id: Option<String>,
    similarity_threshold: Option<f64>,
    #[serde(rename = "async", default = "default_true")]
    run_async: bool,
    #[serde(default)]
    dry_run: bool,
}

async fn submit_deduplication(State(s): State<Shared>, body: Bytes) -> ApiResult {
    let r: DedupRequest = parse(&body)?;
    let user = user_id(r.user_id, "in the body")?;
    let t = check_threshold(r.similarity_threshold)?;
    known_user(&s, &user).await?;
    let id = s
        .client
        .submit_deduplication_task(&user, t, r.dry_run)
        .await?;
    submitted::<DeduplicationTask>(&s, id, r.run_async).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsolidationRequest {
    user_id: Option<String>,
    similarity_threshold: Option<f64>,
    #[serde(rename = "async", default = "default_true")]
    run_async: bool,
}

async fn submit_consolidation(State(s): State<Shared>, body: Bytes) -> ApiResult {
    let r: ConsolidationRequest = parse(&body)?;
    let user = user_id(r.user_id, "in the body")?;
    let t = check_threshold(r.similarity_threshold)?;
    known_user(&s, &user).await?;
    let id = s.client.submit_consolidation_task(&user, t).await?;
    submitted::<ConsolidationTask>(&s, id, r.run_async).await
}

/// A task whose user is optional (health check, expiration: everyone by default).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionalUserRequest {
    user_id: Option<String>,
    #[serde(rename = "async", default = "default_true")]
    run_async: bool,
}

async fn optional_user(s: &AppState, r: &OptionalUserRequest) -> Result<Option<String>, ApiError> {
    match &r.user_id {
        Some(u) => {
            let u = user_id(Some(u.clone()), "in the body")?;
            known_user(s, &u).await?;
            Ok(Some(u))
        }
        None => Ok(None),
    }
}

async fn submit_health_check(State(s): State<Shared>, body: Bytes) -> ApiResult {
    let r: OptionalUserRequest = parse(&body)?;
    let user = optional_user(&s, &r).await?;
    let id = s.client.submit_health_check_task(user.as_deref()).await?;
    submitted::<HealthCheckTask>(&s, id, r.run_async).await
}

async fn submit_expiration(State(s): State<Shared>, body: Bytes) -> ApiResult {
    let r: OptionalUserRequest = parse(&body)?;
    let user = optional_user(&s, &r).await?;
    let id = s.client.submit_expiration_task(user.as_deref()).await?;
    submitted::<ExpireMemoriesTask>(&s, id, r.run_async).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SummarizationRequest {
    user_id: Option<String>,
    min_age_days: Option<u32>,
    #[serde(rename = "async", default = "default_true")]
    run_async: bool,
}

async fn submit_summarization(State(s): State<Shared>, body: Bytes) -> ApiResult {
    let r: SummarizationRequest = parse(&body)?;
    let user = user_id(r.user_id, "in the body")?;
    known_user(&s, &user).await?;
    let id = s
        .client
        .submit_summarization_task(&user, r.min_age_days)
        .await?;
    submitted::<AutoSummarizationTask>(&s, id, r.run_async).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserRequest {
    user_id: Option<String>,
    #[serde(rename = "async", default = "default_true")]
    run_async: bool,
}

async fn submit_compression(State(s): State<Shared>, body: Bytes) -> ApiResult {
    let r: UserRequest = parse(&body)?;
    let user = user_id(r.user_id, "in the body")?;
    known_user(&s, &user).await?;
    let id = s.client.submit_compression_task(&user).await?;
    submitted::<CompressionTask>(&s, id, r.run_async).await
}

/// 404 for an id that is neither stored in the result backend nor was submitted here.
async fn check_known_task(s: &AppState, task_id: &str, state: &str) -> Result<(), ApiError> {
    if state != "PENDING" {
        return Ok(());
    }
    match s.tasks.contains(task_id).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(ApiError::not_found(format!(
            "unknown task id {task_id:?}: no task with this id was submitted, or its result has expired"
        ))),
        Err(e) => Err(ApiError::unavailable(format!("the task log failed: {e}"))),
    }
}

async fn task_status(State(s): State<Shared>, Path(task_id): Path<String>) -> ApiResult {
    let status = s.client.get_task_status(&task_id).await?;
    check_known_task(&s, &task_id, &status.state).await?;
    Ok(axum::Json(status).into_response())
}

async fn revoke_task(
    State(s): State<Shared>,
    Path(task_id): Path<String>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let terminate = match q.get("terminate").map(|v| v.to_ascii_lowercase()) {
        None => true,
        Some(v) if v == "true" || v == "1" => true,
        Some(v) if v == "false" || v == "0" => false,
        Some(v) => {
            return Err(ApiError::invalid(format!(
                "terminate must be true or false, got {v:?}"
            )));
        }
    };
    let before = s.client.get_task_status(&task_id).await?;
    check_known_task(&s, &task_id, &before.state).await?;
    s.client.revoke_task(&task_id, terminate).await?;
    tracing::info!(task_id, terminate, "task revoked");
    Ok(axum::Json(json!({
        "task_id": task_id,
        "revoked": true,
        "terminate": terminate,
        "state": before.state,
    }))
    .into_response())
}

// --- Embedding migrations -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MigrateRequest {
    new_model: Option<String>,
    new_dimension: Option<usize>,
}

/// The answer to a migration request: its ids, then the record.
#[derive(Serialize)]
struct MigrationStartedBody {
    migration_id: String,
    task_id: String,
    queue: String,
    #[serde(flatten)]
    record: Migration,
}

async fn start_migration(State(s): State<Shared>, body: Bytes) -> ApiResult {
    let r: MigrateRequest = parse(&body)?;
    let model = r
        .new_model
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("new_model is required"))?;
    let Some(known) = common::model_dimension(&model) else {
        return Err(ApiError::invalid(format!(
            "unknown embedding model {model:?}; known models: {}",
            common::known_model_names()
        )));
    };
    let dim = r.new_dimension.unwrap_or(known);
    if dim != known {
        return Err(ApiError::invalid(format!(
            "model {model} makes {known}-dimensional vectors, not {dim}"
        )));
    }
    let started = s.client.start_embedding_migration(&model, dim).await?;
    if let Err(e) = s
        .tasks
        .record(&started.task_id, MigrateEmbeddingsTask::NAME)
        .await
    {
        tracing::warn!(task_id = started.task_id, error = %e, "task id not recorded");
    }
    let record = s.client.get_migration(&started.migration_id).await?;
    tracing::info!(
        migration = started.migration_id,
        task_id = started.task_id,
        model,
        "migration started"
    );
    let body = MigrationStartedBody {
        migration_id: started.migration_id,
        task_id: started.task_id,
        queue: queue_of::<MigrateEmbeddingsTask>(),
        record,
    };
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}

async fn get_migration(State(s): State<Shared>, Path(id): Path<String>) -> ApiResult {
    let record = s.client.get_migration(&id).await?;
    Ok(axum::Json(record).into_response())
}

async fn cancel_migration(State(s): State<Shared>, Path(id): Path<String>) -> ApiResult {
    let record = s.client.get_migration(&id).await?;
    if record.status.is_final() {
        let status = serde_json::to_value(record.status).unwrap_or(Value::Null);
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "migration {id} has already ended: {}",
                status.as_str().unwrap_or("?")
            ),
        ));
    }
    let record = s.client.cancel_migration(&id).await?;
    tracing::info!(migration = id, "migration cancellation requested");
    Ok(axum::Json(record).into_response())
}

// --- Procedural rules -------------------------------------------------------------------

async fn consolidate_rules(
    State(s): State<Shared>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let user = user_id(q.get("user_id").cloned(), "(query parameter)")?;
    let rules = s.store.list_rules(&user, &PageRequest::first(1)).await?;
    if rules.items.is_empty() && !s.store.user_exists(&user).await? {
        return Err(ApiError::not_found(format!(
            "unknown user {user:?}: no procedural rules or memories are stored for this user"
        )));
    }
    let id = s.client.submit_procedural_consolidation(&user).await?;
    submitted::<ConsolidateProceduralRulesTask>(&s, id, true).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleRequest {
    user_id: Option<String>,
    rule_text: Option<String>,
    confidence: Option<f64>,
    success_rate: Option<f64>,
}

fn unit(name: &str, v: Option<f64>) -> Result<Option<f64>, ApiError> {
    match v {
        Some(x) if !(x.is_finite() && (0.0..=1.0).contains(&x)) => Err(ApiError::invalid(format!(
            "{name} must be between 0 and 1, got {x}"
        ))),
        other => Ok(other),
    }
}

async fn add_rule(State(s): State<Shared>, body: Bytes) -> ApiResult {
    let r: RuleRequest = parse(&body)?;
    let user = user_id(r.user_id, "in the body")?;
    let text = r
        .rule_text
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("rule_text is required"))?;
    let mut rule = ProceduralRule::new(user.clone(), text);
    if let Some(c) = unit("confidence", r.confidence)? {
        rule.confidence = c;
    }
    if let Some(x) = unit("success_rate", r.success_rate)? {
        rule.success_rate = x;
    }
    s.store
        .put_rules(&user, std::slice::from_ref(&rule))
        .await?;
    Ok((StatusCode::CREATED, axum::Json(rule)).into_response())
}

async fn list_rules(
    State(s): State<Shared>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let user = user_id(q.get("user_id").cloned(), "(query parameter)")?;
    let rules = load_rules(s.store.as_ref(), &user).await?;
    Ok(axum::Json(RulePage {
        user_id: user,
        total: rules.len(),
        rules,
    })
    .into_response())
}

// --- Memories -------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemoryRequest {
    text: Option<String>,
    user_id: Option<String>,
    #[serde(rename = "type")]
    memory_type: Option<String>,
    importance: Option<f64>,
    confidence: Option<f64>,
    #[serde(default)]
    tags: Vec<String>,
    session_id: Option<String>,
    agent_id: Option<String>,
    #[serde(default)]
    metadata: Metadata,
    /// Days until it expires.
    ttl_days: Option<f64>,
    expires_at: Option<DateTime<Utc>>,
}

/// One page of a user's memories.
#[derive(Serialize)]
struct MemoryPage {
    user_id: String,
    total: u64,
    memories: Vec<Memory>,
    next_cursor: Option<String>,
}

/// A user's procedural rules.
#[derive(Serialize)]
struct RulePage {
    user_id: String,
    total: usize,
    rules: Vec<ProceduralRule>,
}

/// A memory as the API shows it: without its vector.
fn public(mut m: Memory) -> Memory {
    m.embedding = None;
    m
}

async fn add_memory(State(s): State<Shared>, body: Bytes) -> ApiResult {
    let r: MemoryRequest = parse(&body)?;
    let user = user_id(r.user_id, "in the body")?;
    let text = r
        .text
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("text is required"))?;
    let ty = match &r.memory_type {
        Some(t) => t.parse::<MemoryType>().map_err(ApiError::invalid)?,
        None => MemoryType::Fact,
    };
    let mut m = Memory::new(user, text, ty);
    if let Some(i) = r.importance {
        if !(i.is_finite() && (0.0..=10.0).contains(&i)) {
            return Err(ApiError::invalid(format!(
                "importance must be between 0 and 10, got {i}"
            )));
        }
        m.importance = i;
    }
    if let Some(c) = unit("confidence", r.confidence)? {
        m.confidence = c;
    }
    for t in r.tags {
        if !m.tags.contains(&t) {
            m.tags.push(t);
        }
    }
    m.session_id = r.session_id;
    m.agent_id = r.agent_id;
    m.metadata = r.metadata;
    m.expires_at = match (r.ttl_days, r.expires_at) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("give ttl_days or expires_at, not both"));
        }
        (Some(d), None) if d.is_finite() && d > 0.0 => {
            Some(m.created_at + chrono::Duration::milliseconds((d * 86_400_000.0) as i64))
        }
        (Some(d), None) => {
            return Err(ApiError::invalid(format!(
                "ttl_days must be above 0, got {d}"
            )));
        }
        (None, at) => at,
    };
    s.store.put(&m).await?;
    Ok((StatusCode::CREATED, axum::Json(public(m))).into_response())
}

async fn list_memories(
    State(s): State<Shared>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let user = user_id(q.get("user_id").cloned(), "(query parameter)")?;
    let limit = match q.get("limit") {
        None => 50,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid(format!(
                    "limit must be a whole number from 1 to {MAX_LIMIT}, got {l:?}"
                )));
            }
        },
    };
    let page = PageRequest {
        after: q.get("cursor").filter(|c| !c.is_empty()).cloned(),
        limit,
    };
    let total = s.store.count_by_user(&user).await?;
    let p = s.store.list_by_user(&user, &page).await?;
    Ok(axum::Json(MemoryPage {
        user_id: user,
        total,
        memories: p.items.into_iter().map(public).collect(),
        next_cursor: p.next,
    })
    .into_response())
}

async fn get_memory(
    State(s): State<Shared>,
    Path(id): Path<String>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let user = user_id(q.get("user_id").cloned(), "(query parameter)")?;
    match s.store.get(&user, &id).await? {
        Some(m) => Ok(axum::Json(public(m)).into_response()),
        None => Err(ApiError::not_found(format!(
            "no memory {id:?} for user {user:?}"
        ))),
    }
}

async fn delete_memory(
    State(s): State<Shared>,
    Path(id): Path<String>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let user = user_id(q.get("user_id").cloned(), "(query parameter)")?;
    match s.store.delete(&user, std::slice::from_ref(&id)).await? {
        0 => Err(ApiError::not_found(format!(
            "no memory {id:?} for user {user:?}"
        ))),
        _ => Ok(axum::Json(json!({"deleted": true, "id": id, "user_id": user})).into_response()),
    }
}

// --- Health and description -------------------------------------------------------------

async fn health(State(s): State<Shared>) -> Response {
    let broker = s.app.broker().workers().await;
    let store = s.store.ping().await;
    let ok = broker.is_ok() && store.is_ok();
    let body = json!({
        "status": if ok { "ok" } else { "unavailable" },
        "mode": s.mode,
        "broker": broker.as_ref().map_or_else(|e| e.to_string(), |_| "ok".to_string()),
        "store": store.as_ref().map_or_else(|e| e.to_string(), |_| "ok".to_string()),
        "workers": broker.as_ref().map_or(0, Vec::len),
    });
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

async fn openapi() -> axum::Json<Value> {
    axum::Json(openapi_document())
}

/// The OpenAPI 3 description of this API.
fn openapi_document() -> Value {
    let error = json!({"description": "what is wrong", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    let submitted = json!({"description": "submitted", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Submitted"}}}});
    let body = |schema: &str| json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    let ok = |schema: &str, what: &str| json!({"description": what, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    let path_param = |name: &str, what: &str| json!({"name": name, "in": "path", "required": true, "description": what, "schema": {"type": "string"}});
    let user_query =
        json!({"name": "user_id", "in": "query", "required": true, "schema": {"type": "string"}});
    let submit = |summary: &str, schema: &str| {
        json!({"post": {
            "summary": summary,
            "requestBody": body(schema),
            "responses": {"202": submitted, "200": ok("TaskStatus", "with \"async\": false, the finished task"), "400": error, "404": error, "422": error, "503": error}
        }})
    };
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "hippo-queue memory tasks API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "HippocampAI's background memory tasks on hippo-queue: submit tasks, follow and cancel them, embedding migrations, procedural rules and memories."
        },
        "paths": {
            "/api/v1/tasks/deduplication": submit("Find and merge duplicate memories (deduplication_task, queue memory_ops)", "DeduplicationRequest"),
            "/api/v1/tasks/consolidation": submit("Consolidate related memories (consolidation_task, queue memory_ops)", "ConsolidationRequest"),
            "/api/v1/tasks/health-check": submit("Health report (health_check_task, queue background)", "OptionalUserRequest"),
            "/api/v1/tasks/summarization": submit("Summarise old memories (auto_summarization_task, queue background)", "SummarizationRequest"),
            "/api/v1/tasks/compression": submit("Compress old memories (compression_task, queue background)", "UserRequest"),
            "/api/v1/tasks/expiration": submit("Delete expired memories (expire_memories_task, queue scheduled)", "OptionalUserRequest"),
            "/api/v1/tasks/{task_id}/status": {"get": {
                "summary": "A task's state and result",
                "parameters": [path_param("task_id", "the task id")],
                "responses": {"200": ok("TaskStatus", "the task"), "404": error, "503": error}
            }},
            "/api/v1/tasks/{task_id}": {"delete": {
                "summary": "Revoke a task (a running one is terminated unless terminate=false)",
                "parameters": [path_param("task_id", "the task id"), {"name": "terminate", "in": "query", "required": false, "schema": {"type": "boolean", "default": true}}],
                "responses": {"200": ok("Revoked", "revoked"), "404": error, "422": error, "503": error}
            }},
            "/v1/admin/embeddings/migrate": {"post": {
                "summary": "Re-encode every memory with a new embedding model (migrate_embeddings_task)",
                "requestBody": body("MigrateRequest"),
                "responses": {"202": ok("Migration", "the migration record, with migration_id and task_id"), "400": error, "422": error, "503": error}
            }},
            "/v1/admin/embeddings/migration/{id}": {"get": {
                "summary": "A migration record",
                "parameters": [path_param("id", "the migration id")],
                "responses": {"200": ok("Migration", "the record"), "404": error}
            }},
            "/v1/admin/embeddings/migration/{id}/cancel": {"post": {
                "summary": "Cancel a migration (it stops before its next batch)",
                "parameters": [path_param("id", "the migration id")],
                "responses": {"200": ok("Migration", "the record"), "404": error, "409": error}
            }},
            "/v1/procedural/consolidate": {"post": {
                "summary": "Merge a user's redundant procedural rules (consolidate_procedural_rules, queue background)",
                "parameters": [user_query],
                "responses": {"202": submitted, "404": error, "422": error}
            }},
            "/v1/procedural/rules": {
                "post": {"summary": "Add a procedural rule", "requestBody": body("RuleRequest"),
                         "responses": {"201": ok("Rule", "the rule"), "400": error, "422": error}},
                "get": {"summary": "A user's procedural rules", "parameters": [user_query],
                        "responses": {"200": {"description": "{user_id, total, rules}"}, "422": error}}
            },
            "/v1/memories": {
                "post": {"summary": "Add a memory", "requestBody": body("MemoryRequest"),
                         "responses": {"201": ok("Memory", "the memory"), "400": error, "422": error}},
                "get": {"summary": "A user's memories, a page at a time (ordered by id)",
                        "parameters": [user_query,
                            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50}},
                            {"name": "cursor", "in": "query", "description": "next_cursor of the previous page", "schema": {"type": "string"}}],
                        "responses": {"200": ok("MemoryPage", "one page"), "422": error}}
            },
            "/v1/memories/{id}": {
                "get": {"summary": "One memory", "parameters": [path_param("id", "the memory id"), user_query],
                        "responses": {"200": ok("Memory", "the memory"), "404": error, "422": error}},
                "delete": {"summary": "Delete a memory", "parameters": [path_param("id", "the memory id"), user_query],
                           "responses": {"200": {"description": "{deleted, id, user_id}"}, "404": error, "422": error}}
            },
            "/health": {"get": {"summary": "Broker and store reachability, live workers",
                "responses": {"200": {"description": "{status, mode, broker, store, workers}"}, "503": {"description": "something is unreachable"}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3"}}}}
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            "Submitted": {"type": "object", "required": ["task_id", "status", "queue"], "properties": {
                "task_id": {"type": "string"}, "status": {"type": "string", "enum": ["PENDING"]}, "queue": {"type": "string"}}},
            "TaskStatus": {"type": "object", "required": ["task_id", "state", "result", "traceback"], "properties": {
                "task_id": {"type": "string"},
                "state": {"type": "string", "enum": ["PENDING", "STARTED", "RETRY", "SUCCESS", "FAILURE", "REVOKED", "REJECTED"]},
                "result": {"description": "the task's result object on success, {exc_type, exc_message} on failure, null otherwise"},
                "traceback": {"type": "string", "nullable": true}}},
            "Revoked": {"type": "object", "properties": {"task_id": {"type": "string"}, "revoked": {"type": "boolean"}, "terminate": {"type": "boolean"}, "state": {"type": "string"}}},
            "DeduplicationRequest": {"type": "object", "required": ["user_id"], "additionalProperties": false, "properties": {
                "user_id": {"type": "string"},
                "similarity_threshold": {"type": "number", "minimum": 0, "maximum": 1, "description": "default: the embedding model's (0.88 lexical, 0.81 all-MiniLM-L6-v2)"},
                "async": {"type": "boolean", "default": true, "description": "false: wait for the task and answer with its status"},
                "dry_run": {"type": "boolean", "default": false}}},
            "ConsolidationRequest": {"type": "object", "required": ["user_id"], "additionalProperties": false, "properties": {
                "user_id": {"type": "string"},
                "similarity_threshold": {"type": "number", "minimum": 0, "maximum": 1, "description": "default: the embedding model's (0.85 lexical, 0.75 all-MiniLM-L6-v2)"},
                "async": {"type": "boolean", "default": true}}},
            "SummarizationRequest": {"type": "object", "required": ["user_id"], "additionalProperties": false, "properties": {
                "user_id": {"type": "string"}, "min_age_days": {"type": "integer", "minimum": 0, "default": 30}, "async": {"type": "boolean", "default": true}}},
            "UserRequest": {"type": "object", "required": ["user_id"], "additionalProperties": false, "properties": {
                "user_id": {"type": "string"}, "async": {"type": "boolean", "default": true}}},
            "OptionalUserRequest": {"type": "object", "additionalProperties": false, "properties": {
                "user_id": {"type": "string", "description": "omitted: every user"}, "async": {"type": "boolean", "default": true}}},
            "MigrateRequest": {"type": "object", "required": ["new_model"], "additionalProperties": false, "properties": {
                "new_model": {"type": "string", "enum": common::KNOWN_MODELS.iter().map(|(n, _)| *n).collect::<Vec<_>>()},
                "new_dimension": {"type": "integer", "minimum": 1}}},
            "Migration": {"type": "object", "properties": {
                "id": {"type": "string"}, "old_model": {"type": "string", "nullable": true}, "new_model": {"type": "string"},
                "new_dimension": {"type": "integer"},
                "status": {"type": "string", "enum": ["pending", "in_progress", "completed", "failed", "cancelled"]},
                "created_at": {"type": "string", "format": "date-time"},
                "started_at": {"type": "string", "format": "date-time", "nullable": true},
                "completed_at": {"type": "string", "format": "date-time", "nullable": true},
                "total_memories": {"type": "integer"}, "migrated_count": {"type": "integer"}, "failed_count": {"type": "integer"},
                "error": {"type": "string", "nullable": true}, "cancel_requested": {"type": "boolean"},
                "migration_id": {"type": "string", "description": "on POST /v1/admin/embeddings/migrate only"},
                "task_id": {"type": "string", "description": "on POST /v1/admin/embeddings/migrate only"}}},
            "RuleRequest": {"type": "object", "required": ["user_id", "rule_text"], "additionalProperties": false, "properties": {
                "user_id": {"type": "string"}, "rule_text": {"type": "string"},
                "confidence": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.7},
                "success_rate": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5}}},
            "Rule": {"type": "object", "properties": {
                "id": {"type": "string"}, "user_id": {"type": "string"}, "rule_text": {"type": "string"},
                "confidence": {"type": "number"}, "success_rate": {"type": "number"}, "active": {"type": "boolean"}}},
            "MemoryRequest": {"type": "object", "required": ["user_id", "text"], "additionalProperties": false, "properties": {
                "user_id": {"type": "string"}, "text": {"type": "string"},
                "type": {"type": "string", "enum": MemoryType::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>(), "default": "fact"},
                "importance": {"type": "number", "minimum": 0, "maximum": 10, "default": 5},
                "confidence": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.9},
                "tags": {"type": "array", "items": {"type": "string"}},
                "session_id": {"type": "string"}, "agent_id": {"type": "string"},
                "metadata": {"type": "object"},
                "ttl_days": {"type": "number", "exclusiveMinimum": 0},
                "expires_at": {"type": "string", "format": "date-time"}}},
            "Memory": {"type": "object", "properties": {
                "id": {"type": "string"}, "text": {"type": "string"}, "user_id": {"type": "string"},
                "type": {"type": "string"}, "importance": {"type": "number"}, "confidence": {"type": "number"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "created_at": {"type": "string", "format": "date-time"}, "updated_at": {"type": "string", "format": "date-time"},
                "expires_at": {"type": "string", "format": "date-time", "nullable": true},
                "access_count": {"type": "integer"}, "metadata": {"type": "object"},
                "embed_model": {"type": "string", "nullable": true}, "is_archived": {"type": "boolean"}}},
            "MemoryPage": {"type": "object", "properties": {
                "user_id": {"type": "string"}, "total": {"type": "integer"},
                "memories": {"type": "array", "items": {"$ref": "#/components/schemas/Memory"}},
                "next_cursor": {"type": "string", "nullable": true}}}
        }}
    })
}
