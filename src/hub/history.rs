//! Bounded per-topic history: the retained tail of a topic's messages, for replay.
//!
//! Offsets in the history are contiguous (every published message is appended), so locating
//! an offset is index arithmetic. Bounds are count, bytes and age; age is checked against the
//! `now` passed in, never a clock read here.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

const fn d_max_messages() -> usize {
    1000
}
const fn d_max_age_ms() -> u64 {
    300_000
}
const fn d_max_bytes() -> usize {
    16 * 1024 * 1024
}

/// History bounds of a topic. `max_messages = 0` disables history (offsets still count).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryLimits {
    /// Most messages retained.
    #[serde(default = "d_max_messages")]
    pub max_messages: usize,
    /// Oldest message age retained, in milliseconds.
    #[serde(default = "d_max_age_ms")]
    pub max_age_ms: u64,
    /// Most bytes (encoded records) retained.
    #[serde(default = "d_max_bytes")]
    pub max_bytes: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        Self { max_messages: d_max_messages(), max_age_ms: d_max_age_ms(), max_bytes: d_max_bytes() }
    }
}

/// One retained message.
#[derive(Debug, Clone)]
pub struct HistEntry {
    /// Its offset.
    pub offset: u64,
    /// When it was published (monotonic).
    pub at: Instant,
    /// The encoded record, shared with every subscriber it was sent to.
    pub record: Bytes,
}

/// The retained tail of a topic.
#[derive(Debug)]
pub struct History {
    entries: VecDeque<HistEntry>,
    bytes: usize,
    limits: HistoryLimits,
}

/// What a subscribe-from-offset gets from the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayPlan {
    /// First offset to deliver.
    pub start: u64,
    /// False when messages between the requested offset and `start` are gone.
    pub recovered: bool,
}

impl History {
    /// An empty history with `limits`.
    pub fn new(limits: HistoryLimits) -> Self {
        Self { entries: VecDeque::new(), bytes: 0, limits }
    }

    /// Current bounds.
    pub fn limits(&self) -> HistoryLimits {
        self.limits
    }

    /// Replaces the bounds, trimming at once.
    pub fn set_limits(&mut self, limits: HistoryLimits, now: Instant) {
        self.limits = limits;
        self.trim(now);
    }

    /// Appends a message and trims to the bounds.
    pub fn push(&mut self, offset: u64, at: Instant, record: Bytes) {
        if self.limits.max_messages == 0 {
            return;
        }
        debug_assert!(self.entries.back().is_none_or(|e| e.offset + 1 == offset));
        self.bytes += record.len();
        self.entries.push_back(HistEntry { offset, at, record });
        self.trim(at);
    }

    /// Drops entries over the count, byte and age bounds.
    pub fn trim(&mut self, now: Instant) {
        let max_age = Duration::from_millis(self.limits.max_age_ms);
        while let Some(front) = self.entries.front() {
            let too_many = self.entries.len() > self.limits.max_messages;
            let too_big = self.bytes > self.limits.max_bytes && self.entries.len() > 1;
            let too_old = now.saturating_duration_since(front.at) > max_age;
            if !(too_many || too_big || too_old) {
                break;
            }
            self.bytes -= front.record.len();
            self.entries.pop_front();
        }
    }

    /// Drops every entry (the offsets it held are no longer comparable, e.g. a new epoch).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Newest retained offset.
    pub fn last_offset(&self) -> Option<u64> {
        self.entries.back().map(|e| e.offset)
    }

    /// Oldest retained offset.
    pub fn first_offset(&self) -> Option<u64> {
        self.entries.front().map(|e| e.offset)
    }

    /// Messages retained.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes retained.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Plans a replay for a subscriber wanting `offset` onwards, when the topic's next offset
    /// is `head`. Offsets start at 1, so `offset = 0` means "from the oldest retained" and is
    /// `recovered` as long as nothing was ever trimmed.
    pub fn plan(&self, offset: u64, head: u64) -> ReplayPlan {
        let low = self.first_offset().unwrap_or(head);
        if offset >= low {
            ReplayPlan { start: offset, recovered: true }
        } else {
            ReplayPlan { start: low, recovered: low <= 1 }
        }
    }

    /// Retained entries from `start` on (empty when `start` is past the tail).
    pub fn from_offset(&self, start: u64) -> impl Iterator<Item = &HistEntry> {
        let skip = self.first_offset().map_or(self.entries.len(), |f| start.saturating_sub(f) as usize);
        self.entries.iter().skip(skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: usize) -> Bytes {
        Bytes::from(vec![0u8; n])
    }

    #[test]
    fn trims_by_count_and_keeps_offsets_contiguous() {
        let t0 = Instant::now();
        let mut h = History::new(HistoryLimits { max_messages: 3, max_age_ms: 60_000, max_bytes: 1 << 20 });
        for off in 1..=5 {
            h.push(off, t0, rec(10));
        }
        assert_eq!(h.len(), 3);
        assert_eq!(h.first_offset(), Some(3));
        let offs: Vec<u64> = h.from_offset(4).map(|e| e.offset).collect();
        assert_eq!(offs, [4, 5]);
        assert_eq!(h.from_offset(6).count(), 0);
        assert_eq!(h.from_offset(1).count(), 3);
    }

    #[test]
    fn trims_by_bytes_and_age() {
        let t0 = Instant::now();
        let mut h = History::new(HistoryLimits { max_messages: 100, max_age_ms: 1000, max_bytes: 25 });
        for off in 1..=3 {
            h.push(off, t0, rec(10));
        }
        assert_eq!(h.len(), 2, "30 bytes > 25: the oldest goes");
        assert_eq!(h.bytes(), 20);
        h.trim(t0 + Duration::from_millis(1001));
        assert!(h.is_empty());
    }

    #[test]
    fn plan_reports_recovery() {
        let t0 = Instant::now();
        let mut h = History::new(HistoryLimits { max_messages: 3, ..Default::default() });
        // Nothing published yet: from 0 or 1 is fully recovered.
        assert_eq!(h.plan(0, 1), ReplayPlan { start: 1, recovered: true });
        for off in 1..=3 {
            h.push(off, t0, rec(1));
        }
        assert_eq!(h.plan(0, 4), ReplayPlan { start: 1, recovered: true });
        assert_eq!(h.plan(2, 4), ReplayPlan { start: 2, recovered: true });
        h.push(4, t0, rec(1));
        h.push(5, t0, rec(1));
        assert_eq!(h.plan(1, 6), ReplayPlan { start: 3, recovered: false });
        assert_eq!(h.plan(6, 6), ReplayPlan { start: 6, recovered: true });
    }

    #[test]
    fn disabled_history_retains_nothing() {
        let mut h = History::new(HistoryLimits { max_messages: 0, ..Default::default() });
        h.push(1, Instant::now(), rec(1));
        assert!(h.is_empty());
        assert_eq!(h.plan(1, 2), ReplayPlan { start: 2, recovered: false });
        assert_eq!(h.plan(2, 2), ReplayPlan { start: 2, recovered: true });
    }
}
