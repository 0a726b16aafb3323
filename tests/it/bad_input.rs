//! Bad input from an authenticated client: malformed JSON, unknown ops, wrong or missing
//! fields, non-object JSON, binary garbage, invalid topic names, invalid UTF-8 and request
//! floods. Each gets its documented error (`invalid_argument`, echoing the request id when it
//! can be recovered); the connection and the hub stay healthy, and nothing already accepted is
//! lost.

use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

/// Sends `text` as a text frame and returns the `error` it provokes (the next control
/// message, which must be an `invalid_argument` error echoing `id`), then proves the
/// connection is still alive.
async fn invalid(c: &mut Client, text: &str, id: Option<u64>) -> String {
    c.send_raw(Message::text(text.to_owned())).await;
    let e = c.next_json().await;
    assert_eq!(e["type"], "error", "for {text}: {e}");
    assert_eq!(e["code"], "invalid_argument", "for {text}: {e}");
    assert_eq!(e["id"], id.map_or(Value::Null, |i| json!(i)), "id for {text}: {e}");
    c.assert_alive().await;
    e["message"].as_str().unwrap().to_owned()
}

/// Sends `bytes` as a binary frame and returns the `invalid_argument` error's message.
async fn invalid_binary(c: &mut Client, bytes: &[u8]) -> String {
    c.send_raw(Message::binary(bytes.to_vec())).await;
    let e = c.next_json().await;
    assert_eq!(e["type"], "error", "for {bytes:?}: {e}");
    assert_eq!(e["code"], "invalid_argument", "for {bytes:?}: {e}");
    assert_eq!(e["id"], Value::Null, "{e}");
    c.assert_alive().await;
    e["message"].as_str().unwrap().to_owned()
}

fn assert_contains(message: &str, fragment: &str) {
    assert!(message.contains(fragment), "{message:?} should contain {fragment:?}");
}

#[tokio::test]
async fn malformed_json_is_invalid_argument_without_an_id() {
    let hub = spawn_hub(test_config()).await;
    let mut c = hub.connect("alice").await;
    let m = invalid(&mut c, r#"{"op":"ping","id":3"#, None).await;
    assert!(m.starts_with("malformed JSON"), "{m}");
    let m = invalid(&mut c, "", None).await;
    assert!(m.starts_with("malformed JSON"), "{m}");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_json_array_or_scalar_is_invalid_argument_asking_for_an_object() {
    let hub = spawn_hub(test_config()).await;
    let mut c = hub.connect("alice").await;
    for text in [r#"[{"op":"ping","id":1}]"#, "42", r#""ping""#, "null"] {
        let m = invalid(&mut c, text, None).await;
        assert_contains(&m, "must be a JSON object");
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn an_unknown_op_is_invalid_argument_echoing_the_id_and_listing_known_ops() {
    let hub = spawn_hub(test_config()).await;
    let mut c = hub.connect("alice").await;
    let m = invalid(&mut c, r#"{"op":"dance","id":41}"#, Some(41)).await;
    assert_contains(&m, "unknown op `dance`");
    assert_contains(&m, "subscribe");
    assert_contains(&m, "publish");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_missing_or_non_string_op_is_invalid_argument_echoing_the_id() {
    let hub = spawn_hub(test_config()).await;
    let mut c = hub.connect("alice").await;
    let m = invalid(&mut c, r#"{"id":42,"topic":"a"}"#, Some(42)).await;
    assert_contains(&m, "missing field `op`");
    let m = invalid(&mut c, r#"{"op":5,"id":43}"#, Some(43)).await;
    assert_contains(&m, "`op` must be a string");
    hub.shutdown().await;
}

#[tokio::test]
async fn wrong_field_types_are_invalid_argument_echoing_the_id() {
    let hub = spawn_hub(test_config()).await;
    let mut c = hub.connect("alice").await;
    let cases = [
        (r#"{"op":"subscribe","id":51,"topic":7}"#, 51, "invalid `subscribe` message"),
        (r#"{"op":"subscribe","id":52,"topic":"a","offset":-1}"#, 52, "invalid `subscribe` message"),
        (r#"{"op":"subscribe","id":53,"topic":"a","offset":"1"}"#, 53, "invalid `subscribe` message"),
        (r#"{"op":"publish","id":54,"topic":["a"],"data":1}"#, 54, "invalid `publish` message"),
        (r#"{"op":"add_streams","id":55,"streams":"x"}"#, 55, "invalid `add_streams` message"),
        (r#"{"op":"time_sync","id":56,"t1":"now"}"#, 56, "invalid `time_sync` message"),
    ];
    for (text, id, fragment) in cases {
        let m = invalid(&mut c, text, Some(id)).await;
        assert_contains(&m, fragment);
    }
    assert_eq!(hub.manager.connection_stats().subscriptions, 0);
    hub.shutdown().await;
}

#[tokio::test]
async fn missing_required_fields_are_invalid_argument_echoing_the_id() {
    let hub = spawn_hub(test_config()).await;
    let mut c = hub.connect("alice").await;
    let cases = [
        (r#"{"op":"subscribe","id":61}"#, 61, "missing field `topic`"),
        (r#"{"op":"unsubscribe","id":62}"#, 62, "missing field `topic`"),
        (r#"{"op":"publish","id":63,"data":1}"#, 63, "missing field `topic`"),
        (r#"{"op":"time_sync","id":64}"#, 64, "missing field `t1`"),
        (r#"{"op":"refresh","id":65}"#, 65, "missing field `token`"),
    ];
    for (text, id, fragment) in cases {
        let m = invalid(&mut c, text, Some(id)).await;
        assert_contains(&m, fragment);
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn a_publish_without_exactly_one_payload_or_with_bad_base64_is_invalid_argument() {
    let hub = spawn_hub(test_config()).await;
    let mut c = hub.connect("alice").await;
    let m = invalid(&mut c, r#"{"op":"publish","id":71,"topic":"a"}"#, Some(71)).await;
    assert_contains(&m, "exactly one of `data` and `data_b64`");
    let m = invalid(&mut c, r#"{"op":"publish","id":72,"topic":"a","data":1,"data_b64":"AA=="}"#, Some(72)).await;
    assert_contains(&m, "exactly one of `data` and `data_b64`");
    let m = invalid(&mut c, r#"{"op":"publish","id":73,"topic":"a","data_b64":"!!not base64"}"#, Some(73)).await;
    assert_contains(&m, "not valid base64");
    assert_eq!(hub.manager.connection_stats().messages_in, 0);
    hub.shutdown().await;
}

#[tokio::test]
async fn binary_garbage_is_invalid_argument_and_the_connection_stays() {
    let hub = spawn_hub(test_config()).await;
    let mut c = hub.connect("alice").await;
    let m = invalid_binary(&mut c, b"\xffgarbage").await;
    assert_contains(&m, "unknown binary frame kind 0xff");
    let m = invalid_binary(&mut c, b"\x01\x00\x00\x01\x00\x00\x00\x00a").await;
    assert_contains(&m, "unknown binary frame kind 0x01");
    let m = invalid_binary(&mut c, b"").await;
    assert_contains(&m, "truncated");
    // Truncated publish header: 3 of 8 bytes.
    let m = invalid_binary(&mut c, b"\x02\x00\x00").await;
    assert_contains(&m, "truncated: need 8 bytes, have 3");
    // Header declares a 16-byte topic, 2 bytes follow.
    let m = invalid_binary(&mut c, b"\x02\x00\x00\x10\x00\x00\x00\x07ab").await;
    assert_contains(&m, "truncated: need 24 bytes, have 10");
    let m = invalid_binary(&mut c, b"\x02\x00\x00\x02\x00\x00\x00\x07\xc3\x28payload").await;
    assert_contains(&m, "not valid UTF-8");
    assert_eq!(hub.manager.connection_stats().messages_in, 0);
    assert_eq!(c.publish_bin("still/works", b"ok").await, 1);
    hub.shutdown().await;
}

/// Invalid topic names with a fragment of the rule each breaks.
fn invalid_topics() -> Vec<(String, &'static str)> {
    vec![
        (String::new(), "must not be empty"),
        ("a//b".into(), "empty segment"),
        ("/a".into(), "empty segment"),
        ("a/".into(), "empty segment"),
        ("a b".into(), "contains ' '"),
        ("caf\u{e9}/x".into(), "contains '\u{e9}'"),
        ("a/#".into(), "contains '#'"),
        ("a".repeat(256), "256 bytes long; the limit is 255"),
        (vec!["s"; 17].join("/"), "17 segments; the limit is 16"),
        ("video/*".into(), "contains '*'"),
        ("telemetry/>".into(), "contains '>'"),
        (">".into(), "contains '>'"),
    ]
}

fn assert_invalid_topic(reply: &Value, id: u64, topic: &str, fragment: &str) {
    assert_eq!(reply["type"], "error", "for {topic:?}: {reply}");
    assert_eq!(reply["code"], "invalid_argument", "for {topic:?}: {reply}");
    assert_eq!(reply["id"], id, "for {topic:?}: {reply}");
    assert_eq!(reply["topic"], topic, "topic echoed: {reply}");
    let m = reply["message"].as_str().unwrap();
    assert!(m.starts_with("invalid topic"), "{m}");
    assert_contains(m, fragment);
}

#[tokio::test]
async fn subscribing_to_an_invalid_topic_is_invalid_argument_naming_the_rule() {
    let hub = spawn_hub(test_config()).await;
    let mut c = hub.connect("alice").await;
    for (i, (topic, fragment)) in invalid_topics().into_iter().enumerate() {
        let id = 100 + i as u64;
        c.send_json(json!({"op": "subscribe", "id": id, "topic": topic})).await;
        assert_invalid_topic(&c.reply(id).await, id, &topic, fragment);
    }
    c.assert_alive().await;
    assert_eq!(hub.manager.connection_stats().subscriptions, 0);
    // The longest and deepest valid names are accepted.
    c.subscribe(&"a".repeat(255)).await;
    c.subscribe(&vec!["s"; 16].join("/")).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn unsubscribing_from_an_invalid_topic_is_invalid_argument() {
    let hub = spawn_hub(test_config()).await;
    let mut c = hub.connect("alice").await;
    for (i, (topic, fragment)) in invalid_topics().into_iter().enumerate() {
        let id = 200 + i as u64;
        c.send_json(json!({"op": "unsubscribe", "id": id, "topic": topic})).await;
        assert_invalid_topic(&c.reply(id).await, id, &topic, fragment);
    }
    c.assert_alive().await;
    hub.shutdown().await;
}

#[tokio::test]
async fn a_json_publish_to_an_invalid_topic_is_invalid_argument_and_publishes_nothing() {
    let hub = spawn_hub(test_config()).await;
    let mut c = hub.connect("alice").await;
    for (i, (topic, fragment)) in invalid_topics().into_iter().enumerate() {
        let id = 300 + i as u64;
        c.send_json(json!({"op": "publish", "id": id, "topic": topic, "data": 1})).await;
        assert_invalid_topic(&c.reply(id).await, id, &topic, fragment);
    }
    c.assert_alive().await;
    let stats = hub.manager.connection_stats();
    assert_eq!((stats.messages_in, stats.topics), (0, 0));
    hub.shutdown().await;
}

#[tokio::test]
async fn a_binary_publish_to_an_invalid_topic_is_invalid_argument_echoing_the_request_id() {
    let hub = spawn_hub(test_config()).await;
    let mut c = hub.connect("alice").await;
    for (i, (topic, fragment)) in invalid_topics().into_iter().enumerate() {
        let id = 400 + i as u32;
        let frame = fanhub::protocol::frame::encode_publish(&topic, id, 0, b"x");
        c.send_raw(Message::binary(frame)).await;
        assert_invalid_topic(&c.reply(u64::from(id)).await, u64::from(id), &topic, fragment);
    }
    c.assert_alive().await;
    assert_eq!(hub.manager.connection_stats().messages_in, 0);
    hub.shutdown().await;
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_gets_an_error_then_close_1007() {
    let hub = spawn_hub(test_config()).await;
    let mut c = hub.connect("alice").await;
    let id = fanhub::hub::ConnId(c.welcome["conn_id"].as_u64().unwrap());
    // tungstenite's `Message::Text` cannot hold invalid UTF-8; a hand-built text frame can.
    let payload: &[u8] = b"{\"op\":\"ping\",\"id\":1,\"x\":\"\xff\xfe\"}";
    c.send_raw(Message::Frame(Frame::message(payload.to_vec(), OpCode::Data(Data::Text), true))).await;
    let closed = c.expect_close().await;
    assert_eq!(closed.code, Some(1007), "{closed:?}");
    let err = &closed.messages[0];
    assert_eq!(err["type"], "error", "{closed:?}");
    assert_eq!(err["code"], "invalid_argument", "{err}");
    assert_contains(err["message"].as_str().unwrap(), "not valid UTF-8");
    let bye = closed.messages.last().unwrap();
    assert_eq!(bye["type"], "bye", "{closed:?}");
    assert_eq!(bye["reason"], "invalid_utf8", "{bye}");
    assert_eq!(bye["code"], 1007, "{bye}");
    hub.eventually("connection unregistered", |m| m.client_info(id).is_none()).await;
    hub.shutdown().await;
}

/// Sends `msgs` as text frames back to back, flushing once, without reading anything.
async fn send_all(c: &mut Client, msgs: impl IntoIterator<Item = Value>) {
    for m in msgs {
        c.ws.feed(Message::text(m.to_string())).await.expect("feed");
    }
    c.ws.flush().await.expect("flush");
}

/// Reads the reply to pipelined request `i` of `n` straight from the socket (nothing else is
/// buffered in the client then), failing with how the connection ended if it did.
async fn flood_reply(c: &mut Client, i: u64, n: u64) -> Value {
    loop {
        let frame = tokio::time::timeout(TIMEOUT, c.ws.next()).await.expect("timed out waiting for a flood reply");
        match frame {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).expect("server sent invalid JSON"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => {
                panic!("the server ended the connection after answering {} of {n} pipelined requests: {other:?}", i - 1)
            }
        }
    }
}

#[tokio::test]
async fn a_subscribe_flood_over_the_subscription_limit_is_answered_request_by_request() {
    let mut config = test_config();
    config.limits.max_subscriptions_per_connection = 5;
    // Refusals beyond the limit count as violations; this test is about the answers, so
    // enforcement is out of reach here (tests/limits.rs covers it).
    config.limits.violations_to_monitor = 1_000_000;
    config.limits.violations_to_close = 1_000_000;
    let hub = spawn_hub(config).await;
    let mut bystander = hub.connect("bystander").await;
    bystander.subscribe("calm/t").await;
    let mut c = hub.connect("flooder").await;

    const N: u64 = 2000;
    send_all(&mut c, (1..=N).map(|i| json!({"op": "subscribe", "id": i, "topic": format!("flood/{i}")}))).await;
    for i in 1..=N {
        let r = flood_reply(&mut c, i, N).await;
        assert_eq!(r["id"], i, "replies come in request order: {r}");
        if i <= 5 {
            assert_eq!(r["type"], "subscribed", "{r}");
        } else {
            assert_eq!(r["type"], "error", "{r}");
            assert_eq!(r["code"], "resource_exhausted", "{r}");
            assert_eq!(r["limit"], "max_subscriptions_per_connection", "{r}");
            assert_eq!(r["topic"], format!("flood/{i}"), "{r}");
        }
    }
    c.assert_alive().await;
    assert_eq!(hub.manager.connection_stats().subscriptions, 6);

    // Both the flooder and the bystander still get data.
    let mut p = hub.connect("svc").await;
    p.publish_json("flood/3", json!("to flooder")).await;
    p.publish_json("calm/t", json!("to bystander")).await;
    assert_eq!(c.next_record().await.topic, "flood/3");
    assert_eq!(bystander.next_record().await.topic, "calm/t");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_flood_of_malformed_requests_is_answered_one_by_one_and_the_connection_survives() {
    // Default enforcement: malformed input is answered, not counted as a violation.
    let hub = spawn_hub(test_config()).await;
    let mut c = hub.connect("flooder").await;
    let id = fanhub::hub::ConnId(c.welcome["conn_id"].as_u64().unwrap());
    const N: u64 = 2000;
    send_all(&mut c, (1..=N).map(|i| json!({"op": "subscribe", "id": i, "topic": format!("bad topic {i}")}))).await;
    for i in 1..=N {
        let r = flood_reply(&mut c, i, N).await;
        assert_eq!(r["id"], i, "{r}");
        assert_eq!(r["code"], "invalid_argument", "{r}");
    }
    c.assert_alive().await;
    assert_eq!(hub.manager.client_info(id).unwrap().state, fanhub::hub::ConnState::Active);
    c.subscribe("good/topic").await;
    hub.shutdown().await;
}

#[tokio::test]
async fn a_subscriber_keeps_receiving_consecutive_offsets_after_a_publisher_sends_bad_input() {
    let hub = spawn_hub(test_config()).await;
    let mut sub = hub.connect("sub").await;
    sub.subscribe("feed/t").await;
    let mut p = hub.connect("pub").await;
    for i in 1..=3 {
        assert_eq!(p.publish_json("feed/t", json!(i)).await, i);
    }
    let before = sub.records(3).await;
    assert_eq!(before.iter().map(|r| r.offset).collect::<Vec<_>>(), [1, 2, 3]);

    // The publisher misbehaves in every recoverable way.
    invalid(&mut p, "{oops", None).await;
    invalid(&mut p, r#"{"op":"publish","id":9,"topic":"feed//t","data":4}"#, Some(9)).await;
    invalid(&mut p, r#"{"op":"publish","id":10,"topic":"feed/t"}"#, Some(10)).await;
    invalid_binary(&mut p, b"\x02\x00\x00\x09\x00\x00").await;

    for i in 4..=6 {
        assert_eq!(p.publish_json("feed/t", json!(i)).await, i);
    }
    let after = sub.records(3).await;
    assert_eq!(after.iter().map(|r| r.offset).collect::<Vec<_>>(), [4, 5, 6]);
    let payloads: Vec<Value> = after.iter().map(|r| serde_json::from_slice(&r.payload).unwrap()).collect();
    assert_eq!(payloads, [json!(4), json!(5), json!(6)]);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_subscriber_keeps_its_stream_after_sending_bad_input_itself() {
    let hub = spawn_hub(test_config()).await;
    let mut sub = hub.connect("sub").await;
    sub.subscribe("feed/t").await;
    let mut p = hub.connect("pub").await;
    p.publish_json("feed/t", json!(1)).await;
    assert_eq!(sub.next_record().await.offset, 1);
    invalid(&mut sub, r#"{"op":"nope","id":5}"#, Some(5)).await;
    invalid_binary(&mut sub, b"\x07").await;
    p.publish_json("feed/t", json!(2)).await;
    p.publish_json("feed/t", json!(3)).await;
    let recs = sub.records(2).await;
    assert_eq!(recs.iter().map(|r| r.offset).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(hub.manager.connection_stats().subscriptions, 1);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_binary_publish_flagged_json_whose_payload_is_not_json_is_refused_and_nothing_is_published() {
    let hub = spawn_hub(test_config()).await;
    let mut sub = hub.connect("watcher").await;
    sub.subscribe("json/flag").await;
    let mut c = hub.connect("alice").await;
    let flag = fanhub::protocol::frame::FLAG_JSON;
    for (i, payload) in [&b"{\"open\":"[..], b"not json", b"\xff\xfe", b""].into_iter().enumerate() {
        let id = 500 + i as u32;
        c.send_raw(Message::binary(fanhub::protocol::frame::encode_publish("json/flag", id, flag, payload))).await;
        let r = c.reply(u64::from(id)).await;
        assert_eq!((r["type"].as_str(), r["code"].as_str()), (Some("error"), Some("invalid_argument")), "{r}");
        assert_eq!(r["topic"], "json/flag", "{r}");
        assert!(r["message"].as_str().unwrap().contains("not JSON"), "{r}");
    }
    // Valid JSON with the flag, and anything without it, are published.
    let id = 600;
    c.send_raw(Message::binary(fanhub::protocol::frame::encode_publish("json/flag", id, flag, b" [1, 2] "))).await;
    assert_eq!(c.reply(u64::from(id)).await["type"], "published");
    c.publish_bin("json/flag", b"not json, not flagged").await;
    let got = sub.records(2).await;
    assert_eq!((got[0].offset, got[1].offset), (1, 2), "only the two accepted publishes: {got:?}");
    c.assert_alive().await;
    hub.shutdown().await;
}
