//! Running a command.

use std::process::ExitCode;
use std::time::Duration;

use hippo_queue_core::control::{Command, RateLimit, Reply};
use hippo_queue_core::{App, Router, TaskState};
use hippo_queue_redis::{RedisBackend, RedisConfig};

use crate::cli::{Cli, Cmd, Conn, Control, Inspect, Target};
use crate::render;
use hippo_queue_core::beat::BeatStore;

/// A runtime error (Redis unreachable, bad reply).
pub const EXIT_ERROR: u8 = 1;
/// Nothing answered: no worker replied, or the task is unknown.
pub const EXIT_NOTHING: u8 = 3;
/// The task ended in FAILURE, REVOKED or REJECTED.
pub const EXIT_TASK_FAILED: u8 = 4;

type Res = Result<ExitCode, Box<dyn std::error::Error>>;

pub(crate) async fn redis_backend(conn: &Conn) -> Result<RedisBackend, Box<dyn std::error::Error>> {
    let mut cfg = RedisConfig::new(conn.broker.clone()).prefix(conn.prefix.clone());
    if let Some(r) = &conn.results {
        cfg = cfg.results_url(r.clone());
    }
    Ok(RedisBackend::connect(cfg).await?)
}

async fn connect(cli: &Cli) -> Result<App, Box<dyn std::error::Error>> {
    let redis = redis_backend(&cli.conn).await?;
    Ok(App::builder()
        .broker(redis.clone())
        .backend(redis)
        .router(Router::guide_preset())
        .build())
}

/// `doctor`: every finding on its own line; a deployment that cannot be reached is an
/// error finding too, so the exit code stays 0/1/2.
async fn doctor(conn: &Conn, json: bool) -> Res {
    let findings = match redis_backend(conn).await {
        Ok(redis) => {
            let app = App::builder()
                .broker(redis.clone())
                .backend(redis.clone())
                .router(Router::guide_preset())
                .build();
            match tokio::time::timeout(crate::doctor::TIMEOUT, crate::doctor::gather(&app, &redis))
                .await
            {
                Ok(Ok(facts)) => crate::doctor::check(&facts),
                Ok(Err(e)) => vec![crate::doctor::Finding {
                    level: crate::doctor::Level::Error,
                    check: "connection",
                    message: e.to_string(),
                }],
                Err(_) => vec![crate::doctor::Finding {
                    level: crate::doctor::Level::Error,
                    check: "connection",
                    message: "no answer from Redis within 30 s".into(),
                }],
            }
        }
        Err(e) => vec![crate::doctor::Finding {
            level: crate::doctor::Level::Error,
            check: "connection",
            message: e.to_string(),
        }],
    };
    if json {
        let lines: Vec<_> = findings
            .iter()
            .map(|f| {
                serde_json::json!({
                    "level": format!("{:?}", f.level).to_lowercase(),
                    "check": f.check,
                    "message": f.message,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(lines));
    } else {
        print!("{}", crate::doctor::render(&findings));
    }
    Ok(ExitCode::from(crate::doctor::exit_code(&findings)))
}

pub async fn run(cli: Cli) -> Res {
    if matches!(cli.command, Cmd::Doctor) {
        // Before connecting: an unreachable server is one of its findings.
        return doctor(&cli.conn, cli.json).await;
    }
    if let Cmd::Monitor(args) = &cli.command {
        // a server of its own, with its own connection
        return crate::monitor::run(&cli.conn, args).await;
    }
    let app = connect(&cli).await?;
    let json = cli.json;
    match cli.command {
        Cmd::Inspect { what, target } => {
            let command = match what {
                Inspect::Ping => Command::Ping,
                Inspect::Active => Command::Active,
                Inspect::Reserved => Command::Reserved,
                Inspect::Scheduled => Command::Scheduled,
                Inspect::Revoked => Command::Revoked,
                Inspect::Registered => Command::Registered,
                Inspect::Stats => Command::Stats,
                Inspect::ActiveQueues => Command::ActiveQueues,
                Inspect::QueryTask { ids } => Command::QueryTask(ids),
            };
            broadcast(&app, command, &target, json).await
        }
        Cmd::Control { what, target } => {
            let command = match what {
                Control::Shutdown => Command::Shutdown,
                Control::PoolRestart => Command::PoolRestart,
                Control::PoolGrow { n } => Command::PoolGrow(n),
                Control::PoolShrink { n } => Command::PoolShrink(n),
                Control::Autoscale { max, min } => Command::Autoscale { max, min },
                Control::AddConsumer { queue } => Command::AddConsumer(queue),
                Control::CancelConsumer { queue } => Command::CancelConsumer(queue),
                Control::RateLimit { task, rate } => Command::RateLimit {
                    task,
                    rate: if rate.trim() == "0" {
                        None
                    } else {
                        Some(rate.parse::<RateLimit>()?)
                    },
                },
                Control::TimeLimit { task, soft, hard } => Command::TimeLimit {
                    task,
                    soft: Some(soft),
                    hard: Some(hard),
                },
                Control::Revoke { task_id, terminate } => Command::Revoke {
                    id: task_id,
                    terminate,
                },
            };
            broadcast(&app, command, &target, json).await
        }
        Cmd::Queues { names } => {
            let names = if names.is_empty() {
                app.router()
                    .queues()
                    .iter()
                    .map(|q| q.name.clone())
                    .collect()
            } else {
                names
            };
            let stats = app.broker().queue_stats(&names).await?;
            print!("{}", render::queues(&stats, json)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Purge(args) => crate::purge::purge(&app, &args, json).await,
        Cmd::Call(args) => {
            let id = crate::call::call(&app, &args).await?;
            if json {
                println!("{}", serde_json::json!({"id": id, "task": args.task}));
            } else {
                println!("{id}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status { timeout } => crate::status::status(&app, timeout, json).await,
        Cmd::Result { task_id, wait } => {
            let meta = match wait {
                Some(d) => app.backend().wait(&task_id, d).await?,
                None => app.backend().get(&task_id).await?,
            };
            print!("{}", render::result(&task_id, meta.as_ref(), json)?);
            Ok(match meta.map(|m| m.state) {
                None | Some(TaskState::Pending) => ExitCode::from(EXIT_NOTHING),
                Some(TaskState::Failure | TaskState::Revoked | TaskState::Rejected) => {
                    ExitCode::from(EXIT_TASK_FAILED)
                }
                Some(_) => ExitCode::SUCCESS,
            })
        }
        Cmd::Revoke { task_id, terminate } => {
            app.revoke(&task_id, terminate).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"revoked": task_id, "terminate": terminate})
                );
            } else {
                let how = if terminate { " (terminate)" } else { "" };
                println!("revoked {task_id}{how}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Events { follow, last } => events(&app, follow, last, json).await,
        Cmd::Workers => {
            let workers = app.broker().workers().await?;
            print!("{}", render::workers(&workers, json)?);
            Ok(if workers.is_empty() {
                ExitCode::from(EXIT_NOTHING)
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Beat {
            what: crate::cli::Beat::Status,
        } => {
            let store = redis_backend(&cli.conn).await?;
            let leader = store.leader().await?;
            let status = store.published_status().await?;
            print!("{}", render::beat(leader.as_ref(), status.as_ref(), json)?);
            Ok(if leader.is_none() {
                ExitCode::from(EXIT_NOTHING)
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Doctor => doctor(&cli.conn, json).await,
        Cmd::Monitor(args) => crate::monitor::run(&cli.conn, &args).await,
        Cmd::DeadLetters {
            action: Some(crate::dead_letters::DeadLetterAction::Requeue(args)),
            ..
        } => crate::dead_letters::requeue(&app, &args, json).await,
        Cmd::DeadLetters { queue, limit, .. } => {
            let queue = queue.unwrap_or_default();
            let dead = app.broker().dead_letters(&queue, limit).await?;
            print!("{}", render::dead_letters(app.codec(), &dead, json)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn broadcast(app: &App, command: Command, target: &Target, json: bool) -> Res {
    let name = command.name();
    let replies: Vec<Reply> = app
        .control()
        .call(target.destination.as_deref(), command, target.timeout)
        .await?;
    print!("{}", render::replies(name, &replies, json)?);
    if replies.is_empty() {
        eprintln!("no worker replied within {:?}", target.timeout);
        return Ok(ExitCode::from(EXIT_NOTHING));
    }
    if replies
        .iter()
        .any(|r| matches!(r.body, hippo_queue_core::control::ReplyBody::Error(_)))
    {
        return Ok(ExitCode::from(EXIT_ERROR));
    }
    Ok(ExitCode::SUCCESS)
}

async fn events(app: &App, follow: bool, last: usize, json: bool) -> Res {
    // Find the cursor `last` events back: read everything kept, keep the tail.
    let mut cursor: Option<String> = None;
    let mut backlog = Vec::new();
    loop {
        let page = app.broker().events(cursor.as_deref(), 1000).await?;
        let Some((id, _)) = page.last() else { break };
        cursor = Some(id.clone());
        backlog.extend(page);
        if backlog.len() > last.saturating_mul(4).max(4000) {
            let cut = backlog.len() - last;
            backlog.drain(..cut);
        }
    }
    let skip = backlog.len().saturating_sub(last);
    for (_, e) in &backlog[skip..] {
        println!("{}", render::event(e, json)?);
    }
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        let page = app.broker().events(cursor.as_deref(), 1000).await?;
        for (id, e) in &page {
            println!("{}", render::event(e, json)?);
            cursor = Some(id.clone());
        }
        if page.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
