//! Who is asking: the `Authorization` header checked against the configured
//! credentials (basic or bearer), in constant time per credential.
//!
//! With no credentials configured every request is let through: the server then
//! listens on the loopback only (see [`MonitorConfig::bind_address`]).
//!
//! [`MonitorConfig::bind_address`]: crate::MonitorConfig::bind_address

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use subtle::ConstantTimeEq;

use crate::config::MonitorConfig;
use crate::state::Shared;

/// Who made a request, as recorded with operator actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No credentials are configured (loopback only).
    Anonymous,
    /// A basic-auth user.
    User(String),
    /// The bearer token at this 1-based position of the configured list.
    Token(usize),
    /// The metrics token at this 1-based position (`/metrics` only).
    MetricsToken(usize),
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Anonymous => f.write_str("anonymous (no auth configured)"),
            Principal::User(u) => write!(f, "user {u}"),
            Principal::Token(n) => write!(f, "bearer token #{n}"),
            Principal::MetricsToken(n) => write!(f, "metrics token #{n}"),
        }
    }
}

/// What the check decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let through.
    Allow(Principal),
    /// No usable credentials were sent: 401 with a challenge.
    Challenge,
}

fn equal(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// The position of the token among `tokens` (1-based), comparing every one.
fn find_token(tokens: &[crate::config::Token], presented: &str) -> Option<usize> {
    let mut found = None;
    for (i, t) in tokens.iter().enumerate() {
        if equal(t.secret(), presented) && found.is_none() {
            found = Some(i + 1);
        }
    }
    found
}

/// Decides on a request's `Authorization` header; `metrics` says whether the route is
/// `/metrics`, which metrics tokens open too.
pub fn decide(config: &MonitorConfig, authorization: Option<&str>, metrics: bool) -> Decision {
    if !config.has_auth() {
        return Decision::Allow(Principal::Anonymous);
    }
    let Some(value) = authorization else {
        return Decision::Challenge;
    };
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        // every token is compared, so the time taken does not tell which matched
        if let Some(n) = find_token(config.tokens(), rest) {
            return Decision::Allow(Principal::Token(n));
        }
        return match find_token(config.metrics_only_tokens(), rest) {
            Some(n) if metrics => Decision::Allow(Principal::MetricsToken(n)),
            _ => Decision::Challenge,
        };
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(rest) else {
            return Decision::Challenge;
        };
        let Ok(text) = String::from_utf8(raw) else {
            return Decision::Challenge;
        };
        let Some((user, password)) = text.split_once(':') else {
            return Decision::Challenge;
        };
        let mut found = None;
        for c in config.basic() {
            let ok = equal(&c.user, user) & equal(c.password(), password);
            if ok && found.is_none() {
                found = Some(c.user.clone());
            }
        }
        return found.map_or(Decision::Challenge, |u| Decision::Allow(Principal::User(u)));
    }
    Decision::Challenge
}

/// The middleware: 401 with `WWW-Authenticate` unless [`decide`] allows; the
/// principal goes into the request's extensions for the handlers.
pub(crate) async fn require(
    State(shared): State<Shared>,
    mut req: Request,
    next: Next,
) -> Response {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // exactly the metrics route (a nested router may see the path with or without
    // its prefix)
    let path = req.uri().path();
    let metrics = path == "/metrics"
        || path
            .strip_prefix(shared.config.prefix())
            .is_some_and(|rest| rest == "/metrics");
    match decide(&shared.config, header, metrics) {
        Decision::Allow(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Decision::Challenge => {
            let mut res = (
                StatusCode::UNAUTHORIZED,
                axum::Json(serde_json::json!({"error": "authentication required"})),
            )
                .into_response();
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"hippo-queue monitor\", charset=\"UTF-8\""),
            );
            res
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    #[test]
    fn no_credentials_configured_lets_everyone_through() {
        assert_eq!(
            decide(&MonitorConfig::new(), None, false),
            Decision::Allow(Principal::Anonymous)
        );
    }

    #[test]
    fn basic_and_bearer_credentials_are_checked() {
        let c = MonitorConfig::new()
            .basic_auth("ann:one,bob:two")
            .unwrap()
            .bearer_tokens(["0123456789abcdef"])
            .unwrap();
        assert_eq!(decide(&c, None, false), Decision::Challenge);
        assert_eq!(
            decide(&c, Some(&basic("bob", "two")), false),
            Decision::Allow(Principal::User("bob".into()))
        );
        assert_eq!(
            decide(&c, Some(&basic("bob", "one")), false),
            Decision::Challenge
        );
        assert_eq!(
            decide(&c, Some(&basic("eve", "two")), false),
            Decision::Challenge
        );
        assert_eq!(
            decide(&c, Some("Bearer 0123456789abcdef"), false),
            Decision::Allow(Principal::Token(1))
        );
        assert_eq!(
            decide(&c, Some("bearer 0123456789abcdeX"), false),
            Decision::Challenge
        );
        assert_eq!(decide(&c, Some("Basic !!!"), false), Decision::Challenge);
        assert_eq!(decide(&c, Some("Digest x"), false), Decision::Challenge);
    }

    #[test]
    fn metrics_tokens_open_metrics_only() {
        let c = MonitorConfig::new()
            .basic_auth("ann:one")
            .unwrap()
            .metrics_tokens(["prometheus-scrape-token"])
            .unwrap();
        let header = Some("Bearer prometheus-scrape-token");
        assert_eq!(
            decide(&c, header, true),
            Decision::Allow(Principal::MetricsToken(1))
        );
        assert_eq!(decide(&c, header, false), Decision::Challenge);
        let alone = MonitorConfig::new()
            .metrics_tokens(["prometheus-scrape-token"])
            .unwrap();
        assert!(alone.bind_address().is_err());
    }
}
