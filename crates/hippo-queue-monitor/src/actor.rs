//! Who acts and from where, for the record every operator action leaves in the event
//! stream.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use hippo_queue_core::events::{Event, OperatorAction};

use crate::auth::Principal;
use crate::state::Shared;

/// The operator of a request.
#[derive(Debug, Clone)]
pub struct Actor {
    /// Who (from the credentials).
    pub who: String,
    /// From where: the peer address, and what a proxy said it forwarded for.
    pub from: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let who = parts
            .extensions
            .get::<Principal>()
            .map_or_else(|| "unknown".to_string(), ToString::to_string);
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.to_string());
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .map(str::trim);
        let from = match (peer, forwarded) {
            (Some(p), Some(f)) => format!("{f} (via {p})"),
            (Some(p), None) => p,
            (None, Some(f)) => format!("{f} (forwarded)"),
            (None, None) => "unknown".to_string(),
        };
        Ok(Actor { who, from })
    }
}

impl Actor {
    /// Records an action in the event stream; a failure to record is logged, not
    /// fatal (the action happened).
    pub(crate) async fn record(
        &self,
        s: &Shared,
        action: &str,
        task_id: Option<&str>,
        worker: Option<&str>,
        detail: String,
    ) {
        tracing::info!(action, who = %self.who, from = %self.from, %detail, "operator action");
        let e = Event::operator(
            OperatorAction::new(action, &self.who, &self.from, detail),
            task_id,
            worker,
        );
        if let Err(err) = s.source.emit(&[e]).await {
            tracing::warn!(error = %err, action, "operator action not recorded");
        }
    }
}
