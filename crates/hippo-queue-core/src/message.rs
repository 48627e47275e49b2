//! The message envelope: what travels through the broker for one task.

use serde::{Deserialize, Serialize};

use crate::options::Compression;

/// The envelope format version written by this library.
pub const ENVELOPE_VERSION: u8 = 1;

/// One task message.
///
/// Encoded with [`Codec`](crate::codec::Codec) (MessagePack, zstd above a threshold).
/// Options are stored resolved (call over task over app defaults), so the worker needs
/// nothing but the envelope to apply them. Times are milliseconds since the Unix epoch.
///
/// Envelopes travel with their fields by position ([`Codec::encode_compact`](crate::codec::Codec::encode_compact)):
/// a new field goes at the end, with `#[serde(default)]`, so that envelopes already
/// queued still decode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Envelope {
    /// Format version ([`ENVELOPE_VERSION`]).
    pub v: u8,
    /// Task id (a UUID unless the sender chose one).
    pub id: String,
    /// Registered task name.
    pub name: String,
    /// Arguments, MessagePack.
    #[serde(with = "serde_bytes")]
    pub args: Vec<u8>,
    /// How many times this task has been retried so far.
    pub retries: u32,
    /// Earliest start, ms.
    pub eta: Option<u64>,
    /// Revoke if not started by then, ms.
    pub expires: Option<u64>,
    /// Message priority 0-9, higher first.
    pub priority: u8,
    /// Queue the message was routed to.
    pub queue: String,
    /// Routing key it was routed with.
    pub routing_key: String,
    /// Root task of the workflow.
    pub root_id: Option<String>,
    /// Task that sent this one.
    pub parent_id: Option<String>,
    /// Soft time limit, ms.
    pub soft_time_limit: Option<u64>,
    /// Hard time limit, ms.
    pub time_limit: Option<u64>,
    /// Retry policy.
    pub retry: RetrySpec,
    /// Acknowledge after completion.
    pub acks_late: bool,
    /// Requeue when the worker is lost (with `acks_late`).
    pub reject_on_worker_lost: bool,
    /// Do not store the result.
    pub ignore_result: bool,
    /// Result compression.
    pub compression: Compression,
    /// Result lifetime, ms.
    pub result_expires: u64,
    /// Record STARTED.
    pub track_started: bool,
    /// Who sent it (`host:pid`).
    pub origin: String,
    /// When it was sent, ms.
    pub sent_at: u64,
    /// The sender waits for the result ([`App::call`](crate::App::call)): the worker
    /// asks the result backend to announce it.
    #[serde(default)]
    pub announce_result: bool,
}

/// The retry policy carried by a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RetrySpec {
    /// Maximum retries.
    pub max_retries: u32,
    /// Error kinds retried automatically; `"*"` for all.
    pub autoretry_for: Vec<String>,
    /// Delay without backoff, ms.
    pub delay: u64,
    /// Backoff factor, ms (`None`: fixed delay).
    pub backoff: Option<u64>,
    /// Backoff cap, ms.
    pub backoff_max: u64,
    /// Full jitter.
    pub jitter: bool,
}

impl RetrySpec {
    /// Whether errors of `kind` are retried automatically. `"*"` matches every kind
    /// except argument errors, which a retry cannot fix.
    pub fn autoretries(&self, kind: &str) -> bool {
        self.autoretry_for
            .iter()
            .any(|k| k == kind || (k == "*" && kind != crate::task::kinds::ARGUMENTS))
    }
}

/// Who is sending: `hostname:pid`.
pub fn origin() -> String {
    static ORIGIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ORIGIN
        .get_or_init(|| format!("{}:{}", hostname(), std::process::id()))
        .clone()
}

/// The machine's host name (from `HOSTNAME`, `/etc/hostname`, or `localhost`).
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_autoretry_skips_argument_errors() {
        let spec = RetrySpec {
            max_retries: 3,
            autoretry_for: vec!["*".into()],
            delay: 0,
            backoff: None,
            backoff_max: 0,
            jitter: false,
        };
        assert!(spec.autoretries("io"));
        assert!(!spec.autoretries(crate::task::kinds::ARGUMENTS));
        let explicit = RetrySpec {
            autoretry_for: vec![crate::task::kinds::ARGUMENTS.into()],
            ..spec
        };
        assert!(explicit.autoretries(crate::task::kinds::ARGUMENTS));
    }

    #[test]
    fn envelopes_decode_by_name_by_position_and_without_newer_fields() {
        use crate::codec::Codec;
        let app = crate::App::in_memory();
        let (env, out) = app
            .prepare(
                "t.x",
                vec![1, 2, 3],
                &crate::TaskOptions::new(),
                crate::SendOptions::new(),
            )
            .expect("prepare");
        let codec = Codec::default();
        let named = codec.encode(&env, false).expect("named");
        assert!(
            out.payload.len() * 2 < named.len(),
            "{} vs {}",
            out.payload.len(),
            named.len()
        );
        assert_eq!(
            codec.decode::<Envelope>(&out.payload).expect("compact"),
            env
        );
        assert_eq!(codec.decode::<Envelope>(&named).expect("named"), env);

        // An envelope queued before `announce_result` existed: one field fewer.
        let mut old = out.payload.clone();
        assert_eq!(old[1], 0xdc, "a MessagePack array16");
        let n = u16::from_be_bytes([old[2], old[3]]) - 1;
        old[2..4].copy_from_slice(&n.to_be_bytes());
        assert_eq!(
            old.pop(),
            Some(0xc2),
            "the last field is announce_result = false"
        );
        let decoded: Envelope = codec.decode(&old).expect("old envelope");
        assert_eq!(decoded, env);
    }
}
