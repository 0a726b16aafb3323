//! Where time comes from. The hub and the session never read a clock: the transports, the
//! broker and the server read this one and pass [`Now`] in, and wait on its [`Timer`]s.
//!
//! [`Clock::System`] is the machine's clock. [`Clock::Manual`] only moves when told
//! ([`ManualClock::advance`]): a test drives timeouts, keep-alive, token expiry and rate limits
//! through a real server by advancing it, never by sleeping, so nothing it checks races the wall
//! clock.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::hub::Now;

/// A source of [`Now`] and of timers that fire on it.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The machine's monotonic and wall clocks.
    #[default]
    System,
    /// A clock that moves only when advanced (tests).
    Manual(Arc<ManualClock>),
}

impl Clock {
    /// A manual clock starting at the system's current time, and the handle that advances it.
    pub fn manual() -> (Self, Arc<ManualClock>) {
        let m = Arc::new(ManualClock::new(system_now()));
        (Self::Manual(m.clone()), m)
    }

    /// The current time.
    pub fn now(&self) -> Now {
        match self {
            Self::System => system_now(),
            Self::Manual(m) => m.now(),
        }
    }

    /// The monotonic half alone (one clock read instead of two, for a writer's every wake-up).
    pub fn mono(&self) -> Instant {
        match self {
            Self::System => Instant::now(),
            Self::Manual(m) => m.now().mono,
        }
    }

    /// A timer on this clock, unset.
    pub fn timer(&self) -> Timer {
        match self {
            Self::System => Timer::System { deadline: None, sleep: Box::pin(tokio::time::sleep(Duration::ZERO)) },
            Self::Manual(m) => Timer::Manual { deadline: None, rx: m.tx.subscribe() },
        }
    }

    /// Resolves at `deadline` (this clock's monotonic time).
    pub async fn sleep_until(&self, deadline: Instant) {
        let mut t = self.timer();
        t.set(Some(deadline));
        t.fired().await;
    }
}

/// The system clock, read once: both halves of the same moment.
fn system_now() -> Now {
    let unix_us = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
    Now { mono: Instant::now(), unix_us }
}

/// A clock that moves only when [`advance`](Self::advance)d.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Now>,
    tx: watch::Sender<Instant>,
}

impl ManualClock {
    fn new(start: Now) -> Self {
        Self { now: Mutex::new(start), tx: watch::channel(start.mono).0 }
    }

    /// The current time.
    pub fn now(&self) -> Now {
        *self.now.lock()
    }

    /// Moves both halves of the clock `by` forward and fires every timer now due.
    pub fn advance(&self, by: Duration) {
        let mono = {
            let mut now = self.now.lock();
            *now = now.later(by);
            now.mono
        };
        self.tx.send_replace(mono);
    }
}

/// A resettable deadline on a [`Clock`]: set it, then await [`Timer::fired`]. Built once per
/// task and reset as deadlines move, so waiting allocates nothing.
#[derive(Debug)]
pub enum Timer {
    /// On tokio's timer wheel.
    System {
        /// The deadline set.
        deadline: Option<Instant>,
        /// The sleep, reset to each new deadline.
        sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    },
    /// On a manual clock.
    Manual {
        /// The deadline set.
        deadline: Option<Instant>,
        /// The clock's time as it is advanced.
        rx: watch::Receiver<Instant>,
    },
}

impl Timer {
    /// Sets (or with `None`, clears) the deadline.
    pub fn set(&mut self, deadline: Option<Instant>) {
        match self {
            Self::System { deadline: d, sleep } => {
                if *d != deadline {
                    if let Some(t) = deadline {
                        sleep.as_mut().reset(t.into());
                    }
                    *d = deadline;
                }
            }
            Self::Manual { deadline: d, .. } => *d = deadline,
        }
    }

    /// Resolves once the deadline has passed; never while none is set.
    pub async fn fired(&mut self) {
        match self {
            Self::System { deadline: None, .. } | Self::Manual { deadline: None, .. } => {
                std::future::pending::<()>().await;
            }
            Self::System { sleep, .. } => sleep.as_mut().await,
            Self::Manual { deadline: Some(t), rx } => {
                let t = *t;
                if rx.wait_for(|now| *now >= t).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    use super::*;

    fn ready<F: Future>(f: std::pin::Pin<&mut F>) -> bool {
        matches!(f.poll(&mut Context::from_waker(Waker::noop())), Poll::Ready(_))
    }

    #[tokio::test]
    async fn a_manual_timer_fires_only_when_the_clock_reaches_it() {
        let (clock, handle) = Clock::manual();
        let start = clock.now();
        let mut t = clock.timer();
        t.set(Some(start.mono + Duration::from_secs(30)));
        let mut fired = Box::pin(t.fired());
        assert!(!ready(fired.as_mut()));
        handle.advance(Duration::from_secs(29));
        assert!(!ready(fired.as_mut()));
        handle.advance(Duration::from_secs(1));
        assert!(ready(fired.as_mut()));
        let now = clock.now();
        assert_eq!(now.mono - start.mono, Duration::from_secs(30));
        assert_eq!(now.unix_us - start.unix_us, 30_000_000, "the wall clock moves with it");
    }

    #[tokio::test]
    async fn an_unset_timer_never_fires() {
        let mut t = Clock::System.timer();
        let r = tokio::time::timeout(Duration::from_millis(20), t.fired()).await;
        assert!(r.is_err());
        t.set(Some(Instant::now()));
        tokio::time::timeout(Duration::from_secs(5), t.fired()).await.expect("a due timer fires");
    }
}
