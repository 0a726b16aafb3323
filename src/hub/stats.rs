//! Hub-wide counters and the [`ConnectionStats`] snapshot.
//!
//! Counters are plain atomics bumped once per event (once per publish, not per subscriber,
//! where the hot path is concerned); the snapshot adds what is cheaper to count on demand
//! (connections by protocol and state).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use super::identity::ConnState;

/// Why a message was dropped for a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Best-effort queue full (`drop_oldest` eviction or `drop_newest`).
    QueueFull,
    /// Replaced by a newer message over a `rate_limited` topic's rate.
    Coalesced,
    /// Discarded because the connection closed with data still queued.
    Closed,
}

impl DropReason {
    const ALL: [DropReason; 3] = [Self::QueueFull, Self::Coalesced, Self::Closed];

    /// Name in stats and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::Coalesced => "coalesced",
            Self::Closed => "connection_closed",
        }
    }
}

/// Why authentication failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No token anywhere.
    Missing,
    /// Not a JWT, or its claims are malformed.
    Malformed,
    /// Signature does not verify.
    BadSignature,
    /// `exp` passed.
    Expired,
    /// `nbf` not reached.
    NotYetValid,
    /// Wrong `iss`.
    WrongIssuer,
    /// Wrong `aud`.
    WrongAudience,
    /// The first message was not `connect`, or none came in time.
    NoConnect,
    /// An HTTP API key (sessions, publish) is unknown.
    InvalidApiKey,
}

impl AuthFailure {
    const ALL: [AuthFailure; 9] = [
        Self::Missing,
        Self::Malformed,
        Self::BadSignature,
        Self::Expired,
        Self::NotYetValid,
        Self::WrongIssuer,
        Self::WrongAudience,
        Self::NoConnect,
        Self::InvalidApiKey,
    ];

    /// Name in stats, metrics and error messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing_token",
            Self::Malformed => "malformed_token",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::NoConnect => "no_connect",
            Self::InvalidApiKey => "invalid_api_key",
        }
    }
}

/// Hub-wide event counters.
#[derive(Debug, Default)]
pub struct Counters {
    pub(crate) messages_in: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) reliable_in: AtomicU64,
    pub(crate) deliveries: AtomicU64,
    pub(crate) reliable_deliveries: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    drops: [AtomicU64; 3],
    auth_failures: [AtomicU64; 9],
    pub(crate) slow_consumer_disconnects: AtomicU64,
    pub(crate) connections_accepted: AtomicU64,
    pub(crate) connections_rejected: AtomicU64,
    sessions_opened: AtomicU64,
    sessions_unauthenticated: AtomicU64,
    handshakes_refused: AtomicU64,
    pub(crate) violations: AtomicU64,
    /// Cluster mode: broker records never delivered here (missed on the channel and gone from
    /// the broker's history, or over the hold bound).
    pub(crate) broker_lost: AtomicU64,
    pending: [AtomicI64; 2],
}

impl Counters {
    pub(crate) fn record_drop(&self, reason: DropReason) {
        self.drops[reason as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn record_sent(&self, msgs: u64, bytes: u64) {
        self.messages_out.fetch_add(msgs, Relaxed);
        self.bytes_out.fetch_add(bytes, Relaxed);
    }

    /// Counts a failed authentication.
    pub fn record_auth_failure(&self, reason: AuthFailure) {
        self.auth_failures[reason as usize].fetch_add(1, Relaxed);
    }

    /// Counts a transport connection handed a session (authenticated later, or never).
    pub fn record_session_opened(&self) {
        self.sessions_opened.fetch_add(1, Relaxed);
    }

    /// Counts a session that ended without a successful `connect` (failed, timed out, or the
    /// peer left).
    pub fn record_session_unauthenticated(&self) {
        self.sessions_unauthenticated.fetch_add(1, Relaxed);
    }

    /// Counts a transport handshake refused before any session (a malformed WebSocket upgrade,
    /// an unsupported protocol version, a draining node).
    pub fn record_handshake_refused(&self) {
        self.handshakes_refused.fetch_add(1, Relaxed);
    }

    pub(crate) fn sessions(&self) -> (u64, u64, u64) {
        (
            self.sessions_opened.load(Relaxed),
            self.sessions_unauthenticated.load(Relaxed),
            self.handshakes_refused.load(Relaxed),
        )
    }

    pub(crate) fn pending_add(&self, state: ConnState, delta: i64) {
        if let Some(g) = self.pending.get(state as usize) {
            g.fetch_add(delta, Relaxed);
        }
    }

    pub(crate) fn pending(&self, state: ConnState) -> i64 {
        self.pending.get(state as usize).map_or(0, |g| g.load(Relaxed))
    }

    pub(crate) fn drops(&self) -> BTreeMap<&'static str, u64> {
        DropReason::ALL.iter().map(|r| (r.as_str(), self.drops[*r as usize].load(Relaxed))).collect()
    }

    pub(crate) fn auth_failures(&self) -> BTreeMap<&'static str, u64> {
        AuthFailure::ALL.iter().map(|r| (r.as_str(), self.auth_failures[*r as usize].load(Relaxed))).collect()
    }
}

/// A snapshot of the hub's connections and traffic.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Registered (authenticated) connections.
    pub active_connections: u64,
    /// Registered connections by protocol.
    pub connections_by_protocol: BTreeMap<&'static str, u64>,
    /// All connections by state, including not yet authenticated ones.
    pub connections_by_state: BTreeMap<&'static str, u64>,
    /// Connections accepted since start.
    pub connections_accepted: u64,
    /// Connections refused by a connection limit since start.
    pub connections_rejected: u64,
    /// Transport connections that got a session since start (authenticated or not).
    pub sessions_opened: u64,
    /// Of those, sessions that ended without authenticating (auth failure, auth timeout, or
    /// the peer left first); `auth_failures` has the failures by reason.
    pub sessions_unauthenticated: u64,
    /// Transport handshakes refused before any session (malformed WebSocket upgrade,
    /// unsupported protocol version, draining node).
    pub handshakes_refused: u64,
    /// Topics that exist now.
    pub topics: u64,
    /// Subscriptions that exist now.
    pub subscriptions: u64,
    /// Messages published into the hub.
    pub messages_in: u64,
    /// Payload bytes published into the hub.
    pub bytes_in: u64,
    /// Messages published on `reliable` topics ("essential packets read").
    pub reliable_messages_in: u64,
    /// Messages handed to subscriber queues.
    pub deliveries: u64,
    /// Of those, on `reliable` topics ("essential packets delivered").
    pub reliable_deliveries: u64,
    /// Messages written to sockets.
    pub messages_out: u64,
    /// Bytes written to sockets (including framing).
    pub bytes_out: u64,
    /// Dropped messages by reason.
    pub dropped: BTreeMap<&'static str, u64>,
    /// Subscribers disconnected as `slow_consumer`.
    pub slow_consumer_disconnects: u64,
    /// Failed authentications by reason.
    pub auth_failures: BTreeMap<&'static str, u64>,
    /// Limit violations recorded.
    pub violations: u64,
    /// Cluster mode: broker records this node never delivered (lost on its channel and gone
    /// from Redis history).
    pub broker_lost: u64,
}

/// Monotonic traffic counters of a metrics label: one per topic declaration, plus one
/// (`_other`) shared by every undeclared topic, so label cardinality is bounded by the config.
/// Bumped once per publish (not per subscriber), outside nothing but the topic's own lock.
#[derive(Debug, Default)]
pub struct TopicCounters {
    /// Messages published.
    pub published: AtomicU64,
    /// Deliveries handed to subscriber queues.
    pub delivered: AtomicU64,
    /// Of `published`, on `reliable` topics.
    pub reliable_published: AtomicU64,
    /// Of `delivered`, on `reliable` topics.
    pub reliable_delivered: AtomicU64,
    /// Record bytes published.
    pub bytes: AtomicU64,
}

impl TopicCounters {
    pub(crate) fn record(&self, bytes: usize, delivered: usize, reliable: bool) {
        self.published.fetch_add(1, Relaxed);
        self.delivered.fetch_add(delivered as u64, Relaxed);
        self.bytes.fetch_add(bytes as u64, Relaxed);
        if reliable {
            self.reliable_published.fetch_add(1, Relaxed);
            self.reliable_delivered.fetch_add(delivered as u64, Relaxed);
        }
    }
}
