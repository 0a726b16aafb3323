//! Each listener serves its own OpenAPI 3 document at `GET /v1/openapi.json` without a token.
//! The admin document lists every admin route, and every operation it lists is routed (no 405,
//! no fallback 404 "no such route:"). The public document lists exactly the routes the public
//! listener serves — WebRTC signaling only in a build with WebRTC, `/v1/dev/token` only in
//! development mode — and each is routed. In both, every error response is an `ErrorBody`.

use crate::common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every admin route (as templated in the document) that must be documented.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/admin/connections"),
    ("GET", "/v1/admin/connections/{id}"),
    ("DELETE", "/v1/admin/connections/{id}"),
    ("GET", "/v1/admin/topics"),
    ("GET", "/v1/admin/topics/{topic}"),
    ("GET", "/v1/admin/topics/{topic}/policy"),
    ("PUT", "/v1/admin/topics/{topic}/policy"),
    ("GET", "/v1/admin/stats"),
    ("GET", "/v1/admin/cluster"),
    ("GET", "/v1/admin/stats/stream"),
    ("GET", "/v1/admin/drain"),
    ("POST", "/v1/admin/drain"),
    ("DELETE", "/v1/admin/drain"),
    ("POST", "/v1/publish"),
    ("GET", "/metrics"),
    ("GET", "/healthz"),
];

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options", "trace"];

/// Every public API route (as templated in the document), in every build and mode.
const PUBLIC_ROUTES: &[(&str, &str)] = &[
    ("GET", "/ws"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("POST", "/v1/sessions"),
    ("POST", "/v1/publish"),
    ("GET", "/v1/sse"),
];

/// The WebRTC signaling routes: documented and served only in a build with WebRTC.
const RTC_ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/rtc/offer"),
    ("GET", "/v1/rtc/config"),
    ("PATCH", "/v1/rtc/sessions/{id}"),
    ("DELETE", "/v1/rtc/sessions/{id}"),
];

/// Documented and served only in development mode.
const DEV_ROUTE: (&str, &str) = ("POST", "/v1/dev/token");

async fn openapi_document(hub: &Hub) -> Value {
    let r = http(hub.admin, "GET", "/v1/openapi.json", &[], "").await;
    assert_eq!(r.status, 200, "the document needs no token: {}", r.body);
    r.json()
}

async fn public_openapi_document(hub: &Hub) -> Value {
    let r = http(hub.addr, "GET", "/v1/openapi.json", &[], "").await;
    assert_eq!(r.status, 200, "the public document: {}", r.body);
    r.json()
}

/// The public routes this build serves in development mode (`dev`) or not.
fn expected_public_routes(dev: bool) -> Vec<(String, String)> {
    let mut routes: Vec<&(&str, &str)> = PUBLIC_ROUTES.iter().collect();
    if cfg!(feature = "webrtc") {
        routes.extend(RTC_ROUTES);
    }
    if dev {
        routes.push(&DEV_ROUTE);
    }
    let mut routes: Vec<(String, String)> = routes.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    routes.sort();
    routes
}

/// A configuration that is not development mode (an HS256 secret is set).
fn production_config() -> fanhub::config::Config {
    let mut c = test_config();
    c.auth.hs256_secret = Some("a-secret-for-the-openapi-tests-0123456789".into());
    c
}

/// Whether `r` is the router's own answer for a path or method it does not serve.
fn unrouted(r: &HttpResponse) -> bool {
    r.status == 405
        || (r.status == 404
            && r.json()["message"].as_str().is_some_and(|m| m.starts_with(fanhub::admin::NO_ROUTE_PREFIX)))
}

/// Every error response (status ≥ 400) of every operation is an `ErrorBody` in JSON, but
/// `/readyz`'s 503: a readiness answer, the health body with `status` `unavailable`, which load
/// balancers and operators read the same way whatever the status.
fn assert_errors_are_error_bodies(doc: &Value, which: &str) {
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object(), "{which}: ErrorBody is a schema");
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            let Some(op) = item.get(*m) else { continue };
            let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{which} {m} {path}: responses"));
            for (status, resp) in responses {
                if status.parse::<u16>().is_ok_and(|s| s < 400) || (path == "/readyz" && status == "503") {
                    continue;
                }
                let schema = &resp["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(
                    schema, "#/components/schemas/ErrorBody",
                    "{which}: {m} {path} answers {status} with an ErrorBody: {resp}"
                );
            }
        }
    }
}

/// Every (METHOD, path) the document lists.
fn operations(doc: &Value) -> Vec<(String, String)> {
    let paths = doc["paths"].as_object().unwrap_or_else(|| panic!("`paths` is an object: {doc}"));
    let mut ops = Vec::new();
    for (path, item) in paths {
        for m in METHODS {
            if item.get(*m).is_some() {
                ops.push((m.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

/// Status, lower-cased headers and the first `stats` event's data of the never-ending stats
/// stream, read from a raw socket (bounded by [`TIMEOUT`]).
async fn stats_stream_head(hub: &Hub, path: &str) -> (u16, Vec<(String, String)>, Value) {
    let mut tcp = tokio::net::TcpStream::connect(hub.admin).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n", hub.admin);
    tcp.write_all(req.as_bytes()).await.unwrap();
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the stats stream ended: {:?}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            let Some((head, body)) = text.split_once("\r\n\r\n") else { continue };
            let mut lines = head.split("\r\n");
            let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            if status != 200 {
                return (status, headers, Value::Null);
            }
            // The body is chunked; an event is one chunk, so its lines are intact in the raw text.
            let mut lines = body.lines();
            while let Some(line) = lines.next() {
                if line == "event: stats" {
                    if let Some(data) = lines.next().and_then(|l| l.strip_prefix("data: ")) {
                        if let Ok(v) = serde_json::from_str::<Value>(data) {
                            return (status, headers, v);
                        }
                    }
                }
            }
        }
    };
    tokio::time::timeout(TIMEOUT, read).await.expect("timed out reading the stats stream")
}

#[tokio::test]
async fn the_openapi_document_is_served_without_a_token_and_is_openapi_3() {
    let hub = spawn_hub(test_config()).await;
    let doc = openapi_document(&hub).await;
    let version = doc["openapi"].as_str().unwrap_or_else(|| panic!("`openapi` is a string: {doc}"));
    assert!(version.starts_with("3."), "OpenAPI 3: {version}");
    assert!(doc["info"]["title"].as_str().is_some_and(|t| !t.is_empty()), "{}", doc["info"]);
    hub.shutdown().await;
}

#[tokio::test]
async fn the_openapi_document_lists_every_admin_route_and_healthz() {
    let hub = spawn_hub(test_config()).await;
    let ops = operations(&openapi_document(&hub).await);
    for (method, path) in ROUTES {
        assert!(ops.iter().any(|(m, p)| m == method && p == path), "{method} {path} is documented; document: {ops:?}");
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn every_operation_in_the_openapi_document_is_routed() {
    let hub = spawn_hub(test_config()).await;
    let _c = hub.connect("openapi-client").await;
    let mut ops = operations(&openapi_document(&hub).await);
    assert!(!ops.is_empty());
    // The drain POST last: it drains the hub.
    ops.sort_by_key(|(m, p)| (m == "POST" && p == "/v1/admin/drain", p.clone(), m.clone()));
    for (method, path) in &ops {
        let concrete = path.replace("{id}", "999999").replace("{topic}", "doc%2Ftopic");
        assert!(!concrete.contains('{'), "an unknown path parameter in {path}");
        if path == "/v1/admin/stats/stream" {
            assert_eq!(method, "GET", "the stats stream is a GET");
            let (status, headers, first) = stats_stream_head(&hub, &concrete).await;
            assert_eq!(status, 200, "{method} {path}");
            let ct = headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.as_str());
            assert!(ct.is_some_and(|v| v.starts_with("text/event-stream")), "{method} {path}: content-type {ct:?}");
            assert_eq!(first["active_connections"], 1, "the first stats event: {first}");
            continue;
        }
        let body = match (method.as_str(), path.as_str()) {
            ("PUT", "/v1/admin/topics/{topic}/policy") => r#"{"kind":"best_effort"}"#,
            ("POST", "/v1/publish") => r#"{"topic":"doc/t","data":1}"#,
            _ => "{}",
        };
        let r = admin(&hub, method, &concrete, body).await;
        assert_ne!(r.status, 405, "{method} {path} ({concrete}) is documented but not allowed: {}", r.body);
        assert_ne!(r.status, 401, "{method} {path} ({concrete}) refuses the admin token: {}", r.body);
        if r.status == 404 {
            let msg = r.json()["message"].as_str().unwrap_or_default().to_owned();
            assert!(
                !msg.starts_with(fanhub::admin::NO_ROUTE_PREFIX),
                "{method} {path} ({concrete}) is documented but not routed: {msg}"
            );
        }
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn every_error_response_in_the_admin_document_is_an_error_body() {
    let hub = spawn_hub(test_config()).await;
    assert_errors_are_error_bodies(&openapi_document(&hub).await, "admin");
    hub.shutdown().await;
}

#[tokio::test]
async fn the_public_listener_serves_its_own_openapi_3_document() {
    let hub = spawn_hub(test_config()).await;
    let doc = public_openapi_document(&hub).await;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "OpenAPI 3: {}", doc["openapi"]);
    let title = doc["info"]["title"].as_str().unwrap_or_default();
    assert!(title.contains("public"), "{title}");
    let ops = operations(&doc);
    assert!(!ops.iter().any(|(_, p)| p.starts_with("/v1/admin")), "no admin route in the public document: {ops:?}");
    assert_errors_are_error_bodies(&doc, "public");
    hub.shutdown().await;
}

#[tokio::test]
async fn the_public_document_lists_exactly_the_public_routes_of_this_build_and_mode() {
    for (dev, config) in [(true, test_config()), (false, production_config())] {
        let hub = spawn_hub(config).await;
        let mut ops = operations(&public_openapi_document(&hub).await);
        ops.sort();
        assert_eq!(ops, expected_public_routes(dev), "development mode {dev}");
        hub.shutdown().await;
    }
}

/// Every (method, path) pair over the documented and the expected paths is routed exactly when
/// it is documented: nothing is served undocumented, nothing documented is missing. `/ws` is the
/// one exception: every other method there gets the WebSocket handler's 400 (not a 405), as the
/// protocol says.
#[tokio::test]
async fn every_route_the_public_listener_serves_is_documented_and_vice_versa() {
    for (dev, config) in [(true, test_config()), (false, production_config())] {
        let hub = spawn_hub(config).await;
        let documented = operations(&public_openapi_document(&hub).await);
        let mut paths: Vec<String> = PUBLIC_ROUTES
            .iter()
            .chain(RTC_ROUTES)
            .chain([&DEV_ROUTE])
            .map(|(_, p)| p.to_string())
            .chain(documented.iter().map(|(_, p)| p.clone()))
            .collect();
        paths.sort();
        paths.dedup();
        for path in &paths {
            let concrete = path.replace("{id}", "999999");
            assert!(!concrete.contains('{'), "an unknown path parameter in {path}");
            for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
                let r = http(hub.addr, method, &concrete, &[], "").await;
                let is_documented = documented.iter().any(|(m, p)| m == method && p == path);
                if path == "/ws" && !is_documented {
                    assert_eq!(r.status, 400, "{method} /ws: {}", r.body);
                    continue;
                }
                assert_eq!(
                    !unrouted(&r),
                    is_documented,
                    "development mode {dev}: {method} {path} routed ({} {}) but documented: {is_documented}",
                    r.status,
                    r.body
                );
            }
        }
        hub.shutdown().await;
    }
}
