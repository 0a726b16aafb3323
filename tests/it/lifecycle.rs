//! Connect, authenticate, subscribe, receive, unsubscribe, close — and the hub cleans up.

use crate::common::*;
use serde_json::json;

#[tokio::test]
async fn a_client_connects_subscribes_receives_and_everything_is_cleaned_up() {
    let hub = spawn_hub(test_config()).await;
    let mut sub = hub.connect("alice").await;
    assert_eq!(sub.welcome["protocol"], "fanhub.v1");
    assert_eq!(sub.welcome["session"]["subject"], "alice");
    let conn_id = sub.welcome["conn_id"].as_u64().unwrap();

    let s = sub.subscribe("telemetry/car-7").await;
    assert_eq!(s["offset"], 1);
    assert_eq!(s["recovered"], true);

    let mut publisher = hub.connect("svc").await;
    assert_eq!(publisher.publish_json("telemetry/car-7", json!({"rpm": 9000})).await, 1);
    assert_eq!(publisher.publish_bin("telemetry/car-7", b"\x00\x01binary").await, 2);

    let recs = sub.records(2).await;
    assert_eq!(recs[0].topic, "telemetry/car-7");
    assert_eq!(recs[0].offset, 1);
    assert_eq!(recs[0].flags & 1, 1, "JSON flag set");
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&recs[0].payload).unwrap(), json!({"rpm": 9000}));
    assert_eq!(recs[1].payload, b"\x00\x01binary");
    assert_eq!(recs[1].flags & 1, 0);
    assert_eq!(recs[0].epoch, s["epoch"].as_u64().unwrap());

    let stats = hub.manager.connection_stats();
    assert_eq!(stats.active_connections, 2);
    assert_eq!(stats.subscriptions, 1);

    let r = sub.request(json!({"op": "unsubscribe", "topic": "telemetry/car-7"})).await;
    assert_eq!(r["type"], "unsubscribed");
    assert_eq!(hub.manager.connection_stats().subscriptions, 0);
    publisher.publish_json("telemetry/car-7", json!(3)).await;
    sub.assert_alive().await;
    assert!(sub.buffered_records().is_empty(), "no data after unsubscribe");

    sub.subscribe("telemetry/car-7").await;
    let r = sub.request(json!({"op": "bye"})).await;
    assert_eq!(r, json!({"type": "closed", "id": r["id"], "success": true}));
    let closed = sub.expect_close().await;
    assert_eq!(closed.code, Some(1000));

    hub.eventually("connection unregistered", |m| m.client_info(fanhub::hub::ConnId(conn_id)).is_none()).await;
    let stats = hub.manager.connection_stats();
    assert_eq!(stats.active_connections, 1);
    assert_eq!(stats.subscriptions, 0, "every subscription removed");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_dropped_tcp_connection_is_unregistered_with_its_subscriptions() {
    let hub = spawn_hub(test_config()).await;
    let mut c = hub.connect("bob").await;
    for i in 0..10 {
        c.subscribe(&format!("t/{i}")).await;
    }
    assert_eq!(hub.manager.connection_stats().subscriptions, 10);
    drop(c);
    hub.eventually("all subscriptions removed", |m| {
        let s = m.connection_stats();
        s.subscriptions == 0 && s.active_connections == 0
    })
    .await;
    hub.shutdown().await;
}

#[tokio::test]
async fn connection_ids_are_unique() {
    let hub = spawn_hub(test_config()).await;
    let mut ids = std::collections::HashSet::new();
    for _ in 0..5 {
        let c = hub.connect("u").await;
        assert!(ids.insert(c.welcome["conn_id"].as_u64().unwrap()));
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn requests_pipelined_behind_connect_are_answered_in_order_after_the_welcome() {
    let hub = spawn_hub(test_config()).await;
    let mut c = hub.open().await;
    let token = hub.token("eager");
    for msg in [
        serde_json::json!({"op": "connect", "id": 1, "token": token}),
        serde_json::json!({"op": "subscribe", "id": 2, "topic": "pipe/t"}),
        serde_json::json!({"op": "publish", "id": 3, "topic": "pipe/t", "data": 1}),
    ] {
        c.send_json(msg).await;
    }
    let kinds: Vec<(u64, String)> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            let m = c.next_json().await;
            v.push((m["id"].as_u64().unwrap(), m["type"].as_str().unwrap().to_owned()));
        }
        v
    };
    assert_eq!(kinds, [(1, "welcome".into()), (2, "subscribed".into()), (3, "published".into())]);
    assert_eq!(c.next_record().await.offset, 1);
    hub.shutdown().await;
}
