//! Admin connection endpoints over real HTTP with real WebSocket clients connected: listing
//! with filters and pages, one connection's full details, kicking (the client sees `bye`
//! `kicked`, the hub forgets it) and `404 not_found` for unknown ids.

use crate::common::*;
use serde_json::{json, Value};

fn ids(page: &Value) -> Vec<u64> {
    page["items"].as_array().unwrap().iter().map(|r| r["id"].as_u64().unwrap()).collect()
}

fn id_of(c: &Client) -> u64 {
    c.welcome["conn_id"].as_u64().expect("welcome carries conn_id")
}

#[tokio::test]
async fn connections_are_listed_filtered_and_paginated() {
    let hub = spawn_hub(test_config()).await;
    let mut alice = hub.connect("alice").await;
    let mut bob = hub.connect("bob").await;
    let carol = hub.connect("carol").await;
    alice.subscribe("news/a").await;
    bob.subscribe("news/a").await;
    bob.subscribe("news/b").await;
    let (a, b, c) = (id_of(&alice), id_of(&bob), id_of(&carol));

    let all = admin(&hub, "GET", "/v1/admin/connections", "").await;
    assert_eq!(all.status, 200, "{}", all.body);
    let all = all.json();
    assert_eq!(all["total"], 3);
    assert_eq!(ids(&all), vec![a, b, c], "rows are ordered by id");
    let row = &all["items"][1];
    assert_eq!(row["subject"], "bob");
    assert_eq!(row["protocol"], "websocket");
    assert_eq!(row["state"], "active");
    assert_eq!(row["subscriptions"], 2);
    for field in ["remote_addr", "connected_at_ms", "last_activity_ms", "queue_depth", "sent_messages", "dropped"] {
        assert!(!row[field].is_null(), "row has {field}: {row}");
    }
    assert!(row["remote_addr"].as_str().unwrap().starts_with("127.0.0.1:"));

    let by_user = admin(&hub, "GET", "/v1/admin/connections?user=bob", "").await.json();
    assert_eq!(ids(&by_user), vec![b]);
    let by_topic = admin(&hub, "GET", "/v1/admin/connections?topic=news/a", "").await.json();
    assert_eq!(ids(&by_topic), vec![a, b]);
    let by_topic_b = admin(&hub, "GET", "/v1/admin/connections?topic=news%2Fb", "").await.json();
    assert_eq!(ids(&by_topic_b), vec![b]);
    let by_protocol = admin(&hub, "GET", "/v1/admin/connections?protocol=webrtc", "").await.json();
    assert_eq!(by_protocol["total"], 0);
    let by_state = admin(&hub, "GET", "/v1/admin/connections?state=active&protocol=websocket", "").await.json();
    assert_eq!(by_state["total"], 3);

    let page = admin(&hub, "GET", "/v1/admin/connections?limit=1&offset=1", "").await.json();
    assert_eq!(ids(&page), vec![b]);
    assert_eq!((page["total"].as_u64(), page["limit"].as_u64(), page["offset"].as_u64()), (Some(3), Some(1), Some(1)));
    let past_end = admin(&hub, "GET", "/v1/admin/connections?offset=10", "").await.json();
    assert_eq!(ids(&past_end), Vec::<u64>::new());

    for bad in ["limit=0", "limit=1000000", "topic=a//b", "limit=x"] {
        let r = admin(&hub, "GET", &format!("/v1/admin/connections?{bad}"), "").await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    let r = admin(&hub, "GET", "/v1/admin/connections?limit=0", "").await.json();
    assert_eq!(r["code"], "invalid_argument");
    drop(carol);
    hub.shutdown().await;
}

#[tokio::test]
async fn connection_details_show_subscriptions_offsets_details_and_time_sync() {
    let mut config = test_config();
    config.session.time_sync_interval_ms = 200;
    config.session.ping_interval_ms = 100;
    let hub = spawn_hub(config).await;
    let mut pubr = hub.connect("pub").await;
    let mut c = hub
        .connect_with(json!({"op": "connect", "token": hub.token("dave"),
            "details": {"data_source": "cam", "session_key": "s1", "streams": ["video"]}}))
        .await;
    for i in 0..3 {
        pubr.publish_json("cam/s1/video", json!(i)).await;
    }
    c.records(3).await;
    // Answer the server's time sync so the hub knows this client's RTT and clock offset.
    let req = c.next_of_type("time_sync_request").await;
    let now_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64;
    c.send_json(json!({"op": "time_sync_reply", "seq": req["seq"], "t1": req["t1"], "t2": now_us, "t3": now_us})).await;
    c.send_json(json!({"op": "ping", "id": 9})).await;
    let _ = c.reply(9).await;
    let id = id_of(&c);
    let d = admin(&hub, "GET", &format!("/v1/admin/connections/{id}"), "").await;
    assert_eq!(d.status, 200, "{}", d.body);
    let d = d.json();
    assert!(d["node_id"].as_str().is_some_and(|n| !n.is_empty()));
    let conn = &d["connection"];
    assert_eq!(conn["id"], id);
    assert_eq!(conn["subject"], "dave");
    assert_eq!(conn["protocol"], "websocket", "the same name as in the list");
    assert_eq!(conn["details"]["data_source"], "cam");
    assert_eq!(conn["details"]["session_key"], "s1");
    let subs = conn["subscriptions"].as_array().unwrap();
    let video = subs.iter().find(|s| s["topic"] == "cam/s1/video").unwrap_or_else(|| panic!("{subs:?}"));
    assert_eq!(video["last_offset"], 3, "{video}");
    assert!(subs.iter().any(|s| s["topic"] == "cam/s1"), "main stream subscribed: {subs:?}");
    assert!(conn["rtt_us"].as_i64().is_some_and(|r| r >= 0), "{conn}");
    assert!(conn["clock_offset_us"].is_i64(), "{conn}");
    assert!(conn["sent_messages"].as_u64().unwrap() >= 1);

    let missing = admin(&hub, "GET", "/v1/admin/connections/987654", "").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["code"], "not_found");
    let bad = admin(&hub, "GET", "/v1/admin/connections/abc", "").await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    hub.shutdown().await;
}

#[tokio::test]
async fn kicking_a_connection_sends_bye_kicked_and_unregisters_it() {
    let hub = spawn_hub(test_config()).await;
    let mut victim = hub.connect("mallory").await;
    let mut other = hub.connect("olivia").await;
    victim.subscribe("k/t").await;
    let id = id_of(&victim);
    let r = admin(&hub, "DELETE", &format!("/v1/admin/connections/{id}"), "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"success": true}));
    let closed = victim.expect_close().await;
    let bye = closed.messages.iter().find(|m| m["type"] == "bye").unwrap_or_else(|| panic!("{closed:?}"));
    assert_eq!(bye["reason"], "kicked");
    hub.eventually("kicked connection unregistered", |m| m.connection_stats().active_connections == 1).await;
    let again = admin(&hub, "DELETE", &format!("/v1/admin/connections/{id}"), "").await;
    assert_eq!(again.status, 404);
    assert_eq!(again.json()["code"], "not_found");
    let list = admin(&hub, "GET", "/v1/admin/connections", "").await.json();
    assert_eq!(list["total"], 1);
    other.assert_alive().await;
    hub.shutdown().await;
}
