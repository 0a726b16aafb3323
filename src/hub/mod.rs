//! The sans-IO heart of fanhub: connections, topics, subscriptions, delivery policies,
//! offsets and history.
//!
//! Owns: the [`Connection`] trait and [`ConnCore`], the [`ConnectionManager`] (registry of
//! connections, topic → subscribers map, routing), topic names and the [`TopicRegistry`], the
//! [`Topic`] type and its work under its lock, [`DeliveryPolicy`] and the per-connection
//! [`OutboundQueue`] where policies act, per-topic [`History`], rate limits, counters and stats.
//!
//! Must not: open sockets, spawn tasks, await, read the clock or draw randomness. Time comes
//! in as [`Now`]; rate limits run on it; topic epochs come from a generator seeded by the
//! caller ([`HubConfig::epoch_seed`]). How a transport's writer is woken is the transport's
//! business ([`Connection::wake`]). No lock here is held across an `.await`.

pub mod connection;
pub mod history;
pub mod identity;
pub mod manager;
pub mod name;
pub mod outbound;
pub mod policy;
pub mod rate;
pub mod registry;
pub mod stats;
pub mod subscription;
pub mod testing;
pub mod time;
pub mod topic;

pub use connection::{ConnCore, Connection};
pub use history::{History, HistoryLimits};
pub use identity::{ConnId, ConnState, Identity, Protocol};
pub use manager::{
    Action, ClientInfo, ConnectionManager, HubConfig, HubLimits, PublishError, RegisterError, RequestError,
    SetPolicyError, SubscribeError, SubscribeItem, SubscribeOptions, ViolationOutcome,
};
pub use name::{TopicError, TopicName, TopicPattern};
pub use outbound::{Batch, CloseInfo, Control, Delivery, Drain, OutboundQueue, QueueLimits, SendOutcome};
pub use policy::{DeliveryPolicy, DropStrategy, PolicyError, ReliableOverflow};
pub use registry::{TopicAccessError, TopicDecl, TopicRegistry, TopicsConfig, OTHER_TOPICS_LABEL};
pub use stats::{AuthFailure, ConnectionStats, Counters, TopicCounters};
pub use subscription::{Subscription, SubscriptionStats};
pub use time::Now;
pub use topic::{PublishReport, Topic, TopicInfo};
