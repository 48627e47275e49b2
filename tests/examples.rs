//! The example programs, run as a user runs them: the embedded demos to completion,
//! and the worker, beat and api as separate processes on a real Redis, driven with
//! the guide's curl commands.
//!
//! The examples are built with `cargo build --examples` first (a no-op when they are
//! up to date). `curl` and `redis-server` must be on PATH.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hippo_queue::beat::BeatStore;
use hippo_queue::control::Command as ControlCommand;
use hippo_queue::redis::test_server::RedisServer;
use hippo_queue::redis::{RedisBackend, RedisConfig};
use hippo_queue::{App, Router};
use serde_json::Value;

// --- Locating and running the examples ---------------------------------------------------

/// `target/<profile>/examples`, built once per test run.
fn examples_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // This test binary is target/<profile>/deps/examples-<hash>.
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("target/<profile>")
            .to_path_buf();
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--examples", "--quiet"])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build --examples");
        assert!(status.success(), "cargo build --examples failed");
        profile_dir.join("examples")
    })
}

fn example(name: &str) -> Command {
    let path = examples_dir().join(name);
    assert!(path.exists(), "{} is missing", path.display());
    let mut cmd = Command::new(path);
    // Nothing from the caller's environment decides where the examples connect.
    for var in [
        "CELERY_BROKER_URL",
        "CELERY_RESULT_BACKEND",
        "MEMORY_STORE_URL",
        "HIPPO_QUEUE_PRESET",
        "API_PORT",
        "API_HOST",
        "HIPPO_API_URL",
        "EMBEDDING_MODEL",
        "EMBEDDING_LATENCY_MS",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs a command to completion within `limit`.
fn run_within(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "still running after {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A long-running example, its stderr collected into a file; killed on drop.
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc { name, child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    fn wait_for_log(&mut self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.log().contains(needle) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited with {status}:\n{}", self.name, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "{} did not log {needle:?} within {limit:?}:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit; asserts it exited with 0.
    fn expect_clean_exit(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(
                    status.success(),
                    "{} exited with {status}:\n{}",
                    self.name,
                    self.log()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop within {limit:?}:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the api (with `--port 0`) and returns it with its base URL.
fn start_api(mut cmd: Command, log: PathBuf) -> (Proc, String) {
    cmd.args(["--port", "0"]);
    let mut p = Proc::spawn("api", cmd, log);
    let stdout = p.child.stdout.take().expect("api stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the api's address");
    let url = line
        .trim()
        .strip_prefix("api listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}:\n{}", p.log()))
        .to_string();
    (p, url)
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hippo-examples-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

// --- curl ------------------------------------------------------------------------------

/// Runs a shell command (a curl line from the guide) and parses what it prints as
/// JSON.
fn sh_json(command: &str) -> Value {
    let out = Command::new("sh")
        .args(["-c", command])
        .output()
        .expect("run sh");
    assert!(out.status.success(), "{command}\n{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{command}\nnot JSON ({e}): {}", text(&out.stdout)))
}

/// Runs curl with `args`; returns the status code and the JSON body.
fn curl(args: &[&str]) -> (u16, Value) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    let body = text(&out.stdout);
    let (json, code) = body.rsplit_once('\n').expect("status line");
    let code: u16 = code.trim().parse().unwrap_or(0);
    let value = if json.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("curl {args:?}: not JSON ({e}): {json}"))
    };
    (code, value)
}

/// Polls a task's status with curl until it is ready; returns the status.
fn wait_task(api: &str, task_id: &str, limit: Duration) -> Value {
    let url = format!("{api}/api/v1/tasks/{task_id}/status");
    let deadline = Instant::now() + limit;
    loop {
        let (code, v) = curl(&[&url]);
        assert_eq!(code, 200, "{url}: {v}");
        let state = v["state"].as_str().unwrap_or("");
        if matches!(state, "SUCCESS" | "FAILURE" | "REVOKED" | "REJECTED") {
            return v;
        }
        assert!(Instant::now() < deadline, "task {task_id} still {state}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts an error answer: the code and a JSON error mentioning `what`.
fn assert_error(res: (u16, Value), code: u16, what: &str) {
    assert_eq!(res.0, code, "{}", res.1);
    let msg = res.1["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {}", res.1));
    assert!(msg.contains(what), "{msg:?} does not mention {what:?}");
}

// --- The embedded programs --------------------------------------------------------------------

#[test]
fn demo_runs_every_memory_task() {
    let out = run_within(example("demo"), Duration::from_secs(60));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    for task in [
        "health_check_task",
        "deduplication_task",
        "consolidation_task",
        "auto_summarization_task",
        "compression_task",
        "expire_memories_task",
        "consolidate_procedural_rules",
        "migrate_embeddings_task",
    ] {
        assert!(stdout.contains(task), "{task} missing from:\n{stdout}");
    }
    // The lexical model merges the two near copies; all-MiniLM-L6-v2 (used when
    // scripts/fetch-model.sh has run, as in CI) also the paraphrase.
    let merged = if stdout.contains("embedder: hippo-hash-384-v1") {
        r#""duplicates_found":2,"duplicates_merged":2"#
    } else {
        assert!(
            stdout.contains("embedder: sentence-transformers/all-MiniLM-L6-v2"),
            "{stdout}"
        );
        r#""duplicates_found":3,"duplicates_merged":3"#
    };
    assert!(stdout.contains(merged), "{stdout}");
    assert!(stdout.contains("expired memories deleted: 2"), "{stdout}");
    assert!(stdout.contains("9 tasks succeeded, 0 failed"), "{stdout}");
}

#[test]
fn tour_runs_to_completion() {
    let out = run_within(example("tour"), Duration::from_secs(60));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("shut down:"), "{stdout}");
}

#[test]
fn client_help_and_usage_errors() {
    let out = run_within(
        {
            let mut c = example("client");
            c.arg("--help");
            c
        },
        Duration::from_secs(10),
    );
    assert!(out.status.success());
    let help = text(&out.stdout);
    for cmd in [
        "deduplication",
        "health-check",
        "migrate",
        "status",
        "cancel",
    ] {
        assert!(help.contains(cmd), "{help}");
    }
    let mut bad = example("client");
    bad.args(["--api-url", "ftp://example.invalid", "status", "x"]);
    let out = run_within(bad, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("only http://"));
}

#[test]
fn processes_without_a_broker_say_what_to_set() {
    for name in ["worker", "beat", "api"] {
        let out = run_within(example(name), Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = text(&out.stderr);
        assert!(
            err.contains("CELERY_BROKER_URL is not set"),
            "{name}: {err}"
        );
        assert!(err.contains("redis://localhost:6379/1"), "{name}: {err}");
    }
    // beat --dry-run lists the entries from the guide's variables, no Redis needed
    let mut beat = example("beat");
    beat.args(["--dry-run"])
        .env("AUTO_CONSOLIDATION_ENABLED", "true");
    let out = run_within(beat, Duration::from_secs(10));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list = text(&out.stdout);
    for entry in [
        "auto-deduplication",
        "auto-consolidation",
        "expire-memories",
        "health-check",
    ] {
        assert!(list.contains(entry), "{list}");
    }
    let mut beat = example("beat");
    beat.args(["--dry-run"]).env("DEDUP_INTERVAL_HOURS", "0");
    let out = run_within(beat, Duration::from_secs(10));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("DEDUP_INTERVAL_HOURS"));
}

/// A password in the broker URL is never printed: not when the server is unreachable,
/// not when the URL is invalid, not in the startup logs.
#[test]
fn processes_never_print_the_broker_password() {
    for url in [
        "redis://u:s3cret@nohost:1/1",
        "redis+unix:///nonexistent/r.sock?pass=s3cret",
        "amqp://u:s3cret@nohost:1//",
    ] {
        for name in ["worker", "beat", "api"] {
            let mut cmd = example(name);
            cmd.env("CELERY_BROKER_URL", url)
                .env("CELERY_BROKER_CONNECTION_MAX_RETRIES", "1")
                .env("RUST_LOG", "debug");
            let out = run_within(cmd, Duration::from_secs(30));
            let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
            assert!(!out.status.success(), "{name} {url}: {all}");
            assert!(!all.contains("s3cret"), "{name} {url}: {all}");
        }
    }
}

/// The guide's REST calls on the embedded API: no Redis, one process.
#[test]
fn embedded_api_answers_the_guide_curl_examples() {
    let dir = temp_dir("embedded");
    let mut cmd = example("api");
    cmd.args(["--embedded", "--load-samples"]);
    let (mut api, url) = start_api(cmd, dir.join("api.log"));
    let submitted = sh_json(&GUIDE_DEDUP.replace("http://localhost:8000", &url));
    assert_eq!(submitted["status"], "PENDING");
    assert_eq!(submitted["queue"], "memory_ops");
    let status = wait_task(
        &url,
        submitted["task_id"].as_str().unwrap(),
        Duration::from_secs(10),
    );
    assert_eq!(status["state"], "SUCCESS", "{status}");
    assert_eq!(status["result"]["duplicates_merged"], 2, "{status}");
    let (code, doc) = curl(&[&format!("{url}/openapi.json")]);
    assert_eq!(code, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/api/v1/tasks/deduplication",
        "/api/v1/tasks/consolidation",
        "/api/v1/tasks/health-check",
        "/api/v1/tasks/summarization",
        "/api/v1/tasks/compression",
        "/api/v1/tasks/expiration",
        "/api/v1/tasks/{task_id}/status",
        "/api/v1/tasks/{task_id}",
        "/v1/admin/embeddings/migrate",
        "/v1/admin/embeddings/migration/{id}",
        "/v1/admin/embeddings/migration/{id}/cancel",
        "/v1/procedural/consolidate",
        "/v1/memories",
        "/v1/memories/{id}",
        "/health",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is not described");
    }
    assert_error(
        curl(&[&format!("{url}/api/v2/nothing")]),
        404,
        "no such endpoint",
    );
    api.signal("INT");
    api.expect_clean_exit(Duration::from_secs(10));
    assert!(api.log().contains("api stopping on SIGINT"));
    let _ = std::fs::remove_dir_all(dir);
}

/// `worker --beat`: a worker and the scheduler in one process, stopped with Ctrl-C.
#[test]
fn worker_with_beat_starts_and_stops_on_sigint() {
    let redis = RedisServer::start();
    let dir = temp_dir("beat-in-worker");
    let mut cmd = example("worker");
    cmd.env("CELERY_BROKER_URL", redis.url(1))
        .env("CELERY_RESULT_BACKEND", redis.url(2))
        .args(["--beat", "--pool", "solo", "--loglevel=info"]);
    let mut worker = Proc::spawn("worker", cmd, dir.join("worker.log"));
    worker.wait_for_log("worker ready", Duration::from_secs(20));
    worker.wait_for_log("became the leader", Duration::from_secs(20));
    worker.signal("INT");
    worker.expect_clean_exit(Duration::from_secs(15));
    let log = worker.log();
    assert!(log.contains("stopping on SIGINT"), "{log}");
    assert!(log.contains("gave the leader lease up"), "{log}");
    let _ = std::fs::remove_dir_all(dir);
}

// --- Three processes on Redis ---------------------------------------------------------------

const GUIDE_DEDUP: &str = r#"curl -X POST http://localhost:8000/api/v1/tasks/deduplication \
  -H "Content-Type: application/json" \
  -d '{
    "user_id": "user123",
    "similarity_threshold": 0.85
  }'"#;

const GUIDE_DEDUP_ASYNC: &str = r#"curl -X POST http://localhost:8000/api/v1/tasks/deduplication \
  -H "Content-Type: application/json" \
  -d '{
    "user_id": "user123",
    "similarity_threshold": 0.85,
    "async": true
  }'"#;

const GUIDE_CONSOLIDATION: &str = r#"curl -X POST http://localhost:8000/api/v1/tasks/consolidation \
  -H "Content-Type: application/json" \
  -d '{
    "user_id": "user123",
    "similarity_threshold": 0.80
  }'"#;

const GUIDE_HEALTH: &str = r#"curl -X POST http://localhost:8000/api/v1/tasks/health-check \
  -H "Content-Type: application/json" \
  -d '{"user_id": "user123"}'"#;

const GUIDE_SUMMARIZATION: &str = r#"curl -X POST http://localhost:8000/api/v1/tasks/summarization \
  -H "Content-Type: application/json" \
  -d '{
    "user_id": "user123",
    "min_age_days": 30
  }'"#;

#[test]
fn worker_beat_and_api_on_redis_follow_the_guide() {
    let started = Instant::now();
    let redis = RedisServer::start();
    let (broker, results) = (redis.url(1), redis.url(2));
    let dir = temp_dir("redis");
    let env = |mut c: Command| {
        c.env("CELERY_BROKER_URL", &broker)
            .env("CELERY_RESULT_BACKEND", &results);
        c
    };

    // The worker: named, so that it can be shut down remotely; every embedding call
    // takes 400 ms, so that a migration runs long enough to be cancelled. The guide's
    // production pool: every task runs in a child process of the worker program.
    let mut cmd = env(example("worker"));
    cmd.args([
        "--loglevel=info",
        "--pool=prefork",
        "--concurrency=4",
        "--hostname=w1@test",
        "--queues=memory_ops,default,background,scheduled",
        "--embedding-latency-ms=400",
        "--max-tasks-per-child=1000",
    ]);
    let mut worker = Proc::spawn("worker", cmd, dir.join("worker.log"));
    // Beat with the guide's schedule and a health check every second (the daily
    // deduplication off, so that a run at midnight cannot change what the test sees).
    let mut cmd = env(example("beat"));
    cmd.args(["--loglevel=info", "--health-interval", "1s"])
        .env("AUTO_DEDUP_ENABLED", "false");
    let mut beat = Proc::spawn("beat", cmd, dir.join("beat.log"));
    let mut cmd = env(example("api"));
    cmd.args(["--load-samples"]);
    let (mut api, url) = start_api(cmd, dir.join("api.log"));
    worker.wait_for_log("worker ready", Duration::from_secs(20));
    assert!(worker.log().contains("pool=Process"), "{}", worker.log());
    beat.wait_for_log("became the leader", Duration::from_secs(20));
    let guide = |cmd: &str| sh_json(&cmd.replace("http://localhost:8000", &url));
    let wait = |id: &Value| wait_task(&url, id.as_str().expect("task_id"), Duration::from_secs(30));

    let (code, health) = curl(&[&format!("{url}/health")]);
    assert_eq!(code, 200, "{health}");
    assert_eq!(health["workers"], 1, "{health}");

    // Submit, then status until SUCCESS: the guide's calls, verbatim.
    let dedup = guide(GUIDE_DEDUP);
    assert_eq!(dedup["status"], "PENDING");
    assert_eq!(dedup["queue"], "memory_ops");
    let status = wait(&dedup["task_id"]);
    assert_eq!(status["state"], "SUCCESS", "{status}");
    assert_eq!(status["traceback"], Value::Null);
    assert_eq!(status["result"]["duplicates_found"], 2, "{status}");
    assert_eq!(status["result"]["duplicates_merged"], 2, "{status}");
    // reported as it is (the merged copies move into the survivors' history)
    assert!(status["result"]["space_saved_mb"].as_f64().is_some());
    let again = guide(GUIDE_DEDUP_ASYNC);
    assert_eq!(wait(&again["task_id"])["result"]["duplicates_found"], 0);
    let consolidation = guide(GUIDE_CONSOLIDATION);
    let status = wait(&consolidation["task_id"]);
    assert_eq!(status["result"]["memories_consolidated"], 2, "{status}");
    let health_task = guide(GUIDE_HEALTH);
    assert_eq!(health_task["queue"], "background");
    let status = wait(&health_task["task_id"]);
    assert_eq!(status["result"]["report"]["user_id"], "user123", "{status}");
    let summary = guide(GUIDE_SUMMARIZATION);
    let status = wait(&summary["task_id"]);
    assert_eq!(status["result"]["summaries_created"], 1, "{status}");

    // Procedural consolidation: POST /v1/procedural/consolidate?user_id=...
    let (code, proc_task) = curl(&[
        "-X",
        "POST",
        &format!("{url}/v1/procedural/consolidate?user_id=user123"),
    ]);
    assert_eq!(code, 202, "{proc_task}");
    assert_eq!(proc_task["queue"], "background");
    let status = wait(&proc_task["task_id"]);
    assert_eq!(status["result"]["user_id"], "user123", "{status}");
    assert_eq!(status["result"]["consolidated_count"], 2, "{status}");

    // Bad requests.
    let dedup_url = format!("{url}/api/v1/tasks/deduplication");
    let json = ["-H", "Content-Type: application/json"];
    let post = |body: &str| {
        let mut a = vec!["-X", "POST", dedup_url.as_str()];
        a.extend(json);
        a.extend(["-d", body]);
        curl(&a)
    };
    assert_error(post("{\"user_id\": "), 400, "not valid JSON");
    assert_error(post("{\"similarity_threshold\": 0.85}"), 422, "user_id");
    assert_error(
        post("{\"user_id\": \"user123\", \"similarity_threshold\": 1.5}"),
        422,
        "between 0 and 1",
    );
    assert_error(
        post("{\"user_id\": \"user123\", \"similarity_treshold\": 0.5}"),
        422,
        "similarity_treshold",
    );
    assert_error(post("{\"user_id\": \"nobody\"}"), 404, "unknown user");
    assert_error(
        curl(&[&format!("{url}/api/v1/tasks/abc-123-def/status")]),
        404,
        "unknown task id",
    );
    assert_error(
        curl(&["-X", "POST", &format!("{url}/v1/procedural/consolidate")]),
        422,
        "user_id",
    );
    assert_error(
        curl(&[&format!("{url}/v1/admin/embeddings/migration/mig_nope")]),
        404,
        "no migration",
    );

    // Memories: add, list page by page, delete.
    let mut add = vec![
        "-X".to_string(),
        "POST".into(),
        format!("{url}/v1/memories"),
    ];
    for i in 0..100 {
        if i > 0 {
            add.extend([
                "--next".into(),
                "-X".into(),
                "POST".into(),
                format!("{url}/v1/memories"),
            ]);
        }
        let body = format!(
            "{{\"user_id\": \"bulk\", \"text\": \"Bulk memory {i} about topic {}\", \"type\": \"fact\", \"tags\": [\"bulk\"]}}",
            i * 7919 % 1000
        );
        add.extend([
            "-H".into(),
            "Content-Type: application/json".into(),
            "-o".into(),
            "/dev/null".into(),
            "-d".into(),
            body,
        ]);
    }
    let status = Command::new("curl")
        .arg("-sf")
        .args(&add)
        .status()
        .expect("curl");
    assert!(status.success());
    let (code, page) = curl(&[&format!("{url}/v1/memories?user_id=bulk&limit=60")]);
    assert_eq!(code, 200, "{page}");
    assert_eq!(page["total"], 100);
    assert_eq!(page["memories"].as_array().map(Vec::len), Some(60));
    let cursor = page["next_cursor"]
        .as_str()
        .expect("next_cursor")
        .to_string();
    let (_, page2) = curl(&[&format!(
        "{url}/v1/memories?user_id=bulk&limit=60&cursor={cursor}"
    )]);
    assert_eq!(page2["memories"].as_array().map(Vec::len), Some(40));
    assert_eq!(page2["next_cursor"], Value::Null);
    let (code, extra) = curl(&[
        "-X",
        "POST",
        &format!("{url}/v1/memories"),
        "-H",
        "Content-Type: application/json",
        "-d",
        "{\"user_id\": \"carol\", \"text\": \"Likes jazz\", \"type\": \"preference\"}",
    ]);
    assert_eq!(code, 201, "{extra}");
    let one = format!(
        "{url}/v1/memories/{}?user_id=carol",
        extra["id"].as_str().unwrap()
    );
    assert_eq!(curl(&[&one]).1["text"], "Likes jazz");
    assert_eq!(curl(&["-X", "DELETE", &one]).0, 200);
    assert_error(curl(&["-X", "DELETE", &one]), 404, "no memory");
    assert_error(
        curl(&[
            "-X",
            "POST",
            &format!("{url}/v1/memories"),
            "-H",
            "Content-Type: application/json",
            "-d",
            "{\"user_id\": \"carol\", \"text\": \"x\", \"type\": \"opinion\"}",
        ]),
        422,
        "unknown memory type",
    );
    // curl -d without a JSON content type sends a form: 415
    assert_error(
        curl(&[
            "-X",
            "POST",
            &format!("{url}/v1/memories"),
            "-d",
            "{\"user_id\": \"carol\", \"text\": \"x\"}",
        ]),
        415,
        "Content-Type: application/json",
    );

    // Revoke a running task: deduplication of 100 memories waits 400 ms on the model.
    let (_, running) = post("{\"user_id\": \"bulk\"}");
    std::thread::sleep(Duration::from_millis(150));
    let (code, revoked) = curl(&[
        "-X",
        "DELETE",
        &format!(
            "{url}/api/v1/tasks/{}",
            running["task_id"].as_str().unwrap()
        ),
    ]);
    assert_eq!(code, 200, "{revoked}");
    assert_eq!(wait(&running["task_id"])["state"], "REVOKED");

    // Cancel a running migration: 4 batches of 32, 400 ms each.
    let (code, mig) = curl(&[
        "-X",
        "POST",
        &format!("{url}/v1/admin/embeddings/migrate"),
        "-H",
        "Content-Type: application/json",
        "-d",
        "{\"new_model\": \"hippo-hash-384-v2\", \"new_dimension\": 384}",
    ]);
    assert_eq!(code, 202, "{mig}");
    let mig_url = format!(
        "{url}/v1/admin/embeddings/migration/{}",
        mig["migration_id"].as_str().unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while curl(&[&mig_url]).1["status"] != "in_progress" {
        assert!(Instant::now() < deadline, "the migration did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (code, cancelling) = curl(&["-X", "POST", &format!("{mig_url}/cancel")]);
    assert_eq!(code, 200, "{cancelling}");
    assert_eq!(cancelling["cancel_requested"], true, "{cancelling}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let record = loop {
        let (_, r) = curl(&[&mig_url]);
        if r["status"] != "in_progress" {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the migration was not cancelled: {r}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(record["status"], "cancelled", "{record}");
    assert!(
        record["migrated_count"].as_u64().unwrap() < record["total_memories"].as_u64().unwrap(),
        "{record}"
    );
    assert_error(
        curl(&["-X", "POST", &format!("{mig_url}/cancel")]),
        409,
        "already ended",
    );
    let task = wait(&mig["task_id"]);
    assert_eq!(task["result"]["status"], "cancelled", "{task}");

    // The remote client follows a task to the end.
    let mut client = example("client");
    client.args(["--api-url", &url, "health-check", "--user-id", "user123"]);
    let out = run_within(client, Duration::from_secs(30));
    let printed = text(&out.stdout);
    assert!(out.status.success(), "{printed}{}", text(&out.stderr));
    assert!(
        printed.contains("Task submitted: ") && printed.contains("Status: SUCCESS"),
        "{printed}"
    );

    // Beat sent the health check, and the worker ran it.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (app, last) = rt.block_on(async {
        let backend =
            RedisBackend::connect(RedisConfig::new(broker.clone()).results_url(results.clone()))
                .await
                .expect("connect");
        let last = backend.last_run("health-check").await.expect("last_run");
        let app = App::builder()
            .broker(backend.clone())
            .backend(backend)
            .router(Router::guide_preset())
            .build();
        (app, last)
    });
    let tick = last.expect("beat sent no health check");
    let status = wait(&Value::from(format!("beat:health-check@{tick}")));
    assert_eq!(status["state"], "SUCCESS", "{status}");
    assert!(status["result"]["checks"].is_array(), "{status}");

    // Stop: the worker by a remote shutdown command, beat and api by signals.
    let replies = rt
        .block_on(app.control().call(
            Some(&["w1@test".to_string()]),
            ControlCommand::Shutdown,
            Duration::from_secs(5),
        ))
        .expect("control shutdown");
    assert_eq!(replies.len(), 1);
    worker.expect_clean_exit(Duration::from_secs(15));
    assert!(
        worker
            .log()
            .contains("stopping on a remote shutdown command"),
        "{}",
        worker.log()
    );
    beat.signal("TERM");
    beat.expect_clean_exit(Duration::from_secs(15));
    assert!(beat.log().contains("stopping on SIGTERM"));
    api.signal("TERM");
    api.expect_clean_exit(Duration::from_secs(15));
    assert!(api.log().contains("api stopping on SIGTERM"));
    let _ = std::fs::remove_dir_all(dir);
    eprintln!("three-process flow took {:?}", started.elapsed());
}

// --- The one-concept examples ------------------------------------------------------------

/// Runs an embedded example to completion; returns what it printed.
fn run_embedded(name: &str) -> String {
    let out = run_within(example(name), Duration::from_secs(30));
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "{name}:\n{stdout}\n{}",
        text(&out.stderr)
    );
    stdout
}

fn assert_prints(name: &str, stdout: &str, lines: &[&str]) {
    for line in lines {
        assert!(
            stdout.contains(line),
            "{name} did not print {line:?}:\n{stdout}"
        );
    }
}

#[test]
fn hello_sends_and_gets() {
    let out = run_embedded("hello");
    assert_prints(
        "hello",
        &out,
        &["result: Hello, world!", "state: SUCCESS", "worker stopped"],
    );
}

#[test]
fn retries_and_limits_show_each_outcome() {
    let out = run_embedded("retries_and_limits");
    assert_prints(
        "retries_and_limits",
        &out,
        &[
            r#"fetch(2): SUCCESS "answered on attempt 3""#,
            "caused by: retries exhausted (3 of max_retries=3)",
            r#"crunch(50): SUCCESS"#,
            "SoftTimeLimitExceeded",
            "TimeLimitExceeded: hard time limit",
            "worker: 2 succeeded, 3 failed, 5 retried",
        ],
    );
}

#[test]
fn routing_and_priorities_route_then_order_by_priority() {
    let out = run_embedded("routing_and_priorities");
    assert_prints(
        "routing_and_priorities",
        &out,
        &[
            "refused (no queue is bound to routing key",
            "thumbnail -> cat.png@128px",
        ],
    );
    let ran: Vec<&str> = out.lines().filter(|l| l.contains("(worker)")).collect();
    let position = |what: &str| {
        ran.iter()
            .position(|l| l.contains(what))
            .unwrap_or_else(|| panic!("{what} did not run:\n{out}"))
    };
    // Queue priority first: memory_ops, then default, then background.
    assert!(
        position("key memory.dedup") < position("no options"),
        "{out}"
    );
    assert!(position("no options") < position("urgent"), "{out}");
    // Message priority within background: 9, 6, 3, 0.
    let order = ["urgent", "high", "normal", "low"].map(position);
    assert!(order.is_sorted(), "{out}");
    for (what, queue) in [
        ("key memory.dedup", "memory_ops"),
        ("queue memory_ops", "memory_ops"),
        ("no options", "default"),
        ("key background.cleanup", "background"),
        ("thumbnail cat.png", "background"),
    ] {
        assert!(ran[position(what)].ends_with(queue), "{what}:\n{out}");
    }
}

#[test]
fn call_succeeds_times_out_fails_and_refuses() {
    let out = run_embedded("call");
    assert_prints(
        "call",
        &out,
        &[
            "call divide(84, 2)      -> 42",
            "call_with divide(10, 3) -> 3",
            "timed out after 100ms",
            "FAILURE: ZeroDivisionError: 1 / 0",
            "refused: task audit.log ignores its results",
        ],
    );
}

#[test]
fn remote_control_inspects_and_controls() {
    let out = run_embedded("remote_control");
    assert_prints(
        "remote_control",
        &out,
        &[
            "alpha: Pong",
            "beta: Pong",
            "running demo.sleep",
            "rate limit of demo.sleep set to 5/s",
            "alpha: Ok(\"pool grown to 4\")",
            "alpha: concurrency 4",
            "beta: concurrency 2",
        ],
    );
    let ms: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("6 tasks at 5/s took "))
        .and_then(|l| l.strip_suffix(" ms"))
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no rate-limit timing:\n{out}"));
    assert!(ms >= 800, "6 starts at 5/s took only {ms} ms");
}

/// The Redis pair: a worker process and a producer process on a throw-away Redis.
#[test]
fn redis_producer_and_worker_in_two_processes() {
    let redis = RedisServer::start();
    let dir = temp_dir("redis-pair");
    let mut cmd = example("redis_worker");
    cmd.env("REDIS_URL", redis.url(0));
    let mut worker = Proc::spawn("redis_worker", cmd, dir.join("worker.log"));
    let mut stdout = BufReader::new(worker.child.stdout.take().expect("worker stdout"));
    let mut ready = String::new();
    while !ready.contains(" ready") {
        let mut line = String::new();
        let n = stdout
            .read_line(&mut line)
            .expect("read the worker's output");
        assert!(n > 0, "redis_worker ended early: {ready}\n{}", worker.log());
        ready.push_str(&line);
    }
    assert!(
        ready.contains(&format!("connected to {}", redis.url(0))),
        "{ready}"
    );

    let mut producer = example("redis_producer");
    producer
        .env("REDIS_URL", redis.url(0))
        .args(["hello", "world"]);
    let out = run_within(producer, Duration::from_secs(30));
    let printed = text(&out.stdout);
    assert!(out.status.success(), "{printed}\n{}", text(&out.stderr));
    assert_prints(
        "redis_producer",
        &printed,
        &[
            r#""hello" -> "HELLO" (by worker-"#,
            r#""world" -> "WORLD" (by worker-"#,
        ],
    );

    worker.signal("INT");
    worker.expect_clean_exit(Duration::from_secs(15));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("the worker's output");
    assert_prints(
        "redis_worker",
        &rest,
        &[
            r#"shouting "hello""#,
            r#"shouting "world""#,
            "stopping: 0 reserved messages",
        ],
    );
    let _ = std::fs::remove_dir_all(dir);
}
