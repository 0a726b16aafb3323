//! Graceful shutdown: stop accepting, tell every client (bye `shutdown` with reconnect advice,
//! close 1001), deliver what was already queued, and return cleanly.

use crate::common::*;
use fanhub::hub::{DeliveryPolicy, DropStrategy, TopicName};

#[tokio::test]
async fn every_client_gets_a_shutdown_bye_with_reconnect_advice() {
    let mut config = test_config();
    config.server.reconnect_urls = vec!["ws://127.0.0.1:1/ws".into()];
    let mut hub = spawn_hub(config).await;
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(hub.connect(&format!("c{i}")).await);
    }
    // An authenticated-but-idle and a not-yet-authenticated connection are both told.
    let mut pending = hub.open().await;
    hub.begin_shutdown();
    for c in &mut clients {
        let closed = c.expect_close().await;
        assert_eq!(closed.code, Some(1001), "{closed:?}");
        let bye = closed.messages.iter().find(|m| m["type"] == "bye").expect("a bye before the close");
        assert_eq!(bye["reason"], "shutdown");
        assert_eq!(bye["reconnect"], serde_json::json!(["ws://127.0.0.1:1/ws"]));
    }
    assert_eq!(pending.expect_close().await.code, Some(1001));
    hub.wait_stopped().await;
}

#[tokio::test]
async fn data_queued_before_shutdown_is_delivered_before_the_close() {
    let hub = spawn_hub(test_config()).await;
    let topic = TopicName::new("drain/x").unwrap();
    let roomy =
        DeliveryPolicy::BestEffort { queue_messages: 10_000, queue_bytes: 1 << 30, overflow: DropStrategy::DropNewest };
    hub.manager.set_delivery_policy(&topic, roomy).unwrap();
    let mut c = hub.connect("reader").await;
    c.subscribe("drain/x").await;
    for _ in 0..200 {
        hub.manager.route_data(&topic, &vec![3u8; 16 * 1024], 0, now()).unwrap();
    }
    let mut hub = hub;
    hub.begin_shutdown();
    let (records, closed) = c.read_until_close().await;
    assert_eq!(records.iter().map(|r| r.offset).collect::<Vec<_>>(), (1..=200).collect::<Vec<_>>());
    assert_eq!(closed.code, Some(1001));
    hub.wait_stopped().await;
}

#[tokio::test]
async fn new_connections_are_refused_once_shutdown_begins() {
    let mut hub = spawn_hub(test_config()).await;
    let mut keep = hub.connect("keep").await;
    let addr = hub.addr;
    let url = hub.ws_url();
    hub.begin_shutdown();
    // Once the existing client has been told, the listener is closed or refusing.
    keep.expect_close().await;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        match tokio::time::timeout(TIMEOUT, Client::try_open(&url, &[])).await.expect("hung") {
            Err(_) => break,
            Ok(_) => {
                assert!(tokio::time::Instant::now() < deadline, "still accepting on {addr}");
                tokio::task::yield_now().await;
            }
        }
    }
    hub.wait_stopped().await;
}
