//! Review Q2, the sender's side: a countdown and an expiry are measured on the Redis
//! server's clock, not the sender's. A process whose clock is 15 s behind sends a task
//! with a 3 s countdown; a worker with the real clock must not start it before about
//! 3 s. The same process sends a task that expires in 10 s: the worker must run it, not
//! revoke it as expired 5 s before it was sent.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hippo_queue_core::{SendOptions, TaskState};
use hippo_queue_redis::test_server::RedisServer;

use crate::harness::{COUNTER_DB, Counters, Work, WorkerCfg, app_on, light, note, wait_final};

const LIBS: [&str; 2] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
];

/// The sending process: one task with a countdown, then exit.
pub async fn run_child_sender() {
    let (Ok(url), Ok(counter_url)) = (
        std::env::var("HQ_FI_SEND_URL"),
        std::env::var("HQ_FI_COUNTER_URL"),
    ) else {
        return;
    };
    let countdown: u64 = std::env::var("HQ_FI_COUNTDOWN_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let (app, _) = app_on(&url, &counter_url, None).await;
    let options = match std::env::var("HQ_FI_EXPIRES_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(ms) => SendOptions::new().expires_in(Duration::from_millis(ms)),
        None => SendOptions::new().countdown(Duration::from_millis(countdown)),
    };
    let h = app.apply_async::<Work>(1, options).await.expect("send");
    println!("sent-id:{}", h.id());
}

/// Runs [`run_child_sender`] in a process whose clock is 15 s behind; returns the id
/// of the task it sent.
fn send_from_behind(url: &str, counter_url: &str, env: (&str, &str)) -> String {
    let lib = LIBS
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("libfaketime (apt-get install faketime)");
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "child_sender",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HQ_FI_SEND_URL", url)
        .env("HQ_FI_COUNTER_URL", counter_url)
        .env(env.0, env.1)
        .env("LD_PRELOAD", lib)
        .env("FAKETIME", "-15s")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .stderr(Stdio::null())
        .output()
        .expect("run the sender");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let id = stdout
        .lines()
        .find_map(|l| l.split_once("sent-id:").map(|(_, id)| id.trim()))
        .map(str::to_string);
    match id {
        Some(id) if out.status.success() => id,
        _ => panic!("the sender failed: {stdout}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn countdown_from_a_sender_15s_behind_waits_on_the_server_clock() {
    let _machine = light().await;
    let scenario = "sender clock -15s, countdown 3 s";
    let server = RedisServer::start();
    let url = server.url(0);
    let counter_url = server.url(COUNTER_DB);
    let (app, _) = app_on(&url, &counter_url, None).await;
    let counters = Counters::connect(&counter_url).await;
    let worker = WorkerCfg::new(2, 1)
        .builder(&app)
        .start()
        .await
        .expect("worker");
    send_from_behind(&url, &counter_url, ("HQ_FI_COUNTDOWN_MS", "3000"));
    let sent = Instant::now();
    let mut started = None;
    while sent.elapsed() < Duration::from_secs(10) {
        if counters.distinct().await > 0 {
            started = Some(sent.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    note(scenario, format!("started {started:?} after the send"));
    worker.kill();
    let started = started.expect("the task never started");
    assert!(
        started >= Duration::from_millis(2500),
        "{scenario}: started {started:?} after the send: the countdown was read on the sender's clock"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_from_a_sender_15s_behind_is_read_on_the_server_clock() {
    let _machine = light().await;
    let scenario = "sender clock -15s, expires in 10 s";
    let server = RedisServer::start();
    let url = server.url(0);
    let counter_url = server.url(COUNTER_DB);
    let (app, backend) = app_on(&url, &counter_url, None).await;
    let worker = WorkerCfg::new(2, 1)
        .builder(&app)
        .start()
        .await
        .expect("worker");
    let id = send_from_behind(&url, &counter_url, ("HQ_FI_EXPIRES_MS", "10000"));
    let limit = Duration::from_secs(10);
    let finals = wait_final(&backend, std::slice::from_ref(&id), limit, limit).await;
    worker.kill();
    let state = finals.get(&id).map(|m| m.state);
    note(scenario, format!("ended {state:?}"));
    assert_eq!(
        state,
        Some(TaskState::Success),
        "{scenario}: the expiry was read on the sender's clock"
    );
}
