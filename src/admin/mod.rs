//! The admin HTTP API, on its own listener (never the public one): connections (list, filter,
//! details, kick), topics and their live delivery policy, stats with rates and a live stats
//! stream (SSE), backend publish, maintenance drain, Prometheus metrics, the operator dashboard,
//! and the OpenAPI document generated from these handlers (utoipa), served at
//! `/v1/openapi.json`.
//!
//! Every route but `/healthz`, `/dashboard`, `/v1/openapi.json` (and `/metrics` when
//! `admin.metrics_require_token` is off) requires an admin token from `auth.admin_tokens`:
//! `Authorization: Bearer <token>`, or `?token=<token>` for clients that cannot set headers
//! (`EventSource`). Failures answer `401 unauthenticated` and reveal nothing else.
//!
//! Rates (per second) are computed by one sampler task from the hub's monotonic counters every
//! `admin.stats_interval_ms`; the same tick feeds the stats stream and folds histogram samples.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, Method, Uri};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::{Json, Router};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::hub::{ClientInfo, ConnId, ConnectionStats, DeliveryPolicy, TopicInfo, TopicName};
use crate::protocol::{CloseReason, ErrorCode};
use crate::server::{ApiError, AppState};

/// Per-second rates over the last sampling interval.
#[derive(Debug, Clone, Copy, Default, Serialize, ToSchema, PartialEq)]
pub struct Rates {
    /// Messages published into the hub per second.
    pub messages_in_per_sec: f64,
    /// Deliveries to subscriber queues per second.
    pub deliveries_per_sec: f64,
    /// Messages written to sockets per second.
    pub messages_out_per_sec: f64,
    /// Record bytes published per second.
    pub bytes_in_per_sec: f64,
    /// Bytes written to sockets per second.
    pub bytes_out_per_sec: f64,
    /// Connections accepted per second.
    pub connects_per_sec: f64,
}

/// Per-topic rates.
#[derive(Debug, Clone, Copy, Default, Serialize, ToSchema, PartialEq)]
pub struct TopicRates {
    /// Messages published per second.
    pub publish_per_sec: f64,
    /// Deliveries per second.
    pub delivery_per_sec: f64,
}

/// Admin-side state shared by the handlers and the sampler.
pub struct AdminShared {
    rates: RwLock<Rates>,
    topic_rates: RwLock<HashMap<TopicName, TopicRates>>,
    stats_tx: watch::Sender<Option<Arc<str>>>,
    drain_started: RwLock<Option<(Instant, usize)>>,
}

impl Default for AdminShared {
    fn default() -> Self {
        Self {
            rates: RwLock::default(),
            topic_rates: RwLock::default(),
            stats_tx: watch::channel(None).0,
            drain_started: RwLock::new(None),
        }
    }
}

/// The stats snapshot: [`ConnectionStats`] plus node, uptime and rates.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatsResponse {
    /// This node.
    pub node_id: String,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Transport connections alive, authenticated or not.
    pub live_connections: usize,
    /// Counters and gauges (see `docs/protocol.md`, admin API).
    #[serde(flatten)]
    #[schema(inline, value_type = Object)]
    pub stats: ConnectionStats,
    /// Per-second rates over the last interval.
    pub rates: Rates,
}

fn stats_response(s: &AppState) -> StatsResponse {
    StatsResponse {
        node_id: s.ctx.node_id.clone(),
        uptime_secs: s.started.elapsed().as_secs(),
        live_connections: s.ctx.live.load(Ordering::Relaxed),
        stats: s.ctx.manager.connection_stats(),
        rates: *s.admin.rates.read(),
    }
}

/// Computes rates, feeds the stats stream and folds histogram samples, once per interval.
pub async fn sampler(state: AppState) {
    let period = Duration::from_millis(state.ctx.config.admin.stats_interval_ms);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut prev: Option<(Instant, [u64; 6])> = None;
    let mut prev_topics: HashMap<TopicName, (u64, u64)> = HashMap::new();
    loop {
        tick.tick().await;
        let now = Instant::now();
        let st = state.ctx.manager.connection_stats();
        let cur = [st.messages_in, st.deliveries, st.messages_out, st.bytes_in, st.bytes_out, st.connections_accepted];
        let infos = state.ctx.manager.topics().infos();
        if let Some((t0, p)) = prev {
            let dt = now.duration_since(t0).as_secs_f64().max(1e-3);
            let r = |i: usize| cur[i].saturating_sub(p[i]) as f64 / dt;
            *state.admin.rates.write() = Rates {
                messages_in_per_sec: r(0),
                deliveries_per_sec: r(1),
                messages_out_per_sec: r(2),
                bytes_in_per_sec: r(3),
                bytes_out_per_sec: r(4),
                connects_per_sec: r(5),
            };
            let mut rates = HashMap::with_capacity(infos.len());
            for i in &infos {
                let (p_pub, p_del) = prev_topics.get(&i.name).copied().unwrap_or((i.published, i.delivered));
                rates.insert(
                    i.name.clone(),
                    TopicRates {
                        publish_per_sec: i.published.saturating_sub(p_pub) as f64 / dt,
                        delivery_per_sec: i.delivered.saturating_sub(p_del) as f64 / dt,
                    },
                );
            }
            *state.admin.topic_rates.write() = rates;
        }
        prev = Some((now, cur));
        prev_topics = infos.into_iter().map(|i| (i.name, (i.published, i.delivered))).collect();
        state.ctx.metrics.run_upkeep();
        if state.admin.stats_tx.receiver_count() > 0 {
            if let Ok(json) = serde_json::to_string(&stats_response(&state)) {
                state.admin.stats_tx.send_replace(Some(json.into()));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Auth

fn admin_token<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Option<&'a str> {
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, token) = v.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim());
    }
    uri.query()?.split('&').find_map(|kv| kv.strip_prefix("token="))
}

async fn require_admin(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let ok = admin_token(req.headers(), req.uri()).is_some_and(|t| s.ctx.sessions.check_admin_token(t));
    if !ok {
        return ApiError::new(ErrorCode::Unauthenticated, "a valid admin token is required (Authorization: Bearer)")
            .into_response();
    }
    next.run(req).await
}

// ---------------------------------------------------------------------------------------------
// Connections

/// Filters and paging of the connection list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConnectionQuery {
    /// Only connections subscribed to this topic.
    topic: Option<String>,
    /// Only connections of this token subject.
    user: Option<String>,
    /// Only this protocol (`websocket`, `webrtc`, `tcp`).
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
pub struct ConnectionRow {
    /// Connection id (unique for the process lifetime).
    pub id: u64,
    /// Node holding the connection.
    pub node_id: String,
    /// `websocket`, `webrtc`, `tcp`.
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
pub struct ConnectionPage {
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
pub struct ConnectionDetail {
    /// Node holding the connection.
    pub node_id: String,
    /// Everything known about it: subscriptions with offsets and per-topic counters, seed-000
    /// details, RTT and clock offset from time sync.
    #[schema(value_type = Object)]
    pub connection: ClientInfo,
}

/// `{"success": true}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Success {
    /// Always true.
    pub success: bool,
}

/// An error: `{"code", "message"}` with the code's HTTP status.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable error code (`docs/protocol.md`).
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
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
async fn list_connections(
    State(s): State<AppState>,
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
async fn get_connection(State(s): State<AppState>, Path(id): Path<u64>) -> Result<Json<ConnectionDetail>, ApiError> {
    let info = s.ctx.manager.client_info(ConnId(id)).ok_or_else(|| not_found_conn(id))?;
    Ok(Json(ConnectionDetail { node_id: s.ctx.node_id.clone(), connection: info }))
}

/// Close a connection with a `bye` (reason `kicked`).
#[utoipa::path(delete, path = "/v1/admin/connections/{id}", params(("id" = u64, Path, description = "Connection id")),
    responses((status = 200, body = Success), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn kick_connection(State(s): State<AppState>, Path(id): Path<u64>) -> Result<Json<Success>, ApiError> {
    if !s.ctx.manager.close_connection(ConnId(id), CloseReason::Kicked, "closed by an operator") {
        return Err(not_found_conn(id));
    }
    tracing::info!(connection = id, "kicked by an operator");
    Ok(Json(Success { success: true }))
}

// ---------------------------------------------------------------------------------------------
// Cluster

/// One node of the cluster, from its registry entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterNode {
    /// Node id.
    pub node_id: String,
    /// Its public WebSocket URL.
    pub ws_url: String,
    /// Connections it holds.
    pub connections: u64,
    /// Publishes per second through it (load).
    pub publish_rate: u64,
    /// Its last heartbeat, ms since the UNIX epoch.
    pub heartbeat_ms: u64,
    /// True for the node answering.
    pub this_node: bool,
}

/// Cluster totals.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterTotals {
    /// Live nodes.
    pub nodes: usize,
    /// Connections over all live nodes.
    pub connections: u64,
    /// Publishes per second over all live nodes.
    pub publish_rate: u64,
}

/// `GET /v1/admin/cluster`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterView {
    /// `memory` (single node) or `redis`.
    pub broker: String,
    /// Whether this node's broker answers.
    pub ready: bool,
    /// The answering node.
    pub node_id: String,
    /// Redis endpoint (credentials hidden); absent in memory mode.
    pub redis: Option<String>,
    /// Live nodes (heartbeat not expired), by id; in memory mode just this one.
    pub nodes: Vec<ClusterNode>,
    /// Totals over `nodes`.
    pub totals: ClusterTotals,
    /// This node's broker traffic: records received on channels, publishes through Redis,
    /// records read from Redis history, reliable publishes refused while Redis was down,
    /// best-effort publishes delivered only locally meanwhile, records lost.
    pub traffic: std::collections::BTreeMap<String, u64>,
}

/// The cluster: live nodes with their load, totals, and this node's broker state.
#[utoipa::path(get, path = "/v1/admin/cluster", responses((status = 200, body = ClusterView), (status = 401, body = ErrorBody)))]
async fn cluster_view(State(s): State<AppState>) -> Json<ClusterView> {
    use std::sync::atomic::Ordering::Relaxed;
    let ctx = &s.ctx;
    let mut traffic = std::collections::BTreeMap::new();
    traffic.insert("lost".to_owned(), ctx.manager.connection_stats().broker_lost);
    let (redis, nodes) = match ctx.broker.cluster() {
        Some(c) => {
            let k = &c.counters;
            for (name, v) in [
                ("messages_in", &k.messages_in),
                ("bytes_in", &k.bytes_in),
                ("published", &k.published),
                ("history_fetched", &k.history_fetched),
                ("refused_unavailable", &k.refused),
                ("delivered_locally_only", &k.detached),
            ] {
                traffic.insert(name.to_owned(), v.load(Relaxed));
            }
            let nodes = c
                .nodes()
                .into_iter()
                .map(|n| ClusterNode {
                    this_node: n.node_id == ctx.node_id,
                    node_id: n.node_id,
                    ws_url: n.ws_url,
                    connections: n.connections,
                    publish_rate: n.publish_rate,
                    heartbeat_ms: n.heartbeat_ms,
                })
                .collect();
            (Some(c.redis_endpoint()), nodes)
        }
        None => (
            None,
            vec![ClusterNode {
                node_id: ctx.node_id.clone(),
                ws_url: ctx.public_url.clone(),
                connections: ctx.manager.connection_stats().active_connections,
                publish_rate: s.admin.rates.read().messages_in_per_sec as u64,
                heartbeat_ms: s.ctx.clock.now().unix_ms(),
                this_node: true,
            }],
        ),
    };
    let totals = ClusterTotals {
        nodes: nodes.len(),
        connections: nodes.iter().map(|n| n.connections).sum(),
        publish_rate: nodes.iter().map(|n| n.publish_rate).sum(),
    };
    Json(ClusterView {
        broker: ctx.broker.kind().to_owned(),
        ready: ctx.broker.is_ready(),
        node_id: ctx.node_id.clone(),
        redis,
        nodes,
        totals,
        traffic,
    })
}

// ---------------------------------------------------------------------------------------------
// Topics

/// A topic with its rates.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopicDetail {
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
pub struct TopicList {
    /// Live topics, by name.
    pub items: Vec<TopicDetail>,
}

fn topic_param(raw: &str) -> Result<TopicName, ApiError> {
    TopicName::new(raw).map_err(|e| ApiError::new(ErrorCode::InvalidArgument, format!("topic: {e}")))
}

/// List live topics.
#[utoipa::path(get, path = "/v1/admin/topics", responses((status = 200, body = TopicList), (status = 401, body = ErrorBody)))]
async fn list_topics(State(s): State<AppState>) -> Json<TopicList> {
    let rates = s.admin.topic_rates.read().clone();
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
async fn get_topic(State(s): State<AppState>, Path(topic): Path<String>) -> Result<Json<TopicDetail>, ApiError> {
    let name = topic_param(&topic)?;
    let info = s
        .ctx
        .manager
        .topic_info(&name)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no live topic {name}")))?;
    let mut ids: Vec<u64> = s.ctx.manager.clients_for_topic(&name).iter().map(|c| c.id().0).collect();
    ids.sort_unstable();
    let rates = s.admin.topic_rates.read().get(&name).copied().unwrap_or_default();
    Ok(Json(TopicDetail { info, rates, subscriber_ids: Some(ids) }))
}

/// A topic's delivery policy (the one it would get, if it does not exist yet).
#[utoipa::path(get, path = "/v1/admin/topics/{topic}/policy", params(("topic" = String, Path, description = "Topic name, percent-encoded")),
    responses((status = 200, description = "The policy, as in `docs/protocol.md`", body = Object), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn get_policy(State(s): State<AppState>, Path(topic): Path<String>) -> Result<Json<DeliveryPolicy>, ApiError> {
    Ok(Json(s.ctx.manager.delivery_policy(&topic_param(&topic)?)))
}

/// Replace a topic's delivery policy; it applies from the next message.
#[utoipa::path(put, path = "/v1/admin/topics/{topic}/policy", params(("topic" = String, Path, description = "Topic name, percent-encoded")),
    request_body(content = Object, description = "A delivery policy: `{\"kind\": \"best_effort\" | \"reliable\" | \"rate_limited\", …}`"),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn put_policy(
    State(s): State<AppState>,
    Path(topic): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<DeliveryPolicy>, ApiError> {
    let name = topic_param(&topic)?;
    let policy: DeliveryPolicy = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(ErrorCode::InvalidArgument, format!("invalid policy: {e}")))?;
    s.ctx.manager.set_delivery_policy(&name, policy.clone()).map_err(|e| match e {
        crate::hub::manager::SetPolicyError::Invalid(p) => {
            ApiError::new(ErrorCode::InvalidArgument, format!("invalid policy: `{}` {}", p.field, p.message))
        }
        crate::hub::manager::SetPolicyError::Topic(t) => ApiError::new(ErrorCode::FailedPrecondition, t.to_string()),
    })?;
    tracing::info!(topic = %name, ?policy, "delivery policy changed");
    Ok(Json(policy))
}

// ---------------------------------------------------------------------------------------------
// Stats, stream, drain, metrics

/// Connection stats with rates.
#[utoipa::path(get, path = "/v1/admin/stats", responses((status = 200, body = StatsResponse), (status = 401, body = ErrorBody)))]
async fn get_stats(State(s): State<AppState>) -> Json<StatsResponse> {
    Json(stats_response(&s))
}

/// Live stats as Server-Sent Events: one `stats` event per interval, data as `GET /v1/admin/stats`.
#[utoipa::path(get, path = "/v1/admin/stats/stream", responses((status = 200, description = "text/event-stream of `stats` events"), (status = 401, body = ErrorBody)))]
async fn stats_stream(State(s): State<AppState>) -> impl IntoResponse {
    let first = serde_json::to_string(&stats_response(&s)).unwrap_or_default();
    let rx = s.admin.stats_tx.subscribe();
    let stream = futures_util::stream::unfold((Some(first), rx), |(first, mut rx)| async move {
        if let Some(f) = first {
            return Some((Ok::<_, std::convert::Infallible>(Event::default().event("stats").data(f)), (None, rx)));
        }
        loop {
            rx.changed().await.ok()?;
            let v = rx.borrow_and_update().clone();
            if let Some(json) = v {
                return Some((Ok(Event::default().event("stats").data(&*json)), (None, rx)));
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Drain progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct DrainStatus {
    /// Whether new connections are refused.
    pub draining: bool,
    /// Connections told to reconnect elsewhere when the drain started.
    pub notified: usize,
    /// Transport connections still open.
    pub remaining: usize,
    /// Seconds since the drain started.
    pub elapsed_secs: f64,
    /// Where clients were sent.
    pub reconnect_urls: Vec<String>,
}

fn drain_status(s: &AppState) -> DrainStatus {
    let started = *s.admin.drain_started.read();
    DrainStatus {
        draining: s.ctx.draining.load(Ordering::Relaxed),
        notified: started.map_or(0, |(_, n)| n),
        remaining: s.ctx.live.load(Ordering::Relaxed),
        elapsed_secs: started.map_or(0.0, |(t, _)| t.elapsed().as_secs_f64()),
        reconnect_urls: s.ctx.reconnect_urls(),
    }
}

/// Maintenance drain: refuse new connections, tell every client to reconnect elsewhere
/// (`bye` `maintenance` with reconnect URLs, after its queue is flushed), report progress.
#[utoipa::path(post, path = "/v1/admin/drain", responses((status = 200, body = DrainStatus), (status = 401, body = ErrorBody)))]
async fn start_drain(State(s): State<AppState>) -> Json<DrainStatus> {
    s.ctx.draining.store(true, Ordering::Relaxed);
    let urls = s.ctx.reconnect_urls();
    let n = s.ctx.manager.close_all(CloseReason::Maintenance, "this node is draining for maintenance", &urls);
    *s.admin.drain_started.write() = Some((Instant::now(), n));
    tracing::warn!(notified = n, "drain started");
    Json(drain_status(&s))
}

/// Drain progress.
#[utoipa::path(get, path = "/v1/admin/drain", responses((status = 200, body = DrainStatus), (status = 401, body = ErrorBody)))]
async fn get_drain(State(s): State<AppState>) -> Json<DrainStatus> {
    Json(drain_status(&s))
}

/// End a drain: accept connections again (refused while the server is shutting down).
#[utoipa::path(delete, path = "/v1/admin/drain", responses((status = 200, body = DrainStatus), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn stop_drain(State(s): State<AppState>) -> Result<Json<DrainStatus>, ApiError> {
    if *s.ctx.shutdown.borrow() {
        return Err(ApiError::new(ErrorCode::FailedPrecondition, "the server is shutting down"));
    }
    s.ctx.draining.store(false, Ordering::Relaxed);
    *s.admin.drain_started.write() = None;
    tracing::warn!("drain ended; accepting connections");
    Ok(Json(drain_status(&s)))
}

/// Prometheus metrics, text exposition format.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain"), (status = 401, body = ErrorBody)))]
async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let text = s.ctx.metrics.render(&s.ctx.manager, &s.ctx.broker, &s.ctx.node_id, s.started.elapsed().as_secs_f64());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "fanhub admin API",
        description = "Operator API of a fanhub node (admin listener). Every path except /healthz, /v1/openapi.json and /dashboard needs `Authorization: Bearer <admin token>`."
    ),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

/// The admin router and its OpenAPI document, built from the same handler list.
pub fn router_and_openapi(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let protected = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_connections))
        .routes(routes!(get_connection, kick_connection))
        .routes(routes!(list_topics))
        .routes(routes!(get_topic))
        .routes(routes!(get_policy, put_policy))
        .routes(routes!(get_stats))
        .routes(routes!(cluster_view))
        .routes(routes!(stats_stream))
        .routes(routes!(start_drain, get_drain, stop_drain))
        .routes(routes!(crate::server::publish));
    let protected =
        if state.ctx.config.admin.metrics_require_token { protected.routes(routes!(metrics)) } else { protected };
    let protected = protected.route_layer(axum::middleware::from_fn_with_state(state.clone(), require_admin));
    let mut open = OpenApiRouter::new().routes(routes!(crate::server::healthz));
    if !state.ctx.config.admin.metrics_require_token {
        open = open.routes(routes!(metrics));
    }
    let (router, api) = protected.merge(open).split_for_parts();
    (router.with_state(state), api)
}

/// The admin router: the API, `/v1/openapi.json`, `/dashboard`, and a JSON 404 for the rest.
pub fn admin_router(state: AppState) -> Router {
    let (router, api) = router_and_openapi(state);
    let api = Arc::new(api);
    router
        .route("/v1/openapi.json", axum::routing::get(move || async move { Json((*api).clone()) }))
        .route("/dashboard", axum::routing::get(|| async { Html(include_str!("../../web-demo/dashboard.html")) }))
        .fallback(|method: Method, uri: Uri| async move {
            ApiError::new(ErrorCode::NotFound, format!("{NO_ROUTE_PREFIX} {method} {}", uri.path()))
        })
}

/// How the message of the fallback's `not_found` starts (for tests and the OpenAPI check).
pub const NO_ROUTE_PREFIX: &str = "no such route:";
