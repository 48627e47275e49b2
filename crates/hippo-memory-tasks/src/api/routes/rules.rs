//! `/v1/procedural/...`: a user's procedural rules, and their consolidation.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;

use super::ApiResult;
use super::tasks::submitted;
use crate::api::error::ApiError;
use crate::api::extract::{self, QueryMap, json_body, required_text, user_id};
use crate::api::state::ApiState;
use crate::api::wire::{ErrorBody, RulePage, RuleRequest, Submitted};
use crate::model::ProceduralRule;
use crate::store::{PageRequest, load_rules};
use crate::tasks::ConsolidateProceduralRulesTask;

/// Merge a user's redundant procedural rules (`consolidate_procedural_rules`, queue
/// `background`).
#[utoipa::path(post, path = "/v1/procedural/consolidate", tag = "procedural",
    params(("user_id" = String, Query, description = "the user")),
    responses(
        (status = 202, description = "submitted", body = Submitted),
        (status = 404, description = "unknown user", body = ErrorBody),
        (status = 422, description = "user_id is missing", body = ErrorBody)))]
pub(super) async fn consolidate_rules(State(s): State<ApiState>, q: QueryMap) -> ApiResult {
    let q = extract::query(q)?;
    let user = user_id(q.get("user_id").cloned(), "(query parameter)")?;
    let store = &s.inner.store;
    let rules = store.list_rules(&user, &PageRequest::first(1)).await?;
    if rules.items.is_empty() && !store.user_exists(&user).await? {
        return Err(ApiError::not_found(format!(
            "unknown user {user:?}: no procedural rules or memories are stored for this user"
        )));
    }
    let id = s
        .inner
        .client
        .submit_procedural_consolidation(&user)
        .await?;
    submitted::<ConsolidateProceduralRulesTask>(&s, id, true).await
}

/// Add a procedural rule.
#[utoipa::path(post, path = "/v1/procedural/rules", tag = "procedural",
    request_body = RuleRequest,
    responses(
        (status = 201, description = "the rule", body = ProceduralRule),
        (status = 400, description = "not JSON", body = ErrorBody),
        (status = 422, description = "a field is missing or invalid", body = ErrorBody)))]
pub(super) async fn add_rule(State(s): State<ApiState>, body: Bytes) -> ApiResult {
    let r: RuleRequest = json_body(&body)?;
    let user = user_id(r.user_id, "in the body")?;
    let text = required_text(r.rule_text, "rule_text")?;
    let mut rule = ProceduralRule::new(user.clone(), text);
    if let Some(c) = extract::within("confidence", r.confidence, 0.0, 1.0)? {
        rule.confidence = c;
    }
    if let Some(x) = extract::within("success_rate", r.success_rate, 0.0, 1.0)? {
        rule.success_rate = x;
    }
    s.inner
        .store
        .put_rules(&user, std::slice::from_ref(&rule))
        .await?;
    Ok((StatusCode::CREATED, axum::Json(rule)).into_response())
}

/// A user's procedural rules.
#[utoipa::path(get, path = "/v1/procedural/rules", tag = "procedural",
    params(("user_id" = String, Query, description = "the user")),
    responses(
        (status = 200, description = "the rules", body = RulePage),
        (status = 422, description = "user_id is missing", body = ErrorBody)))]
pub(super) async fn list_rules(State(s): State<ApiState>, q: QueryMap) -> ApiResult {
    let q = extract::query(q)?;
    let user = user_id(q.get("user_id").cloned(), "(query parameter)")?;
    let rules = load_rules(s.inner.store.as_ref(), &user).await?;
    Ok(axum::Json(RulePage {
        user_id: user,
        total: rules.len(),
        rules,
    })
    .into_response())
}
