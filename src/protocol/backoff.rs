//! Reconnect delays (clients, and the hub's own upstream consumers): exponential backoff with full jitter (a uniformly random delay between 0
//! and the exponential cap), so clients cut off together do not come back together. Pure: the
//! random number is passed in.

use std::time::Duration;

/// Exponential backoff settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The cap of the first retry's delay.
    pub initial: Duration,
    /// The largest cap.
    pub max: Duration,
    /// How much the cap grows per attempt (≥ 1).
    pub multiplier: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { initial: Duration::from_millis(100), max: Duration::from_secs(10), multiplier: 2.0 }
    }
}

impl Backoff {
    /// The cap for retry number `attempt` (0-based): `initial · multiplier^attempt`, at most `max`.
    pub fn cap(&self, attempt: u32) -> Duration {
        let factor = self.multiplier.powi(attempt.min(64) as i32);
        let ms = (self.initial.as_secs_f64() * 1000.0 * factor).min(self.max.as_secs_f64() * 1000.0);
        Duration::from_secs_f64(ms.max(0.0) / 1000.0)
    }

    /// The delay before retry number `attempt`, for a random `unit` in `[0, 1)`: full jitter.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        self.cap(attempt).mul_f64(unit.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_grows_by_the_multiplier_up_to_the_max_and_the_delay_spans_zero_to_the_cap() {
        let b = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(2), multiplier: 2.0 };
        let caps: Vec<u128> = (0..7).map(|a| b.cap(a).as_millis()).collect();
        assert_eq!(caps, [100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(b.delay(3, 0.0), Duration::ZERO);
        assert_eq!(b.delay(3, 0.5).as_millis(), 400);
        assert!(b.delay(3, 0.999_999) <= b.cap(3));
        assert_eq!(b.cap(10_000), Duration::from_secs(2), "no overflow on long outages");
    }

    #[test]
    fn clients_cut_off_together_come_back_spread_over_the_whole_first_interval() {
        // 100 clients' first reconnect delays: full jitter spreads them from 0 to the cap
        // instead of all at the cap (the storm plain exponential backoff would cause).
        let b = Backoff::default();
        let delays: Vec<Duration> = (0..100).map(|_| b.delay(0, rand::random::<f64>())).collect();
        let cap = b.cap(0);
        assert!(delays.iter().all(|d| *d <= cap));
        let mut buckets = [0u32; 10];
        for d in &delays {
            buckets[((d.as_secs_f64() / cap.as_secs_f64()) * 10.0).min(9.0) as usize] += 1;
        }
        // With 100 uniform draws, a bucket above 40 or fewer than 8 buckets hit is a
        // one-in-a-billion event for a uniform source, and certain for a clustered one.
        assert!(buckets.iter().all(|&n| n <= 40), "{buckets:?}");
        assert!(buckets.iter().filter(|&&n| n > 0).count() >= 8, "{buckets:?}");
    }
}
