//! [`ApiClient`]: a typed HTTP client of the API (the guide's
//! `MemoryClient(mode="remote")`), on reqwest.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::wire::{
    ConsolidationRequest, DeduplicationRequest, Deleted, ErrorBody, Health, MemoryPage,
    MemoryRequest, MigrateRequest, MigrationStartedBody, OptionalUserRequest, Revoked, RulePage,
    RuleRequest, Submitted, SummarizationRequest, UserRequest,
};
use crate::client::TaskStatus;
use crate::model::{Memory, Migration, ProceduralRule};

/// How long one request may take.
///
/// # Default
/// 330 seconds: longer than the API's own wait for `"async": false` (300 s).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(330);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiClientError {
    /// The base URL is not an `http://` or `https://` URL.
    #[error("API URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The API could not be reached, or the connection broke.
    #[error("cannot reach the API at {url}: {source}")]
    Unreachable {
        /// The URL called.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The API answered with an error.
    #[error("HTTP {}: {message}", status.as_u16())]
    Api {
        /// Its status code.
        status: StatusCode,
        /// Its `error` field (or the body, when it has none).
        message: String,
    },
    /// The answer was not what the API documents.
    #[error("{method} {path}: unexpected answer ({reason})")]
    Unexpected {
        /// The method.
        method: Method,
        /// The path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A task or migration had not ended when the time given to follow it ran out.
    #[error("{what} is still {state} after {} s", waited.as_secs())]
    StillRunning {
        /// The task or migration.
        what: String,
        /// Its state when the time ran out.
        state: String,
        /// How long it was followed.
        waited: Duration,
    },
}

impl ApiClientError {
    /// The API's status code, when it answered with an error.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ApiClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

type Result<T> = std::result::Result<T, ApiClientError>;

/// The API's answer to a submission.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Submission {
    /// 202: the task is queued (the request had `"async": true`, the default).
    Queued(Submitted),
    /// 200: the task has finished (the request had `"async": false`).
    Finished(TaskStatus),
}

impl Submission {
    /// The task's id.
    pub fn task_id(&self) -> &str {
        match self {
            Submission::Queued(s) => &s.task_id,
            Submission::Finished(s) => &s.task_id,
        }
    }
}

/// Decodes a 2xx answer's body.
fn decode<T: DeserializeOwned>(
    method: &Method,
    url: &Url,
    status: StatusCode,
    body: &[u8],
) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| ApiClientError::Unexpected {
        method: method.clone(),
        path: url.path().to_string(),
        reason: format!("HTTP {status} with a body that is not the documented JSON: {e}"),
    })
}

/// The task states after which a task does not change any more.
fn is_final(state: &str) -> bool {
    matches!(state, "SUCCESS" | "FAILURE" | "REVOKED" | "REJECTED")
}

/// A client of one API.
///
/// ```no_run
/// # async fn f() -> Result<(), hippo_memory_tasks::api::client::ApiClientError> {
/// use std::time::Duration;
/// use hippo_memory_tasks::api::client::ApiClient;
/// use hippo_memory_tasks::api::wire::DeduplicationRequest;
///
/// let client = ApiClient::new("http://localhost:8000")?;
/// let task = client.deduplication(&DeduplicationRequest::new("user123")).await?;
/// let status = client
///     .follow(task.task_id(), Duration::from_secs(300), |s| println!("Status: {}", s.state))
///     .await?;
/// println!("{}", status.result);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: Url,
    http: reqwest::Client,
    token: Option<Token>,
}

/// A bearer token, kept out of `Debug`.
#[derive(Clone)]
struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl ApiClient {
    /// A client of the API at `base_url` (`http://` or `https://`, with an optional
    /// path prefix), with [`DEFAULT_REQUEST_TIMEOUT`].
    pub fn new(base_url: &str) -> Result<Self> {
        Self::with_timeout(base_url, DEFAULT_REQUEST_TIMEOUT)
    }

    /// A client whose requests give up after `timeout`.
    pub fn with_timeout(base_url: &str, timeout: Duration) -> Result<Self> {
        let invalid = |reason: String| ApiClientError::InvalidUrl {
            url: base_url.to_string(),
            reason,
        };
        let base = Url::parse(base_url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid(
                "only http:// and https:// URLs are supported".into(),
            ));
        }
        if base.cannot_be_a_base() || base.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no host".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| invalid(format!("cannot build an HTTP client: {e}")))?;
        Ok(ApiClient {
            base,
            http,
            token: None,
        })
    }

    /// This client, sending `token` as `Authorization: Bearer <token>` with every
    /// request (an API serving beyond the loopback requires one).
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Token(token.into()));
        self
    }

    /// The URL of `segments` under the base URL (each segment percent-encoded).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Sends one request; returns a 2xx answer's status and body, or the API's error.
    async fn send<B: Serialize + ?Sized>(
        &self,
        method: &Method,
        url: &Url,
        query: &[(&str, &str)],
        body: Option<&B>,
    ) -> Result<(StatusCode, Vec<u8>)> {
        let mut req = self.http.request(method.clone(), url.clone()).query(query);
        if let Some(Token(t)) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let unreachable = |source| ApiClientError::Unreachable {
            url: url.to_string(),
            source,
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            let message = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(e) => e.error,
                Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
            };
            return Err(ApiClientError::Api { status, message });
        }
        Ok((status, bytes.to_vec()))
    }

    /// Sends one request and decodes its 2xx answer.
    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&B>,
    ) -> Result<T> {
        let url = self.url(segments);
        let (status, bytes) = self.send(&method, &url, query, body).await?;
        decode(&method, &url, status, &bytes)
    }

    /// Submits a task: 202 and [`Submitted`], or 200 and the finished task's status
    /// for a request with `"async": false`.
    async fn submit<B: Serialize + ?Sized>(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&B>,
    ) -> Result<Submission> {
        let url = self.url(segments);
        let (status, bytes) = self.send(&Method::POST, &url, query, body).await?;
        if status == StatusCode::ACCEPTED {
            decode(&Method::POST, &url, status, &bytes).map(Submission::Queued)
        } else {
            decode(&Method::POST, &url, status, &bytes).map(Submission::Finished)
        }
    }

    async fn submit_task<B: Serialize>(&self, what: &str, body: &B) -> Result<Submission> {
        self.submit(&["api", "v1", "tasks", what], &[], Some(body))
            .await
    }

    /// `POST /api/v1/tasks/deduplication`.
    pub async fn deduplication(&self, r: &DeduplicationRequest) -> Result<Submission> {
        self.submit_task("deduplication", r).await
    }

    /// `POST /api/v1/tasks/consolidation`.
    pub async fn consolidation(&self, r: &ConsolidationRequest) -> Result<Submission> {
        self.submit_task("consolidation", r).await
    }

    /// `POST /api/v1/tasks/health-check`.
    pub async fn health_check(&self, r: &OptionalUserRequest) -> Result<Submission> {
        self.submit_task("health-check", r).await
    }

    /// `POST /api/v1/tasks/summarization`.
    pub async fn summarization(&self, r: &SummarizationRequest) -> Result<Submission> {
        self.submit_task("summarization", r).await
    }

    /// `POST /api/v1/tasks/compression`.
    pub async fn compression(&self, r: &UserRequest) -> Result<Submission> {
        self.submit_task("compression", r).await
    }

    /// `POST /api/v1/tasks/expiration`.
    pub async fn expiration(&self, r: &OptionalUserRequest) -> Result<Submission> {
        self.submit_task("expiration", r).await
    }

    /// `GET /api/v1/tasks/{task_id}/status`.
    pub async fn task_status(&self, task_id: &str) -> Result<TaskStatus> {
        let path = ["api", "v1", "tasks", task_id, "status"];
        self.call::<(), _>(Method::GET, &path, &[], None).await
    }

    /// Polls a task's status until it has ended (`SUCCESS`, `FAILURE`, `REVOKED`,
    /// `REJECTED`), calling `on_change` with each new state; fails with
    /// [`ApiClientError::StillRunning`] after `timeout`.
    pub async fn follow(
        &self,
        task_id: &str,
        timeout: Duration,
        mut on_change: impl FnMut(&TaskStatus),
    ) -> Result<TaskStatus> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        let mut delay = Duration::from_millis(100);
        loop {
            let status = self.task_status(task_id).await?;
            if status.state != last {
                on_change(&status);
                last.clone_from(&status.state);
            }
            if is_final(&status.state) {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(ApiClientError::StillRunning {
                    what: format!("task {task_id}"),
                    state: status.state,
                    waited: timeout,
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    /// `DELETE /api/v1/tasks/{task_id}?terminate=...`.
    pub async fn revoke(&self, task_id: &str, terminate: bool) -> Result<Revoked> {
        let path = ["api", "v1", "tasks", task_id];
        let terminate = if terminate { "true" } else { "false" };
        self.call::<(), _>(Method::DELETE, &path, &[("terminate", terminate)], None)
            .await
    }

    /// `POST /v1/admin/embeddings/migrate`.
    pub async fn start_migration(&self, r: &MigrateRequest) -> Result<MigrationStartedBody> {
        let path = ["v1", "admin", "embeddings", "migrate"];
        self.call(Method::POST, &path, &[], Some(r)).await
    }

    /// `GET /v1/admin/embeddings/migration/{id}`.
    pub async fn migration(&self, id: &str) -> Result<Migration> {
        let path = ["v1", "admin", "embeddings", "migration", id];
        self.call::<(), _>(Method::GET, &path, &[], None).await
    }

    /// `POST /v1/admin/embeddings/migration/{id}/cancel`.
    pub async fn cancel_migration(&self, id: &str) -> Result<Migration> {
        let path = ["v1", "admin", "embeddings", "migration", id, "cancel"];
        self.call::<(), _>(Method::POST, &path, &[], None).await
    }

    /// Polls a migration until it has ended, calling `on_change` whenever its progress
    /// changes; fails with [`ApiClientError::StillRunning`] after `timeout`.
    pub async fn follow_migration(
        &self,
        id: &str,
        timeout: Duration,
        mut on_change: impl FnMut(&Migration),
    ) -> Result<Migration> {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            let m = self.migration(id).await?;
            let progress = (m.status, m.migrated_count, m.failed_count, m.total_memories);
            if last != Some(progress) {
                on_change(&m);
                last = Some(progress);
            }
            if m.status.is_final() {
                return Ok(m);
            }
            if Instant::now() >= deadline {
                return Err(ApiClientError::StillRunning {
                    what: format!("migration {id}"),
                    state: m.status.as_str().to_string(),
                    waited: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `POST /v1/procedural/consolidate?user_id=...`.
    pub async fn consolidate_rules(&self, user_id: &str) -> Result<Submission> {
        let path = ["v1", "procedural", "consolidate"];
        self.submit::<()>(&path, &[("user_id", user_id)], None)
            .await
    }

    /// `POST /v1/procedural/rules`.
    pub async fn add_rule(&self, r: &RuleRequest) -> Result<ProceduralRule> {
        let path = ["v1", "procedural", "rules"];
        self.call(Method::POST, &path, &[], Some(r)).await
    }

    /// `GET /v1/procedural/rules?user_id=...`.
    pub async fn rules(&self, user_id: &str) -> Result<RulePage> {
        let path = ["v1", "procedural", "rules"];
        self.call::<(), _>(Method::GET, &path, &[("user_id", user_id)], None)
            .await
    }

    /// `POST /v1/memories`.
    pub async fn add_memory(&self, r: &MemoryRequest) -> Result<Memory> {
        self.call(Method::POST, &["v1", "memories"], &[], Some(r))
            .await
    }

    /// `GET /v1/memories?user_id=...&limit=...&cursor=...`: one page.
    pub async fn memories(
        &self,
        user_id: &str,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<MemoryPage> {
        let limit = limit.map(|l| l.to_string());
        let mut query = vec![("user_id", user_id)];
        if let Some(l) = &limit {
            query.push(("limit", l));
        }
        if let Some(c) = cursor {
            query.push(("cursor", c));
        }
        self.call::<(), _>(Method::GET, &["v1", "memories"], &query, None)
            .await
    }

    /// `GET /v1/memories/{id}?user_id=...`.
    pub async fn memory(&self, user_id: &str, id: &str) -> Result<Memory> {
        let path = ["v1", "memories", id];
        self.call::<(), _>(Method::GET, &path, &[("user_id", user_id)], None)
            .await
    }

    /// `DELETE /v1/memories/{id}?user_id=...`.
    pub async fn delete_memory(&self, user_id: &str, id: &str) -> Result<Deleted> {
        let path = ["v1", "memories", id];
        self.call::<(), _>(Method::DELETE, &path, &[("user_id", user_id)], None)
            .await
    }

    /// `GET /health` (a 503 answer is returned as a [`Health`] too: it says what is
    /// unreachable).
    pub async fn health(&self) -> Result<Health> {
        let url = self.url(&["health"]);
        let mut req = self.http.get(url.clone());
        if let Some(Token(t)) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .map_err(|source| ApiClientError::Unreachable {
                url: url.to_string(),
                source,
            })?;
        let status = resp.status();
        resp.json::<Health>()
            .await
            .map_err(|e| ApiClientError::Unexpected {
                method: Method::GET,
                path: "/health".into(),
                reason: format!("HTTP {status}: {e}"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked() {
        for bad in ["ftp://host", "localhost:8000", "http://", "mailto:x@y"] {
            let e = ApiClient::new(bad).unwrap_err();
            assert!(matches!(e, ApiClientError::InvalidUrl { .. }), "{bad}: {e}");
        }
        let e = ApiClient::new("ftp://host").unwrap_err();
        assert!(e.to_string().contains("only http:// and https://"), "{e}");
        ApiClient::new("https://api.example.com/prefix/").unwrap();
    }

    #[test]
    fn segments_are_encoded_under_the_prefix() {
        let c = ApiClient::new("http://h:1/prefix/").unwrap();
        let url = c.url(&["api", "v1", "tasks", "a/b c?", "status"]);
        assert_eq!(
            url.as_str(),
            "http://h:1/prefix/api/v1/tasks/a%2Fb%20c%3F/status"
        );
        let c = ApiClient::new("http://h:1").unwrap();
        assert_eq!(c.url(&["health"]).as_str(), "http://h:1/health");
    }

    #[test]
    fn final_states() {
        for s in ["SUCCESS", "FAILURE", "REVOKED", "REJECTED"] {
            assert!(is_final(s));
        }
        for s in ["PENDING", "STARTED", "RETRY"] {
            assert!(!is_final(s));
        }
    }
}
