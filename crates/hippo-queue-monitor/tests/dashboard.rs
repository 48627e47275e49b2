//! The dashboard in a real headless browser (Debian's chromium, driven through
//! chromedriver's WebDriver API), served under a URL prefix: pages load, a task shows
//! up and goes from started to success without a reload, a task's page shows its
//! failure. Screenshots land in `target/monitor-screenshots/` (the ones in
//! `docs/monitor/` come from there).

mod support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use hippo_queue_monitor::MonitorConfig;
use serde_json::{Value, json};
use support::{Add, Deployment, Fail, PICKY_OPEN, Picky, Sleep, serve};

/// A chromedriver child on a free port, killed on drop.
struct Driver {
    child: Child,
    base: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start_driver() -> Driver {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run chromedriver (apt-get install chromium chromium-driver)");
    Driver {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

/// One browser session.
struct Browser {
    http: reqwest::Client,
    session: String,
}

impl Browser {
    async fn open(driver: &Driver) -> Self {
        let http = reqwest::Client::new();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,800"]
            }
        }}});
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match http
                .post(format!("{}/session", driver.base))
                .json(&caps)
                .send()
                .await
            {
                Ok(res) => {
                    let v: Value = res.json().await.expect("session reply");
                    let id = v["value"]["sessionId"]
                        .as_str()
                        .unwrap_or_else(|| panic!("no session: {v}"));
                    return Browser {
                        http,
                        session: format!("{}/session/{id}", driver.base),
                    };
                }
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("chromedriver does not answer: {e}"),
            }
        }
    }

    async fn call(&self, path: &str, body: Value) -> Value {
        let res = self
            .http
            .post(format!("{}{path}", self.session))
            .json(&body)
            .send()
            .await
            .expect("webdriver call");
        let v: Value = res.json().await.expect("webdriver reply");
        if v["value"]["error"].is_string() {
            panic!("webdriver {path}: {v}");
        }
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call("/url", json!({"url": url})).await;
    }

    async fn eval(&self, script: &str) -> Value {
        self.call("/execute/sync", json!({"script": script, "args": []}))
            .await
    }

    /// Polls a script until it returns `want` (10 s).
    async fn wait_for(&self, what: &str, script: &str, want: Value) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.eval(script).await;
            if got == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: got {got}, want {want}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn screenshot(&self, name: &str) {
        let res = self
            .http
            .get(format!("{}/screenshot", self.session))
            .send()
            .await
            .expect("screenshot");
        let v: Value = res.json().await.expect("screenshot reply");
        let png = base64::engine::general_purpose::STANDARD
            .decode(v["value"].as_str().expect("png"))
            .expect("base64 png");
        let dir =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/monitor-screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    async fn close(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_a_headless_browser_under_a_prefix() {
    let d = Deployment::start().await;
    for i in 0..3 {
        d.app.delay::<Add>((i, 10)).await.expect("send");
    }
    let failed = d.app.delay::<Fail>(()).await.expect("send");
    assert!(failed.get(Duration::from_secs(10)).await.is_err());
    let rejected = d.app.delay::<Picky>(7).await.expect("send");
    assert!(rejected.get(Duration::from_secs(10)).await.is_err());
    // a worker that stopped: listed offline, and its queue, where a message waits
    let gone = d
        .app
        .worker()
        .name("w2@test")
        .queues(["other"])
        .heartbeat_interval(Duration::from_millis(100))
        .start()
        .await
        .expect("start w2");
    gone.shutdown().await;
    d.app
        .apply_async::<Add>((1, 2), hippo_queue_core::SendOptions::new().queue("other"))
        .await
        .expect("send");
    let m = serve(
        MonitorConfig::new().url_prefix("flower").expect("prefix"),
        &d.redis,
    )
    .await;
    let driver = start_driver();
    let b = Browser::open(&driver).await;

    // the prefix without its slash is redirected to the page
    b.goto(&m.base).await;
    b.wait_for(
        "the workers page",
        "return document.querySelector('[data-worker=\"w1@test\"]') !== null",
        json!(true),
    )
    .await;
    let url = b.eval("return location.pathname").await;
    assert_eq!(url, "/flower/");
    b.wait_for(
        "the stopped worker shows offline",
        "const r = document.querySelector('[data-worker=\"w2@test\"]'); return r ? r.dataset.status : null",
        json!("offline"),
    )
    .await;
    b.wait_for(
        "the live badge",
        "return document.getElementById('live').textContent",
        json!("live"),
    )
    .await;
    b.screenshot("workers").await;

    // a task appears and goes from started to success without a reload
    b.goto(&format!("{}/#/tasks", m.base)).await;
    b.wait_for(
        "the tasks page",
        "return document.querySelectorAll('[data-task-id]').length",
        json!(5),
    )
    .await;
    let loaded = b.eval("return window.hippoLoadedAt").await;
    let slow = d.app.delay::<Sleep>(2500).await.expect("send");
    let state = format!(
        "const r = document.querySelector('[data-task-id=\"{}\"]'); return r ? r.dataset.state : null",
        slow.id()
    );
    b.wait_for("the task shows as started", &state, json!("STARTED"))
        .await;
    b.screenshot("tasks").await;
    b.wait_for("the task shows as succeeded", &state, json!("SUCCESS"))
        .await;
    assert_eq!(
        b.eval("return window.hippoLoadedAt").await,
        loaded,
        "the page was not reloaded"
    );

    // filters
    b.eval("const s = document.querySelector('.filters select'); s.value = 'FAILURE'; s.dispatchEvent(new Event('change')); return true").await;
    b.wait_for(
        "only the failure is listed",
        "return document.querySelectorAll('[data-task-id]').length",
        json!(1),
    )
    .await;

    // retry of a failed (dead-lettered) task from its page makes it succeed
    PICKY_OPEN.store(true, std::sync::atomic::Ordering::SeqCst);
    b.goto(&format!("{}/#/task/{}", m.base, rejected.id()))
        .await;
    let state_field = "const e = document.querySelector('[data-field=\"state\"]'); return e ? e.textContent : null";
    b.wait_for("the rejected task's page", state_field, json!("REJECTED"))
        .await;
    b.eval("document.getElementById('retry').click(); return true")
        .await;
    b.wait_for(
        "the retried task succeeds on its page",
        state_field,
        json!("SUCCESS"),
    )
    .await;
    // its timeline and the operator action that retried it
    b.wait_for(
        "the retry shows among the operator actions",
        "return document.querySelector('[data-action=\"retry\"]') !== null",
        json!(true),
    )
    .await;
    b.wait_for(
        "the timeline shows the run that succeeded",
        "return document.querySelector('[data-event=\"task-succeeded\"]') !== null",
        json!(true),
    )
    .await;
    let rejected_row = b
        .eval("return document.querySelector('[data-event=\"task-rejected\"]') !== null")
        .await;
    assert_eq!(
        rejected_row,
        json!(true),
        "the first run's rejection is in the timeline"
    );
    // the screenshot shows the timeline and the operator actions
    b.eval("document.querySelector('h3').scrollIntoView(); return true")
        .await;
    b.screenshot("retried").await;
    assert_eq!(
        rejected
            .get(Duration::from_secs(10))
            .await
            .expect("ran again"),
        7
    );

    // the failed task's page
    b.goto(&format!("{}/#/task/{}", m.base, failed.id())).await;
    b.wait_for("the task page", "const e = document.querySelector('[data-field=\"state\"]'); return e ? e.textContent : null", json!("FAILURE")).await;
    let tb = b
        .eval("return document.querySelector('[data-field=\"traceback\"]').textContent")
        .await;
    assert!(
        tb.as_str()
            .expect("traceback")
            .contains("the disk was full"),
        "{tb}"
    );
    b.screenshot("task").await;

    b.goto(&format!("{}/#/queues", m.base)).await;
    b.wait_for(
        "the queues page",
        "return document.querySelector('[data-queue=\"default\"]') !== null",
        json!(true),
    )
    .await;
    b.wait_for(
        "the stopped worker's queue shows the age of its oldest message",
        "const r = document.querySelector('[data-queue=\"other\"] [data-field=\"oldest\"]'); return r ? /^\\d+s$/.test(r.textContent) : null",
        json!(true),
    )
    .await;
    b.screenshot("queues").await;

    // charts: rates and runtimes per task type, drawn as inline SVG by the page
    b.goto(&format!("{}/#/charts", m.base)).await;
    b.wait_for(
        "the runtime chart of test.add",
        "return document.querySelectorAll('[data-task-type=\"test.add\"] svg[data-chart=\"runtime\"] rect').length > 0",
        json!(true),
    )
    .await;
    b.wait_for(
        "the rate chart of test.fail shows a failure",
        "const c = document.querySelector('[data-task-type=\"test.fail\"] svg[data-chart=\"rate\"]'); return c ? c.querySelectorAll('rect[fill=\"#c9372c\"]').length > 0 : null",
        json!(true),
    )
    .await;
    b.screenshot("charts").await;

    // beat: the entries of a running scheduler
    let entry = hippo_queue_core::beat::Entry::new::<Add>(
        "add-every-second",
        (1, 1),
        hippo_queue_core::beat::Schedule::every(Duration::from_secs(1)),
    )
    .expect("entry");
    let beat = hippo_queue_core::beat::Beat::builder(d.app.clone(), d.redis.clone())
        .id("beat-test")
        .entry(entry)
        .build()
        .expect("beat");
    let beating = beat.spawn();
    b.goto(&format!("{}/#/beat", m.base)).await;
    b.wait_for(
        "the beat's entry with its last run",
        "const r = document.querySelector('[data-entry=\"add-every-second\"]'); return r ? r.children[4].textContent.length > 0 : null",
        json!(true),
    )
    .await;
    let runs = b
        .eval("return document.querySelector('[data-entry=\"add-every-second\"] [data-field=\"runs\"]').textContent")
        .await;
    assert!(
        runs.as_str()
            .and_then(|r| r.parse::<u64>().ok())
            .is_some_and(|n| n >= 1),
        "total runs: {runs}"
    );
    b.screenshot("beat").await;
    beating.shutdown().await;
    b.close().await;
    d.stop().await;
}
