//! Reading requests: JSON bodies, query strings and field checks, each a pure function
//! that names the problem (400 when the request cannot be read, 422 when a field is
//! missing or out of range).

use std::collections::HashMap;

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A query string as a map, or the rejection axum gave.
pub(crate) type QueryMap = Result<Query<HashMap<String, String>>, QueryRejection>;

/// Parses a JSON body (an empty body is `{}`): 400 when it is not JSON, 422 when a
/// field is missing, unknown or of the wrong type.
pub(crate) fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
            }
            Category::Data => ApiError::invalid(format!("invalid request body: {e}")),
        }
    })
}

/// The query parameters, or a 400 naming the problem.
pub(crate) fn query(q: QueryMap) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(m)| m)
        .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))
}

/// A required, non-empty `user_id`; `place` says where it was looked for.
pub(crate) fn user_id(v: Option<String>, place: &str) -> Result<String, ApiError> {
    match v {
        Some(u) if !u.trim().is_empty() => Ok(u),
        Some(_) => Err(ApiError::invalid(format!("user_id {place} is empty"))),
        None => Err(ApiError::invalid(format!("user_id {place} is required"))),
    }
}

/// A required, non-empty text field.
pub(crate) fn required_text(v: Option<String>, name: &str) -> Result<String, ApiError> {
    v.filter(|t| !t.trim().is_empty())
        .ok_or_else(|| ApiError::invalid(format!("{name} is required")))
}

/// A cosine similarity threshold, 0..1.
pub(crate) fn threshold(t: Option<f64>) -> Result<Option<f64>, ApiError> {
    match t {
        Some(t) if !(t.is_finite() && (0.0..=1.0).contains(&t)) => Err(ApiError::invalid(format!(
            "similarity_threshold must be between 0 and 1 (a cosine similarity), got {t}"
        ))),
        other => Ok(other),
    }
}

/// A value in `low..=high` named `name`.
pub(crate) fn within(
    name: &str,
    v: Option<f64>,
    low: f64,
    high: f64,
) -> Result<Option<f64>, ApiError> {
    match v {
        Some(x) if !(x.is_finite() && (low..=high).contains(&x)) => Err(ApiError::invalid(
            format!("{name} must be between {low} and {high}, got {x}"),
        )),
        other => Ok(other),
    }
}

/// `terminate` of a revocation: true unless `false`/`0`.
pub(crate) fn terminate(v: Option<&String>) -> Result<bool, ApiError> {
    match v.map(|v| v.to_ascii_lowercase()) {
        None => Ok(true),
        Some(v) if v == "true" || v == "1" => Ok(true),
        Some(v) if v == "false" || v == "0" => Ok(false),
        Some(v) => Err(ApiError::invalid(format!(
            "terminate must be true or false, got {v:?}"
        ))),
    }
}

/// A page size, `default` when absent, 1..=`max`.
pub(crate) fn limit(v: Option<&String>, default: usize, max: usize) -> Result<usize, ApiError> {
    match v {
        None => Ok(default.min(max)),
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid(format!(
                "limit must be a whole number from 1 to {max}, got {l:?}"
            ))),
        },
    }
}

/// The longest `ttl_days` (about 2,700 years).
const MAX_TTL_DAYS: f64 = 1_000_000.0;

/// When a new memory expires: `ttl_days` after `created`, or `expires_at`, not both.
pub(crate) fn expiry(
    created: DateTime<Utc>,
    ttl_days: Option<f64>,
    expires_at: Option<DateTime<Utc>>,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    match (ttl_days, expires_at) {
        (Some(_), Some(_)) => Err(ApiError::invalid("give ttl_days or expires_at, not both")),
        (Some(d), None) => {
            let at = (d.is_finite() && d > 0.0 && d <= MAX_TTL_DAYS)
                .then(|| chrono::Duration::milliseconds((d * 86_400_000.0) as i64))
                .and_then(|ttl| created.checked_add_signed(ttl));
            match at {
                Some(at) => Ok(Some(at)),
                None => Err(ApiError::invalid(format!(
                    "ttl_days must be above 0 and at most {MAX_TTL_DAYS}, got {d}"
                ))),
            }
        }
        (None, at) => Ok(at),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;
    use crate::api::wire::DeduplicationRequest;

    #[test]
    fn json_body_tells_unreadable_from_invalid() {
        let e = json_body::<DeduplicationRequest>(b"{not json").unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.message().contains("not valid JSON"), "{e}");
        let e = json_body::<DeduplicationRequest>(br#"{"user": "x"}"#).unwrap_err();
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(e.message().contains("unknown field `user`"), "{e}");
        let e = json_body::<DeduplicationRequest>(br#"{"user_id": 7}"#).unwrap_err();
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let empty = json_body::<DeduplicationRequest>(b"  \n").unwrap();
        assert_eq!(empty.user_id, None);
        assert!(empty.run_async, "async defaults to true");
    }

    #[test]
    fn user_id_must_be_present_and_not_blank() {
        assert_eq!(user_id(Some("u".into()), "in the body").unwrap(), "u");
        let e = user_id(Some("  ".into()), "in the body").unwrap_err();
        assert_eq!(e.message(), "user_id in the body is empty");
        let e = user_id(None, "(query parameter)").unwrap_err();
        assert_eq!(e.message(), "user_id (query parameter) is required");
    }

    #[test]
    fn threshold_is_a_cosine() {
        assert_eq!(threshold(None).unwrap(), None);
        assert_eq!(threshold(Some(0.85)).unwrap(), Some(0.85));
        for bad in [1.5, -0.1, f64::NAN, f64::INFINITY] {
            let e = threshold(Some(bad)).unwrap_err();
            assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
            assert!(e.message().contains("between 0 and 1"), "{e}");
        }
    }

    #[test]
    fn within_names_the_field() {
        assert_eq!(
            within("importance", Some(10.0), 0.0, 10.0).unwrap(),
            Some(10.0)
        );
        let e = within("confidence", Some(2.0), 0.0, 1.0).unwrap_err();
        assert_eq!(e.message(), "confidence must be between 0 and 1, got 2");
    }

    #[test]
    fn terminate_defaults_to_true() {
        assert!(terminate(None).unwrap());
        assert!(terminate(Some(&"TRUE".into())).unwrap());
        assert!(!terminate(Some(&"0".into())).unwrap());
        assert!(terminate(Some(&"maybe".into())).is_err());
    }

    #[test]
    fn limit_is_bounded() {
        assert_eq!(limit(None, 50, 1000).unwrap(), 50);
        assert_eq!(limit(Some(&"1000".into()), 50, 1000).unwrap(), 1000);
        for bad in ["0", "1001", "-1", "ten"] {
            assert!(limit(Some(&bad.into()), 50, 1000).is_err(), "{bad}");
        }
    }

    #[test]
    fn expiry_takes_one_of_two() {
        let now = Utc::now();
        assert_eq!(expiry(now, None, None).unwrap(), None);
        assert_eq!(
            expiry(now, Some(1.0), None).unwrap(),
            Some(now + chrono::Duration::days(1))
        );
        assert_eq!(expiry(now, None, Some(now)).unwrap(), Some(now));
        assert!(expiry(now, Some(1.0), Some(now)).is_err());
        for bad in [0.0, -1.0, f64::NAN, 1e12] {
            assert!(expiry(now, Some(bad), None).is_err(), "{bad}");
        }
    }
}
