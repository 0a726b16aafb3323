//! Time as the hub sees it: a value the caller passes in. Nothing in `hub/` reads a clock, so
//! every timeout, age and rate is tested by handing in a later [`Now`], never by sleeping.

use std::time::{Duration, Instant};

/// The time as the caller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time, for ages, deadlines and rates.
    pub mono: Instant,
    /// Wall-clock time in µs since the UNIX epoch, stamped into records and compared with token
    /// expiry.
    pub unix_us: i64,
}

impl Now {
    /// Wall-clock ms since the UNIX epoch (0 before it).
    pub fn unix_ms(&self) -> u64 {
        (self.unix_us / 1000).max(0) as u64
    }

    /// Wall-clock seconds since the UNIX epoch (0 before it).
    pub fn unix_secs(&self) -> u64 {
        (self.unix_us / 1_000_000).max(0) as u64
    }

    /// The same moment `d` later, on both clocks.
    #[must_use]
    pub fn later(&self, d: Duration) -> Self {
        Self { mono: self.mono + d, unix_us: self.unix_us.saturating_add(d.as_micros() as i64) }
    }

    /// The monotonic instant at which the wall clock reads `unix_ms` (now, if that has passed).
    pub fn mono_at_unix_ms(&self, unix_ms: u64) -> Instant {
        self.mono + Duration::from_millis(unix_ms.saturating_sub(self.unix_ms()))
    }
}
