//! The installed programs, run as a user runs them: `hippo-memory worker|beat|api`
//! as processes, their help, their refusal without a broker, and a worker and an api
//! serving one of the guide's tasks on a throw-away `redis-server`.
//!
//! `curl` and `redis-server` must be on PATH for the last test.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use hippo_queue_redis::test_server::RedisServer;
use serde_json::Value;

/// `hippo-memory` with nothing from the caller's environment deciding where it
/// connects.
fn program(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hippo-memory"));
    cmd.args(args);
    for var in [
        "CELERY_BROKER_URL",
        "CELERY_RESULT_BACKEND",
        "MEMORY_STORE_URL",
        "HIPPO_QUEUE_PRESET",
        "API_PORT",
        "API_HOST",
        "EMBEDDING_MODEL",
        "EMBEDDING_LATENCY_MS",
        "EMBEDDING_MODEL_PATH",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs a command to completion within `limit`.
fn run_within(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hippo-memory");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "still running after {limit:?}\nstdout:\n{}\nstderr:\n{}",
                text(&out.stdout),
                text(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn help(args: &[&str]) -> String {
    let out = run_within(program(args), Duration::from_secs(10));
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

fn assert_mentions(what: &str, haystack: &str, needles: &[&str]) {
    for n in needles {
        assert!(
            haystack.contains(n),
            "{what} does not mention {n:?}:\n{haystack}"
        );
    }
}

#[test]
fn help_lists_the_programs_and_groups_their_options() {
    let top = help(&["--help"]);
    assert_mentions(
        "hippo-memory --help",
        &top,
        &["worker", "beat", "api", "CELERY_BROKER_URL"],
    );

    let worker = help(&["worker", "--help"]);
    assert_mentions(
        "worker --help",
        &worker,
        &[
            "Usage: hippo-memory worker [OPTIONS]",
            "Worker Options:",
            "Pool Options:",
            "Queue Options:",
            "Embedded Beat Options:",
            "--queues <QUEUES>",
            "--concurrency <N>",
            "--pool <POOL>",
            "[default: async]",
            "--autoscale <MAX,MIN>",
            "--max-tasks-per-child <N>",
            "--max-memory-per-child <KIB>",
            "--beat",
            "CELERY_WORKER_CONCURRENCY",
            "CELERY_WORKER_MAX_TASKS_PER_CHILD",
            "CELERY_BROKER_URL",
        ],
    );

    let beat = help(&["beat", "--help"]);
    assert_mentions(
        "beat --help",
        &beat,
        &[
            "Usage: hippo-memory beat [OPTIONS]",
            "--health-interval <INTERVAL>",
            "[default: 5m]",
            "--dry-run",
            "DEDUP_INTERVAL_HOURS",
        ],
    );

    let api = help(&["api", "--help"]);
    assert_mentions(
        "api --help",
        &api,
        &[
            "Usage: hippo-memory api [OPTIONS]",
            "--port <PORT>",
            "[env: API_PORT=]",
            "[default: 8000]",
            "--host <HOST>",
            "--embedded",
            "--load-samples",
        ],
    );

    // A program is required, and a wrong flag is a usage error (exit 2).
    let out = run_within(program(&[]), Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(2));
    let out = run_within(
        program(&["worker", "--autoscale=3,10"]),
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("MAX,MIN"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn without_a_broker_each_program_says_what_to_set() {
    for name in ["worker", "beat", "api"] {
        let out = run_within(program(&[name]), Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(1), "{name}");
        let err = text(&out.stderr);
        assert!(err.starts_with(&format!("hippo-memory {name}: ")), "{err}");
        assert_mentions(
            name,
            &err,
            &[
                "CELERY_BROKER_URL is not set",
                "export CELERY_BROKER_URL=redis://localhost:6379/1",
            ],
        );
    }
    // A password in the URL is never printed, even when the server is unreachable.
    let mut cmd = program(&["worker"]);
    cmd.env("CELERY_BROKER_URL", "redis://u:s3cret@nohost:1/1")
        .env("CELERY_BROKER_CONNECTION_MAX_RETRIES", "1")
        .env("RUST_LOG", "debug");
    let out = run_within(cmd, Duration::from_secs(30));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{all}");
    assert!(!all.contains("s3cret"), "{all}");
}

/// A long-running program with its stderr in a file; killed on drop.
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

    /// Sends SIGTERM and asserts a clean exit.
    fn terminate(&mut self, limit: Duration) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
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
                "{} did not stop:\n{}",
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
    let value = serde_json::from_str(json).unwrap_or(Value::Null);
    (code, value)
}

#[test]
fn worker_and_api_serve_a_task_on_redis() {
    let redis = RedisServer::start();
    let dir = std::env::temp_dir().join(format!("hippo-memory-programs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let env = |mut c: Command| {
        c.env("CELERY_BROKER_URL", redis.url(1))
            .env("CELERY_RESULT_BACKEND", redis.url(2));
        c
    };

    // The guide's production pool: the task runs in a child of the installed program.
    let cmd = env(program(&[
        "worker",
        "--loglevel=info",
        "--pool=prefork",
        "--concurrency=2",
        "--hostname=w1@programs",
    ]));
    let mut worker = Proc::spawn("worker", cmd, dir.join("worker.log"));
    let cmd = env(program(&["api", "--port", "0", "--load-samples"]));
    let mut api = Proc::spawn("api", cmd, dir.join("api.log"));
    let stdout = api.child.stdout.take().expect("api stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the api's address");
    let url = line
        .trim()
        .strip_prefix("api listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}:\n{}", api.log()))
        .to_string();
    worker.wait_for_log("worker ready", Duration::from_secs(30));
    assert!(worker.log().contains("pool=Process"), "{}", worker.log());

    let (code, submitted) = curl(&[
        "-X",
        "POST",
        &format!("{url}/api/v1/tasks/deduplication"),
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"user_id": "user123", "similarity_threshold": 0.85}"#,
    ]);
    assert!(code == 200 || code == 202, "{code}: {submitted}");
    assert_eq!(submitted["queue"], "memory_ops", "{submitted}");
    let id = submitted["task_id"].as_str().expect("task_id").to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let (code, v) = curl(&[&format!("{url}/api/v1/tasks/{id}/status")]);
        assert_eq!(code, 200, "{v}");
        let state = v["state"].as_str().unwrap_or("").to_string();
        if matches!(
            state.as_str(),
            "SUCCESS" | "FAILURE" | "REVOKED" | "REJECTED"
        ) {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "task {id} still {state}\n{}",
            worker.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status["state"], "SUCCESS", "{status}\n{}", worker.log());
    assert_eq!(status["result"]["duplicates_merged"], 2, "{status}");

    api.terminate(Duration::from_secs(10));
    worker.terminate(Duration::from_secs(40));
    assert!(worker.log().contains("worker stopped"), "{}", worker.log());
    let _ = std::fs::remove_dir_all(&dir);
}
