//! `GET /api/beat`: the beat's entries and leader, from the status the leading
//! scheduler publishes in the beat store, and the entries' run counts from the store
//! ([`crate::beat_view`]).

use axum::Json;
use axum::extract::State;
use serde_json::Value;

use crate::beat_view::beat_json;
use crate::error::ApiError;
use crate::state::Shared;

/// `GET /api/beat`.
pub(crate) async fn status(State(s): State<Shared>) -> Result<Json<Value>, ApiError> {
    let status = s.source.published_status().await?;
    let names: Vec<String> = status
        .iter()
        .flat_map(|st| st.entries.iter().map(|e| e.name.clone()))
        .collect();
    let runs = s.source.run_counts(&names).await?;
    Ok(Json(beat_json(status.as_ref(), &runs)))
}
