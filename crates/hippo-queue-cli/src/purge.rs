//! `purge`: empty one queue, or every queue known (after confirmation).

use std::io::BufRead;
use std::process::ExitCode;

use clap::Args;
use hippo_queue_core::App;

/// Arguments of `purge`.
#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// The queue (default: every queue of the guide's routes and of live workers).
    pub queue: Option<String>,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

/// The queues `purge` empties: the one named, or the router's and those live
/// workers consume, each once.
pub fn targets(named: Option<&str>, router: &[String], consumed: &[String]) -> Vec<String> {
    if let Some(q) = named {
        return vec![q.to_string()];
    }
    let mut out: Vec<String> = Vec::new();
    for q in router.iter().chain(consumed) {
        if !out.contains(q) {
            out.push(q.clone());
        }
    }
    out
}

/// Whether an answer confirms (Celery asks for `yes`).
fn confirmed(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "yes" | "y")
}

pub async fn purge(
    app: &App,
    a: &PurgeArgs,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let router: Vec<String> = app
        .router()
        .queues()
        .iter()
        .map(|q| q.name.clone())
        .collect();
    let consumed: Vec<String> = if a.queue.is_none() {
        app.broker()
            .workers()
            .await?
            .into_iter()
            .flat_map(|w| w.queues)
            .collect()
    } else {
        Vec::new()
    };
    let queues = targets(a.queue.as_deref(), &router, &consumed);
    if a.queue.is_none() && !a.force {
        eprint!(
            "WARNING: this removes every waiting and delayed message of: {}.\nAre you sure? [yes/NO] ",
            queues.join(", ")
        );
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !confirmed(&answer) {
            eprintln!("nothing purged");
            return Ok(ExitCode::from(crate::run::EXIT_NOTHING));
        }
    }
    let mut total = 0;
    let mut by_queue = serde_json::Map::new();
    for q in &queues {
        let n = app.broker().purge(q).await?;
        total += n;
        by_queue.insert(q.clone(), n.into());
        if !json {
            println!("purged {n} message(s) from {q}");
        }
    }
    if json {
        if let Some(q) = &a.queue {
            println!("{}", serde_json::json!({"queue": q, "purged": total}));
        } else {
            println!(
                "{}",
                serde_json::json!({"purged": total, "queues": by_queue})
            );
        }
    } else if a.queue.is_none() {
        println!("purged {total} message(s) from {} queue(s)", queues.len());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_queue_once_or_the_one_named() {
        let router = vec!["default".to_string(), "memory_ops".to_string()];
        let consumed = vec!["default".to_string(), "extra".to_string()];
        assert_eq!(
            targets(None, &router, &consumed),
            ["default", "memory_ops", "extra"]
        );
        assert_eq!(targets(Some("q"), &router, &consumed), ["q"]);
    }

    #[test]
    fn only_yes_confirms() {
        assert!(confirmed("yes\n") && confirmed("Y"));
        assert!(!confirmed("") && !confirmed("no") && !confirmed("yess"));
    }
}
