//! The [`ConnectionManager`]: connections, subscriptions and routing, over the topic registry.
//!
//! This file holds the manager itself, registration and the read side (stats, client info);
//! the operations live beside it: `subscribe` (subscribe, unsubscribe), `publish` (publish,
//! route, policy), `streams` (connection-detail streams), `remote` (cluster mirrors), with
//! their `errors`.
//!
//! Lock order, always: a client's subscription map → a topic's state → a connection's outbound
//! lanes. The publish path takes only the last two; no lock is global.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::connection::{ConnCore, Connection};
use super::history::HistEntry;
use super::identity::{ConnId, ConnState, Protocol};
use super::name::TopicName;
use super::outbound::QueueLimits;
use super::rate::RateLimit;
use super::registry::{TopicRegistry, TopicsConfig};
use super::stats::{ConnectionStats, Counters};
use super::subscription::{Subscription, SubscriptionStats};
use super::time::Now;
use super::topic::Topic;
use crate::protocol::control::ConnectionDetails;
use crate::protocol::CloseReason;

mod errors;
mod publish;
pub(crate) mod remote;
mod streams;
mod subscribe;
#[cfg(test)]
mod tests;

pub use errors::{Action, PublishError, RegisterError, RequestError, SetPolicyError, SubscribeError};
pub use remote::{encode_remote, RemoteOutcome, RemotePosition, RemoteRecord, MAX_PENDING};
pub use streams::Starts;

/// Connection and enforcement limits (all configurable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubLimits {
    /// Most registered connections.
    pub max_connections: usize,
    /// Most connections of one token subject.
    pub max_connections_per_user: usize,
    /// Most connections from one IP address.
    pub max_connections_per_ip: usize,
    /// Most subscriptions of one connection.
    pub max_subscriptions_per_connection: usize,
    /// Largest message (payload) a client may publish, in bytes.
    pub max_message_size: usize,
    /// Publishes per second per connection (sustained).
    pub publish_rate_per_second: u32,
    /// Publish burst per connection.
    pub publish_burst: u32,
    /// Payload bytes per second a connection may publish, sustained; 0 = no limit. Checked by
    /// the session (every transport's) after the message rate; a refusal counts as a violation.
    pub publish_bytes_per_second: u32,
    /// Payload bytes a connection may publish at once above that rate; 0 = one second's worth
    /// or `max_message_size`, whichever is larger ([`Self::effective_publish_bytes_burst`]).
    pub publish_bytes_burst: u32,
    /// Window in which violations are counted, ms.
    pub violations_window_ms: u64,
    /// Violations within the window that move a connection to `monitored_violation`.
    pub violations_to_monitor: u32,
    /// Violations within the window that close it with `violation`.
    pub violations_to_close: u32,
    /// Hard per-connection queue bounds.
    pub queue: QueueLimits,
}

impl Default for HubLimits {
    fn default() -> Self {
        Self {
            max_connections: 100_000,
            max_connections_per_user: 10_000,
            max_connections_per_ip: 20_000,
            max_subscriptions_per_connection: 256,
            max_message_size: 1024 * 1024,
            publish_rate_per_second: 10_000,
            publish_burst: 10_000,
            publish_bytes_per_second: 0,
            publish_bytes_burst: 0,
            violations_window_ms: 10_000,
            violations_to_monitor: 5,
            violations_to_close: 10,
            queue: QueueLimits::default(),
        }
    }
}

impl HubLimits {
    /// The burst of the publish byte rate: `publish_bytes_burst`, or when 0 the larger of one
    /// second's worth and `max_message_size` (so a message of the largest size can pass).
    pub fn effective_publish_bytes_burst(&self) -> u32 {
        if self.publish_bytes_burst > 0 {
            return self.publish_bytes_burst;
        }
        let max_message = u32::try_from(self.max_message_size).unwrap_or(u32::MAX);
        self.publish_bytes_per_second.max(max_message)
    }
}

/// Everything the hub needs to know from the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubConfig {
    /// Limits.
    pub limits: HubLimits,
    /// Topics.
    pub topics: TopicsConfig,
    /// Seed of the generator topic epochs are drawn from (the caller's randomness: a server
    /// draws it at start; tests pass a fixed one).
    pub epoch_seed: u64,
}

/// A topic a subscribe is about to attach to: `(topic, offset, epoch)`.
pub type SubscribeItem = (TopicName, Option<u64>, Option<u64>);

/// Where to start a subscription.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// First offset wanted; `None` = live only.
    pub offset: Option<u64>,
    /// The epoch the offset belongs to; `None` = the current one.
    pub epoch: Option<u64>,
}

/// What a recorded violation led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationOutcome {
    /// Counted; nothing changed.
    Counted,
    /// The connection moved to `monitored_violation`.
    Monitored,
    /// The connection is being closed with `violation`.
    Closed,
}

/// A registered connection's public facts.
#[derive(Debug, Clone, Serialize)]
pub struct ClientInfo {
    /// Id.
    pub id: ConnId,
    /// Transport.
    pub protocol: Protocol,
    /// Peer address.
    pub remote_addr: std::net::SocketAddr,
    /// Token subject.
    pub subject: String,
    /// Client-chosen instance id.
    pub client_id: Option<String>,
    /// State.
    pub state: ConnState,
    /// Accepted at, ms since the UNIX epoch.
    pub connected_at_ms: u64,
    /// Last inbound activity, ms since the UNIX epoch.
    pub last_activity_ms: u64,
    /// Subscriptions with their counters.
    pub subscriptions: Vec<SubscriptionStats>,
    /// Data messages queued.
    pub queue_depth: usize,
    /// Messages written.
    pub sent_messages: u64,
    /// Bytes written.
    pub sent_bytes: u64,
    /// Messages dropped over all subscriptions.
    pub dropped: u64,
    /// The data source, session and streams the connection declared.
    pub details: ConnectionDetails,
    /// Last time-sync round trip, µs.
    pub rtt_us: Option<i64>,
    /// Last time-sync clock offset (client − server), µs.
    pub clock_offset_us: Option<i64>,
}

/// One of a client's subscriptions: the topic it is in (held, so detaching needs no lookup)
/// and the subscription itself (which knows its slot there).
#[derive(Debug)]
struct ClientSub {
    topic: Arc<Topic>,
    sub: Arc<Subscription>,
}

#[derive(Debug)]
struct Client {
    conn: Arc<dyn Connection>,
    /// `None` once unregistered: a racing subscribe then fails instead of leaking.
    subs: Mutex<Option<HashMap<TopicName, ClientSub>>>,
    details: Mutex<ConnectionDetails>,
    client_id: Option<String>,
    /// Built at the first publish, on that publish's `now`.
    publish_limiter: OnceLock<RateLimit>,
    violations: Mutex<(Option<Instant>, u32)>,
}

/// Tracks connections and subscriptions and routes published messages to subscribers.
#[derive(Debug)]
pub struct ConnectionManager {
    limits: HubLimits,
    registry: TopicRegistry,
    clients: DashMap<ConnId, Arc<Client>>,
    per_user: DashMap<String, usize>,
    per_ip: DashMap<IpAddr, usize>,
    by_client_id: DashMap<(String, String), ConnId>,
    total: AtomicUsize,
    subscriptions: AtomicUsize,
    next_id: AtomicU64,
    counters: Arc<Counters>,
    /// Cluster mode: broker records staged for a connection's next subscribe to a topic.
    backfill: DashMap<(ConnId, TopicName), Vec<HistEntry>>,
}

impl ConnectionManager {
    /// A manager for `config`.
    ///
    /// # Errors
    /// A message naming the first invalid topic declaration or policy.
    pub fn new(config: HubConfig) -> Result<Self, String> {
        let registry = TopicRegistry::new(config.topics, config.epoch_seed).map_err(|(i, e)| {
            if i == usize::MAX {
                format!("topics.default_policy: {e}")
            } else {
                format!("topics.declare[{i}]: {e}")
            }
        })?;
        Ok(Self {
            limits: config.limits,
            registry,
            clients: DashMap::new(),
            per_user: DashMap::new(),
            per_ip: DashMap::new(),
            by_client_id: DashMap::new(),
            total: AtomicUsize::new(0),
            subscriptions: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            counters: Arc::new(Counters::default()),
            backfill: DashMap::new(),
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> &HubLimits {
        &self.limits
    }

    /// The topic registry.
    pub fn topics(&self) -> &TopicRegistry {
        &self.registry
    }

    /// Hub-wide counters.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// A new connection core with a fresh, never reused id, in state `establishing`.
    pub fn new_core(&self, protocol: Protocol, remote: std::net::SocketAddr, now_unix_ms: u64) -> ConnCore {
        let id = ConnId(self.next_id.fetch_add(1, Relaxed));
        ConnCore::new(id, protocol, remote, self.limits.queue, now_unix_ms, self.counters.clone())
    }

    /// Registers an authenticated connection, enforcing the connection limits. When
    /// `client_id` matches a live connection of the same subject, that one is closed with
    /// `replaced`.
    ///
    /// # Errors
    /// [`RegisterError`] when a limit is hit; nothing is registered then.
    pub fn register_client(&self, conn: Arc<dyn Connection>, client_id: Option<String>) -> Result<(), RegisterError> {
        let id = conn.id();
        let subject = conn.identity().subject.clone();
        let ip = conn.remote_addr().ip();
        let reject = |scope, limit| {
            self.counters.connections_rejected.fetch_add(1, Relaxed);
            RegisterError::Limit { scope, limit }
        };
        if self.total.fetch_add(1, Relaxed) >= self.limits.max_connections {
            self.total.fetch_sub(1, Relaxed);
            return Err(reject("global", self.limits.max_connections));
        }
        if !try_inc(&self.per_user, subject.clone(), self.limits.max_connections_per_user) {
            self.total.fetch_sub(1, Relaxed);
            return Err(reject("per_user", self.limits.max_connections_per_user));
        }
        if !try_inc(&self.per_ip, ip, self.limits.max_connections_per_ip) {
            dec(&self.per_user, &subject);
            self.total.fetch_sub(1, Relaxed);
            return Err(reject("per_ip", self.limits.max_connections_per_ip));
        }
        let client = Arc::new(Client {
            conn: conn.clone(),
            subs: Mutex::new(Some(HashMap::new())),
            details: Mutex::new(ConnectionDetails::default()),
            client_id: client_id.clone(),
            publish_limiter: OnceLock::new(),
            violations: Mutex::new((None, 0)),
        });
        if self.clients.insert(id, client).is_some() {
            return Err(RegisterError::Duplicate(id));
        }
        conn.core().set_state(ConnState::Active);
        self.counters.connections_accepted.fetch_add(1, Relaxed);
        if let Some(cid) = client_id {
            if let Some(old) = self.by_client_id.insert((subject, cid), id) {
                if let Some(old) = self.clients.get(&old).map(|c| c.conn.clone()) {
                    old.close(CloseReason::Replaced, "a newer connection with the same client_id took over", &[]);
                }
            }
        }
        Ok(())
    }

    /// Unregisters a connection and removes every subscription it had: O(its subscriptions),
    /// each detached from its topic by its slot, never by scanning a topic's subscribers. Safe
    /// to call more than once and from any cause (close, error, timeout, kick). Returns false
    /// if it was not registered.
    pub fn unregister_client(&self, id: ConnId) -> bool {
        let Some((_, client)) = self.clients.remove(&id) else {
            return false;
        };
        let identity = client.conn.identity();
        self.total.fetch_sub(1, Relaxed);
        dec(&self.per_user, &identity.subject);
        dec(&self.per_ip, &client.conn.remote_addr().ip());
        if let Some(cid) = &client.client_id {
            self.by_client_id.remove_if(&(identity.subject.clone(), cid.clone()), |_, v| *v == id);
        }
        let subs = client.subs.lock().take().unwrap_or_default();
        for s in subs.values() {
            if s.topic.state.lock().detach(&s.sub) {
                self.subscriptions.fetch_sub(1, Relaxed);
            }
        }
        // A close that drains (shutdown, maintenance) leaves what is queued to the writer; any
        // other close already discarded it, and a connection unregistered without a close
        // (details refused at connect) writes nothing more of its subscriptions.
        let outbound = &client.conn.core().outbound;
        if !outbound.closing().is_some_and(|c| c.reason.drains_queue()) {
            outbound.purge_all();
        }
        client.conn.core().set_state(ConnState::Terminated);
        true
    }

    fn client(&self, id: ConnId) -> Option<Arc<Client>> {
        self.clients.get(&id).map(|c| c.clone())
    }

    /// The registered connection with `id`.
    pub fn connection(&self, id: ConnId) -> Option<Arc<dyn Connection>> {
        self.clients.get(&id).map(|c| c.conn.clone())
    }

    /// Facts about every registered connection.
    pub fn active_clients(&self) -> Vec<ClientInfo> {
        let clients: Vec<Arc<Client>> = self.clients.iter().map(|c| c.clone()).collect();
        clients.iter().map(|c| self.info_of(c)).collect()
    }

    /// Facts about one connection.
    pub fn client_info(&self, id: ConnId) -> Option<ClientInfo> {
        self.client(id).map(|c| self.info_of(&c))
    }

    fn info_of(&self, c: &Client) -> ClientInfo {
        let core = c.conn.core();
        let subscriptions: Vec<SubscriptionStats> =
            c.subs.lock().as_ref().map(|m| m.values().map(|s| s.sub.stats()).collect()).unwrap_or_default();
        let (sent_messages, sent_bytes) = core.sent();
        let sync = core.time_sync();
        ClientInfo {
            id: c.conn.id(),
            protocol: c.conn.protocol(),
            remote_addr: c.conn.remote_addr(),
            subject: c.conn.identity().subject.clone(),
            client_id: c.client_id.clone(),
            state: c.conn.state(),
            connected_at_ms: core.connected_at_ms(),
            last_activity_ms: core.last_activity_ms(),
            dropped: subscriptions.iter().map(|s| s.dropped).sum(),
            subscriptions,
            queue_depth: core.outbound.depth(),
            sent_messages,
            sent_bytes,
            details: c.details.lock().clone(),
            rtt_us: sync.map(|s| s.0),
            clock_offset_us: sync.map(|s| s.1),
        }
    }

    /// The declared details (data source, session, streams) of a connection.
    pub fn connection_details(&self, id: ConnId) -> Option<ConnectionDetails> {
        self.client(id).map(|c| c.details.lock().clone())
    }

    /// Closes a connection with `reason`. Returns whether it existed.
    pub fn close_connection(&self, id: ConnId, reason: CloseReason, message: &str) -> bool {
        match self.connection(id) {
            Some(conn) => {
                conn.close(reason, message, &[]);
                true
            }
            None => false,
        }
    }

    /// Closes every registered connection with `reason`, advising `reconnect` URLs. Returns
    /// how many were told.
    pub fn close_all(&self, reason: CloseReason, message: &str, reconnect: &[String]) -> usize {
        let conns: Vec<Arc<dyn Connection>> = self.clients.iter().map(|c| c.conn.clone()).collect();
        for c in &conns {
            c.close(reason, message, reconnect);
        }
        conns.len()
    }

    /// Counts a limit violation of connection `id` at `now`: enough within the window move it
    /// to `monitored_violation`, more close it with `violation`.
    pub fn record_violation(&self, id: ConnId, now: Now) -> ViolationOutcome {
        let Some(client) = self.client(id) else {
            return ViolationOutcome::Counted;
        };
        self.counters.violations.fetch_add(1, Relaxed);
        let window = Duration::from_millis(self.limits.violations_window_ms);
        let count = {
            let mut v = client.violations.lock();
            if v.0.is_none_or(|start| now.mono.saturating_duration_since(start) > window) {
                *v = (Some(now.mono), 0);
                if client.conn.state() == ConnState::MonitoredViolation {
                    client.conn.core().set_state(ConnState::Active);
                }
            }
            v.1 += 1;
            v.1
        };
        if count >= self.limits.violations_to_close {
            client.conn.close(CloseReason::Violation, "too many limit violations", &[]);
            ViolationOutcome::Closed
        } else if count >= self.limits.violations_to_monitor {
            client.conn.core().set_state(ConnState::MonitoredViolation);
            ViolationOutcome::Monitored
        } else {
            ViolationOutcome::Counted
        }
    }

    /// Removes idle topics (see [`TopicRegistry::sweep`]).
    pub fn sweep_topics(&self, now: Instant) -> usize {
        self.registry.sweep(now)
    }

    /// A snapshot of the hub's connections and traffic.
    pub fn connection_stats(&self) -> ConnectionStats {
        let c = &self.counters;
        let mut by_protocol = std::collections::BTreeMap::new();
        let mut by_state: std::collections::BTreeMap<&'static str, u64> = std::collections::BTreeMap::new();
        for s in [ConnState::Establishing, ConnState::Authenticating] {
            by_state.insert(s.as_str(), c.pending(s).max(0) as u64);
        }
        for client in self.clients.iter() {
            *by_protocol.entry(client.conn.protocol().as_str()).or_insert(0) += 1;
            *by_state.entry(client.conn.state().as_str()).or_insert(0) += 1;
        }
        let (sessions_opened, sessions_unauthenticated, handshakes_refused) = c.sessions();
        ConnectionStats {
            sessions_opened,
            sessions_unauthenticated,
            handshakes_refused,
            active_connections: self.clients.len() as u64,
            connections_by_protocol: by_protocol,
            connections_by_state: by_state,
            connections_accepted: c.connections_accepted.load(Relaxed),
            connections_rejected: c.connections_rejected.load(Relaxed),
            topics: self.registry.len() as u64,
            subscriptions: self.subscriptions.load(Relaxed) as u64,
            messages_in: c.messages_in.load(Relaxed),
            bytes_in: c.bytes_in.load(Relaxed),
            reliable_messages_in: c.reliable_in.load(Relaxed),
            deliveries: c.deliveries.load(Relaxed),
            reliable_deliveries: c.reliable_deliveries.load(Relaxed),
            messages_out: c.messages_out.load(Relaxed),
            bytes_out: c.bytes_out.load(Relaxed),
            dropped: c.drops(),
            slow_consumer_disconnects: c.slow_consumer_disconnects.load(Relaxed),
            broker_lost: c.broker_lost.load(Relaxed),
            auth_failures: c.auth_failures(),
            violations: c.violations.load(Relaxed),
        }
    }
}

fn try_inc<K: std::hash::Hash + Eq>(map: &DashMap<K, usize>, key: K, max: usize) -> bool {
    let mut e = map.entry(key).or_insert(0);
    if *e >= max {
        return false;
    }
    *e += 1;
    true
}

fn dec<K: std::hash::Hash + Eq + Clone>(map: &DashMap<K, usize>, key: &K) {
    map.remove_if_mut(key, |_, v| {
        *v = v.saturating_sub(1);
        *v == 0
    });
}
