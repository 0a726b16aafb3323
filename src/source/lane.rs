//! A mapping's lane: the bounded buffer between its upstream consumer and the task publishing
//! into the hub, with the mapping's backpressure mode, and its counters.
//!
//! The consumer [`Lane::offer`]s each fetched record; the publisher takes them in order
//! ([`Lane::take`]). Under `apply_backpressure` a full lane tells the consumer to pause this
//! mapping's upstream (only it: the other mappings of a shared consumer go on) and to wait for
//! [`Lane::room`]; records already fetched are still taken, so the buffer may exceed its bound by
//! one fetch. Under `drop_oldest` / `drop_newest` a full lane hands back the record it dropped,
//! which the consumer commits like a published one.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

use crate::config::{BackpressureMode, MappingConfig, Template};

/// A record's place upstream, ordered within its partition: a Kafka offset, a JetStream stream
/// sequence, a Redis stream id (`major`-`minor`), an outbox row id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Offset, sequence, row id, or a stream id's milliseconds.
    pub major: u64,
    /// A stream id's sequence; 0 otherwise.
    pub minor: u64,
}

impl Position {
    /// A one-number position.
    pub fn at(major: u64) -> Self {
        Self { major, minor: 0 }
    }
}

/// Something a consumer needs back to commit a record (a JetStream message to ack).
pub type AckToken = Box<dyn std::any::Any + Send + Sync>;

/// One record as a consumer fetched it.
pub struct UpstreamRecord {
    /// The upstream name the mapping matched (topic, subject, stream key, outbox topic).
    pub upstream: Arc<str>,
    /// Where positions are ordered: a stream key, `topic/partition`, a stream, a table.
    pub partition: Arc<str>,
    /// Its position there.
    pub position: Position,
    /// How the kind writes the position (`1700000000000-3`, `42`).
    pub position_text: String,
    /// The record's key, when it has one.
    pub key: Option<String>,
    /// Its headers.
    pub headers: Vec<(String, String)>,
    /// Its value.
    pub payload: Bytes,
    /// What the consumer needs to commit it.
    pub token: Option<AckToken>,
}

impl std::fmt::Debug for UpstreamRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamRecord")
            .field("upstream", &self.upstream)
            .field("partition", &self.partition)
            .field("position", &self.position_text)
            .field("bytes", &self.payload.len())
            .finish_non_exhaustive()
    }
}

/// A record done with (published, dropped, a duplicate or a dead letter), back to its consumer
/// to commit.
pub struct Ack {
    /// Its partition.
    pub partition: Arc<str>,
    /// Its position.
    pub position: Position,
    /// How the kind writes it.
    pub position_text: String,
    /// The upstream name.
    pub upstream: Arc<str>,
    /// The consumer's token.
    pub token: Option<AckToken>,
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ack")
            .field("partition", &self.partition)
            .field("position", &self.position_text)
            .finish_non_exhaustive()
    }
}

impl From<UpstreamRecord> for Ack {
    fn from(r: UpstreamRecord) -> Self {
        Self {
            partition: r.partition,
            position: r.position,
            position_text: r.position_text,
            upstream: r.upstream,
            token: r.token,
        }
    }
}

/// What [`Lane::offer`] did.
#[derive(Debug)]
pub enum Offer {
    /// Buffered. `pause`: the lane is full (`apply_backpressure`): fetch nothing more for this
    /// mapping until [`Lane::room`].
    Queued {
        /// Stop fetching this mapping.
        pause: bool,
    },
    /// The lane was full and dropped this record (the new one or the oldest): commit it.
    Dropped(UpstreamRecord),
}

/// A mapping's counters (all since start).
#[derive(Debug, Default)]
pub struct LaneStats {
    /// Records fetched for this mapping.
    pub received: AtomicU64,
    /// Payload bytes fetched.
    pub bytes: AtomicU64,
    /// Records published into the hub.
    pub published: AtomicU64,
    /// Dropped by `drop_oldest`.
    pub dropped_oldest: AtomicU64,
    /// Dropped by `drop_newest`.
    pub dropped_newest: AtomicU64,
    /// Records the hub already had (same upstream position), skipped.
    pub duplicates: AtomicU64,
    /// Records sent to the dead letter (or dropped when there is none).
    pub dead_letters: AtomicU64,
    /// Dead letters written to the upstream's own dead letter (`upstream_dead_letter`).
    pub upstream_dead_letters: AtomicU64,
    /// Attempts to write the upstream's dead letter that failed (each retried).
    pub upstream_dead_letter_failures: AtomicU64,
    /// Positions committed upstream.
    pub commits: AtomicU64,
    /// Records behind the upstream head (last measured).
    pub lag: AtomicU64,
    /// Times the lane filled and paused its upstream.
    pub pauses: AtomicU64,
}

/// One mapping at run time.
pub struct Lane {
    /// Its index in the source's `mappings`.
    pub index: usize,
    /// Its configuration.
    pub config: MappingConfig,
    /// The upstream name pattern.
    pub upstream: Template,
    /// The hub topic pattern.
    pub topic: Template,
    /// Counters.
    pub stats: LaneStats,
    queue: Mutex<VecDeque<UpstreamRecord>>,
    paused: AtomicBool,
    records: Notify,
    room: Notify,
    acks: mpsc::UnboundedSender<Ack>,
    /// The last position published per partition: a record at or before it is a duplicate.
    ledger: Mutex<HashMap<Arc<str>, Position>>,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("index", &self.index)
            .field("upstream", &self.config.upstream)
            .finish_non_exhaustive()
    }
}

impl Lane {
    /// A lane for mapping `index` (its templates were checked with the configuration), sending
    /// what is done to `acks`.
    ///
    /// # Panics
    /// When a template does not parse (the configuration was not validated).
    pub fn new(index: usize, config: MappingConfig, acks: mpsc::UnboundedSender<Ack>) -> Self {
        let upstream = Template::parse(&config.upstream).expect("validated upstream template");
        let topic = Template::parse(&config.topic).expect("validated topic template");
        Self {
            index,
            config,
            upstream,
            topic,
            stats: LaneStats::default(),
            queue: Mutex::new(VecDeque::new()),
            paused: AtomicBool::new(false),
            records: Notify::new(),
            room: Notify::new(),
            acks,
            ledger: Mutex::new(HashMap::new()),
        }
    }

    fn max(&self) -> usize {
        self.config.max_buffered_messages as usize
    }

    /// Buffers a fetched record under the mapping's backpressure mode.
    pub fn offer(&self, record: UpstreamRecord) -> Offer {
        self.stats.received.fetch_add(1, Relaxed);
        self.stats.bytes.fetch_add(record.payload.len() as u64, Relaxed);
        let mut q = self.queue.lock().expect("lane lock");
        let full = q.len() >= self.max();
        let outcome = match (full, self.config.backpressure_mode) {
            (true, BackpressureMode::DropNewest) => {
                self.stats.dropped_newest.fetch_add(1, Relaxed);
                return Offer::Dropped(record);
            }
            (true, BackpressureMode::DropOldest) => {
                let oldest = q.pop_front().expect("a full lane has records");
                q.push_back(record);
                self.stats.dropped_oldest.fetch_add(1, Relaxed);
                Offer::Dropped(oldest)
            }
            _ => {
                q.push_back(record);
                let pause =
                    self.config.backpressure_mode == BackpressureMode::ApplyBackpressure && q.len() >= self.max();
                if pause && !self.paused.swap(true, Relaxed) {
                    self.stats.pauses.fetch_add(1, Relaxed);
                }
                Offer::Queued { pause }
            }
        };
        drop(q);
        self.records.notify_one();
        outcome
    }

    /// True while the lane is full under `apply_backpressure` (its upstream is paused).
    pub fn is_paused(&self) -> bool {
        self.paused.load(Relaxed)
    }

    /// Resolves once the lane has room again (at once when it is not paused).
    pub async fn room(&self) {
        loop {
            let wait = self.room.notified();
            if !self.is_paused() {
                return;
            }
            wait.await;
        }
    }

    /// Records buffered now.
    pub fn buffered(&self) -> usize {
        self.queue.lock().expect("lane lock").len()
    }

    /// The oldest buffered record, waiting for one.
    pub async fn take(&self) -> UpstreamRecord {
        loop {
            let wait = self.records.notified();
            if let Some(r) = self.try_take() {
                return r;
            }
            wait.await;
        }
    }

    /// The oldest buffered record, if any.
    pub fn try_take(&self) -> Option<UpstreamRecord> {
        let mut q = self.queue.lock().expect("lane lock");
        let r = q.pop_front()?;
        // Resume below half the bound, so a paused upstream fetches a batch, not one record.
        if q.len() <= self.max() / 2 && self.paused.swap(false, Relaxed) {
            self.room.notify_waiters();
        }
        Some(r)
    }

    /// True when `record` is at or before the last position published from its partition.
    pub fn is_duplicate(&self, record: &UpstreamRecord) -> bool {
        self.ledger.lock().expect("ledger lock").get(&record.partition).is_some_and(|p| record.position <= *p)
    }

    /// Hands a finished record back to its consumer to commit; `published` records (and dead
    /// letters: taken in order too) move the ledger.
    pub fn done(&self, record: UpstreamRecord, published: bool) {
        if published {
            let mut ledger = self.ledger.lock().expect("ledger lock");
            let p = ledger.entry(record.partition.clone()).or_default();
            *p = (*p).max(record.position);
        }
        // The consumer ends last (it commits what the publishers finished), so a failed send
        // only happens at shutdown, and the record then comes again from the upstream.
        let _ = self.acks.send(Ack::from(record));
    }

    /// Drops the ledger entries of `partition` (a Kafka partition revoked from this node:
    /// whoever gets it next decides on its own records).
    pub fn forget(&self, partition: &str) {
        self.ledger.lock().expect("ledger lock").remove(partition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u64) -> UpstreamRecord {
        UpstreamRecord {
            upstream: "up".into(),
            partition: "p".into(),
            position: Position::at(n),
            position_text: n.to_string(),
            key: None,
            headers: vec![],
            payload: Bytes::from_static(b"x"),
            token: None,
        }
    }

    fn lane(mode: BackpressureMode, max: u64) -> (Lane, mpsc::UnboundedReceiver<Ack>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let config = MappingConfig {
            upstream: "up".into(),
            topic: "t".into(),
            payload_field: None,
            key_suffix: false,
            headers: true,
            max_buffered_messages: max,
            backpressure_mode: mode,
            exclusive: None,
        };
        (Lane::new(0, config, tx), rx)
    }

    #[test]
    fn apply_backpressure_pauses_when_full_and_resumes_below_half() {
        let (l, _rx) = lane(BackpressureMode::ApplyBackpressure, 4);
        for n in 1..=3 {
            assert!(matches!(l.offer(record(n)), Offer::Queued { pause: false }));
        }
        assert!(matches!(l.offer(record(4)), Offer::Queued { pause: true }));
        assert!(l.is_paused());
        // Already fetched records still go in (one fetch over the bound), nothing is dropped.
        assert!(matches!(l.offer(record(5)), Offer::Queued { pause: true }));
        assert_eq!(l.buffered(), 5);
        let taken: Vec<u64> = (0..3).map(|_| l.try_take().unwrap().position.major).collect();
        assert_eq!(taken, [1, 2, 3]);
        assert!(!l.is_paused(), "2 left of 4: room again");
        assert_eq!(l.stats.pauses.load(Relaxed), 1);
    }

    #[test]
    fn drop_oldest_and_drop_newest_hand_back_what_they_dropped() {
        let (l, _rx) = lane(BackpressureMode::DropOldest, 2);
        l.offer(record(1));
        l.offer(record(2));
        let Offer::Dropped(r) = l.offer(record(3)) else { panic!("not dropped") };
        assert_eq!(r.position.major, 1);
        assert_eq!(l.try_take().unwrap().position.major, 2);
        assert_eq!(l.stats.dropped_oldest.load(Relaxed), 1);
        let (l, _rx) = lane(BackpressureMode::DropNewest, 1);
        l.offer(record(1));
        let Offer::Dropped(r) = l.offer(record(2)) else { panic!("not dropped") };
        assert_eq!(r.position.major, 2);
        assert!(!l.is_paused(), "drop modes never pause the upstream");
        assert_eq!(l.stats.dropped_newest.load(Relaxed), 1);
    }

    #[test]
    fn the_ledger_marks_records_at_or_before_the_last_published_position_as_duplicates() {
        let (l, mut rx) = lane(BackpressureMode::ApplyBackpressure, 10);
        assert!(!l.is_duplicate(&record(5)));
        l.done(record(5), true);
        assert!(l.is_duplicate(&record(5)) && l.is_duplicate(&record(4)) && !l.is_duplicate(&record(6)));
        l.done(record(9), false);
        assert!(!l.is_duplicate(&record(9)), "a dropped record does not move the ledger");
        assert_eq!(rx.try_recv().unwrap().position.major, 5);
        assert_eq!(rx.try_recv().unwrap().position.major, 9);
        l.forget("p");
        assert!(!l.is_duplicate(&record(5)));
    }
}
