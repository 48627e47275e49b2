//! Fault injection against real `redis-server` processes (issue 10, "Must show").
//!
//! Every scenario runs on a server of its own, counts executions through a side
//! channel the queue does not control (a counter hash keyed by task id, in database 9
//! or on a second server when the first one is the fault), prints one row of the table
//! below and asserts it:
//!
//! `| scenario | sent | SUCCESS | other final | lost | run >1 | held max | window |`
//!
//! "lost" is a task with no final record; "run >1" counts tasks whose body started
//! more than once; "held max" is the most messages leased to one worker at once
//! (sampled every 20 ms as `HLEN` of each `hq:{default}:lease:*`), against the
//! worker's prefetch window. Rows are also appended to
//! `target/tmp/fault_injection_table.md`.
//!
//! `HQ_FAULT_SCALE` (default 1) scales task counts and outage durations down for quick
//! local runs (`HQ_FAULT_SCALE=0.1`); the default run executes every scenario at full
//! size. CPU-heavy scenarios take an exclusive lock so they never share the machine.
//!
//! Worker processes are this binary re-run as `child_worker` (ignored in normal runs),
//! so a kill -9 is a real process death.

#[path = "fault_injection/harness.rs"]
mod harness;
#[path = "fault_injection/proxy.rs"]
mod proxy;

#[path = "fault_injection/bad_input.rs"]
mod bad_input;
#[path = "fault_injection/clock_skew.rs"]
mod clock_skew;
#[path = "fault_injection/fixed_name.rs"]
mod fixed_name;
#[path = "fault_injection/kill9.rs"]
mod kill9;
#[path = "fault_injection/producer_clock.rs"]
mod producer_clock;
#[path = "fault_injection/proxy_cut.rs"]
mod proxy_cut;
#[path = "fault_injection/redis_restart.rs"]
mod redis_restart;
#[path = "fault_injection/refuse_writes.rs"]
mod refuse_writes;
#[path = "fault_injection/review.rs"]
mod review;
#[path = "fault_injection/revocations.rs"]
mod revocations;

/// The worker process. Runs only when a scenario starts it (see `harness::Child`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper process started by the fault-injection scenarios"]
async fn child_worker() {
    harness::run_child_worker().await;
}

/// The sending process of `producer_clock`. Runs only when that scenario starts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper process started by the fault-injection scenarios"]
async fn child_sender() {
    producer_clock::run_child_sender().await;
}
