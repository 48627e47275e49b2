//! `dead-letters requeue QUEUE --id ID… | --all`: send dead letters back to their
//! queue to run again.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use hippo_queue_core::App;

/// What to do with dead letters.
#[derive(Debug, Subcommand)]
pub enum DeadLetterAction {
    /// Send dead letters back to their queue (delivery count reset); their old FAILURE
    /// or REJECTED records are removed first, so that the new run's result is stored.
    Requeue(RequeueArgs),
}

/// Arguments of `dead-letters requeue`.
#[derive(Debug, Args)]
pub struct RequeueArgs {
    /// The queue.
    pub queue: String,
    /// Task ids to requeue (repeat, or comma-separated).
    #[arg(
        long = "id",
        value_delimiter = ',',
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub ids: Vec<String>,
    /// Every dead letter of the queue.
    #[arg(long)]
    pub all: bool,
}

/// The most dead letters one requeue reads (the Redis list's cap).
const MOST: usize = 100_000;

/// The ids to requeue, and the ids asked for that are not dead letters.
pub fn choose(dead: &[String], asked: &[String], all: bool) -> (Vec<String>, Vec<String>) {
    if all {
        let mut ids: Vec<String> = Vec::new();
        for id in dead {
            if !id.is_empty() && !ids.contains(id) {
                ids.push(id.clone());
            }
        }
        return (ids, Vec::new());
    }
    asked.iter().cloned().partition(|id| dead.contains(id))
}

pub async fn requeue(
    app: &App,
    a: &RequeueArgs,
    json: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let dead: Vec<String> = app
        .broker()
        .dead_letters(&a.queue, MOST)
        .await?
        .into_iter()
        .map(|d| d.id)
        .collect();
    let (ids, missing) = choose(&dead, &a.ids, a.all);
    for id in &missing {
        eprintln!("{id} is not a dead letter of {}", a.queue);
    }
    for id in &ids {
        app.backend().forget(id).await?;
    }
    let back = app.broker().requeue_dead_letters(&a.queue, &ids).await?;
    if json {
        println!(
            "{}",
            serde_json::json!({"queue": a.queue, "requeued": back, "missing": missing})
        );
    } else {
        for id in &back {
            println!("{id}");
        }
        println!("requeued {} message(s) to {}", back.len(), a.queue);
    }
    Ok(if back.is_empty() || !missing.is_empty() {
        ExitCode::from(crate::run::EXIT_NOTHING)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn all_takes_each_readable_id_once_and_ids_name_the_missing() {
        let dead = s(&["a", "", "b", "a"]);
        assert_eq!(choose(&dead, &[], true), (s(&["a", "b"]), s(&[])));
        assert_eq!(
            choose(&dead, &s(&["b", "x"]), false),
            (s(&["b"]), s(&["x"]))
        );
    }
}
