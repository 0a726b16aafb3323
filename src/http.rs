//! What the public and the admin listener share: the handlers' state, the error every HTTP
//! API answers with (`{"code", "message"}`, normally with the code's status), the layer that
//! puts every other error response of a router into that shape ([`json_errors`]), the answers
//! for an unknown path and a method a path does not serve, the credentials of a backend
//! request, and the two handlers both serve (`/healthz`, `POST /v1/publish`). The server and
//! the admin API build their routers over this module; it imports neither.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::protocol::ErrorCode;
use crate::transport::HubContext;

/// State of the HTTP handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// What the transports share: hub, sessions, config, broker, clock.
    pub ctx: Arc<HubContext>,
    /// When the server started (uptime).
    pub started: Instant,
    /// The upstream sources this node consumes.
    pub sources: Arc<crate::source::Sources>,
}

/// An error answered over HTTP: `{"code": …, "message": …}` with the code's status (or, for
/// the few statuses HTTP itself defines, such as 405 and 413, that status).
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    status: Option<StatusCode>,
}

impl ApiError {
    /// An error with `code` and `message`, answered with the code's HTTP status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), status: None }
    }

    /// An error answered with `status` instead of the code's own (405, 413, 415…: statuses
    /// with an HTTP meaning no error code has).
    pub fn with_status(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), status: Some(status) }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status.unwrap_or_else(|| {
            StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        });
        (status, Json(serde_json::json!({ "code": self.code, "message": self.message }))).into_response()
    }
}

/// How the message of the answer to an unknown path starts (`no such route: GET /x`).
pub const NO_ROUTE_PREFIX: &str = "no such route:";

/// The answer to a path no route serves: `404 not_found` "no such route: METHOD /path".
pub fn no_route(method: &Method, uri: &Uri) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("{NO_ROUTE_PREFIX} {method} {}", uri.path()))
}

/// The answer to a method a path does not serve: `405` with code `invalid_argument` (the
/// router adds the `Allow` header).
pub fn wrong_method(method: &Method, uri: &Uri) -> ApiError {
    ApiError::with_status(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::InvalidArgument,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}

/// The error code of an error response that did not come with one, chosen by its status.
pub fn code_for_status(status: StatusCode) -> ErrorCode {
    match status.as_u16() {
        401 => ErrorCode::Unauthenticated,
        403 => ErrorCode::PermissionDenied,
        404 => ErrorCode::NotFound,
        409 => ErrorCode::FailedPrecondition,
        413 | 429 => ErrorCode::ResourceExhausted,
        503 => ErrorCode::Unavailable,
        s if s >= 500 => ErrorCode::Internal,
        _ => ErrorCode::InvalidArgument,
    }
}

/// The largest request body either listener reads (`POST /v1/sessions`, `POST /v1/publish`, an
/// SDP offer…); a larger one is refused with `413 resource_exhausted`. Bounds what a request
/// can make the server buffer; a publish's own bound, `limits.max_message_size`, is checked
/// after.
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// The longest body of an error response [`json_errors`] reads to quote it as the message.
const MAX_QUOTED_ERROR: usize = 4096;

/// A `map_response` layer for both routers: an error response (status ≥ 400) that is not JSON
/// — a rejection by an extractor (`Path`, `Query`, a body over [`BODY_LIMIT`]: 413) or any
/// other plain-text or empty answer — becomes `{"code","message"}` with the same status and
/// headers, the code chosen by [`code_for_status`] and the message its text (or the status's
/// reason). Rejections are rewritten here rather than in every handler, so a handler or an
/// extractor added later cannot break the documented shape.
pub async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MAX_QUOTED_ERROR)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!("the request body exceeds the limit of {BODY_LIMIT} bytes")
    } else {
        text.unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_ascii_lowercase())
    };
    let body = serde_json::json!({ "code": code_for_status(status), "message": message }).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// An error: `{"code", "message"}` with the code's HTTP status.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable error code (`docs/protocol.md`).
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

/// The status, version, node, uptime, connection count and broker state of this node, and with
/// TLS on, `tls{reloads, reload_failures, handshake_failures}`.
pub fn health_body(s: &AppState, ready: bool) -> serde_json::Value {
    #[allow(unused_mut)] // Added to only in a build with TLS.
    let mut body = serde_json::json!({
        "status": if ready { "ok" } else { "unavailable" },
        "version": env!("CARGO_PKG_VERSION"),
        "node_id": s.ctx.node_id,
        "uptime_secs": s.started.elapsed().as_secs(),
        "connections": s.ctx.live.load(Ordering::Relaxed),
        "broker": { "kind": s.ctx.broker.kind(), "ready": s.ctx.broker.is_ready() },
    });
    if !s.sources.is_empty() {
        // Named, not counted against readiness: the node serves its clients while an upstream
        // is away, and their topics resume when it is back.
        body["sources"] = serde_json::json!({ "not_connected": s.sources.not_connected() });
    }
    #[cfg(feature = "tls")]
    if let Some(tls) = &s.ctx.tls {
        body["tls"] = serde_json::json!(tls.stats());
    }
    body
}

/// Liveness: the process serves HTTP. Version, uptime and node id included.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "`{status, version, node_id, uptime_secs, connections}`")))]
pub async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    Json(health_body(&s, true))
}

/// The API key or bearer token of a backend request (`X-Api-Key`, or `Authorization: Bearer`).
pub fn bearer_or_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(k) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(k.trim());
    }
    crate::transport::bearer_header(headers)
}

/// `POST /v1/publish` request: a topic and exactly one of `data` (JSON) and `data_base64`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// Topic to publish on.
    topic: String,
    /// JSON payload (delivered as JSON text, flag `json`).
    #[serde(default, deserialize_with = "crate::protocol::control::present")]
    #[schema(value_type = Object)]
    data: Option<serde_json::Value>,
    /// Binary payload, base64 (standard alphabet). Exactly one of `data` and `data_base64`.
    #[serde(default)]
    data_base64: Option<String>,
}

/// `POST /v1/publish` answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PublishResponse {
    topic: String,
    offset: u64,
    epoch: u64,
    delivered: usize,
    dropped: usize,
}

/// Publish from a backend (server API key or admin token); answers the offset. Publishes under
/// `reliable` + `apply_backpressure` wait like a client's, up to the policy's timeout.
#[utoipa::path(post, path = "/v1/publish", request_body = PublishRequest,
    responses((status = 200, body = PublishResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn publish(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<PublishResponse>, ApiError> {
    let key = bearer_or_key(&headers)
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated, "an API key or admin token is required"))?;
    if !s.ctx.sessions.check_api_key(key) && !s.ctx.sessions.check_admin_token(key) {
        s.ctx.manager.counters().record_auth_failure(crate::hub::AuthFailure::InvalidApiKey);
        return Err(ApiError::new(ErrorCode::Unauthenticated, "unknown API key"));
    }
    let req: PublishRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(ErrorCode::InvalidArgument, format!("invalid publish request: {e}")))?;
    let topic = crate::hub::TopicName::new(&req.topic)
        .map_err(|e| ApiError::new(ErrorCode::InvalidArgument, format!("topic: {e}")))?;
    let (payload, flags) = match (req.data, req.data_base64) {
        (Some(v), None) => (serde_json::to_vec(&v).unwrap_or_default(), crate::protocol::frame::FLAG_JSON),
        (None, Some(b)) => (
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b.as_bytes())
                .map_err(|e| ApiError::new(ErrorCode::InvalidArgument, format!("data_base64: {e}")))?,
            0,
        ),
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "exactly one of `data` and `data_base64` is required",
            ))
        }
    };
    let max = s.ctx.manager.limits().max_message_size;
    if payload.len() > max {
        return Err(ApiError::new(
            ErrorCode::ResourceExhausted,
            format!("message of {} bytes exceeds the maximum of {max}", payload.len()),
        ));
    }
    let report = crate::transport::publish::publish(&s.ctx, &topic, &payload, flags)
        .await
        .map_err(|e| ApiError::new(e.code(), e.to_string()))?;
    Ok(Json(PublishResponse {
        topic: topic.as_str().to_owned(),
        offset: report.offset,
        epoch: report.epoch,
        delivered: report.delivered,
        dropped: report.dropped,
    }))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::post;
    use axum::Router;
    use tower::ServiceExt as _;

    use super::*;

    /// A router with a handler taking `Json`, behind [`json_errors`], as both listeners have.
    fn router() -> Router {
        Router::new()
            .route("/j", post(|Json(v): Json<std::collections::BTreeMap<String, u32>>| async move { Json(v) }))
            .layer(axum::middleware::map_response(json_errors))
    }

    async fn call(content_type: Option<&str>, body: &str) -> (StatusCode, serde_json::Value) {
        let mut req = Request::post("/j");
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let resp = router().oneshot(req.body(Body::from(body.to_owned())).unwrap()).await.unwrap();
        let status = resp.status();
        assert_eq!(resp.headers().get(header::CONTENT_TYPE).unwrap(), "application/json");
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn json_extractor_rejections_keep_their_status_and_get_the_error_shape() {
        for (content_type, body, status) in [
            (None, "{}", 415),
            (Some("text/plain"), "{}", 415),
            (Some("application/json"), "{not json", 400),
            (Some("application/json"), "", 400),
            (Some("application/json"), r#"{"a":"not a number"}"#, 422),
        ] {
            let (got, v) = call(content_type, body).await;
            assert_eq!(got.as_u16(), status, "{content_type:?} {body:?}: {v}");
            assert_eq!(v["code"], "invalid_argument", "{v}");
            assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        }
        let (got, v) = call(Some("application/json"), r#"{"a":1}"#).await;
        assert_eq!((got, &v), (StatusCode::OK, &serde_json::json!({"a": 1})), "a success is untouched");
    }

    #[test]
    fn codes_follow_statuses() {
        for (status, code) in [
            (401, ErrorCode::Unauthenticated),
            (403, ErrorCode::PermissionDenied),
            (404, ErrorCode::NotFound),
            (405, ErrorCode::InvalidArgument),
            (409, ErrorCode::FailedPrecondition),
            (413, ErrorCode::ResourceExhausted),
            (415, ErrorCode::InvalidArgument),
            (422, ErrorCode::InvalidArgument),
            (500, ErrorCode::Internal),
            (503, ErrorCode::Unavailable),
        ] {
            assert_eq!(code_for_status(StatusCode::from_u16(status).unwrap()), code, "{status}");
        }
    }
}
