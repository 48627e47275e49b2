//! Who may call the API, and what a request must look like before a handler sees it:
//! the `Host` header on the allow-list (a page on another site cannot reach a
//! loopback API through DNS rebinding), a bearer token when tokens are configured,
//! a JSON body (415 otherwise) within the body limit (413), read within the body
//! timeout (408).
//!
//! The decisions are pure functions, each tested on headers alone; [`check`] is the
//! middleware that applies them in that order.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::state::ApiState;

/// The fewest characters a bearer token may have.
pub const MIN_TOKEN_LEN: usize = 16;

/// What the API lets through; part of [`ApiState`], set on its builder.
#[derive(Clone, Default)]
pub(crate) struct Access {
    pub(crate) tokens: Vec<String>,
    pub(crate) hosts: Vec<String>,
    pub(crate) body_limit: usize,
    pub(crate) body_timeout: Duration,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the tokens are secrets: only how many
        f.debug_struct("Access")
            .field("tokens", &self.tokens.len())
            .field("hosts", &self.hosts)
            .field("body_limit", &self.body_limit)
            .field("body_timeout", &self.body_timeout)
            .finish()
    }
}

/// Checks a token before it is configured: long enough and printable.
pub(crate) fn valid_token(token: &str) -> Result<(), String> {
    if token.chars().count() < MIN_TOKEN_LEN {
        return Err(format!(
            "an API token must have at least {MIN_TOKEN_LEN} characters (one has {})",
            token.chars().count()
        ));
    }
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err("an API token must be printable ASCII without spaces".into());
    }
    Ok(())
}

/// Whether `authorization` carries one of `tokens` as a bearer token; with no tokens
/// configured, everyone is let through. Every token is compared in constant time, so
/// the time taken does not tell which one (or how much of one) matched.
pub(crate) fn authenticated(tokens: &[String], authorization: Option<&str>) -> bool {
    if tokens.is_empty() {
        return true;
    }
    let Some((scheme, presented)) = authorization.and_then(|v| v.trim().split_once(' ')) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return false;
    }
    let presented = presented.trim().as_bytes();
    let mut found = false;
    for t in tokens {
        found |= bool::from(t.as_bytes().ct_eq(presented));
    }
    found
}

/// The host name of a `Host` header, without its port, lower case (`[::1]:8000`
/// gives `::1`).
pub(crate) fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if host.matches(':').count() > 1 {
        // a bare IPv6 address (in an allow-list): no port
        host
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(host, |(name, _)| name)
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether a request's `Host` is on the allow-list; an empty list allows any.
pub(crate) fn host_allowed(allowed: &[String], host: Option<&str>) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(host) = host else {
        return false;
    };
    let name = host_name(host);
    allowed.iter().any(|a| host_name(a) == name)
}

/// Whether a request carries a body: a non-zero `Content-Length`, or a
/// `Transfer-Encoding`.
fn has_body(headers: &HeaderMap) -> bool {
    content_length(headers).is_some_and(|n| n > 0)
        || headers.contains_key(header::TRANSFER_ENCODING)
}

/// The declared `Content-Length`, when it is a number.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// A body, when there is one, must be JSON: `application/json` or a `+json` type.
pub(crate) fn json_content(headers: &HeaderMap) -> Result<(), ApiError> {
    if !has_body(headers) {
        return Ok(());
    }
    let given = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = given
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media == "application/json"
        || (media.starts_with("application/") && media.ends_with("+json"))
    {
        return Ok(());
    }
    let given = if given.is_empty() { "none" } else { given };
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!("the request body must be JSON: send Content-Type: application/json (got {given})"),
    ))
}

/// A declared `Content-Length` over the limit.
pub(crate) fn within_limit(headers: &HeaderMap, limit: usize) -> Result<(), ApiError> {
    match content_length(headers) {
        Some(n) if n > limit as u64 => Err(too_large(limit)),
        _ => Ok(()),
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is over the limit of {limit} bytes"),
    )
}

/// The middleware: the `Host` allow-list (400), the bearer token (401 with a
/// `WWW-Authenticate` challenge), a JSON body (415) within the limit (413), read
/// whole within the body timeout (408) before the handler runs.
pub(crate) async fn check(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let access = &state.inner.access;
    let headers = req.headers();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    // HTTP/2 carries the host in the URI's authority
    let host = host.or_else(|| req.uri().authority().map(|a| a.as_str()));
    if !host_allowed(&access.hosts, host) {
        return ApiError::bad_request(format!(
            "this server does not answer to the host {:?}",
            host.unwrap_or("")
        ))
        .into_response();
    }
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !authenticated(&access.tokens, authorization) {
        let mut res = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "authentication required: send Authorization: Bearer <token>",
        )
        .into_response();
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"hippo-memory\""),
        );
        return res;
    }
    if let Err(e) = json_content(headers).and_then(|()| within_limit(headers, access.body_limit)) {
        return e.into_response();
    }
    let (parts, body) = req.into_parts();
    let read = axum::body::to_bytes(body, access.body_limit);
    let bytes = match tokio::time::timeout(access.body_timeout, read).await {
        Err(_) => {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body was not received within {} s",
                    access.body_timeout.as_secs_f64()
                ),
            )
            .into_response();
        }
        Ok(Err(_)) => return too_large(access.body_limit).into_response(),
        Ok(Ok(b)) => b,
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn tokens_are_bearer_tokens_compared_whole() {
        let tokens = vec![
            "0123456789abcdef".to_string(),
            "fedcba9876543210".to_string(),
        ];
        assert!(authenticated(&[], None));
        assert!(!authenticated(&tokens, None));
        assert!(authenticated(&tokens, Some("Bearer 0123456789abcdef")));
        assert!(authenticated(&tokens, Some("bearer  fedcba9876543210 ")));
        assert!(!authenticated(&tokens, Some("Bearer 0123456789abcde")));
        assert!(!authenticated(&tokens, Some("Bearer 0123456789abcdef0")));
        assert!(!authenticated(&tokens, Some("Basic 0123456789abcdef")));
        assert!(!authenticated(&tokens, Some("Bearer")));
        assert!(!authenticated(&tokens, Some("")));
    }

    #[test]
    fn short_or_unprintable_tokens_are_refused() {
        assert!(valid_token("0123456789abcdef").is_ok());
        assert!(valid_token("short").unwrap_err().contains("at least 16"));
        assert!(valid_token("0123456789 abcdef").is_err());
    }

    #[test]
    fn hosts_are_compared_without_port_and_case() {
        assert_eq!(host_name("LocalHost:8000"), "localhost");
        assert_eq!(host_name("[::1]:8000"), "::1");
        assert_eq!(host_name("[::1]"), "::1");
        assert_eq!(host_name("::1"), "::1");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
        assert_eq!(host_name("api.example.com."), "api.example.com");
        let allowed = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
        assert!(host_allowed(&[], None));
        assert!(host_allowed(&allowed, Some("127.0.0.1:8000")));
        assert!(host_allowed(&allowed, Some("[::1]:1")));
        assert!(host_allowed(&allowed, Some("localhost")));
        assert!(!host_allowed(&allowed, Some("attacker.example:8000")));
        assert!(!host_allowed(&allowed, Some("localhost.attacker.example")));
        assert!(!host_allowed(&allowed, None));
    }

    #[test]
    fn a_body_must_be_json() {
        assert!(json_content(&headers(&[])).is_ok());
        assert!(json_content(&headers(&[("content-length", "0")])).is_ok());
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            let h = headers(&[("content-length", "2"), ("content-type", ok)]);
            assert!(json_content(&h).is_ok(), "{ok}");
        }
        let e = json_content(&headers(&[
            ("content-length", "2"),
            ("content-type", "application/x-www-form-urlencoded"),
        ]))
        .unwrap_err();
        assert_eq!(e.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(e.message().contains("application/x-www-form-urlencoded"));
        let e = json_content(&headers(&[("transfer-encoding", "chunked")])).unwrap_err();
        assert!(e.message().contains("got none"), "{e}");
    }

    #[test]
    fn a_declared_length_over_the_limit_is_refused() {
        assert!(within_limit(&headers(&[("content-length", "10")]), 10).is_ok());
        let e = within_limit(&headers(&[("content-length", "11")]), 10).unwrap_err();
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(within_limit(&headers(&[]), 10).is_ok());
    }
}
