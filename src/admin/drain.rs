//! Maintenance drain: refuse new connections and move every client elsewhere, with progress.

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::AdminState;
use crate::http::{ApiError, ErrorBody};
use crate::protocol::{CloseReason, ErrorCode};

/// Drain progress.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DrainStatus {
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

fn drain_status(s: &AdminState) -> DrainStatus {
    let started = *s.shared.drain_started.read();
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
pub(super) async fn start_drain(State(s): State<AdminState>) -> Json<DrainStatus> {
    s.ctx.draining.store(true, Ordering::Relaxed);
    let urls = s.ctx.reconnect_urls();
    let n = s.ctx.manager.close_all(CloseReason::Maintenance, "this node is draining for maintenance", &urls);
    *s.shared.drain_started.write() = Some((Instant::now(), n));
    tracing::warn!(notified = n, "drain started");
    Json(drain_status(&s))
}

/// Drain progress.
#[utoipa::path(get, path = "/v1/admin/drain", responses((status = 200, body = DrainStatus), (status = 401, body = ErrorBody)))]
pub(super) async fn get_drain(State(s): State<AdminState>) -> Json<DrainStatus> {
    Json(drain_status(&s))
}

/// End a drain: accept connections again (refused while the server is shutting down).
#[utoipa::path(delete, path = "/v1/admin/drain", responses((status = 200, body = DrainStatus), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn stop_drain(State(s): State<AdminState>) -> Result<Json<DrainStatus>, ApiError> {
    if *s.ctx.shutdown.borrow() {
        return Err(ApiError::new(ErrorCode::FailedPrecondition, "the server is shutting down"));
    }
    s.ctx.draining.store(false, Ordering::Relaxed);
    *s.shared.drain_started.write() = None;
    tracing::warn!("drain ended; accepting connections");
    Ok(Json(drain_status(&s)))
}
