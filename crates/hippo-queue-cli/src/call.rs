//! `call`: send a task by name, with its arguments as JSON (Celery's `celery call`).

use std::time::{Duration, SystemTime};

use clap::Args;
use hippo_queue_core::codec::to_msgpack;
use hippo_queue_core::{App, SendOptions};

/// Arguments of `call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// The task's registered name.
    pub task: String,
    /// Positional arguments as a JSON array (a task with a tuple of arguments takes
    /// them in order; a one-element array is sent as that element, for a task with a
    /// single argument).
    #[arg(short, long, conflicts_with = "kwargs")]
    pub args: Option<String>,
    /// Keyword arguments as a JSON object (a task whose arguments are a struct).
    #[arg(short, long)]
    pub kwargs: Option<String>,
    /// The queue (default: the task's route).
    #[arg(long)]
    pub queue: Option<String>,
    /// Seconds to wait before it may run.
    #[arg(long, value_parser = crate::cli::seconds)]
    pub countdown: Option<Duration>,
    /// Seconds after which it is revoked if it has not started.
    #[arg(long, value_parser = crate::cli::seconds)]
    pub expires: Option<Duration>,
}

/// Why the arguments cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Not JSON.
    #[error("--{flag} is not JSON ({source}): write it as {example}")]
    Json {
        /// `args` or `kwargs`.
        flag: &'static str,
        /// An example of the expected shape.
        example: &'static str,
        /// The parser's complaint.
        source: serde_json::Error,
    },
    /// JSON of the wrong shape.
    #[error("--{flag} must be a JSON {shape}, not {got}")]
    Shape {
        /// `args` or `kwargs`.
        flag: &'static str,
        /// What it must be.
        shape: &'static str,
        /// What it was.
        got: String,
    },
}

/// The task's arguments as one JSON value: the object of `--kwargs`, the array of
/// `--args` (its element when it has one), or null (a task without arguments).
pub fn arguments(args: Option<&str>, kwargs: Option<&str>) -> Result<serde_json::Value, CallError> {
    if let Some(k) = kwargs {
        let v: serde_json::Value = serde_json::from_str(k).map_err(|source| CallError::Json {
            flag: "kwargs",
            example: r#"'{"user_id": "alice"}'"#,
            source,
        })?;
        return match v {
            serde_json::Value::Object(_) => Ok(v),
            other => Err(CallError::Shape {
                flag: "kwargs",
                shape: "object",
                got: other.to_string(),
            }),
        };
    }
    let Some(a) = args else {
        return Ok(serde_json::Value::Null);
    };
    let v: serde_json::Value = serde_json::from_str(a).map_err(|source| CallError::Json {
        flag: "args",
        example: "'[2, 2]'",
        source,
    })?;
    match v {
        serde_json::Value::Array(mut items) if items.len() == 1 => Ok(items.remove(0)),
        serde_json::Value::Array(items) if items.is_empty() => Ok(serde_json::Value::Null),
        serde_json::Value::Array(items) => Ok(serde_json::Value::Array(items)),
        other => Err(CallError::Shape {
            flag: "args",
            shape: "array",
            got: other.to_string(),
        }),
    }
}

/// Sends the task; returns its id.
pub async fn call(app: &App, a: &CallArgs) -> Result<String, Box<dyn std::error::Error>> {
    let value = arguments(a.args.as_deref(), a.kwargs.as_deref())?;
    let mut opts = SendOptions::new();
    if let Some(q) = &a.queue {
        opts = opts.queue(q);
    }
    if let Some(d) = a.countdown {
        opts = opts.countdown(d);
    }
    if let Some(d) = a.expires {
        opts = opts.expires_at(SystemTime::now() + d);
    }
    Ok(app.send_by_name(&a.task, to_msgpack(&value)?, opts).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn args_and_kwargs_become_one_value() {
        assert_eq!(arguments(Some("[2, 3]"), None).unwrap(), json!([2, 3]));
        assert_eq!(arguments(Some("[5]"), None).unwrap(), json!(5));
        assert_eq!(arguments(Some("[]"), None).unwrap(), json!(null));
        assert_eq!(arguments(None, None).unwrap(), json!(null));
        assert_eq!(
            arguments(None, Some(r#"{"user_id": "alice"}"#)).unwrap(),
            json!({"user_id": "alice"})
        );
    }

    #[test]
    fn bad_json_names_the_flag_and_the_shape() {
        let e = arguments(Some("[1,"), None).unwrap_err().to_string();
        assert!(
            e.contains("--args is not JSON") && e.contains("[2, 2]"),
            "{e}"
        );
        let e = arguments(Some("{}"), None).unwrap_err().to_string();
        assert!(e.contains("--args must be a JSON array"), "{e}");
        let e = arguments(None, Some("[1]")).unwrap_err().to_string();
        assert!(e.contains("--kwargs must be a JSON object"), "{e}");
    }
}
