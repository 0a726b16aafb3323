//! The sans-IO heart of fanhub: connections, topics, subscriptions, delivery policies,
//! offsets and history.
//!
//! Owns: the [`Connection`] trait and [`ConnCore`], the [`ConnectionManager`] (registry of
//! connections, topic → subscribers map, routing), topic names and the [`TopicRegistry`],
//! [`DeliveryPolicy`] and the per-connection [`OutboundQueue`] where policies act, per-topic
//! [`History`], counters and stats.
//!
//! Must not: open sockets, spawn tasks, or read the clock (time comes in as [`Now`]; the one
//! exception is governor's rate limiters, which keep their own monotonic clock). No lock here
//! is held across an `.await`.

pub mod connection;
pub mod history;
pub mod manager;
pub mod outbound;
pub mod policy;
pub mod registry;
pub mod stats;
pub mod subscription;
pub mod testing;
pub mod topic;

pub use connection::{ConnCore, ConnId, ConnState, Connection, Identity, Now, Protocol};
pub use history::{History, HistoryLimits};
pub use manager::{
    ClientInfo, ConnectionManager, HubConfig, HubLimits, PublishError, PublishReport, RegisterError, SubscribeError,
    SubscribeOptions, ViolationOutcome,
};
pub use outbound::{Batch, CloseInfo, Control, Delivery, Drain, OutboundQueue, QueueLimits, SendOutcome};
pub use policy::{DeliveryPolicy, DropStrategy, PolicyError, ReliableOverflow};
pub use registry::{TopicCounters, TopicDecl, TopicInfo, TopicRegistry, TopicsConfig, OTHER_TOPICS_LABEL};
pub use stats::{AuthFailure, ConnectionStats, Counters};
pub use subscription::{Subscription, SubscriptionStats};
pub use topic::{TopicError, TopicName, TopicPattern};
