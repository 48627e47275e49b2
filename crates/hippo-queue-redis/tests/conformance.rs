//! The core conformance suite on Redis, each test on its own `redis-server`, with the
//! guide's layout (broker on db 1, results on db 2).

use hippo_queue_redis::test_server as support;

use hippo_queue_core::conformance::Backends;
use hippo_queue_redis::{RedisBackend, RedisConfig};

hippo_queue_core::conformance_suite!(async {
    let server = support::RedisServer::start();
    let backend = RedisBackend::connect(RedisConfig::new(server.url(1)).results_url(server.url(2)))
        .await
        .expect("connect to the test server");
    Backends::new(backend.clone(), backend).with_guard(server)
});
