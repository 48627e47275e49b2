//! The HTTP API as a library: its router served in process on a real Redis (broker,
//! results, memory store and task log), driven by its typed client; its OpenAPI
//! document checked against the routes it serves; the router mounted under a prefix.

use std::sync::Arc;
use std::time::Duration;

use hippo_memory_tasks::api::client::{ApiClient, ApiClientError, Submission};
use hippo_memory_tasks::api::task_log::{RedisTaskLog, TaskLog};
use hippo_memory_tasks::api::wire::{
    ConsolidationRequest, DeduplicationRequest, MemoryRequest, MigrateRequest, OptionalUserRequest,
    RuleRequest, SummarizationRequest, UserRequest,
};
use hippo_memory_tasks::api::{ApiState, openapi, router};
use hippo_memory_tasks::embed::{EmbedderRegistry, HashEmbedder};
use hippo_memory_tasks::model::MigrationStatus;
use hippo_memory_tasks::store::{InMemoryStore, MemoryStore, RedisStore, RedisStoreConfig};
use hippo_memory_tasks::tasks::{MemoryServices, register_all};
use hippo_queue_core::App;
use hippo_queue_core::beat::BeatStore;
use hippo_queue_core::testing::test_worker;
use hippo_queue_redis::test_server::RedisServer;
use hippo_queue_redis::{RedisBackend, RedisConfig};
use reqwest::StatusCode;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// Serves `app` on a free loopback port; returns its base URL.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn api_status(e: &ApiClientError) -> Option<StatusCode> {
    e.status()
}

/// Submits, follows to SUCCESS, and returns the result.
async fn succeeds(client: &ApiClient, s: Submission) -> Value {
    let Submission::Queued(q) = &s else {
        panic!("expected 202, got {s:?}");
    };
    assert_eq!(q.status, "PENDING");
    let done = client.follow(&q.task_id, WAIT, |_| {}).await.unwrap();
    assert_eq!(done.state, "SUCCESS", "{done:?}");
    done.result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_through_the_typed_client_on_redis() {
    let server = RedisServer::start();
    let queue = RedisBackend::connect(RedisConfig::new(server.url(1)).results_url(server.url(2)))
        .await
        .unwrap();
    let app = App::builder()
        .broker(queue.clone())
        .backend(queue.clone())
        .router(hippo_memory_tasks::router())
        .build();
    let store = RedisStore::connect(RedisStoreConfig::new(server.url(0)))
        .await
        .unwrap();
    let store: Arc<dyn MemoryStore> = Arc::new(store);
    let embedders = EmbedderRegistry::new(Arc::new(HashEmbedder::new("hippo-hash-384-v1", 384)))
        .with(Arc::new(HashEmbedder::new("hippo-hash-384-v2", 384)));
    register_all(
        &app,
        &MemoryServices::new(store.clone()).embedders(embedders),
    );
    let worker = test_worker(&app).start().await.unwrap();
    let log = RedisTaskLog::connect(&server.url(2), Duration::from_secs(600))
        .await
        .unwrap()
        .beat(Arc::new(queue.clone()));
    let state = ApiState::builder(app.clone(), store.clone())
        .task_log(Arc::new(log))
        .model("hippo-hash-384-v2", 384)
        .mode("redis")
        .max_page(2)
        .build();
    let url = serve(router(state)).await;
    let client = ApiClient::new(&url).unwrap();

    // health
    let h = client.health().await.unwrap();
    assert_eq!((h.status.as_str(), h.mode.as_str()), ("ok", "redis"));
    assert!(h.workers >= 1, "{h:?}");

    // memories: add, page, read
    for text in [
        "Dana borrowed the blue bicycle",
        "dana borrowed the blue bicycle!",
        "Dana plays chess",
    ] {
        let m = client
            .add_memory(&MemoryRequest::new("dana", text))
            .await
            .unwrap();
        assert_eq!(m.embedding, None);
    }
    let first = client.memories("dana", Some(2), None).await.unwrap();
    assert_eq!((first.total, first.memories.len()), (3, 2));
    let cursor = first.next_cursor.clone().expect("a second page");
    let second = client
        .memories("dana", Some(2), Some(&cursor))
        .await
        .unwrap();
    assert_eq!(second.memories.len(), 1);
    let e = client.memories("dana", Some(3), None).await.unwrap_err();
    assert_eq!(
        api_status(&e),
        Some(StatusCode::UNPROCESSABLE_ENTITY),
        "{e}"
    );
    let one = &first.memories[0];
    assert_eq!(client.memory("dana", &one.id).await.unwrap().text, one.text);

    // the six task submissions, each followed to SUCCESS
    let r = succeeds(
        &client,
        client
            .deduplication(&DeduplicationRequest::new("dana"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r["duplicates_merged"], 1, "{r}");
    succeeds(
        &client,
        client
            .consolidation(&ConsolidationRequest::new("dana"))
            .await
            .unwrap(),
    )
    .await;
    succeeds(
        &client,
        client
            .health_check(&OptionalUserRequest::new(None))
            .await
            .unwrap(),
    )
    .await;
    succeeds(
        &client,
        client
            .summarization(&SummarizationRequest::new("dana"))
            .await
            .unwrap(),
    )
    .await;
    succeeds(
        &client,
        client.compression(&UserRequest::new("dana")).await.unwrap(),
    )
    .await;
    succeeds(
        &client,
        client
            .expiration(&OptionalUserRequest::new(Some("dana".into())))
            .await
            .unwrap(),
    )
    .await;

    // "async": false answers with the finished task
    let mut sync = OptionalUserRequest::new(Some("dana".into()));
    sync.run_async = false;
    match client.health_check(&sync).await.unwrap() {
        Submission::Finished(st) => assert_eq!(st.state, "SUCCESS", "{st:?}"),
        other => panic!("expected the finished task, got {other:?}"),
    }

    // unknown users, tasks and bad fields are named
    let e = client
        .deduplication(&DeduplicationRequest::new("nobody"))
        .await
        .unwrap_err();
    assert_eq!(api_status(&e), Some(StatusCode::NOT_FOUND));
    assert!(e.to_string().contains("unknown user \"nobody\""), "{e}");
    let mut bad = DeduplicationRequest::new("dana");
    bad.similarity_threshold = Some(1.5);
    let e = client.deduplication(&bad).await.unwrap_err();
    assert_eq!(api_status(&e), Some(StatusCode::UNPROCESSABLE_ENTITY));
    let e = client.task_status("never-sent").await.unwrap_err();
    assert_eq!(api_status(&e), Some(StatusCode::NOT_FOUND));
    let e = client.revoke("never-sent", true).await.unwrap_err();
    assert_eq!(api_status(&e), Some(StatusCode::NOT_FOUND));

    // revocation of a submitted task
    let s = client.compression(&UserRequest::new("dana")).await.unwrap();
    let revoked = client.revoke(s.task_id(), false).await.unwrap();
    assert!(revoked.revoked && !revoked.terminate);

    // a periodic tick's id is known once beat has claimed it
    let tick = 1_700_000_000_000u64;
    assert!(queue.claim_tick("dedup-daily", tick).await.unwrap());
    let st = client
        .task_status(&format!("beat:dedup-daily@{tick}"))
        .await
        .unwrap();
    assert_eq!(st.state, "PENDING");

    // procedural rules
    let rule = client
        .add_rule(&RuleRequest::new("dana", "Answer in French"))
        .await
        .unwrap();
    client
        .add_rule(&RuleRequest::new("dana", "answer in french"))
        .await
        .unwrap();
    let rules = client.rules("dana").await.unwrap();
    assert_eq!(rules.total, 2);
    assert!(rules.rules.iter().any(|r| r.id == rule.id));
    succeeds(&client, client.consolidate_rules("dana").await.unwrap()).await;

    // migrations: unknown model, completed, then no cancelling an ended one
    let e = client
        .start_migration(&MigrateRequest::new("nope"))
        .await
        .unwrap_err();
    assert_eq!(api_status(&e), Some(StatusCode::UNPROCESSABLE_ENTITY));
    assert!(e.to_string().contains("hippo-hash-384-v2 (384)"), "{e}");
    let started = client
        .start_migration(&MigrateRequest::new("hippo-hash-384-v2"))
        .await
        .unwrap();
    assert_eq!(started.record.new_dimension, 384);
    let m = client
        .follow_migration(&started.migration_id, WAIT, |_| {})
        .await
        .unwrap();
    assert_eq!(m.status, MigrationStatus::Completed, "{m:?}");
    let e = client
        .cancel_migration(&started.migration_id)
        .await
        .unwrap_err();
    assert_eq!(api_status(&e), Some(StatusCode::CONFLICT));
    let e = client.migration("mig_none").await.unwrap_err();
    assert_eq!(api_status(&e), Some(StatusCode::NOT_FOUND));

    // deletion (of a memory no task has merged or archived)
    let kayak = MemoryRequest::new("dana", "Dana owns a red kayak");
    let kayak = client.add_memory(&kayak).await.unwrap();
    let gone = client.delete_memory("dana", &kayak.id).await.unwrap();
    assert!(gone.deleted);
    let e = client.delete_memory("dana", &kayak.id).await.unwrap_err();
    assert_eq!(api_status(&e), Some(StatusCode::NOT_FOUND));

    // another API process (a restart) knows the ids this one recorded, before they
    // have a result
    let first_log = RedisTaskLog::connect(&server.url(2), Duration::from_secs(600))
        .await
        .unwrap();
    first_log
        .record("queued-elsewhere", "compression_task")
        .await
        .unwrap();
    let again = RedisTaskLog::connect(&server.url(2), Duration::from_secs(600))
        .await
        .unwrap();
    let other = ApiState::builder(app.clone(), store.clone())
        .task_log(Arc::new(again))
        .build();
    let other = ApiClient::new(&serve(router(other)).await).unwrap();
    let st = other.task_status("queued-elsewhere").await.unwrap();
    assert_eq!(st.state, "PENDING");
    let e = other.task_status("never-sent").await.unwrap_err();
    assert_eq!(api_status(&e), Some(StatusCode::NOT_FOUND));
    // and the answer to a finished one does not need the log
    let st = other.task_status(s.task_id()).await.unwrap();
    assert!(
        ["SUCCESS", "REVOKED"].contains(&st.state.as_str()),
        "{st:?}"
    );

    worker.shutdown().await;
}

#[tokio::test]
async fn malformed_requests_get_a_json_error_naming_the_problem() {
    let app = App::builder().router(hippo_memory_tasks::router()).build();
    let state = ApiState::builder(app, Arc::new(InMemoryStore::new())).build();
    let url = serve(router(state)).await;
    let http = reqwest::Client::new();
    let cases: [(reqwest::Method, &str, &str, StatusCode, &str); 6] = [
        (
            reqwest::Method::POST,
            "/api/v1/tasks/deduplication",
            "{not json",
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/tasks/deduplication",
            r#"{"user_id": 5}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid type",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/tasks/deduplication",
            "{}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "user_id in the body is required",
        ),
        (
            reqwest::Method::POST,
            "/v1/memories",
            r#"{"user_id": "u", "text": "x", "ttl_days": 1e300}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "ttl_days",
        ),
        (
            reqwest::Method::PUT,
            "/v1/memories",
            "",
            StatusCode::METHOD_NOT_ALLOWED,
            "PUT is not allowed on /v1/memories",
        ),
        (
            reqwest::Method::GET,
            "/api/v2/nothing",
            "",
            StatusCode::NOT_FOUND,
            "no such endpoint",
        ),
    ];
    for (method, path, body, status, words) in cases {
        let resp = http
            .request(method.clone(), format!("{url}{path}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{method} {path} {body}");
        let v: Value = resp.json().await.unwrap();
        let error = v["error"].as_str().unwrap_or_default();
        assert!(error.contains(words), "{method} {path}: {v}");
    }
    let resp = http
        .get(format!("{url}/v1/memories?user_id=u&limit=%ZZ"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("limit must be"),
        "{v}"
    );
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_served() {
    let doc = serde_json::to_value(openapi()).unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let paths = doc["paths"].as_object().unwrap();
    let expected = [
        ("/api/v1/tasks/deduplication", "post"),
        ("/api/v1/tasks/consolidation", "post"),
        ("/api/v1/tasks/health-check", "post"),
        ("/api/v1/tasks/summarization", "post"),
        ("/api/v1/tasks/compression", "post"),
        ("/api/v1/tasks/expiration", "post"),
        ("/api/v1/tasks/{task_id}/status", "get"),
        ("/api/v1/tasks/{task_id}", "delete"),
        ("/v1/admin/embeddings/migrate", "post"),
        ("/v1/admin/embeddings/migration/{id}", "get"),
        ("/v1/admin/embeddings/migration/{id}/cancel", "post"),
        ("/v1/procedural/consolidate", "post"),
        ("/v1/procedural/rules", "post"),
        ("/v1/procedural/rules", "get"),
        ("/v1/memories", "post"),
        ("/v1/memories", "get"),
        ("/v1/memories/{id}", "get"),
        ("/v1/memories/{id}", "delete"),
        ("/health", "get"),
        ("/openapi.json", "get"),
    ];
    let operations: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        operations,
        expected.len(),
        "{}",
        serde_json::to_string_pretty(paths).unwrap()
    );
    // each documented operation is served (a 404 would be the fallback's answer)
    let app = App::builder().router(hippo_memory_tasks::router()).build();
    let url = serve(router(
        ApiState::builder(app, Arc::new(InMemoryStore::new())).build(),
    ))
    .await;
    let http = reqwest::Client::new();
    for (path, method) in expected {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} is not documented"
        );
        let concrete = path.replace("{task_id}", "t").replace("{id}", "m");
        let m: reqwest::Method = method.to_uppercase().parse().unwrap();
        let resp = http
            .request(m, format!("{url}{concrete}"))
            .send()
            .await
            .unwrap();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let fallback = body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("no such endpoint"));
        assert!(!fallback, "{method} {path} is documented but not served");
    }
    // every schema a path refers to is defined
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = r.split('"').next().unwrap();
        assert!(
            schemas.contains_key(name),
            "{name} is referred to but not defined"
        );
    }
    for name in [
        "DeduplicationRequest",
        "Submitted",
        "TaskStatus",
        "Memory",
        "Migration",
        "ErrorBody",
    ] {
        assert!(schemas.contains_key(name), "{name} missing");
    }
    // the request schemas refuse unknown fields, as the handlers do
    assert_eq!(
        schemas["DeduplicationRequest"]["additionalProperties"],
        false
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_mounts_it_under_a_prefix() {
    let store = Arc::new(InMemoryStore::new());
    let app = App::builder().router(hippo_memory_tasks::router()).build();
    register_all(&app, &MemoryServices::new(store.clone()));
    let worker = test_worker(&app).start().await.unwrap();
    let api = router(ApiState::builder(app, store).build());
    let host = axum::Router::new()
        .route("/", axum::routing::get(|| async { "the host's own page" }))
        .nest("/memory", api);
    let url = serve(host).await;
    let client = ApiClient::new(&format!("{url}/memory/")).unwrap();
    client
        .add_memory(&MemoryRequest::new("u", "Likes jazz"))
        .await
        .unwrap();
    succeeds(
        &client,
        client
            .health_check(&OptionalUserRequest::new(Some("u".into())))
            .await
            .unwrap(),
    )
    .await;
    let page = reqwest::get(format!("{url}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(page, "the host's own page");
    worker.shutdown().await;
}

#[tokio::test]
async fn tokens_hosts_content_type_limits_and_timeouts_are_enforced() {
    use hippo_memory_tasks::api::serve::{ServeOptions, serve as serve_with};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let token = "s3cret-token-0123456789";
    let app = App::builder().router(hippo_memory_tasks::router()).build();
    let state = ApiState::builder(app, Arc::new(InMemoryStore::new()))
        .bearer_tokens([token])
        .unwrap()
        .allowed_hosts(["127.0.0.1", "localhost"])
        .body_limit(1024)
        .body_timeout(Duration::from_millis(500))
        .build();
    assert!(!format!("{state:?}").contains(token), "{state:?}");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let url = format!("http://{addr}");
    let options = ServeOptions::default().header_timeout(Duration::from_millis(500));
    tokio::spawn(serve_with(
        listener,
        router(state),
        options,
        std::future::pending(),
    ));
    let http = reqwest::Client::new();
    let error = |v: &Value| v["error"].as_str().unwrap_or_default().to_string();

    // 401 without a token or with a wrong one, for every route
    for auth in [
        None,
        Some("Bearer wrong-token-0123456789"),
        Some("Basic eDp5"),
    ] {
        for path in ["/health", "/openapi.json", "/v1/memories?user_id=u"] {
            let mut req = http.get(format!("{url}{path}"));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{path} {auth:?}");
            assert_eq!(
                resp.headers()["www-authenticate"],
                "Bearer realm=\"hippo-memory\""
            );
            let v: Value = resp.json().await.unwrap();
            assert!(error(&v).contains("Bearer"), "{v}");
        }
    }
    // the typed client with the token gets through
    let client = ApiClient::new(&url).unwrap().bearer_token(token);
    assert!(!format!("{client:?}").contains(token));
    client
        .add_memory(&MemoryRequest::new("u", "Likes jazz"))
        .await
        .unwrap();
    let anonymous = ApiClient::new(&url).unwrap();
    let e = anonymous
        .add_memory(&MemoryRequest::new("u", "x"))
        .await
        .unwrap_err();
    assert_eq!(api_status(&e), Some(StatusCode::UNAUTHORIZED), "{e}");

    // a Host not on the list (DNS rebinding): 400
    let resp = http
        .get(format!("{url}/health"))
        .header("host", format!("attacker.example:{}", addr.port()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: Value = resp.json().await.unwrap();
    assert!(error(&v).contains("attacker.example"), "{v}");

    // a body that is not JSON: 415; over the limit: 413
    let post = |ct: &'static str, body: String| {
        http.post(format!("{url}/v1/memories"))
            .bearer_auth(token)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let resp = post("text/plain", r#"{"user_id":"u","text":"x"}"#.into())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let v: Value = resp.json().await.unwrap();
    assert!(error(&v).contains("text/plain"), "{v}");
    let big = format!(r#"{{"user_id":"u","text":"{}"}}"#, "x".repeat(2000));
    let resp = post("application/json", big).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let v: Value = resp.json().await.unwrap();
    assert!(error(&v).contains("1024 bytes"), "{v}");

    // slowloris: headers never finished, the connection is closed after the header
    // timeout; a body that never comes gets a 408
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was still open after 5 s");
    let mut trickle = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/memories HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    trickle.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), trickle.read_to_end(&mut buf)).await;
    let answer = String::from_utf8_lossy(&buf);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}
