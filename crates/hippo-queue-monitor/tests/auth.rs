//! Credentials, the URL prefix, and a Redis that goes away: 401s, the challenge,
//! prefixed routes only, and a monitor that keeps running.

mod support;

use hippo_queue_monitor::MonitorConfig;
use support::{Deployment, get, serve};

const TOKEN: &str = "0123456789abcdef0123";
const METRICS_TOKEN: &str = "prometheus-only-0123";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_url_prefix() {
    let mut d = Deployment::start().await;
    let config = MonitorConfig::new()
        .basic_auth("ann:s3cret,bob:pa:ss")
        .expect("credentials")
        .bearer_tokens([TOKEN])
        .expect("token")
        .metrics_tokens([METRICS_TOKEN])
        .expect("metrics token")
        .url_prefix("/ops/flower/")
        .expect("prefix");
    let m = serve(config, &d.redis).await;
    assert!(m.base.ends_with("/ops/flower"));
    let c = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", m.base);

    for path in [
        "/api/workers",
        "/api/tasks",
        "/api/queues/length",
        "/api/task/types",
        "/metrics",
    ] {
        let res = c.get(url(path)).send().await.expect("request");
        assert_eq!(res.status().as_u16(), 401, "{path}");
        let challenge = res.headers()["www-authenticate"].to_str().expect("header");
        assert!(challenge.starts_with("Basic realm="), "{challenge}");
        let res = c
            .get(url(path))
            .basic_auth("ann", Some("wrong"))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status().as_u16(), 401, "{path}");
        for (user, pass) in [("ann", "s3cret"), ("bob", "pa:ss")] {
            let res = c
                .get(url(path))
                .basic_auth(user, Some(pass))
                .send()
                .await
                .expect("request");
            assert_eq!(res.status().as_u16(), 200, "{path} as {user}");
        }
        let res = c
            .get(url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("request");
        assert_eq!(res.status().as_u16(), 200, "{path} with the token");
        let res = c
            .get(url(path))
            .bearer_auth("0123456789abcdef0124")
            .send()
            .await
            .expect("request");
        assert_eq!(res.status().as_u16(), 401, "{path} with another token");
    }
    // the metrics token opens /metrics and nothing else
    let res = c
        .get(url("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 200);
    for path in ["/api/tasks", "/api/task/info/metrics", "/metrics/"] {
        let res = c
            .get(url(path))
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .expect("request");
        assert!(
            matches!(res.status().as_u16(), 401 | 404),
            "{path}: {}",
            res.status()
        );
        assert_ne!(res.status().as_u16(), 200, "{path}");
    }
    let res = c
        .get(url("/api/task/info/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(
        res.status().as_u16(),
        401,
        "a task named metrics is not the metrics route"
    );

    // the healthcheck is open; routes outside the prefix do not exist
    let (status, _) = get(&c, &url("/healthcheck")).await;
    assert_eq!(status, 200);
    let root = m.base.trim_end_matches("/ops/flower").to_string();
    let res = c
        .get(format!("{root}/api/workers"))
        .basic_auth("ann", Some("s3cret"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 404);

    // Redis goes away: clear errors, and the monitor keeps serving
    d.server.kill();
    let res = c.get(url("/healthcheck")).send().await.expect("request");
    assert_eq!(res.status().as_u16(), 503);
    let res = c
        .get(url("/api/tasks"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 503);
    let v: serde_json::Value = res.json().await.expect("json error");
    assert!(
        v["error"]
            .as_str()
            .expect("error")
            .starts_with("the backend failed"),
        "{v}"
    );
    d.server.restart();
    support::eventually("the healthcheck recovers", || async {
        get(&c, &url("/healthcheck")).await.0 == 200
    })
    .await;
    d.stop().await;
}
