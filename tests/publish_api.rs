//! `POST /v1/publish`: a backend publishes with an API key (or the admin token) and gets the
//! offset; subscribers receive JSON and binary payloads with the right flags; every bad input
//! gets its documented code, and nothing accepted before is lost.

mod common;

use common::*;
use serde_json::json;

async fn publish(hub: &Hub, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    http(hub.addr, "POST", "/v1/publish", headers, body).await
}

#[tokio::test]
async fn backends_publish_json_and_binary_and_bad_requests_get_their_codes() {
    let mut config = test_config();
    config.limits.max_message_size = 1024;
    let hub = spawn_hub(config).await;
    let mut sub = hub.connect("s").await;
    sub.subscribe("x/y").await;
    let key = [("X-Api-Key", API_KEY)];

    let r = publish(&hub, &key, &json!({"topic": "x/y", "data": {"a": [1, 2]}}).to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ack = r.json();
    assert_eq!(ack["offset"], 1);
    assert_eq!(ack["delivered"], 1);
    let rec = sub.next_record().await;
    assert_eq!((rec.offset, rec.flags & 1), (1, 1));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&rec.payload).unwrap(), json!({"a": [1, 2]}));

    let r = publish(&hub, &[ADMIN_AUTH], &json!({"topic": "x/y", "data_base64": "AAEC/w=="}).to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rec = sub.next_record().await;
    assert_eq!((rec.offset, rec.flags, rec.payload), (2, 0, vec![0, 1, 2, 255]));

    let big = json!({"topic": "x/y", "data": "z".repeat(2000)}).to_string();
    for (headers, body, status, code) in [
        (&[][..], r#"{"topic":"x/y","data":1}"#.to_owned(), 401, "unauthenticated"),
        (&[("X-Api-Key", "nope")][..], r#"{"topic":"x/y","data":1}"#.to_owned(), 401, "unauthenticated"),
        (&key[..], "{not json".to_owned(), 400, "invalid_argument"),
        (&key[..], r#"{"topic":"x/y"}"#.to_owned(), 400, "invalid_argument"),
        (&key[..], r#"{"topic":"x/y","data":1,"data_base64":"AA=="}"#.to_owned(), 400, "invalid_argument"),
        (&key[..], r#"{"topic":"x/y","data_base64":"!!"}"#.to_owned(), 400, "invalid_argument"),
        (&key[..], r#"{"topic":"a//b","data":1}"#.to_owned(), 400, "invalid_argument"),
        (&key[..], r#"{"topic":"x/y","data":1,"extra":true}"#.to_owned(), 400, "invalid_argument"),
        (&key[..], big, 429, "resource_exhausted"),
    ] {
        let r = publish(&hub, headers, &body).await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert_eq!(r.json()["code"], code, "{body}");
    }
    let r = publish(&hub, &key, r#"{"topic":"x/y","data":"after"}"#).await;
    assert_eq!(r.json()["offset"], 3, "rejected requests took no offset");
    let rec = sub.next_record().await;
    assert_eq!(rec.offset, 3);
    assert_eq!(rec.payload, b"\"after\"");
    let health = http(hub.addr, "GET", "/healthz", &[], "").await.json();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert!(health["node_id"].as_str().is_some_and(|n| !n.is_empty()) && health["uptime_secs"].is_u64());
    hub.shutdown().await;
}
