//! WebRTC signaling as the rest of the server reaches it: the [`Signaling`] trait the WebRTC
//! transport implements, its error, and the HTTP side (`POST /v1/rtc/offer`, trickle, delete,
//! `GET /v1/rtc/config`). The WebSocket `rtc_offer` / `rtc_candidate` ops reach the same trait
//! through the session driver. With WebRTC off (or not built) every request answers
//! `404 not_found` "WebRTC is disabled on this node".

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::HubContext;
use crate::hub::{AuthFailure, ConnId};
use crate::protocol::rtc::{CONTROL_LABEL, LOSSY_LABEL};
use crate::protocol::ErrorCode;

/// Why a signaling request failed: an HTTP status and a wire error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalingError {
    /// HTTP status.
    pub status: StatusCode,
    /// Wire code.
    pub code: ErrorCode,
    /// Message.
    pub message: String,
}

impl SignalingError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    fn disabled() -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "WebRTC is disabled on this node")
    }
}

impl IntoResponse for SignalingError {
    fn into_response(self) -> Response {
        error(self.status, self.code, self.message)
    }
}

/// What the WebRTC transport offers the signaling paths.
pub trait Signaling: Send + Sync + std::fmt::Debug {
    /// Creates a peer for an SDP offer authenticated by `token` (from `remote`): the SDP answer
    /// and the new connection's id. The peer then says `connect` on its `fanhub` channel.
    ///
    /// # Errors
    /// [`SignalingError`]: unauthenticated, malformed SDP, no data channel, draining.
    fn offer(
        &self,
        ctx: &Arc<HubContext>,
        token: String,
        remote: SocketAddr,
        sdp: &str,
    ) -> Result<(String, ConnId), SignalingError>;

    /// Adds a trickled remote ICE candidate (`candidate:…`, with or without `a=`) to session
    /// `id`, which `subject` must have created.
    ///
    /// # Errors
    /// [`SignalingError`]: unknown session (`not_found`), another subject's
    /// (`permission_denied`), a malformed candidate.
    fn add_candidate(&self, subject: &str, id: u64, candidate: &str) -> Result<(), SignalingError>;

    /// Ends session `id`, which `subject` must have created.
    ///
    /// # Errors
    /// As [`Signaling::add_candidate`].
    fn close_session(&self, subject: &str, id: u64) -> Result<(), SignalingError>;
}

impl HubContext {
    /// The WebRTC signaling, if WebRTC runs on this node.
    ///
    /// # Errors
    /// `not_found` "WebRTC is disabled on this node".
    pub fn signaling(&self) -> Result<&Arc<dyn Signaling>, SignalingError> {
        self.rtc.get().ok_or_else(SignalingError::disabled)
    }
}

/// `POST /v1/rtc/offer` (WHEP style): the body is the peer's SDP offer (`application/sdp`, or
/// JSON `{"type":"offer","sdp":…}`), the token is a bearer token (or `?token=`); the answer is
/// `201` with the SDP answer and `Location: /v1/rtc/sessions/{id}`.
pub async fn offer(ctx: Arc<HubContext>, token: Option<String>, remote: SocketAddr, body: Bytes) -> Response {
    let Some(token) = token else {
        ctx.manager.counters().record_auth_failure(AuthFailure::Missing);
        return error(StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated, "a bearer token is required".into());
    };
    let sdp = match parse_offer(&body) {
        Ok(s) => s,
        Err(m) => return error(StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument, m),
    };
    let answered = ctx.signaling().and_then(|s| s.offer(&ctx, token, remote, &sdp));
    match answered {
        Ok((answer, id)) => (
            StatusCode::CREATED,
            [
                (header::CONTENT_TYPE, "application/sdp".to_owned()),
                (header::LOCATION, format!("/v1/rtc/sessions/{}", id.0)),
            ],
            answer,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /v1/rtc/config`: what a peer needs before its offer — whether WebRTC is on, the ICE
/// servers for its `RTCPeerConnection`, the channel labels and the chunk size.
pub fn config(ctx: &HubContext) -> serde_json::Value {
    let w = &ctx.config.webrtc;
    serde_json::json!({
        "enabled": ctx.rtc.get().is_some(),
        "ice_servers": w.ice_servers,
        "channels": { "control": CONTROL_LABEL, "lossy": LOSSY_LABEL },
        "chunk_size": w.chunk_size,
        "offer_url": "/v1/rtc/offer",
    })
}

fn parse_offer(body: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the offer is not UTF-8".to_owned())?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        #[derive(serde::Deserialize)]
        struct Json {
            #[serde(rename = "type")]
            kind: Option<String>,
            sdp: String,
        }
        let j: Json = serde_json::from_str(trimmed).map_err(|e| format!("invalid offer JSON: {e}"))?;
        if j.kind.as_deref().is_some_and(|k| k != "offer") {
            return Err(format!("expected an offer, got {:?}", j.kind.unwrap_or_default()));
        }
        return Ok(j.sdp);
    }
    if !trimmed.starts_with("v=") {
        return Err("malformed SDP offer: it must start with v=".into());
    }
    Ok(text.to_owned())
}

fn error(status: StatusCode, code: ErrorCode, message: String) -> Response {
    (status, axum::Json(serde_json::json!({ "code": code, "message": message }))).into_response()
}
