//! Permissions: subscribing or publishing outside the token's `subscribe` / `publish` claims
//! (`video/*`, `telemetry/>`), or publishing to a declared topic whose `publishers` do not list
//! the subject, answers `error` `permission_denied` with the request id and topic; the
//! connection stays open and usable, and nothing denied reaches a subscriber.

use crate::common::*;
use fanhub::hub::TopicDecl;
use serde_json::{json, Value};

/// A client for `sub` whose token allows subscribing to `video/*` and `telemetry/>` and
/// publishing to `telemetry/>` only.
async fn restricted(hub: &Hub, sub: &str) -> Client {
    let token = hub.token_with(sub, &["video/*", "telemetry/>"], &["telemetry/>"], 3600);
    hub.connect_with(json!({"op": "connect", "token": token})).await
}

fn assert_denied(reply: &Value, id: u64, topic: &str) {
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], "permission_denied", "{reply}");
    assert_eq!(reply["id"], id, "request id echoed: {reply}");
    assert_eq!(reply["topic"], topic, "topic echoed: {reply}");
}

/// Sends `msg` with request id `id` and returns the reply.
async fn send_with_id(c: &mut Client, mut msg: Value, id: u64) -> Value {
    msg["id"] = json!(id);
    c.send_json(msg).await;
    c.reply(id).await
}

#[tokio::test]
async fn subscribing_outside_the_subscribe_claims_is_denied_and_the_connection_stays_usable() {
    let hub = spawn_hub(test_config()).await;
    let mut c = restricted(&hub, "alice").await;
    let r = send_with_id(&mut c, json!({"op": "subscribe", "topic": "audio/mic"}), 11).await;
    assert_denied(&r, 11, "audio/mic");
    assert_eq!(hub.manager.connection_stats().subscriptions, 0, "no subscription created");
    c.assert_alive().await;

    // A later allowed subscribe works and receives data.
    c.subscribe("video/cam1").await;
    let mut publisher = hub.connect("svc").await;
    let offset = publisher.publish_json("video/cam1", json!({"frame": 1})).await;
    let rec = c.next_record().await;
    assert_eq!((rec.topic.as_str(), rec.offset), ("video/cam1", offset));
    hub.shutdown().await;
}

#[tokio::test]
async fn a_single_segment_wildcard_does_not_allow_deeper_or_shallower_topics() {
    let hub = spawn_hub(test_config()).await;
    let mut c = restricted(&hub, "alice").await;
    let r = send_with_id(&mut c, json!({"op": "subscribe", "topic": "video/cam1/hd"}), 21).await;
    assert_denied(&r, 21, "video/cam1/hd");
    let r = send_with_id(&mut c, json!({"op": "subscribe", "topic": "video"}), 22).await;
    assert_denied(&r, 22, "video");
    c.assert_alive().await;
    c.subscribe("video/cam2").await;
    hub.shutdown().await;
}

#[tokio::test]
async fn a_tail_wildcard_allows_every_deeper_topic_but_not_its_prefix() {
    let hub = spawn_hub(test_config()).await;
    let mut c = restricted(&hub, "alice").await;
    c.subscribe("telemetry/car-7").await;
    c.subscribe("telemetry/car-7/engine/rpm").await;
    let r = send_with_id(&mut c, json!({"op": "subscribe", "topic": "telemetry"}), 31).await;
    assert_denied(&r, 31, "telemetry");
    c.assert_alive().await;
    assert_eq!(hub.manager.connection_stats().subscriptions, 2);
    hub.shutdown().await;
}

#[tokio::test]
async fn publishing_outside_the_publish_claims_is_denied_and_nothing_is_delivered() {
    let hub = spawn_hub(test_config()).await;
    let mut watcher = hub.connect("watcher").await;
    watcher.subscribe("video/cam1").await;
    let mut c = restricted(&hub, "alice").await;

    // Allowed to subscribe to video/*, but not to publish there.
    let r = send_with_id(&mut c, json!({"op": "publish", "topic": "video/cam1", "data": "fake"}), 41).await;
    assert_denied(&r, 41, "video/cam1");
    c.assert_alive().await;
    assert_eq!(hub.manager.connection_stats().messages_in, 0, "nothing published");

    // The connection is still usable for allowed publishes.
    assert_eq!(c.publish_json("telemetry/car-7", json!(1)).await, 1);

    // The denied message never got an offset and never reached the subscriber.
    let mut svc = hub.connect("svc").await;
    assert_eq!(svc.publish_json("video/cam1", json!("real")).await, 1);
    let rec = watcher.next_record().await;
    assert_eq!(rec.offset, 1);
    assert_eq!(rec.payload, br#""real""#);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_denied_binary_publish_echoes_its_request_id() {
    let hub = spawn_hub(test_config()).await;
    let mut c = restricted(&hub, "alice").await;
    let frame = fanhub::protocol::frame::encode_publish("video/cam1", 4242, 0, b"fake");
    c.send_raw(tokio_tungstenite::tungstenite::Message::binary(frame)).await;
    let r = c.reply(4242).await;
    assert_denied(&r, 4242, "video/cam1");
    c.assert_alive().await;
    assert_eq!(c.publish_bin("telemetry/x", b"ok").await, 1);
    hub.shutdown().await;
}

#[tokio::test]
async fn publishing_to_the_bare_prefix_of_a_tail_wildcard_is_denied() {
    let hub = spawn_hub(test_config()).await;
    let mut c = restricted(&hub, "alice").await;
    let r = send_with_id(&mut c, json!({"op": "publish", "topic": "telemetry", "data": 1}), 51).await;
    assert_denied(&r, 51, "telemetry");
    c.assert_alive().await;
    hub.shutdown().await;
}

fn declared_publishers_config() -> fanhub::config::Config {
    let mut config = test_config();
    config.topics.declare = vec![TopicDecl {
        pattern: "cams/>".into(),
        policy: None,
        history: None,
        max_subscribers: None,
        publishers: Some(vec!["camera".into()]),
        description: Some("only the camera service publishes here".into()),
    }];
    config
}

#[tokio::test]
async fn a_declared_topic_accepts_publishes_only_from_its_listed_publishers() {
    let hub = spawn_hub(declared_publishers_config()).await;
    let mut watcher = hub.connect("watcher").await;
    watcher.subscribe("cams/front").await;
    let mut camera = hub.connect("camera").await;
    let mut intruder = hub.connect("intruder").await; // its token allows publishing everywhere

    assert_eq!(camera.publish_json("cams/front", json!(1)).await, 1);
    let r = send_with_id(&mut intruder, json!({"op": "publish", "topic": "cams/front", "data": 666}), 61).await;
    assert_denied(&r, 61, "cams/front");
    intruder.assert_alive().await;
    // The intruder may still publish to undeclared topics.
    assert_eq!(intruder.publish_json("elsewhere/x", json!(0)).await, 1);
    assert_eq!(camera.publish_json("cams/front", json!(2)).await, 2);

    let recs = watcher.records(2).await;
    assert_eq!(recs.iter().map(|r| r.offset).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(recs.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(), [b"1".to_vec(), b"2".to_vec()]);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_listed_publisher_still_needs_publish_claims_for_the_topic() {
    let hub = spawn_hub(declared_publishers_config()).await;
    let token = hub.token_with("camera", &[">"], &["other/>"], 3600);
    let mut camera = hub.connect_with(json!({"op": "connect", "token": token})).await;
    let r = send_with_id(&mut camera, json!({"op": "publish", "topic": "cams/front", "data": 1}), 71).await;
    assert_denied(&r, 71, "cams/front");
    camera.assert_alive().await;
    hub.shutdown().await;
}

#[tokio::test]
async fn a_declared_topic_is_open_to_every_subscriber_the_claims_allow() {
    let hub = spawn_hub(declared_publishers_config()).await;
    // `publishers` restricts publishing only; subscribing is governed by the claims.
    let mut viewer = restricted(&hub, "viewer").await;
    let r = send_with_id(&mut viewer, json!({"op": "subscribe", "topic": "cams/front"}), 81).await;
    assert_denied(&r, 81, "cams/front");
    let mut fan = hub.connect("fan").await;
    fan.subscribe("cams/front").await;
    hub.shutdown().await;
}
