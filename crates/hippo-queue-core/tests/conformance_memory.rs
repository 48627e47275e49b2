//! The conformance suite on the in-memory backend.

use hippo_queue_core::backend::memory::MemoryBackend;
use hippo_queue_core::conformance::Backends;

hippo_queue_core::conformance_suite!(async {
    let m = MemoryBackend::new();
    Backends::new(m.clone(), m)
});
