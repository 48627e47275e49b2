//! A remote client of the API: the guide's `MemoryClient(mode="remote")`. It submits
//! a task over HTTP, then follows its status until it is ready.
//!
//! ```sh
//! cargo run --example client -- deduplication --user-id user123 --similarity-threshold 0.85
//! cargo run --example client -- health-check --user-id user123
//! cargo run --example client -- status <task_id>
//! cargo run --example client -- --api-url http://localhost:8000 migrate --new-model hippo-hash-384-v2
//! ```
//!
//! The Python equivalent:
//!
//! ```python
//! client = MemoryClient(mode="remote", api_url="http://localhost:8000")
//! task_id = client.submit_deduplication_task(user_id="user123")
//! status = client.get_task_status(task_id)
//! ```
//!
//! It speaks plain HTTP/1.1 over a TCP connection (`http://` URLs only), one request
//! per connection. The exit status is 0 when the task succeeded, 1 when it failed or
//! was revoked, 2 on a usage or connection error, 3 when `--timeout` passed first.

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A remote client of the memory tasks API.
#[derive(Debug, Parser)]
#[command(name = "client", version)]
struct Args {
    /// The API's base URL.
    #[arg(long, env = "HIPPO_API_URL", default_value = "http://localhost:8000")]
    api_url: String,
    /// Seconds to follow a task before giving up.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Print the task id and return without following it.
    #[arg(long)]
    no_wait: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Find and merge duplicate memories (submit_deduplication_task).
    Deduplication {
        #[arg(long)]
        user_id: String,
        /// 0..1; the API's default is 0.88.
        #[arg(long)]
        similarity_threshold: Option<f64>,
        /// Report the duplicates without merging them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Consolidate related memories (submit_consolidation_task).
    Consolidation {
        #[arg(long)]
        user_id: String,
        /// 0..1; the API's default is 0.85.
        #[arg(long)]
        similarity_threshold: Option<f64>,
    },
    /// A health report (submit_health_check_task); every user without --user-id.
    HealthCheck {
        #[arg(long)]
        user_id: Option<String>,
    },
    /// Summarise old memories (submit_summarization_task).
    Summarization {
        #[arg(long)]
        user_id: String,
        #[arg(long)]
        min_age_days: Option<u32>,
    },
    /// Compress old memories.
    Compression {
        #[arg(long)]
        user_id: String,
    },
    /// Delete expired memories; every user without --user-id.
    Expiration {
        #[arg(long)]
        user_id: Option<String>,
    },
    /// Merge a user's redundant procedural rules.
    Procedural {
        #[arg(long)]
        user_id: String,
    },
    /// Re-encode every memory with another embedding model, following the migration.
    Migrate {
        #[arg(long)]
        new_model: String,
        #[arg(long)]
        new_dimension: Option<usize>,
    },
    /// A task's status (get_task_status), followed until ready unless --no-wait.
    Status { task_id: String },
    /// Revoke a task (terminating it if it runs).
    Cancel { task_id: String },
}

/// Prints a line on stdout; a closed stdout (`| head`) is not an error.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// A failure with its exit status.
struct Failure {
    code: i32,
    message: String,
}

fn fail(code: i32, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => {}
        Err(f) => {
            eprintln!("client: {}", f.message);
            std::process::exit(f.code);
        }
    }
}

// --- A minimal HTTP/1.1 client ------------------------------------------------------------

/// The API's location: host, port and path prefix of an `http://` URL.
#[derive(Debug, Clone)]
struct Api {
    host: String,
    port: u16,
    prefix: String,
}

impl Api {
    fn parse(url: &str) -> Result<Api, Failure> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            fail(
                2,
                format!("--api-url {url:?}: only http:// URLs are supported"),
            )
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let bad_port = |p: &str| fail(2, format!("--api-url {url:?}: bad port {p:?}"));
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            // [::1]:8000
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| fail(2, format!("--api-url {url:?}: unclosed [")))?;
            match after.strip_prefix(':') {
                Some(p) => (h, p.parse::<u16>().map_err(|_| bad_port(p))?),
                None => (h, 80),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad_port(p))?),
                None => (authority, 80),
            }
        };
        if host.is_empty() {
            return Err(fail(2, format!("--api-url {url:?}: no host")));
        }
        Ok(Api {
            host: host.to_string(),
            port,
            prefix: path.to_string(),
        })
    }

    /// Sends one request; returns the status code and the JSON body (`null` when
    /// empty).
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), Failure> {
        let conn_err = |e: std::io::Error| {
            fail(
                2,
                format!(
                    "cannot reach the API at http://{}:{}: {e}",
                    self.host, self.port
                ),
            )
        };
        let mut stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(conn_err)?;
        let payload = body.map(Value::to_string).unwrap_or_default();
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let mut req = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {host}:{}\r\nAccept: application/json\r\nConnection: close\r\n",
            self.prefix, self.port
        );
        if body.is_some() {
            req.push_str("Content-Type: application/json\r\n");
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n", payload.len()));
        req.push_str(&payload);
        stream.write_all(req.as_bytes()).await.map_err(conn_err)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.map_err(conn_err)?;
        let (code, body) = parse_response(&raw).map_err(|e| fail(2, e))?;
        let value = if body.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(&body).map_err(|e| {
                fail(
                    2,
                    format!(
                        "{method} {path}: HTTP {code} with a body that is not JSON ({e}): {}",
                        String::from_utf8_lossy(&body)
                    ),
                )
            })?
        };
        Ok((code, value))
    }
}

/// Splits a raw HTTP/1.1 response into its status code and body (decoding a chunked
/// body).
fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the API closed the connection before a complete response")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP response: {status:?}"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = &raw[end + 4..];
    if !chunked {
        return Ok((code, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunked body")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok((code, out));
        }
        if rest.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// The error message of an error answer.
fn error_of(code: u16, v: &Value) -> String {
    match v.get("error").and_then(Value::as_str) {
        Some(e) => format!("HTTP {code}: {e}"),
        None => format!("HTTP {code}: {v}"),
    }
}

/// Percent-encodes a path segment or query value.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// --- The commands ---------------------------------------------------------------------------

/// Submits a task: POST, expecting `{"task_id", "status", "queue"}`.
async fn submit(api: &Api, path: &str, body: Option<Value>) -> Result<String, Failure> {
    let (code, v) = api.call("POST", path, body.as_ref()).await?;
    if !(200..300).contains(&code) {
        return Err(fail(1, error_of(code, &v)));
    }
    let id = v["task_id"]
        .as_str()
        .ok_or_else(|| fail(2, format!("no task_id in the answer: {v}")))?
        .to_string();
    say!(
        "Task submitted: {id} (queue {})",
        v["queue"].as_str().unwrap_or("?")
    );
    Ok(id)
}

/// `get_task_status`.
async fn get_task_status(api: &Api, task_id: &str) -> Result<Value, Failure> {
    let path = format!("/api/v1/tasks/{}/status", encode(task_id));
    let (code, v) = api.call("GET", &path, None).await?;
    if code != 200 {
        return Err(fail(1, error_of(code, &v)));
    }
    Ok(v)
}

/// Polls the status until the task is ready, printing each new state; returns the
/// final status.
async fn follow(api: &Api, task_id: &str, timeout: Duration) -> Result<Value, Failure> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    let mut delay = Duration::from_millis(100);
    loop {
        let status = get_task_status(api, task_id).await?;
        let state = status["state"].as_str().unwrap_or("?").to_string();
        if state != last {
            say!("Status: {state}");
            last = state.clone();
        }
        if matches!(
            state.as_str(),
            "SUCCESS" | "FAILURE" | "REVOKED" | "REJECTED"
        ) {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            return Err(fail(
                3,
                format!(
                    "task {task_id} is still {state} after {} s",
                    timeout.as_secs()
                ),
            ));
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
    }
}

/// Prints a finished task's result or error; fails unless it succeeded.
fn report(status: &Value) -> Result<(), Failure> {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    match status["state"].as_str() {
        Some("SUCCESS") => {
            say!("Result: {}", pretty(&status["result"]));
            Ok(())
        }
        Some(state) => {
            if let Some(tb) = status["traceback"].as_str() {
                say!("Error: {tb}");
            }
            Err(fail(1, format!("the task ended in {state}")))
        }
        None => Err(fail(2, format!("no state in {status}"))),
    }
}

/// Follows a migration record until it ends, printing its progress.
async fn follow_migration(api: &Api, id: &str, timeout: Duration) -> Result<(), Failure> {
    let deadline = Instant::now() + timeout;
    let path = format!("/v1/admin/embeddings/migration/{}", encode(id));
    let mut last = String::new();
    loop {
        let (code, m) = api.call("GET", &path, None).await?;
        if code != 200 {
            return Err(fail(1, error_of(code, &m)));
        }
        let status = m["status"].as_str().unwrap_or("?").to_string();
        let line = format!(
            "Migration {status}: {} of {} migrated, {} failed",
            m["migrated_count"], m["total_memories"], m["failed_count"]
        );
        if line != last {
            say!("{line}");
            last = line;
        }
        match status.as_str() {
            "completed" => return Ok(()),
            "failed" | "cancelled" => {
                let error = m["error"].as_str().unwrap_or("");
                return Err(fail(1, format!("the migration ended {status} {error}")));
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            return Err(fail(3, format!("migration {id} is still {status}")));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn run(args: Args) -> Result<(), Failure> {
    let api = Api::parse(&args.api_url)?;
    let timeout = Duration::from_secs(args.timeout);
    let strip_nulls = |mut v: Value| {
        if let Some(o) = v.as_object_mut() {
            o.retain(|_, x| !x.is_null());
        }
        Some(v)
    };
    let task_id = match args.command {
        Command::Deduplication {
            user_id,
            similarity_threshold,
            dry_run,
        } => {
            let body = json!({"user_id": user_id, "similarity_threshold": similarity_threshold, "dry_run": dry_run});
            submit(&api, "/api/v1/tasks/deduplication", strip_nulls(body)).await?
        }
        Command::Consolidation {
            user_id,
            similarity_threshold,
        } => {
            let body = json!({"user_id": user_id, "similarity_threshold": similarity_threshold});
            submit(&api, "/api/v1/tasks/consolidation", strip_nulls(body)).await?
        }
        Command::HealthCheck { user_id } => {
            let body = json!({ "user_id": user_id });
            submit(&api, "/api/v1/tasks/health-check", strip_nulls(body)).await?
        }
        Command::Summarization {
            user_id,
            min_age_days,
        } => {
            let body = json!({"user_id": user_id, "min_age_days": min_age_days});
            submit(&api, "/api/v1/tasks/summarization", strip_nulls(body)).await?
        }
        Command::Compression { user_id } => {
            let body = json!({ "user_id": user_id });
            submit(&api, "/api/v1/tasks/compression", strip_nulls(body)).await?
        }
        Command::Expiration { user_id } => {
            let body = json!({ "user_id": user_id });
            submit(&api, "/api/v1/tasks/expiration", strip_nulls(body)).await?
        }
        Command::Procedural { user_id } => {
            let path = format!("/v1/procedural/consolidate?user_id={}", encode(&user_id));
            submit(&api, &path, None).await?
        }
        Command::Migrate {
            new_model,
            new_dimension,
        } => {
            let body = json!({"new_model": new_model, "new_dimension": new_dimension});
            let (code, v) = api
                .call(
                    "POST",
                    "/v1/admin/embeddings/migrate",
                    strip_nulls(body).as_ref(),
                )
                .await?;
            if !(200..300).contains(&code) {
                return Err(fail(1, error_of(code, &v)));
            }
            let id = v["migration_id"].as_str().unwrap_or("?").to_string();
            say!(
                "Migration {id} started by task {}",
                v["task_id"].as_str().unwrap_or("?")
            );
            if args.no_wait {
                return Ok(());
            }
            return follow_migration(&api, &id, timeout).await;
        }
        Command::Status { task_id } => task_id,
        Command::Cancel { task_id } => {
            let path = format!("/api/v1/tasks/{}", encode(&task_id));
            let (code, v) = api.call("DELETE", &path, None).await?;
            if code != 200 {
                return Err(fail(1, error_of(code, &v)));
            }
            say!(
                "Task {task_id} revoked (it was {})",
                v["state"].as_str().unwrap_or("?")
            );
            return Ok(());
        }
    };
    if args.no_wait {
        let status = get_task_status(&api, &task_id).await?;
        say!("Status: {}", status["state"].as_str().unwrap_or("?"));
        return Ok(());
    }
    let status = follow(&api, &task_id, timeout).await?;
    report(&status)
}
