//! The backend conformance suite: the behaviours every [`Broker`] and
//! [`ResultBackend`] must show, run through real workers.
//!
//! A backend crate runs the whole suite from one integration test file:
//!
//! ```ignore
//! hippo_queue_core::conformance_suite!(async {
//!     let backend = MyBackend::connect(...).await.unwrap();
//!     hippo_queue_core::conformance::Backends::new(backend.clone(), backend)
//! });
//! ```
//!
//! The factory is called once per test and must return fresh, empty backends.
//!
//! One file per behaviour: `delivery`, `retries`, `execution`, `revocation`,
//! `recovery`, `shutdown`, `results`, `control`, `events`, `monitoring`; the test tasks in `tasks`
//! and what the checks share in `support`.

use std::sync::Arc;

use crate::backend::{Broker, ResultBackend};
use crate::{App, Router};

mod control;
mod delivery;
mod events;
mod execution;
mod monitoring;
mod recovery;
mod results;
mod retries;
mod revocation;
mod shutdown;
mod support;
mod tasks;

pub use control::*;
pub use delivery::*;
pub use events::*;
pub use execution::*;
pub use monitoring::*;
pub use recovery::*;
pub use results::*;
pub use retries::*;
pub use revocation::*;
pub use shutdown::*;

/// The backends under test.
#[derive(Clone)]
pub struct Backends {
    /// The broker.
    pub broker: Arc<dyn Broker>,
    /// The result backend.
    pub results: Arc<dyn ResultBackend>,
    guard: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl Backends {
    /// Wraps a broker and a result backend.
    pub fn new(broker: impl Broker, results: impl ResultBackend) -> Self {
        Backends {
            broker: Arc::new(broker),
            results: Arc::new(results),
            guard: None,
        }
    }

    /// Keeps `guard` (a test server, a temporary directory) alive as long as the test.
    pub fn with_guard(mut self, guard: impl std::any::Any + Send + Sync) -> Self {
        self.guard = Some(Arc::new(guard));
        self
    }

    /// Whether a guard is attached.
    pub fn has_guard(&self) -> bool {
        self.guard.is_some()
    }

    fn app(&self, router: Router) -> App {
        App::builder()
            .broker(self.broker.clone())
            .backend(self.results.clone())
            .router(router)
            .build()
    }
}

/// Generates one `#[tokio::test]` per conformance check, each on fresh backends from
/// `$factory` (an expression evaluating to a future of [`Backends`]).
#[macro_export]
macro_rules! conformance_suite {
    ($factory:expr) => {
        $crate::conformance_suite!(@tests $factory;
            priority_order, queue_priority_fairness, topic_routing, retry_count_and_backoff,
            retry_waits_in_broker, autoretry_only_chosen_kinds, soft_then_hard_limit,
            soft_limit_cleanup, revoke_before_start, revocation_is_durable,
            revoke_running_with_terminate, expired_task_is_revoked, lost_worker_recovery,
            killed_worker_acks_late, killed_worker_early_ack, graceful_shutdown,
            shutdown_grace_expires, result_expiry, garbage_messages, fencing, panic_is_failure,
            get_waits_and_times_out, call_round_trip, countdown_not_early, consumers_change, bulk_send,
            ignore_result, compressed_result, too_many_deliveries, blocking_and_solo_pools,
            events_and_registry, revoke_running_keeps_result, redelivered_finished_not_rerun,
            control_inspect, control_commands, rate_limit_across_workers, autoscale,
            control_input_validated, revocations_read_incrementally, worker_names_and_leases,
            one_name_started_twice_at_once, lost_fetch_reply_reconciled, dead_letters_requeued,
            workers_seen_after_they_stop, oldest_waiting_per_priority, events_read_backwards
        );
    };
    (@tests $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let backends = $factory.await;
                $crate::conformance::$name(backends).await;
            }
        )*
    };
}
