//! A remote client of the API: the guide's `MemoryClient(mode="remote")`. It submits
//! a task over HTTP with `hippo_memory_tasks::api::client::ApiClient` (feature
//! `api-client`), then follows its status until it is ready.
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
//! The exit status is 0 when the task succeeded, 1 when it failed or was revoked or
//! the API refused the request, 2 on a usage or connection error, 3 when `--timeout`
//! passed first.

use std::time::Duration;

use clap::{Parser, Subcommand};
use hippo_memory_tasks::api::client::{ApiClient, ApiClientError, Submission};
use hippo_memory_tasks::api::wire::{
    ConsolidationRequest, DeduplicationRequest, MigrateRequest, OptionalUserRequest,
    SummarizationRequest, UserRequest,
};
use hippo_memory_tasks::client::TaskStatus;
use hippo_memory_tasks::model::MigrationStatus;

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
        /// 0..1; default: the embedding model's.
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
        /// 0..1; default: the embedding model's.
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
    /// Compress old memories (their originals are kept).
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

impl From<ApiClientError> for Failure {
    fn from(e: ApiClientError) -> Self {
        let code = match &e {
            ApiClientError::Api { .. } => 1,
            ApiClientError::StillRunning { .. } => 3,
            _ => 2,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    if let Err(f) = run(args).await {
        eprintln!("client: {}", f.message);
        std::process::exit(f.code);
    }
}

fn print_state(s: &TaskStatus) {
    say!("Status: {}", s.state);
}

/// Prints a finished task's result or error; fails unless it succeeded.
fn report(status: &TaskStatus) -> Result<(), Failure> {
    if status.state == "SUCCESS" {
        let pretty = serde_json::to_string_pretty(&status.result).unwrap_or_default();
        say!("Result: {pretty}");
        return Ok(());
    }
    if let Some(tb) = &status.traceback {
        say!("Error: {tb}");
    }
    Err(Failure {
        code: 1,
        message: format!("the task ended in {}", status.state),
    })
}

/// Starts a migration and, unless `--no-wait`, follows it to its end.
async fn migrate(api: &ApiClient, args: &Args, request: MigrateRequest) -> Result<(), Failure> {
    let started = api.start_migration(&request).await?;
    say!(
        "Migration {} started by task {}",
        started.migration_id,
        started.task_id
    );
    if args.no_wait {
        return Ok(());
    }
    let timeout = Duration::from_secs(args.timeout);
    let m = api
        .follow_migration(&started.migration_id, timeout, |m| {
            say!(
                "Migration {}: {} of {} migrated, {} failed",
                m.status.as_str(),
                m.migrated_count,
                m.total_memories,
                m.failed_count
            );
        })
        .await?;
    if m.status == MigrationStatus::Completed {
        return Ok(());
    }
    Err(Failure {
        code: 1,
        message: format!(
            "the migration ended {} {}",
            m.status.as_str(),
            m.error.unwrap_or_default()
        ),
    })
}

async fn run(args: Args) -> Result<(), Failure> {
    let api = ApiClient::new(&args.api_url)?;
    let submitted = match &args.command {
        Command::Migrate {
            new_model,
            new_dimension,
        } => {
            let mut r = MigrateRequest::new(new_model);
            r.new_dimension = *new_dimension;
            return migrate(&api, &args, r).await;
        }
        Command::Cancel { task_id } => {
            let revoked = api.revoke(task_id, true).await?;
            say!("Task {task_id} revoked (it was {})", revoked.state);
            return Ok(());
        }
        Command::Status { task_id } => task_id.clone(),
        Command::Deduplication {
            user_id,
            similarity_threshold,
            dry_run,
        } => {
            let mut r = DeduplicationRequest::new(user_id);
            r.similarity_threshold = *similarity_threshold;
            r.dry_run = *dry_run;
            announce(api.deduplication(&r).await?)
        }
        Command::Consolidation {
            user_id,
            similarity_threshold,
        } => {
            let mut r = ConsolidationRequest::new(user_id);
            r.similarity_threshold = *similarity_threshold;
            announce(api.consolidation(&r).await?)
        }
        Command::HealthCheck { user_id } => announce(
            api.health_check(&OptionalUserRequest::new(user_id.clone()))
                .await?,
        ),
        Command::Summarization {
            user_id,
            min_age_days,
        } => {
            let mut r = SummarizationRequest::new(user_id);
            r.min_age_days = *min_age_days;
            announce(api.summarization(&r).await?)
        }
        Command::Compression { user_id } => {
            announce(api.compression(&UserRequest::new(user_id)).await?)
        }
        Command::Expiration { user_id } => announce(
            api.expiration(&OptionalUserRequest::new(user_id.clone()))
                .await?,
        ),
        Command::Procedural { user_id } => announce(api.consolidate_rules(user_id).await?),
    };
    let task_id = submitted;
    if args.no_wait {
        print_state(&api.task_status(&task_id).await?);
        return Ok(());
    }
    let status = api
        .follow(&task_id, Duration::from_secs(args.timeout), print_state)
        .await?;
    report(&status)
}

/// Says that a task was submitted; returns its id.
fn announce(s: Submission) -> String {
    if let Submission::Queued(q) = &s {
        say!("Task submitted: {} (queue {})", q.task_id, q.queue);
    }
    s.task_id().to_string()
}
