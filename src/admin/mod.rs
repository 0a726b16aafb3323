//! The admin HTTP API, on its own listener (never the public one): connections (list, filter,
//! details, kick), topics and their live delivery policy, stats with rates and a live stats
//! stream (SSE), backend publish, maintenance drain, Prometheus metrics, the operator dashboard,
//! and the OpenAPI document generated from these handlers (utoipa), served at
//! `/v1/openapi.json`.
//!
//! Every route but `/healthz`, `/dashboard`, `/v1/openapi.json` (and `/metrics` when
//! `admin.metrics_require_token` is off) requires an admin token from `auth.admin_tokens`:
//! `Authorization: Bearer <token>`, or `?token=<token>` for clients that cannot set headers
//! (`EventSource`). Failures answer `401 unauthenticated` and reveal nothing else: without a
//! valid token an unknown path, or a method a path does not serve, answers the same 401 (with
//! one, `404 not_found` and `405`), so the listener does not tell a caller without a token
//! which routes exist. Every error is `{"code","message"}` (`crate::http::json_errors`).
//!
//! The areas: `connections`, `topics`, `stats` (rates, the stream, the sampler), `cluster`,
//! `drain`. Handlers shared with the public listener (`/healthz`, `POST
//! /v1/publish`) and the error shape come from `crate::http`.

mod cluster;
mod connections;
mod drain;
mod sources;
mod stats;
mod topics;

use std::sync::Arc;

use axum::extract::{FromRef, Request, State};
use axum::http::{header, HeaderMap, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
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

fn has_admin_token(s: &AdminState, headers: &HeaderMap, uri: &Uri) -> bool {
    crate::transport::request_token(headers, uri.query()).is_some_and(|t| s.ctx.sessions.check_admin_token(t))
}

/// The paths served without a token, and the state to check tokens against.
#[derive(Debug, Clone)]
struct Gate {
    state: AdminState,
    open: Arc<[String]>,
}

/// Runs before routing: a request for anything but an open path needs a valid admin token, or
/// is answered `401 unauthenticated` whatever its path and method. Deciding before routing is
/// what keeps the answer the same for a protected route, a method it does not serve (no
/// `Allow` header) and a path that does not exist, and makes a route added later protected
/// unless it is added as open.
async fn require_admin(State(gate): State<Gate>, req: Request, next: Next) -> Response {
    let open = gate.open.iter().any(|p| p == req.uri().path());
    if !open && !has_admin_token(&gate.state, req.headers(), req.uri()) {
        return ApiError::new(ErrorCode::Unauthenticated, "a valid admin token is required (Authorization: Bearer)")
            .into_response();
    }
    next.run(req).await
}

/// Prometheus metrics, text exposition format.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain"), (status = 401, body = ErrorBody)))]
pub(super) async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    sources::record_metrics(&s.ctx.metrics, &s.sources.view());
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
    let (router, api, _) = routes_and_openapi(&state);
    (router.with_state(state), api)
}

/// The API routes, their document, and the paths of those served without a token.
fn routes_and_openapi(state: &AdminState) -> (Router<AdminState>, utoipa::openapi::OpenApi, Vec<String>) {
    let mut protected = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(connections::list_connections))
        .routes(routes!(connections::get_connection, connections::kick_connection))
        .routes(routes!(topics::list_topics))
        .routes(routes!(topics::get_topic))
        .routes(routes!(topics::get_policy, topics::put_policy, topics::reset_policy))
        .routes(routes!(stats::get_stats))
        .routes(routes!(cluster::cluster_view))
        .routes(routes!(sources::list_sources))
        .routes(routes!(stats::stats_stream))
        .routes(routes!(drain::start_drain, drain::get_drain, drain::stop_drain))
        .routes(routes!(crate::http::publish));
    let mut open = OpenApiRouter::new().routes(routes!(crate::http::healthz));
    if state.ctx.config.admin.metrics_require_token {
        protected = protected.routes(routes!(metrics));
    } else {
        open = open.routes(routes!(metrics));
    }
    let open_paths = open.get_openapi().paths.paths.keys().cloned().collect();
    let (router, api) = protected.merge(open).split_for_parts();
    (router, api, open_paths)
}

/// The admin router: the API, `/v1/openapi.json` and `/dashboard`. Without a valid admin token
/// anything but `/healthz`, `/dashboard`, `/v1/openapi.json` (and `/metrics` when
/// `admin.metrics_require_token` is off) answers 401; with one, an unknown path answers a JSON
/// 404 and a method a path does not serve a JSON 405. Every error is `{"code","message"}`.
pub fn admin_router(state: AdminState) -> Router {
    let (router, api, mut open) = routes_and_openapi(&state);
    open.extend(["/v1/openapi.json".to_owned(), "/dashboard".to_owned()]);
    open.extend(crate::web::asset_paths());
    let api = Arc::new(api);
    let routed = router
        .route("/v1/openapi.json", axum::routing::get(move || async move { Json((*api).clone()) }))
        .route("/dashboard", axum::routing::get(|| async { crate::web::page(crate::web::DASHBOARD) }))
        .route("/assets/{file}", axum::routing::get(crate::web::asset))
        .fallback(|method: Method, uri: Uri| async move { crate::http::no_route(&method, &uri) })
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move { crate::http::wrong_method(&method, &uri) })
        .with_state(state.clone());
    // The gate wraps the whole routed service (as its catch-all), so it runs before routing.
    let gate = Gate { state, open: open.into() };
    Router::new()
        .fallback_service(routed)
        .layer(axum::middleware::from_fn_with_state(gate, require_admin))
        .layer(axum::extract::DefaultBodyLimit::max(crate::http::BODY_LIMIT))
        .layer(axum::middleware::map_response(crate::http::json_errors))
}

/// How the message of the answer to an unknown path starts (for tests and the OpenAPI check).
pub use crate::http::NO_ROUTE_PREFIX;
