//! A topic is the same on every node of a cluster: one epoch from the first subscribe on (before
//! any publish), the epoch in every `published` answer, a delivery policy set on one node
//! applied by all (and by nodes that start later), and a node's shutdown answers every publish
//! it read before its `bye` — none published without an answer.

use std::time::Duration;

use crate::cluster::{node, wait_ready};
use crate::common::*;
use crate::shutdown::{answers_before_bye, check_prefix};
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_new_topic_has_one_epoch_on_every_node_before_its_first_publish() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis, "A").await, node(&redis, "B").await);
    let mut on_a = a.connect("sub-a").await;
    let mut on_b = b.connect("sub-b").await;
    let sa = on_a.subscribe("cl/fresh").await;
    let sb = on_b.subscribe("cl/fresh").await;
    let epoch = sa["epoch"].as_u64().unwrap();
    assert_eq!(sb["epoch"], epoch, "both nodes tell the same epoch: {sa} {sb}");
    assert_eq!((sa["head"].as_u64(), sb["head"].as_u64()), (Some(1), Some(1)));
    // A client moving from A to B before anything was published resumes without a false alarm.
    let mut moved = b.connect("moved").await;
    let r = moved.request(json!({"op": "subscribe", "topic": "cl/fresh", "offset": 1, "epoch": epoch})).await;
    assert_eq!((r["type"].as_str(), r["recovered"].as_bool()), (Some("subscribed"), Some(true)), "{r}");
    // The first publish keeps that epoch, and its answer says so (JSON and binary publishes).
    let mut publisher = a.connect("pub").await;
    let p = publisher.request(json!({"op": "publish", "topic": "cl/fresh", "data": 1})).await;
    assert_eq!((p["offset"].as_u64(), p["epoch"].as_u64()), (Some(1), Some(epoch)), "{p}");
    let frame = fanhub::protocol::frame::encode_publish("cl/fresh", 77, 0, b"two");
    publisher.send_raw(Message::binary(frame)).await;
    let p = publisher.reply(77).await;
    assert_eq!((p["offset"].as_u64(), p["epoch"].as_u64()), (Some(2), Some(epoch)), "{p}");
    for sub in [&mut on_a, &mut on_b, &mut moved] {
        let got = sub.records(2).await;
        assert!(got.iter().all(|r| r.epoch == epoch), "no epoch change at the first publish: {got:?}");
    }
    for hub in [a, b] {
        hub.shutdown().await;
    }
}

#[tokio::test]
async fn a_policy_set_on_one_node_applies_on_every_node_including_one_started_later() {
    let mut redis = RedisServer::start().await;
    let (a, b) = (node(&redis, "A").await, node(&redis, "B").await);
    let policy = json!({"kind": "rate_limited", "per_second": 2, "burst": 1, "queue_messages": 8, "queue_bytes": 4096});
    let path = "/v1/admin/topics/cl%2Fpolicy/policy";
    let r = admin(&a, "PUT", path, &policy.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(admin(&a, "GET", path, "").await.json(), policy, "applied on the node that was asked at once");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if admin(&b, "GET", path, "").await.json() == policy {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "node B never applied the policy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A node that joins afterwards starts with it (read from Redis before it is ready).
    let c = node(&redis, "C").await;
    assert_eq!(admin(&c, "GET", path, "").await.json(), policy);
    // And it governs traffic there: a subscriber on C gets the rate-limited topic's policy.
    let mut sub = c.connect("sub-c").await;
    sub.subscribe("cl/policy").await;
    let topic = fanhub::hub::TopicName::new("cl/policy").unwrap();
    let info = c.manager.topic_info(&topic).expect("the topic lives on C");
    assert_eq!(serde_json::to_value(&info.policy).unwrap(), policy);
    // A reset on C puts every node back on the configured policy (here the default).
    let default = admin(&c, "GET", "/v1/admin/topics/cl%2Fnever-set/policy", "").await.json();
    let r = admin(&c, "DELETE", path, "").await;
    assert_eq!((r.status, r.json()), (200, default.clone()), "{}", r.body);
    assert_eq!(serde_json::to_value(&c.manager.topic_info(&topic).unwrap().policy).unwrap(), default);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while admin(&a, "GET", path, "").await.json() != default {
        assert!(tokio::time::Instant::now() < deadline, "node A never reset the policy");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = admin(&a, "PUT", path, &policy.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Without Redis nothing changes anywhere: the operator is told to retry.
    redis.stop();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while http(a.addr, "GET", "/readyz", &[], "").await.status != 503 {
        assert!(tokio::time::Instant::now() < deadline, "A never noticed Redis was gone");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = admin(&a, "PUT", path, r#"{"kind":"best_effort"}"#).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.json()["code"], "unavailable");
    assert_eq!(admin(&a, "GET", path, "").await.json(), policy, "unchanged on the node asked");
    assert_eq!(admin(&a, "DELETE", path, "").await.status, 503);
    assert_eq!(admin(&a, "GET", path, "").await.json(), policy, "a reset needs Redis too");
    redis.restart().await;
    wait_ready(a.addr).await;
    for hub in [a, b, c] {
        hub.shutdown().await;
    }
}

#[tokio::test]
async fn a_node_shutting_down_answers_every_publish_it_read_before_its_bye() {
    let redis = RedisServer::start().await;
    let (mut a, b) = (node(&redis, "A").await, node(&redis, "B").await);
    let mut sub = b.connect("sub").await;
    sub.subscribe("rel/sd").await;
    let publisher = a.connect("pub").await;
    // Publishing goes on while the node shuts down.
    let messages = publish_through_shutdown(publisher, "rel/sd").shut_down_after(50, || a.begin_shutdown()).await;
    let (answers, after_bye) = answers_before_bye(&messages);
    assert!(after_bye.is_empty(), "answers after the bye: {after_bye:?}");
    let published = check_prefix(&answers);
    // What was answered `published` is exactly what the subscriber on the other node gets.
    let got = sub.records(published.len()).await;
    assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), published);
    let mut marker = b.connect("marker").await;
    let next = marker.publish_json("rel/sd", json!({"marker": true})).await;
    assert_eq!(sub.next_record().await.offset, next, "nothing unanswered was published");
    a.wait_stopped().await;
    b.shutdown().await;
}

/// A publisher that keeps publishing (JSON, ids from 1, one frame at a time) while the server
/// shuts down, and collects every control message it gets until the close.
struct PublishRun {
    sender: tokio::task::JoinHandle<()>,
    reader: tokio::task::JoinHandle<Vec<Value>>,
    answered: tokio::sync::watch::Receiver<u64>,
}

fn publish_through_shutdown(publisher: Client, topic: &str) -> PublishRun {
    use futures_util::StreamExt;
    let (mut sink, mut stream) = publisher.ws.split();
    let topic = topic.to_owned();
    let sender = tokio::spawn(async move {
        for id in 1..=1_000_000u64 {
            let msg = json!({"op": "publish", "id": id, "topic": topic, "data": {"i": id}});
            // No yield: frames pile up in the socket, so the shutdown finds some unread.
            if sink.send(Message::text(msg.to_string())).await.is_err() {
                return;
            }
        }
    });
    let (tx, answered) = tokio::sync::watch::channel(0u64);
    let reader = tokio::spawn(async move {
        let mut messages = Vec::new();
        while let Some(Ok(m)) = tokio::time::timeout(TIMEOUT, stream.next()).await.expect("the server never closed") {
            match m {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if let Some(id) = v["id"].as_u64() {
                        tx.send_modify(|n| *n = (*n).max(id));
                    }
                    messages.push(v);
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        messages
    });
    PublishRun { sender, reader, answered }
}

impl PublishRun {
    /// Starts the shutdown once `n` publishes were answered; returns the control messages.
    async fn shut_down_after(mut self, n: u64, shut_down: impl FnOnce()) -> Vec<Value> {
        tokio::time::timeout(TIMEOUT, self.answered.wait_for(|a| *a >= n)).await.expect("publishes answered").unwrap();
        shut_down();
        let messages = self.reader.await.unwrap();
        self.sender.abort();
        messages
    }
}
