//! The [`Broker`] between the `ConnectionManager` and the outside: where a topic's offsets are
//! assigned and how its records reach every node.
//!
//! * [`Broker::Memory`] (default): one node, embedded; the `ConnectionManager` assigns offsets
//!   and keeps history itself.
//! * [`Broker::Redis`]: cluster mode (`broker.redis.url`): [`redis::RedisBroker`] is the Redis
//!   side (offsets, epochs and history assigned atomically, per-topic channels on one
//!   connection, the node registry), [`cluster::Cluster`] this node's membership (publish,
//!   fan-in, subscribe-from-offset, faults, heartbeats). Nothing changes for clients.

pub mod cluster;
pub mod redis;

use std::sync::Arc;

pub use self::cluster::{BrokerCounters, Cluster, Prepared};
pub use self::redis::{Assigned, BrokerError, NodeInfo, RedisBroker, RedisHistory, RemoteMessage};

/// Which broker this node runs with.
#[derive(Debug, Clone)]
pub enum Broker {
    /// In-process: this node is the whole hub.
    Memory,
    /// One node of a Redis cluster.
    Redis(Arc<Cluster>),
}

impl Broker {
    /// The cluster membership, in cluster mode.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        match self {
            Self::Memory => None,
            Self::Redis(c) => Some(c),
        }
    }

    /// `memory` or `redis`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redis(_) => "redis",
        }
    }

    /// Whether the broker can take publishes now (always, in memory).
    pub fn is_ready(&self) -> bool {
        self.cluster().is_none_or(|c| c.is_ready())
    }
}
