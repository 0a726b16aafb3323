//! Stats: per-second rates computed by one sampler task from the hub's monotonic counters every
//! `admin.stats_interval_ms` (the same tick feeds the live stats stream and folds histogram
//! samples), the stats snapshot and its Server-Sent Events stream.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::Json;
use parking_lot::RwLock;
use serde::Serialize;
use tokio::sync::watch;
use utoipa::ToSchema;

use super::AdminState;
use crate::http::ErrorBody;
use crate::hub::{ConnectionStats, TopicName};

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
#[derive(Debug)]
pub struct AdminShared {
    pub(super) rates: RwLock<Rates>,
    pub(super) topic_rates: RwLock<HashMap<TopicName, TopicRates>>,
    stats_tx: watch::Sender<Option<Arc<str>>>,
    pub(super) drain_started: RwLock<Option<(Instant, usize)>>,
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

pub(super) fn stats_response(s: &AdminState) -> StatsResponse {
    StatsResponse {
        node_id: s.ctx.node_id.clone(),
        uptime_secs: s.started.elapsed().as_secs(),
        live_connections: s.ctx.live.load(Ordering::Relaxed),
        stats: s.ctx.manager.connection_stats(),
        rates: *s.shared.rates.read(),
    }
}

/// Computes rates, feeds the stats stream and folds histogram samples, once per interval.
pub async fn sampler(state: AdminState) {
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
            *state.shared.rates.write() = Rates {
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
            *state.shared.topic_rates.write() = rates;
        }
        prev = Some((now, cur));
        prev_topics = infos.into_iter().map(|i| (i.name, (i.published, i.delivered))).collect();
        state.ctx.metrics.run_upkeep();
        if state.shared.stats_tx.receiver_count() > 0 {
            if let Ok(json) = serde_json::to_string(&stats_response(&state)) {
                state.shared.stats_tx.send_replace(Some(json.into()));
            }
        }
    }
}

/// Connection stats with rates.
#[utoipa::path(get, path = "/v1/admin/stats", responses((status = 200, body = StatsResponse), (status = 401, body = ErrorBody)))]
pub(super) async fn get_stats(State(s): State<AdminState>) -> Json<StatsResponse> {
    Json(stats_response(&s))
}

/// Live stats as Server-Sent Events: one `stats` event per interval, data as `GET /v1/admin/stats`.
#[utoipa::path(get, path = "/v1/admin/stats/stream", responses((status = 200, description = "text/event-stream of `stats` events"), (status = 401, body = ErrorBody)))]
pub(super) async fn stats_stream(State(s): State<AdminState>) -> impl IntoResponse {
    let first = serde_json::to_string(&stats_response(&s)).unwrap_or_default();
    let rx = s.shared.stats_tx.subscribe();
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
