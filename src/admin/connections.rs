//! Connections: the filtered, paginated list, one connection's details, and kicking one.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AdminState;
use crate::http::{ApiError, ErrorBody};
use crate::hub::{ClientInfo, ConnId, TopicName};
use crate::protocol::{CloseReason, ErrorCode};

/// Filters and paging of the connection list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ConnectionQuery {
    /// Only connections subscribed to this topic.
    topic: Option<String>,
    /// Only connections of this token subject.
    user: Option<String>,
    /// Only this protocol (`websocket`, `webrtc`, `sse`, `tcp`).
    protocol: Option<String>,
    /// Only this state (`active`, `monitored_violation`, …).
    state: Option<String>,
    /// Rows to skip (default 0).
    offset: Option<usize>,
    /// Rows to return (default 100, at most `admin.max_page_size`).
    limit: Option<usize>,
}

/// One row of the connection list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(super) struct ConnectionRow {
    /// Connection id (unique for the process lifetime).
    pub id: u64,
    /// Node holding the connection.
    pub node_id: String,
    /// `websocket`, `webrtc`, `sse`, `tcp`.
    pub protocol: String,
    /// Peer address.
    pub remote_addr: String,
    /// Token subject.
    pub subject: String,
    /// Client-chosen instance id.
    pub client_id: Option<String>,
    /// Connection state.
    pub state: String,
    /// Accepted at, ms since the UNIX epoch.
    pub connected_at_ms: u64,
    /// Last inbound activity, ms since the UNIX epoch.
    pub last_activity_ms: u64,
    /// Subscriptions.
    pub subscriptions: usize,
    /// Data messages queued.
    pub queue_depth: usize,
    /// Messages written.
    pub sent_messages: u64,
    /// Bytes written.
    pub sent_bytes: u64,
    /// Messages dropped over all subscriptions.
    pub dropped: u64,
}

/// A page of connections.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ConnectionPage {
    /// The rows, by id.
    pub items: Vec<ConnectionRow>,
    /// Rows matching the filter.
    pub total: usize,
    /// Rows skipped.
    pub offset: usize,
    /// Page size used.
    pub limit: usize,
}

/// A connection's full details.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ConnectionDetail {
    /// Node holding the connection.
    pub node_id: String,
    /// Everything known about it: subscriptions with offsets and per-topic counters, declared
    /// details, RTT and clock offset from time sync.
    #[schema(value_type = Object)]
    pub connection: ClientInfo,
}

/// `{"success": true}`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Success {
    /// Always true.
    pub success: bool,
}

fn row(node_id: &str, c: &ClientInfo) -> ConnectionRow {
    ConnectionRow {
        id: c.id.0,
        node_id: node_id.to_owned(),
        protocol: c.protocol.as_str().to_owned(),
        remote_addr: c.remote_addr.to_string(),
        subject: c.subject.clone(),
        client_id: c.client_id.clone(),
        state: c.state.as_str().to_owned(),
        connected_at_ms: c.connected_at_ms,
        last_activity_ms: c.last_activity_ms,
        subscriptions: c.subscriptions.len(),
        queue_depth: c.queue_depth,
        sent_messages: c.sent_messages,
        sent_bytes: c.sent_bytes,
        dropped: c.dropped,
    }
}

/// List connections, filtered and paginated.
#[utoipa::path(get, path = "/v1/admin/connections", params(ConnectionQuery),
    responses((status = 200, body = ConnectionPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn list_connections(
    State(s): State<AdminState>,
    Query(q): Query<ConnectionQuery>,
) -> Result<Json<ConnectionPage>, ApiError> {
    let max = s.ctx.config.admin.max_page_size;
    let limit = q.limit.unwrap_or(100.min(max));
    if limit == 0 || limit > max {
        return Err(ApiError::new(ErrorCode::InvalidArgument, format!("limit must be 1..={max}")));
    }
    let offset = q.offset.unwrap_or(0);
    let on_topic: Option<std::collections::HashSet<ConnId>> = match &q.topic {
        Some(t) => {
            let name =
                TopicName::new(t).map_err(|e| ApiError::new(ErrorCode::InvalidArgument, format!("topic: {e}")))?;
            Some(s.ctx.manager.clients_for_topic(&name).iter().map(|c| c.id()).collect())
        }
        None => None,
    };
    let mut all: Vec<ClientInfo> = s
        .ctx
        .manager
        .active_clients()
        .into_iter()
        .filter(|c| on_topic.as_ref().is_none_or(|set| set.contains(&c.id)))
        .filter(|c| q.user.as_ref().is_none_or(|u| &c.subject == u))
        .filter(|c| q.protocol.as_ref().is_none_or(|p| c.protocol.as_str() == p))
        .filter(|c| q.state.as_ref().is_none_or(|st| c.state.as_str() == st))
        .collect();
    all.sort_by_key(|c| c.id.0);
    let total = all.len();
    let items = all.iter().skip(offset).take(limit).map(|c| row(&s.ctx.node_id, c)).collect();
    Ok(Json(ConnectionPage { items, total, offset, limit }))
}

fn not_found_conn(id: u64) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no connection {id}"))
}

/// One connection's details.
#[utoipa::path(get, path = "/v1/admin/connections/{id}", params(("id" = u64, Path, description = "Connection id")),
    responses((status = 200, body = ConnectionDetail), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn get_connection(
    State(s): State<AdminState>,
    Path(id): Path<u64>,
) -> Result<Json<ConnectionDetail>, ApiError> {
    let info = s.ctx.manager.client_info(ConnId(id)).ok_or_else(|| not_found_conn(id))?;
    Ok(Json(ConnectionDetail { node_id: s.ctx.node_id.clone(), connection: info }))
}

/// Close a connection with a `bye` (reason `kicked`).
#[utoipa::path(delete, path = "/v1/admin/connections/{id}", params(("id" = u64, Path, description = "Connection id")),
    responses((status = 200, body = Success), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn kick_connection(
    State(s): State<AdminState>,
    Path(id): Path<u64>,
) -> Result<Json<Success>, ApiError> {
    if !s.ctx.manager.close_connection(ConnId(id), CloseReason::Kicked, "closed by an operator") {
        return Err(not_found_conn(id));
    }
    tracing::info!(connection = id, "kicked by an operator");
    Ok(Json(Success { success: true }))
}
