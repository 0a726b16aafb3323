//! The [`Broker`] between the `ConnectionManager` and the outside: where a topic's offsets are
//! assigned and how its records reach every node.
//!
//! * [`Broker::Memory`] (default): one node, embedded; the `ConnectionManager` assigns offsets
//!   and keeps history itself.
//! * `Broker::Redis` (cargo feature `redis`, on by default): cluster mode (`broker.redis.url`):
//!   [`redis::RedisBroker`] is the Redis side (offsets, epochs and history assigned
//!   atomically, per-topic channels on one connection, the node registry),
//!   [`cluster::Cluster`] this node's membership (publish, fan-in, subscribe-from-offset,
//!   faults, heartbeats). Nothing changes for clients.
//!
//! The rest of the server goes through [`Broker`]'s methods, which hold the only `cfg`s.

#[cfg(feature = "redis")]
pub mod cluster;
#[cfg(feature = "redis")]
pub mod redis;

use std::any::Any;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

#[cfg(feature = "redis")]
pub use self::cluster::{Cluster, Prepared};
#[cfg(feature = "redis")]
pub use self::redis::{Assigned, BrokerError, PolicyChange, Push, RedisBroker, RedisHistory, RemoteMessage};
use crate::hub::{
    ConnId, Connection, ConnectionManager, DeliveryPolicy, PublishError, PublishReport, SetPolicyError, SubscribeError,
    SubscribeItem, TopicName,
};

/// Where a record an upstream source publishes came from: in cluster mode the publish is
/// refused (answered with offset 0) when `partition`'s last published position in the source's
/// `ledger` is at or past this one — atomically with the append, so a record two nodes both
/// publish (one took over the other's upstream) reaches subscribers once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePosition {
    /// The ledger: the source's name.
    pub ledger: String,
    /// Where positions are ordered (a stream key, `topic/partition`, a stream, a table).
    pub partition: String,
    /// Offset, sequence or id; a stream id's milliseconds.
    pub major: u64,
    /// A stream id's sequence; 0 otherwise.
    pub minor: u64,
}

/// A node's registry entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node id.
    pub node_id: String,
    /// Its public WebSocket URL.
    pub ws_url: String,
    /// Registered connections.
    pub connections: u64,
    /// Messages published per second (load).
    pub publish_rate: u64,
    /// Heartbeat time, ms since the UNIX epoch.
    pub heartbeat_ms: u64,
}

/// Broker traffic counters of this node.
#[derive(Debug, Default)]
pub struct BrokerCounters {
    /// Records received on topic channels.
    pub messages_in: AtomicU64,
    /// Their payload bytes.
    pub bytes_in: AtomicU64,
    /// Publishes that went through Redis.
    pub published: AtomicU64,
    /// Records fetched from Redis history (gap fills and backfills).
    pub history_fetched: AtomicU64,
    /// Publishes refused as `unavailable` (reliable topics, Redis down).
    pub refused: AtomicU64,
    /// Best-effort publishes delivered only locally (Redis down).
    pub detached: AtomicU64,
}

/// Which broker this node runs with.
#[derive(Debug, Clone)]
pub enum Broker {
    /// In-process: this node is the whole hub.
    Memory,
    /// One node of a Redis cluster.
    #[cfg(feature = "redis")]
    Redis(Arc<Cluster>),
}

impl Broker {
    /// The cluster membership, in cluster mode.
    #[cfg(feature = "redis")]
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        match self {
            Self::Memory => None,
            Self::Redis(c) => Some(c),
        }
    }

    /// Whether publishes and subscribes-from-offset go through a broker (cluster mode).
    pub fn is_clustered(&self) -> bool {
        !matches!(self, Self::Memory)
    }

    /// `memory` or `redis`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Memory => "memory",
            #[cfg(feature = "redis")]
            Self::Redis(_) => "redis",
        }
    }

    /// Whether the broker can take publishes now (always, in memory).
    pub fn is_ready(&self) -> bool {
        match self {
            Self::Memory => true,
            #[cfg(feature = "redis")]
            Self::Redis(c) => c.is_ready(),
        }
    }

    /// The live nodes at the last heartbeat (none in memory mode).
    pub fn nodes(&self) -> Vec<NodeInfo> {
        match self {
            Self::Memory => Vec::new(),
            #[cfg(feature = "redis")]
            Self::Redis(c) => c.nodes(),
        }
    }

    /// The other live nodes' WebSocket URLs (reconnect advice).
    pub fn peer_urls(&self) -> Vec<String> {
        match self {
            Self::Memory => Vec::new(),
            #[cfg(feature = "redis")]
            Self::Redis(c) => c.peer_urls(),
        }
    }

    /// This node's broker traffic (none in memory mode).
    pub fn counters(&self) -> Option<&BrokerCounters> {
        match self {
            Self::Memory => None,
            #[cfg(feature = "redis")]
            Self::Redis(c) => Some(&c.counters),
        }
    }

    /// The Redis URL without credentials (none in memory mode).
    pub fn endpoint(&self) -> Option<String> {
        match self {
            Self::Memory => None,
            #[cfg(feature = "redis")]
            Self::Redis(c) => Some(c.redis_endpoint()),
        }
    }

    /// Readies topics for a subscribe of connection `conn` (cluster mode: joins their
    /// channels, stages history); the returned guard must live until the subscribe attached.
    ///
    /// # Errors
    /// [`SubscribeError`] `unavailable` when the broker is needed and unreachable.
    pub async fn prepare(&self, conn: ConnId, items: &[SubscribeItem]) -> Result<Box<dyn Any + Send>, SubscribeError> {
        match self {
            Self::Memory => {
                let _ = (conn, items);
                Ok(Box::new(()))
            }
            #[cfg(feature = "redis")]
            Self::Redis(c) => c.prepare(conn, items).await.map(|g| Box::new(g) as Box<dyn Any + Send>),
        }
    }

    /// Queues a client's publish for the broker, which answers the client itself.
    ///
    /// # Errors
    /// [`PublishError`] `unavailable` when there is no broker or the node shuts down.
    pub async fn enqueue(
        &self,
        conn: Arc<dyn Connection>,
        id: Option<u64>,
        seq: u64,
        topic: TopicName,
        payload: Bytes,
        flags: u8,
    ) -> Result<(), PublishError> {
        match self {
            Self::Memory => {
                let _ = (conn, id, seq, topic, payload, flags);
                Err(PublishError::unavailable("this node has no cluster broker"))
            }
            #[cfg(feature = "redis")]
            Self::Redis(c) => {
                let reply = cluster::PublishReply::Connection { conn, id, seq };
                c.enqueue(cluster::PublishJob { topic, payload, flags, reply, position: None }).await
            }
        }
    }

    /// Sets `topic`'s delivery policy: on this node in memory mode; in cluster mode on every
    /// node, through Redis (nothing changes anywhere when Redis is unreachable).
    ///
    /// # Errors
    /// [`SetPolicyError`]: invalid, the topic may not be used, or (cluster) Redis unreachable.
    pub async fn set_policy(
        &self,
        manager: &ConnectionManager,
        topic: &TopicName,
        policy: DeliveryPolicy,
    ) -> Result<(), SetPolicyError> {
        manager.check_delivery_policy(topic, &policy)?;
        match self {
            Self::Memory => manager.set_delivery_policy(topic, policy),
            #[cfg(feature = "redis")]
            Self::Redis(c) => c.share_policy(topic, Some(&policy)).await,
        }
    }

    /// Drops `topic`'s run-time policy (on every node in cluster mode): back to the configured
    /// one. Returns the policy now in force here.
    ///
    /// # Errors
    /// [`SetPolicyError::Unavailable`] (cluster) when Redis is unreachable: nothing changed.
    pub async fn reset_policy(
        &self,
        manager: &ConnectionManager,
        topic: &TopicName,
    ) -> Result<DeliveryPolicy, SetPolicyError> {
        match self {
            Self::Memory => Ok(manager.reset_delivery_policy(topic)),
            #[cfg(feature = "redis")]
            Self::Redis(c) => c.share_policy(topic, None).await.map(|()| manager.delivery_policy(topic)),
        }
    }

    /// Returns once every publish queued with [`Self::enqueue`] before the call has been
    /// answered (at once in memory mode).
    pub async fn flush(&self) {
        #[cfg(feature = "redis")]
        if let Self::Redis(c) = self {
            c.flush().await;
        }
    }

    /// Publishes through the broker and waits for the outcome (the HTTP publish API, upstream
    /// sources). With a `position`, offset 0 answers a record its ledger already has.
    ///
    /// # Errors
    /// [`PublishError`]; `unavailable` in memory mode (route locally instead).
    pub async fn publish(
        &self,
        topic: &TopicName,
        payload: &[u8],
        flags: u8,
        position: Option<SourcePosition>,
    ) -> Result<PublishReport, PublishError> {
        match self {
            Self::Memory => {
                let _ = (topic, payload, flags, position);
                Err(PublishError::unavailable("this node has no cluster broker"))
            }
            #[cfg(feature = "redis")]
            Self::Redis(c) => c.publish(topic, payload, flags, position).await,
        }
    }

    /// Takes or renews the cluster-wide lease `name` for this node for `ttl`: true while this
    /// node holds it, else the holder's id in `Err(Some(..))`. In memory mode always true.
    ///
    /// # Errors
    /// `Err(None)` when Redis is unreachable (nobody can be sure to hold it).
    pub async fn lease(&self, name: &str, ttl: std::time::Duration) -> Result<(), Option<String>> {
        match self {
            Self::Memory => {
                let _ = (name, ttl);
                Ok(())
            }
            #[cfg(feature = "redis")]
            Self::Redis(c) => c.lease(name, ttl).await,
        }
    }

    /// Gives up the lease `name` if this node holds it (at shutdown, so another node takes
    /// over at once rather than after the lease expires).
    pub async fn release(&self, name: &str) {
        #[cfg(feature = "redis")]
        if let Self::Redis(c) = self {
            c.release(name).await;
        }
        #[cfg(not(feature = "redis"))]
        let _ = name;
    }
}
