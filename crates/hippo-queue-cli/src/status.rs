//! `status`: which workers answer a ping (Celery's `celery status`).

use std::process::ExitCode;
use std::time::Duration;

use hippo_queue_core::App;
use hippo_queue_core::control::{Command, ReplyBody};

/// Pings every worker; one line per worker, then the count. Exit code 3 when none
/// answers.
pub async fn status(
    app: &App,
    timeout: Duration,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut replies = app.control().call(None, Command::Ping, timeout).await?;
    replies.sort_by(|a, b| a.worker.cmp(&b.worker));
    let lines: Vec<(String, bool)> = replies
        .iter()
        .map(|r| (r.worker.clone(), matches!(r.body, ReplyBody::Pong)))
        .collect();
    if json {
        let v: serde_json::Map<String, serde_json::Value> = lines
            .iter()
            .map(|(w, ok)| {
                (
                    w.clone(),
                    serde_json::Value::from(if *ok { "OK" } else { "ERROR" }),
                )
            })
            .collect();
        println!("{}", serde_json::Value::Object(v));
    } else {
        print!("{}", render(&lines));
    }
    Ok(if lines.is_empty() {
        eprintln!("no worker replied within {timeout:?}");
        ExitCode::from(crate::run::EXIT_NOTHING)
    } else {
        ExitCode::SUCCESS
    })
}

/// `name: OK` lines, then `N node(s) online.`
fn render(lines: &[(String, bool)]) -> String {
    let mut out = String::new();
    for (worker, ok) in lines {
        out.push_str(&format!("{worker}: {}\n", if *ok { "OK" } else { "ERROR" }));
    }
    let n = lines.len();
    out.push_str(&format!(
        "\n{n} node{} online.\n",
        if n == 1 { "" } else { "s" }
    ));
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_line_per_worker_then_the_count() {
        let text = super::render(&[("a@h".into(), true), ("b@h".into(), true)]);
        assert_eq!(text, "a@h: OK\nb@h: OK\n\n2 nodes online.\n");
        assert_eq!(super::render(&[]), "\n0 nodes online.\n");
    }
}
