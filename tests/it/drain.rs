//! `POST /v1/admin/drain`: the node stops accepting (readiness false, upgrades refused with
//! `unavailable`), every client gets `bye` `maintenance` with the configured reconnect URLs
//! after its queued data, progress is reported, and `DELETE` ends the drain.

use crate::common::*;
use serde_json::json;

#[tokio::test]
async fn draining_moves_clients_away_with_reconnect_advice_and_reports_progress() {
    let mut config = test_config();
    config.server.reconnect_urls = vec!["ws://127.0.0.1:1/ws".into(), "ws://127.0.0.1:2/ws".into()];
    let hub = spawn_hub(config).await;
    let mut a = hub.connect("a").await;
    let mut b = hub.connect("b").await;
    a.subscribe("d/t").await;
    let mut p = hub.connect("p").await;
    let last = p.publish_json("d/t", json!("before drain")).await;

    let r = admin(&hub, "POST", "/v1/admin/drain", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let st = r.json();
    assert_eq!(st["draining"], true);
    assert_eq!(st["notified"], 3);
    assert_eq!(st["reconnect_urls"], json!(["ws://127.0.0.1:1/ws", "ws://127.0.0.1:2/ws"]));

    for c in [&mut a, &mut b, &mut p] {
        let (records, closed) = c.read_until_close().await;
        let bye = closed.messages.iter().find(|m| m["type"] == "bye").unwrap_or_else(|| panic!("{closed:?}"));
        assert_eq!(bye["reason"], "maintenance");
        assert_eq!(bye["reconnect"], json!(["ws://127.0.0.1:1/ws", "ws://127.0.0.1:2/ws"]));
        if !records.is_empty() {
            assert_eq!(records.last().unwrap().offset, last, "queued data is flushed before the bye");
        }
    }
    assert_eq!(http(hub.addr, "GET", "/readyz", &[], "").await.status, 503);
    let refused = Client::try_open(&hub.ws_url(), &[]).await;
    assert!(refused.is_err(), "new connections are refused while draining");
    hub.eventually("every connection gone", |m| m.connection_stats().active_connections == 0).await;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let st = admin(&hub, "GET", "/v1/admin/drain", "").await.json();
        assert_eq!(st["draining"], true);
        if st["remaining"] == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "drain never finished: {st}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let r = admin(&hub, "DELETE", "/v1/admin/drain", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["draining"], false);
    assert_eq!(http(hub.addr, "GET", "/readyz", &[], "").await.status, 200);
    let mut again = hub.connect("a").await;
    again.assert_alive().await;
    hub.shutdown().await;
}
