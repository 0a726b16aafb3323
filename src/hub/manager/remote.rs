//! Cluster mode, the manager's side: a topic's local state becomes a *mirror* of the broker's
//! sequence for that topic. Offsets and the epoch are assigned by the broker (Redis); this
//! node only delivers what the broker's channel brings, in offset order, exactly once.
//!
//! Per topic, under the topic's own lock (nothing here awaits; the broker I/O is the caller's):
//! * `synced`: the mirror knows the broker's epoch and next offset. Until then, records that
//!   arrive are held in `pending` (bounded) and released by [`ConnectionManager::sync_remote`].
//! * A record at `next_offset` is delivered (history, then every subscriber, like a local
//!   publish); below it, it is a duplicate and ignored; above it, there is a gap (the node's
//!   broker connection lost messages): the record waits in `pending` and the caller is asked,
//!   once, to fetch the missing range from the broker's history
//!   ([`RemoteOutcome::Fill`] → [`ConnectionManager::fill_remote`]).
//! * A record of another epoch means the broker lost the topic (a Redis restart without
//!   persistence, or the keys expired): the mirror starts over at that record, and subscribers
//!   see the epoch change, which tells them history was lost.
//!
//! Subscribing from an offset older than the mirror's history uses *backfill*: the caller
//! fetches the older records from the broker and stages them with
//! [`ConnectionManager::stage_backfill`]; the next subscribe of that connection to that topic
//! replays them, then the mirror's history, then live, under the topic lock, with no gap and
//! no duplicate.

use std::sync::atomic::Ordering::Relaxed;

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::MutexGuard;

use super::{ConnectionManager, PublishError, SubscribeError};
use crate::hub::history::HistEntry;
use crate::hub::identity::ConnId;
use crate::hub::name::TopicName;
use crate::hub::time::Now;
use crate::hub::topic::{PublishReport, RemoteSync, Topic, TopicState};
use crate::protocol::frame::{put_record_header, record_epoch, RecordHeader, RECORD_HEADER_LEN};

/// Most records held per topic while a gap is being filled or the topic is being synced;
/// past it the newest are dropped (and counted): the fill fetches them from history anyway.
pub const MAX_PENDING: usize = 4096;

/// A record as the broker delivers it: offset and epoch already assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRecord {
    /// Offset assigned by the broker.
    pub offset: u64,
    /// The topic's epoch in the broker.
    pub epoch: u64,
    /// Publish time, µs since the UNIX epoch (publishing node's clock).
    pub timestamp_us: u64,
    /// Record flags (bit 0: JSON).
    pub flags: u8,
    /// Payload.
    pub payload: Bytes,
}

/// What [`ConnectionManager::route_remote`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteOutcome {
    /// Delivered (and possibly released records that waited behind it).
    Delivered(PublishReport),
    /// Already delivered (offset below the mirror's next offset), or of no local topic.
    Ignored,
    /// Held until the topic is synced or a gap is filled.
    Held,
    /// A gap: fetch the topic's history from `from` (epoch `epoch`) and hand it to
    /// [`ConnectionManager::fill_remote`]. Asked once per gap.
    Fill {
        /// First missing offset.
        from: u64,
        /// The epoch the range belongs to.
        epoch: u64,
    },
}

/// Where a topic's mirror stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemotePosition {
    /// Whether the mirror follows the broker.
    pub synced: bool,
    /// The epoch.
    pub epoch: u64,
    /// The next offset expected.
    pub next_offset: u64,
    /// Oldest offset in the mirror's history.
    pub first_retained: Option<u64>,
    /// Local subscribers.
    pub subscribers: usize,
    /// A gap fill is under way.
    pub filling: bool,
}

/// Encodes a broker record as the record every subscriber receives (the same bytes a local
/// publish produces).
pub fn encode_remote(topic: &TopicName, r: &RemoteRecord) -> Bytes {
    let header = RecordHeader {
        flags: r.flags,
        offset: r.offset,
        epoch: r.epoch,
        timestamp_us: r.timestamp_us,
        topic: topic.as_str(),
    };
    let mut record = BytesMut::with_capacity(RECORD_HEADER_LEN + topic.as_str().len() + r.payload.len());
    // The broker only carries payloads this hub accepted, which fit the header's u32.
    put_record_header(&mut record, &header, r.payload.len()).expect("a broker record fits a record header");
    record.put_slice(&r.payload);
    record.freeze()
}

impl ConnectionManager {
    /// Where `topic`'s mirror stands (`None`: no such local topic).
    pub fn remote_position(&self, topic: &TopicName) -> Option<RemotePosition> {
        let t = self.registry.get(topic)?;
        let st = t.state.lock();
        Some(RemotePosition {
            synced: st.remote.synced,
            epoch: st.epoch,
            next_offset: st.next_offset,
            first_retained: st.history.first_offset(),
            subscribers: st.subscribers().len(),
            filling: st.remote.filling,
        })
    }

    /// Topics this node holds with their mirror position (the cluster's maintenance pass).
    pub fn remote_topics(&self) -> Vec<(TopicName, RemotePosition)> {
        self.registry.names().into_iter().filter_map(|n| self.remote_position(&n).map(|p| (n, p))).collect()
    }

    /// Creates the local topic if needed, so records arriving from now on are held for the
    /// sync instead of ignored.
    ///
    /// # Errors
    /// The topic may not be created (undeclared, too many topics).
    pub fn ensure_topic(&self, topic: &TopicName) -> Result<(), SubscribeError> {
        self.registry.get_or_create(topic)?;
        Ok(())
    }

    /// Syncs an unsynced mirror to the broker: `epoch` (the broker's, the same on every node)
    /// and `head`, the next offset the broker will
    /// assign, read *after* this node subscribed to the topic's channel. Held records from
    /// `head` on are delivered; older ones were published before and are history. A synced
    /// mirror is left alone (returns false).
    pub fn sync_remote(&self, topic: &TopicName, epoch: u64, head: u64, now: Now) -> bool {
        let Ok(t) = self.registry.get_or_create(topic) else { return false };
        let mut st = t.state.lock();
        if st.remote.synced {
            return false;
        }
        if epoch != st.epoch || head != st.next_offset {
            st.history.clear();
        }
        st.epoch = epoch;
        st.next_offset = head;
        st.remote.synced = true;
        st.remote.filling = false;
        st.remote.detached = false;
        let held = std::mem::take(&mut st.remote.pending);
        drop(st);
        for (offset, record) in held {
            if epoch != record_epoch(&record).unwrap_or(0) && offset >= head {
                continue;
            }
            self.offer_remote(&t, offset, record, now);
        }
        true
    }

    /// Marks `topic`'s mirror unsynced if it has no local subscriber (the node is about to
    /// leave the topic's channel). Returns false, changing nothing, when a subscriber is there.
    pub fn desync_remote_if_idle(&self, topic: &TopicName) -> bool {
        let Some(t) = self.registry.get(topic) else { return true };
        let mut st = t.state.lock();
        if !st.subscribers().is_empty() {
            return false;
        }
        st.remote = RemoteSync::default();
        true
    }

    /// Routes a record that came from the broker (see the module docs).
    pub fn route_remote(&self, topic: &TopicName, r: &RemoteRecord, now: Now) -> RemoteOutcome {
        let Some(t) = self.registry.get(topic) else { return RemoteOutcome::Ignored };
        let record = encode_remote(topic, r);
        self.offer_remote(&t, r.offset, record, now)
    }

    fn offer_remote(&self, t: &Topic, offset: u64, record: Bytes, now: Now) -> RemoteOutcome {
        let epoch = record_epoch(&record).unwrap_or(0);
        let mut st = t.state.lock();
        if st.dead {
            return RemoteOutcome::Ignored;
        }
        if !st.remote.synced {
            hold(&mut st, offset, record, &self.counters);
            return RemoteOutcome::Held;
        }
        if epoch != st.epoch {
            // The broker lost the topic (or this node published around it during an outage):
            // start over at this record.
            st.epoch = epoch;
            st.next_offset = offset;
            st.history.clear();
            st.remote.pending.clear();
            st.remote.filling = false;
            st.remote.detached = false;
        }
        if offset < st.next_offset {
            return RemoteOutcome::Ignored;
        }
        if offset > st.next_offset {
            hold(&mut st, offset, record, &self.counters);
            if st.remote.filling {
                return RemoteOutcome::Held;
            }
            st.remote.filling = true;
            return RemoteOutcome::Fill { from: st.next_offset, epoch };
        }
        let report = self.deliver_remote(t, st, offset, record, now);
        self.release_pending(t, now);
        RemoteOutcome::Delivered(report)
    }

    /// Delivers `record` at `offset` (= the mirror's next offset) and advances the mirror.
    fn deliver_remote(
        &self,
        t: &Topic,
        mut st: MutexGuard<'_, TopicState>,
        offset: u64,
        record: Bytes,
        now: Now,
    ) -> PublishReport {
        if st.history.last_offset().is_some_and(|last| last + 1 != offset) {
            // Skipped past records the broker lost: history stays contiguous, from here.
            st.history.clear();
        }
        st.next_offset = offset + 1;
        self.fan_out(t, st, offset, record, now)
    }

    /// Delivers held records that have become next in line.
    fn release_pending(&self, t: &Topic, now: Now) {
        loop {
            let mut st = t.state.lock();
            if st.remote.filling || !st.remote.synced {
                return;
            }
            let next = st.next_offset;
            let Some(entry) = st.remote.pending.first_entry() else { return };
            let offset = *entry.key();
            if offset > next {
                // A gap behind held records with no fill running: the fill came back short.
                return;
            }
            let record = entry.remove();
            if offset < next {
                continue;
            }
            self.deliver_remote(t, st, offset, record, now);
        }
    }

    /// Completes a gap fill with `records`, the broker's history of the topic from the gap on
    /// (oldest first), fetched in epoch `epoch`. Records the broker no longer has are lost
    /// (counted as `gap`); held records are then released. An empty `records` (the fetch
    /// failed) ends the fill too: the next gap asks again.
    pub fn fill_remote(&self, topic: &TopicName, epoch: u64, records: &[RemoteRecord], now: Now) {
        let Some(t) = self.registry.get(topic) else { return };
        for r in records {
            let st = t.state.lock();
            if st.dead || !st.remote.synced || st.epoch != epoch || r.epoch != epoch {
                break;
            }
            if r.offset < st.next_offset {
                continue;
            }
            if r.offset > st.next_offset {
                self.counters.broker_lost.fetch_add(r.offset - st.next_offset, Relaxed);
            }
            self.deliver_remote(&t, st, r.offset, encode_remote(topic, r), now);
        }
        let mut st = t.state.lock();
        st.remote.filling = false;
        // Whatever is still held past a gap the history could not close is lost: skip to it.
        let next = st.next_offset;
        if let Some((&first, _)) = st.remote.pending.first_key_value() {
            if first > next && st.epoch == epoch {
                self.counters.broker_lost.fetch_add(first - next, Relaxed);
                st.next_offset = first;
            }
        }
        drop(st);
        self.release_pending(&t, now);
    }

    /// Asks for a fill when the broker's head for `topic` is past the mirror's next offset
    /// (records lost on the channel while no later record came to reveal the gap). Returns
    /// the offset to fetch from, once; `None` when nothing is missing or a fill is running.
    pub fn fill_if_behind(&self, topic: &TopicName, epoch: u64, head: u64) -> Option<u64> {
        let t = self.registry.get(topic)?;
        let mut st = t.state.lock();
        if !st.remote.synced || st.remote.filling || st.epoch != epoch || head <= st.next_offset {
            return None;
        }
        st.remote.filling = true;
        Some(st.next_offset)
    }

    /// Moves the mirror of `topic` to the broker's new `epoch` (the broker lost the topic, and
    /// records of the new epoch came while this node was not on the channel) and asks for a
    /// fill from its first offset. False when nothing changes: not synced, a fill running,
    /// publishing locally during an outage (the broker's next record switches it back), or
    /// already in that epoch.
    pub fn fill_new_epoch(&self, topic: &TopicName, epoch: u64) -> bool {
        let Some(t) = self.registry.get(topic) else { return false };
        let mut st = t.state.lock();
        if !st.remote.synced || st.remote.filling || st.remote.detached || st.epoch == epoch {
            return false;
        }
        st.epoch = epoch;
        st.next_offset = 1;
        st.history.clear();
        st.remote.pending.clear();
        st.remote.filling = true;
        true
    }

    /// Publishes locally while the broker is unreachable (best-effort topics only): the mirror
    /// switches to a node-local epoch so these offsets never collide with the broker's; the
    /// broker's next record switches it back. Subscribers see both epoch changes.
    ///
    /// # Errors
    /// As [`Self::route_data`].
    pub fn route_detached(
        &self,
        topic: &TopicName,
        payload: &[u8],
        flags: u8,
        now: Now,
    ) -> Result<PublishReport, PublishError> {
        if let Some(t) = self.registry.get(topic) {
            let mut st = t.state.lock();
            if st.remote.synced && !st.remote.detached {
                st.remote.detached = true;
                st.epoch = self.registry.new_epoch();
                st.next_offset = 1;
                st.history.clear();
            }
        }
        self.route_data(topic, payload, flags, now)
    }

    /// Stages records fetched from the broker for connection `id`'s next subscribe to
    /// `topic` (see the module docs). Staged records the subscribe does not use are dropped.
    pub fn stage_backfill(&self, id: ConnId, topic: &TopicName, records: &[RemoteRecord], now: Now) {
        let entries: Vec<HistEntry> = records
            .iter()
            .map(|r| HistEntry { offset: r.offset, at: now.mono, record: encode_remote(topic, r) })
            .collect();
        self.backfill.insert((id, topic.clone()), entries);
    }

    /// Drops whatever is staged for connection `id`.
    pub fn clear_backfill(&self, id: ConnId) {
        self.backfill.retain(|(c, _), _| *c != id);
    }
}

fn hold(st: &mut TopicState, offset: u64, record: Bytes, counters: &crate::hub::Counters) {
    if st.remote.pending.len() >= MAX_PENDING {
        counters.broker_lost.fetch_add(1, Relaxed);
        return;
    }
    st.remote.pending.insert(offset, record);
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::hub::testing::TestConnection;
    use crate::hub::{Connection, HubConfig, SubscribeOptions};

    const EPOCH: u64 = 77;

    fn now() -> Now {
        Now { mono: Instant::now(), unix_us: 1_700_000_000_000_000 }
    }

    fn t() -> TopicName {
        TopicName::new("c/t").unwrap()
    }

    fn rec(offset: u64, epoch: u64) -> RemoteRecord {
        RemoteRecord { offset, epoch, timestamp_us: 5, flags: 0, payload: Bytes::from(offset.to_string()) }
    }

    /// A manager with one live subscriber on a topic synced at `head`.
    fn synced(head: u64) -> (ConnectionManager, std::sync::Arc<TestConnection>) {
        let m = ConnectionManager::new(HubConfig::default()).unwrap();
        let c = TestConnection::register(&m, "u", 1);
        m.ensure_topic(&t()).unwrap();
        assert!(m.sync_remote(&t(), EPOCH, head, now()));
        let info = m.subscribe(c.id(), &t(), SubscribeOptions::default(), now()).unwrap();
        assert_eq!((info.epoch, info.head), (EPOCH, head));
        (m, c)
    }

    #[test]
    fn records_are_delivered_in_order_once() {
        let (m, c) = synced(10);
        assert!(matches!(m.route_remote(&t(), &rec(10, EPOCH), now()), RemoteOutcome::Delivered(_)));
        assert_eq!(m.route_remote(&t(), &rec(10, EPOCH), now()), RemoteOutcome::Ignored, "duplicate");
        assert_eq!(m.route_remote(&t(), &rec(3, EPOCH), now()), RemoteOutcome::Ignored, "old");
        m.route_remote(&t(), &rec(11, EPOCH), now());
        assert_eq!(c.drain_offsets(), [10, 11]);
        // The encoded record carries the broker's offset and epoch.
        let pos = m.remote_position(&t()).unwrap();
        assert_eq!((pos.epoch, pos.next_offset, pos.first_retained), (EPOCH, 12, Some(10)));
    }

    #[test]
    fn records_before_the_sync_wait_for_it() {
        let m = ConnectionManager::new(HubConfig::default()).unwrap();
        let c = TestConnection::register(&m, "u", 1);
        m.ensure_topic(&t()).unwrap();
        // Pushed between SUBSCRIBE and the head read: 5 is older than the head, 6 and 7 not.
        for o in [5, 6, 7] {
            assert_eq!(m.route_remote(&t(), &rec(o, EPOCH), now()), RemoteOutcome::Held);
        }
        m.sync_remote(&t(), EPOCH, 6, now());
        assert!(!m.sync_remote(&t(), EPOCH, 6, now()), "a synced mirror stays as it is");
        let info = m.subscribe(c.id(), &t(), SubscribeOptions { offset: Some(6), epoch: Some(EPOCH) }, now()).unwrap();
        assert!(info.recovered);
        m.route_remote(&t(), &rec(8, EPOCH), now());
        assert_eq!(c.drain_offsets(), [6, 7, 8]);
    }

    #[test]
    fn a_gap_asks_for_one_fill_and_the_fill_closes_it() {
        let (m, c) = synced(1);
        m.route_remote(&t(), &rec(1, EPOCH), now());
        assert_eq!(m.route_remote(&t(), &rec(4, EPOCH), now()), RemoteOutcome::Fill { from: 2, epoch: EPOCH });
        assert_eq!(m.route_remote(&t(), &rec(5, EPOCH), now()), RemoteOutcome::Held, "one fill per gap");
        assert_eq!(c.drain_offsets(), [1]);
        // The history fetch returns 2..=4 (and 4 again is a duplicate of a held record).
        m.fill_remote(&t(), EPOCH, &[rec(2, EPOCH), rec(3, EPOCH), rec(4, EPOCH)], now());
        m.route_remote(&t(), &rec(6, EPOCH), now());
        assert_eq!(c.drain_offsets(), [2, 3, 4, 5, 6]);
        assert_eq!(m.counters.broker_lost.load(Relaxed), 0);
    }

    #[test]
    fn what_the_broker_history_lost_is_skipped_and_counted() {
        let (m, c) = synced(1);
        m.route_remote(&t(), &rec(1, EPOCH), now());
        assert!(matches!(m.route_remote(&t(), &rec(9, EPOCH), now()), RemoteOutcome::Fill { from: 2, .. }));
        // History was trimmed: it starts at 6.
        m.fill_remote(&t(), EPOCH, &[rec(6, EPOCH), rec(7, EPOCH)], now());
        assert_eq!(c.drain_offsets(), [1, 6, 7, 9]);
        assert_eq!(m.counters.broker_lost.load(Relaxed), 4 + 1, "2..=5 and 8");
    }

    #[test]
    fn a_new_epoch_starts_the_mirror_over() {
        let (m, c) = synced(1);
        m.route_remote(&t(), &rec(1, EPOCH), now());
        m.route_remote(&t(), &rec(2, EPOCH), now());
        // Redis restarted without persistence: the next publish starts epoch 99 at 1.
        assert!(matches!(m.route_remote(&t(), &rec(1, 99), now()), RemoteOutcome::Delivered(_)));
        assert_eq!(c.drain_positions(), [(1, EPOCH), (2, EPOCH), (1, 99)]);
        assert_eq!(m.remote_position(&t()).unwrap().first_retained, Some(1));
    }

    #[test]
    fn a_stalled_mirror_asks_for_a_fill_once() {
        let (m, _c) = synced(3);
        assert_eq!(m.fill_if_behind(&t(), EPOCH, 3), None, "nothing missing");
        assert_eq!(m.fill_if_behind(&t(), EPOCH + 1, 9), None, "another epoch: the next record resets");
        assert_eq!(m.fill_if_behind(&t(), EPOCH, 5), Some(3));
        assert_eq!(m.fill_if_behind(&t(), EPOCH, 5), None, "a fill is running");
    }

    #[test]
    fn a_new_epoch_no_record_revealed_is_filled_from_its_start() {
        let (m, c) = synced(1);
        m.route_remote(&t(), &rec(1, EPOCH), now());
        // Redis restarted without persistence; epoch 99's records 1..=3 went out while this
        // node was off the channel, and nothing came after them.
        assert!(m.fill_new_epoch(&t(), 99));
        assert!(!m.fill_new_epoch(&t(), 99), "a fill is running");
        // A live record of the new epoch waits for the fill.
        assert_eq!(m.route_remote(&t(), &rec(4, 99), now()), RemoteOutcome::Held);
        m.fill_remote(&t(), 99, &[rec(1, 99), rec(2, 99), rec(3, 99)], now());
        assert_eq!(c.drain_positions(), [(1, EPOCH), (1, 99), (2, 99), (3, 99), (4, 99)]);
        assert!(!m.fill_new_epoch(&t(), 99), "already in that epoch");
    }

    #[test]
    fn backfill_replays_what_the_mirror_never_had_then_history_then_live() {
        let (m, _) = synced(20);
        m.route_remote(&t(), &rec(20, EPOCH), now());
        m.route_remote(&t(), &rec(21, EPOCH), now());
        let late = TestConnection::register(&m, "late", 2);
        let broker: Vec<RemoteRecord> = (10..=21).map(|o| rec(o, EPOCH)).collect();
        m.stage_backfill(late.id(), &t(), &broker, now());
        let opts = SubscribeOptions { offset: Some(12), epoch: Some(EPOCH) };
        let info = m.subscribe(late.id(), &t(), opts, now()).unwrap();
        assert!(info.recovered, "{info:?}");
        assert_eq!((info.offset, info.head, info.replayed), (12, 22, 10));
        m.route_remote(&t(), &rec(22, EPOCH), now());
        assert_eq!(late.drain_offsets(), (12..=22).collect::<Vec<_>>());
        assert!(m.backfill.is_empty(), "the staged records were used up");
    }

    #[test]
    fn a_backfill_with_a_hole_is_not_used_and_the_subscribe_says_so() {
        let (m, _) = synced(20);
        m.route_remote(&t(), &rec(20, EPOCH), now());
        let late = TestConnection::register(&m, "late", 2);
        m.stage_backfill(late.id(), &t(), &[rec(12, EPOCH), rec(13, EPOCH), rec(19, EPOCH)], now());
        let info = m.subscribe(late.id(), &t(), SubscribeOptions { offset: Some(12), epoch: None }, now()).unwrap();
        assert!(!info.recovered);
        assert_eq!(late.drain_offsets(), [20]);
        m.stage_backfill(late.id(), &t(), &[rec(1, EPOCH)], now());
        m.clear_backfill(late.id());
        assert!(m.backfill.is_empty());
    }

    #[test]
    fn an_outage_publish_uses_a_local_epoch_and_the_broker_takes_over_again() {
        let (m, c) = synced(1);
        m.route_remote(&t(), &rec(1, EPOCH), now());
        let r = m.route_detached(&t(), b"local", 0, now()).unwrap();
        assert_ne!(r.epoch, EPOCH);
        assert_eq!(r.offset, 1);
        // Redis is back: its next record (offset 2 of the cluster epoch) wins.
        assert!(matches!(m.route_remote(&t(), &rec(2, EPOCH), now()), RemoteOutcome::Delivered(_)));
        let got: Vec<(u64, bool)> = c.drain_positions().iter().map(|&(o, e)| (o, e == EPOCH)).collect();
        assert_eq!(got, [(1, true), (1, false), (2, true)]);
        assert!(!m.desync_remote_if_idle(&t()), "a subscriber is there");
    }
}
