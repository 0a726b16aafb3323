//! `GET /metrics` on the admin listener: Prometheus text with the expected series and values
//! after a known workload, topic labels only for declared topics (`_other` for the rest), the
//! admin token required by default and optional by configuration.

use std::collections::HashMap;

use crate::common::*;
use fanhub::hub::TopicDecl;
use serde_json::json;

/// Parses the text format into `series{labels} -> value` (labels as rendered).
fn parse(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {l:?}"));
            (k.to_owned(), v.parse::<f64>().unwrap_or_else(|_| panic!("bad value in {l:?}")))
        })
        .collect()
}

fn decl(pattern: &str) -> TopicDecl {
    TopicDecl {
        pattern: pattern.into(),
        policy: None,
        history: None,
        max_subscribers: None,
        publishers: None,
        description: None,
    }
}

#[tokio::test]
async fn metrics_show_the_known_workload() {
    let mut config = test_config();
    config.topics.declare.push(decl("news/*"));
    let mut reliable = decl("orders/>");
    reliable.policy = Some(serde_json::from_value(json!({"kind": "reliable"})).unwrap());
    config.topics.declare.push(reliable);
    let hub = spawn_hub(config).await;
    let mut a = hub.connect("a").await;
    let mut b = hub.connect("b").await;
    let mut p = hub.connect("p").await;
    for c in [&mut a, &mut b] {
        c.subscribe("news/today").await;
        c.subscribe("orders/eu/1").await;
        c.subscribe("misc/x").await;
    }
    for i in 0..5 {
        p.publish_json("news/today", json!(i)).await;
    }
    for i in 0..3 {
        p.publish_json("orders/eu/1", json!(i)).await;
    }
    p.publish_json("misc/x", json!("u")).await;
    p.publish_json("misc/y", json!("v")).await;
    for c in [&mut a, &mut b] {
        c.records(9).await;
    }
    // One failed authentication with a bad signature.
    let mut bad = hub.open().await;
    bad.send_json(json!({"op": "connect", "token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"})).await;
    bad.expect_close().await;

    let r = admin(&hub, "GET", "/metrics", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let m = parse(&r.body);
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("missing series {k} in\n{}", r.body));
    assert_eq!(get("fanhub_packets_read_total{topic=\"news/*\"}"), 5.0);
    assert_eq!(get("fanhub_packets_delivered_total{topic=\"news/*\"}"), 10.0);
    assert_eq!(get("fanhub_packets_read_total{topic=\"orders/>\"}"), 3.0);
    assert_eq!(get("fanhub_essential_packets_read_total{topic=\"orders/>\"}"), 3.0);
    assert_eq!(get("fanhub_essential_packets_delivered_total{topic=\"orders/>\"}"), 6.0);
    assert_eq!(get("fanhub_essential_packets_read_total{topic=\"news/*\"}"), 0.0);
    assert_eq!(get("fanhub_packets_read_total{topic=\"_other\"}"), 2.0);
    assert_eq!(get("fanhub_packets_delivered_total{topic=\"_other\"}"), 2.0);
    assert_eq!(get("fanhub_router_messages_received_total"), 10.0);
    assert!(get("fanhub_router_bytes_received_total") > 0.0);
    assert_eq!(get("fanhub_connections{protocol=\"websocket\"}"), 3.0);
    assert_eq!(get("fanhub_connections_accepted_total"), 3.0);
    assert_eq!(get("fanhub_auth_failures_total{reason=\"bad_signature\"}"), 1.0);
    assert_eq!(get("fanhub_dropped_messages_total{reason=\"queue_full\"}"), 0.0);
    assert_eq!(get("fanhub_slow_consumer_disconnects_total"), 0.0);
    assert!(get("fanhub_messages_sent_total") >= 18.0);
    assert!(get("fanhub_publish_to_write_seconds_count") >= 1.0);
    assert!(get("fanhub_outbound_queue_depth_count") >= 1.0);
    assert!(m.keys().any(|k| k.starts_with("fanhub_build_info{")));
    assert!(!r.body.contains("misc/x") && !r.body.contains("misc/y"), "undeclared topics are not labels");
    assert!(!r.body.contains("conn_id") && !r.body.contains("connection_id"), "no per-connection labels");
    assert!(r.body.contains("# HELP fanhub_packets_read_total"));
    assert!(r.body.contains("# TYPE fanhub_publish_to_write_seconds histogram"));
    hub.shutdown().await;
}

#[tokio::test]
async fn metrics_need_the_admin_token_unless_configured_open() {
    let hub = spawn_hub(test_config()).await;
    let r = http(hub.admin, "GET", "/metrics", &[], "").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["code"], "unauthenticated");
    assert!(!r.body.contains("fanhub_"), "no data leaks: {}", r.body);
    let public = http(hub.addr, "GET", "/metrics", &[ADMIN_AUTH], "").await;
    assert_eq!(public.status, 404, "metrics are never on the public listener");
    hub.shutdown().await;

    let mut config = test_config();
    config.admin.metrics_require_token = false;
    let hub = spawn_hub(config).await;
    let r = http(hub.admin, "GET", "/metrics", &[], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("fanhub_connections_accepted_total"));
    hub.shutdown().await;
}
