//! One subscription: a connection's membership in a topic, with its counters.
//!
//! The `Arc<Subscription>` is shared by the topic's subscriber list, the connection's
//! subscription map and every queued entry of it, so per-subscription bounds and counters need
//! no lookups on the hot path. It also remembers its slot in the topic's subscriber list, so
//! removing it never scans the list.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

use super::identity::ConnId;
use super::name::TopicName;
use super::rate::RateLimit;

/// A connection's subscription to one topic.
#[derive(Debug)]
pub struct Subscription {
    /// Subscriber.
    pub conn_id: ConnId,
    /// Topic.
    pub topic: TopicName,
    pub(crate) queued_msgs: AtomicUsize,
    pub(crate) queued_bytes: AtomicUsize,
    delivered: AtomicU64,
    dropped: AtomicU64,
    last_offset: AtomicU64,
    /// Index in the topic's subscriber list; written only under the topic's lock.
    pub(crate) slot: AtomicUsize,
    limiter: Mutex<Option<RateLimit>>,
}

/// Counters of one subscription, for stats and the admin API.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SubscriptionStats {
    /// Topic.
    pub topic: TopicName,
    /// Messages handed to the connection's queue (live and replayed).
    pub delivered: u64,
    /// Messages dropped by the policy (queue full, coalesced).
    pub dropped: u64,
    /// Last offset handed to the queue (0: none yet).
    pub last_offset: u64,
    /// Messages queued, not yet written.
    pub queued: usize,
}

impl Subscription {
    /// A fresh subscription.
    pub fn new(conn_id: ConnId, topic: TopicName) -> Self {
        Self {
            conn_id,
            topic,
            queued_msgs: AtomicUsize::new(0),
            queued_bytes: AtomicUsize::new(0),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            last_offset: AtomicU64::new(0),
            slot: AtomicUsize::new(usize::MAX),
            limiter: Mutex::new(None),
        }
    }

    pub(crate) fn note_delivered(&self, offset: u64) {
        self.delivered.fetch_add(1, Relaxed);
        self.last_offset.store(offset, Relaxed);
    }

    pub(crate) fn note_dropped(&self) {
        self.dropped.fetch_add(1, Relaxed);
    }

    /// Current counters.
    pub fn stats(&self) -> SubscriptionStats {
        SubscriptionStats {
            topic: self.topic.clone(),
            delivered: self.delivered.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            last_offset: self.last_offset.load(Relaxed),
            queued: self.queued_msgs.load(Relaxed),
        }
    }

    /// The (per_second, burst) of the current rate limiter, if one was built.
    pub(crate) fn limiter_rate(&self) -> Option<(u32, u32)> {
        self.limiter.lock().as_ref().map(RateLimit::rate)
    }

    /// Takes one permit of a `rate_limited` policy at `now`. `Err` carries how long until the
    /// next one. The limiter is (re)built when the policy's rate changes.
    pub(crate) fn take_permit(&self, per_second: u32, burst: u32, now: Instant) -> Result<(), Duration> {
        let mut slot = self.limiter.lock();
        let limiter = match &mut *slot {
            Some(l) if l.rate() == (per_second, burst) => l,
            other => other.insert(RateLimit::new(per_second, burst, now)),
        };
        limiter.check(now)
    }
}
