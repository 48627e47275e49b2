//! The embedding models the programs know, and the registry a worker is given.

use std::sync::Arc;
use std::time::Duration;

use hippo_memory_tasks::embed::{EmbedError, Embedder, EmbedderRegistry, HashEmbedder};

use crate::BoxError;

/// The embedding models the examples know: name and vector size. They are offline
/// [`HashEmbedder`]s; a deployment registers its real models the same way.
pub const KNOWN_MODELS: &[(&str, usize)] = &[
    ("hippo-hash-384-v1", 384),
    ("hippo-hash-384-v2", 384),
    ("hippo-hash-768-v1", 768),
];

/// The model new vectors are made with unless `EMBEDDING_MODEL` says otherwise.
pub const DEFAULT_MODEL: &str = "hippo-hash-384-v1";

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

#[async_trait::async_trait]
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
