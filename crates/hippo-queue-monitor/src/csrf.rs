//! Cross-site request forgery: a mutating request (anything but GET, HEAD, OPTIONS)
//! that a browser sent from another site is refused with 403.
//!
//! Browsers say where a request comes from (`Sec-Fetch-Site`, `Origin`); a page of
//! another site cannot hide either. Scripts and command-line clients send neither and
//! are let through (they hold the credentials themselves). Credentials a browser
//! remembered (basic auth) are therefore never enough to act from another site.

use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `Sec-Fetch-Site` says another site sent it.
    CrossSite,
    /// `Origin` names another origin than the one served.
    ForeignOrigin,
}

/// Whether a request may change anything.
pub fn check(method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return match site {
            "same-origin" | "none" => Ok(()),
            _ => Err(Refusal::CrossSite),
        };
    }
    let Some(origin) = text("origin") else {
        return Ok(());
    };
    // the host the client addressed: the proxy's when one forwarded the request
    let host = text("x-forwarded-host")
        .and_then(|h| h.split(',').next())
        .or_else(|| text(header::HOST.as_str()))
        .map(str::trim);
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'));
    match (origin_host, host) {
        (Some(o), Some(h)) if o.eq_ignore_ascii_case(h) => Ok(()),
        _ => Err(Refusal::ForeignOrigin),
    }
}

/// The middleware.
pub(crate) async fn guard(req: Request, next: Next) -> Response {
    match check(req.method(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(r) => {
            let why = match r {
                Refusal::CrossSite => "a page of another site sent this request",
                Refusal::ForeignOrigin => "the request's Origin is not this monitor",
            };
            tracing::warn!(reason = why, "cross-site request refused");
            (
                StatusCode::FORBIDDEN,
                axum::Json(serde_json::json!({
                    "error": format!("cross-site request refused: {why}")
                })),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn reads_are_never_refused() {
        let h = headers(&[("sec-fetch-site", "cross-site")]);
        assert_eq!(check(&Method::GET, &h), Ok(()));
    }

    #[test]
    fn browsers_must_be_on_the_same_origin_and_scripts_pass() {
        let post = Method::POST;
        assert_eq!(
            check(&post, &headers(&[])),
            Ok(()),
            "curl sends neither header"
        );
        assert_eq!(
            check(&post, &headers(&[("sec-fetch-site", "same-origin")])),
            Ok(())
        );
        assert_eq!(
            check(&post, &headers(&[("sec-fetch-site", "cross-site")])),
            Err(Refusal::CrossSite)
        );
        assert_eq!(
            check(&post, &headers(&[("sec-fetch-site", "same-site")])),
            Err(Refusal::CrossSite)
        );
        let same = headers(&[
            ("origin", "http://mon.example:5555"),
            ("host", "mon.example:5555"),
        ]);
        assert_eq!(check(&post, &same), Ok(()));
        let other = headers(&[
            ("origin", "https://evil.example"),
            ("host", "mon.example:5555"),
        ]);
        assert_eq!(check(&post, &other), Err(Refusal::ForeignOrigin));
        let null = headers(&[("origin", "null"), ("host", "mon.example")]);
        assert_eq!(check(&post, &null), Err(Refusal::ForeignOrigin));
        let proxied = headers(&[
            ("origin", "https://ops.example"),
            ("host", "127.0.0.1:5555"),
            ("x-forwarded-host", "ops.example"),
        ]);
        assert_eq!(check(&post, &proxied), Ok(()));
    }
}
