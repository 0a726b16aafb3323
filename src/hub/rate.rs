//! Rate limits on the caller's clock: governor's GCRA limiter, driven by the `now` each caller
//! passes instead of a clock of its own, so a rate is tested by handing in later instants.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// governor's clock, set by each caller to the time it passes in (nanoseconds since the
/// limiter was built). It only moves forward: a caller with an older `now` is judged at the
/// newest time seen, which can only be lenient by the difference.
#[derive(Debug)]
struct PassedClock {
    origin: Instant,
    nanos: AtomicU64,
}

impl Clone for PassedClock {
    fn clone(&self) -> Self {
        Self { origin: self.origin, nanos: AtomicU64::new(self.nanos.load(Relaxed)) }
    }
}

impl Clock for PassedClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.nanos.load(Relaxed))
    }
}

impl PassedClock {
    fn set(&self, now: Instant) {
        let ns = u64::try_from(now.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_max(ns, Relaxed);
    }
}

/// A rate limit of `per_second` with bursts of `burst`, checked at the `now` the caller passes.
#[derive(Debug)]
pub struct RateLimit {
    per_second: u32,
    burst: u32,
    limiter: RateLimiter<NotKeyed, InMemoryState, PassedClock, NoOpMiddleware<Nanos>>,
}

impl RateLimit {
    /// A full bucket at `now` (rates and bursts of 0 count as 1).
    pub fn new(per_second: u32, burst: u32, now: Instant) -> Self {
        let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst_n = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let clock = PassedClock { origin: now, nanos: AtomicU64::new(0) };
        let limiter = RateLimiter::direct_with_clock(Quota::per_second(rate).allow_burst(burst_n), clock);
        Self { per_second, burst, limiter }
    }

    /// `(per_second, burst)` as built.
    pub fn rate(&self) -> (u32, u32) {
        (self.per_second, self.burst)
    }

    /// Takes one permit at `now`.
    ///
    /// # Errors
    /// How long after `now` the next permit is available.
    pub fn check(&self, now: Instant) -> Result<(), Duration> {
        let clock = self.limiter.clock();
        clock.set(now);
        self.limiter.check().map_err(|not_until| not_until.wait_time_from(clock.now()))
    }

    /// Takes `n` permits at once at `now` (all or none; `n` = 0 takes nothing): a limit on
    /// bytes, `n` being a message's size.
    ///
    /// # Errors
    /// How long after `now` `n` permits are available; [`Duration::MAX`] when `n` is more than
    /// the burst (never).
    pub fn check_n(&self, n: u32, now: Instant) -> Result<(), Duration> {
        let Some(n) = NonZeroU32::new(n) else { return Ok(()) };
        let clock = self.limiter.clock();
        clock.set(now);
        match self.limiter.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(clock.now())),
            Err(_insufficient) => Err(Duration::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_permits_come_at_the_rate() {
        let t0 = Instant::now();
        let r = RateLimit::new(10, 3, t0);
        for _ in 0..3 {
            assert!(r.check(t0).is_ok());
        }
        let wait = r.check(t0).unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100), "{wait:?}");
        assert!(r.check(t0 + Duration::from_millis(50)).is_err(), "half a period later: still none");
        assert!(r.check(t0 + Duration::from_millis(100)).is_ok(), "one period later: one permit");
        assert!(r.check(t0 + Duration::from_millis(100)).is_err());
        // A long pause refills the bucket to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| r.check(later).is_ok()).count(), 3);
    }

    #[test]
    fn an_older_now_never_moves_the_clock_back() {
        let t0 = Instant::now();
        let r = RateLimit::new(1, 1, t0);
        assert!(r.check(t0 + Duration::from_secs(5)).is_ok());
        assert!(r.check(t0).is_err(), "judged at the newest time seen: the permit is taken");
        assert_eq!(r.rate(), (1, 1));
    }

    #[test]
    fn n_permits_are_taken_all_or_none_and_the_wait_is_for_all_of_them() {
        let t0 = Instant::now();
        let r = RateLimit::new(1000, 1500, t0);
        assert!(r.check_n(1000, t0).is_ok());
        assert_eq!(r.check_n(600, t0), Err(Duration::from_millis(100)), "500 left: 100 more ms for 600");
        assert!(r.check_n(500, t0).is_ok(), "a refusal takes nothing");
        assert_eq!(r.check_n(0, t0), Ok(()), "nothing asked, nothing taken");
        assert_eq!(r.check_n(250, t0 + Duration::from_millis(200)), Err(Duration::from_millis(50)));
        assert!(r.check_n(250, t0 + Duration::from_millis(250)).is_ok());
        assert_eq!(r.check_n(1501, t0 + Duration::from_secs(60)), Err(Duration::MAX), "more than the burst: never");
        assert!(r.check_n(1500, t0 + Duration::from_secs(60)).is_ok(), "a full bucket holds the burst");
    }
}
