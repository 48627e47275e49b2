//! Code the example programs share: logging, the guide's environment variables,
//! connecting to Redis, the memory store, the embedding models, sample data and
//! shutdown signals. Each example includes it with `mod common;`, so not every
//! example uses every item.

#![allow(dead_code)]

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hippo_memory_tasks::embed::{EmbedError, Embedder, EmbedderRegistry, HashEmbedder};
use hippo_memory_tasks::model::{Memory, MemoryType, ProceduralRule};
use hippo_memory_tasks::store::{MemoryStore, RedisStore, RedisStoreConfig};
use hippo_queue::App;
use hippo_queue::config::{Config, redact_url};
use hippo_queue::redis::{RedisBackend, RedisConfig};

/// A boxed error, for `main`.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// The user of the guide's examples.
pub const GUIDE_USER: &str = "user123";

/// The embedding models the examples know: name and vector size. They are offline
/// [`HashEmbedder`]s; a deployment registers its real models the same way.
pub const KNOWN_MODELS: &[(&str, usize)] = &[
    ("hippo-hash-384-v1", 384),
    ("hippo-hash-384-v2", 384),
    ("hippo-hash-768-v1", 768),
];

/// The model new vectors are made with unless `EMBEDDING_MODEL` says otherwise.
pub const DEFAULT_MODEL: &str = "hippo-hash-384-v1";

/// Logs to stderr at `level` (a `tracing` filter such as `info` or
/// `hippo_queue=debug`); without a level, `RUST_LOG` decides, and `info` without
/// either.
pub fn init_logging(level: Option<&str>) -> Result<(), BoxError> {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::try_new(l)
            .map_err(|e| format!("--loglevel {l:?} is not a valid log filter: {e}"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
    Ok(())
}

/// The URL with its database number replaced (`redis://host:6379/1` -> `/0`).
pub fn with_db(url: &str, db: u8) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, format!("?{q}")),
        None => (rest, String::new()),
    };
    // The authority ends at the first '/' after any credentials.
    let start = rest.rfind('@').map_or(0, |i| i + 1);
    let authority = match rest[start..].find('/') {
        Some(i) => &rest[..start + i],
        None => rest,
    };
    format!("{scheme}://{authority}/{db}{query}")
}

/// What the guide's variables point at: the broker, the results, and the memory store.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// The queue configuration (`CELERY_*`).
    pub config: Config,
    /// `CELERY_BROKER_URL`.
    pub broker_url: String,
    /// `MEMORY_STORE_URL`, or the broker's server on database 0 (the guide's cache
    /// database).
    pub store_url: String,
}

/// Reads the guide's variables; a missing `CELERY_BROKER_URL` is an error that says
/// what to set (`program` names the example in the message).
pub fn endpoints(program: &str) -> Result<Endpoints, BoxError> {
    let config = Config::from_env()?;
    let Some(broker_url) = config.broker_url.clone() else {
        return Err(format!(
            "CELERY_BROKER_URL is not set: the {program} runs in its own process and talks to \
             the others through Redis. Start redis-server and set, as in the guide:\n\
             \n    export CELERY_BROKER_URL=redis://localhost:6379/1\
             \n    export CELERY_RESULT_BACKEND=redis://localhost:6379/2\n\
             \nTo try everything in one process without Redis, run `cargo run --example demo`."
        )
        .into());
    };
    let store_url = match std::env::var("MEMORY_STORE_URL") {
        Ok(u) if !u.trim().is_empty() => u,
        _ => with_db(&broker_url, 0),
    };
    Ok(Endpoints {
        config,
        broker_url,
        store_url,
    })
}

/// Connects to the broker and result backend and builds the app with the guide's
/// four queues (nothing registered yet).
pub async fn connect_queue(ep: &Endpoints) -> Result<(App, RedisBackend), BoxError> {
    let redis_cfg = RedisConfig::from_core(&ep.config).ok_or("CELERY_BROKER_URL is not set")?;
    let redis = RedisBackend::connect(redis_cfg)
        .await
        .map_err(|e| format!("cannot reach the broker: {e}"))?;
    let app = App::builder()
        .broker(redis.clone())
        .backend(redis.clone())
        .router(hippo_memory_tasks::router())
        .config(ep.config.clone())
        .build();
    Ok((app, redis))
}

/// Connects to the memory store on Redis.
pub async fn connect_store(ep: &Endpoints) -> Result<Arc<dyn MemoryStore>, BoxError> {
    let store = RedisStore::connect(RedisStoreConfig::new(ep.store_url.clone()))
        .await
        .map_err(|e| {
            let url = redact_url(&ep.store_url);
            format!("cannot reach the memory store at {url}: {e}")
        })?;
    Ok(Arc::new(store))
}

/// The vector size of a known model.
pub fn model_dimension(name: &str) -> Option<usize> {
    KNOWN_MODELS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, d)| d)
}

/// The known model names, comma-separated.
pub fn known_model_names() -> String {
    KNOWN_MODELS
        .iter()
        .map(|(n, d)| format!("{n} ({d})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `EMBEDDING_MODEL`, or [`DEFAULT_MODEL`].
pub fn current_model_from_env() -> String {
    std::env::var("EMBEDDING_MODEL")
        .ok()
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_MODEL.to_string())
}

/// An embedder that waits before answering, as a model behind a network would.
struct WithLatency {
    inner: HashEmbedder,
    latency: Duration,
}

#[hippo_queue::async_trait]
impl Embedder for WithLatency {
    fn model(&self) -> &str {
        self.inner.model()
    }
    fn dimension(&self) -> usize {
        self.inner.dimension()
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        tokio::time::sleep(self.latency).await;
        self.inner.embed(texts).await
    }
}

/// Where `scripts/fetch-model.sh` unpacks all-MiniLM-L6-v2.
pub fn fetched_model_folder() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("target"));
    target.join("models/all-MiniLM-L6-v2")
}

/// `EMBEDDING_MODEL_PATH`: a sentence-transformers model folder.
pub fn model_path_from_env() -> Option<std::path::PathBuf> {
    std::env::var_os("EMBEDDING_MODEL_PATH")
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from)
}

/// The semantic model in `path`, recorded as `current` when that is not one of the
/// lexical [`KNOWN_MODELS`], else as all-MiniLM-L6-v2.
pub fn semantic_model(
    current: &str,
    path: &std::path::Path,
) -> Result<Arc<dyn Embedder>, BoxError> {
    let id = if model_dimension(current).is_some() {
        hippo_memory_tasks::embed::ALL_MINILM_L6_V2
    } else {
        current
    };
    let model = hippo_memory_tasks::embed::bert::BertEmbedder::load(path, id)?;
    Ok(Arc::new(model))
}

/// Every known model, `current` first; each call to a lexical model takes at least
/// `latency`. With `EMBEDDING_MODEL_PATH` set, the semantic model there is current.
pub fn embedders(current: &str, latency: Duration) -> Result<EmbedderRegistry, BoxError> {
    embedders_with(current, latency, model_path_from_env().as_deref())
}

/// [`embedders`], with the semantic model's folder given.
pub fn embedders_with(
    current: &str,
    latency: Duration,
    model_path: Option<&std::path::Path>,
) -> Result<EmbedderRegistry, BoxError> {
    let make = |name: &str, dim: usize| -> Arc<dyn Embedder> {
        let inner = HashEmbedder::new(name, dim);
        if latency.is_zero() {
            Arc::new(inner)
        } else {
            Arc::new(WithLatency { inner, latency })
        }
    };
    let mut registry = match model_path {
        Some(path) => EmbedderRegistry::new(semantic_model(current, path)?),
        None => {
            let dim = model_dimension(current).ok_or_else(|| {
                format!(
                    "unknown embedding model {current:?}; known models: {}, or a \
                     sentence-transformers folder in EMBEDDING_MODEL_PATH",
                    known_model_names()
                )
            })?;
            EmbedderRegistry::new(make(current, dim))
        }
    };
    for &(name, dim) in KNOWN_MODELS {
        if name != registry.current().model() {
            registry = registry.with(make(name, dim));
        }
    }
    Ok(registry)
}

fn memory(
    user: &str,
    text: &str,
    ty: MemoryType,
    days_old: i64,
    tags: &[&str],
    importance: f64,
) -> Memory {
    let mut m = Memory::new(user, text, ty);
    let at = Utc::now() - chrono::Duration::days(days_old);
    m.created_at = at;
    m.updated_at = at;
    m.tags = tags.iter().map(|t| t.to_string()).collect();
    m.importance = importance;
    m
}

/// A small, varied set of memories for one user: near-copies for deduplication,
/// close variants for consolidation, old events for summarisation and compression,
/// and expired reminders.
pub fn sample_memories(user: &str) -> Vec<Memory> {
    use MemoryType::*;
    let mut out = vec![
        // near-copies: deduplication merges each pair
        memory(
            user,
            "Prefers window seats on long flights.",
            Preference,
            3,
            &["travel"],
            6.0,
        ),
        memory(
            user,
            "prefers window seats on long flights",
            Preference,
            1,
            &["travel", "flights"],
            5.0,
        ),
        memory(
            user,
            "Allergic to peanuts and shellfish.",
            Fact,
            5,
            &["health"],
            9.0,
        ),
        memory(
            user,
            "Allergic to peanuts and shellfish!",
            Fact,
            2,
            &["health", "food"],
            8.0,
        ),
        // close variants: consolidation turns them into one memory
        memory(
            user,
            "Is learning Portuguese with an online tutor twice a week",
            Goal,
            4,
            &["languages"],
            6.0,
        ),
        memory(
            user,
            "Takes Portuguese lessons with an online tutor twice a week",
            Goal,
            2,
            &["languages", "routine"],
            5.0,
        ),
        // unique, recent
        memory(
            user,
            "Wants to run a marathon in under four hours next spring",
            Goal,
            6,
            &["sport"],
            7.0,
        ),
        memory(
            user,
            "Goes bouldering at the climbing gym on Tuesday evenings",
            Habit,
            4,
            &["sport"],
            5.0,
        ),
        memory(
            user,
            "Drinks green tea instead of coffee after lunch",
            Habit,
            1,
            &["food"],
            4.0,
        ),
        // old events: summarised into one summary, then compressed
        memory(
            user,
            "Visited Kyoto in April and loved the temples. Took hundreds of photos of the gardens.",
            Event,
            200,
            &["travel"],
            5.0,
        ),
        memory(
            user,
            "Honestly the small hotel in Kyoto was really just basically perfect, very quiet and pretty close to the station.",
            Event,
            198,
            &["travel"],
            4.0,
        ),
        memory(
            user,
            "Moved to a new apartment in Porto. The kitchen is tiny but the living room is bright.",
            Event,
            150,
            &["home"],
            6.0,
        ),
        memory(
            user,
            "Started a new job as a data engineer. The team works on card payments.",
            Event,
            120,
            &["work"],
            7.0,
        ),
        memory(
            user,
            "Adopted a rescue cat named Miso. She hides under the bed when guests come.",
            Event,
            70,
            &["pets"],
            6.0,
        ),
        memory(
            user,
            "Finished reading Dune. Wants to read the sequels over the winter holidays.",
            Event,
            45,
            &["books"],
            4.0,
        ),
    ];
    // expired reminders: the expiration task deletes them
    let mut parking = memory(
        user,
        "Parking spot B12 is reserved for the conference today",
        Context,
        1,
        &["reminder"],
        3.0,
    );
    parking.expires_at = Some(Utc::now() - chrono::Duration::hours(2));
    let mut dentist = memory(
        user,
        "Dentist appointment next Monday at 9am",
        Prospective,
        1,
        &["reminder"],
        6.0,
    );
    dentist.expires_at = Some(Utc::now() + chrono::Duration::days(6));
    out.push(parking);
    out.push(dentist);
    out
}

/// Memories of a second user, one of them expired.
pub fn other_user_memories(user: &str) -> Vec<Memory> {
    let mut code = memory(
        user,
        "Temporary door code 4711 for the office this week",
        MemoryType::Context,
        9,
        &["office"],
        2.0,
    );
    code.expires_at = Some(Utc::now() - chrono::Duration::days(2));
    vec![
        memory(
            user,
            "Plays the cello in a community orchestra",
            MemoryType::Habit,
            30,
            &["music"],
            6.0,
        ),
        code,
    ]
}

/// Procedural rules with repeats and a weak rule.
pub fn sample_rules(user: &str) -> Vec<ProceduralRule> {
    let rule = |text: &str, confidence: f64, success: f64| {
        let mut r = ProceduralRule::new(user, text);
        r.confidence = confidence;
        r.success_rate = success;
        r
    };
    vec![
        rule("Answer in English unless asked otherwise", 0.8, 0.7),
        rule("answer in English, unless asked otherwise.", 0.7, 0.5),
        rule("Keep answers short and use bullet points", 0.9, 0.8),
        rule("Greet the user by name", 0.7, 0.6),
        rule("Greet the user by name!", 0.6, 0.5),
        rule("Suggest vegetarian restaurants first", 0.75, 0.9),
    ]
}

/// Writes the sample memories and rules (for `user` and `other`) unless `user`
/// already has memories; returns how many memories were written.
pub async fn load_samples(
    store: &dyn MemoryStore,
    user: &str,
    other: &str,
) -> Result<usize, BoxError> {
    if store.user_exists(user).await? {
        return Ok(0);
    }
    let mut n = 0;
    for m in sample_memories(user)
        .into_iter()
        .chain(other_user_memories(other))
    {
        store.put(&m).await?;
        n += 1;
    }
    store.put_rules(user, &sample_rules(user)).await?;
    Ok(n)
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM; returns the signal's name. The handlers
/// are installed when this is called, so call it before announcing that the program
/// is ready.
pub fn shutdown_signal() -> impl std::future::Future<Output = &'static str> + Send {
    use tokio::signal::unix::{SignalKind, signal};
    let int = signal(SignalKind::interrupt());
    let term = signal(SignalKind::terminate());
    async move {
        match (int, term) {
            (Ok(mut int), Ok(mut term)) => tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            _ => {
                // No signal handlers (should not happen on Unix): wait for Ctrl-C.
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
}
