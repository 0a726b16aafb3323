//! The web pages the hub serves and everything they load, compiled into the binary so a deployed
//! hub serves them offline (no CDN): the demo pages on the public listener (`/` telemetry,
//! `/video`, `/console`, `/rtc`), the operator dashboard on the admin listener, the shared page
//! assets and the vendored chart library (`/assets/…`), and the TypeScript client package's
//! modules (`/client/…`).
//!
//! Sources live in `web-demo/`: pages and `assets/` are written by hand; `assets/vendor/` holds
//! copies of npm packages (pinned in `web-demo/package.json`) and `client/dist/` the client's
//! `tsc` output — both committed, and tests keep them equal to a fresh install or build.

use axum::extract::Path;
use axum::http::{header, HeaderValue, Method, Uri};
use axum::response::{Html, IntoResponse, Response};

/// The public demo pages: path → page.
pub const DEMO_PAGES: &[(&str, &str)] = &[
    ("/", include_str!("../web-demo/telemetry.html")),
    ("/video", include_str!("../web-demo/video.html")),
    ("/console", include_str!("../web-demo/console.html")),
    ("/rtc", include_str!("../web-demo/rtc.html")),
];

/// The operator dashboard (admin listener; the admin token is entered on the page).
pub const DASHBOARD: &str = include_str!("../web-demo/dashboard.html");

/// `/assets/{file}`: name, content type, body.
const ASSETS: &[(&str, &str, &str)] = &[
    ("site.css", CSS, include_str!("../web-demo/assets/site.css")),
    ("site.js", JS, include_str!("../web-demo/assets/site.js")),
    ("uplot.js", JS, include_str!("../web-demo/assets/vendor/uplot/uPlot.iife.min.js")),
    ("uplot.css", CSS, include_str!("../web-demo/assets/vendor/uplot/uPlot.min.css")),
];

/// `/client/{file}`: the TypeScript client package's modules (`web-demo/client/dist`).
const CLIENT_MODULES: &[(&str, &str)] = &[
    ("backoff.js", include_str!("../web-demo/client/dist/backoff.js")),
    ("breaker.js", include_str!("../web-demo/client/dist/breaker.js")),
    ("chunks.js", include_str!("../web-demo/client/dist/chunks.js")),
    ("client.js", include_str!("../web-demo/client/dist/client.js")),
    ("errors.js", include_str!("../web-demo/client/dist/errors.js")),
    ("index.js", include_str!("../web-demo/client/dist/index.js")),
    ("keepalive.js", include_str!("../web-demo/client/dist/keepalive.js")),
    ("options.js", include_str!("../web-demo/client/dist/options.js")),
    ("records.js", include_str!("../web-demo/client/dist/records.js")),
    ("rtc.js", include_str!("../web-demo/client/dist/rtc.js")),
    ("tracker.js", include_str!("../web-demo/client/dist/tracker.js")),
];

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The paths of every asset, for the admin listener's list of paths served without a token.
pub fn asset_paths() -> impl Iterator<Item = String> {
    ASSETS.iter().map(|(name, _, _)| format!("/assets/{name}"))
}

/// A page: HTML that must always be fetched fresh (it names the assets it loads).
pub fn page(body: &'static str) -> Response {
    ([(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))], Html(body)).into_response()
}

/// `GET /assets/{file}`.
pub async fn asset(Path(file): Path<String>, uri: Uri) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, body)) => static_file(kind, body),
        None => crate::http::no_route(&Method::GET, &uri).into_response(),
    }
}

/// `GET /client/{file}`.
pub async fn client_module(Path(file): Path<String>, uri: Uri) -> Response {
    match CLIENT_MODULES.iter().find(|(name, _)| *name == file) {
        Some((_, body)) => static_file(JS, body),
        None => crate::http::no_route(&Method::GET, &uri).into_response(),
    }
}

/// Revalidated on every load (`no-cache`): the files change with the binary, and are small.
fn static_file(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}
