//! Admin API access control and shape: every protected route answers `401 unauthenticated`
//! without a valid admin token and leaks nothing; `?token=` works for header-less clients; the
//! admin API is not reachable on the public listener; and the generated OpenAPI document lists
//! exactly routes that exist.

mod common;

use common::*;
use serde_json::Value;

const PROTECTED: &[(&str, &str)] = &[
    ("GET", "/v1/admin/connections"),
    ("GET", "/v1/admin/connections/1"),
    ("DELETE", "/v1/admin/connections/1"),
    ("GET", "/v1/admin/topics"),
    ("GET", "/v1/admin/topics/a"),
    ("GET", "/v1/admin/topics/a/policy"),
    ("PUT", "/v1/admin/topics/a/policy"),
    ("GET", "/v1/admin/stats"),
    ("GET", "/v1/admin/stats/stream"),
    ("GET", "/v1/admin/drain"),
    ("POST", "/v1/admin/drain"),
    ("DELETE", "/v1/admin/drain"),
    ("POST", "/v1/publish"),
    ("GET", "/metrics"),
];

#[tokio::test]
async fn protected_routes_need_a_valid_admin_token_and_leak_nothing() {
    let hub = spawn_hub(test_config()).await;
    let mut secret = hub.connect("very-secret-subject").await;
    secret.subscribe("hidden/topic").await;
    for (method, path) in PROTECTED {
        for headers in [vec![], vec![("Authorization", "Bearer wrong")], vec![("Authorization", "Basic abc")]] {
            let r = http(hub.admin, method, path, &headers, "{}").await;
            assert_eq!(r.status, 401, "{method} {path} {headers:?}: {}", r.body);
            assert_eq!(r.json()["code"], "unauthenticated", "{method} {path}");
            assert!(!r.body.contains("very-secret") && !r.body.contains("hidden"), "{method} {path} leaks: {}", r.body);
        }
        let sep = if path.contains('?') { '&' } else { '?' };
        let r = http(hub.admin, method, &format!("{path}{sep}token=wrong"), &[], "{}").await;
        assert_eq!(r.status, 401, "{method} {path}?token=wrong");
    }
    let ok = http(hub.admin, "GET", &format!("/v1/admin/stats?token={ADMIN_TOKEN}"), &[], "").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["active_connections"], 1);
    assert_eq!(http(hub.admin, "GET", "/healthz", &[], "").await.status, 200, "health needs no token");
    for path in ["/v1/admin/stats", "/v1/admin/connections", "/dashboard", "/v1/openapi.json"] {
        let r = http(hub.addr, "GET", path, &[ADMIN_AUTH], "").await;
        assert_eq!(r.status, 404, "{path} must not exist on the public listener");
    }
    let unknown = admin(&hub, "GET", "/v1/admin/nope", "").await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.json()["message"].as_str().unwrap().starts_with(fanhub::admin::NO_ROUTE_PREFIX));
    secret.assert_alive().await;
    hub.shutdown().await;
}

#[tokio::test]
async fn the_stats_stream_sends_stats_events() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hub = spawn_hub(test_config()).await;
    let _c = hub.connect("s").await;
    let mut tcp = tokio::net::TcpStream::connect(hub.admin).await.unwrap();
    let req = format!("GET /v1/admin/stats/stream?token={ADMIN_TOKEN} HTTP/1.1\r\nHost: x\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "stream ended");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            if text.matches("event: stats").count() >= 2 {
                return text.into_owned();
            }
        }
    };
    let text = tokio::time::timeout(TIMEOUT, read).await.expect("two stats events");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.to_ascii_lowercase().contains("content-type: text/event-stream"), "{text}");
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).expect("a data line");
    let v: Value = serde_json::from_str(data).unwrap();
    assert_eq!(v["active_connections"], 1);
    assert!(v["rates"]["deliveries_per_sec"].is_number(), "{v}");
    hub.shutdown().await;
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_that_exist() {
    let hub = spawn_hub(test_config()).await;
    let r = http(hub.admin, "GET", "/v1/openapi.json", &[], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = Vec::new();
    for (path, item) in paths {
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    for (method, path) in PROTECTED {
        let templ = path.replace("/1", "/{id}").replace("topics/a", "topics/{topic}");
        assert!(documented.iter().any(|(m, p)| m == method && *p == templ), "{method} {templ} is documented");
    }
    assert!(documented.iter().any(|(m, p)| m == "GET" && p == "/healthz"));
    // Every documented operation is routed (the drain last: it drains the hub).
    documented.sort_by_key(|(m, p)| (p.contains("drain") && m == "POST", p.clone()));
    for (method, path) in &documented {
        let concrete = path.replace("{id}", "999999").replace("{topic}", "doc%2Ftopic");
        let body = match (method.as_str(), path.as_str()) {
            ("PUT", _) => r#"{"kind":"best_effort"}"#,
            ("POST", "/v1/publish") => r#"{"topic":"doc/t","data":1}"#,
            _ => "{}",
        };
        let resp = if path.ends_with("/stream") {
            // Never ends: only the status line matters.
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut tcp = tokio::net::TcpStream::connect(hub.admin).await.unwrap();
            let req = format!("GET {concrete}?token={ADMIN_TOKEN} HTTP/1.1\r\nHost: x\r\n\r\n");
            tcp.write_all(req.as_bytes()).await.unwrap();
            let mut head = [0u8; 12];
            tokio::time::timeout(TIMEOUT, tcp.read_exact(&mut head)).await.unwrap().unwrap();
            assert_eq!(&head, b"HTTP/1.1 200");
            continue;
        } else {
            admin(&hub, method, &concrete, body).await
        };
        assert_ne!(resp.status, 405, "{method} {path}");
        if resp.status == 404 {
            let msg = resp.json()["message"].as_str().unwrap_or("").to_owned();
            assert!(!msg.starts_with(fanhub::admin::NO_ROUTE_PREFIX), "{method} {path} is not routed");
        }
    }
    hub.shutdown().await;
}
