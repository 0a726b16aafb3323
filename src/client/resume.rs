//! Where each subscription stands, sans-IO: the epoch and last offset delivered to the
//! application. It decides what a resubscribe asks for (the next offset, in that epoch), drops
//! records already delivered (a replay overlapping what arrived before a cut), and turns every
//! hole into an explicit [`Gap`] — history the server could not give back, an epoch change, or
//! offsets the topic's policy skipped — never a silent skip.

use crate::protocol::control::SubscriptionInfo;

/// Why messages are missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapReason {
    /// The server could not replay them (older than its history): `recovered: false`.
    NotRecovered,
    /// The topic's history was lost (a new epoch): offsets restarted.
    EpochChanged,
    /// The live stream skipped them (a `best_effort` drop or `rate_limited` coalescing).
    Skipped,
}

/// A range of a topic's messages the application will not get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The topic.
    pub topic: String,
    /// Why.
    pub reason: GapReason,
    /// The first missing offset (in the old epoch when it changed).
    pub from: u64,
    /// The last missing offset, when known (unknown when the epoch changed).
    pub to: Option<u64>,
}

/// What to do with a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver it.
    Deliver,
    /// Deliver it, after telling the application about this gap.
    DeliverAfter(Gap),
    /// Already delivered: drop it.
    Duplicate,
}

/// One subscription's position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    /// Epoch and last delivered offset; `None` until the first `subscribed`.
    at: Option<(u64, u64)>,
}

impl Position {
    /// What a (re)subscribe asks for: `(offset, epoch)`, or `None` before any answer.
    pub fn resume_point(&self) -> Option<(u64, u64)> {
        self.at.map(|(e, last)| (last + 1, e))
    }

    /// The server answered a (re)subscribe; returns the gap it admits to, if any.
    pub fn on_subscribed(&mut self, info: &SubscriptionInfo, asked: Option<u64>) -> Option<Gap> {
        let start = info.offset;
        let gap = if info.recovered {
            None
        } else {
            let (from, epoch_changed) = match self.at {
                Some((e, last)) => (last + 1, e != info.epoch),
                None => (asked.unwrap_or(start), false),
            };
            Some(Gap {
                topic: info.topic.clone(),
                reason: if epoch_changed { GapReason::EpochChanged } else { GapReason::NotRecovered },
                from,
                to: (!epoch_changed && start > from).then(|| start - 1),
            })
        };
        self.at = Some((info.epoch, start.saturating_sub(1)));
        gap
    }

    /// A record of `topic` at `offset` of `epoch` arrived.
    pub fn on_record(&mut self, topic: &str, offset: u64, epoch: u64) -> Verdict {
        let verdict = match self.at {
            Some((e, last)) if e == epoch && offset <= last => return Verdict::Duplicate,
            Some((e, last)) if e == epoch && offset > last + 1 => Verdict::DeliverAfter(Gap {
                topic: topic.to_owned(),
                reason: GapReason::Skipped,
                from: last + 1,
                to: Some(offset - 1),
            }),
            Some((e, last)) if e != epoch => Verdict::DeliverAfter(Gap {
                topic: topic.to_owned(),
                reason: GapReason::EpochChanged,
                from: last + 1,
                to: None,
            }),
            _ => Verdict::Deliver,
        };
        self.at = Some((epoch, offset));
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscribed(epoch: u64, offset: u64, recovered: bool) -> SubscriptionInfo {
        SubscriptionInfo { topic: "t".into(), epoch, offset, head: offset, replayed: 0, recovered }
    }

    #[test]
    fn a_resume_asks_for_the_next_offset_and_drops_what_was_delivered() {
        let mut p = Position::default();
        assert_eq!(p.resume_point(), None);
        assert_eq!(p.on_subscribed(&subscribed(7, 1, true), None), None);
        for o in 1..=3 {
            assert_eq!(p.on_record("t", o, 7), Verdict::Deliver);
        }
        assert_eq!(p.resume_point(), Some((4, 7)));
        assert_eq!(p.on_subscribed(&subscribed(7, 4, true), Some(4)), None);
        assert_eq!(p.on_record("t", 3, 7), Verdict::Duplicate, "a replay overlapping the past");
        assert_eq!(p.on_record("t", 4, 7), Verdict::Deliver);
    }

    #[test]
    fn every_hole_is_an_explicit_gap() {
        let mut p = Position::default();
        p.on_subscribed(&subscribed(7, 1, true), None);
        p.on_record("t", 1, 7);
        // Trimmed history on resume: 2..=9 are gone.
        let g = p.on_subscribed(&subscribed(7, 10, false), Some(2)).unwrap();
        assert_eq!((g.reason, g.from, g.to), (GapReason::NotRecovered, 2, Some(9)));
        // A live skip.
        p.on_record("t", 10, 7);
        let Verdict::DeliverAfter(g) = p.on_record("t", 13, 7) else { panic!() };
        assert_eq!((g.reason, g.from, g.to), (GapReason::Skipped, 11, Some(12)));
        // A new epoch, on resume and live.
        let g = p.on_subscribed(&subscribed(9, 1, false), Some(14)).unwrap();
        assert_eq!((g.reason, g.from, g.to), (GapReason::EpochChanged, 14, None));
        p.on_record("t", 1, 9);
        let Verdict::DeliverAfter(g) = p.on_record("t", 1, 11) else { panic!() };
        assert_eq!(g.reason, GapReason::EpochChanged);
    }
}
