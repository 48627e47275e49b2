//! Helpers shared by the integration tests: both stores, eager runs, fixtures.
#![allow(dead_code)]

pub mod hooked;
pub mod model;

use std::sync::Arc;

use chrono::{Duration, Utc};
use hippo_memory_tasks::model::{Memory, MemoryType};
use hippo_memory_tasks::store::{InMemoryStore, MemoryStore, RedisStore, RedisStoreConfig};
use hippo_memory_tasks::tasks::{MemoryServices, register_all};
use hippo_queue_core::testing::EagerResult;
use hippo_queue_core::{App, Task, TaskState};
use hippo_queue_redis::test_server::RedisServer;

/// A store under test, and the Redis server behind it when there is one.
pub struct Backend {
    pub label: &'static str,
    pub store: Arc<dyn MemoryStore>,
    pub server: Option<RedisServer>,
}

/// The in-memory store, and a Redis store on a fresh server.
pub async fn backends() -> Vec<Backend> {
    let server = RedisServer::start();
    let redis = RedisStore::connect(RedisStoreConfig::new(server.url(0)).prefix("t"))
        .await
        .expect("redis store");
    vec![
        Backend {
            label: "memory",
            store: Arc::new(InMemoryStore::new()),
            server: None,
        },
        Backend {
            label: "redis",
            store: Arc::new(redis),
            server: Some(server),
        },
    ]
}

/// An in-memory app with the guide's queues and every task registered.
pub fn app(services: &MemoryServices) -> App {
    let app = App::builder().router(hippo_memory_tasks::router()).build();
    register_all(&app, services);
    app
}

/// Runs a task inline; panics on a queue error.
pub async fn run<T: Task>(app: &App, args: T::Args) -> EagerResult<T::Output> {
    app.apply::<T>(args).await.expect("eager run")
}

/// The output of a successful run.
pub fn ok<T>(r: EagerResult<T>, label: &str) -> T {
    match r.output {
        Ok(v) => v,
        Err(f) => panic!("[{label}] task failed: {f}"),
    }
}

/// Asserts a run was rejected with a message containing `needle`.
pub fn rejected<T: std::fmt::Debug>(r: EagerResult<T>, needle: &str, label: &str) {
    assert_eq!(r.state, TaskState::Rejected, "[{label}] {:?}", r.output);
    let f = r.output.expect_err("a failure");
    assert_eq!(f.kind, "InvalidArgument", "[{label}]");
    assert!(
        f.message.contains(needle),
        "[{label}] {:?} does not mention {needle:?}",
        f.message
    );
    assert_eq!(r.retries, 0, "[{label}] argument errors are not retried");
}

/// A memory of `user`, `age_days` old, accessed `access` times.
pub fn memory(user: &str, text: &str, age_days: i64, access: u64) -> Memory {
    let mut m = Memory::new(user, text, MemoryType::Fact);
    m.created_at = Utc::now() - Duration::days(age_days);
    m.updated_at = m.created_at;
    m.access_count = access;
    m
}

/// Every memory of a user, sorted by id.
pub async fn all(store: &dyn MemoryStore, user: &str) -> Vec<Memory> {
    hippo_memory_tasks::store::load_user(store, user)
        .await
        .expect("load")
}

/// A deterministic generator.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

pub const NAMES: &[&str] = &[
    "Alice", "Bruno", "Chen", "Dana", "Emeka", "Farah", "Gustav", "Hana", "Ivan", "Jonas", "Keiko",
    "Liam", "Maya", "Nora", "Omar", "Priya",
];
pub const VERBS: &[&str] = &[
    "prefers",
    "booked",
    "forgot",
    "repaired",
    "painted",
    "ordered",
    "visited",
    "cancelled",
    "recommended",
    "borrowed",
    "planned",
    "reviewed",
];
pub const THINGS: &[&str] = &[
    "the blue bicycle",
    "a table at the harbour restaurant",
    "the quarterly tax report",
    "tickets for the jazz festival",
    "the kitchen sink",
    "a vegan birthday cake",
    "the old lighthouse",
    "a train to Porto",
    "the chess club meeting",
    "a ceramics class",
    "the garden shed",
    "an electric kettle",
    "the dentist appointment",
    "a hiking map of Madeira",
];
pub const WHEN: &[&str] = &[
    "on Monday morning",
    "last weekend",
    "before the holidays",
    "after work on Friday",
    "in early spring",
    "during the conference",
    "at the end of the month",
    "yesterday evening",
];

/// `n` sentences from the word lists, any two differing in at least three of their
/// five slots, the two times taken as a set (so they are different memories, not
/// rewordings).
pub fn unique_sentences(n: usize, seed: u64) -> Vec<String> {
    let mut rng = Lcg(seed);
    let mut chosen: Vec<[usize; 5]> = Vec::new();
    let sizes = [
        NAMES.len(),
        VERBS.len(),
        THINGS.len(),
        WHEN.len(),
        WHEN.len(),
    ];
    while chosen.len() < n {
        let t: [usize; 5] = std::array::from_fn(|k| (rng.next() % sizes[k] as u64) as usize);
        if t[3] == t[4] {
            continue;
        }
        let differ = |c: &[usize; 5]| {
            let slots = (0..3).filter(|&k| c[k] != t[k]).count();
            let whens = [t[3], t[4]]
                .iter()
                .filter(|w| **w != c[3] && **w != c[4])
                .count();
            slots + whens
        };
        if chosen.iter().all(|c| differ(c) >= 3) {
            chosen.push(t);
        }
    }
    chosen
        .iter()
        .map(|t| {
            format!(
                "{} {} {} {} and wants a reminder {}.",
                NAMES[t[0]], VERBS[t[1]], THINGS[t[2]], WHEN[t[3]], WHEN[t[4]]
            )
        })
        .collect()
}

/// A near copy of a sentence: variant 0 changes case and punctuation, 1 makes a
/// typo, 2 adds a filler word.
pub fn near_copy(s: &str, variant: usize) -> String {
    match variant % 3 {
        0 => format!("{}!!", s.to_lowercase().trim_end_matches('.')),
        1 => {
            // drop one letter of the longest word
            let words: Vec<&str> = s.split(' ').collect();
            let (k, w) = words
                .iter()
                .enumerate()
                .max_by_key(|(_, w)| w.len())
                .map(|(k, w)| (k, *w))
                .unwrap_or((0, s));
            let mut chars: Vec<char> = w.chars().collect();
            chars.remove(chars.len() / 2);
            let mut out: Vec<String> = words.iter().map(|w| w.to_string()).collect();
            out[k] = chars.into_iter().collect();
            out.join(" ")
        }
        _ => s.replacen(" and wants", " and really wants", 1),
    }
}
