//! The cluster view: live nodes with their load, totals, and this node's broker state.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::AdminState;
use crate::http::ErrorBody;

/// One node of the cluster, from its registry entry.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ClusterNode {
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
pub(super) struct ClusterTotals {
    /// Live nodes.
    pub nodes: usize,
    /// Connections over all live nodes.
    pub connections: u64,
    /// Publishes per second over all live nodes.
    pub publish_rate: u64,
}

/// `GET /v1/admin/cluster`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ClusterView {
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
pub(super) async fn cluster_view(State(s): State<AdminState>) -> Json<ClusterView> {
    use std::sync::atomic::Ordering::Relaxed;
    let ctx = &s.ctx;
    let mut traffic = std::collections::BTreeMap::new();
    traffic.insert("lost".to_owned(), ctx.manager.connection_stats().broker_lost);
    let (redis, nodes) = match ctx.broker.counters() {
        Some(k) => {
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
            let nodes = ctx
                .broker
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
            (ctx.broker.endpoint(), nodes)
        }
        None => (
            None,
            vec![ClusterNode {
                node_id: ctx.node_id.clone(),
                ws_url: ctx.public_url.clone(),
                connections: ctx.manager.connection_stats().active_connections,
                publish_rate: s.shared.rates.read().messages_in_per_sec as u64,
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
