//! Each delivery policy over real sockets: best-effort drops show as gaps, reliable disconnects
//! the slow subscriber (who resumes from history without loss) or pushes back on the publisher,
//! rate-limited coalesces to the newest, and policy changes apply to live traffic.

use crate::common::*;
use fanhub::hub::{ConnId, DeliveryPolicy, DropStrategy, HistoryLimits, ReliableOverflow, TopicDecl, TopicName};
use serde_json::json;

const BIG: usize = 64 * 1024;

fn declare(config: &mut fanhub::config::Config, pattern: &str, policy: DeliveryPolicy) {
    config.topics.declare.push(TopicDecl {
        pattern: pattern.into(),
        policy: Some(policy),
        history: Some(HistoryLimits { max_messages: 10_000, max_age_ms: 600_000, max_bytes: 1 << 30 }),
        max_subscribers: None,
        publishers: None,
        description: None,
    });
}

fn t(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

/// Publishes `n` messages of `size` bytes from the server side (no publisher socket to slow it).
fn publish_many(hub: &Hub, topic: &str, n: usize, size: usize) -> usize {
    let mut disconnected = 0;
    for i in 0..n {
        let mut payload = vec![0u8; size];
        payload[..8].copy_from_slice(&(i as u64).to_be_bytes());
        disconnected += hub.manager.route_data(&t(topic), &payload, 0, hub.now()).unwrap().disconnected;
    }
    disconnected
}

fn conn_id(c: &Client) -> ConnId {
    ConnId(c.welcome["conn_id"].as_u64().unwrap())
}

fn dropped(hub: &Hub, c: &Client) -> u64 {
    hub.manager.client_info(conn_id(c)).map_or(0, |i| i.subscriptions.iter().map(|s| s.dropped).sum())
}

/// Reads records until the one with `last` offset arrives; returns all offsets seen.
async fn offsets_until(c: &mut Client, last: u64) -> Vec<u64> {
    let mut seen = Vec::new();
    loop {
        let r = c.next_record().await;
        seen.push(r.offset);
        if r.offset == last {
            return seen;
        }
    }
}

#[tokio::test]
async fn best_effort_drop_oldest_leaves_a_detectable_gap_and_keeps_the_newest() {
    let mut config = test_config();
    let policy =
        DeliveryPolicy::BestEffort { queue_messages: 8, queue_bytes: 1 << 30, overflow: DropStrategy::DropOldest };
    declare(&mut config, "be/>", policy);
    let hub = spawn_hub(config).await;
    let mut sub = hub.connect("viewer").await;
    sub.subscribe("be/x").await;
    // The subscriber does not read: kernel buffers fill, then the hub's queue, then drops.
    publish_many(&hub, "be/x", 800, BIG);
    // The burst is synchronous: every message is now queued, in flight or counted as dropped.
    let dropped_total = dropped(&hub, &sub);
    assert!(dropped_total > 0, "the burst overflowed the queue");
    let seen: Vec<u64> = sub.records(800 - dropped_total as usize).await.iter().map(|r| r.offset).collect();
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "offsets increase");
    assert_eq!(*seen.last().unwrap(), 800, "the newest survives drop_oldest");
    let missing = (1..=800u64).filter(|o| !seen.contains(o)).count();
    assert_eq!(missing as u64, dropped_total, "the client sees exactly the dropped offsets missing");
    sub.assert_alive().await;
    assert!(sub.buffered_records().is_empty(), "nothing beyond what was not dropped");
    assert_eq!(hub.manager.connection_stats().dropped["queue_full"], 800 - seen.len() as u64);
    hub.shutdown().await;
}

#[tokio::test]
async fn best_effort_drop_newest_keeps_the_oldest_and_drops_the_rest() {
    let mut config = test_config();
    let policy =
        DeliveryPolicy::BestEffort { queue_messages: 8, queue_bytes: 1 << 30, overflow: DropStrategy::DropNewest };
    declare(&mut config, "be/>", policy);
    let hub = spawn_hub(config).await;
    let mut sub = hub.connect("viewer").await;
    sub.subscribe("be/y").await;
    publish_many(&hub, "be/y", 800, BIG);
    let dropped_total = dropped(&hub, &sub);
    assert!(dropped_total > 0, "the burst overflowed the queue");
    let seen: Vec<u64> = sub.records(800 - dropped_total as usize).await.iter().map(|r| r.offset).collect();
    // The subscriber read nothing during the burst, so what was accepted is a prefix.
    assert_eq!(seen, (1..=seen.len() as u64).collect::<Vec<_>>(), "the oldest messages are kept, in order");
    assert!(seen.len() >= 8, "at least the queue bound was kept");
    hub.manager.route_data(&t("be/y"), b"marker", 0, now()).unwrap();
    assert_eq!(sub.next_record().await.offset, 801, "the stream continues after the drops");
    hub.shutdown().await;
}

#[tokio::test]
async fn reliable_disconnects_a_slow_subscriber_who_resumes_from_its_last_offset_without_loss() {
    let mut config = test_config();
    config.session.close_timeout_ms = 5000;
    let policy = DeliveryPolicy::Reliable {
        queue_messages: 8,
        queue_bytes: 1 << 30,
        overflow: ReliableOverflow::Disconnect,
        backpressure_timeout_ms: 0,
    };
    declare(&mut config, "rel/>", policy);
    let hub = spawn_hub(config).await;
    let mut sub = hub.connect("ledger").await;
    sub.subscribe("rel/x").await;
    let disconnected = publish_many(&hub, "rel/x", 800, BIG);
    assert_eq!(disconnected, 1, "the stuck subscriber is disconnected once");
    let (records, closed) = sub.read_until_close().await;
    assert_eq!(closed.code, Some(4004), "{closed:?}");
    assert!(closed.messages.iter().any(|m| m["type"] == "bye" && m["reason"] == "slow_consumer"), "{closed:?}");
    let got: Vec<u64> = records.iter().map(|r| r.offset).collect();
    let last = got.last().copied().unwrap_or(0);
    assert_eq!(got, (1..=last).collect::<Vec<_>>(), "reliable never skips");
    assert_eq!(hub.manager.connection_stats().slow_consumer_disconnects, 1);

    let mut again = hub.connect("ledger").await;
    let s = again.subscribe_from("rel/x", last + 1).await;
    assert_eq!(s["recovered"], true);
    let rest: Vec<u64> = again.records((800 - last) as usize).await.iter().map(|r| r.offset).collect();
    assert_eq!(rest, (last + 1..=800).collect::<Vec<_>>(), "every message exactly once across the two connections");
    again.assert_alive().await;
    assert!(again.buffered_records().is_empty(), "no duplicates after the end");
    hub.shutdown().await;
}

#[tokio::test]
async fn reliable_with_backpressure_delays_then_fails_the_publisher_and_loses_nothing() {
    let mut config = test_config();
    let policy = DeliveryPolicy::Reliable {
        queue_messages: 4,
        queue_bytes: 1 << 30,
        overflow: ReliableOverflow::ApplyBackpressure,
        backpressure_timeout_ms: 300,
    };
    declare(&mut config, "bp/>", policy);
    let hub = spawn_hub(config).await;
    let mut sub = hub.connect("slow").await;
    sub.subscribe("bp/x").await;
    let mut publisher = hub.connect("fast").await;
    let payload = vec![7u8; BIG];
    let mut published = 0u64;
    let error = loop {
        let r = publisher.request(json!({"op": "publish", "topic": "bp/x", "data_b64": base64_encode(&payload)})).await;
        if r["type"] == "published" {
            published = r["offset"].as_u64().unwrap();
            assert!(published < 5000, "backpressure never kicked in");
        } else {
            break r;
        }
    };
    assert_eq!(error["code"], "resource_exhausted", "{error}");
    assert_eq!(error["limit"], "backpressure_timeout_ms", "{error}");
    assert_eq!(
        hub.manager.client_info(conn_id(&sub)).unwrap().state,
        fanhub::hub::ConnState::Active,
        "not disconnected"
    );
    assert_eq!(hub.manager.topic_info(&t("bp/x")).unwrap().head, published + 1, "the failed publish took no offset");
    let got: Vec<u64> = sub.records(published as usize).await.iter().map(|r| r.offset).collect();
    assert_eq!(got, (1..=published).collect::<Vec<_>>());
    let r = publisher.request(json!({"op": "publish", "topic": "bp/x", "data": 1})).await;
    assert_eq!(r["type"], "published", "publishing works again once the subscriber reads: {r}");
    assert_eq!(sub.next_record().await.offset, published + 1);
    hub.shutdown().await;
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[tokio::test]
async fn rate_limited_delivers_at_most_the_rate_and_always_the_newest() {
    let mut config = test_config();
    let policy = DeliveryPolicy::RateLimited { per_second: 5, burst: 1, queue_messages: 64, queue_bytes: 1 << 30 };
    declare(&mut config, "rl/>", policy);
    let hub = spawn_hub_manual(config).await;
    let mut sub = hub.connect("viewer").await;
    sub.subscribe("rl/cam").await;
    let started = hub.now().mono;
    publish_many(&hub, "rl/cam", 100, 100);
    // One period of 5/s later the newest, held back by the rate, may go.
    hub.advance(std::time::Duration::from_millis(200));
    let seen = offsets_until(&mut sub, 100).await;
    let elapsed = (hub.now().mono - started).as_secs_f64();
    assert_eq!(seen[0], 1, "the first frame passes at once");
    assert_eq!(*seen.last().unwrap(), 100, "the newest frame always gets through");
    let allowed = (5.0 * elapsed).floor() as usize + 1 + 1;
    assert!(seen.len() <= allowed, "{} frames in {elapsed:.3}s exceed 5/s (+burst): {seen:?}", seen.len());
    assert_eq!(dropped(&hub, &sub), 100 - seen.len() as u64, "the rest were coalesced");
    assert_eq!(hub.manager.connection_stats().dropped["coalesced"], 100 - seen.len() as u64);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_policy_change_takes_effect_on_live_traffic() {
    let hub = spawn_hub_manual(test_config()).await;
    let mut sub = hub.connect("viewer").await;
    sub.subscribe("live/x").await;
    publish_many(&hub, "live/x", 3, 10);
    assert_eq!(offsets_until(&mut sub, 3).await, [1, 2, 3]);

    let limited = DeliveryPolicy::RateLimited { per_second: 1, burst: 1, queue_messages: 64, queue_bytes: 1 << 20 };
    hub.manager.set_delivery_policy(&t("live/x"), limited).unwrap();
    publish_many(&hub, "live/x", 50, 10);
    hub.advance(std::time::Duration::from_secs(1));
    let seen = offsets_until(&mut sub, 53).await;
    assert!(seen.len() <= 3, "rate limiting applies at once: {seen:?}");

    hub.manager.set_delivery_policy(&t("live/x"), DeliveryPolicy::default()).unwrap();
    publish_many(&hub, "live/x", 10, 10);
    assert_eq!(offsets_until(&mut sub, 63).await, (54..=63).collect::<Vec<_>>(), "back to every message");
    hub.shutdown().await;
}
