//! `POST /v1/publish` on the public listener: a backend publishes with an API key (or the admin
//! token) and gets the offset; a WebSocket subscriber receives JSON `data` as its JSON text with
//! the JSON flag and `data_base64` as raw bytes with flags 0; every bad input gets its status
//! and code, and neither takes an offset nor loses anything accepted before.

use crate::common::*;
use base64::Engine as _;
use fanhub::protocol::ErrorCode;
use serde_json::{json, Value};

const MAX_MESSAGE_SIZE: usize = 1024;
const KEY: (&str, &str) = ("X-Api-Key", API_KEY);

async fn publish(hub: &Hub, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    http(hub.addr, "POST", "/v1/publish", headers, body).await
}

/// A hub with `limits.max_message_size` = [`MAX_MESSAGE_SIZE`] and a subscriber on `x/y`.
async fn hub_with_subscriber() -> (Hub, Client) {
    let mut config = test_config();
    config.limits.max_message_size = MAX_MESSAGE_SIZE;
    let hub = spawn_hub(config).await;
    let mut sub = hub.connect("sub").await;
    sub.subscribe("x/y").await;
    (hub, sub)
}

/// Publishes `body` (which must be accepted) and returns the answer.
async fn accepted(hub: &Hub, headers: &[(&str, &str)], body: &str) -> Value {
    let r = publish(hub, headers, body).await;
    assert_eq!(r.status, 200, "{body}: {}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    r.json()
}

/// A request that must be refused with `status` and `code`.
struct Bad {
    what: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: String,
    status: u16,
    code: &'static str,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn a_publish_with_the_api_key_reaches_the_websocket_subscriber_at_the_answered_offset() {
    let (hub, mut sub) = hub_with_subscriber().await;
    let ack = accepted(&hub, &[KEY], r#"{"topic":"x/y","data":"hello"}"#).await;
    assert_eq!(ack["topic"], "x/y", "{ack}");
    assert_eq!(ack["offset"], 1, "{ack}");
    assert_eq!(ack["delivered"], 1, "{ack}");
    assert_eq!(ack["dropped"], 0, "{ack}");
    let rec = sub.next_record().await;
    assert_eq!(rec.topic, "x/y");
    assert_eq!(rec.offset, ack["offset"].as_u64().unwrap(), "the answered offset");
    assert_eq!(rec.epoch, ack["epoch"].as_u64().unwrap(), "the answered epoch");
    assert_eq!(rec.payload, b"\"hello\"");
    hub.shutdown().await;
}

#[tokio::test]
async fn a_publish_with_the_admin_token_as_bearer_reaches_the_subscriber() {
    let (hub, mut sub) = hub_with_subscriber().await;
    let ack = accepted(&hub, &[ADMIN_AUTH], r#"{"topic":"x/y","data":{"by":"admin"}}"#).await;
    let rec = sub.next_record().await;
    assert_eq!(rec.offset, ack["offset"].as_u64().unwrap());
    assert_eq!(rec.payload, br#"{"by":"admin"}"#);
    // The API key works as a bearer token too.
    let bearer = format!("Bearer {API_KEY}");
    let ack = accepted(&hub, &[("Authorization", &bearer)], r#"{"topic":"x/y","data":2}"#).await;
    let rec = sub.next_record().await;
    assert_eq!((rec.offset, rec.payload), (ack["offset"].as_u64().unwrap(), b"2".to_vec()));
    hub.shutdown().await;
}

#[tokio::test]
async fn json_data_arrives_with_the_json_flag_and_its_exact_json_text() {
    let (hub, mut sub) = hub_with_subscriber().await;
    // Compact, keys in order: the JSON text the subscriber must get byte for byte.
    let texts = [
        r#"{"a":[1,2,{"b":null}],"n":-1.5,"s":"é ✓ \"q\"","t":true}"#,
        r#"[]"#,
        r#""just a string""#,
        r#"0"#,
        r#"false"#,
        r#"null"#,
    ];
    for text in texts {
        let ack = accepted(&hub, &[KEY], &format!(r#"{{"topic":"x/y","data":{text}}}"#)).await;
        let rec = sub.next_record().await;
        assert_eq!(rec.offset, ack["offset"].as_u64().unwrap(), "{text}");
        assert_eq!(rec.flags & 1, 1, "{text}: the JSON flag (bit 0) is set");
        assert_eq!(String::from_utf8(rec.payload).unwrap(), text, "the exact JSON text");
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn data_base64_arrives_as_raw_bytes_with_flags_0() {
    let (hub, mut sub) = hub_with_subscriber().await;
    let all_bytes: Vec<u8> = (0..=255).collect();
    let exactly_max = vec![0xAB; MAX_MESSAGE_SIZE];
    for payload in [vec![0, 1, 2, 255], b"{\"looks\":\"like json\"}".to_vec(), all_bytes, exactly_max] {
        let ack = accepted(&hub, &[KEY], &json!({"topic": "x/y", "data_base64": b64(&payload)}).to_string()).await;
        let rec = sub.next_record().await;
        assert_eq!(rec.offset, ack["offset"].as_u64().unwrap());
        assert_eq!(rec.flags, 0, "binary payloads carry no flags");
        assert_eq!(rec.payload, payload);
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_their_status_and_code_and_nothing_accepted_is_lost() {
    let (hub, mut sub) = hub_with_subscriber().await;
    let first = accepted(&hub, &[KEY], r#"{"topic":"x/y","data":"first"}"#).await;
    let second = accepted(&hub, &[KEY], &json!({"topic": "x/y", "data_base64": b64(b"second")}).to_string()).await;
    assert_eq!((first["offset"].as_u64(), second["offset"].as_u64()), (Some(1), Some(2)));

    let bad = |what, headers: &[(&'static str, &'static str)], body: &str, status, code| Bad {
        what,
        headers: headers.to_vec(),
        body: body.to_owned(),
        status,
        code,
    };
    let good = r#"{"topic":"x/y","data":1}"#;
    let big_json = json!({"topic": "x/y", "data": "z".repeat(2 * MAX_MESSAGE_SIZE)}).to_string();
    let big_binary = json!({"topic": "x/y", "data_base64": b64(&vec![7; MAX_MESSAGE_SIZE + 1])}).to_string();
    let too_big = ErrorCode::ResourceExhausted.http_status();
    let cases = [
        bad("no key", &[], good, 401, "unauthenticated"),
        bad("unknown key", &[("X-Api-Key", "nope")], good, 401, "unauthenticated"),
        bad("unknown bearer", &[("Authorization", "Bearer nope")], good, 401, "unauthenticated"),
        bad("malformed JSON", &[KEY], "{not json", 400, "invalid_argument"),
        bad("not an object", &[KEY], "[1]", 400, "invalid_argument"),
        bad("neither data", &[KEY], r#"{"topic":"x/y"}"#, 400, "invalid_argument"),
        bad("both data", &[KEY], r#"{"topic":"x/y","data":1,"data_base64":"AA=="}"#, 400, "invalid_argument"),
        bad("invalid base64", &[KEY], r#"{"topic":"x/y","data_base64":"!!"}"#, 400, "invalid_argument"),
        bad("invalid topic", &[KEY], r#"{"topic":"a//b","data":1}"#, 400, "invalid_argument"),
        bad("unknown field", &[KEY], r#"{"topic":"x/y","data":1,"extra":true}"#, 400, "invalid_argument"),
        bad("JSON over max_message_size", &[KEY], &big_json, too_big, "resource_exhausted"),
        bad("binary 1 byte over max_message_size", &[KEY], &big_binary, too_big, "resource_exhausted"),
    ];
    for Bad { what, headers, body, status, code } in &cases {
        let r = publish(&hub, headers, body).await;
        assert_eq!(r.status, *status, "{what}: {}", r.body);
        let v = r.json();
        assert_eq!(v["code"], *code, "{what}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: a message explains it: {v}");
    }

    let after = accepted(&hub, &[KEY], r#"{"topic":"x/y","data":"after"}"#).await;
    assert_eq!(after["offset"], 3, "no rejected request took an offset");
    let recs = sub.records(3).await;
    let got: Vec<(u64, &[u8])> = recs.iter().map(|r| (r.offset, r.payload.as_slice())).collect();
    assert_eq!(got, [(1, &b"\"first\""[..]), (2, &b"second"[..]), (3, &b"\"after\""[..])], "all accepted, in order");
    sub.assert_alive().await;
    assert!(sub.buffered_records().is_empty(), "no rejected request was delivered");
    hub.shutdown().await;
}
