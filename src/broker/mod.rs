//! Cross-node fan-in for cluster mode. The single-node default needs none of this: the
//! `ConnectionManager` is the broker. [`redis::RedisBroker`] holds the Redis side — offsets,
//! epochs and history assigned atomically in Redis, per-topic channels on one connection, the
//! node registry — and is what the cluster wiring (issue 5, in progress) builds on.

pub mod redis;

pub use self::redis::{Assigned, BrokerError, NodeInfo, RedisBroker, RedisHistory, RemoteMessage};
