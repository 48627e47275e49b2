//! The task history capability on both stores: every record exactly once, newest
//! first, across pages and (on Redis) result shards; expired records leave it.

use std::collections::HashSet;
use std::time::Duration;

use hippo_queue_core::backend::memory::MemoryBackend;
use hippo_queue_core::backend::{ResultBackend, ResultWrite, TaskHistory};
use hippo_queue_core::{TaskMeta, TaskState};
use hippo_queue_redis::test_server::RedisServer;
use hippo_queue_redis::{RedisBackend, RedisConfig};

fn write(id: &str, ttl: Duration) -> ResultWrite {
    ResultWrite {
        meta: TaskMeta::new(id, "t", TaskState::Success),
        ttl,
        compress: false,
        announce: false,
    }
}

async fn pages_cover_every_record_once<B: ResultBackend + TaskHistory>(b: &B) {
    let hour = Duration::from_secs(3600);
    for batch in 0..6 {
        let writes: Vec<ResultWrite> = (0..50)
            .map(|i| write(&format!("task-{batch}-{i:02}"), hour))
            .collect();
        b.store(&writes).await.expect("store");
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = b.task_history(cursor.as_deref(), 40).await.expect("page");
        assert!(page.tasks.len() <= 40);
        seen.extend(page.tasks.into_iter().map(|m| m.task_id));
        pages += 1;
        assert!(pages < 100, "the history does not end");
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 300, "every record once");
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        300,
        "no record twice"
    );
    // newest first: a later batch comes before an earlier one
    let batch_of = |id: &str| id.split('-').nth(1).and_then(|b| b.parse::<u32>().ok());
    let batches: Vec<u32> = seen.iter().filter_map(|id| batch_of(id)).collect();
    assert!(batches.windows(2).all(|w| w[0] >= w[1]), "{batches:?}");
    assert!(b.task_history(Some("not a cursor"), 10).await.is_err());
}

#[tokio::test]
async fn memory_history_pages() {
    pages_cover_every_record_once(&MemoryBackend::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_history_pages_and_drops_expired_records() {
    let server = RedisServer::start();
    let redis = RedisBackend::connect(RedisConfig::new(server.url(1)).results_url(server.url(2)))
        .await
        .expect("connect");
    pages_cover_every_record_once(&redis).await;

    let short = RedisBackend::connect(RedisConfig::new(server.url(3)).result_shards(1))
        .await
        .expect("connect");
    short
        .store(&[write("brief", Duration::from_millis(30))])
        .await
        .expect("store");
    // each shard's index is trimmed at most once per TRIM_EVERY (1 s): the first
    // store trimmed it, the next one due is more than a second later
    tokio::time::sleep(Duration::from_millis(1100)).await;
    short
        .store(&[write("lasting", Duration::from_secs(60))])
        .await
        .expect("store");
    let page = short.task_history(None, 10).await.expect("page");
    let ids: Vec<_> = page.tasks.iter().map(|m| m.task_id.as_str()).collect();
    assert_eq!(ids, ["lasting"]);
    assert_eq!(page.next, None);
    // the expired entry left the index itself, not only the listing
    let entries = server
        .command(&[
            "EVAL",
            "redis.call('SELECT', 3) return redis.call('ZCARD', KEYS[1])",
            "1",
            "hq:r:{0}:history",
        ])
        .expect("zcard");
    assert_eq!(entries.text(), "1");
}
