//! Unit tests of the outbound queue: bounds per subscription and per connection, lanes, close.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::*;
use crate::hub::identity::ConnId;
use crate::hub::name::TopicName;

fn queue(limits: QueueLimits) -> OutboundQueue {
    OutboundQueue::new(limits, Arc::new(Counters::default()))
}

fn sub() -> Arc<Subscription> {
    Arc::new(Subscription::new(ConnId(1), TopicName::new("t").unwrap()))
}

fn push(
    q: &OutboundQueue,
    record: &Bytes,
    offset: u64,
    sub: &Arc<Subscription>,
    policy: &DeliveryPolicy,
) -> SendOutcome {
    q.push(Delivery { record, offset, sub, policy, now: Instant::now() }).outcome
}

fn be() -> DeliveryPolicy {
    DeliveryPolicy::BestEffort { queue_messages: 100, queue_bytes: 1 << 20, overflow: DropStrategy::DropOldest }
}

#[test]
fn connection_wide_bound_evicts_across_topics() {
    let q = queue(QueueLimits { max_messages: 2, max_bytes: 1 << 20, max_control: 4 });
    let (a, b) = (sub(), sub());
    let rec = Bytes::from_static(b"r");
    let p = be();
    assert_eq!(push(&q, &rec, 1, &a, &p), SendOutcome::Queued);
    assert_eq!(push(&q, &rec, 1, &b, &p), SendOutcome::Queued);
    assert_eq!(push(&q, &rec, 2, &b, &p), SendOutcome::QueuedEvicting);
    assert_eq!(q.depth(), 2);
    assert_eq!(a.stats().dropped + b.stats().dropped, 1);
}

#[test]
fn control_lane_is_bounded() {
    let q = queue(QueueLimits { max_messages: 2, max_bytes: 1 << 20, max_control: 2 });
    assert!(q.push_control(Bytes::from_static(b"{}")).is_some());
    assert!(q.push_control(Bytes::from_static(b"{}")).is_some());
    assert!(
        q.push_control(Bytes::from_static(b"{}")).is_none(),
        "a client that never reads cannot grow the control lane"
    );
}

#[test]
fn close_that_drains_delivers_queued_data_first() {
    let q = queue(QueueLimits::default());
    let s = sub();
    let rec = Bytes::from_static(b"r");
    let p = be();
    let _ = push(&q, &rec, 1, &s, &p);
    assert!(
        q.begin_close(CloseInfo::new(CloseReason::Shutdown, "bye"), Some(Bytes::from_static(b"{\"type\":\"bye\"}")))
    );
    assert!(!q.begin_close(CloseInfo::new(CloseReason::Kicked, "again"), None), "first reason wins");
    assert_eq!(push(&q, &rec, 2, &s, &p), SendOutcome::Closed);
    let mut b = Batch::default();
    assert_eq!(q.drain(&mut b, 10, 1 << 20, Instant::now()), Drain::Ready);
    assert_eq!(b.records.len(), 1);
    assert_eq!(b.control.len(), 1);
    b.clear();
    assert!(matches!(
        q.drain(&mut b, 10, 1 << 20, Instant::now()),
        Drain::Finished(CloseInfo { reason: CloseReason::Shutdown, .. })
    ));
}

#[test]
fn drain_respects_batch_caps_and_keeps_order() {
    let q = queue(QueueLimits::default());
    let s = sub();
    let p = be();
    let recs: Vec<Bytes> = (0..10u8).map(|i| Bytes::from(vec![i; 10])).collect();
    for (i, r) in recs.iter().enumerate() {
        let _ = push(&q, r, i as u64, &s, &p);
    }
    let mut b = Batch::default();
    q.drain(&mut b, 4, 1 << 20, Instant::now());
    assert_eq!(b.records, recs[..4]);
    b.clear();
    q.drain(&mut b, 100, 25, Instant::now());
    assert_eq!(b.records, recs[4..7], "stops once the byte cap is reached");
    assert_eq!(q.depth(), 3);
    assert_eq!(s.stats().queued, 3);
}

#[test]
fn purge_removes_one_subscription() {
    let q = queue(QueueLimits::default());
    let (a, b) = (sub(), sub());
    let rec = Bytes::from_static(b"r");
    let p = be();
    let _ = push(&q, &rec, 1, &a, &p);
    let _ = push(&q, &rec, 1, &b, &p);
    q.purge(&a);
    assert_eq!(q.depth(), 1);
    assert_eq!(a.stats().queued, 0);
}

#[test]
fn a_wait_is_woken_by_a_drain_and_a_dropped_wait_leaves_no_waker_behind() {
    use std::future::Future as _;
    use std::task::{Context, Waker};
    let q = queue(QueueLimits::default());
    let (s, p) = (sub(), be());
    let _ = push(&q, &Bytes::from_static(b"r"), 1, &s, &p);
    let cx = &mut Context::from_waker(Waker::noop());
    for _ in 0..3 {
        let mut f = std::pin::pin!(q.space_freed());
        assert!(f.as_mut().poll(cx).is_pending());
        assert!(f.as_mut().poll(cx).is_pending(), "polled again: still one waker");
        assert_eq!(q.lanes.lock().space_waiters.len(), 1);
    }
    assert!(q.lanes.lock().space_waiters.is_empty(), "each dropped wait took its waker away");
    let mut f = std::pin::pin!(q.space_freed());
    assert!(f.as_mut().poll(cx).is_pending());
    let mut b = Batch::default();
    assert_eq!(q.drain(&mut b, 10, 1 << 20, Instant::now()), Drain::Ready);
    assert!(f.as_mut().poll(cx).is_ready(), "the drain freed room");
}
