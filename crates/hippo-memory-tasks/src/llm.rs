//! The optional language model: the [`Llm`] trait (merge, summarise, compress), and
//! with the `openai` feature an OpenAI-compatible HTTP client, `openai::OpenAiLlm`.
//!
//! Every task that can use a model also has a heuristic path, taken when no model is
//! configured and whenever a call fails or answers nothing usable; the task's result
//! counts those fallbacks.
//!
//! ```
//! use async_trait::async_trait;
//! use hippo_memory_tasks::llm::{Llm, LlmError};
//!
//! /// A model that shouts (for tests).
//! struct Upper;
//! #[async_trait]
//! impl Llm for Upper {
//!     fn name(&self) -> &str { "upper" }
//!     async fn complete(&self, _system: &str, prompt: &str) -> Result<String, LlmError> {
//!         Ok(prompt.lines().last().unwrap_or_default().to_uppercase())
//!     }
//! }
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let merged = Upper.merge(&["likes tea".into(), "likes green tea".into()]).await.unwrap();
//! assert_eq!(merged, "- LIKES GREEN TEA");
//! # }
//! ```

use async_trait::async_trait;

/// Why a model call failed (the task then falls back to its heuristic).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// The model could not be reached or timed out.
    #[error("language model unavailable: {0}")]
    Unavailable(String),
    /// It answered with an error or an unusable text.
    #[error("language model failed: {0}")]
    Failed(String),
}

/// The system prompt of every call.
pub const SYSTEM_PROMPT: &str = "You maintain a user's long-term memory store. Answer with the requested text only, no preamble.";

/// A language model the tasks can ask to merge, summarise or compress memories.
#[async_trait]
pub trait Llm: Send + Sync + 'static {
    /// The model's name (for logs).
    fn name(&self) -> &str;

    /// One completion of `prompt` under `system`.
    async fn complete(&self, system: &str, prompt: &str) -> Result<String, LlmError>;

    /// Merges similar memories into one concise memory.
    async fn merge(&self, texts: &[String]) -> Result<String, LlmError> {
        let prompt = format!(
            "Merge these similar memories into one concise memory that keeps every distinct fact:\n{}",
            bullets(texts)
        );
        usable(self.complete(SYSTEM_PROMPT, &prompt).await?)
    }

    /// Summarises memories into one short paragraph.
    async fn summarize(&self, texts: &[String]) -> Result<String, LlmError> {
        let prompt = format!(
            "Summarise these memories in at most three sentences, keeping names, dates and numbers:\n{}",
            bullets(texts)
        );
        usable(self.complete(SYSTEM_PROMPT, &prompt).await?)
    }

    /// Shortens a memory to about `target_words` words without losing facts.
    async fn compress(&self, text: &str, target_words: usize) -> Result<String, LlmError> {
        let prompt = format!(
            "Rewrite this memory in at most {target_words} words, keeping every fact:\n{text}"
        );
        usable(self.complete(SYSTEM_PROMPT, &prompt).await?)
    }
}

fn bullets(texts: &[String]) -> String {
    texts
        .iter()
        .map(|t| format!("- {}", t.replace('\n', " ")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Trims an answer and refuses an empty one.
fn usable(answer: String) -> Result<String, LlmError> {
    let t = answer.trim();
    if t.is_empty() {
        Err(LlmError::Failed("empty answer".into()))
    } else {
        Ok(t.to_string())
    }
}

#[cfg(feature = "openai")]
pub mod openai {
    //! An OpenAI-compatible chat-completions client (feature `openai`).
    //!
    //! ```no_run
    //! use hippo_memory_tasks::llm::openai::OpenAiLlm;
    //! let llm = OpenAiLlm::new("https://api.openai.com/v1", "gpt-4o-mini")
    //!     .api_key(std::env::var("OPENAI_API_KEY").unwrap_or_default());
    //! # let _ = llm;
    //! ```

    use std::time::Duration;

    use async_trait::async_trait;
    use serde_json::json;

    use super::{Llm, LlmError};

    /// A chat-completions endpoint (`POST <base_url>/chat/completions`).
    #[derive(Clone)]
    pub struct OpenAiLlm {
        client: reqwest::Client,
        base_url: String,
        model: String,
        api_key: Option<String>,
        timeout: Duration,
    }

    impl std::fmt::Debug for OpenAiLlm {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("OpenAiLlm")
                .field("base_url", &self.base_url)
                .field("model", &self.model)
                .finish_non_exhaustive()
        }
    }

    impl OpenAiLlm {
        /// A client for `model` at `base_url` (such as `http://localhost:11434/v1`).
        pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
            OpenAiLlm {
                client: reqwest::Client::new(),
                base_url: base_url.into().trim_end_matches('/').to_string(),
                model: model.into(),
                api_key: None,
                timeout: Duration::from_secs(60),
            }
        }

        /// Sends `Authorization: Bearer <key>` (ignored when empty).
        pub fn api_key(mut self, key: impl Into<String>) -> Self {
            let key = key.into();
            self.api_key = (!key.is_empty()).then_some(key);
            self
        }

        /// Per-request timeout (default 60 s).
        pub fn timeout(mut self, timeout: Duration) -> Self {
            self.timeout = timeout;
            self
        }
    }

    #[async_trait]
    impl Llm for OpenAiLlm {
        fn name(&self) -> &str {
            &self.model
        }

        async fn complete(&self, system: &str, prompt: &str) -> Result<String, LlmError> {
            let body = json!({
                "model": self.model,
                "temperature": 0,
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": prompt},
                ],
            });
            let mut req = self
                .client
                .post(format!("{}/chat/completions", self.base_url))
                .timeout(self.timeout)
                .json(&body);
            if let Some(k) = &self.api_key {
                req = req.bearer_auth(k);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| LlmError::Unavailable(e.to_string()))?;
            let status = resp.status();
            let value: serde_json::Value = resp
                .json()
                .await
                .map_err(|e| LlmError::Failed(format!("HTTP {status}: {e}")))?;
            if !status.is_success() {
                return Err(LlmError::Failed(format!("HTTP {status}: {value}")));
            }
            value["choices"][0]["message"]["content"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| LlmError::Failed(format!("no message content in {value}")))
        }
    }
}
