//! `/v1/memories`: add, list, read and delete a user's memories.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;

use super::ApiResult;
use crate::api::error::ApiError;
use crate::api::extract::{self, QueryMap, json_body, required_text, user_id};
use crate::api::state::{ApiState, DEFAULT_PAGE};
use crate::api::wire::{Deleted, ErrorBody, MemoryPage, MemoryRequest};
use crate::model::{Memory, MemoryType};
use crate::store::PageRequest;

/// A memory as the API shows it: without its vector.
fn public(mut m: Memory) -> Memory {
    m.embedding = None;
    m
}

/// The memory a request describes, created now.
fn new_memory(r: MemoryRequest) -> Result<Memory, ApiError> {
    let user = user_id(r.user_id, "in the body")?;
    let text = required_text(r.text, "text")?;
    let ty = match &r.memory_type {
        Some(t) => t.parse::<MemoryType>().map_err(ApiError::invalid)?,
        None => MemoryType::Fact,
    };
    let mut m = Memory::new(user, text, ty);
    if let Some(i) = extract::within("importance", r.importance, 0.0, 10.0)? {
        m.importance = i;
    }
    if let Some(c) = extract::within("confidence", r.confidence, 0.0, 1.0)? {
        m.confidence = c;
    }
    for t in r.tags {
        if !m.tags.contains(&t) {
            m.tags.push(t);
        }
    }
    m.session_id = r.session_id;
    m.agent_id = r.agent_id;
    m.metadata = r.metadata;
    m.expires_at = extract::expiry(m.created_at, r.ttl_days, r.expires_at)?;
    Ok(m)
}

/// Add a memory.
#[utoipa::path(post, path = "/v1/memories", tag = "memories",
    request_body = MemoryRequest,
    responses(
        (status = 201, description = "the memory", body = Memory),
        (status = 400, description = "not JSON", body = ErrorBody),
        (status = 422, description = "a field is missing or invalid", body = ErrorBody)))]
pub(super) async fn add_memory(State(s): State<ApiState>, body: Bytes) -> ApiResult {
    let m = new_memory(json_body(&body)?)?;
    s.inner.store.put(&m).await?;
    Ok((StatusCode::CREATED, axum::Json(public(m))).into_response())
}

/// A user's memories, a page at a time (ordered by id).
#[utoipa::path(get, path = "/v1/memories", tag = "memories",
    params(
        ("user_id" = String, Query, description = "the user"),
        ("limit" = Option<usize>, Query, description = "page size, 1 to the API's maximum (1,000 by default); 50 if omitted"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses(
        (status = 200, description = "one page", body = MemoryPage),
        (status = 422, description = "user_id is missing or limit is out of range", body = ErrorBody)))]
pub(super) async fn list_memories(State(s): State<ApiState>, q: QueryMap) -> ApiResult {
    let q = extract::query(q)?;
    let user = user_id(q.get("user_id").cloned(), "(query parameter)")?;
    let limit = extract::limit(q.get("limit"), DEFAULT_PAGE, s.inner.max_page)?;
    let page = PageRequest {
        after: q.get("cursor").filter(|c| !c.is_empty()).cloned(),
        limit,
    };
    let total = s.inner.store.count_by_user(&user).await?;
    let p = s.inner.store.list_by_user(&user, &page).await?;
    Ok(axum::Json(MemoryPage {
        user_id: user,
        total,
        memories: p.items.into_iter().map(public).collect(),
        next_cursor: p.next,
    })
    .into_response())
}

/// One memory.
#[utoipa::path(get, path = "/v1/memories/{id}", tag = "memories",
    params(
        ("id" = String, Path, description = "the memory id"),
        ("user_id" = String, Query, description = "its owner")),
    responses(
        (status = 200, description = "the memory", body = Memory),
        (status = 404, description = "no such memory", body = ErrorBody),
        (status = 422, description = "user_id is missing", body = ErrorBody)))]
pub(super) async fn get_memory(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    q: QueryMap,
) -> ApiResult {
    let q = extract::query(q)?;
    let user = user_id(q.get("user_id").cloned(), "(query parameter)")?;
    match s.inner.store.get(&user, &id).await? {
        Some(m) => Ok(axum::Json(public(m)).into_response()),
        None => Err(ApiError::not_found(format!(
            "no memory {id:?} for user {user:?}"
        ))),
    }
}

/// Delete a memory.
#[utoipa::path(delete, path = "/v1/memories/{id}", tag = "memories",
    params(
        ("id" = String, Path, description = "the memory id"),
        ("user_id" = String, Query, description = "its owner")),
    responses(
        (status = 200, description = "deleted", body = Deleted),
        (status = 404, description = "no such memory", body = ErrorBody),
        (status = 422, description = "user_id is missing", body = ErrorBody)))]
pub(super) async fn delete_memory(
    State(s): State<ApiState>,
    Path(id): Path<String>,
    q: QueryMap,
) -> ApiResult {
    let q = extract::query(q)?;
    let user = user_id(q.get("user_id").cloned(), "(query parameter)")?;
    match s
        .inner
        .store
        .delete(&user, std::slice::from_ref(&id))
        .await?
    {
        0 => Err(ApiError::not_found(format!(
            "no memory {id:?} for user {user:?}"
        ))),
        _ => Ok(axum::Json(Deleted {
            deleted: true,
            id,
            user_id: user,
        })
        .into_response()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memory_request_becomes_a_memory() {
        let mut r = MemoryRequest::new("u", "Likes jazz");
        r.memory_type = Some("preference".into());
        r.tags = vec!["music".into(), "music".into()];
        r.ttl_days = Some(2.0);
        let m = new_memory(r).unwrap();
        assert_eq!(m.memory_type, MemoryType::Preference);
        assert_eq!(m.tags, ["music"]);
        assert_eq!(m.expires_at, Some(m.created_at + chrono::Duration::days(2)));
    }

    #[test]
    fn a_bad_memory_request_names_its_field() {
        let mut r = MemoryRequest::new("u", "x");
        r.memory_type = Some("feeling".into());
        assert!(new_memory(r).unwrap_err().message().contains("feeling"));
        let mut r = MemoryRequest::new("u", "x");
        r.importance = Some(11.0);
        assert!(
            new_memory(r)
                .unwrap_err()
                .message()
                .starts_with("importance")
        );
        let r = MemoryRequest::new("u", " ");
        assert_eq!(new_memory(r).unwrap_err().message(), "text is required");
    }

    #[test]
    fn the_vector_is_not_shown() {
        let mut m = Memory::new("u", "x", MemoryType::Fact);
        m.embedding = Some(vec![1.0]);
        assert_eq!(public(m).embedding, None);
    }
}
