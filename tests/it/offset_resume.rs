//! Subscribe from an offset: replay from history, then live, with no gap and no duplicate — also
//! while other clients publish concurrently — and clear answers when the offset cannot be
//! served.

use crate::common::*;
use fanhub::hub::{DeliveryPolicy, DropStrategy, HistoryLimits, TopicDecl, TopicName};

fn roomy(config: &mut fanhub::config::Config, pattern: &str, history: usize) {
    config.topics.declare.push(TopicDecl {
        pattern: pattern.into(),
        policy: Some(DeliveryPolicy::BestEffort {
            queue_messages: 100_000,
            queue_bytes: 1 << 30,
            overflow: DropStrategy::DropNewest,
        }),
        history: Some(HistoryLimits { max_messages: history, max_age_ms: 600_000, max_bytes: 1 << 30 }),
        max_subscribers: None,
        publishers: None,
        description: None,
    });
}

fn t(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_joining_at_offsets_while_two_publishers_race_see_no_gap_and_no_duplicate() {
    const PER_PUBLISHER: u64 = 1000;
    let mut config = test_config();
    roomy(&mut config, "race/>", 100_000);
    let hub = spawn_hub(config).await;
    let mut publishers = Vec::new();
    for p in 0..2 {
        let mut c = hub.connect(&format!("pub-{p}")).await;
        publishers.push(tokio::spawn(async move {
            for i in 0..PER_PUBLISHER {
                c.publish_bin_noack("race/x", format!("{p}:{i}").as_bytes()).await;
            }
            // Frames are handled in order: once the pong is back, every publish was.
            c.assert_alive().await;
        }));
    }
    let total = 2 * PER_PUBLISHER;
    let mut subscribers = Vec::new();
    for i in 0..6u64 {
        let mut c = hub.connect(&format!("sub-{i}")).await;
        let head = hub.manager.topic_info(&t("race/x")).map_or(1, |t| t.head);
        // Start somewhere in what was already published (0 = from the beginning), or at the head.
        let start = if i == 0 { 0 } else { (head * i / 6).max(1) };
        let s = c.subscribe_from("race/x", start).await;
        assert_eq!(s["recovered"], true, "{s}");
        let first = s["offset"].as_u64().unwrap();
        subscribers.push(tokio::spawn(async move {
            let got: Vec<u64> = c.records((total - first + 1) as usize).await.iter().map(|r| r.offset).collect();
            assert_eq!(got, (first..=total).collect::<Vec<_>>(), "subscriber {i} from {first}");
            c.assert_alive().await;
            assert!(c.buffered_records().is_empty(), "subscriber {i} got duplicates");
        }));
        tokio::task::yield_now().await;
    }
    for p in publishers {
        p.await.expect("publisher");
    }
    assert_eq!(hub.manager.topic_info(&t("race/x")).unwrap().head, total + 1);
    for s in subscribers {
        s.await.expect("subscriber saw a gap or duplicate");
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn a_subscriber_that_reconnects_with_its_last_offset_misses_nothing() {
    let mut config = test_config();
    roomy(&mut config, "resume/>", 10_000);
    let hub = spawn_hub(config).await;
    let mut c = hub.connect("reader").await;
    c.subscribe("resume/x").await;
    for i in 0..100u32 {
        hub.manager.route_data(&t("resume/x"), &i.to_be_bytes(), 0, now()).unwrap();
    }
    let first: Vec<u64> = c.records(50).await.iter().map(|r| r.offset).collect();
    assert_eq!(first, (1..=50).collect::<Vec<_>>());
    drop(c);
    for i in 100..200u32 {
        hub.manager.route_data(&t("resume/x"), &i.to_be_bytes(), 0, now()).unwrap();
    }
    let mut again = hub.connect("reader").await;
    let s = again.subscribe_from("resume/x", 51).await;
    assert_eq!(
        (s["offset"].as_u64(), s["replayed"].as_u64(), s["recovered"].as_bool()),
        (Some(51), Some(150), Some(true))
    );
    let rest = again.records(150).await;
    assert_eq!(rest.iter().map(|r| r.offset).collect::<Vec<_>>(), (51..=200).collect::<Vec<_>>());
    assert_eq!(rest[0].payload, 50u32.to_be_bytes(), "payloads come back intact");
    hub.manager.route_data(&t("resume/x"), b"live", 0, now()).unwrap();
    assert_eq!(again.next_record().await.offset, 201, "replay hands over to live");
    hub.shutdown().await;
}

#[tokio::test]
async fn an_offset_older_than_the_history_is_not_recovered_and_replays_what_is_left() {
    let mut config = test_config();
    roomy(&mut config, "short/>", 10);
    let hub = spawn_hub(config).await;
    for _ in 0..50 {
        hub.manager.route_data(&t("short/x"), b"x", 0, now()).unwrap();
    }
    let mut c = hub.connect("late").await;
    let s = c.subscribe_from("short/x", 5).await;
    assert_eq!(s["recovered"], false, "{s}");
    assert_eq!(s["offset"], 41, "replay starts at the oldest retained offset: {s}");
    let got: Vec<u64> = c.records(10).await.iter().map(|r| r.offset).collect();
    assert_eq!(got, (41..=50).collect::<Vec<_>>());
    hub.shutdown().await;
}

#[tokio::test]
async fn an_offset_beyond_the_head_is_an_invalid_argument() {
    let hub = spawn_hub(test_config()).await;
    hub.manager.route_data(&t("h/x"), b"x", 0, now()).unwrap();
    let mut c = hub.connect("u").await;
    let r = c.request(serde_json::json!({"op": "subscribe", "topic": "h/x", "offset": 10})).await;
    assert_eq!(r["type"], "error");
    assert_eq!(r["code"], "invalid_argument", "{r}");
    assert!(r["message"].as_str().unwrap().contains("beyond the head"), "{r}");
    c.assert_alive().await;
    hub.shutdown().await;
}

#[tokio::test]
async fn an_offset_from_another_epoch_is_not_recovered_and_replays_the_current_epoch() {
    let hub = spawn_hub(test_config()).await;
    for _ in 0..3 {
        hub.manager.route_data(&t("e/x"), b"x", 0, now()).unwrap();
    }
    let epoch = hub.manager.topic_info(&t("e/x")).unwrap().epoch;
    let mut c = hub.connect("u").await;
    let r = c.request(serde_json::json!({"op": "subscribe", "topic": "e/x", "offset": 2, "epoch": epoch + 1})).await;
    assert_eq!(r["type"], "subscribed", "{r}");
    assert_eq!(r["recovered"], false);
    assert_eq!(r["epoch"], epoch);
    let got: Vec<u64> = c.records(3).await.iter().map(|r| r.offset).collect();
    assert_eq!(got, [1, 2, 3]);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_resume_at_head_is_valid_and_an_epoch_without_offset_is_ignored() {
    let hub = spawn_hub(test_config()).await;
    let mut publisher = hub.connect("pub").await;
    for i in 0..3 {
        publisher.publish_json("edge/t", serde_json::json!(i)).await;
    }
    let mut c = hub.connect("sub").await;
    let live = c.subscribe("edge/t").await;
    let epoch = live["epoch"].as_u64().unwrap();
    c.request(serde_json::json!({"op": "unsubscribe", "topic": "edge/t"})).await;
    // Everything seen: resuming at head replays nothing and loses nothing.
    let r = c.request(serde_json::json!({"op": "subscribe", "topic": "edge/t", "offset": 4, "epoch": epoch})).await;
    assert_eq!(
        (r["offset"].as_u64(), r["replayed"].as_u64(), r["recovered"].as_bool()),
        (Some(4), Some(0), Some(true)),
        "{r}"
    );
    c.request(serde_json::json!({"op": "unsubscribe", "topic": "edge/t"})).await;
    // An epoch alone (even a wrong one) means nothing without an offset: live, recovered.
    let r = c.request(serde_json::json!({"op": "subscribe", "topic": "edge/t", "epoch": epoch + 1})).await;
    assert_eq!(
        (r["offset"].as_u64(), r["replayed"].as_u64(), r["recovered"].as_bool()),
        (Some(4), Some(0), Some(true)),
        "{r}"
    );
    hub.shutdown().await;
}
