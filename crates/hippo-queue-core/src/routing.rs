//! Queues, routing keys and task routes.
//!
//! A [`Queue`] is bound to a routing-key pattern with AMQP topic rules: words are
//! separated by dots, `*` matches exactly one word and `#` matches zero or more words.
//! A [`Router`] picks the queue of each task:
//!
//! 1. the queue named in the call's options;
//! 2. the queue bound to the call's routing key;
//! 3. the task route for the task's name ([`Router::route`]);
//! 4. the task's default queue, then the queue bound to its default routing key;
//! 5. the default queue.
//!
//! ```
//! use hippo_queue_core::routing::{Router, topic_matches};
//! assert!(topic_matches("memory.#", "memory.dedup"));
//! assert!(topic_matches("memory.#", "memory"));
//! assert!(!topic_matches("memory.*", "memory.a.b"));
//!
//! let router = Router::guide_preset();
//! assert_eq!(router.queue_for_key("background.health").unwrap().name, "background");
//! assert_eq!(router.default_queue(), "default");
//! ```

use serde::{Deserialize, Serialize};

/// A queue and the routing-key pattern it is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queue {
    /// The queue's name, as workers consume it.
    pub name: String,
    /// The routing-key pattern (topic rules) bound to this queue.
    pub routing_key: String,
    /// Queue priority, 0-9, higher served first by a worker consuming several queues.
    pub priority: u8,
}

impl Queue {
    /// A queue bound to its own name, priority 5.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Queue {
            routing_key: name.clone(),
            name,
            priority: 5,
        }
    }

    /// Binds the queue to a routing-key pattern.
    pub fn routing_key(mut self, pattern: impl Into<String>) -> Self {
        self.routing_key = pattern.into();
        self
    }

    /// Sets the queue priority (clamped to 0-9).
    pub fn priority(mut self, priority: u8) -> Self {
        self.priority = priority.min(9);
        self
    }
}

/// Why a task could not be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoutingError {
    /// No declared queue is bound to a pattern matching the routing key.
    #[error("no queue is bound to routing key {0:?}: declare a queue whose pattern matches it")]
    NoQueueForKey(String),
    /// A queue name is empty or has characters that cannot be used in keys.
    #[error("invalid queue name {0:?}: use letters, digits, '.', '-', '_' or ':'")]
    InvalidQueueName(String),
}

/// Whether an AMQP topic `pattern` matches `key`.
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    matches_words(&p, &k)
}

fn matches_words(p: &[&str], k: &[&str]) -> bool {
    match p.split_first() {
        None => k.is_empty(),
        Some((&"#", rest)) => (0..=k.len()).any(|skip| matches_words(rest, &k[skip..])),
        Some((&w, rest)) => match k.split_first() {
            Some((&kw, krest)) => (w == "*" || w == kw) && matches_words(rest, krest),
            None => false,
        },
    }
}

/// Checks that a queue name is usable: non-empty, at most 200 bytes, and made of
/// letters, digits and `.-_:`.
pub fn validate_queue_name(name: &str) -> Result<(), RoutingError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if ok {
        Ok(())
    } else {
        Err(RoutingError::InvalidQueueName(name.to_string()))
    }
}

/// A task route: tasks whose name matches `task` (exact, or a glob with `*`) go to
/// `queue`, with `routing_key` when given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Task name or glob (`hippocampai.*`).
    pub task: String,
    /// Target queue.
    pub queue: String,
    /// Routing key recorded on the message.
    pub routing_key: Option<String>,
}

/// Declared queues, task routes and the default queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Router {
    queues: Vec<Queue>,
    routes: Vec<Route>,
    default_queue: String,
}

impl Default for Router {
    fn default() -> Self {
        Router::new("default")
    }
}

/// Where a task goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The queue.
    pub queue: String,
    /// The routing key recorded on the message.
    pub routing_key: String,
}

impl Router {
    /// A router with one queue, `default_queue`, bound to its own name.
    pub fn new(default_queue: impl Into<String>) -> Self {
        let default_queue = default_queue.into();
        Router {
            queues: vec![Queue::new(default_queue.clone())],
            routes: Vec::new(),
            default_queue,
        }
    }

    /// The guide's four queues: `memory_ops` (`memory.#`, priority 9), `default`
    /// (`default`, 5), `background` (`background.#`, 3) and `scheduled`
    /// (`scheduled.#`, 1), with `default` as the default queue.
    pub fn guide_preset() -> Self {
        Router::new("default")
            .queue(Queue::new("memory_ops").routing_key("memory.#").priority(9))
            .queue(
                Queue::new("background")
                    .routing_key("background.#")
                    .priority(3),
            )
            .queue(
                Queue::new("scheduled")
                    .routing_key("scheduled.#")
                    .priority(1),
            )
    }

    /// Declares a queue (replacing one of the same name).
    pub fn queue(mut self, queue: Queue) -> Self {
        self.queues.retain(|q| q.name != queue.name);
        self.queues.push(queue);
        self
    }

    /// Adds a task route; earlier routes win.
    pub fn route(
        mut self,
        task: impl Into<String>,
        queue: impl Into<String>,
        routing_key: Option<&str>,
    ) -> Self {
        self.routes.push(Route {
            task: task.into(),
            queue: queue.into(),
            routing_key: routing_key.map(str::to_string),
        });
        self
    }

    /// The task routes, in the order they are tried.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The declared queues.
    pub fn queues(&self) -> &[Queue] {
        &self.queues
    }

    /// The default queue's name.
    pub fn default_queue(&self) -> &str {
        &self.default_queue
    }

    /// The declared queue with this name.
    pub fn get(&self, name: &str) -> Option<&Queue> {
        self.queues.iter().find(|q| q.name == name)
    }

    /// The priority of a queue (5 for an undeclared one).
    pub fn queue_priority(&self, name: &str) -> u8 {
        self.get(name).map_or(5, |q| q.priority)
    }

    /// The first declared queue whose pattern matches `key`, highest queue priority
    /// first.
    pub fn queue_for_key(&self, key: &str) -> Result<&Queue, RoutingError> {
        self.queues
            .iter()
            .filter(|q| topic_matches(&q.routing_key, key))
            .max_by_key(|q| q.priority)
            .ok_or_else(|| RoutingError::NoQueueForKey(key.to_string()))
    }

    /// Resolves the destination of a task from the call's and the task's options.
    pub fn resolve(
        &self,
        task_name: &str,
        call_queue: Option<&str>,
        call_key: Option<&str>,
        task_queue: Option<&str>,
        task_key: Option<&str>,
    ) -> Result<Destination, RoutingError> {
        if let Some(q) = call_queue {
            return self.to_queue(q, call_key);
        }
        if let Some(key) = call_key {
            return self.by_key(key);
        }
        if let Some(r) = self
            .routes
            .iter()
            .find(|r| glob_matches(&r.task, task_name))
        {
            return self.to_queue(&r.queue, r.routing_key.as_deref());
        }
        if let Some(q) = task_queue {
            return self.to_queue(q, task_key);
        }
        if let Some(key) = task_key {
            return self.by_key(key);
        }
        self.to_queue(&self.default_queue, None)
    }

    fn by_key(&self, key: &str) -> Result<Destination, RoutingError> {
        let q = self.queue_for_key(key)?;
        Ok(Destination {
            queue: q.name.clone(),
            routing_key: key.to_string(),
        })
    }

    fn to_queue(&self, queue: &str, key: Option<&str>) -> Result<Destination, RoutingError> {
        validate_queue_name(queue)?;
        let routing_key = match key {
            Some(k) => k.to_string(),
            None => self
                .get(queue)
                .map_or_else(|| queue.to_string(), |q| q.routing_key.clone()),
        };
        Ok(Destination {
            queue: queue.to_string(),
            routing_key,
        })
    }
}

fn glob_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.len() >= head.len()
                && name.starts_with(head)
                && (0..=name.len() - head.len())
                    .filter(|i| name.is_char_boundary(head.len() + i))
                    .any(|i| glob_matches(tail, &name[head.len() + i..]))
        }
    }
}

/// The order in which a worker visits the queues it consumes on its `n`-th fetch.
///
/// The rule: queues are visited by descending queue priority (ties by name), except
/// that every `fairness_interval`-th fetch starts the visit at another queue, cycling
/// through them. A queue with waiting messages is therefore served at least once every
/// `fairness_interval * queues` fetches, however busy the queues above it are.
///
/// ```
/// use hippo_queue_core::routing::fetch_order;
/// let qs = [("low".to_string(), 1u8), ("high".to_string(), 9u8)];
/// assert_eq!(fetch_order(&qs, 1, 8), ["high", "low"]);
/// assert_eq!(fetch_order(&qs, 8, 8), ["low", "high"]);
/// ```
pub fn fetch_order(queues: &[(String, u8)], n: u64, fairness_interval: u64) -> Vec<String> {
    let mut sorted: Vec<&(String, u8)> = queues.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut names: Vec<String> = sorted.into_iter().map(|q| q.0.clone()).collect();
    if fairness_interval > 0 && n > 0 && n.is_multiple_of(fairness_interval) && names.len() > 1 {
        let round = n / fairness_interval;
        let shift = 1 + (round as usize - 1) % (names.len() - 1);
        names.rotate_left(shift);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_rules() {
        assert!(topic_matches("default", "default"));
        assert!(!topic_matches("default", "default.x"));
        assert!(topic_matches("memory.#", "memory"));
        assert!(topic_matches("memory.#", "memory.dedup.fast"));
        assert!(!topic_matches("memory.#", "memoryx.dedup"));
        assert!(topic_matches("*.dedup", "memory.dedup"));
        assert!(!topic_matches("*.dedup", "dedup"));
        assert!(topic_matches("#.dedup", "dedup"));
        assert!(topic_matches("a.#.z", "a.z"));
        assert!(topic_matches("a.#.z", "a.b.c.z"));
        assert!(!topic_matches("a.#.z", "a.b.c"));
        assert!(topic_matches("#", ""));
        assert!(topic_matches("*.*", "a.b"));
        assert!(!topic_matches("*.*", "a"));
    }

    #[test]
    fn resolution_order() {
        let r = Router::guide_preset().route(
            "hippocampai.health*",
            "background",
            Some("background.health"),
        );
        let d = r
            .resolve("x", Some("scheduled"), None, Some("memory_ops"), None)
            .unwrap();
        assert_eq!(d.queue, "scheduled");
        assert_eq!(d.routing_key, "scheduled.#");
        let d = r
            .resolve("x", None, Some("memory.dedup"), Some("background"), None)
            .unwrap();
        assert_eq!(
            (d.queue.as_str(), d.routing_key.as_str()),
            ("memory_ops", "memory.dedup")
        );
        let d = r
            .resolve(
                "hippocampai.health_check",
                None,
                None,
                Some("memory_ops"),
                None,
            )
            .unwrap();
        assert_eq!(d.queue, "background");
        let d = r
            .resolve("t", None, None, None, Some("background.x.y"))
            .unwrap();
        assert_eq!(d.queue, "background");
        let d = r.resolve("t", None, None, None, None).unwrap();
        assert_eq!(d.queue, "default");
        assert_eq!(
            r.resolve("t", None, Some("nowhere.x"), None, None)
                .unwrap_err(),
            RoutingError::NoQueueForKey("nowhere.x".into())
        );
        assert!(r.resolve("t", Some("bad queue"), None, None, None).is_err());
    }

    #[test]
    fn globs() {
        assert!(glob_matches("a.*", "a.b"));
        assert!(glob_matches("*", "anything"));
        assert!(glob_matches("a*c", "abbbc"));
        assert!(!glob_matches("a*c", "abbb"));
        assert!(glob_matches("exact", "exact"));
    }

    #[test]
    fn fairness_serves_every_queue() {
        let qs = vec![
            ("a".to_string(), 9u8),
            ("b".to_string(), 5u8),
            ("c".to_string(), 1u8),
        ];
        let mut first = std::collections::HashMap::new();
        for n in 1..=16u64 {
            *first.entry(fetch_order(&qs, n, 8)[0].clone()).or_insert(0) += 1;
        }
        assert_eq!(first["a"], 14);
        assert_eq!(first["b"], 1);
        assert_eq!(first["c"], 1);
    }
}
