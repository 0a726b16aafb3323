//! Delivery policies: how a topic's messages reach subscribers that cannot keep up.
//!
//! A policy is per topic and can be replaced at run time (`set_delivery_policy`); the new one
//! applies from the next published message. The queue bounds here are per subscription
//! (connection × topic); every connection also has a hard cap over all its topics
//! ([`super::outbound::QueueLimits`]).

use serde::{Deserialize, Serialize};

/// What `best_effort` drops when a subscriber's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DropStrategy {
    /// Evict the oldest queued message of the topic and queue the new one (`DropOldestMessage`).
    #[default]
    DropOldest,
    /// Keep the queue, drop the new message.
    DropNewest,
}

/// What `reliable` does when a subscriber's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReliableOverflow {
    /// Disconnect the subscriber with `slow_consumer`; it resumes from its last offset.
    #[default]
    Disconnect,
    /// Delay the publisher up to `backpressure_timeout_ms`, then fail its publish with
    /// `resource_exhausted`.
    ApplyBackpressure,
}

const fn d_queue_messages() -> u32 {
    1024
}
const fn d_queue_bytes() -> u64 {
    4 * 1024 * 1024
}
const fn d_backpressure_ms() -> u64 {
    1000
}
const fn d_per_second() -> u32 {
    30
}
const fn d_burst() -> u32 {
    1
}

/// A topic's delivery policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DeliveryPolicy {
    /// Deliver what fits; when a subscriber's queue is full, drop per `overflow`. Drops show as
    /// gaps in offsets.
    BestEffort {
        /// Most messages queued per subscriber (default 1024).
        #[serde(default = "d_queue_messages")]
        queue_messages: u32,
        /// Most bytes queued per subscriber (default 4 MiB).
        #[serde(default = "d_queue_bytes")]
        queue_bytes: u64,
        /// When a subscriber's queue is full: drop the oldest or the newest.
        #[serde(default)]
        overflow: DropStrategy,
    },
    /// Never drop silently: disconnect the slow subscriber, or push back on the publisher.
    Reliable {
        /// Most messages queued per subscriber (default 1024).
        #[serde(default = "d_queue_messages")]
        queue_messages: u32,
        /// Most bytes queued per subscriber (default 4 MiB).
        #[serde(default = "d_queue_bytes")]
        queue_bytes: u64,
        /// When a subscriber's queue is full: disconnect it, or delay the publisher.
        #[serde(default)]
        overflow: ReliableOverflow,
        /// With `apply_backpressure`: longest a publisher is delayed, ms (default 1000).
        #[serde(default = "d_backpressure_ms")]
        backpressure_timeout_ms: u64,
    },
    /// At most `per_second` messages per second per subscriber (bursts of `burst`); messages
    /// over the rate are coalesced, newest wins.
    RateLimited {
        /// Messages per second per subscriber (default 30).
        #[serde(default = "d_per_second")]
        per_second: u32,
        /// Messages that may go at once before the rate applies (default 1).
        #[serde(default = "d_burst")]
        burst: u32,
        /// Most messages queued per subscriber (default 1024).
        #[serde(default = "d_queue_messages")]
        queue_messages: u32,
        /// Most bytes queued per subscriber (default 4 MiB).
        #[serde(default = "d_queue_bytes")]
        queue_bytes: u64,
    },
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self::BestEffort {
            queue_messages: d_queue_messages(),
            queue_bytes: d_queue_bytes(),
            overflow: DropStrategy::DropOldest,
        }
    }
}

/// An invalid policy, naming the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid delivery policy: `{field}` {message}")]
pub struct PolicyError {
    /// The field at fault.
    pub field: &'static str,
    /// What is wrong with it.
    pub message: String,
}

/// Which outbound lane a policy's messages use; lanes drain in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// `reliable` topics.
    Reliable,
    /// `best_effort` and `rate_limited` topics.
    BestEffort,
}

impl DeliveryPolicy {
    /// The policy's name on the wire and in metrics.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::BestEffort { .. } => "best_effort",
            Self::Reliable { .. } => "reliable",
            Self::RateLimited { .. } => "rate_limited",
        }
    }

    /// Per-subscription queue bound: (messages, bytes).
    pub fn queue_bound(&self) -> (usize, usize) {
        let (m, b) = match *self {
            Self::BestEffort { queue_messages, queue_bytes, .. }
            | Self::Reliable { queue_messages, queue_bytes, .. }
            | Self::RateLimited { queue_messages, queue_bytes, .. } => (queue_messages, queue_bytes),
        };
        (m as usize, usize::try_from(b).unwrap_or(usize::MAX))
    }

    /// The lane this policy's messages travel in.
    pub const fn lane(&self) -> Lane {
        match self {
            Self::Reliable { .. } => Lane::Reliable,
            _ => Lane::BestEffort,
        }
    }

    /// True for `reliable` with `apply_backpressure`.
    pub const fn applies_backpressure(&self) -> bool {
        matches!(self, Self::Reliable { overflow: ReliableOverflow::ApplyBackpressure, .. })
    }

    /// Checks every field's range.
    ///
    /// # Errors
    /// [`PolicyError`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let (m, b) = self.queue_bound();
        if !(1..=1_000_000).contains(&m) {
            return Err(PolicyError { field: "queue_messages", message: format!("is {m}; allowed 1..=1000000") });
        }
        if !(1024..=1 << 30).contains(&b) {
            return Err(PolicyError { field: "queue_bytes", message: format!("is {b}; allowed 1024..=1073741824") });
        }
        match *self {
            Self::Reliable { backpressure_timeout_ms, .. } if backpressure_timeout_ms > 60_000 => Err(PolicyError {
                field: "backpressure_timeout_ms",
                message: format!("is {backpressure_timeout_ms}; allowed 0..=60000"),
            }),
            Self::RateLimited { per_second, .. } if !(1..=100_000).contains(&per_second) => {
                Err(PolicyError { field: "per_second", message: format!("is {per_second}; allowed 1..=100000") })
            }
            Self::RateLimited { burst, .. } if !(1..=10_000).contains(&burst) => {
                Err(PolicyError { field: "burst", message: format!("is {burst}; allowed 1..=10000") })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_defaults() {
        let p: DeliveryPolicy = serde_json::from_str(r#"{"kind":"reliable"}"#).unwrap();
        assert_eq!(p.queue_bound(), (1024, 4 << 20));
        assert!(!p.applies_backpressure());
        let p: DeliveryPolicy = serde_json::from_str(r#"{"kind":"reliable","overflow":"apply_backpressure"}"#).unwrap();
        assert!(p.applies_backpressure());
        let p: DeliveryPolicy = serde_json::from_str(r#"{"kind":"rate_limited","per_second":5}"#).unwrap();
        assert_eq!(p.kind(), "rate_limited");
        assert_eq!(p.lane(), Lane::BestEffort);
        assert!(serde_json::from_str::<DeliveryPolicy>(r#"{"kind":"sometimes"}"#).is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let p = DeliveryPolicy::RateLimited { per_second: 0, burst: 1, queue_messages: 10, queue_bytes: 4096 };
        assert_eq!(p.validate().unwrap_err().field, "per_second");
        let p = DeliveryPolicy::BestEffort { queue_messages: 0, queue_bytes: 4096, overflow: DropStrategy::DropNewest };
        assert_eq!(p.validate().unwrap_err().field, "queue_messages");
        let p = DeliveryPolicy::BestEffort { queue_messages: 1, queue_bytes: 10, overflow: DropStrategy::DropNewest };
        assert_eq!(p.validate().unwrap_err().field, "queue_bytes");
        assert!(DeliveryPolicy::default().validate().is_ok());
    }
}
