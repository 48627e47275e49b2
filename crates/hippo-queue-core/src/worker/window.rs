//! The prefetch window: every message a worker holds, from the fetch that leased it
//! to the settle that was written for it.
//!
//! A message counts while it is reserved, while it runs, and while its result and
//! settlement wait to be written, so a slow result backend holds fetching back
//! instead of letting finished tasks pile up in memory. Each held message is a
//! [`Hold`]; dropping it (after its settle was written, or when the message will
//! never be settled by this worker) frees its place and wakes the fetcher.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::backend::{Delivery, DeliveryRef};

/// The messages a worker holds, by queue and fencing token.
#[derive(Default)]
pub(crate) struct Window {
    /// Tokens held, by queue (tokens are unique within a queue).
    held: Mutex<HashMap<String, HashSet<u64>>>,
    /// How many are held (the sum of `held`'s sets, readable without the lock).
    count: AtomicUsize,
    /// Notified whenever a message leaves the window.
    freed: Notify,
}

/// One message's place in the window; dropping it frees the place.
pub(crate) struct Hold {
    window: Arc<Window>,
    delivery: Arc<Delivery>,
}

impl Window {
    /// Takes a place for a message just leased.
    pub(crate) fn hold(self: &Arc<Self>, d: &Arc<Delivery>) -> Hold {
        {
            let mut held = self.lock();
            match held.get_mut(&d.queue) {
                Some(tokens) => {
                    tokens.insert(d.token);
                }
                None => {
                    held.insert(d.queue.clone(), HashSet::from([d.token]));
                }
            }
        }
        self.count.fetch_add(1, Ordering::AcqRel);
        Hold {
            window: self.clone(),
            delivery: d.clone(),
        }
    }

    /// How many messages are held.
    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Completes when a message leaves the window (create it before checking the
    /// count, then await it).
    pub(crate) fn freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
    }

    /// Wakes the fetcher (the window grew).
    pub(crate) fn wake(&self) {
        self.freed.notify_one();
    }

    /// The leases among `leases` that this worker does not hold: their fetch reply
    /// never reached it.
    pub(crate) fn unknown(&self, leases: Vec<DeliveryRef>) -> Vec<DeliveryRef> {
        let held = self.lock();
        leases
            .into_iter()
            .filter(|l| !held.get(&l.queue).is_some_and(|t| t.contains(&l.token)))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<u64>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let d = &self.delivery;
        if let Some(tokens) = self.window.lock().get_mut(&d.queue) {
            tokens.remove(&d.token);
        }
        self.window.count.fetch_sub(1, Ordering::AcqRel);
        // One waiter (the fetch loop), and a stored permit if it is not waiting yet.
        self.window.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(queue: &str, token: u64) -> Arc<Delivery> {
        Arc::new(Delivery {
            id: format!("t{token}"),
            queue: queue.into(),
            priority: 0,
            payload: Vec::new(),
            token,
            deliveries: 1,
            flags: Default::default(),
        })
    }

    #[test]
    fn holds_count_until_dropped_and_unknown_leases_are_found() {
        let w = Arc::new(Window::default());
        let a = w.hold(&delivery("q", 1));
        let b = w.hold(&delivery("q", 2));
        assert_eq!(w.len(), 2);
        let lease = |q: &str, token| DeliveryRef {
            id: String::new(),
            queue: q.into(),
            token,
        };
        let unknown = w.unknown(vec![lease("q", 1), lease("q", 3), lease("r", 1)]);
        assert_eq!(unknown, vec![lease("q", 3), lease("r", 1)]);
        drop(a);
        assert_eq!(w.len(), 1);
        assert_eq!(w.unknown(vec![lease("q", 1)]).len(), 1);
        drop(b);
        assert_eq!(w.len(), 0);
    }
}
