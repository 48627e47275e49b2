//! What a run leads to: the record to write and what to do with the message. Pure,
//! so that every branch (success, retry, reject, failure, limits, revocation,
//! shutdown, lost connection, kill) is tested without a worker.

use std::time::Duration;

use crate::message::RetrySpec;
use crate::retry::delay_for;
use crate::task::kinds;
use crate::{TaskFailure, TaskState};

use super::pool::{RunEnd, StopReason};

/// What the worker knows of a message when its run ends.
pub(crate) struct Facts<'a> {
    /// Acknowledged after completion.
    pub acks_late: bool,
    /// Retries so far.
    pub retries: u32,
    /// The message's retry policy.
    pub retry: &'a RetrySpec,
    /// Largest output that can be stored (the codec's size limit).
    pub max_output: usize,
    /// Requeued when its worker is lost (`acks_late` and `reject_on_worker_lost`).
    pub requeue_when_lost: bool,
    /// Deliveries so far, this one included.
    pub deliveries: u32,
    /// Deliveries after which a message that keeps losing its worker is dead-lettered.
    pub max_deliveries: u32,
}

/// What to do after a run.
#[derive(Debug, PartialEq)]
pub(crate) enum Decision {
    /// The worker was killed: write nothing (as after a crash).
    Abandon,
    /// Record `state` and settle the message.
    Finish {
        /// The state to record.
        state: TaskState,
        /// The task's output (SUCCESS only).
        output: Option<Vec<u8>>,
        /// Why it did not succeed.
        failure: Option<TaskFailure>,
        /// What to do with the message.
        next: Next,
    },
    /// Put the message back without a record (it will run again).
    Requeue,
}

/// What happens to the message of a finished run.
#[derive(Debug, PartialEq)]
pub(crate) enum Next {
    /// Remove it.
    Ack,
    /// Send it again, retry count increased, after `countdown`.
    Retry {
        /// The delay before the next attempt.
        countdown: Duration,
    },
    /// Move it to the dead letters.
    DeadLetter {
        /// Why.
        reason: String,
    },
}

fn fail(state: TaskState, failure: TaskFailure, next: Next) -> Decision {
    Decision::Finish {
        state,
        output: None,
        failure: Some(failure),
        next,
    }
}

/// Decides what a run's end leads to.
pub(crate) fn decide(end: RunEnd, facts: &Facts<'_>) -> Decision {
    match end {
        RunEnd::Killed => Decision::Abandon,
        RunEnd::Finished(Ok(output)) if output.len() > facts.max_output => fail(
            TaskState::Failure,
            TaskFailure::new(
                kinds::RESULT_TOO_LARGE,
                format!(
                    "the task's output is {} bytes, over the {} bytes a result may hold",
                    output.len(),
                    facts.max_output
                ),
            ),
            Next::Ack,
        ),
        RunEnd::Finished(Ok(output)) => Decision::Finish {
            state: TaskState::Success,
            output: Some(output),
            failure: None,
            next: Next::Ack,
        },
        RunEnd::Finished(Err(e)) if e.is_reject() => fail(
            TaskState::Rejected,
            e.to_failure(),
            Next::DeadLetter {
                reason: e.to_string(),
            },
        ),
        RunEnd::Finished(Err(e)) => {
            let wants_retry = e.retry_requested() || facts.retry.autoretries(e.kind());
            if wants_retry && facts.retries < facts.retry.max_retries {
                let countdown = e
                    .retry_countdown()
                    .unwrap_or_else(|| delay_for(facts.retry, facts.retries));
                return fail(TaskState::Retry, e.to_failure(), Next::Retry { countdown });
            }
            let mut failure = e.to_failure();
            if wants_retry {
                failure.chain.push(format!(
                    "retries exhausted ({} of max_retries={})",
                    facts.retries, facts.retry.max_retries
                ));
            }
            fail(TaskState::Failure, failure, Next::Ack)
        }
        RunEnd::Panicked(msg) => fail(
            TaskState::Failure,
            TaskFailure::new(kinds::PANIC, msg),
            Next::Ack,
        ),
        RunEnd::HardLimit(limit) => fail(
            TaskState::Failure,
            TaskFailure::new(
                kinds::TIME_LIMIT,
                format!("hard time limit ({}s) exceeded", limit.as_secs_f64()),
            ),
            Next::Ack,
        ),
        RunEnd::Stopped(StopReason::Revoked) => fail(
            TaskState::Revoked,
            TaskFailure::new(kinds::REVOKED, "terminated"),
            Next::Ack,
        ),
        RunEnd::ChildLost(why)
            if facts.requeue_when_lost && facts.deliveries >= facts.max_deliveries =>
        {
            fail(
                TaskState::Failure,
                TaskFailure::new(
                    kinds::TOO_MANY_DELIVERIES,
                    format!(
                        "its worker was lost on each of its {} deliveries; the last time {why}",
                        facts.deliveries
                    ),
                ),
                Next::DeadLetter {
                    reason: format!("worker lost {} times", facts.deliveries),
                },
            )
        }
        RunEnd::ChildLost(_) if facts.requeue_when_lost => Decision::Requeue,
        RunEnd::ChildLost(why) => fail(
            TaskState::Failure,
            TaskFailure::new(kinds::WORKER_LOST, why),
            Next::Ack,
        ),
        RunEnd::Stopped(StopReason::Shutdown | StopReason::ConnectionLost) if facts.acks_late => {
            Decision::Requeue
        }
        RunEnd::Stopped(StopReason::Shutdown) => fail(
            TaskState::Failure,
            TaskFailure::new(
                kinds::WORKER_SHUTDOWN,
                "the worker shut down before the task finished",
            ),
            Next::Ack,
        ),
        RunEnd::Stopped(StopReason::ConnectionLost) => fail(
            TaskState::Failure,
            TaskFailure::new(
                kinds::WORKER_LOST,
                "the worker lost its broker for longer than its lease and stopped the task",
            ),
            Next::Ack,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskError;

    fn spec(max_retries: u32) -> RetrySpec {
        RetrySpec {
            max_retries,
            autoretry_for: Vec::new(),
            delay: 1000,
            backoff: None,
            backoff_max: 600_000,
            jitter: false,
        }
    }

    fn facts(retry: &RetrySpec) -> Facts<'_> {
        Facts {
            acks_late: false,
            retries: 0,
            retry,
            max_output: 100,
            requeue_when_lost: false,
            deliveries: 1,
            max_deliveries: 5,
        }
    }

    fn state(d: &Decision) -> Option<TaskState> {
        match d {
            Decision::Finish { state, .. } => Some(*state),
            _ => None,
        }
    }

    #[test]
    fn success_is_recorded_and_acked() {
        let spec = spec(3);
        let d = decide(RunEnd::Finished(Ok(vec![1, 2])), &facts(&spec));
        assert_eq!(
            d,
            Decision::Finish {
                state: TaskState::Success,
                output: Some(vec![1, 2]),
                failure: None,
                next: Next::Ack
            }
        );
    }

    #[test]
    fn an_output_over_the_limit_is_a_failure_naming_the_sizes() {
        let spec = spec(3);
        let d = decide(RunEnd::Finished(Ok(vec![0; 101])), &facts(&spec));
        let Decision::Finish {
            state,
            failure: Some(f),
            next,
            output,
        } = d
        else {
            panic!("{d:?}")
        };
        assert_eq!((state, next, output), (TaskState::Failure, Next::Ack, None));
        assert_eq!(f.kind, kinds::RESULT_TOO_LARGE);
        assert!(f.message.contains("101 bytes"), "{}", f.message);
    }

    #[test]
    fn a_rejection_is_dead_lettered() {
        let spec = spec(3);
        let d = decide(
            RunEnd::Finished(Err(TaskError::new("input", "bad input").reject())),
            &facts(&spec),
        );
        assert_eq!(state(&d), Some(TaskState::Rejected));
        assert!(matches!(
            d,
            Decision::Finish {
                next: Next::DeadLetter { .. },
                ..
            }
        ));
    }

    #[test]
    fn a_requested_retry_waits_its_countdown_until_retries_run_out() {
        let spec = spec(2);
        let err = || TaskError::new("io", "flaky").retry_in(Duration::from_secs(7));
        let d = decide(RunEnd::Finished(Err(err())), &facts(&spec));
        assert!(matches!(
            d,
            Decision::Finish {
                state: TaskState::Retry,
                next: Next::Retry { countdown },
                ..
            } if countdown == Duration::from_secs(7)
        ));
        let exhausted = Facts {
            retries: 2,
            ..facts(&spec)
        };
        let d = decide(RunEnd::Finished(Err(err())), &exhausted);
        let Decision::Finish {
            state: TaskState::Failure,
            failure: Some(f),
            next: Next::Ack,
            ..
        } = d
        else {
            panic!("{d:?}")
        };
        assert!(f.chain.iter().any(|c| c.contains("retries exhausted")));
    }

    #[test]
    fn an_error_without_retry_is_a_failure() {
        let spec = spec(3);
        let d = decide(
            RunEnd::Finished(Err(TaskError::new("io", "x"))),
            &facts(&spec),
        );
        assert_eq!(state(&d), Some(TaskState::Failure));
    }

    #[test]
    fn panics_and_hard_limits_are_failures() {
        let spec = spec(3);
        let p = decide(RunEnd::Panicked("boom".into()), &facts(&spec));
        let h = decide(RunEnd::HardLimit(Duration::from_secs(2)), &facts(&spec));
        for (d, kind) in [(p, kinds::PANIC), (h, kinds::TIME_LIMIT)] {
            let Decision::Finish {
                state: TaskState::Failure,
                failure: Some(f),
                ..
            } = d
            else {
                panic!("{d:?}")
            };
            assert_eq!(f.kind, kind);
        }
    }

    #[test]
    fn termination_is_revoked() {
        let spec = spec(3);
        let d = decide(RunEnd::Stopped(StopReason::Revoked), &facts(&spec));
        assert_eq!(state(&d), Some(TaskState::Revoked));
    }

    #[test]
    fn shutdown_and_lost_connection_requeue_acks_late_tasks_and_fail_others() {
        let spec = spec(3);
        let late = Facts {
            acks_late: true,
            ..facts(&spec)
        };
        for reason in [StopReason::Shutdown, StopReason::ConnectionLost] {
            assert_eq!(decide(RunEnd::Stopped(reason), &late), Decision::Requeue);
            let d = decide(RunEnd::Stopped(reason), &facts(&spec));
            assert_eq!(state(&d), Some(TaskState::Failure), "{reason:?}");
        }
    }

    #[test]
    fn a_lost_child_fails_naming_how_or_requeues_until_max_deliveries() {
        let spec = spec(3);
        let lost = || RunEnd::ChildLost("killed by signal 6 (SIGABRT)".into());
        let Decision::Finish {
            state: TaskState::Failure,
            failure: Some(f),
            next: Next::Ack,
            ..
        } = decide(lost(), &facts(&spec))
        else {
            panic!("not a failure")
        };
        assert_eq!(f.kind, kinds::WORKER_LOST);
        assert!(f.message.contains("SIGABRT"), "{}", f.message);
        let requeue = Facts {
            acks_late: true,
            requeue_when_lost: true,
            ..facts(&spec)
        };
        assert_eq!(decide(lost(), &requeue), Decision::Requeue);
        let last = Facts {
            deliveries: 5,
            ..requeue
        };
        let d = decide(lost(), &last);
        assert!(
            matches!(&d, Decision::Finish { state: TaskState::Failure, next: Next::DeadLetter { .. }, failure: Some(f), .. } if f.kind == kinds::TOO_MANY_DELIVERIES),
            "{d:?}"
        );
    }

    #[test]
    fn a_killed_worker_writes_nothing() {
        let spec = spec(3);
        assert_eq!(decide(RunEnd::Killed, &facts(&spec)), Decision::Abandon);
    }
}
