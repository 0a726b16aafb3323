//! Health on the public listener: `/healthz` (liveness) and `/readyz` (readiness) answer
//! `{"status":"ok","version","uptime_secs","node_id",…}`; while the node drains
//! (`POST /v1/admin/drain`) `/readyz` answers 503 `"unavailable"` and `/healthz` stays 200; after
//! `DELETE /v1/admin/drain` `/readyz` is ready again.

use crate::common::*;
use serde_json::Value;

async fn get(hub: &Hub, path: &str) -> HttpResponse {
    http(hub.addr, "GET", path, &[], "").await
}

/// Checks the fields every health answer carries and returns the body.
fn assert_health_body(r: &HttpResponse, what: &str) -> Value {
    assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
    let v = r.json();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{what}: {v}");
    assert!(v["uptime_secs"].is_u64(), "{what}: uptime_secs is a non-negative integer: {v}");
    assert!(v["node_id"].as_str().is_some_and(|n| !n.is_empty()), "{what}: node_id is a non-empty string: {v}");
    v
}

#[tokio::test]
async fn healthz_and_readyz_answer_200_ok_with_version_uptime_and_node_id() {
    let hub = spawn_hub(test_config()).await;
    let node_id = admin(&hub, "GET", "/v1/admin/stats", "").await.json()["node_id"].clone();
    for path in ["/healthz", "/readyz"] {
        let r = get(&hub, path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let v = assert_health_body(&r, path);
        assert_eq!(v["status"], "ok", "{path}: {v}");
        assert_eq!(v["node_id"], node_id, "{path} reports this node's id (as the admin stats do)");
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn a_configured_node_id_is_reported() {
    let mut config = test_config();
    config.node_id = "health-node-1".into();
    let hub = spawn_hub(config).await;
    for path in ["/healthz", "/readyz"] {
        let r = get(&hub, path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.json()["node_id"], "health-node-1", "{path}");
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn readyz_answers_503_unavailable_while_draining_and_200_again_after_the_drain_ends() {
    let hub = spawn_hub(test_config()).await;
    assert_eq!(get(&hub, "/readyz").await.status, 200, "ready before the drain");

    let d = admin(&hub, "POST", "/v1/admin/drain", "").await;
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(d.json()["draining"], true, "{}", d.body);
    let r = get(&hub, "/readyz").await;
    assert_eq!(r.status, 503, "not ready while draining: {}", r.body);
    let v = assert_health_body(&r, "/readyz while draining");
    assert_eq!(v["status"], "unavailable", "{v}");
    let h = get(&hub, "/healthz").await;
    assert_eq!(h.status, 200, "alive while draining: {}", h.body);
    assert_eq!(assert_health_body(&h, "/healthz while draining")["status"], "ok");

    let d = admin(&hub, "DELETE", "/v1/admin/drain", "").await;
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(d.json()["draining"], false, "{}", d.body);
    let r = get(&hub, "/readyz").await;
    assert_eq!(r.status, 200, "ready again after the drain ends: {}", r.body);
    assert_eq!(assert_health_body(&r, "/readyz after the drain")["status"], "ok");
    assert_eq!(get(&hub, "/healthz").await.status, 200);
    hub.shutdown().await;
}
