//! `hippo-queue monitor` as a process: its settings from flags and Flower's
//! variables, refusals that name the problem without echoing secrets, and a served API.

use std::process::Stdio;
use std::time::Duration;

use hippo_queue_redis::test_server::RedisServer;
use tokio::io::{AsyncBufReadExt, BufReader};

fn monitor(url: &str, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_hippo-queue"));
    cmd.arg("--broker").arg(url).arg("monitor").args(args);
    for v in [
        "CELERY_BROKER_URL",
        "CELERY_RESULT_BACKEND",
        "FLOWER_PORT",
        "FLOWER_ADDRESS",
        "FLOWER_BASIC_AUTH",
        "FLOWER_USER",
        "FLOWER_PASSWORD",
        "FLOWER_URL_PREFIX",
        "FLOWER_READ_ONLY",
        "HIPPO_MONITOR_TOKENS",
    ] {
        cmd.env_remove(v);
    }
    cmd.stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_setting_and_keep_secrets() {
    let server = RedisServer::start();
    let url = server.url(1);
    let out = monitor(
        &url,
        &["--address", "0.0.0.0", "--port", &free_port().to_string()],
    )
    .output()
    .await
    .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to serve 0.0.0.0 without authentication"),
        "{err}"
    );

    let out = monitor(&url, &["--basic-auth", "ann:hunter2,bobsecretpass"])
        .output()
        .await
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("basic auth entry 2"), "{err}");
    assert!(
        !err.contains("hunter2") && !err.contains("secretpass"),
        "{err}"
    );

    let out = monitor(&url, &[])
        .env("FLOWER_USER", "ann")
        .output()
        .await
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("FLOWER_PASSWORD"));

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_hippo-queue"))
        .args(["monitor", "--help"])
        .env("FLOWER_BASIC_AUTH", "ann:hunter2")
        .output()
        .await
        .expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--basic-auth") && !help.contains("hunter2"),
        "{help}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_flowers_settings_from_the_environment() {
    let server = RedisServer::start();
    let port = free_port();
    let mut child = monitor(&server.url(1), &[])
        .env("FLOWER_PORT", port.to_string())
        .env("FLOWER_ADDRESS", "127.0.0.1")
        .env("FLOWER_USER", "ann")
        .env("FLOWER_PASSWORD", "s3cret")
        .env("FLOWER_URL_PREFIX", "flower")
        .env("FLOWER_READ_ONLY", "true")
        .spawn()
        .expect("start");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let banner = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("a banner in time")
        .expect("read")
        .expect("a line");
    assert_eq!(
        banner,
        format!("monitor on http://127.0.0.1:{port}/flower/ (authentication required, read-only)")
    );
    assert!(!banner.contains("s3cret"));
    let c = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}/flower");
    let res = c
        .get(format!("{base}/api/workers"))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status().as_u16(), 401);
    let res = c
        .get(format!("{base}/api/workers"))
        .basic_auth("ann", Some("s3cret"))
        .send()
        .await
        .expect("get");
    assert_eq!(res.status().as_u16(), 200);
    let res = c
        .post(format!("{base}/api/task/revoke/x"))
        .basic_auth("ann", Some("s3cret"))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status().as_u16(), 403, "read-only");
    let _ = child.kill().await;
}
