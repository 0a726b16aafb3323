//! The public HTTP API: `POST /v1/sessions` (API key required) mints a token that connects to
//! the returned `ws_url`; bad keys, bodies and TTLs get JSON errors with their codes' HTTP
//! statuses. `GET /healthz` reports version, uptime and node id. HTTP is spoken by hand over a
//! `TcpStream` (no HTTP client dependency).

use crate::common::*;
use fanhub::auth::unix_now;
use fanhub::config::Config;
use serde_json::{json, Value};

async fn create_session(hub: &Hub, body: &Value) -> HttpResponse {
    http(hub.addr, "POST", "/v1/sessions", &[("X-Api-Key", API_KEY)], &body.to_string()).await
}

fn assert_api_error(resp: &HttpResponse, status: u16, code: &str) {
    assert_eq!(resp.status, status, "{}", resp.body);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let body = resp.json();
    assert_eq!(body["code"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "a message explains it: {body}");
}

#[tokio::test]
async fn creating_a_session_with_the_api_key_returns_token_expiry_url_and_protocol() {
    let hub = spawn_hub(test_config()).await;
    let before = unix_now();
    let resp = create_session(&hub, &json!({"subject": "alice", "subscribe": ["video/*"], "ttl_secs": 600})).await;
    let after = unix_now();
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let s = resp.json();
    assert!(s["token"].as_str().is_some_and(|t| t.split('.').count() == 3), "a JWT: {s}");
    let exp = s["expires_at"].as_u64().unwrap();
    assert!((before + 600..=after + 600).contains(&exp), "expires_at {exp} is now + ttl");
    assert_eq!(s["ws_url"], hub.ws_url());
    assert_eq!(s["protocol"], "fanhub.v1");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_session_token_connects_to_the_returned_ws_url_with_its_claims() {
    let hub = spawn_hub(test_config()).await;
    let resp =
        create_session(&hub, &json!({"subject": "alice", "subscribe": ["video/*"], "publish": ["video/*"]})).await;
    let s = resp.json();
    let mut c = Client::open(s["ws_url"].as_str().unwrap(), &[]).await;
    let w = c.request(json!({"op": "connect", "token": s["token"]})).await;
    assert_eq!(w["type"], "welcome", "{w}");
    assert_eq!(w["session"]["subject"], "alice");
    assert_eq!(w["session"]["expires_at"], s["expires_at"]);
    c.subscribe("video/cam1").await;
    assert_eq!(c.publish_json("video/cam1", json!("hi")).await, 1);
    let denied = c.request(json!({"op": "subscribe", "topic": "audio/mic"})).await;
    assert_eq!(denied["code"], "permission_denied", "{denied}");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_session_without_ttl_gets_the_default_session_ttl() {
    let mut config = test_config();
    config.auth.session_ttl_secs = 120;
    let hub = spawn_hub(config).await;
    let before = unix_now();
    let s = create_session(&hub, &json!({"subject": "alice"})).await.json();
    let exp = s["expires_at"].as_u64().unwrap();
    assert!((before + 120..=unix_now() + 120).contains(&exp), "{s}");
    hub.shutdown().await;
}

#[tokio::test]
async fn the_api_key_is_also_accepted_as_a_bearer_token() {
    let hub = spawn_hub(test_config()).await;
    let bearer = format!("Bearer {API_KEY}");
    let resp = http(hub.addr, "POST", "/v1/sessions", &[("Authorization", &bearer)], r#"{"subject":"bob"}"#).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert!(resp.json()["token"].is_string());
    hub.shutdown().await;
}

#[tokio::test]
async fn creating_a_session_without_an_api_key_is_401_unauthenticated() {
    let hub = spawn_hub(test_config()).await;
    let resp = http(hub.addr, "POST", "/v1/sessions", &[], r#"{"subject":"alice"}"#).await;
    assert_api_error(&resp, 401, "unauthenticated");
    assert!(resp.json().get("token").is_none());
    hub.shutdown().await;
}

#[tokio::test]
async fn creating_a_session_with_a_wrong_api_key_is_401_unauthenticated() {
    let hub = spawn_hub(test_config()).await;
    for headers in [[("X-Api-Key", "wrong-key")], [("Authorization", "Bearer wrong-key")]] {
        let resp = http(hub.addr, "POST", "/v1/sessions", &headers, r#"{"subject":"alice"}"#).await;
        assert_api_error(&resp, 401, "unauthenticated");
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn creating_a_session_with_a_bad_body_is_400_invalid_argument() {
    let hub = spawn_hub(test_config()).await;
    let bodies = [
        "not json",
        "",
        "[]",
        r#"{"subscribe":["a/>"]}"#,
        r#"{"subject":7}"#,
        r#"{"subject":"alice","ttl_secs":"long"}"#,
        r#"{"subject":"alice","ttl_secs":-5}"#,
        r#"{"subject":"alice","admin":true}"#,
        r#"{"subject":""}"#,
        r#"{"subject":"alice","subscribe":["a/>/b"]}"#,
        r#"{"subject":"alice","publish":["bad topic"]}"#,
    ];
    for body in bodies {
        let resp = http(hub.addr, "POST", "/v1/sessions", &[("X-Api-Key", API_KEY)], body).await;
        assert_eq!(resp.status, 400, "body {body:?} → {}", resp.body);
        assert_api_error(&resp, 400, "invalid_argument");
    }
    hub.shutdown().await;
}

fn short_sessions() -> Config {
    let mut config = test_config();
    config.auth.max_session_ttl_secs = 600;
    config.auth.session_ttl_secs = 300;
    config
}

#[tokio::test]
async fn a_ttl_over_max_session_ttl_is_400_invalid_argument() {
    let hub = spawn_hub(short_sessions()).await;
    let resp = create_session(&hub, &json!({"subject": "alice", "ttl_secs": 601})).await;
    assert_api_error(&resp, 400, "invalid_argument");
    assert!(resp.json()["message"].as_str().unwrap().contains("ttl_secs must be 1..=600"), "{}", resp.body);
    // The maximum itself is fine.
    let resp = create_session(&hub, &json!({"subject": "alice", "ttl_secs": 600})).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_zero_ttl_is_400_invalid_argument() {
    let hub = spawn_hub(short_sessions()).await;
    let resp = create_session(&hub, &json!({"subject": "alice", "ttl_secs": 0})).await;
    assert_api_error(&resp, 400, "invalid_argument");
    hub.shutdown().await;
}

#[tokio::test]
async fn healthz_reports_status_version_uptime_and_node_id() {
    let mut config = test_config();
    config.node_id = "node-under-test".into();
    let hub = spawn_hub(config).await;
    let resp = http(hub.addr, "GET", "/healthz", &[], "").await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let h = resp.json();
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"), "{h}");
    assert_eq!(h["node_id"], "node-under-test", "{h}");
    assert!(h["uptime_secs"].as_u64().is_some_and(|u| u < 3600), "{h}");
    hub.shutdown().await;
}

#[tokio::test]
async fn healthz_generates_a_node_id_when_none_is_configured() {
    let hub = spawn_hub(test_config()).await;
    let h = http(hub.addr, "GET", "/healthz", &[], "").await.json();
    assert!(h["node_id"].as_str().is_some_and(|n| n.starts_with("node-") && n.len() > 5), "{h}");
    // The same id is announced in `welcome`.
    let c = hub.connect("alice").await;
    assert_eq!(c.welcome["node_id"], h["node_id"]);
    hub.shutdown().await;
}
