//! One builder per script: the keys it touches, in the order its header lists them
//! (`-- KEYS[n]` lines in `lua/<script>.lua`). Call sites add only the arguments; a
//! test checks every builder against its script's header.

use redis::{Script, ScriptInvocation};

use crate::keys::{GlobalKeys, QueueKeys};
use crate::scripts::Scripts;

/// A call of `script` with `keys`, in order.
fn call(script: &'static Script, keys: Vec<String>) -> ScriptInvocation<'static> {
    let mut inv = script.prepare_invoke();
    for k in keys {
        inv.key(k);
    }
    inv
}

/// The waiting lists, priority 0 to 9: the first ten keys of every queue script that
/// moves messages into them.
fn waiting(k: &QueueKeys) -> Vec<String> {
    k.waiting.to_vec()
}

impl QueueKeys {
    fn publish_keys(&self) -> Vec<String> {
        let mut keys = waiting(self);
        keys.extend([self.delayed.clone(), self.notify.clone()]);
        keys
    }

    fn fetch_keys(&self, worker: &str) -> Vec<String> {
        let mut keys = waiting(self);
        keys.extend([
            self.delayed.clone(),
            self.lease(worker),
            self.seq.clone(),
            self.lessees.clone(),
            self.dead.clone(),
            self.paused.clone(),
        ]);
        keys
    }

    fn pause_keys(&self) -> Vec<String> {
        vec![self.paused.clone(), self.notify.clone()]
    }

    fn start_keys(&self, worker: &str) -> Vec<String> {
        vec![self.lease(worker), self.started(worker)]
    }

    fn settle_keys(&self, worker: &str) -> Vec<String> {
        let mut keys = waiting(self);
        keys.extend([
            self.delayed.clone(),
            self.lease(worker),
            self.started(worker),
            self.dead.clone(),
            self.notify.clone(),
        ]);
        keys
    }

    fn release_keys(&self, worker: &str) -> Vec<String> {
        let mut keys = waiting(self);
        keys.extend([
            self.lease(worker),
            self.started(worker),
            self.notify.clone(),
        ]);
        keys
    }

    fn recover_keys(&self, worker: &str) -> Vec<String> {
        let mut keys = waiting(self);
        keys.extend([
            self.lease(worker),
            self.started(worker),
            self.lessees.clone(),
            self.dead.clone(),
            self.notify.clone(),
            self.unrecorded.clone(),
        ]);
        keys
    }

    fn purge_keys(&self) -> Vec<String> {
        let mut keys = waiting(self);
        keys.push(self.delayed.clone());
        keys
    }

    fn requeue_dead_keys(&self) -> Vec<String> {
        let mut keys = waiting(self);
        keys.extend([self.dead.clone(), self.notify.clone()]);
        keys
    }

    fn unrecorded_keys(&self) -> Vec<String> {
        vec![self.unrecorded.clone()]
    }

    /// `publish.lua`.
    pub(crate) fn publish(&self, s: &'static Scripts) -> ScriptInvocation<'static> {
        call(&s.publish, self.publish_keys())
    }

    /// `fetch.lua`.
    pub(crate) fn fetch(&self, s: &'static Scripts, worker: &str) -> ScriptInvocation<'static> {
        call(&s.fetch, self.fetch_keys(worker))
    }

    /// `start.lua`.
    pub(crate) fn start(&self, s: &'static Scripts, worker: &str) -> ScriptInvocation<'static> {
        call(&s.start, self.start_keys(worker))
    }

    /// `settle.lua`.
    pub(crate) fn settle(&self, s: &'static Scripts, worker: &str) -> ScriptInvocation<'static> {
        call(&s.settle, self.settle_keys(worker))
    }

    /// `release.lua`.
    pub(crate) fn release(&self, s: &'static Scripts, worker: &str) -> ScriptInvocation<'static> {
        call(&s.release, self.release_keys(worker))
    }

    /// `recover.lua`.
    pub(crate) fn recover(&self, s: &'static Scripts, worker: &str) -> ScriptInvocation<'static> {
        call(&s.recover, self.recover_keys(worker))
    }

    /// `purge.lua`.
    pub(crate) fn purge(&self, s: &'static Scripts) -> ScriptInvocation<'static> {
        call(&s.purge, self.purge_keys())
    }

    /// `requeue_dead.lua`.
    pub(crate) fn requeue_dead(&self, s: &'static Scripts) -> ScriptInvocation<'static> {
        call(&s.requeue_dead, self.requeue_dead_keys())
    }

    /// `pause.lua`.
    pub(crate) fn pause(&self, s: &'static Scripts) -> ScriptInvocation<'static> {
        call(&s.pause, self.pause_keys())
    }

    /// `unrecorded.lua`.
    pub(crate) fn unrecorded(&self, s: &'static Scripts) -> ScriptInvocation<'static> {
        call(&s.unrecorded, self.unrecorded_keys())
    }
}

impl GlobalKeys {
    fn heartbeat_keys(&self) -> Vec<String> {
        vec![
            self.workers.clone(),
            self.fleet.clone(),
            self.incarnations.clone(),
        ]
    }

    fn lost_workers_keys(&self) -> Vec<String> {
        self.heartbeat_keys()
    }

    fn forget_worker_keys(&self) -> Vec<String> {
        vec![self.workers.clone(), self.incarnations.clone()]
    }

    fn worker_state_keys(&self) -> Vec<String> {
        vec![self.workers.clone()]
    }

    fn rate_keys(&self, task: &str) -> Vec<String> {
        vec![self.rate(task)]
    }

    /// `heartbeat.lua`.
    pub(crate) fn heartbeat(&self, s: &'static Scripts) -> ScriptInvocation<'static> {
        call(&s.heartbeat, self.heartbeat_keys())
    }

    /// `lost_workers.lua`.
    pub(crate) fn lost_workers(&self, s: &'static Scripts) -> ScriptInvocation<'static> {
        call(&s.lost_workers, self.lost_workers_keys())
    }

    /// `forget_worker.lua`.
    pub(crate) fn forget_worker(&self, s: &'static Scripts) -> ScriptInvocation<'static> {
        call(&s.forget_worker, self.forget_worker_keys())
    }

    /// `worker_state.lua`.
    pub(crate) fn worker_state(&self, s: &'static Scripts) -> ScriptInvocation<'static> {
        call(&s.worker_state, self.worker_state_keys())
    }

    /// `rate.lua`.
    pub(crate) fn rate_limit(&self, s: &'static Scripts, task: &str) -> ScriptInvocation<'static> {
        call(&s.rate, self.rate_keys(task))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many keys a script's header declares (`-- KEYS[1..10]`, `-- KEYS[11]`).
    fn declared(source: &str) -> usize {
        source
            .lines()
            .filter_map(|l| l.strip_prefix("-- KEYS["))
            .filter_map(|rest| rest.split(']').next())
            .filter_map(|n| n.rsplit("..").next()?.parse::<usize>().ok())
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn every_builder_pushes_the_keys_its_script_declares() {
        let q = QueueKeys::new("hq", "default");
        let g = GlobalKeys::new("hq", 64);
        let w = "w1";
        let cases: [(&str, Vec<String>); 15] = [
            (include_str!("lua/publish.lua"), q.publish_keys()),
            (include_str!("lua/fetch.lua"), q.fetch_keys(w)),
            (include_str!("lua/start.lua"), q.start_keys(w)),
            (include_str!("lua/settle.lua"), q.settle_keys(w)),
            (include_str!("lua/release.lua"), q.release_keys(w)),
            (include_str!("lua/recover.lua"), q.recover_keys(w)),
            (include_str!("lua/purge.lua"), q.purge_keys()),
            (include_str!("lua/requeue_dead.lua"), q.requeue_dead_keys()),
            (include_str!("lua/unrecorded.lua"), q.unrecorded_keys()),
            (include_str!("lua/pause.lua"), q.pause_keys()),
            (include_str!("lua/heartbeat.lua"), g.heartbeat_keys()),
            (include_str!("lua/lost_workers.lua"), g.lost_workers_keys()),
            (include_str!("lua/worker_state.lua"), g.worker_state_keys()),
            (
                include_str!("lua/forget_worker.lua"),
                g.forget_worker_keys(),
            ),
            (include_str!("lua/rate.lua"), g.rate_keys("t")),
        ];
        for (source, keys) in cases {
            let name = source.lines().next().unwrap_or_default();
            assert_eq!(declared(source), keys.len(), "{name}");
        }
    }

    #[test]
    fn a_queue_script_stays_in_the_queue_slot() {
        let q = QueueKeys::new("hq", "memory_ops");
        for k in q
            .recover_keys("w1")
            .iter()
            .chain(&q.fetch_keys("w1"))
            .chain(&q.requeue_dead_keys())
            .chain(&q.pause_keys())
        {
            assert!(k.starts_with("hq:{memory_ops}:"), "{k}");
        }
    }
}
