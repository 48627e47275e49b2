//! The web dashboard: one page and its script, drawn from the monitor's own API with
//! relative URLs (so it works under any URL prefix), and the live feed that tells it
//! when to redraw (server-sent events).
//!
//! The feed is stateless like the rest: every [`LIVE_TICK`] it reads a small digest
//! of the deployment (the newest task record, the workers' counters, the queues'
//! lengths, the beat's last runs) and sends `change` when the digest differs from the
//! last one sent.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde_json::json;
use tokio::sync::OwnedSemaphorePermit;

use crate::error::ApiError;
use crate::state::Shared;

/// How often the live feed looks for changes.
pub const LIVE_TICK: Duration = Duration::from_secs(1);
/// Most live feeds open at once (each reads Redis every tick).
pub const MAX_LIVE: usize = 64;

const INDEX: &str = include_str!("../dashboard/index.html");
const SCRIPT: &str = include_str!("../dashboard/app.js");
const STYLE: &str = include_str!("../dashboard/app.css");

/// Only this monitor's own files, nothing inline, never in a frame.
const CSP: &str = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut res = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

/// The relative redirect that adds the trailing slash to a page's path (`/flower` to
/// `flower/`), or `None` when it has one. Relative, so a proxy's prefix is kept.
pub fn slash_redirect(path: &str) -> Option<String> {
    if path.ends_with('/') {
        return None;
    }
    let last = path.rsplit('/').next().unwrap_or("");
    Some(format!("{last}/"))
}

/// `GET /`: the page.
pub(crate) async fn index(OriginalUri(uri): OriginalUri) -> Response {
    match slash_redirect(uri.path()) {
        Some(to) => match HeaderValue::from_str(&to) {
            Ok(location) => (
                StatusCode::PERMANENT_REDIRECT,
                [(header::LOCATION, location)],
            )
                .into_response(),
            Err(_) => StatusCode::NOT_FOUND.into_response(),
        },
        None => page("text/html; charset=utf-8", INDEX),
    }
}

/// `GET /static/app.js`.
pub(crate) async fn script() -> Response {
    page("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /static/app.css`.
pub(crate) async fn style() -> Response {
    page("text/css; charset=utf-8", STYLE)
}

/// What the live feed compares between ticks.
async fn digest(s: &Shared) -> String {
    let newest = s.source.task_history(None, 1).await;
    let workers = s.source.workers().await;
    let (newest, workers) = match (newest, workers) {
        (Ok(n), Ok(w)) => (n, w),
        (Err(e), _) | (_, Err(e)) => return json!({"error": e.to_string()}).to_string(),
    };
    let seen = s.source.workers_seen().await.unwrap_or_default();
    let beat = s.source.published_status().await.ok().flatten();
    let queues = crate::api::queues::consumed(workers.iter().chain(&seen));
    let stats = s.source.queue_stats(&queues).await.unwrap_or_default();
    json!({
        "newest": newest.tasks.first().map(|m| (m.task_id.clone(), m.state.as_str(), m.date_done)),
        "seen": seen.iter().map(|w| w.id.clone()).collect::<Vec<_>>(),
        "beat": beat.map(|b| b.entries.into_iter().map(|e| (e.name, e.last_run_ms)).collect::<Vec<_>>()),
        "workers": workers.iter().map(|w| (w.id.clone(), w.active, w.processed(), w.concurrency, w.queues.clone())).collect::<Vec<_>>(),
        "queues": stats.iter().map(|q| (q.queue.clone(), q.waiting(), q.delayed, q.reserved, q.dead_letter)).collect::<Vec<_>>(),
    })
    .to_string()
}

/// `GET /api/live`: `change` events (503 past [`MAX_LIVE`] open feeds).
pub(crate) async fn live(
    State(s): State<Shared>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let permit: OwnedSemaphorePermit = Arc::clone(&s.live)
        .try_acquire_owned()
        .map_err(|_| ApiError::Busy(format!("more than {MAX_LIVE} live feeds are open")))?;
    let stream = futures_util::stream::unfold(
        (s, None::<String>, permit),
        |(s, last, permit)| async move {
            if last.is_some() {
                tokio::time::sleep(LIVE_TICK).await;
            }
            let mut last = last;
            loop {
                let now = digest(&s).await;
                if last.as_deref() != Some(now.as_str()) {
                    let event = Event::default().event("change").data(now.clone());
                    return Some((Ok(event), (s, Some(now), permit)));
                }
                last = Some(now);
                tokio::time::sleep(LIVE_TICK).await;
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_get_their_trailing_slash_relative_to_the_prefix() {
        assert_eq!(slash_redirect("/"), None);
        assert_eq!(slash_redirect("/flower/"), None);
        assert_eq!(slash_redirect("/flower").as_deref(), Some("flower/"));
        assert_eq!(slash_redirect("/ops/flower").as_deref(), Some("flower/"));
    }
}
