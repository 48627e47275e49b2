//! The Redis server's clock, seen from this process.
//!
//! Due times of delayed messages are compared with the server's `TIME` inside the
//! scripts, but a countdown becomes a due time in the process that sends it (an
//! envelope's `eta` is milliseconds since the epoch on the sender's clock). The backend
//! measures how far the server's clock is from its own (at connect, then on every
//! heartbeat) and moves each due time it writes by that much, so a countdown of 10 s
//! means 10 s on the server whatever the sender's clock says.

use std::sync::atomic::{AtomicI64, Ordering};

/// The server's clock minus this process's, in ms.
#[derive(Debug, Default)]
pub(crate) struct ServerClock {
    offset_ms: AtomicI64,
}

/// The offset of a server reading `server_ms`, taken between `sent_ms` and
/// `received_ms` on this process's clock (the reading is assumed half-way).
pub(crate) fn offset(server_ms: u64, sent_ms: u64, received_ms: u64) -> i64 {
    let local = sent_ms / 2 + received_ms / 2 + (sent_ms % 2 + received_ms % 2) / 2;
    server_ms as i64 - local as i64
}

impl ServerClock {
    /// Records a reading of the server's clock.
    pub(crate) fn observe(&self, server_ms: u64, sent_ms: u64, received_ms: u64) {
        self.offset_ms
            .store(offset(server_ms, sent_ms, received_ms), Ordering::Relaxed);
    }

    /// The server's clock minus this process's, in ms, as last measured.
    pub(crate) fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    /// A due time on this process's clock, on the server's (0 stays 0: "now").
    pub(crate) fn to_server(&self, local_ms: u64) -> u64 {
        if local_ms == 0 {
            return 0;
        }
        let moved = local_ms as i64 + self.offset_ms.load(Ordering::Relaxed);
        moved.max(1) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_measured_half_way_and_applied_to_due_times() {
        assert_eq!(offset(10_000, 1_000, 1_002), 8_999);
        let c = ServerClock::default();
        assert_eq!(c.to_server(5_000), 5_000);
        // a process 15 s behind the server
        c.observe(100_000, 85_000, 85_000);
        assert_eq!(c.to_server(90_000), 105_000);
        assert_eq!(c.to_server(0), 0, "now stays now");
        // 15 s ahead
        c.observe(100_000, 115_000, 115_000);
        assert_eq!(c.to_server(10_000), 1, "never 0 nor negative");
    }
}
