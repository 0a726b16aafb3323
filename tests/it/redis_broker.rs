//! The Redis side of cluster mode against a real `redis-server`: offsets assigned atomically
//! and seen identically by every node, bounded history readable from any offset, one
//! subscriber connection per node that restores its channels after a Redis restart (with a
//! new epoch when Redis lost the data), one epoch per topic from the first look at it (before
//! any publish), run-time policies stored and announced to every node, and the node registry.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use fanhub::broker::{NodeInfo, PolicyChange, Push, RedisBroker, RedisHistory, RemoteMessage};
use fanhub::hub::DeliveryPolicy;
use fanhub::hub::TopicName;

const HIST: RedisHistory = RedisHistory { max_messages: 5, ttl_secs: 60 };

type Inbox = Arc<Mutex<Vec<RemoteMessage>>>;
type Policies = Arc<Mutex<Vec<PolicyChange>>>;

async fn node(redis: &RedisServer) -> (RedisBroker, Inbox) {
    let (b, inbox, _) = node_with_policies(redis).await;
    (b, inbox)
}

async fn node_with_policies(redis: &RedisServer) -> (RedisBroker, Inbox, Policies) {
    let inbox: Inbox = Arc::default();
    let policies: Policies = Arc::default();
    let (sink, policy_sink) = (inbox.clone(), policies.clone());
    let b = RedisBroker::connect(&redis.url(), "fh", move |p| match p {
        Push::Message(m) => sink.lock().unwrap().push(m),
        Push::Policy(c) => policy_sink.lock().unwrap().push(c),
    })
    .await
    .expect("connect");
    (b, inbox, policies)
}

async fn wait_for(inbox: &Inbox, n: usize) -> Vec<RemoteMessage> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let got = inbox.lock().unwrap().clone();
        if got.len() >= n {
            return got;
        }
        assert!(tokio::time::Instant::now() < deadline, "got {} of {n} messages", got.len());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn every_node_sees_the_same_offsets_in_order_and_history_is_bounded() {
    let redis = RedisServer::start().await;
    let (a, _) = node(&redis).await;
    let (b, inbox_b) = node(&redis).await;
    let (c, inbox_c) = node(&redis).await;
    let t = TopicName::new("video/cam1").unwrap();
    b.subscribe(&t).await.unwrap();
    c.subscribe(&t).await.unwrap();
    let mut epoch = None;
    for i in 0..8u8 {
        let publisher = if i % 2 == 0 { &a } else { &b };
        let got = publisher.publish(&t, i & 1, 1000 + u64::from(i), &[i; 3], HIST).await.unwrap();
        assert_eq!(got.offset, u64::from(i) + 1);
        assert_eq!(*epoch.get_or_insert(got.epoch), got.epoch, "one epoch");
    }
    for inbox in [&inbox_b, &inbox_c] {
        let got = wait_for(inbox, 8).await;
        let offsets: Vec<u64> = got.iter().map(|m| m.offset).collect();
        assert_eq!(offsets, (1..=8).collect::<Vec<_>>());
        assert_eq!((got[3].flags, got[3].timestamp_us, &got[3].payload[..]), (1, 1003, &[3u8; 3][..]));
        assert!(got.iter().all(|m| Some(m.epoch) == epoch && m.topic == t));
    }
    let hist = a.history(&t, 1).await.unwrap();
    assert_eq!(hist.iter().map(|m| m.offset).collect::<Vec<_>>(), vec![4, 5, 6, 7, 8], "newest 5 kept");
    assert_eq!(hist, wait_for(&inbox_b, 8).await[3..], "history and live agree byte for byte");
    assert_eq!(c.history(&t, 7).await.unwrap().len(), 2);
    assert_eq!(a.head(&t, 60).await.unwrap(), (9, epoch.unwrap()));
    // A node that has no subscriber does not receive the topic.
    b.unsubscribe(&t).await.unwrap();
    a.publish(&t, 0, 1, b"x", HIST).await.unwrap();
    wait_for(&inbox_c, 9).await;
    assert_eq!(inbox_b.lock().unwrap().len(), 8);
}

#[tokio::test]
async fn channels_come_back_after_a_redis_restart_with_a_new_epoch() {
    let mut redis = RedisServer::start().await;
    let (a, _) = node(&redis).await;
    let (b, inbox) = node(&redis).await;
    let t = TopicName::new("orders/1").unwrap();
    b.subscribe(&t).await.unwrap();
    let first = a.publish(&t, 0, 1, b"before", HIST).await.unwrap();
    wait_for(&inbox, 1).await;

    redis.stop();
    assert!(a.publish(&t, 0, 2, b"lost", HIST).await.is_err(), "publishing without Redis fails, never hangs");
    assert!(!a.ping().await);
    redis.restart().await;

    // The subscriber connection reconnects and resubscribes on its own.
    let deadline = tokio::time::Instant::now() + TIMEOUT * 2;
    let after = loop {
        if let Ok(p) = a.publish(&t, 0, 3, b"after", HIST).await {
            if inbox.lock().unwrap().iter().any(|m| m.payload == "after") {
                break p;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "channel not restored: {:?}", inbox.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(after.epoch, first.epoch, "Redis lost the history: a new epoch tells clients");
    assert!(a.ping().await);
}

#[tokio::test]
async fn the_node_registry_lists_live_nodes_and_forgets_dead_ones() {
    let redis = RedisServer::start().await;
    let (a, _) = node(&redis).await;
    let info = |id: &str| NodeInfo {
        node_id: id.into(),
        ws_url: format!("ws://127.0.0.1:1/{id}"),
        connections: 3,
        publish_rate: 0,
        heartbeat_ms: 1,
    };
    a.heartbeat(&info("n1"), Duration::from_secs(30)).await.unwrap();
    a.heartbeat(&info("n2"), Duration::from_secs(1)).await.unwrap();
    let nodes = a.nodes().await.unwrap();
    assert_eq!(nodes, vec![info("n1"), info("n2")]);
    a.deregister("n1").await.unwrap();
    // n2 stops heartbeating: its entry expires.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !a.nodes().await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "expired node still listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_new_topic_gets_one_epoch_at_its_first_head_read_and_its_first_publish_keeps_it() {
    let redis = RedisServer::start().await;
    let (a, _) = node(&redis).await;
    let (b, _) = node(&redis).await;
    let t = TopicName::new("fresh/1").unwrap();
    // Two nodes join the topic before anyone publishes: both are told the same epoch.
    let (head_a, epoch_a) = a.head(&t, 60).await.unwrap();
    let (head_b, epoch_b) = b.head(&t, 60).await.unwrap();
    assert_eq!((head_a, head_b), (1, 1));
    assert_eq!(epoch_a, epoch_b, "one epoch on every node before the first publish");
    assert!(epoch_a > 0 && epoch_a < 1 << 53);
    let first = b.publish(&t, 0, 1, b"one", HIST).await.unwrap();
    assert_eq!((first.offset, first.epoch), (1, epoch_a), "the first publish keeps the epoch");
    assert_eq!(a.head(&t, 60).await.unwrap(), (2, epoch_a));
}

#[tokio::test]
async fn a_policy_set_on_one_node_is_stored_and_announced_to_every_node() {
    let redis = RedisServer::start().await;
    let (a, _, _) = node_with_policies(&redis).await;
    let (_b, _, seen_b) = node_with_policies(&redis).await;
    let change = PolicyChange {
        topic: TopicName::new("p/1").unwrap(),
        policy: Some(DeliveryPolicy::RateLimited { per_second: 2, burst: 1, queue_messages: 8, queue_bytes: 4096 }),
    };
    a.set_policy(&change).await.unwrap();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while seen_b.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the change never reached the other node");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(seen_b.lock().unwrap()[0], change);
    // A node that connects later reads it from the store.
    let (c, _) = node(&redis).await;
    assert_eq!(c.policies().await.unwrap(), vec![change.clone()]);
    // A reset is announced too, and leaves nothing stored.
    let reset = PolicyChange { policy: None, ..change };
    a.set_policy(&reset).await.unwrap();
    while seen_b.lock().unwrap().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the reset never reached the other node");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(seen_b.lock().unwrap()[1], reset);
    assert!(c.policies().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_source_position_is_published_once_past_its_ledger_and_a_lease_has_one_holder() {
    let redis = RedisServer::start().await;
    let (a, _) = node(&redis).await;
    let (b, _) = node(&redis).await;
    let t = TopicName::new("orders").unwrap();
    let at = |major, minor| fanhub::broker::SourcePosition {
        ledger: "fleet".into(),
        partition: "orders".into(),
        major,
        minor,
    };
    async fn publish(node: &RedisBroker, p: fanhub::broker::SourcePosition) -> u64 {
        let t = TopicName::new("orders").unwrap();
        node.publish_many(&[(&t, 0, 1, b"x", HIST, Some(&p))]).await.unwrap()[0].offset
    }
    assert_eq!(publish(&a, at(10, 2)).await, 1);
    assert_eq!(publish(&b, at(10, 2)).await, 0, "the same position from another node");
    assert_eq!(publish(&b, at(9, 99)).await, 0, "an older one");
    assert_eq!(publish(&b, at(10, 3)).await, 2, "the next one");
    assert_eq!(publish(&a, at(11, 0)).await, 3);
    let other = fanhub::broker::SourcePosition { partition: "other".into(), ..at(1, 0) };
    assert_eq!(publish(&a, other).await, 4, "partitions are independent");
    assert_eq!(a.publish(&t, 0, 1, b"plain", HIST).await.unwrap().offset, 5, "no position: no ledger");

    let ttl = Duration::from_secs(30);
    assert_eq!(a.lease("l", "node-a", ttl).await.unwrap(), "node-a");
    assert_eq!(b.lease("l", "node-b", ttl).await.unwrap(), "node-a", "held by a");
    assert_eq!(a.lease("l", "node-a", ttl).await.unwrap(), "node-a", "renewed");
    b.release("l", "node-b").await.unwrap();
    assert_eq!(b.lease("l", "node-b", ttl).await.unwrap(), "node-a", "only the holder releases");
    a.release("l", "node-a").await.unwrap();
    assert_eq!(b.lease("l", "node-b", ttl).await.unwrap(), "node-b");
}
