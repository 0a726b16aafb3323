//! Graceful shutdown: stop accepting, tell every client (bye `shutdown` with reconnect advice,
//! close 1001), answer every publish read before the bye (none published without an answer),
//! deliver what was already queued, and return cleanly.

use crate::common::*;
use fanhub::hub::{DeliveryPolicy, DropStrategy, TopicName};
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

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

#[tokio::test]
async fn every_publish_read_before_the_bye_is_answered_and_none_unanswered_is_published() {
    let mut config = test_config();
    declare_topics(&mut config, "rel/>", reliable(100_000), None);
    let mut hub = spawn_hub(config).await;
    let mut sub = hub.connect("sub").await;
    sub.subscribe("rel/sd").await;
    let mut publisher = hub.connect("pub").await;
    // Many publishes in one write, and the shutdown right behind them: the node is still
    // working through them when the signal comes.
    for id in 1..=2000u64 {
        let msg = json!({"op": "publish", "id": id, "topic": "rel/sd", "data": {"i": id}});
        publisher.ws.feed(Message::text(msg.to_string())).await.unwrap();
    }
    publisher.ws.flush().await.unwrap();
    hub.begin_shutdown();
    let messages = publisher.expect_close().await.messages;
    let (answers, after_bye) = answers_before_bye(&messages);
    assert!(after_bye.is_empty(), "answers after the bye: {after_bye:?}");
    assert!(!answers.is_empty(), "the publishes that had reached the node when the signal came are answered");
    let published = check_prefix(&answers);
    // The subscriber's queue is flushed before its close: it holds exactly what was answered.
    let (records, _) = sub.read_until_close().await;
    assert_eq!(records.iter().map(|r| r.offset).collect::<Vec<_>>(), published);
    hub.wait_stopped().await;
}

/// Splits the control messages at the `bye`: the publish answers before it, and anything with an
/// id after it.
pub(crate) fn answers_before_bye(messages: &[Value]) -> (Vec<Value>, Vec<Value>) {
    let bye = messages.iter().position(|m| m["type"] == "bye").expect("a bye");
    let ids = |ms: &[Value]| ms.iter().filter(|m| m["id"].is_u64()).cloned().collect::<Vec<_>>();
    (ids(&messages[..bye]), ids(&messages[bye..]))
}

/// Checks that the answered publishes are 1..=k, each answered once, `published` answers first
/// and `unavailable` ones after; returns the offsets of the published ones.
pub(crate) fn check_prefix(answers: &[Value]) -> Vec<u64> {
    let mut by_id: Vec<&Value> = answers.iter().collect();
    by_id.sort_by_key(|m| m["id"].as_u64());
    let ids: Vec<u64> = by_id.iter().map(|m| m["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>(), "every publish read is answered, once");
    let mut offsets = Vec::new();
    let mut refused = false;
    for m in by_id {
        match (m["type"].as_str(), m["code"].as_str()) {
            (Some("published"), _) => {
                assert!(!refused, "a publish after a refused one was published: {m}");
                offsets.push(m["offset"].as_u64().unwrap());
            }
            (Some("error"), Some("unavailable")) => {
                refused = true;
                assert_eq!(m["publish_seq"], m["id"], "{m}");
            }
            _ => panic!("unexpected answer {m}"),
        }
    }
    offsets
}
