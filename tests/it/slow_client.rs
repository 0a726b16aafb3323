//! Slow-client isolation: one subscriber that stops reading never delays or starves the others
//! on the same topic, and the hub's memory for it stays bounded by the policy.

use crate::common::*;
use fanhub::hub::{ConnId, DeliveryPolicy, DropStrategy, HistoryLimits, ReliableOverflow, TopicDecl, TopicName};

const READERS: usize = 5;
const MESSAGES: u64 = 300;
const CHUNK: u64 = 20;
const SIZE: usize = 64 * 1024;
const BOUND: u32 = 64;

async fn run(policy: DeliveryPolicy) -> (Hub, ConnId, usize) {
    let mut config = test_config();
    config.topics.declare.push(TopicDecl {
        pattern: "iso/>".into(),
        policy: Some(policy),
        history: Some(HistoryLimits { max_messages: 0, ..Default::default() }),
        max_subscribers: None,
        publishers: None,
        description: None,
    });
    let hub = spawn_hub(config).await;
    let mut stuck = hub.connect("stuck").await;
    stuck.subscribe("iso/t").await;
    let stuck_id = ConnId(stuck.welcome["conn_id"].as_u64().unwrap());

    let (progress_tx, mut progress_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, u64)>();
    let mut readers = Vec::new();
    for i in 0..READERS {
        let mut c = hub.connect(&format!("reader-{i}")).await;
        c.subscribe("iso/t").await;
        let tx = progress_tx.clone();
        readers.push(tokio::spawn(async move {
            let mut expect = 1;
            while expect <= MESSAGES {
                let r = c.next_record().await;
                assert_eq!(r.offset, expect, "reader {i} missed or reordered a message");
                assert_eq!(r.payload.len(), SIZE);
                if r.offset % CHUNK == 0 {
                    let _ = tx.send((i, r.offset));
                }
                expect += 1;
            }
        }));
    }
    let mut max_depth = 0;
    let topic = TopicName::new("iso/t").unwrap();
    for chunk in 0..MESSAGES / CHUNK {
        for _ in 0..CHUNK {
            hub.manager.route_data(&topic, &vec![1u8; SIZE], 0, now()).unwrap();
        }
        // Pace the publisher by the readers (never by the stuck one), so readers are never
        // more than a chunk behind: any loss would be the stuck client's fault leaking over.
        let target = (chunk + 1) * CHUNK;
        let mut done = 0;
        while done < READERS {
            let (_, off) = progress_rx.recv().await.expect("reader died");
            if off == target {
                done += 1;
            }
        }
        if let Some(info) = hub.manager.client_info(stuck_id) {
            max_depth = max_depth.max(info.queue_depth);
        }
    }
    for r in readers {
        r.await.expect("a reader failed");
    }
    drop(stuck);
    (hub, stuck_id, max_depth)
}

#[tokio::test]
async fn a_stuck_best_effort_subscriber_does_not_slow_the_others_and_its_queue_stays_bounded() {
    let policy =
        DeliveryPolicy::BestEffort { queue_messages: BOUND, queue_bytes: 1 << 30, overflow: DropStrategy::DropOldest };
    let (hub, stuck, max_depth) = run(policy).await;
    assert!(max_depth <= BOUND as usize, "queue depth {max_depth} exceeded the bound {BOUND}");
    let stats = hub.manager.connection_stats();
    assert!(stats.dropped["queue_full"] > 0, "the stuck subscriber's overflow was dropped, not buffered");
    let _ = stuck;
    hub.shutdown().await;
}

#[tokio::test]
async fn a_stuck_reliable_subscriber_is_disconnected_and_the_others_get_everything() {
    let policy = DeliveryPolicy::Reliable {
        queue_messages: BOUND,
        queue_bytes: 1 << 30,
        overflow: ReliableOverflow::Disconnect,
        backpressure_timeout_ms: 0,
    };
    let (hub, stuck, max_depth) = run(policy).await;
    assert!(max_depth <= BOUND as usize);
    assert_eq!(hub.manager.connection_stats().slow_consumer_disconnects, 1);
    hub.eventually("the stuck subscriber is gone", |m| m.client_info(stuck).is_none()).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn a_disconnected_slow_reliable_subscriber_that_reads_again_within_the_close_timeout_gets_the_bye() {
    let mut config = test_config();
    config.topics.declare.push(TopicDecl {
        pattern: "iso/>".into(),
        policy: Some(DeliveryPolicy::Reliable {
            queue_messages: 8,
            queue_bytes: 1 << 30,
            overflow: ReliableOverflow::Disconnect,
            backpressure_timeout_ms: 0,
        }),
        history: None,
        max_subscribers: None,
        publishers: None,
        description: None,
    });
    // A manual clock: the close timeout cannot pass while the test is not looking.
    let hub = spawn_hub_manual(config).await;
    let mut slow = hub.connect("slow").await;
    slow.subscribe("iso/t").await;
    let topic = TopicName::new("iso/t").unwrap();
    let mut sent = 0u64;
    while hub.manager.connection_stats().slow_consumer_disconnects == 0 {
        hub.manager.route_data(&topic, &vec![1u8; SIZE], 0, hub.now()).unwrap();
        sent += 1;
        assert!(sent < 10_000, "never fell behind");
        // Let the writer fill the socket first, as a real slow reader's would be.
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
    }
    // The client reads again: what the socket already held, then the bye and the close.
    let (records, closed) = slow.read_until_close().await;
    assert!(!records.is_empty() && (records.len() as u64) < sent);
    assert_eq!(closed.code, Some(4004), "{closed:?}");
    let bye = closed.messages.iter().find(|m| m["type"] == "bye").expect("a bye before the close");
    assert_eq!(bye["reason"], "slow_consumer");
    hub.shutdown().await;
}
