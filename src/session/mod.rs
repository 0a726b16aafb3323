//! The `fanhub.v1` session of one client, sans-IO: the protocol state machine every transport
//! runs, through one driver (`transport::driver`).
//!
//! A [`Session`] takes inputs — a decoded frame ([`Session::handle_input`]), the passage of
//! time ([`Session::handle_tick`]), the outcome of a command it asked for
//! ([`Session::handle_reply`]), the server shutting down — each with the `now` the caller read,
//! and yields [`Output`]s from [`Session::poll_output`]: a keep-alive to send, a close, or a
//! [`Command`] whose work needs IO (the cluster broker, WebRTC signaling, waiting for a full
//! subscriber to drain). [`Session::poll_timeout`] says when it next needs a tick. It reads no
//! clock, awaits nothing and owns no socket, so every timeout, expiry and rule is tested by
//! handing in a later `now`.
//!
//! Replies (welcome, subscribed, errors, …) go where every byte for the client goes: the
//! connection's bounded outbound queue, in order with the data records, through the hub's
//! [`Connection`]. While a command is out, the session takes no new input, so replies keep the
//! order of the requests.

mod ops;
#[cfg(test)]
mod tests;

use std::any::Any;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::auth::SessionManager;
use crate::config::SessionConfig;
use crate::hub::rate::RateLimit;
use crate::hub::{AuthFailure, ConnId, ConnState, Connection, ConnectionManager, Now, PublishError, SubscribeError};
use crate::hub::{SubscribeItem, SubscribeOptions, TopicName};
use crate::protocol::control::{ConnectionDetails, ServerMsg, SessionInfo};
use crate::protocol::{CloseReason, ErrorCode};

/// What the session was built with: its connection, the hub, and the rules it enforces.
#[derive(Debug, Clone)]
pub struct SessionParams {
    /// The client's connection (registered by a successful `connect`).
    pub conn: Arc<dyn Connection>,
    /// The hub.
    pub hub: Arc<ConnectionManager>,
    /// Token verification.
    pub auth: Arc<SessionManager>,
    /// Timeouts, keep-alive and time sync.
    pub config: SessionConfig,
    /// How long before a token's expiry the client is warned, seconds.
    pub expiry_warning_secs: u64,
    /// This node's id (in `welcome`).
    pub node_id: String,
    /// Cluster mode: publishes and subscribes-from-offset go through the broker
    /// ([`Command::Publish`], [`Command::Prepare`]).
    pub brokered: bool,
    /// The transport sends keep-alives the peer must answer (WebSocket pings), so silence
    /// means the peer is gone and the idle timeout applies. Transports with their own liveness
    /// check (WebRTC's ICE consent) say false.
    pub keepalive: bool,
    /// A token that came with the transport's accept (WebSocket upgrade header or query,
    /// WebRTC signaling): checked at once, and used by a `connect` without a token.
    pub accept_token: Option<String>,
}

/// An inbound frame, as the transport decoded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A text message: a JSON control op.
    Text(Bytes),
    /// A binary message: a publish frame.
    Binary(Bytes),
    /// Any other sign of life (a pong, a ping).
    Activity,
    /// The transport refused what the peer sent (a frame over the size limit, invalid UTF-8,
    /// a framing violation): the client is told and the connection closes.
    Violation {
        /// Why the connection closes.
        reason: CloseReason,
        /// The error code the client is told.
        code: ErrorCode,
        /// What was wrong.
        message: String,
        /// The configured limit that was exceeded, if one was.
        limit: Option<&'static str>,
    },
}

/// Something the driver must do for the session.
#[derive(Debug)]
pub enum Output {
    /// Send the transport's keep-alive (a WebSocket ping).
    KeepAlive,
    /// End the connection for `reason`. The session has queued whatever reply belongs before
    /// it; the driver sends the `bye` (with reconnect advice where the reason calls for it,
    /// none for `normal`) and the close.
    Close {
        /// Why.
        reason: CloseReason,
        /// Detail for the `bye` and the close frame.
        message: String,
    },
    /// Work that needs IO; its outcome comes back through [`Session::handle_reply`]. No input
    /// is taken until then.
    Command(Command),
}

/// Work the session needs done outside it.
#[derive(Debug)]
pub enum Command {
    /// Cluster mode: ready these topics for a subscribe (join their channels, stage broker
    /// history for old offsets). Answer: [`Reply::Prepared`].
    Prepare {
        /// The connection subscribing.
        conn: ConnId,
        /// The topics, with the offsets and epochs asked for.
        items: Vec<SubscribeItem>,
    },
    /// Cluster mode: publish through the broker; the broker answers the client itself.
    /// Answer: [`Reply::Enqueued`].
    Publish {
        /// The publisher.
        conn: Arc<dyn Connection>,
        /// Its request id.
        id: Option<u64>,
        /// Topic.
        topic: TopicName,
        /// Payload.
        payload: Bytes,
        /// Record flags.
        flags: u8,
        /// Which of the connection's publishes this is (for an error without a request id).
        seq: u64,
    },
    /// Cluster mode, shutting down: wait until the broker has answered every publish this node
    /// queued before now. Answer: [`Reply::Flushed`].
    Flush,
    /// A `reliable` + `apply_backpressure` subscriber is full: wait until its queue drains.
    /// Answer: [`Reply::SpaceFreed`]. (The session's own deadline ends the wait if it comes
    /// first.)
    WaitForSpace(Arc<dyn Connection>),
    /// WebRTC signaling: a new peer for this SDP offer, authenticated by the session's token.
    /// Answer: [`Reply::RtcAnswer`].
    RtcOffer {
        /// The SDP offer.
        sdp: String,
        /// The token the session authenticated with.
        token: String,
    },
    /// WebRTC signaling: a trickled candidate for a session this subject created. Answer:
    /// [`Reply::RtcCandidateAdded`].
    RtcCandidate {
        /// The WebRTC session.
        session: u64,
        /// The `candidate:` line.
        candidate: String,
        /// Who asks.
        subject: String,
    },
}

/// What a refused signaling request is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalError {
    /// Wire code.
    pub code: ErrorCode,
    /// Message.
    pub message: String,
}

/// The outcome of a [`Command`].
#[derive(Debug)]
pub enum Reply {
    /// [`Command::Prepare`] is done; keep the guard until the subscribe attached.
    Prepared(Result<Box<dyn Any + Send>, SubscribeError>),
    /// [`Command::Publish`] was queued (or refused).
    Enqueued(Result<(), PublishError>),
    /// [`Command::WaitForSpace`]: the subscriber drained something.
    SpaceFreed,
    /// [`Command::Flush`]: the broker answered everything queued before it.
    Flushed,
    /// [`Command::RtcOffer`]: the SDP answer and the new session's id.
    RtcAnswer(Result<(String, u64), SignalError>),
    /// [`Command::RtcCandidate`] was applied.
    RtcCandidateAdded(Result<(), SignalError>),
}

/// An operation waiting for a command's reply.
#[derive(Debug)]
enum Pending {
    Connect { id: Option<u64>, token: String, session: SessionInfo, details: ConnectionDetails },
    Subscribe { id: Option<u64>, topic: TopicName, opts: SubscribeOptions },
    AddStreams { id: Option<u64>, streams: Vec<String>, offsets: Vec<u64>, epochs: Vec<u64> },
    Publish(PendingPublish),
    Enqueue { id: Option<u64>, topic: TopicName, seq: u64 },
    RtcOffer { id: Option<u64> },
    RtcCandidate { id: Option<u64>, session: u64 },
    Flush,
}

/// A publish waiting for a full subscriber (memory mode, `apply_backpressure`).
#[derive(Debug)]
struct PendingPublish {
    id: Option<u64>,
    seq: u64,
    topic: TopicName,
    payload: Bytes,
    flags: u8,
    deadline: Instant,
}

/// One client's protocol state.
#[derive(Debug)]
pub struct Session {
    p: SessionParams,
    /// The token the connection authenticated with (or refreshed to): WebRTC sessions created
    /// over this connection use it.
    token: Option<String>,
    registered: bool,
    /// The token's expiry, seconds since the UNIX epoch: the identity's, kept here so that
    /// `poll_timeout`, run after every frame, takes no lock.
    expires_at: Option<u64>,
    expiry_warned: bool,
    sync_seq: u64,
    /// Answered server-initiated time syncs of the last `clock_offset_window_ms`: when, and the
    /// absolute clock offset (µs). Kept only while `max_clock_offset_ms` is on.
    clock_offsets: VecDeque<(Instant, u64)>,
    /// Publishes read so far (binary frames and JSON `publish` ops): an error about one
    /// carries its number as `publish_seq`.
    publishes: u64,
    /// The publish byte rate (`limits.publish_bytes_per_second`), when it is on: payload bytes
    /// on the passed-in `now`, from a full bucket at the accept.
    publish_bytes: Option<RateLimit>,
    /// A publish went to the broker: at shutdown, its answer is awaited before the `bye`.
    enqueued_any: bool,
    /// The server is shutting down: frames already received are answered `unavailable`,
    /// then the session closes.
    shutting_down: bool,
    /// Frames read since the shutdown (bounded by [`MAX_SHUTDOWN_DRAIN`]).
    drained: usize,
    started: Instant,
    last_activity: Instant,
    next_keepalive: Option<Instant>,
    next_sync: Option<Instant>,
    /// Since when the control lane has been at its high-water mark (replies not read).
    backlogged_since: Option<Instant>,
    pending: Option<Pending>,
    outputs: VecDeque<Output>,
    closed: bool,
    /// The latest `now` handed in (token expiry is on the wall clock; deadlines are mapped to
    /// the monotonic clock through it).
    now: Now,
}

/// What the session is waiting for before it takes the next frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Nothing: read the next frame.
    Input,
    /// The reply to the command it emitted.
    Reply,
    /// The client's replies to be written: fewer than this many queued.
    Backlog(usize),
    /// Shutting down: read the frames already received (without waiting for more) and hand
    /// them in; when none is left, call [`Session::handle_drained`].
    Drain,
    /// It has closed: stop.
    Closed,
}

/// Most frames read after the shutdown signal before the session closes regardless.
pub const MAX_SHUTDOWN_DRAIN: usize = 1024;

impl Session {
    /// A session for a connection the transport just accepted at `now`, not yet
    /// authenticated. A token that came with the accept is checked at once; a bad one closes
    /// the session before any frame.
    pub fn new(p: SessionParams, now: Now) -> Self {
        p.conn.core().set_state(ConnState::Authenticating);
        let keepalive = p.keepalive.then(|| now.mono + Duration::from_millis(p.config.ping_interval_ms));
        let limits = p.hub.limits();
        let publish_bytes = (limits.publish_bytes_per_second > 0)
            .then(|| RateLimit::new(limits.publish_bytes_per_second, limits.effective_publish_bytes_burst(), now.mono));
        let mut s = Self {
            p,
            token: None,
            registered: false,
            expires_at: None,
            expiry_warned: false,
            sync_seq: 0,
            clock_offsets: VecDeque::new(),
            publishes: 0,
            publish_bytes,
            enqueued_any: false,
            shutting_down: false,
            drained: 0,
            started: now.mono,
            last_activity: now.mono,
            next_keepalive: keepalive,
            next_sync: None,
            backlogged_since: None,
            pending: None,
            outputs: VecDeque::new(),
            closed: false,
            now,
        };
        if let Some(t) = s.p.accept_token.clone() {
            if let Err(e) = s.p.auth.verify(&t, now.unix_secs()) {
                s.auth_failed(None, e.reason, &e.detail);
            }
        }
        s
    }

    /// The connection.
    pub fn conn(&self) -> &Arc<dyn Connection> {
        &self.p.conn
    }

    /// Whether `connect` succeeded.
    pub fn is_registered(&self) -> bool {
        self.registered
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// What the session waits for before the next frame.
    pub fn waiting(&self) -> Waiting {
        if self.closed {
            Waiting::Closed
        } else if self.pending.is_some() {
            Waiting::Reply
        } else if self.shutting_down {
            Waiting::Drain
        } else if self.p.conn.core().outbound.control_len() >= self.high_water() {
            Waiting::Backlog(self.high_water())
        } else {
            Waiting::Input
        }
    }

    /// Requests are read only while their replies keep up: past this many queued replies the
    /// driver waits for the writer (backpressure on a pipelining client, not a disconnect).
    fn high_water(&self) -> usize {
        (self.p.hub.limits().queue.max_control / 2).max(1)
    }

    /// When the session next needs [`Self::handle_tick`]: the earliest of the auth deadline,
    /// the keep-alive, the idle timeout, time sync, the token's expiry warning and expiry, a
    /// publisher's backpressure deadline, a stalled client's deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed || self.shutting_down {
            return None;
        }
        let c = &self.p.config;
        let mut t: Option<Instant> = None;
        let mut at = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        at(self.awaiting_connect().then(|| self.started + Duration::from_millis(c.auth_timeout_ms)));
        at(self.next_keepalive);
        // Silence counts only while the session reads: waiting for a reply or for the client to
        // read its replies has deadlines of its own.
        let reading = self.pending.is_none() && self.backlogged_since.is_none();
        at((self.p.keepalive && reading).then(|| self.last_activity + Duration::from_millis(c.idle_timeout_ms)));
        at(self.next_sync);
        at(self.expiry_deadline());
        if let Some(Pending::Publish(p)) = &self.pending {
            at(Some(p.deadline));
        }
        at(self.backlogged_since.map(|s| s + Duration::from_millis(c.idle_timeout_ms)));
        t
    }

    /// No valid `connect` yet (one being completed — its streams being prepared in cluster
    /// mode — has arrived in time).
    fn awaiting_connect(&self) -> bool {
        !self.registered && !matches!(self.pending, Some(Pending::Connect { .. }))
    }

    fn expiry_deadline(&self) -> Option<Instant> {
        if !self.registered {
            return None;
        }
        let exp_ms = self.expires_at?.saturating_mul(1000);
        let warn_ms = exp_ms.saturating_sub(self.p.expiry_warning_secs * 1000);
        let target = if self.expiry_warned { exp_ms } else { warn_ms };
        Some(self.now.mono_at_unix_ms(target))
    }

    /// A frame from the client.
    pub fn handle_input(&mut self, input: Input, now: Now) {
        self.now = now;
        if self.closed {
            return;
        }
        self.last_activity = now.mono;
        self.p.conn.core().touch(now.unix_ms());
        if self.shutting_down {
            return self.refuse_after_shutdown(input);
        }
        match input {
            Input::Text(text) => self.handle_text(&text, now),
            Input::Binary(frame) => self.handle_binary(frame, now),
            Input::Activity => {}
            Input::Violation { reason, code, message, limit } => {
                let _ = self.p.conn.send_control(&ServerMsg::Error {
                    id: None,
                    code,
                    message: message.clone(),
                    topic: None,
                    limit: limit.map(str::to_owned),
                    publish_seq: None,
                    retry_after_ms: None,
                });
                self.close(reason, message);
            }
        }
    }

    /// Time passed: runs every duty that is due at `now`.
    pub fn handle_tick(&mut self, now: Now) {
        self.now = now;
        if self.closed {
            return;
        }
        let c = self.p.config.clone();
        if self.awaiting_connect() && now.mono >= self.started + Duration::from_millis(c.auth_timeout_ms) {
            self.p.hub.counters().record_auth_failure(AuthFailure::NoConnect);
            let msg = format!("no_connect: no connect within {} ms", c.auth_timeout_ms);
            let _ = self.p.conn.send_control(&ServerMsg::error(None, ErrorCode::Unauthenticated, msg.clone()));
            return self.close(CloseReason::Unauthenticated, msg);
        }
        if let Some(Pending::Publish(p)) = &self.pending {
            if now.mono >= p.deadline {
                let Some(Pending::Publish(p)) = self.pending.take() else { unreachable!() };
                let e = PublishError::BackpressureTimeout(p.topic.clone());
                self.publish_failed(p.id, &p.topic, p.seq, &e);
            }
        }
        let backlogged = self.p.conn.core().outbound.control_len() >= self.high_water();
        self.backlogged_since = if backlogged { Some(self.backlogged_since.unwrap_or(now.mono)) } else { None };
        if let Some(since) = self.backlogged_since {
            if now.mono.saturating_duration_since(since) >= Duration::from_millis(c.idle_timeout_ms) {
                // Replies have not moved for a whole idle timeout: the client is not reading.
                return self.close(CloseReason::SlowConsumer, "control replies are not being read".into());
            }
        }
        // Silence is the peer's fault only while the session is reading.
        if self.p.keepalive && !backlogged && self.pending.is_none() {
            let idle = now.mono.saturating_duration_since(self.last_activity);
            if idle >= Duration::from_millis(c.idle_timeout_ms) {
                return self.close(CloseReason::IdleTimeout, format!("nothing received for {} ms", idle.as_millis()));
            }
        }
        if let Some(t) = self.next_keepalive.filter(|t| now.mono >= *t) {
            self.next_keepalive = Some(next_period(t, Duration::from_millis(c.ping_interval_ms), now.mono));
            self.outputs.push_back(Output::KeepAlive);
        }
        if self.registered {
            self.check_expiry(now);
            if self.closed {
                return;
            }
            if let Some(t) = self.next_sync.filter(|t| now.mono >= *t) {
                self.next_sync = Some(next_period(t, Duration::from_millis(c.time_sync_interval_ms), now.mono));
                self.sync_seq += 1;
                self.reply(&ServerMsg::TimeSyncRequest { seq: self.sync_seq, t1: now.unix_us });
            }
        }
    }

    /// Averages the absolute clock offsets answered within `session.clock_offset_window_ms`;
    /// above `session.max_clock_offset_ms` the connection moves to `monitored_violation` and
    /// is closed (`violation`), without a warning first.
    pub(super) fn enforce_clock_offset(&mut self, offset_us: i64, now: Now) {
        let c = &self.p.config;
        if c.max_clock_offset_ms == 0 {
            return;
        }
        let window = Duration::from_millis(c.clock_offset_window_ms);
        self.clock_offsets.push_back((now.mono, offset_us.unsigned_abs()));
        while self.clock_offsets.front().is_some_and(|(t, _)| now.mono.saturating_duration_since(*t) > window) {
            self.clock_offsets.pop_front();
        }
        let n = self.clock_offsets.len() as u64;
        let average_us = self.clock_offsets.iter().map(|(_, o)| o).sum::<u64>() / n.max(1);
        if average_us > c.max_clock_offset_ms * 1000 {
            self.p.conn.core().set_state(crate::hub::ConnState::MonitoredViolation);
            self.p.hub.counters().violations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let message = format!(
                "clock offset averages {:.1} ms over the last {} s ({n} time syncs); the limit is \
                 session.max_clock_offset_ms = {}",
                average_us as f64 / 1000.0,
                window.as_secs(),
                c.max_clock_offset_ms
            );
            self.close(CloseReason::Violation, message);
        }
    }

    fn check_expiry(&mut self, now: Now) {
        let Some(exp) = self.expires_at else { return };
        let now_ms = now.unix_ms();
        let exp_ms = exp.saturating_mul(1000);
        if now_ms >= exp_ms {
            if !self.expiry_warned {
                // The warning window passed unseen (a late tick): the client is still told,
                // before the bye.
                self.expiry_warned = true;
                self.reply(&ServerMsg::TokenExpiring { expires_at: exp, in_ms: 0 });
            }
            return self.close(CloseReason::TokenExpired, "the token expired and was not refreshed".into());
        }
        let warn_ms = self.p.expiry_warning_secs * 1000;
        if !self.expiry_warned && exp_ms - now_ms <= warn_ms {
            self.expiry_warned = true;
            self.reply(&ServerMsg::TokenExpiring { expires_at: exp, in_ms: exp_ms - now_ms });
        }
    }

    /// The server is shutting down. Every request the session has read gets an answer before
    /// the `bye`: the op waiting for a command is answered `unavailable` (not carried out),
    /// the frames the transport has already received are read and answered `unavailable`
    /// ([`Waiting::Drain`]), and in cluster mode the broker's answers to the publishes queued
    /// before are awaited ([`Command::Flush`]). Then the session closes with `shutdown`.
    pub fn handle_shutdown(&mut self, now: Now) {
        self.now = now;
        if self.closed || self.shutting_down {
            return;
        }
        if !self.registered {
            if let Some(Pending::Connect { id, .. }) = self.pending.take() {
                self.error(id, ErrorCode::Unavailable, SHUTTING_DOWN);
            }
            return self.close(CloseReason::Shutdown, "server shutting down".into());
        }
        self.shutting_down = true;
        match self.pending.take() {
            None | Some(Pending::Flush) => {}
            Some(Pending::Publish(p)) => self.publish_failed(p.id, &p.topic, p.seq, &shutting_down()),
            Some(Pending::Enqueue { id, topic, seq }) => self.publish_failed(id, &topic, seq, &shutting_down()),
            Some(Pending::Subscribe { id, topic, .. }) => {
                self.error_full(id, ErrorCode::Unavailable, SHUTTING_DOWN.into(), Some(topic.to_string()), None);
            }
            Some(
                Pending::Connect { id, .. }
                | Pending::AddStreams { id, .. }
                | Pending::RtcOffer { id }
                | Pending::RtcCandidate { id, .. },
            ) => self.error(id, ErrorCode::Unavailable, SHUTTING_DOWN),
        }
    }

    /// Shutting down, and no frame the transport received is left unread: closes, once the
    /// broker has answered this connection's publishes (cluster mode).
    pub fn handle_drained(&mut self, now: Now) {
        self.now = now;
        if self.closed || !self.shutting_down || self.pending.is_some() {
            return;
        }
        if std::mem::take(&mut self.enqueued_any) {
            return self.command(Pending::Flush, Command::Flush);
        }
        self.close(CloseReason::Shutdown, "server shutting down".into());
    }

    /// A frame read after the shutdown signal: a request is answered `unavailable` (nothing is
    /// carried out), anything else is ignored.
    fn refuse_after_shutdown(&mut self, input: Input) {
        self.drained += 1;
        match input {
            Input::Text(text) => match crate::protocol::control::parse_client_op(&text) {
                Ok(crate::protocol::control::ClientOp::Publish { id, topic, .. }) => {
                    self.publishes += 1;
                    let detail = (ErrorCode::Unavailable, SHUTTING_DOWN.to_owned(), Some(topic), None);
                    self.publish_error(id, self.publishes, detail);
                }
                Ok(op) if op.id().is_some() => self.error(op.id(), ErrorCode::Unavailable, SHUTTING_DOWN),
                Ok(_) => {}
                Err(e) if e.op.as_deref() == Some("publish") => {
                    self.publishes += 1;
                    let detail = (ErrorCode::Unavailable, SHUTTING_DOWN.to_owned(), None, None);
                    self.publish_error(e.id, self.publishes, detail);
                }
                Err(e) => self.error(e.id, ErrorCode::Unavailable, SHUTTING_DOWN),
            },
            Input::Binary(frame) => {
                self.publishes += 1;
                let p = crate::protocol::frame::decode_publish(&frame).ok();
                let id = p.as_ref().and_then(|p| (p.request_id != 0).then_some(u64::from(p.request_id)));
                let topic = p.map(|p| p.topic);
                self.publish_error(id, self.publishes, (ErrorCode::Unavailable, SHUTTING_DOWN.to_owned(), topic, None));
            }
            Input::Activity | Input::Violation { .. } => {}
        }
        if self.drained >= MAX_SHUTDOWN_DRAIN {
            self.handle_drained(self.now);
        }
    }

    /// The outcome of the command the session emitted last.
    pub fn handle_reply(&mut self, reply: Reply, now: Now) {
        self.now = now;
        let Some(pending) = self.pending.take() else { return };
        if self.closed {
            return;
        }
        self.resume(pending, reply, now);
    }

    fn close(&mut self, reason: CloseReason, message: String) {
        if !self.closed {
            self.closed = true;
            self.pending = None;
            self.outputs.push_back(Output::Close { reason, message });
        }
    }

    fn reply(&mut self, msg: &ServerMsg) {
        let outbound = &self.p.conn.core().outbound;
        if !self.p.conn.send_control(msg) && outbound.closing().is_none() {
            // The control lane is full: the client sends requests but does not read replies.
            return self.close(CloseReason::SlowConsumer, "control replies are not being read".into());
        }
        if self.backlogged_since.is_none() && outbound.control_len() >= self.high_water() {
            // From now on the driver reads nothing until the writer catches up; a client that
            // never reads its replies is closed an idle timeout later (see `handle_tick`).
            self.backlogged_since = Some(self.now.mono);
        }
    }

    fn error(&mut self, id: Option<u64>, code: ErrorCode, message: impl Into<String>) {
        self.reply(&ServerMsg::error(id, code, message));
    }

    fn error_full(
        &mut self,
        id: Option<u64>,
        code: ErrorCode,
        message: String,
        topic: Option<String>,
        limit: Option<&str>,
    ) {
        self.reply(&ServerMsg::Error {
            id,
            code,
            message,
            topic,
            limit: limit.map(str::to_owned),
            publish_seq: None,
            retry_after_ms: None,
        });
    }

    /// Fails authentication: counts it, tells the client, closes.
    fn auth_failed(&mut self, id: Option<u64>, reason: AuthFailure, detail: &str) {
        self.p.hub.counters().record_auth_failure(reason);
        let message = format!("{}: {detail}", reason.as_str());
        let _ = self.p.conn.send_control(&ServerMsg::error(id, ErrorCode::Unauthenticated, message.clone()));
        self.close(CloseReason::Unauthenticated, message);
    }

    fn command(&mut self, pending: Pending, command: Command) {
        self.pending = Some(pending);
        self.outputs.push_back(Output::Command(command));
    }
}

/// What a request read during shutdown is answered with.
const SHUTTING_DOWN: &str = "the server is shutting down: not carried out (publish again on another node)";

fn shutting_down() -> PublishError {
    PublishError::unavailable(SHUTTING_DOWN)
}

/// The next run of a periodic duty that was due at `due` and ran at `now`: one period on, or
/// one period from now when it ran late (missed runs are not made up).
fn next_period(due: Instant, period: Duration, now: Instant) -> Instant {
    if due + period <= now {
        now + period
    } else {
        due + period
    }
}
