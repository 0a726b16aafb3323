//! The protocol-agnostic connection: the [`Connection`] trait every transport implements, and
//! [`ConnCore`], the bookkeeping every transport embeds (identity, state, outbound queue,
//! counters).
//!
//! Nothing here touches a socket or a runtime. The hub reaches a connection only through the
//! trait: it offers records and control messages to the bounded queue, and when the queue goes
//! from empty to non-empty (or closing begins) it calls [`Connection::wake`], whose meaning is
//! the transport's own (notify a writer task, schedule a WebRTC driver, …).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;

use super::identity::{ConnId, ConnState, Identity, Protocol};
use super::outbound::{CloseInfo, Delivery, OutboundQueue, QueueLimits, SendOutcome};
use super::policy::Lane;
use super::stats::Counters;
use super::subscription::Subscription;
use crate::protocol::control::ServerMsg;
use crate::protocol::CloseReason;

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

    /// Process-unique id.
    pub fn id(&self) -> ConnId {
        self.id
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
/// Every method is non-blocking. A transport embeds a [`ConnCore`] and says how its writer is
/// woken ([`Connection::wake`]); everything else is provided, and every push into the queue
/// goes through these methods so that no wake-up is ever missed.
pub trait Connection: Send + Sync + std::fmt::Debug + 'static {
    /// The embedded bookkeeping.
    fn core(&self) -> &ConnCore;

    /// The queue went from empty to non-empty, or closing began: the transport's writer should
    /// drain it. Called on the publish path with the topic's lock held: it must not block and
    /// must not call back into the hub (notify a task, send a command).
    fn wake(&self);

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
        let pushed = self.core().outbound.push(delivery);
        if pushed.wake {
            self.wake();
        }
        pushed.outcome
    }

    /// Queues a record replayed from history (bounds do not apply: history holds the bytes).
    fn replay(&self, record: Bytes, offset: u64, sub: &Arc<Subscription>, lane: Lane) {
        if self.core().outbound.push_replay(record, offset, sub, lane) {
            self.wake();
        }
    }

    /// Queues a control message (JSON). Returns false when the connection is closing or its
    /// control lane is full (the caller should close it).
    fn send_control(&self, msg: &ServerMsg) -> bool {
        match self.core().outbound.push_control(msg.to_bytes()) {
            Some(wake) => {
                if wake {
                    self.wake();
                }
                true
            }
            None => false,
        }
    }

    /// Queues bytes the transport framed itself (a WebSocket ping, pong or close echo) on the
    /// control lane, even while closing. Returns false when the lane is full or finished.
    fn send_raw(&self, raw: Bytes) -> bool {
        match self.core().outbound.push_raw(raw) {
            Some(wake) => {
                if wake {
                    self.wake();
                }
                true
            }
            None => false,
        }
    }

    /// Starts closing: queues a `bye` for `reason` (with `reconnect` URLs when advised), stops
    /// accepting data (discarding what is queued unless the reason drains), and lets the
    /// writer finish. Idempotent: the first reason wins.
    fn close(&self, reason: CloseReason, message: &str, reconnect: &[String]) {
        let bye = ServerMsg::Bye {
            reason,
            code: reason.close_code(),
            message: message.to_owned(),
            reconnect: if reason.reconnect_advised() { reconnect.to_vec() } else { Vec::new() },
        };
        self.close_with(CloseInfo::new(reason, message), Some(bye.to_bytes()));
    }

    /// Starts closing without a `bye` message (or with one of the caller's), with full
    /// control over the close frame. Idempotent: the first close wins.
    fn close_with(&self, info: CloseInfo, bye: Option<Bytes>) {
        let core = self.core();
        if core.outbound.begin_close(info, bye) {
            core.set_state(ConnState::Terminating);
            self.wake();
        }
    }
}
