//! The [`ConnectionManager`]: seed 003's operations over connections, subscriptions and
//! routing.
//!
//! Lock order, always: a client's subscription map → a topic's state → a connection's outbound
//! lanes. The publish path takes only the last two; no lock is global.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use dashmap::DashMap;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::connection::{ConnCore, ConnId, ConnState, Connection, Now, Protocol};
use super::outbound::{Delivery, QueueLimits, SendOutcome};
use super::policy::{DeliveryPolicy, PolicyError};
use super::registry::{Subscriber, Topic, TopicAccessError, TopicInfo, TopicRegistry, TopicsConfig};
use super::stats::{ConnectionStats, Counters};
use super::subscription::{Subscription, SubscriptionStats};
use super::topic::{TopicError, TopicName};
use crate::protocol::control::{ConnectionDetails, SubscriptionInfo};
use crate::protocol::frame::{put_record_header, RecordHeader, RECORD_HEADER_LEN};
use crate::protocol::{CloseReason, ErrorCode};

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
            violations_window_ms: 10_000,
            violations_to_monitor: 5,
            violations_to_close: 10,
            queue: QueueLimits::default(),
        }
    }
}

/// Everything the hub needs to know from the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubConfig {
    /// Limits.
    pub limits: HubLimits,
    /// Topics.
    pub topics: TopicsConfig,
}

/// Where to start a subscription.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// First offset wanted; `None` = live only.
    pub offset: Option<u64>,
    /// The epoch the offset belongs to; `None` = the current one.
    pub epoch: Option<u64>,
}

/// Why a connection could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// A connection limit was hit.
    #[error("connection limit reached: at most {limit} connections {scope}")]
    Limit {
        /// `global`, `per_user` or `per_ip`.
        scope: &'static str,
        /// The configured limit.
        limit: usize,
    },
    /// The id is already registered.
    #[error("connection {0} is already registered")]
    Duplicate(ConnId),
}

impl RegisterError {
    /// Which configured limit, for error messages.
    pub fn limit_name(&self) -> Option<&'static str> {
        match self {
            Self::Limit { scope: "global", .. } => Some("max_connections"),
            Self::Limit { scope: "per_user", .. } => Some("max_connections_per_user"),
            Self::Limit { .. } => Some("max_connections_per_ip"),
            Self::Duplicate(_) => None,
        }
    }
}

/// Why a subscribe, unsubscribe or stream change failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The connection is not registered (closed or never authenticated).
    #[error("connection {0} is not registered")]
    UnknownConnection(ConnId),
    /// Invalid topic name.
    #[error("invalid topic: {0}")]
    InvalidTopic(#[from] TopicError),
    /// The claims do not allow it.
    #[error("not allowed to subscribe to {0}")]
    PermissionDenied(TopicName),
    /// Topic lookup failed.
    #[error(transparent)]
    Topic(#[from] TopicAccessError),
    /// Subscribed already.
    #[error("already subscribed to {0}; unsubscribe first to restart from another offset")]
    AlreadySubscribed(TopicName),
    /// Not subscribed.
    #[error("not subscribed to {0}")]
    NotSubscribed(TopicName),
    /// `max_subscriptions_per_connection` reached.
    #[error("subscription limit reached: at most {0} subscriptions per connection")]
    TooManySubscriptions(usize),
    /// The topic's `max_subscribers` reached.
    #[error("topic {topic} has its maximum of {max} subscribers")]
    TopicFull {
        /// Topic.
        topic: TopicName,
        /// Its limit.
        max: usize,
    },
    /// The offset is past the topic's head.
    #[error("offset {offset} is beyond the head {head} of {topic}")]
    OffsetBeyondHead {
        /// Topic.
        topic: TopicName,
        /// Requested offset.
        offset: u64,
        /// The topic's next offset.
        head: u64,
    },
    /// `streams` and `stream_offsets` differ in length.
    #[error("stream_offsets has {offsets} entries but streams has {streams}")]
    OffsetsMismatch {
        /// Streams given.
        streams: usize,
        /// Offsets given.
        offsets: usize,
    },
    /// `data_source` or `session_key` is empty or not a single segment.
    #[error("invalid connection details: {0}")]
    InvalidDetails(String),
    /// `add_streams` without a data source on the connection.
    #[error("this connection has no data_source/session_key; connect with details first")]
    NoDataSource,
    /// Cluster mode: the broker is unreachable and the subscribe needs it (an offset older
    /// than this node holds). Retry later or on another node.
    #[error("{0}")]
    Unavailable(String),
}

impl SubscribeError {
    /// The wire error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::UnknownConnection(_) => ErrorCode::FailedPrecondition,
            Self::InvalidTopic(_)
            | Self::OffsetBeyondHead { .. }
            | Self::OffsetsMismatch { .. }
            | Self::InvalidDetails(_) => ErrorCode::InvalidArgument,
            Self::PermissionDenied(_) => ErrorCode::PermissionDenied,
            Self::Topic(TopicAccessError::Undeclared(_)) => ErrorCode::NotFound,
            Self::Topic(TopicAccessError::TooMany(_)) | Self::TooManySubscriptions(_) | Self::TopicFull { .. } => {
                ErrorCode::ResourceExhausted
            }
            Self::AlreadySubscribed(_) | Self::NotSubscribed(_) | Self::NoDataSource => ErrorCode::FailedPrecondition,
            Self::Unavailable(_) => ErrorCode::Unavailable,
        }
    }

    /// Which configured limit was hit, if any.
    pub fn limit(&self) -> Option<&'static str> {
        match self {
            Self::TooManySubscriptions(_) => Some("max_subscriptions_per_connection"),
            Self::TopicFull { .. } => Some("max_subscribers"),
            Self::Topic(TopicAccessError::TooMany(_)) => Some("max_topics"),
            _ => None,
        }
    }
}

/// Why a publish failed.
#[derive(Clone, thiserror::Error)]
pub enum PublishError {
    /// The publishing connection is not registered.
    #[error("connection {0} is not registered")]
    UnknownConnection(ConnId),
    /// Invalid topic name.
    #[error("invalid topic: {0}")]
    InvalidTopic(#[from] TopicError),
    /// The claims (or the topic's declared publishers) do not allow it.
    #[error("not allowed to publish to {0}")]
    PermissionDenied(TopicName),
    /// Topic lookup failed.
    #[error(transparent)]
    Topic(#[from] TopicAccessError),
    /// Payload over `max_message_size`.
    #[error("message of {size} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Payload size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// Publish rate exceeded.
    #[error("publish rate exceeded: at most {0} messages per second")]
    RateLimited(u32),
    /// A `reliable` + `apply_backpressure` subscriber is full: wait for its queue to drain
    /// (`OutboundQueue::wait_for_space`), then retry, until the policy's timeout.
    #[error("a subscriber of {topic} is full; publish delayed")]
    Backpressure {
        /// Topic.
        topic: TopicName,
        /// The full subscriber to wait on.
        waiting_for: Arc<dyn Connection>,
        /// How long the publisher may be delayed in total.
        timeout: Duration,
    },
    /// Backpressure lasted longer than the policy allows.
    #[error("subscribers of {0} did not drain in time; message not published")]
    BackpressureTimeout(TopicName),
    /// Cluster mode: the broker is unreachable, and the topic is `reliable` (a best-effort
    /// publish is delivered locally instead). Nothing was published; retry.
    #[error("{0}")]
    Unavailable(String),
}

impl std::fmt::Debug for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl PublishError {
    /// The wire error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::UnknownConnection(_) => ErrorCode::FailedPrecondition,
            Self::InvalidTopic(_) => ErrorCode::InvalidArgument,
            Self::PermissionDenied(_) => ErrorCode::PermissionDenied,
            Self::Topic(TopicAccessError::Undeclared(_)) => ErrorCode::NotFound,
            Self::Topic(TopicAccessError::TooMany(_))
            | Self::TooLarge { .. }
            | Self::Backpressure { .. }
            | Self::BackpressureTimeout(_) => ErrorCode::ResourceExhausted,
            Self::RateLimited(_) => ErrorCode::RateLimited,
            Self::Unavailable(_) => ErrorCode::Unavailable,
        }
    }

    /// Which configured limit was hit, if any.
    pub fn limit(&self) -> Option<&'static str> {
        match self {
            Self::TooLarge { .. } => Some("max_message_size"),
            Self::RateLimited(_) => Some("publish_rate_per_second"),
            Self::Topic(TopicAccessError::TooMany(_)) => Some("max_topics"),
            Self::Backpressure { .. } | Self::BackpressureTimeout(_) => Some("backpressure_timeout_ms"),
            _ => None,
        }
    }
}

/// The outcome of a publish.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// Offset assigned.
    pub offset: u64,
    /// The topic's epoch.
    pub epoch: u64,
    /// Subscribers whose queue took the message.
    pub delivered: usize,
    /// Subscribers for whom it (or an older message) was dropped.
    pub dropped: usize,
    /// Subscribers disconnected as slow consumers.
    pub disconnected: usize,
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
    /// Seed-000 details.
    pub details: ConnectionDetails,
    /// Last time-sync round trip, µs.
    pub rtt_us: Option<i64>,
    /// Last time-sync clock offset (client − server), µs.
    pub clock_offset_us: Option<i64>,
}

struct Client {
    conn: Arc<dyn Connection>,
    /// `None` once unregistered: a racing subscribe then fails instead of leaking.
    subs: Mutex<Option<HashMap<TopicName, Arc<Subscription>>>>,
    details: Mutex<ConnectionDetails>,
    client_id: Option<String>,
    publish_limiter: DefaultDirectRateLimiter,
    violations: Mutex<(Option<Instant>, u32)>,
}

/// Tracks connections and subscriptions and routes published messages to subscribers.
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
    backfill: DashMap<(ConnId, TopicName), Vec<super::history::HistEntry>>,
}

impl ConnectionManager {
    /// A manager for `config`.
    ///
    /// # Errors
    /// A message naming the first invalid topic declaration or policy.
    pub fn new(config: HubConfig) -> Result<Self, String> {
        let registry = TopicRegistry::new(config.topics).map_err(|(i, e)| {
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
        let rate = std::num::NonZeroU32::new(self.limits.publish_rate_per_second.max(1)).expect("nonzero");
        let burst = std::num::NonZeroU32::new(self.limits.publish_burst.max(1)).expect("nonzero");
        let client = Arc::new(Client {
            conn: conn.clone(),
            subs: Mutex::new(Some(HashMap::new())),
            details: Mutex::new(ConnectionDetails::default()),
            client_id: client_id.clone(),
            publish_limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
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

    /// Unregisters a connection and removes every subscription it had. Safe to call more than
    /// once and from any cause (close, error, timeout, kick). Returns false if it was not
    /// registered.
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
        for (name, sub) in subs {
            self.detach(&name, id);
            client.conn.core().outbound.purge(&sub);
        }
        client.conn.core().set_state(ConnState::Terminated);
        true
    }

    fn detach(&self, name: &TopicName, id: ConnId) {
        if let Some(topic) = self.registry.get(name) {
            let mut st = topic.state.lock();
            if let Some(pos) = st.subscribers.iter().position(|s| s.sub.conn_id == id) {
                st.subscribers.swap_remove(pos);
                self.subscriptions.fetch_sub(1, Relaxed);
            }
        }
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

    /// Facts about one connection (seed 000 "get connection").
    pub fn client_info(&self, id: ConnId) -> Option<ClientInfo> {
        self.client(id).map(|c| self.info_of(&c))
    }

    fn info_of(&self, c: &Client) -> ClientInfo {
        let core = c.conn.core();
        let subscriptions: Vec<SubscriptionStats> =
            c.subs.lock().as_ref().map(|m| m.values().map(|s| s.stats()).collect()).unwrap_or_default();
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

    /// The seed-000 details of a connection.
    pub fn connection_details(&self, id: ConnId) -> Option<ConnectionDetails> {
        self.client(id).map(|c| c.details.lock().clone())
    }

    /// Closes a connection with `reason` (seed 000 "close connection"). Returns whether it
    /// existed.
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

    /// Subscribes connection `id` to `topic`, replaying from `opts.offset` when given. The
    /// replay and the live stream meet without gap or duplicate because both happen under the
    /// topic's lock.
    ///
    /// # Errors
    /// [`SubscribeError`]; the connection stays usable.
    pub fn subscribe(
        &self,
        id: ConnId,
        topic: &TopicName,
        opts: SubscribeOptions,
        now: Now,
    ) -> Result<SubscriptionInfo, SubscribeError> {
        let client = self.client(id).ok_or(SubscribeError::UnknownConnection(id))?;
        if !client.conn.identity().can_subscribe(topic) {
            return Err(SubscribeError::PermissionDenied(topic.clone()));
        }
        let mut guard = client.subs.lock();
        let subs = guard.as_mut().ok_or(SubscribeError::UnknownConnection(id))?;
        if subs.contains_key(topic) {
            return Err(SubscribeError::AlreadySubscribed(topic.clone()));
        }
        if subs.len() >= self.limits.max_subscriptions_per_connection {
            drop(guard);
            self.record_violation(id, now);
            return Err(SubscribeError::TooManySubscriptions(self.limits.max_subscriptions_per_connection));
        }
        let (info, sub) = loop {
            let t = self.registry.get_or_create(topic)?;
            if let Some(r) = self.attach(&t, &client, opts, now)? {
                break r;
            }
        };
        subs.insert(topic.clone(), sub);
        self.subscriptions.fetch_add(1, Relaxed);
        Ok(info)
    }

    /// Adds the subscriber to the topic under its lock; `None` if the topic was swept meanwhile.
    fn attach(
        &self,
        t: &Topic,
        client: &Client,
        opts: SubscribeOptions,
        now: Now,
    ) -> Result<Option<(SubscriptionInfo, Arc<Subscription>)>, SubscribeError> {
        let mut st = t.state.lock();
        if st.dead {
            return Ok(None);
        }
        if let Some(max) = t.decl.as_ref().and_then(|d| d.max_subscribers) {
            if st.subscribers.len() >= max {
                return Err(SubscribeError::TopicFull { topic: t.name.clone(), max });
            }
        }
        st.history.trim(now.mono);
        let head = st.next_offset;
        let (start, recovered) = match opts.offset {
            None => (head, true),
            Some(_) if opts.epoch.is_some_and(|e| e != st.epoch) => {
                // Another epoch's offsets mean nothing here; everything retained is new to
                // this client, but what happened between its epoch and ours is lost.
                (st.history.first_offset().unwrap_or(head), false)
            }
            Some(o) if o > head => {
                return Err(SubscribeError::OffsetBeyondHead { topic: t.name.clone(), offset: o, head })
            }
            Some(o) => {
                let plan = st.history.plan(o, head);
                (plan.start, plan.recovered)
            }
        };
        // Cluster mode: records older than the mirror's history, fetched from the broker.
        let staged = self.backfill.remove(&(client.conn.id(), t.name.clone())).map(|(_, v)| v).unwrap_or_default();
        let (start, recovered, backfill) = match opts.offset {
            Some(o) if !recovered && !staged.is_empty() && opts.epoch.is_none_or(|e| e == st.epoch) => {
                let low = st.history.first_offset().unwrap_or(head);
                let want = o.max(1);
                let usable: Vec<&super::history::HistEntry> =
                    staged.iter().filter(|e| e.offset >= want && e.offset < low).collect();
                let contiguous = usable.first().is_some_and(|e| e.offset == want)
                    && usable.windows(2).all(|w| w[0].offset + 1 == w[1].offset)
                    && usable.last().is_some_and(|e| e.offset + 1 == low);
                if contiguous {
                    (want, true, usable)
                } else {
                    (start, recovered, Vec::new())
                }
            }
            _ => (start, recovered, Vec::new()),
        };
        let sub = Arc::new(Subscription::new(client.conn.id(), t.name.clone()));
        let lane = st.policy.lane();
        let mut replayed = 0;
        for e in backfill.into_iter().chain(st.history.from_offset(start)) {
            client.conn.core().outbound.push_replay(e.record.clone(), e.offset, &sub, lane);
            replayed += 1;
        }
        st.subscribers.push(Subscriber { conn: client.conn.clone(), sub: sub.clone() });
        let info =
            SubscriptionInfo { topic: t.name.to_string(), epoch: st.epoch, offset: start, head, replayed, recovered };
        Ok(Some((info, sub)))
    }

    /// Unsubscribes; queued messages of the topic are discarded.
    ///
    /// # Errors
    /// [`SubscribeError::NotSubscribed`] or [`SubscribeError::UnknownConnection`].
    pub fn unsubscribe(&self, id: ConnId, topic: &TopicName) -> Result<(), SubscribeError> {
        let client = self.client(id).ok_or(SubscribeError::UnknownConnection(id))?;
        let mut guard = client.subs.lock();
        let subs = guard.as_mut().ok_or(SubscribeError::UnknownConnection(id))?;
        let sub = subs.remove(topic).ok_or_else(|| SubscribeError::NotSubscribed(topic.clone()))?;
        self.detach(topic, id);
        drop(guard);
        client.conn.core().outbound.purge(&sub);
        Ok(())
    }

    /// The connections subscribed to `topic`.
    pub fn clients_for_topic(&self, topic: &TopicName) -> Vec<Arc<dyn Connection>> {
        self.registry
            .get(topic)
            .map(|t| t.state.lock().subscribers.iter().map(|s| s.conn.clone()).collect())
            .unwrap_or_default()
    }

    /// Topics a connection is subscribed to.
    pub fn topics_of(&self, id: ConnId) -> Vec<TopicName> {
        self.client(id).and_then(|c| c.subs.lock().as_ref().map(|m| m.keys().cloned().collect())).unwrap_or_default()
    }

    /// Publishes `payload` on `topic` from a trusted server-side source (no claims checked):
    /// assigns the next offset, appends to history and offers the once-encoded record to every
    /// subscriber under the topic's policy.
    ///
    /// # Errors
    /// [`PublishError`]; `Backpressure` asks the caller to wait and retry.
    pub fn route_data(
        &self,
        topic: &TopicName,
        payload: &[u8],
        flags: u8,
        now: Now,
    ) -> Result<PublishReport, PublishError> {
        self.publish_inner(topic, payload, flags, now)
    }

    /// Publishes on behalf of connection `id`: checks its claims, the topic's declared
    /// publishers, the message size and the connection's publish rate (the last two count as
    /// violations), then routes like [`Self::route_data`].
    ///
    /// # Errors
    /// [`PublishError`].
    pub fn publish_as(
        &self,
        id: ConnId,
        topic: &TopicName,
        payload: &[u8],
        flags: u8,
        now: Now,
    ) -> Result<PublishReport, PublishError> {
        self.authorize_publish(id, topic, payload.len(), now)?;
        self.publish_inner(topic, payload, flags, now)
    }

    /// The checks of [`Self::publish_as`] without the publish (cluster mode publishes through
    /// the broker): the connection's claims, the topic's declared publishers, the message size
    /// and the publish rate (the last two count as violations).
    ///
    /// # Errors
    /// [`PublishError`].
    pub fn authorize_publish(&self, id: ConnId, topic: &TopicName, len: usize, now: Now) -> Result<(), PublishError> {
        let client = self.client(id).ok_or(PublishError::UnknownConnection(id))?;
        let identity = client.conn.identity();
        if !identity.can_publish(topic) {
            return Err(PublishError::PermissionDenied(topic.clone()));
        }
        if let Some(allowed) = self.registry.declaration(topic).and_then(|d| d.publishers.as_ref()) {
            if !allowed.iter().any(|a| *a == identity.subject || a == "*") {
                return Err(PublishError::PermissionDenied(topic.clone()));
            }
        }
        if len > self.limits.max_message_size {
            self.record_violation(id, now);
            return Err(PublishError::TooLarge { size: len, max: self.limits.max_message_size });
        }
        if client.publish_limiter.check().is_err() {
            self.record_violation(id, now);
            return Err(PublishError::RateLimited(self.limits.publish_rate_per_second));
        }
        Ok(())
    }

    fn publish_inner(
        &self,
        name: &TopicName,
        payload: &[u8],
        flags: u8,
        now: Now,
    ) -> Result<PublishReport, PublishError> {
        // Encode before taking the topic lock; offset and epoch are patched in under it.
        let header =
            RecordHeader { flags, offset: 0, epoch: 0, timestamp_us: now.unix_us.max(0) as u64, topic: name.as_str() };
        let too_large = || PublishError::TooLarge { size: payload.len(), max: self.limits.max_message_size };
        let mut record = BytesMut::with_capacity(RECORD_HEADER_LEN + name.as_str().len() + payload.len());
        put_record_header(&mut record, &header, payload.len()).map_err(|_| too_large())?;
        record.put_slice(payload);
        loop {
            let t = self.registry.get_or_create(name)?;
            match self.route_locked(&t, &mut record, now)? {
                Some(report) => return Ok(report),
                None => continue,
            }
        }
    }

    fn route_locked(&self, t: &Topic, record: &mut BytesMut, now: Now) -> Result<Option<PublishReport>, PublishError> {
        let mut guard = t.state.lock();
        if guard.dead {
            return Ok(None);
        }
        let st = &mut *guard;
        if st.policy.applies_backpressure() {
            if let Some(full) =
                st.subscribers.iter().find(|s| !s.conn.core().outbound.has_room(&s.sub, &st.policy, record.len()))
            {
                let timeout = match st.policy {
                    DeliveryPolicy::Reliable { backpressure_timeout_ms, .. } => {
                        Duration::from_millis(backpressure_timeout_ms)
                    }
                    _ => Duration::ZERO,
                };
                return Err(PublishError::Backpressure {
                    topic: t.name.clone(),
                    waiting_for: full.conn.clone(),
                    timeout,
                });
            }
        }
        let offset = st.next_offset;
        st.next_offset += 1;
        record[8..16].copy_from_slice(&offset.to_be_bytes());
        record[16..24].copy_from_slice(&st.epoch.to_be_bytes());
        let record: Bytes = std::mem::take(record).freeze();
        Ok(Some(self.fan_out(t, guard, offset, record, now)))
    }

    /// Appends `record` (at `offset`, already the topic's last) to history and offers it to
    /// every subscriber under the topic's lock, which it releases before closing slow
    /// consumers.
    fn fan_out(
        &self,
        t: &Topic,
        mut guard: parking_lot::MutexGuard<'_, super::registry::TopicState>,
        offset: u64,
        record: Bytes,
        now: Now,
    ) -> PublishReport {
        let mut slow: Vec<Arc<dyn Connection>> = Vec::new();
        let st = &mut *guard;
        st.history.push(offset, now.mono, record.clone());
        let mut report = PublishReport { offset, epoch: st.epoch, ..Default::default() };
        for s in &st.subscribers {
            let outcome = s.conn.try_send(Delivery { record: &record, offset, sub: &s.sub, policy: &st.policy });
            match outcome {
                SendOutcome::Queued | SendOutcome::Coalesced => report.delivered += 1,
                SendOutcome::QueuedEvicting => {
                    report.delivered += 1;
                    report.dropped += 1;
                }
                SendOutcome::Dropped => report.dropped += 1,
                SendOutcome::Full => slow.push(s.conn.clone()),
                SendOutcome::Closed => {}
            }
        }
        st.published += 1;
        st.delivered += report.delivered as u64;
        let reliable = matches!(st.policy, DeliveryPolicy::Reliable { .. });
        drop(guard);
        report.disconnected = slow.len();
        t.counters.record(record.len(), report.delivered, reliable);
        self.account_publish(record.len(), &report, reliable);
        for conn in slow {
            self.counters.slow_consumer_disconnects.fetch_add(1, Relaxed);
            conn.close(
                CloseReason::SlowConsumer,
                "fell behind a reliable topic's queue bound; reconnect and resume from your last offset",
                &[],
            );
        }
        report
    }

    fn account_publish(&self, record_len: usize, report: &PublishReport, reliable: bool) {
        let c = &self.counters;
        c.messages_in.fetch_add(1, Relaxed);
        c.bytes_in.fetch_add(record_len as u64, Relaxed);
        c.deliveries.fetch_add(report.delivered as u64, Relaxed);
        if reliable {
            c.reliable_in.fetch_add(1, Relaxed);
            c.reliable_deliveries.fetch_add(report.delivered as u64, Relaxed);
        }
    }

    /// Replaces a topic's delivery policy; it applies from the next message. Creates the topic
    /// if it does not exist yet (subject to the topic rules).
    ///
    /// # Errors
    /// [`PolicyError`] naming the invalid field, or the topic could not be created.
    pub fn set_delivery_policy(&self, topic: &TopicName, policy: DeliveryPolicy) -> Result<(), SetPolicyError> {
        policy.validate()?;
        let t = self.registry.get_or_create(topic)?;
        t.state.lock().policy = policy;
        Ok(())
    }

    /// A topic's delivery policy (the one it would get, if it does not exist yet).
    pub fn delivery_policy(&self, topic: &TopicName) -> DeliveryPolicy {
        self.registry.policy_for(topic)
    }

    /// Facts about one topic.
    pub fn topic_info(&self, topic: &TopicName) -> Option<TopicInfo> {
        self.registry.get(topic).map(|t| t.info())
    }

    /// Counts a limit violation of connection `id` at `now`: enough within the window move it
    /// to `monitored_violation`, more close it with `violation` (seed 001 enforcement).
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

    /// The topics (with offsets) [`Self::open_streams`] would subscribe for `details`.
    ///
    /// # Errors
    /// As `open_streams` for bad details.
    pub fn stream_topics(details: &ConnectionDetails) -> Result<Vec<(TopicName, Option<u64>)>, SubscribeError> {
        let main = main_stream(details)?;
        let mut plan = stream_plan(&main, &details.streams, &details.stream_offsets)?;
        if !details.exclude_main_stream {
            plan.insert(0, (main, None));
        }
        Ok(plan)
    }

    /// The topics (with offsets) [`Self::add_streams`] would subscribe.
    ///
    /// # Errors
    /// As `add_streams`.
    pub fn added_stream_topics(
        &self,
        id: ConnId,
        streams: &[String],
        offsets: &[u64],
    ) -> Result<Vec<(TopicName, Option<u64>)>, SubscribeError> {
        let client = self.client(id).ok_or(SubscribeError::UnknownConnection(id))?;
        let d = client.details.lock();
        if d.data_source.is_empty() {
            return Err(SubscribeError::NoDataSource);
        }
        stream_plan(&main_stream(&d)?, streams, offsets)
    }

    /// Opens seed-000 streams on connect: `data_source/session_key/stream` from each stream's
    /// offset, plus the main stream `data_source/session_key` unless excluded. All or nothing:
    /// on error, what this call subscribed is undone.
    ///
    /// # Errors
    /// [`SubscribeError`] (mismatched lengths and bad names are `invalid_argument`).
    pub fn open_streams(
        &self,
        id: ConnId,
        details: &ConnectionDetails,
        now: Now,
    ) -> Result<Vec<SubscriptionInfo>, SubscribeError> {
        let client = self.client(id).ok_or(SubscribeError::UnknownConnection(id))?;
        let plan = Self::stream_topics(details)?;
        let infos = self.subscribe_all(id, &plan, now)?;
        *client.details.lock() = details.clone();
        Ok(infos)
    }

    /// Adds streams to the connection's data source and session (`add_streams`).
    ///
    /// # Errors
    /// [`SubscribeError`]; all or nothing.
    pub fn add_streams(
        &self,
        id: ConnId,
        streams: &[String],
        offsets: &[u64],
        now: Now,
    ) -> Result<Vec<SubscriptionInfo>, SubscribeError> {
        let client = self.client(id).ok_or(SubscribeError::UnknownConnection(id))?;
        let main = {
            let d = client.details.lock();
            if d.data_source.is_empty() {
                return Err(SubscribeError::NoDataSource);
            }
            main_stream(&d)?
        };
        let plan = stream_plan(&main, streams, offsets)?;
        let infos = self.subscribe_all(id, &plan, now)?;
        let mut d = client.details.lock();
        let had_offsets = !d.stream_offsets.is_empty() || !offsets.is_empty();
        for (i, s) in streams.iter().enumerate() {
            if had_offsets {
                let n = d.streams.len();
                d.stream_offsets.resize(n, 0);
                d.stream_offsets.push(offsets.get(i).copied().unwrap_or(0));
            }
            d.streams.push(s.clone());
        }
        Ok(infos)
    }

    /// Removes streams (`remove_streams`). Returns the topics unsubscribed.
    ///
    /// # Errors
    /// [`SubscribeError`] for a stream that is not open; nothing is removed then.
    pub fn remove_streams(&self, id: ConnId, streams: &[String]) -> Result<Vec<TopicName>, SubscribeError> {
        let client = self.client(id).ok_or(SubscribeError::UnknownConnection(id))?;
        let main = {
            let d = client.details.lock();
            if d.data_source.is_empty() {
                return Err(SubscribeError::NoDataSource);
            }
            main_stream(&d)?
        };
        let topics = stream_plan(&main, streams, &[])?.into_iter().map(|(t, _)| t).collect::<Vec<_>>();
        let open = self.topics_of(id);
        if let Some(missing) = topics.iter().find(|t| !open.contains(t)) {
            return Err(SubscribeError::NotSubscribed(missing.clone()));
        }
        for t in &topics {
            self.unsubscribe(id, t)?;
        }
        let mut d = client.details.lock();
        while let Some(pos) = d.streams.iter().position(|s| streams.contains(s)) {
            d.streams.remove(pos);
            if pos < d.stream_offsets.len() {
                d.stream_offsets.remove(pos);
            }
        }
        Ok(topics)
    }

    fn subscribe_all(
        &self,
        id: ConnId,
        plan: &[(TopicName, Option<u64>)],
        now: Now,
    ) -> Result<Vec<SubscriptionInfo>, SubscribeError> {
        let mut infos = Vec::with_capacity(plan.len());
        for (topic, offset) in plan {
            match self.subscribe(id, topic, SubscribeOptions { offset: *offset, epoch: None }, now) {
                Ok(info) => infos.push(info),
                Err(e) => {
                    for done in &infos {
                        if let Ok(t) = TopicName::new(&done.topic) {
                            let _ = self.unsubscribe(id, &t);
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(infos)
    }

    /// Removes idle topics (see [`TopicRegistry::sweep`]).
    pub fn sweep_topics(&self, now: Instant) -> usize {
        self.registry.sweep(now)
    }

    /// Seed 003 `GetConnectionStats`.
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
        ConnectionStats {
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

/// Why a policy change failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetPolicyError {
    /// The policy is invalid.
    #[error(transparent)]
    Invalid(#[from] PolicyError),
    /// The topic could not be created.
    #[error(transparent)]
    Topic(#[from] TopicAccessError),
}

fn main_stream(d: &ConnectionDetails) -> Result<TopicName, SubscribeError> {
    for (field, v) in [("data_source", &d.data_source), ("session_key", &d.session_key)] {
        if v.is_empty() || v.contains('/') {
            return Err(SubscribeError::InvalidDetails(format!("`{field}` must be one non-empty topic segment")));
        }
    }
    Ok(TopicName::new(&format!("{}/{}", d.data_source, d.session_key))?)
}

fn stream_plan(
    main: &TopicName,
    streams: &[String],
    offsets: &[u64],
) -> Result<Vec<(TopicName, Option<u64>)>, SubscribeError> {
    if !offsets.is_empty() && offsets.len() != streams.len() {
        return Err(SubscribeError::OffsetsMismatch { streams: streams.len(), offsets: offsets.len() });
    }
    streams
        .iter()
        .enumerate()
        .map(|(i, s)| Ok((TopicName::new(&format!("{main}/{s}"))?, offsets.get(i).copied())))
        .collect()
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

pub(crate) mod remote;
#[cfg(test)]
mod tests;

pub use remote::{encode_remote, RemoteOutcome, RemotePosition, RemoteRecord, MAX_PENDING};
