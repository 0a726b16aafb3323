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
//! The areas: `connections`, `topics`, `stats` (rates, the stream, the sampler), `cluster`,
//! `drain`. Handlers shared with the public listener (`/healthz`, `POST
//! /v1/publish`) and the error shape come from `crate::http`.

mod cluster;
mod connections;
mod drain;
mod stats;
mod topics;

use std::sync::Arc;

use axum::extract::{FromRef, Request, State};
use axum::http::{header, HeaderMap, Method, Uri};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::{Json, Router};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use self::stats::{sampler, AdminShared, Rates, StatsResponse, TopicRates};
use crate::http::{ApiError, AppState, ErrorBody};
use crate::protocol::ErrorCode;

/// The admin handlers' state: the server's, plus the rates and drain progress only the admin
/// API keeps.
#[derive(Debug, Clone)]
pub struct AdminState {
    app: AppState,
    shared: Arc<AdminShared>,
}

impl AdminState {
    /// Admin state over the server's.
    pub fn new(app: AppState) -> Self {
        Self { app, shared: Arc::default() }
    }
}

impl std::ops::Deref for AdminState {
    type Target = AppState;

    fn deref(&self) -> &AppState {
        &self.app
    }
}

impl FromRef<AdminState> for AppState {
    fn from_ref(s: &AdminState) -> AppState {
        s.app.clone()
    }
}

fn admin_token<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Option<&'a str> {
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, token) = v.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim());
    }
    uri.query()?.split('&').find_map(|kv| kv.strip_prefix("token="))
}

async fn require_admin(State(s): State<AdminState>, req: Request, next: Next) -> Response {
    let ok = admin_token(req.headers(), req.uri()).is_some_and(|t| s.ctx.sessions.check_admin_token(t));
    if !ok {
        return ApiError::new(ErrorCode::Unauthenticated, "a valid admin token is required (Authorization: Bearer)")
            .into_response();
    }
    next.run(req).await
}

/// Prometheus metrics, text exposition format.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain"), (status = 401, body = ErrorBody)))]
pub(super) async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
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
pub fn router_and_openapi(state: AdminState) -> (Router, utoipa::openapi::OpenApi) {
    let protected = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(connections::list_connections))
        .routes(routes!(connections::get_connection, connections::kick_connection))
        .routes(routes!(topics::list_topics))
        .routes(routes!(topics::get_topic))
        .routes(routes!(topics::get_policy, topics::put_policy))
        .routes(routes!(stats::get_stats))
        .routes(routes!(cluster::cluster_view))
        .routes(routes!(stats::stats_stream))
        .routes(routes!(drain::start_drain, drain::get_drain, drain::stop_drain))
        .routes(routes!(crate::http::publish));
    let protected =
        if state.ctx.config.admin.metrics_require_token { protected.routes(routes!(metrics)) } else { protected };
    let protected = protected.route_layer(axum::middleware::from_fn_with_state(state.clone(), require_admin));
    let mut open = OpenApiRouter::new().routes(routes!(crate::http::healthz));
    if !state.ctx.config.admin.metrics_require_token {
        open = open.routes(routes!(metrics));
    }
    let (router, api) = protected.merge(open).split_for_parts();
    (router.with_state(state), api)
}

/// The admin router: the API, `/v1/openapi.json`, `/dashboard`, and a JSON 404 for the rest.
pub fn admin_router(state: AdminState) -> Router {
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
