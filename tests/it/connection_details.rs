//! Connection details: a connect names a data source, session and streams with
//! offsets; the hub subscribes them (plus the main stream unless excluded); streams can be added
//! and removed later; `get_connection` reports them; `bye` answers success.

use crate::common::*;
use fanhub::hub::TopicName;
use serde_json::{json, Value};

fn t(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

#[tokio::test]
async fn connect_details_subscribe_each_stream_from_its_offset_plus_the_main_stream() {
    let hub = spawn_hub(test_config()).await;
    for i in 0..5u8 {
        hub.manager.route_data(&t("vehicle/race-1/engine"), &[i], 0, now()).unwrap();
    }
    let token = hub.token("telemetry");
    let details = json!({"data_source": "vehicle", "session_key": "race-1", "streams": ["engine", "brakes"],
                         "stream_offsets": [3, 0], "exclude_main_stream": false});
    let mut c = hub.connect_with(json!({"op": "connect", "token": token, "details": details})).await;
    let topics: Vec<&str> =
        c.welcome["subscriptions"].as_array().unwrap().iter().map(|s| s["topic"].as_str().unwrap()).collect();
    assert_eq!(topics, ["vehicle/race-1", "vehicle/race-1/engine", "vehicle/race-1/brakes"]);
    assert_eq!(c.welcome["subscriptions"][1]["replayed"], 3);
    let replay = c.records(3).await;
    assert!(replay.iter().all(|r| r.topic == "vehicle/race-1/engine"));
    assert_eq!(replay.iter().map(|r| r.offset).collect::<Vec<_>>(), [3, 4, 5]);

    hub.manager.route_data(&t("vehicle/race-1"), b"main", 0, now()).unwrap();
    hub.manager.route_data(&t("vehicle/race-1/brakes"), b"brakes", 0, now()).unwrap();
    let live = c.records(2).await;
    assert_eq!((live[0].topic.as_str(), live[1].topic.as_str()), ("vehicle/race-1", "vehicle/race-1/brakes"));

    let info = c.request(json!({"op": "get_connection"})).await;
    assert_eq!(info["type"], "connection");
    assert_eq!(info["details"], details);
    assert_eq!(info["subject"], "telemetry");
    hub.shutdown().await;
}

#[tokio::test]
async fn exclude_main_stream_leaves_the_main_stream_out() {
    let hub = spawn_hub(test_config()).await;
    let token = hub.token("t");
    let c = hub
        .connect_with(json!({"op": "connect", "token": token,
            "details": {"data_source": "d", "session_key": "s", "streams": ["x"], "exclude_main_stream": true}}))
        .await;
    let subs = c.welcome["subscriptions"].as_array().unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0]["topic"], "d/s/x");
    hub.shutdown().await;
}

#[tokio::test]
async fn mismatched_streams_and_offsets_are_invalid_and_a_corrected_connect_succeeds() {
    let hub = spawn_hub(test_config()).await;
    let token = hub.token("t");
    let mut c = hub.open().await;
    let r = c
        .request(json!({"op": "connect", "token": token,
            "details": {"data_source": "d", "session_key": "s", "streams": ["a", "b"], "stream_offsets": [1]}}))
        .await;
    assert_eq!(r["type"], "error");
    assert_eq!(r["code"], "invalid_argument", "{r}");
    assert!(r["message"].as_str().unwrap().contains("stream_offsets"), "{r}");
    assert_eq!(hub.manager.connection_stats().active_connections, 0, "nothing registered");
    let w = c
        .request(json!({"op": "connect", "token": token,
            "details": {"data_source": "d", "session_key": "s", "streams": ["a", "b"], "stream_offsets": [0, 0]}}))
        .await;
    assert_eq!(w["type"], "welcome", "{w}");
    assert_eq!(w["subscriptions"].as_array().unwrap().len(), 3);
    hub.shutdown().await;
}

#[tokio::test]
async fn streams_can_be_added_and_removed_later() {
    let hub = spawn_hub(test_config()).await;
    let token = hub.token("t");
    let mut c = hub
        .connect_with(json!({"op": "connect", "token": token,
            "details": {"data_source": "d", "session_key": "s", "streams": ["a"]}}))
        .await;
    let r = c.request(json!({"op": "add_streams", "streams": ["b", "c"], "stream_offsets": [0, 0]})).await;
    assert_eq!(r["type"], "streams_added", "{r}");
    assert_eq!(r["subscriptions"].as_array().unwrap().len(), 2);
    let r = c.request(json!({"op": "add_streams", "streams": ["e"], "stream_offsets": [0, 0]})).await;
    assert_eq!(r["code"], "invalid_argument", "mismatched lengths: {r}");
    let r = c.request(json!({"op": "remove_streams", "streams": ["a"]})).await;
    assert_eq!(r["type"], "streams_removed", "{r}");
    assert_eq!(r["topics"], json!(["d/s/a"]));
    let r = c.request(json!({"op": "remove_streams", "streams": ["zz"]})).await;
    assert_eq!(r["code"], "failed_precondition", "{r}");
    let info = c.request(json!({"op": "get_connection"})).await;
    assert_eq!(info["details"]["streams"], json!(["b", "c"]));
    assert_eq!(info["topics"], json!(["d/s", "d/s/b", "d/s/c"]));
    hub.manager.route_data(&t("d/s/a"), b"gone", 0, now()).unwrap();
    hub.manager.route_data(&t("d/s/c"), b"here", 0, now()).unwrap();
    assert_eq!(c.next_record().await.topic, "d/s/c", "removed streams deliver nothing");
    hub.shutdown().await;
}

#[tokio::test]
async fn add_streams_without_details_is_a_failed_precondition() {
    let hub = spawn_hub(test_config()).await;
    let mut c = hub.connect("plain").await;
    let r = c.request(json!({"op": "add_streams", "streams": ["x"]})).await;
    assert_eq!(r["code"], "failed_precondition", "{r}");
    c.assert_alive().await;
    hub.shutdown().await;
}

#[tokio::test]
async fn bye_answers_success_and_closes_normally() {
    let hub = spawn_hub(test_config()).await;
    let mut c = hub.connect("u").await;
    let r = c.request(json!({"op": "bye", "reason": "done"})).await;
    assert_eq!(r["type"], "closed");
    assert_eq!(r["success"], true);
    assert_eq!(c.expect_close().await.code, Some(1000));
    hub.eventually("unregistered", |m| m.connection_stats().active_connections == 0).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn stream_epochs_make_stream_offsets_resume_safely_across_an_epoch_change() {
    let hub = spawn_hub(test_config()).await;
    for i in 0..4u8 {
        hub.manager.route_data(&t("car/lap/engine"), &[i], 0, now()).unwrap();
    }
    let epoch = hub.manager.topic_info(&t("car/lap/engine")).unwrap().epoch;
    let connect = |epochs: Value| {
        json!({"op": "connect", "token": hub.token("t"), "details": {"data_source": "car", "session_key": "lap",
            "streams": ["engine"], "stream_offsets": [3], "stream_epochs": epochs, "exclude_main_stream": true}})
    };
    // The epoch it had: a plain resume from offset 3.
    let same = hub.connect_with(connect(json!([epoch]))).await;
    let s = &same.welcome["subscriptions"][0];
    assert_eq!(
        (s["offset"].as_u64(), s["replayed"].as_u64(), s["recovered"].as_bool()),
        (Some(3), Some(2), Some(true))
    );
    // Another epoch: its offset means nothing here; everything retained comes, flagged lost.
    let other = hub.connect_with(connect(json!([epoch + 1]))).await;
    let s = &other.welcome["subscriptions"][0];
    assert_eq!(
        (s["offset"].as_u64(), s["replayed"].as_u64(), s["recovered"].as_bool()),
        (Some(1), Some(4), Some(false))
    );
    // 0 means unknown: the current epoch is assumed.
    let unknown = hub.connect_with(connect(json!([0]))).await;
    assert_eq!(unknown.welcome["subscriptions"][0]["recovered"], true);
    // The same on add_streams, and a length mismatch is refused naming the field.
    let mut c = hub
        .connect_with(json!({"op": "connect", "token": hub.token("t"),
        "details": {"data_source": "car", "session_key": "lap", "exclude_main_stream": true}}))
        .await;
    let r = c
        .request(json!({"op": "add_streams", "streams": ["engine"], "stream_offsets": [2], "stream_epochs": [1, 2]}))
        .await;
    assert_eq!(r["code"], "invalid_argument", "{r}");
    assert!(r["message"].as_str().unwrap().contains("stream_epochs"), "{r}");
    let r = c
        .request(
            json!({"op": "add_streams", "streams": ["engine"], "stream_offsets": [2], "stream_epochs": [epoch + 7]}),
        )
        .await;
    assert_eq!(
        (r["subscriptions"][0]["recovered"].as_bool(), r["subscriptions"][0]["offset"].as_u64()),
        (Some(false), Some(1)),
        "{r}"
    );
    let d = c.request(json!({"op": "get_connection"})).await;
    assert_eq!(d["details"]["stream_epochs"], json!([epoch + 7]), "{d}");
    hub.shutdown().await;
}
