//! Configurable limits, each with its own error: connection limits (global, per user, per IP:
//! `resource_exhausted` naming the limit, then close 4008), subscriptions per connection,
//! message size (refused below the frame limit, 1009 above it), publish rate, and violation
//! enforcement (`monitored_violation`, then bye `violation` and close 4003).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::common::*;
use fanhub::config::Config;
use fanhub::hub::{ConnId, ConnState};
use fanhub::transport::ws::frame_limit;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Opens a socket, sends `connect` (id 1) as `sub` and expects the connection limit `limit`
/// to refuse it: `error` `resource_exhausted` naming the limit, `bye` `resource_exhausted`,
/// close 4008.
async fn assert_connection_refused(hub: &Hub, sub: &str, limit: &str) {
    let mut c = hub.open().await;
    c.send_json(json!({"op": "connect", "id": 1, "token": hub.token(sub)})).await;
    let closed = c.expect_close().await;
    assert_eq!(closed.code, Some(4008), "{closed:?}");
    let err = &closed.messages[0];
    assert_eq!(err["type"], "error", "{closed:?}");
    assert_eq!(err["code"], "resource_exhausted", "{err}");
    assert_eq!(err["limit"], limit, "{err}");
    assert_eq!(err["id"], 1, "{err}");
    let bye = closed.messages.last().unwrap();
    assert_eq!(bye["type"], "bye", "{closed:?}");
    assert_eq!(bye["reason"], "resource_exhausted", "{bye}");
    assert_eq!(bye["code"], 4008, "{bye}");
}

fn conn_id(c: &Client) -> ConnId {
    ConnId(c.welcome["conn_id"].as_u64().unwrap())
}

fn assert_error(reply: &Value, id: u64, code: &str, limit: &str) {
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], code, "{reply}");
    assert_eq!(reply["id"], id, "request id echoed: {reply}");
    assert_eq!(reply["limit"], limit, "{reply}");
}

/// Sends a binary publish with request id `id` and returns the reply.
async fn publish_bin_reply(c: &mut Client, topic: &str, id: u32, payload: &[u8]) -> Value {
    let frame = fanhub::protocol::frame::encode_publish(topic, id, 0, payload);
    c.send_raw(Message::binary(frame)).await;
    c.reply(u64::from(id)).await
}

#[tokio::test]
async fn the_global_connection_limit_refuses_the_next_connection_with_4008() {
    let mut config = test_config();
    config.limits.max_connections = 2;
    let hub = spawn_hub(config).await;
    let mut a = hub.connect("a").await;
    let _b = hub.connect("b").await;
    assert_connection_refused(&hub, "c", "max_connections").await;
    let stats = hub.manager.connection_stats();
    assert_eq!(stats.active_connections, 2);
    assert_eq!(stats.connections_rejected, 1);
    a.assert_alive().await;
    hub.shutdown().await;
}

#[tokio::test]
async fn a_freed_connection_slot_can_be_used_again() {
    let mut config = test_config();
    config.limits.max_connections = 1;
    let hub = spawn_hub(config).await;
    let a = hub.connect("a").await;
    assert_connection_refused(&hub, "b", "max_connections").await;
    drop(a);
    hub.eventually("slot freed", |m| m.connection_stats().active_connections == 0).await;
    let mut b = hub.connect("b").await;
    b.assert_alive().await;
    hub.shutdown().await;
}

#[tokio::test]
async fn the_per_user_connection_limit_refuses_the_same_subject_only() {
    let mut config = test_config();
    config.limits.max_connections_per_user = 2;
    let hub = spawn_hub(config).await;
    let _a1 = hub.connect("alice").await;
    let _a2 = hub.connect("alice").await;
    assert_connection_refused(&hub, "alice", "max_connections_per_user").await;
    let mut bob = hub.connect("bob").await;
    bob.assert_alive().await;
    let stats = hub.manager.connection_stats();
    assert_eq!(stats.active_connections, 3);
    assert_eq!(stats.connections_rejected, 1);
    hub.shutdown().await;
}

/// Connects as `sub` from the local address `ip` (any 127.0.0.0/8 address is local on Linux)
/// and returns the socket with the first reply to `connect`.
async fn connect_from(hub: &Hub, ip: Ipv4Addr, sub: &str) -> (impl Sized, Value) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(ip), 0)).unwrap();
    let tcp = socket.connect(hub.addr).await.unwrap();
    let mut req = hub.ws_url().into_client_request().unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", "fanhub.v1".parse().unwrap());
    let (mut ws, _) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::client_async(req, tcp)).await.unwrap().unwrap();
    let connect = json!({"op": "connect", "id": 1, "token": hub.token(sub)});
    ws.send(Message::text(connect.to_string())).await.unwrap();
    loop {
        match tokio::time::timeout(TIMEOUT, ws.next()).await.expect("reply to connect") {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["id"] == 1 {
                    return (ws, v);
                }
            }
            Some(Ok(_)) => {}
            other => panic!("connection ended before the reply to connect: {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_per_ip_connection_limit_refuses_the_same_address_only() {
    let mut config = test_config();
    config.limits.max_connections_per_ip = 1;
    let hub = spawn_hub(config).await;
    let mut alice = hub.connect("alice").await; // from 127.0.0.1
                                                // Another subject from the same address is refused by the per-IP limit.
    assert_connection_refused(&hub, "bob", "max_connections_per_ip").await;
    // The same subject from another address is fine.
    let (_ws, reply) = connect_from(&hub, Ipv4Addr::new(127, 0, 0, 2), "bob").await;
    assert_eq!(reply["type"], "welcome", "{reply}");
    alice.assert_alive().await;
    let stats = hub.manager.connection_stats();
    assert_eq!(stats.active_connections, 2);
    assert_eq!(stats.connections_rejected, 1);
    hub.shutdown().await;
}

#[tokio::test]
async fn the_subscription_limit_refuses_one_more_subscribe_and_the_connection_stays() {
    let mut config = test_config();
    config.limits.max_subscriptions_per_connection = 3;
    let hub = spawn_hub(config).await;
    let mut c = hub.connect("alice").await;
    for t in ["s/1", "s/2", "s/3"] {
        c.subscribe(t).await;
    }
    c.send_json(json!({"op": "subscribe", "id": 4, "topic": "s/4"})).await;
    let r = c.reply(4).await;
    assert_error(&r, 4, "resource_exhausted", "max_subscriptions_per_connection");
    assert_eq!(r["topic"], "s/4");
    c.assert_alive().await;
    assert_eq!(hub.manager.client_info(conn_id(&c)).unwrap().subscriptions.len(), 3);

    // Still subscribed and receiving; unsubscribing frees a slot.
    let mut p = hub.connect("svc").await;
    p.publish_json("s/1", json!("x")).await;
    assert_eq!(c.next_record().await.topic, "s/1");
    let r = c.request(json!({"op": "unsubscribe", "topic": "s/3"})).await;
    assert_eq!(r["type"], "unsubscribed", "{r}");
    c.subscribe("s/4").await;
    hub.shutdown().await;
}

fn small_messages(max: usize) -> Config {
    let mut config = test_config();
    config.limits.max_message_size = max;
    config
}

#[tokio::test]
async fn a_binary_publish_over_max_message_size_is_refused_and_the_connection_stays() {
    let hub = spawn_hub(small_messages(1024)).await;
    let mut c = hub.connect("alice").await;
    c.subscribe("big/t").await;
    let r = publish_bin_reply(&mut c, "big/t", 9, &[7u8; 1025]).await;
    assert_error(&r, 9, "resource_exhausted", "max_message_size");
    assert_eq!(r["topic"], "big/t");
    c.assert_alive().await;
    assert_eq!(hub.manager.connection_stats().messages_in, 0, "nothing published");
    // Exactly the maximum is fine, and it is the first message of the topic.
    assert_eq!(c.publish_bin("big/t", &[7u8; 1024]).await, 1);
    assert_eq!(c.next_record().await.payload.len(), 1024);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_json_publish_over_max_message_size_is_refused_and_the_connection_stays() {
    let hub = spawn_hub(small_messages(1024)).await;
    let mut c = hub.connect("alice").await;
    // The payload is the serialized `data`: 2000 characters plus two quotes.
    let r = c.request(json!({"op": "publish", "topic": "big/t", "data": "x".repeat(2000)})).await;
    assert_eq!(r["type"], "error", "{r}");
    assert_eq!(r["code"], "resource_exhausted", "{r}");
    assert_eq!(r["limit"], "max_message_size", "{r}");
    c.assert_alive().await;
    assert_eq!(c.publish_json("big/t", json!("x".repeat(1000))).await, 1);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_frame_over_the_decoder_limit_gets_an_error_then_close_1009() {
    let hub = spawn_hub(small_messages(1024)).await;
    let mut c = hub.connect("alice").await;
    let id = conn_id(&c);
    let too_big = frame_limit(1024) + 1;
    let frame = fanhub::protocol::frame::encode_publish("big/t", 5, 0, &vec![0u8; too_big - 13]);
    assert_eq!(frame.len(), too_big);
    c.send_raw(Message::binary(frame)).await;
    let closed = c.expect_close().await;
    assert_eq!(closed.code, Some(1009), "{closed:?}");
    let err = &closed.messages[0];
    assert_eq!(err["type"], "error", "{closed:?}");
    assert_eq!(err["code"], "resource_exhausted", "{err}");
    assert_eq!(err["limit"], "max_message_size", "{err}");
    let bye = closed.messages.last().unwrap();
    assert_eq!(bye["type"], "bye", "{closed:?}");
    assert_eq!(bye["reason"], "message_too_big", "{bye}");
    assert_eq!(bye["code"], 1009, "{bye}");
    hub.eventually("connection unregistered", |m| m.client_info(id).is_none()).await;
    assert_eq!(hub.manager.connection_stats().messages_in, 0);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_frame_at_the_decoder_limit_is_refused_without_closing() {
    let hub = spawn_hub(small_messages(1024)).await;
    let mut c = hub.connect("alice").await;
    let frame = fanhub::protocol::frame::encode_publish("big/t", 6, 0, &vec![0u8; frame_limit(1024) - 13]);
    assert_eq!(frame.len(), frame_limit(1024));
    c.send_raw(Message::binary(frame)).await;
    let r = c.reply(6).await;
    assert_error(&r, 6, "resource_exhausted", "max_message_size");
    c.assert_alive().await;
    hub.shutdown().await;
}

#[tokio::test]
async fn publishing_faster_than_the_rate_limit_is_refused_and_the_connection_stays() {
    let mut config = test_config();
    config.limits.publish_rate_per_second = 1;
    config.limits.publish_burst = 3;
    let hub = spawn_hub(config).await;
    let mut c = hub.connect("alice").await;
    for expected in 1..=3 {
        assert_eq!(c.publish_json("fast/t", json!(expected)).await, expected);
    }
    c.send_json(json!({"op": "publish", "id": 4, "topic": "fast/t", "data": 4})).await;
    let r = c.reply(4).await;
    assert_error(&r, 4, "rate_limited", "publish_rate_per_second");
    assert_eq!(r["topic"], "fast/t");
    // When the next publish would pass: within the one-per-second refill.
    let wait = r["retry_after_ms"].as_u64().unwrap_or_else(|| panic!("retry_after_ms: {r}"));
    assert!(wait > 0 && wait <= 1000, "{r}");
    c.assert_alive().await;
    // Other operations are not rate limited.
    c.subscribe("fast/t").await;
    assert_eq!(hub.manager.connection_stats().messages_in, 3);
    hub.shutdown().await;
}

fn enforcing(to_monitor: u32, to_close: u32) -> Config {
    let mut config = small_messages(64);
    config.limits.violations_to_monitor = to_monitor;
    config.limits.violations_to_close = to_close;
    config.limits.violations_window_ms = 600_000;
    config
}

#[tokio::test]
async fn repeated_violations_move_the_connection_to_monitored_violation() {
    let hub = spawn_hub(enforcing(2, 4)).await;
    let mut c = hub.connect("alice").await;
    let id = conn_id(&c);
    assert_eq!(hub.manager.client_info(id).unwrap().state, ConnState::Active);

    let r = publish_bin_reply(&mut c, "v/t", 1, &[0u8; 100]).await;
    assert_error(&r, 1, "resource_exhausted", "max_message_size");
    assert_eq!(hub.manager.client_info(id).unwrap().state, ConnState::Active, "one violation is only counted");

    let r = publish_bin_reply(&mut c, "v/t", 2, &[0u8; 100]).await;
    assert_error(&r, 2, "resource_exhausted", "max_message_size");
    assert_eq!(hub.manager.client_info(id).unwrap().state, ConnState::MonitoredViolation);

    // Monitored, but still served.
    c.assert_alive().await;
    assert_eq!(c.publish_bin("v/t", b"small").await, 1);
    assert_eq!(hub.manager.connection_stats().violations, 2);
    hub.shutdown().await;
}

#[tokio::test]
async fn enough_violations_close_the_connection_with_bye_violation_and_4003() {
    let hub = spawn_hub(enforcing(2, 4)).await;
    let mut c = hub.connect("alice").await;
    let id = conn_id(&c);
    for i in 1..=3 {
        let r = publish_bin_reply(&mut c, "v/t", i, &[0u8; 100]).await;
        assert_error(&r, u64::from(i), "resource_exhausted", "max_message_size");
    }
    assert_eq!(hub.manager.client_info(id).unwrap().state, ConnState::MonitoredViolation);
    c.publish_bin_noack("v/t", &[0u8; 100]).await;
    let closed = c.expect_close().await;
    assert_eq!(closed.code, Some(4003), "{closed:?}");
    let bye = closed.messages.last().expect("a bye before the close");
    assert_eq!(bye["type"], "bye", "{closed:?}");
    assert_eq!(bye["reason"], "violation", "{bye}");
    assert_eq!(bye["code"], 4003, "{bye}");
    hub.eventually("connection unregistered", |m| m.client_info(id).is_none()).await;
    let stats = hub.manager.connection_stats();
    assert_eq!(stats.active_connections, 0);
    assert_eq!(stats.violations, 4);
    hub.shutdown().await;
}

#[tokio::test]
async fn rate_limit_and_subscription_limit_violations_count_towards_enforcement() {
    let mut config = enforcing(1, 3);
    config.limits.publish_rate_per_second = 1;
    config.limits.publish_burst = 1;
    config.limits.max_subscriptions_per_connection = 1;
    let hub = spawn_hub(config).await;
    let mut c = hub.connect("alice").await;
    let id = conn_id(&c);
    c.subscribe("a/1").await;
    c.send_json(json!({"op": "subscribe", "id": 2, "topic": "a/2"})).await;
    assert_error(&c.reply(2).await, 2, "resource_exhausted", "max_subscriptions_per_connection");
    assert_eq!(hub.manager.client_info(id).unwrap().state, ConnState::MonitoredViolation);
    assert_eq!(c.publish_json("a/1", json!(1)).await, 1);
    c.send_json(json!({"op": "publish", "id": 3, "topic": "a/1", "data": 2})).await;
    assert_error(&c.reply(3).await, 3, "rate_limited", "publish_rate_per_second");
    c.send_json(json!({"op": "publish", "id": 4, "topic": "a/1", "data": 3})).await;
    let closed = c.expect_close().await;
    assert_eq!(closed.code, Some(4003), "{closed:?}");
    assert_eq!(closed.messages.last().unwrap()["reason"], "violation", "{closed:?}");
    hub.shutdown().await;
}

/// 1000 payload bytes per second (the burst: one second's worth), messages of at most 600
/// bytes; the second violation moves the connection to `monitored_violation`, the fourth closes
/// it. Meant for a manual clock: nothing refills unless the test advances it.
pub fn byte_rate_config() -> Config {
    let mut config = small_messages(600);
    config.limits.publish_bytes_per_second = 1000;
    config.limits.violations_to_monitor = 2;
    config.limits.violations_to_close = 4;
    config.limits.violations_window_ms = 600_000;
    config
}

/// The admin API's state of `user`'s connection.
pub async fn state_of(hub: &Hub, user: &str) -> Value {
    let rows = admin(hub, "GET", &format!("/v1/admin/connections?user={user}"), "").await.json();
    assert_eq!(rows["total"], 1, "{rows}");
    rows["items"][0]["state"].clone()
}

#[tokio::test]
async fn publishing_over_the_byte_rate_is_refused_then_monitored_then_closed_and_resumes_as_time_passes() {
    let hub = spawn_hub_manual(byte_rate_config()).await;
    let mut watcher = hub.connect("watcher").await;
    watcher.subscribe("bytes/t").await;
    let mut c = hub.connect("flooder").await;
    let big = [5u8; 600];

    assert_eq!(c.publish_bin("bytes/t", &big).await, 1);
    // The burst is spent: 600 more bytes need 200 ms more.
    let r = publish_bin_reply(&mut c, "bytes/t", 12, &big).await;
    assert_error(&r, 12, "rate_limited", "publish_bytes_per_second");
    assert_eq!((r["retry_after_ms"].as_u64(), r["topic"].as_str()), (Some(200), Some("bytes/t")), "{r}");
    assert_eq!(state_of(&hub, "flooder").await, "active", "one violation is only counted");

    hub.advance(std::time::Duration::from_millis(200));
    assert_eq!(c.publish_bin("bytes/t", &big).await, 2, "the refused message passes once the bytes refill");
    // Sent at once, the next one finds the bucket empty: 600 ms to wait.
    let r = publish_bin_reply(&mut c, "bytes/t", 14, &big).await;
    assert_error(&r, 14, "rate_limited", "publish_bytes_per_second");
    assert_eq!(r["retry_after_ms"], 600, "{r}");
    assert_eq!(state_of(&hub, "flooder").await, "monitored_violation");

    hub.advance(std::time::Duration::from_millis(599));
    let r = publish_bin_reply(&mut c, "bytes/t", 15, &big).await;
    assert_error(&r, 15, "rate_limited", "publish_bytes_per_second");
    assert_eq!(r["retry_after_ms"], 1, "{r}");
    assert_eq!(state_of(&hub, "flooder").await, "monitored_violation");
    hub.advance(std::time::Duration::from_millis(1));
    assert_eq!(c.publish_bin("bytes/t", &big).await, 3, "monitored, but still served");
    // The fourth violation: the error, then bye `violation` and 4003.
    c.publish_bin_noack("bytes/t", &big).await;
    let closed = c.expect_close().await;
    assert_eq!(closed.code, Some(4003), "{closed:?}");
    let error = closed.messages.iter().find(|m| m["type"] == "error").expect("the refusal before the bye");
    assert_eq!(
        (error["code"].as_str(), error["limit"].as_str()),
        (Some("rate_limited"), Some("publish_bytes_per_second"))
    );
    let bye = closed.messages.last().unwrap();
    assert_eq!((bye["type"].as_str(), bye["reason"].as_str()), (Some("bye"), Some("violation")), "{closed:?}");
    hub.eventually("the flooder unregistered", |m| m.connection_stats().active_connections == 1).await;
    assert_eq!(hub.manager.connection_stats().violations, 4);

    // The hub stays healthy: the watcher got exactly the accepted messages, in order, and
    // publishes and receives as before.
    let got: Vec<u64> = watcher.records(3).await.iter().map(|r| r.offset).collect();
    assert_eq!(got, [1, 2, 3]);
    assert_eq!(watcher.publish_bin("bytes/t", b"still fine").await, 4);
    assert_eq!(watcher.next_record().await.payload, b"still fine");
    assert_eq!(http(hub.addr, "GET", "/healthz", &[], "").await.status, 200);
    hub.shutdown().await;
}
