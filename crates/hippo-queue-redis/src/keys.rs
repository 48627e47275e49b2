//! Key names. Every key of a queue carries the hash tag `{<queue>}`, so a queue lives
//! in one Cluster slot and each script touches one slot. See `docs/redis-layout.md`.

/// The keys of one queue.
#[derive(Debug, Clone)]
pub(crate) struct QueueKeys {
    tag: String,
    pub waiting: [String; 10],
    pub delayed: String,
    pub seq: String,
    pub lessees: String,
    pub dead: String,
    /// Losses whose FAILURE record is not written yet (hash token -> record).
    pub unrecorded: String,
    pub notify: String,
    /// Exists while the queue is paused (its value: when, server ms).
    pub paused: String,
}

impl QueueKeys {
    pub(crate) fn new(prefix: &str, queue: &str) -> Self {
        let tag = format!("{prefix}:{{{queue}}}");
        QueueKeys {
            waiting: std::array::from_fn(|p| format!("{tag}:w{p}")),
            delayed: format!("{tag}:delayed"),
            seq: format!("{tag}:seq"),
            lessees: format!("{tag}:lessees"),
            dead: format!("{tag}:dead"),
            unrecorded: format!("{tag}:unrecorded"),
            notify: format!("{tag}:notify"),
            paused: format!("{tag}:paused"),
            tag,
        }
    }

    /// A worker's leases in this queue: hash token -> record.
    pub(crate) fn lease(&self, worker: &str) -> String {
        format!("{}:lease:{worker}", self.tag)
    }

    /// The tokens of a worker's leases that have started.
    pub(crate) fn started(&self, worker: &str) -> String {
        format!("{}:started:{worker}", self.tag)
    }
}

/// Keys outside any queue. Scripts touching them stay in one slot: `fleet` carries
/// the whole name of `workers` as its hash tag.
#[derive(Debug, Clone)]
pub(crate) struct GlobalKeys {
    prefix: String,
    /// Worker heartbeats: zset worker -> deadline ms (the server's clock).
    pub workers: String,
    /// Workers seen lately: zset worker -> its last heartbeat (ms, the worker's
    /// clock), trimmed to `WORKER_SEEN_FOR` and `MAX_WORKERS_SEEN` on every write.
    pub workers_seen: String,
    /// Fleet heartbeat state (hash: last, grace), in the slot of `workers`.
    pub fleet: String,
    /// The incarnation holding each worker name (hash), in the slot of `workers`.
    pub incarnations: String,
    /// Queues whose `unrecorded` hash may hold entries (set), so that any worker
    /// sweeps them, not only the workers of those queues.
    pub unrecorded_queues: String,
    /// Revocations: zset "<terminate 0|1>:<id>" -> until ms.
    pub revoked: String,
    /// Revocations in the order they were made (capped stream; field `r`:
    /// `<terminate>:<until>:<id>`), read incrementally by workers.
    pub revocation_log: String,
    /// Channel of new revocations.
    pub revocations_channel: String,
    /// Channel announcing ready results (payload: task id and record).
    pub results_channel: String,
    /// Capped stream of task and worker events.
    pub events: String,
    /// Channel of control requests.
    pub control_channel: String,
    /// Rate limits: hash task -> "N/s".
    pub rate_limits: String,
    shards: u32,
}

impl GlobalKeys {
    pub(crate) fn new(prefix: &str, shards: u32) -> Self {
        GlobalKeys {
            prefix: prefix.to_string(),
            workers: format!("{prefix}:workers"),
            workers_seen: format!("{prefix}:workers-seen"),
            fleet: format!("{prefix}:{{{prefix}:workers}}:fleet"),
            incarnations: format!("{prefix}:{{{prefix}:workers}}:incarnations"),
            unrecorded_queues: format!("{prefix}:unrecorded-queues"),
            revoked: format!("{prefix}:revoked"),
            revocation_log: format!("{prefix}:revlog"),
            revocations_channel: format!("{prefix}:chan:revocations"),
            results_channel: format!("{prefix}:chan:results"),
            events: format!("{prefix}:events"),
            control_channel: format!("{prefix}:chan:control"),
            rate_limits: format!("{prefix}:ratelimits"),
            shards: shards.max(1),
        }
    }

    /// The replies to a control request (list, expires).
    pub(crate) fn replies(&self, request_id: &str) -> String {
        format!("{}:reply:{request_id}", self.prefix)
    }

    /// A rate-limited task's next allowed start.
    pub(crate) fn rate(&self, task: &str) -> String {
        format!("{}:rate:{{{task}}}", self.prefix)
    }

    /// A worker's registry record (expires unless its heartbeat renews it).
    pub(crate) fn worker_info(&self, worker: &str) -> String {
        format!("{}:worker:{worker}", self.prefix)
    }

    /// A worker's last registry record, kept `WORKER_SEEN_FOR` after it was written.
    pub(crate) fn worker_seen(&self, worker: &str) -> String {
        format!("{}:worker-seen:{worker}", self.prefix)
    }

    /// The set of queues a worker has leased from.
    pub(crate) fn worker_queues(&self, worker: &str) -> String {
        format!("{}:wq:{worker}", self.prefix)
    }

    /// The result shard of a task id (FNV-1a).
    pub(crate) fn shard(&self, id: &str) -> u32 {
        let mut h: u32 = 0x811c_9dc5;
        for b in id.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        h % self.shards
    }

    /// The record hash of a task.
    pub(crate) fn result(&self, id: &str) -> String {
        let mut key = String::new();
        self.result_into(&mut key, self.shard(id), id);
        key
    }

    /// [`GlobalKeys::result`] written into `key` (cleared first), for a task id of
    /// `shard`.
    pub(crate) fn result_into(&self, key: &mut String, shard: u32, id: &str) {
        use std::fmt::Write as _;
        key.clear();
        let _ = write!(key, "{}:r:{{{shard}}}:{id}", self.prefix);
    }

    /// [`GlobalKeys::waiter`] written into `key` (cleared first), for a task id of
    /// `shard`.
    pub(crate) fn waiter_into(&self, key: &mut String, shard: u32, id: &str) {
        use std::fmt::Write as _;
        key.clear();
        let _ = write!(key, "{}:r:{{{shard}}}:wait:{id}", self.prefix);
    }

    /// The history index of a result shard.
    pub(crate) fn history_of_shard(&self, shard: u32) -> String {
        format!("{}:r:{{{shard}}}:history", self.prefix)
    }

    /// How many result shards there are.
    pub(crate) fn shards(&self) -> u32 {
        self.shards
    }

    /// The key that tells the store script someone waits for a task.
    pub(crate) fn waiter(&self, id: &str) -> String {
        let mut key = String::new();
        self.waiter_into(&mut key, self.shard(id), id);
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keys_share_one_hash_tag() {
        let k = QueueKeys::new("hq", "memory_ops");
        let per_worker = [k.lease("w1"), k.started("w1")];
        for key in k
            .waiting
            .iter()
            .chain([
                &k.delayed,
                &k.seq,
                &k.lessees,
                &k.dead,
                &k.unrecorded,
                &k.notify,
            ])
            .chain(per_worker.iter())
        {
            assert!(key.starts_with("hq:{memory_ops}:"), "{key}");
        }
    }

    #[test]
    fn result_and_waiter_share_a_shard() {
        let g = GlobalKeys::new("hq", 64);
        let id = "4f1c0d5e-aaaa-bbbb-cccc-000000000001";
        let tag = format!("{{{}}}", g.shard(id));
        assert!(g.result(id).contains(&tag));
        assert!(g.waiter(id).contains(&tag));
        assert!(g.shard(id) < 64);
    }
}
