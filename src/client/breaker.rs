//! A circuit breaker per endpoint, sans-IO (time is passed in): it opens when, within the
//! sampling window, at least `min_throughput` attempts were made and the share that failed
//! reached `failure_ratio`; it stays open for `break_duration`, then lets one probe through
//! (half-open); the probe's success closes it, its failure opens it again.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Breaker settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerOptions {
    /// Share of failed attempts in the window that opens the circuit, in `(0, 1]`.
    pub failure_ratio: f64,
    /// Attempts the window must hold before it can open (≥ 1).
    pub min_throughput: u32,
    /// How far back attempts count.
    pub sampling_window: Duration,
    /// How long the circuit stays open before a probe.
    pub break_duration: Duration,
}

impl Default for BreakerOptions {
    fn default() -> Self {
        Self {
            failure_ratio: 0.5,
            min_throughput: 3,
            sampling_window: Duration::from_secs(30),
            break_duration: Duration::from_secs(5),
        }
    }
}

/// Where a circuit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Attempts go through.
    Closed,
    /// Attempts are refused until the break is over.
    Open,
    /// One probe is let through.
    HalfOpen,
}

/// One endpoint's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    opts: BreakerOptions,
    state: CircuitState,
    open_until: Option<Instant>,
    window: VecDeque<(Instant, bool)>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(opts: BreakerOptions) -> Self {
        Self { opts, state: CircuitState::Closed, open_until: None, window: VecDeque::new() }
    }

    /// The state at `now` (an open circuit whose break is over is half-open).
    pub fn state(&mut self, now: Instant) -> CircuitState {
        if self.state == CircuitState::Open && self.open_until.is_some_and(|u| now >= u) {
            self.state = CircuitState::HalfOpen;
        }
        self.state
    }

    /// Whether an attempt may go through at `now`.
    pub fn allows(&mut self, now: Instant) -> bool {
        self.state(now) != CircuitState::Open
    }

    /// When an open circuit lets its probe through.
    pub fn open_until(&self) -> Option<Instant> {
        (self.state == CircuitState::Open).then_some(self.open_until).flatten()
    }

    /// Records an attempt's outcome at `now`; returns the new state when it changed. Only a
    /// failure can open the circuit (the threshold is checked when one is recorded); any
    /// success closes it (a probe, or an attempt that went through another way, e.g. reconnect
    /// advice naming this endpoint).
    pub fn record(&mut self, now: Instant, ok: bool) -> Option<CircuitState> {
        let before = self.state(now);
        match before {
            CircuitState::HalfOpen | CircuitState::Open if ok => self.close(),
            CircuitState::HalfOpen => self.open(now),
            CircuitState::Open => {}
            CircuitState::Closed => {
                self.window.push_back((now, ok));
                while self
                    .window
                    .front()
                    .is_some_and(|(t, _)| now.saturating_duration_since(*t) > self.opts.sampling_window)
                {
                    self.window.pop_front();
                }
                let failed = self.window.iter().filter(|(_, ok)| !ok).count();
                let total = self.window.len();
                if !ok
                    && total >= self.opts.min_throughput as usize
                    && failed as f64 >= self.opts.failure_ratio * total as f64
                {
                    self.open(now);
                }
            }
        }
        (self.state != before).then_some(self.state)
    }

    fn open(&mut self, now: Instant) {
        self.state = CircuitState::Open;
        self.open_until = Some(now + self.opts.break_duration);
        self.window.clear();
    }

    fn close(&mut self) {
        self.state = CircuitState::Closed;
        self.open_until = None;
        self.window.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> BreakerOptions {
        BreakerOptions {
            failure_ratio: 0.5,
            min_throughput: 4,
            sampling_window: Duration::from_secs(10),
            break_duration: Duration::from_secs(5),
        }
    }

    #[test]
    fn it_opens_at_the_threshold_once_the_window_holds_enough_attempts() {
        let t0 = Instant::now();
        let mut b = Breaker::new(opts());
        // Three failures are below the minimum throughput.
        for i in 0..3 {
            assert_eq!(b.record(t0 + Duration::from_secs(i), false), None);
        }
        // A success never opens it, whatever the ratio: the endpoint just worked.
        assert_eq!(b.record(t0 + Duration::from_secs(3), true), None, "3 of 4 failed, but this one went through");
        assert_eq!(b.record(t0 + Duration::from_secs(4), false), Some(CircuitState::Open), "4 of 5 failed");
        assert!(!b.allows(t0 + Duration::from_secs(8)));
        assert_eq!(b.open_until(), Some(t0 + Duration::from_secs(9)));
        // A failure while open changes nothing; a success (reconnect advice) closes it.
        assert_eq!(b.record(t0 + Duration::from_secs(5), false), None);
        assert_eq!(b.open_until(), Some(t0 + Duration::from_secs(9)));
        assert_eq!(b.record(t0 + Duration::from_secs(6), true), Some(CircuitState::Closed));
    }

    #[test]
    fn old_failures_leave_the_window_and_do_not_count() {
        let t0 = Instant::now();
        let mut b = Breaker::new(opts());
        for i in 0..3 {
            b.record(t0 + Duration::from_secs(i), false);
        }
        // 20 s later the old failures are out of the 10 s window.
        for i in 0..4 {
            assert_eq!(b.record(t0 + Duration::from_secs(20 + i), i != 0), None);
        }
        assert!(b.allows(t0 + Duration::from_secs(25)));
    }

    #[test]
    fn it_half_opens_after_the_break_closes_on_a_good_probe_and_reopens_on_a_bad_one() {
        let t0 = Instant::now();
        let mut b = Breaker::new(opts());
        for i in 0..4 {
            b.record(t0 + Duration::from_millis(i), false);
        }
        let after = t0 + Duration::from_secs(6);
        assert_eq!(b.state(after), CircuitState::HalfOpen);
        assert_eq!(b.record(after, false), Some(CircuitState::Open), "a failed probe opens it again");
        let later = after + Duration::from_secs(5);
        assert!(b.allows(later));
        assert_eq!(b.record(later, true), Some(CircuitState::Closed));
        assert_eq!(b.state(later), CircuitState::Closed);
    }
}
