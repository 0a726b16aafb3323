//! The protocol-agnostic connection: the [`Connection`] trait every transport implements, and
//! [`ConnCore`], the bookkeeping every transport embeds (identity, state, outbound queue,
//! counters).
//!
//! Nothing here touches a socket: a transport owns its socket and a writer task that drains
//! `ConnCore::outbound`; the hub only ever calls the non-blocking methods below.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;
use serde::Serialize;

use super::outbound::{Delivery, OutboundQueue, QueueLimits, SendOutcome};
use super::stats::Counters;
use super::topic::{any_matches, TopicName, TopicPattern};
use crate::protocol::control::ServerMsg;
use crate::protocol::CloseReason;

/// A connection id, unique for the life of the process (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The transport a connection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// WebSocket (`/ws`).
    WebSocket,
    /// WebRTC data channel.
    WebRtc,
    /// Raw TCP datagram protocol.
    Tcp,
    /// In-process connection (tests, benches, embedding).
    InProcess,
}

impl Protocol {
    /// Name used in stats, metrics and the admin API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::WebRtc => "webrtc",
            Self::Tcp => "tcp",
            Self::InProcess => "in_process",
        }
    }
}

/// Seed 001's connection states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum ConnState {
    /// Transport handshake in progress.
    Establishing = 0,
    /// Waiting for or checking credentials.
    Authenticating = 1,
    /// Authenticated and registered.
    Active = 2,
    /// Enforcement thresholds exceeded; further violations close it.
    MonitoredViolation = 3,
    /// Closing: final messages being written.
    Terminating = 4,
    /// Closed; resources released.
    Terminated = 5,
}

impl ConnState {
    /// All states, in lifecycle order.
    pub const ALL: [ConnState; 6] = [
        Self::Establishing,
        Self::Authenticating,
        Self::Active,
        Self::MonitoredViolation,
        Self::Terminating,
        Self::Terminated,
    ];

    /// Name used in stats and the admin API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Establishing => "establishing",
            Self::Authenticating => "authenticating",
            Self::Active => "active",
            Self::MonitoredViolation => "monitored_violation",
            Self::Terminating => "terminating",
            Self::Terminated => "terminated",
        }
    }

    fn from_u8(v: u8) -> Self {
        Self::ALL.get(v as usize).copied().unwrap_or(Self::Terminated)
    }
}

/// Who is on the other end, and what they may do: the result of authentication.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// Token subject (user or service id).
    pub subject: String,
    /// Topics this identity may subscribe to.
    pub subscribe: Vec<TopicPattern>,
    /// Topics this identity may publish to.
    pub publish: Vec<TopicPattern>,
    /// Token expiry, seconds since the UNIX epoch.
    pub expires_at: Option<u64>,
}

impl Identity {
    /// Whether the claims allow subscribing to `topic`.
    pub fn can_subscribe(&self, topic: &TopicName) -> bool {
        any_matches(&self.subscribe, topic)
    }

    /// Whether the claims allow publishing to `topic`.
    pub fn can_publish(&self, topic: &TopicName) -> bool {
        any_matches(&self.publish, topic)
    }
}

/// The time as the caller sees it: the hub never reads a clock.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Monotonic time, for ages and timeouts.
    pub mono: Instant,
    /// Wall-clock time in µs since the UNIX epoch, stamped into records.
    pub unix_us: i64,
}

/// Bookkeeping shared by every transport's connection.
#[derive(Debug)]
pub struct ConnCore {
    id: ConnId,
    protocol: Protocol,
    remote: SocketAddr,
    identity: RwLock<Arc<Identity>>,
    state: AtomicU8,
    /// The bounded outbound queue the transport's writer drains.
    pub outbound: OutboundQueue,
    connected_at_ms: u64,
    last_activity_ms: AtomicU64,
    sent_msgs: AtomicU64,
    sent_bytes: AtomicU64,
    rtt_us: AtomicI64,
    clock_offset_us: AtomicI64,
    counters: Arc<Counters>,
}

impl ConnCore {
    /// A new connection core in state `establishing`. Use
    /// [`super::ConnectionManager::new_core`], which assigns the id.
    pub(crate) fn new(
        id: ConnId,
        protocol: Protocol,
        remote: SocketAddr,
        limits: QueueLimits,
        now_unix_ms: u64,
        counters: Arc<Counters>,
    ) -> Self {
        counters.pending_add(ConnState::Establishing, 1);
        Self {
            id,
            protocol,
            remote,
            identity: RwLock::new(Arc::new(Identity::default())),
            state: AtomicU8::new(ConnState::Establishing as u8),
            outbound: OutboundQueue::new(limits, counters.clone()),
            connected_at_ms: now_unix_ms,
            last_activity_ms: AtomicU64::new(now_unix_ms),
            sent_msgs: AtomicU64::new(0),
            sent_bytes: AtomicU64::new(0),
            rtt_us: AtomicI64::new(-1),
            clock_offset_us: AtomicI64::new(0),
            counters,
        }
    }

    /// Moves the connection to `state`, keeping the pending-connection gauges right.
    pub fn set_state(&self, state: ConnState) {
        let old = ConnState::from_u8(self.state.swap(state as u8, Relaxed));
        if old == state {
            return;
        }
        let pending = |s| matches!(s, ConnState::Establishing | ConnState::Authenticating);
        if pending(old) {
            self.counters.pending_add(old, -1);
        }
        if pending(state) {
            self.counters.pending_add(state, 1);
        }
    }

    /// Replaces the identity (after authentication or a token refresh).
    pub fn set_identity(&self, identity: Identity) {
        *self.identity.write() = Arc::new(identity);
    }

    /// Records inbound activity (any frame) at `unix_ms`.
    pub fn touch(&self, unix_ms: u64) {
        self.last_activity_ms.store(unix_ms, Relaxed);
    }

    /// Last inbound activity, ms since the UNIX epoch.
    pub fn last_activity_ms(&self) -> u64 {
        self.last_activity_ms.load(Relaxed)
    }

    /// When the connection was accepted, ms since the UNIX epoch.
    pub fn connected_at_ms(&self) -> u64 {
        self.connected_at_ms
    }

    /// Records what the writer put on the wire.
    pub fn record_sent(&self, msgs: u64, bytes: u64) {
        self.sent_msgs.fetch_add(msgs, Relaxed);
        self.sent_bytes.fetch_add(bytes, Relaxed);
        self.counters.record_sent(msgs, bytes);
    }

    /// (messages, bytes) written so far.
    pub fn sent(&self) -> (u64, u64) {
        (self.sent_msgs.load(Relaxed), self.sent_bytes.load(Relaxed))
    }

    /// Records a time-sync result (µs).
    pub fn record_time_sync(&self, rtt_us: i64, offset_us: i64) {
        self.rtt_us.store(rtt_us, Relaxed);
        self.clock_offset_us.store(offset_us, Relaxed);
    }

    /// Last time-sync result: (RTT, clock offset) in µs; `None` before the first sync.
    pub fn time_sync(&self) -> Option<(i64, i64)> {
        let rtt = self.rtt_us.load(Relaxed);
        (rtt >= 0).then(|| (rtt, self.clock_offset_us.load(Relaxed)))
    }

    /// Hub-wide counters this connection reports into.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }
}

impl Drop for ConnCore {
    fn drop(&mut self) {
        self.set_state(ConnState::Terminated);
    }
}

/// A connection of any transport, as the hub sees it.
///
/// Every method is non-blocking. Transports embed a [`ConnCore`] and get the rest by default;
/// they override [`Connection::close`] only if closing needs more than telling their writer.
pub trait Connection: Send + Sync + 'static {
    /// The embedded bookkeeping.
    fn core(&self) -> &ConnCore;

    /// Process-unique id.
    fn id(&self) -> ConnId {
        self.core().id
    }

    /// Transport.
    fn protocol(&self) -> Protocol {
        self.core().protocol
    }

    /// Peer address.
    fn remote_addr(&self) -> SocketAddr {
        self.core().remote
    }

    /// Authenticated identity (empty before authentication).
    fn identity(&self) -> Arc<Identity> {
        self.core().identity.read().clone()
    }

    /// Lifecycle state.
    fn state(&self) -> ConnState {
        ConnState::from_u8(self.core().state.load(Relaxed))
    }

    /// Offers an encoded message record to the connection's bounded queue under the topic's
    /// policy. Never blocks; a full queue is an outcome, not an error.
    fn try_send(&self, delivery: Delivery<'_>) -> SendOutcome {
        self.core().outbound.push(delivery)
    }

    /// Queues a control message (JSON). Returns false when the connection is closing or its
    /// control lane is full (the caller should close it).
    fn send_control(&self, msg: &ServerMsg) -> bool {
        self.core().outbound.push_control(msg.to_bytes())
    }

    /// Starts closing: queues a `bye` for `reason` (with `reconnect` URLs when advised), stops
    /// accepting data (discarding what is queued unless the reason drains), and lets the
    /// writer finish. Idempotent: the first reason wins.
    fn close(&self, reason: CloseReason, message: &str, reconnect: &[String]) {
        let core = self.core();
        let bye = ServerMsg::Bye {
            reason,
            code: reason.close_code(),
            message: message.to_owned(),
            reconnect: if reason.reconnect_advised() { reconnect.to_vec() } else { Vec::new() },
        };
        if core.outbound.begin_close(reason, message, Some(bye.to_bytes())) {
            core.set_state(ConnState::Terminating);
        }
    }
}
