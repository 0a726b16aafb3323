//! Every HTTP error on both listeners is `{"code","message"}` JSON, whoever produces it: an
//! unknown path (404 `not_found`), a method a path does not serve (405 `invalid_argument`, with
//! `Allow`), anything but a GET upgrade on `/ws` (400 `invalid_argument`, as the protocol says),
//! a body over the body limit (413 `resource_exhausted`), a path or query the extractors refuse
//! (400 `invalid_argument`).

use crate::common::*;

/// Asserts `r` is the JSON error shape with `status` and `code`, and returns its message.
fn assert_json_error(r: &HttpResponse, status: u16, code: &str, what: &str) -> String {
    assert_eq!(r.status, status, "{what}: {}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"), "{what}: {:?}", r.headers);
    let v = r.json();
    assert_eq!(v["code"], code, "{what}: {v}");
    let message = v["message"].as_str().unwrap_or_else(|| panic!("{what}: a message: {v}"));
    assert!(!message.is_empty(), "{what}: a message explains it: {v}");
    assert_eq!(v.as_object().map(|o| o.len()), Some(2), "{what}: only code and message: {v}");
    message.to_owned()
}

use fanhub::http::BODY_LIMIT;

/// A request with a body one byte over the limit. Only one byte over: the server has read the
/// whole body when it refuses it, so closing the connection cannot reset it before the client
/// reads the answer.
fn oversized(method: &str, path: &str, addr: std::net::SocketAddr, auth: &str) -> String {
    let body = "x".repeat(BODY_LIMIT + 1);
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn an_unknown_path_on_the_public_listener_is_a_json_404() {
    let hub = spawn_hub(test_config()).await;
    for (method, path) in [("GET", "/nope"), ("POST", "/v1/nope"), ("GET", "/v1/admin/stats")] {
        let r = http(hub.addr, method, path, &[], "").await;
        let message = assert_json_error(&r, 404, "not_found", &format!("{method} {path}"));
        assert_eq!(message, format!("{} {method} {path}", fanhub::admin::NO_ROUTE_PREFIX));
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn a_method_a_path_does_not_serve_is_a_json_405_with_allow_on_both_listeners() {
    let hub = spawn_hub(test_config()).await;
    for (method, path, allow) in
        [("GET", "/v1/sessions", "POST"), ("DELETE", "/healthz", "GET"), ("PUT", "/v1/publish", "POST")]
    {
        let r = http(hub.addr, method, path, &[], "").await;
        assert_json_error(&r, 405, "invalid_argument", &format!("public {method} {path}"));
        assert!(r.header("allow").is_some_and(|a| a.contains(allow)), "public {method} {path}: {:?}", r.headers);
    }
    let r = admin(&hub, "POST", "/v1/admin/topics", "").await;
    assert_json_error(&r, 405, "invalid_argument", "admin POST /v1/admin/topics");
    assert!(r.header("allow").is_some_and(|a| a.contains("GET")), "{:?}", r.headers);
    hub.shutdown().await;
}

#[tokio::test]
async fn anything_but_a_get_upgrade_on_ws_is_a_json_400() {
    let hub = spawn_hub(test_config()).await;
    for method in ["POST", "PUT", "DELETE", "PATCH", "GET"] {
        let r = http(hub.addr, method, "/ws", &[], "").await;
        let message = assert_json_error(&r, 400, "invalid_argument", &format!("{method} /ws"));
        assert!(message.contains("WebSocket upgrade"), "{method} /ws: {message}");
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_json_413_on_both_listeners() {
    let hub = spawn_hub(test_config()).await;
    let key = format!("X-Api-Key: {API_KEY}\r\n");
    for path in ["/v1/sessions", "/v1/publish"] {
        let r = http_raw(hub.addr, &oversized("POST", path, hub.addr, &key)).await;
        let message = assert_json_error(&r, 413, "resource_exhausted", &format!("public POST {path}"));
        assert!(message.contains(&BODY_LIMIT.to_string()), "the message names the limit: {message}");
    }
    let auth = format!("Authorization: Bearer {ADMIN_TOKEN}\r\n");
    let r = http_raw(hub.admin, &oversized("POST", "/v1/publish", hub.admin, &auth)).await;
    assert_json_error(&r, 413, "resource_exhausted", "admin POST /v1/publish");
    // The hub still serves.
    let ok = http(hub.addr, "POST", "/v1/sessions", &[("X-Api-Key", API_KEY)], r#"{"subject":"after"}"#).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_path_or_query_the_extractors_refuse_is_a_json_400() {
    let hub = spawn_hub(test_config()).await;
    for path in
        ["/v1/admin/connections/not-a-number", "/v1/admin/connections?limit=lots", "/v1/admin/connections?offset=-1"]
    {
        let r = admin(&hub, "GET", path, "").await;
        assert_json_error(&r, 400, "invalid_argument", &format!("admin GET {path}"));
    }
    hub.shutdown().await;
}

#[cfg(feature = "webrtc")]
#[tokio::test]
async fn a_bad_webrtc_session_id_is_a_json_400() {
    let hub = spawn_hub(test_config()).await;
    let auth = format!("Bearer {}", hub.token("rtc-user"));
    for method in ["PATCH", "DELETE"] {
        let r = http(hub.addr, method, "/v1/rtc/sessions/not-a-number", &[("Authorization", &auth)], "").await;
        assert_json_error(&r, 400, "invalid_argument", &format!("{method} /v1/rtc/sessions/not-a-number"));
    }
    hub.shutdown().await;
}
