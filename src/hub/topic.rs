//! A live topic: its offset counter, epoch, history, policy and subscriber list behind one
//! mutex, and the topic-level work done under it — assign the next offset, append to history,
//! offer the record to every subscriber, replay then attach a new subscriber, detach one.
//!
//! Publishing, subscribing-from-offset and unsubscribing serialize on the topic's lock, which
//! is what makes "replay, then live" gap- and duplicate-free; different topics never contend.
//! Every subscriber knows its slot in the list, so detaching one is O(1) and never scans.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use serde::Serialize;

use super::connection::Connection;
use super::history::{HistEntry, History};
use super::name::TopicName;
use super::outbound::{Delivery, SendOutcome};
use super::policy::DeliveryPolicy;
use super::stats::TopicCounters;
use super::subscription::Subscription;
use super::time::Now;
use crate::protocol::control::SubscriptionInfo;
use crate::protocol::frame::set_record_position;

/// The outcome of a publish.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// Offset assigned.
    pub offset: u64,
    /// The topic's epoch.
    pub epoch: u64,
    /// Subscribers whose queue took the message.
    pub delivered: usize,
    /// Subscribers for whom it (or an older message) was dropped.
    pub dropped: usize,
    /// Subscribers disconnected as slow consumers.
    pub disconnected: usize,
}

/// A subscriber as the topic holds it.
#[derive(Debug, Clone)]
pub(crate) struct Subscriber {
    pub(crate) conn: Arc<dyn Connection>,
    pub(crate) sub: Arc<Subscription>,
}

/// Per-topic cluster state: how the topic's mirror follows the broker (see
/// `manager::remote`).
#[derive(Debug, Default)]
pub(crate) struct RemoteSync {
    pub(crate) synced: bool,
    pub(crate) filling: bool,
    /// Publishing locally under a node-local epoch while the broker is unreachable.
    pub(crate) detached: bool,
    /// Encoded records past the next offset (or before sync), by offset.
    pub(crate) pending: BTreeMap<u64, Bytes>,
}

/// What a topic holds under its lock.
#[derive(Debug)]
pub(crate) struct TopicState {
    pub(crate) policy: DeliveryPolicy,
    pub(crate) epoch: u64,
    pub(crate) next_offset: u64,
    pub(crate) history: History,
    subscribers: Vec<Subscriber>,
    pub(crate) published: u64,
    pub(crate) delivered: u64,
    /// Set when the sweeper removed the topic from the map; holders of a stale `Arc` retry.
    pub(crate) dead: bool,
    /// Cluster mode: how the mirror follows the broker.
    pub(crate) remote: RemoteSync,
}

/// Where a new subscriber starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StartAt {
    /// First offset to replay from the topic's history (the head: none).
    pub(crate) offset: u64,
    /// False when something between the requested offset and `offset` is gone.
    pub(crate) recovered: bool,
}

impl TopicState {
    pub(crate) fn new(policy: DeliveryPolicy, history: History, epoch: u64) -> Self {
        Self {
            policy,
            epoch,
            next_offset: 1,
            history,
            subscribers: Vec::new(),
            published: 0,
            delivered: 0,
            dead: false,
            remote: RemoteSync::default(),
        }
    }

    /// The subscribers, in no particular order.
    pub(crate) fn subscribers(&self) -> &[Subscriber] {
        &self.subscribers
    }

    /// Under `reliable` + `apply_backpressure`: a subscriber with no room for a record of
    /// `len` bytes, which the publisher must wait for.
    pub(crate) fn blocking_subscriber(&self, len: usize) -> Option<(Arc<dyn Connection>, Duration)> {
        let DeliveryPolicy::Reliable { backpressure_timeout_ms, .. } = self.policy else { return None };
        if !self.policy.applies_backpressure() {
            return None;
        }
        self.subscribers
            .iter()
            .find(|s| !s.conn.core().outbound.has_room(&s.sub, &self.policy, len))
            .map(|s| (s.conn.clone(), Duration::from_millis(backpressure_timeout_ms)))
    }

    /// Takes the next offset for `record` (encoded with placeholders) and writes it and the
    /// epoch into its header.
    pub(crate) fn assign(&mut self, record: &mut BytesMut) -> u64 {
        let offset = self.next_offset;
        self.next_offset += 1;
        set_record_position(record, offset, self.epoch);
        offset
    }

    /// Appends `record` (at `offset`, the topic's newest) to history and offers it to every
    /// subscriber under the policy. Subscribers a `reliable` policy finds full are returned in
    /// `slow`, to be closed once the lock is released.
    pub(crate) fn append_and_offer(
        &mut self,
        offset: u64,
        record: Bytes,
        now: Now,
        slow: &mut Vec<Arc<dyn Connection>>,
    ) -> PublishReport {
        let mut report = PublishReport { offset, epoch: self.epoch, ..PublishReport::default() };
        for s in &self.subscribers {
            let d = Delivery { record: &record, offset, sub: &s.sub, policy: &self.policy, now: now.mono };
            match s.conn.try_send(d) {
                SendOutcome::Queued | SendOutcome::Coalesced => report.delivered += 1,
                SendOutcome::QueuedEvicting => {
                    report.delivered += 1;
                    report.dropped += 1;
                }
                SendOutcome::Dropped => report.dropped += 1,
                SendOutcome::Full => slow.push(s.conn.clone()),
                SendOutcome::Closed => {}
            }
        }
        self.history.push(offset, now.mono, record);
        self.published += 1;
        self.delivered += report.delivered as u64;
        report
    }

    /// Where a subscriber asking for `offset` of `epoch` starts in this topic's own history.
    pub(crate) fn start_at(&mut self, offset: Option<u64>, epoch: Option<u64>, now: Now) -> Result<StartAt, u64> {
        self.history.trim(now.mono);
        let head = self.next_offset;
        Ok(match offset {
            None => StartAt { offset: head, recovered: true },
            // Another epoch's offsets mean nothing here; everything retained is new to this
            // client, but what happened between its epoch and ours is lost.
            Some(_) if epoch.is_some_and(|e| e != self.epoch) => {
                StartAt { offset: self.history.first_offset().unwrap_or(head), recovered: false }
            }
            Some(o) if o > head => return Err(head),
            Some(o) => {
                let plan = self.history.plan(o, head);
                StartAt { offset: plan.start, recovered: plan.recovered }
            }
        })
    }

    /// Replays `backfill` then the history from `start` into the new subscriber's queue and
    /// adds it to the list, all under the lock publishing takes. Returns how many were replayed.
    pub(crate) fn attach(&mut self, subscriber: Subscriber, backfill: &[&HistEntry], start: u64) -> u64 {
        let lane = self.policy.lane();
        let mut replayed = 0;
        for e in backfill.iter().copied().chain(self.history.from_offset(start)) {
            subscriber.conn.replay(e.record.clone(), e.offset, &subscriber.sub, lane);
            replayed += 1;
        }
        subscriber.sub.slot.store(self.subscribers.len(), Relaxed);
        self.subscribers.push(subscriber);
        replayed
    }

    /// Removes `sub` from the list in O(1) (its slot says where it is). False when it is not
    /// there.
    pub(crate) fn detach(&mut self, sub: &Arc<Subscription>) -> bool {
        let i = sub.slot.load(Relaxed);
        if !self.subscribers.get(i).is_some_and(|s| Arc::ptr_eq(&s.sub, sub)) {
            return false;
        }
        self.subscribers.swap_remove(i);
        if let Some(moved) = self.subscribers.get(i) {
            moved.sub.slot.store(i, Relaxed);
        }
        sub.slot.store(usize::MAX, Relaxed);
        true
    }

    /// The answer to a subscribe that started at `start`.
    pub(crate) fn subscription_info(&self, topic: &TopicName, start: StartAt, replayed: u64) -> SubscriptionInfo {
        SubscriptionInfo {
            topic: topic.to_string(),
            epoch: self.epoch,
            offset: start.offset,
            head: self.next_offset,
            replayed,
            recovered: start.recovered,
        }
    }
}

/// A live topic.
#[derive(Debug)]
pub struct Topic {
    /// Its name.
    pub name: TopicName,
    /// Whether a declaration matched it.
    pub(crate) declared: bool,
    /// The declaration's subscriber limit.
    pub(crate) max_subscribers: Option<usize>,
    pub(crate) counters: Arc<TopicCounters>,
    pub(crate) state: Mutex<TopicState>,
}

/// A topic's public facts, for stats and the admin API.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TopicInfo {
    /// Name.
    pub name: TopicName,
    /// Whether a declaration matched it.
    pub declared: bool,
    /// Current policy.
    pub policy: DeliveryPolicy,
    /// Epoch: changes when the topic's history is lost (restart, idle removal).
    pub epoch: u64,
    /// Offset the next message will get.
    pub head: u64,
    /// Oldest offset still in history.
    pub first_retained: Option<u64>,
    /// Messages in history.
    pub history_messages: usize,
    /// Bytes in history.
    pub history_bytes: usize,
    /// Current subscribers.
    pub subscribers: usize,
    /// Messages published since the topic was created.
    pub published: u64,
    /// Deliveries handed to subscriber queues since the topic was created.
    pub delivered: u64,
}

impl Topic {
    /// A snapshot of the topic's facts.
    pub fn info(&self) -> TopicInfo {
        let st = self.state.lock();
        TopicInfo {
            name: self.name.clone(),
            declared: self.declared,
            policy: st.policy.clone(),
            epoch: st.epoch,
            head: st.next_offset,
            first_retained: st.history.first_offset(),
            history_messages: st.history.len(),
            history_bytes: st.history.bytes(),
            subscribers: st.subscribers.len(),
            published: st.published,
            delivered: st.delivered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::history::HistoryLimits;
    use crate::hub::identity::ConnId;
    use crate::hub::testing::TestConnection;
    use crate::hub::{ConnectionManager, HubConfig};

    #[test]
    fn detaching_keeps_every_other_subscriber_findable_by_its_slot() {
        let m = ConnectionManager::new(HubConfig::default()).unwrap();
        let name = TopicName::new("t").unwrap();
        let mut st = TopicState::new(DeliveryPolicy::default(), History::new(HistoryLimits::default()), 7);
        let subs: Vec<Subscriber> = (0..6)
            .map(|i| Subscriber {
                conn: TestConnection::register(&m, "u", i),
                sub: Arc::new(Subscription::new(ConnId(u64::from(i)), name.clone())),
            })
            .collect();
        for s in &subs {
            st.attach(s.clone(), &[], 1);
        }
        for gone in [0usize, 5, 2] {
            assert!(st.detach(&subs[gone].sub));
            assert!(!st.detach(&subs[gone].sub), "twice is a no-op");
        }
        let left: Vec<usize> = st.subscribers().iter().map(|s| s.sub.conn_id.0 as usize).collect();
        assert_eq!(left.len(), 3);
        for s in st.subscribers() {
            let slot = s.sub.slot.load(Relaxed);
            assert!(Arc::ptr_eq(&st.subscribers()[slot].sub, &s.sub), "slot of {} is right", s.sub.conn_id);
        }
        for keep in [1usize, 3, 4] {
            assert!(st.detach(&subs[keep].sub));
        }
        assert!(st.subscribers().is_empty());
    }
}
