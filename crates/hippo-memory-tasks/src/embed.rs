//! Text embeddings: the [`Embedder`] trait, the offline [`HashEmbedder`], and a
//! [`EmbedderRegistry`] of the models a deployment knows (for migrations).
//!
//! ## Plugging in a real model
//! Implement [`Embedder`] for a type that calls the model (a local ONNX or Candle
//! runtime, or an HTTP embedding service) and register it. `model()` is the name
//! recorded in every memory's `embed_model`, so vectors of different models are never
//! compared: the tasks re-embed any memory whose `embed_model` is not the current
//! model's. Return unit-length vectors of `dimension()` components; the tasks
//! normalise anything else.
//!
//! ```
//! use async_trait::async_trait;
//! use hippo_memory_tasks::embed::{EmbedError, Embedder};
//!
//! /// A model served over HTTP (sketch).
//! struct BgeSmall { /* client, url */ }
//!
//! #[async_trait]
//! impl Embedder for BgeSmall {
//!     fn model(&self) -> &str { "BAAI/bge-small-en-v1.5" }
//!     fn dimension(&self) -> usize { 384 }
//!     async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
//!         // POST the texts, parse the vectors; a network error is worth a retry:
//!         Err(EmbedError::Unavailable(format!("{} texts not sent: no server in this sketch", texts.len())))
//!     }
//! }
//! ```

#[cfg(feature = "semantic")]
pub mod bert;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

/// Dimension of HippocampAI's vectors (BGE-small).
pub const DIMENSION: usize = 384;

/// Why texts could not be embedded.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    /// The model cannot be reached now (worth retrying).
    #[error("embedding model unavailable: {0}")]
    Unavailable(String),
    /// The model refused the input or answered something unusable.
    #[error("embedding failed: {0}")]
    Failed(String),
}

/// Model id of all-MiniLM-L6-v2, the model `scripts/fetch-model.sh` unpacks.
pub const ALL_MINILM_L6_V2: &str = "sentence-transformers/all-MiniLM-L6-v2";
/// Model id of BGE-small, HippocampAI's model.
pub const BGE_SMALL_EN_V1_5: &str = "BAAI/bge-small-en-v1.5";

/// A model's default similarity thresholds: cosine scales differ between models, so
/// one number cannot serve them all.
///
/// | model | dedup (merge strictly above) | consolidation (at or above) | measured on |
/// | --- | --- | --- | --- |
/// | `hippo-hash-*` (lexical) | 0.88 | 0.85 | the guide's defaults |
/// | all-MiniLM-L6-v2 | 0.81 | 0.75 | `data/dedup_eval.tsv` (bench `dedup_eval`) |
/// | BGE-small and other models | 0.81 | 0.75 | not measured here: set them per deployment |
///
/// ```
/// use hippo_memory_tasks::embed::{ALL_MINILM_L6_V2, Thresholds};
/// assert_eq!(Thresholds::for_model("hippo-hash-384-v1").dedup, 0.88);
/// assert_eq!(Thresholds::for_model(ALL_MINILM_L6_V2).dedup, 0.81);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Deduplication: a pair is a duplicate strictly above it.
    pub dedup: f64,
    /// Consolidation: memories at or above it to a seed join its group.
    pub consolidation: f64,
}

impl Thresholds {
    /// The defaults for a model id.
    pub fn for_model(model: &str) -> Thresholds {
        if model.starts_with("hippo-hash-") {
            Thresholds {
                dedup: 0.88,
                consolidation: 0.85,
            }
        } else {
            Thresholds {
                dedup: 0.81,
                consolidation: 0.75,
            }
        }
    }
}

/// Turns texts into vectors.
#[async_trait]
pub trait Embedder: Send + Sync + 'static {
    /// The model's name, recorded as each memory's `embed_model`.
    fn model(&self) -> &str;
    /// Components per vector.
    fn dimension(&self) -> usize;
    /// The default thresholds for this model's vectors.
    fn thresholds(&self) -> Thresholds {
        Thresholds::for_model(self.model())
    }
    /// One vector per text, in order.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// A deterministic embedder that needs no model file: hashed character trigrams,
/// word unigrams and word bigrams of the normalised text (lower case, letters and
/// digits only, single spaces), signed feature hashing into `dimension` buckets,
/// L2-normalised.
///
/// Texts that differ by case, punctuation, spacing or a few characters get a cosine
/// similarity close to 1; unrelated texts stay near 0. It is not semantic: a
/// paraphrase with other words is not recognised. Different `model` names hash
/// differently, so two names are two incompatible models.
///
/// ```
/// use hippo_memory_tasks::embed::HashEmbedder;
/// let e = HashEmbedder::default();
/// let a = e.embed_one("I like hiking in the Alps on weekends.");
/// let b = e.embed_one("i like hiking in the alps on weekends");
/// let c = e.embed_one("My flight to Tokyo leaves at 7am tomorrow");
/// let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
/// assert!(dot(&a, &b) > 0.999);
/// assert!(dot(&a, &c) < 0.3);
/// assert_eq!(a.len(), 384);
/// ```
#[derive(Debug, Clone)]
pub struct HashEmbedder {
    model: String,
    dimension: usize,
    seed: u64,
}

impl Default for HashEmbedder {
    fn default() -> Self {
        HashEmbedder::new(HashEmbedder::DEFAULT_MODEL, DIMENSION)
    }
}

const TRIGRAM_WEIGHT: f32 = 1.0;
const WORD_WEIGHT: f32 = 1.0;
const BIGRAM_WEIGHT: f32 = 0.7;

fn fnv1a(seed: u64, kind: u8, bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    h ^= u64::from(kind);
    h = h.wrapping_mul(0x0100_0000_01b3);
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // final avalanche (splitmix64)
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Lower case, letters and digits only, words separated by single spaces.
pub fn normalize_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    out
}

impl HashEmbedder {
    /// The default model name.
    pub const DEFAULT_MODEL: &'static str = "hippo-hash-384-v1";

    /// An embedder named `model` with `dimension` buckets.
    pub fn new(model: impl Into<String>, dimension: usize) -> Self {
        let model = model.into();
        let seed = fnv1a(0, 0, model.as_bytes());
        HashEmbedder {
            model,
            dimension: dimension.max(1),
            seed,
        }
    }

    /// Embeds one text (synchronously).
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.dimension];
        let norm = normalize_text(text);
        let mut add = |kind: u8, feature: &[u8], weight: f32| {
            let h = fnv1a(self.seed, kind, feature);
            let idx = (h % self.dimension as u64) as usize;
            let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
            v[idx] += sign * weight;
        };
        if norm.is_empty() {
            add(0, b"", 1.0);
        } else {
            let padded: Vec<char> = std::iter::once(' ')
                .chain(norm.chars())
                .chain(std::iter::once(' '))
                .collect();
            let mut buf = String::new();
            for w in padded.windows(3) {
                buf.clear();
                buf.extend(w);
                add(1, buf.as_bytes(), TRIGRAM_WEIGHT);
            }
            let words: Vec<&str> = norm.split(' ').collect();
            for w in &words {
                add(2, w.as_bytes(), WORD_WEIGHT);
            }
            for pair in words.windows(2) {
                buf.clear();
                buf.push_str(pair[0]);
                buf.push(' ');
                buf.push_str(pair[1]);
                add(3, buf.as_bytes(), BIGRAM_WEIGHT);
            }
        }
        crate::similarity::normalize(&mut v);
        v
    }
}

#[async_trait]
impl Embedder for HashEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(texts.iter().map(|t| self.embed_one(t)).collect())
    }
}

/// The embedding models a deployment can use, by name, and the current one.
///
/// ```
/// use std::sync::Arc;
/// use hippo_memory_tasks::embed::{EmbedderRegistry, HashEmbedder};
/// let reg = EmbedderRegistry::new(Arc::new(HashEmbedder::default()))
///     .with(Arc::new(HashEmbedder::new("hippo-hash-384-v2", 384)));
/// assert_eq!(reg.current().model(), "hippo-hash-384-v1");
/// assert!(reg.get("hippo-hash-384-v2").is_some());
/// assert!(reg.get("unknown").is_none());
/// ```
#[derive(Clone)]
pub struct EmbedderRegistry {
    current: Arc<dyn Embedder>,
    models: HashMap<String, Arc<dyn Embedder>>,
}

impl std::fmt::Debug for EmbedderRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.models.keys().collect();
        names.sort();
        f.debug_struct("EmbedderRegistry")
            .field("current", &self.current.model())
            .field("models", &names)
            .finish()
    }
}

impl EmbedderRegistry {
    /// A registry whose current model is `current`.
    pub fn new(current: Arc<dyn Embedder>) -> Self {
        let mut models = HashMap::new();
        models.insert(current.model().to_string(), current.clone());
        EmbedderRegistry { current, models }
    }

    /// Adds a model (a migration target).
    pub fn with(mut self, embedder: Arc<dyn Embedder>) -> Self {
        self.models.insert(embedder.model().to_string(), embedder);
        self
    }

    /// The model new vectors are made with.
    pub fn current(&self) -> &Arc<dyn Embedder> {
        &self.current
    }

    /// A model by name.
    pub fn get(&self, model: &str) -> Option<&Arc<dyn Embedder>> {
        self.models.get(model)
    }

    /// The known model names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self.models.keys().cloned().collect();
        n.sort();
        n
    }
}

/// Why [`from_env`] could not build the configured model.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `EMBEDDING_MODEL_PATH` is set but this build has no `semantic` feature.
    #[error(
        "EMBEDDING_MODEL_PATH is set but hippo-memory-tasks was built without the `semantic` feature"
    )]
    NoSemanticFeature,
    /// The model folder could not be loaded.
    #[cfg(feature = "semantic")]
    #[error(transparent)]
    Load(#[from] bert::LoadError),
}

/// The embedder the environment names:
///
/// - `EMBEDDING_MODEL_PATH`: a sentence-transformers model folder (see [`bert`]);
///   when unset, the lexical [`HashEmbedder`];
/// - `EMBEDDING_MODEL`: the model id recorded in memories (default
///   [`ALL_MINILM_L6_V2`]).
pub fn from_env() -> Result<Arc<dyn Embedder>, ConfigError> {
    from_lookup(|k| std::env::var(k).ok())
}

/// [`from_env`] with another source of variables.
pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Arc<dyn Embedder>, ConfigError> {
    let path = get("EMBEDDING_MODEL_PATH").filter(|p| !p.trim().is_empty());
    let Some(path) = path else {
        return Ok(Arc::new(HashEmbedder::default()));
    };
    #[cfg(feature = "semantic")]
    {
        let id = get("EMBEDDING_MODEL")
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(|| ALL_MINILM_L6_V2.to_string());
        Ok(Arc::new(bert::BertEmbedder::load(path, id)?))
    }
    #[cfg(not(feature = "semantic"))]
    {
        let _ = path;
        Err(ConfigError::NoSemanticFeature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_picks_the_model() {
        let none = from_lookup(|_| None).unwrap();
        assert_eq!(none.model(), HashEmbedder::DEFAULT_MODEL);
        let blank = from_lookup(|k| (k == "EMBEDDING_MODEL_PATH").then(|| " ".to_string()));
        assert_eq!(blank.unwrap().model(), HashEmbedder::DEFAULT_MODEL);
        let missing = from_lookup(|k| {
            (k == "EMBEDDING_MODEL_PATH").then(|| "/nonexistent/model".to_string())
        });
        let err = missing.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("/nonexistent/model"), "{err}");
    }

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn deterministic_unit_vectors() {
        let e = HashEmbedder::default();
        let a = e.embed_one("The quick brown fox");
        assert_eq!(a, e.embed_one("The quick brown fox"));
        assert!((cos(&a, &a) - 1.0).abs() < 1e-5);
        let empty = e.embed_one("  ...  ");
        assert!((cos(&empty, &e.embed_one("")) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn models_differ() {
        let a = HashEmbedder::new("a", 384).embed_one("same text here");
        let b = HashEmbedder::new("b", 384).embed_one("same text here");
        assert!(cos(&a, &b) < 0.5);
    }

    #[test]
    fn near_copies_are_close() {
        let e = HashEmbedder::default();
        let a = e.embed_one("Alice prefers window seats on long flights to Europe");
        let typo = e.embed_one("Alice prefers windw seats on long flights to Europe");
        let other = e.embed_one("Bob is allergic to peanuts and shellfish");
        assert!(cos(&a, &typo) > 0.88, "{}", cos(&a, &typo));
        assert!(cos(&a, &other) < 0.3, "{}", cos(&a, &other));
    }
}
