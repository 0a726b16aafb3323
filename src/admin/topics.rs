//! Topics: the live list with rates, one topic with its subscribers, and its live delivery
//! policy (read and replace).

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::stats::TopicRates;
use super::AdminState;
use crate::http::{ApiError, ErrorBody};
use crate::hub::{DeliveryPolicy, SetPolicyError, TopicInfo, TopicName};
use crate::protocol::ErrorCode;

/// A topic with its rates.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct TopicDetail {
    /// Facts: name, declared, policy, epoch, head offset, history, subscribers, counters.
    #[serde(flatten)]
    #[schema(inline, value_type = Object)]
    pub info: TopicInfo,
    /// Rates over the last interval.
    pub rates: TopicRates,
    /// Subscribed connection ids (topic detail only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscriber_ids: Option<Vec<u64>>,
}

/// All topics.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct TopicList {
    /// Live topics, by name.
    pub items: Vec<TopicDetail>,
}

fn topic_param(raw: &str) -> Result<TopicName, ApiError> {
    TopicName::new(raw).map_err(|e| ApiError::new(ErrorCode::InvalidArgument, format!("topic: {e}")))
}

/// List live topics.
#[utoipa::path(get, path = "/v1/admin/topics", responses((status = 200, body = TopicList), (status = 401, body = ErrorBody)))]
pub(super) async fn list_topics(State(s): State<AdminState>) -> Json<TopicList> {
    let rates = s.shared.topic_rates.read().clone();
    let mut items: Vec<TopicDetail> = s
        .ctx
        .manager
        .topics()
        .infos()
        .into_iter()
        .map(|info| TopicDetail {
            rates: rates.get(&info.name).copied().unwrap_or_default(),
            info,
            subscriber_ids: None,
        })
        .collect();
    items.sort_by(|a, b| a.info.name.as_str().cmp(b.info.name.as_str()));
    Json(TopicList { items })
}

/// One topic (`topic` percent-encoded: `video%2Fcam1`).
#[utoipa::path(get, path = "/v1/admin/topics/{topic}", params(("topic" = String, Path, description = "Topic name, percent-encoded")),
    responses((status = 200, body = TopicDetail), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn get_topic(
    State(s): State<AdminState>,
    Path(topic): Path<String>,
) -> Result<Json<TopicDetail>, ApiError> {
    let name = topic_param(&topic)?;
    let info = s
        .ctx
        .manager
        .topic_info(&name)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no live topic {name}")))?;
    let mut ids: Vec<u64> = s.ctx.manager.clients_for_topic(&name).iter().map(|c| c.id().0).collect();
    ids.sort_unstable();
    let rates = s.shared.topic_rates.read().get(&name).copied().unwrap_or_default();
    Ok(Json(TopicDetail { info, rates, subscriber_ids: Some(ids) }))
}

/// A topic's delivery policy (the one it would get, if it does not exist yet).
#[utoipa::path(get, path = "/v1/admin/topics/{topic}/policy", params(("topic" = String, Path, description = "Topic name, percent-encoded")),
    responses((status = 200, description = "The policy, as in `docs/protocol.md`", body = Object), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn get_policy(
    State(s): State<AdminState>,
    Path(topic): Path<String>,
) -> Result<Json<DeliveryPolicy>, ApiError> {
    Ok(Json(s.ctx.manager.delivery_policy(&topic_param(&topic)?)))
}

/// Replace a topic's delivery policy; it applies from the next message, on every node of a
/// cluster (shared through Redis; 503 `unavailable` and nothing changed when Redis is
/// unreachable), and to the topic if it is created (again) later.
#[utoipa::path(put, path = "/v1/admin/topics/{topic}/policy", params(("topic" = String, Path, description = "Topic name, percent-encoded")),
    request_body(content = Object, description = "A delivery policy: `{\"kind\": \"best_effort\" | \"reliable\" | \"rate_limited\", …}`"),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn put_policy(
    State(s): State<AdminState>,
    Path(topic): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<DeliveryPolicy>, ApiError> {
    let name = topic_param(&topic)?;
    let policy: DeliveryPolicy = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(ErrorCode::InvalidArgument, format!("invalid policy: {e}")))?;
    s.ctx.broker.set_policy(&s.ctx.manager, &name, policy.clone()).await.map_err(|e| match e {
        SetPolicyError::Invalid(p) => {
            ApiError::new(ErrorCode::InvalidArgument, format!("invalid policy: `{}` {}", p.field, p.message))
        }
        SetPolicyError::Topic(t) => ApiError::new(ErrorCode::FailedPrecondition, t.to_string()),
        SetPolicyError::Unavailable(m) => ApiError::new(ErrorCode::Unavailable, m),
    })?;
    tracing::info!(topic = %name, ?policy, "delivery policy changed");
    Ok(Json(policy))
}

/// Drop a policy set at run time: the topic goes back to its configured policy (its
/// declaration's, or the default) from the next message, on every node of a cluster. Answers
/// the policy now in force.
#[utoipa::path(delete, path = "/v1/admin/topics/{topic}/policy", params(("topic" = String, Path, description = "Topic name, percent-encoded")),
    responses((status = 200, description = "The configured policy, now in force", body = Object), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn reset_policy(
    State(s): State<AdminState>,
    Path(topic): Path<String>,
) -> Result<Json<DeliveryPolicy>, ApiError> {
    let name = topic_param(&topic)?;
    let policy = s.ctx.broker.reset_policy(&s.ctx.manager, &name).await.map_err(|e| match e {
        SetPolicyError::Unavailable(m) => ApiError::new(ErrorCode::Unavailable, m),
        other => ApiError::new(ErrorCode::FailedPrecondition, other.to_string()),
    })?;
    tracing::info!(topic = %name, ?policy, "delivery policy reset to the configured one");
    Ok(Json(policy))
}
