//! The client's task: owns the connection (WebSocket, WebRTC or raw TCP), (re)connects, resubscribes, routes records and
//! answers, and follows the hub's `bye` and reconnect advice. One per [`super::Client`].

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::breaker::{Breaker, CircuitState};
use super::link::{Frame, Link, OpenError};
use super::resume::{Position, Verdict};
use super::{ClientError, ClientOptions, Event, From, Message, Published, Status};
use crate::protocol::control::{ServerMsg, SubscriptionInfo};
use crate::protocol::frame::{decode_records, encode_publish, RecordRef, FLAG_JSON};
use crate::protocol::{CloseReason, ErrorCode};

/// Longest a `close` waits for the hub's `closed` after its `bye`.
const BYE_WAIT: Duration = Duration::from_secs(2);

/// Most times one rate-limited publish is sent again.
const MAX_RATE_RETRIES: u32 = 8;

type Reply<T> = oneshot::Sender<Result<T, ClientError>>;

/// A request from a handle.
#[derive(Debug)]
pub(super) enum Cmd {
    Subscribe {
        topic: String,
        from: From,
        events: mpsc::Sender<Event>,
        reply: Reply<SubscriptionInfo>,
    },
    Unsubscribe {
        topic: String,
        reply: Reply<()>,
    },
    Publish {
        topic: String,
        payload: Bytes,
        json: bool,
        reply: Reply<Published>,
    },
    Close(oneshot::Sender<()>),
    /// The current endpoint, its circuit state and the last connection error.
    Health(oneshot::Sender<(String, CircuitState, Option<String>)>),
}

/// A request waiting for its answer.
#[derive(Debug)]
enum Waiting {
    Subscribe {
        topic: String,
        asked: Option<u64>,
        reply: Reply<SubscriptionInfo>,
    },
    Resubscribe {
        topic: String,
        asked: Option<u64>,
    },
    Unsubscribe(Reply<()>),
    /// The encoded frame is kept to send it again after a `rate_limited` answer.
    Publish {
        reply: Reply<Published>,
        frame: Bytes,
        attempts: u32,
    },
    Refresh,
}

/// Publishes held back after a `rate_limited` answer: sent again in the order they were
/// made (ids grow), one at a time (each after the previous one's answer), none before `until`
/// (the hub's `retry_after_ms`). New publishes queue behind them meanwhile.
#[derive(Debug)]
struct Throttle {
    until: tokio::time::Instant,
    held: BTreeSet<u64>,
    in_flight: Option<u64>,
}

#[derive(Debug)]
struct Sub {
    /// Shared by every message of the subscription (no allocation per message).
    topic: std::sync::Arc<str>,
    events: mpsc::Sender<Event>,
    pos: Position,
    /// Where the application asked to start (used until the first answer).
    from: From,
}

/// How a connected session ended.
enum End {
    /// Reconnect (after a backoff), trying these advised URLs first.
    Lost(Vec<String>),
    /// The token expired: fetch a fresh one, then reconnect.
    TokenExpired,
    /// Stop for good.
    Stop(Option<ClientError>),
}

/// Why a connect failed.
enum ConnectError {
    Auth(String),
    Ended(ClientError),
    Transient(String),
    /// Raw TCP: the hub closed before `welcome` — a refused token, or a drop. A failed attempt,
    /// after which a token provider (if any) is asked for a fresh token.
    Silent(String),
}

pub(super) struct Actor {
    opts: ClientOptions,
    cmds: mpsc::Receiver<Cmd>,
    status: broadcast::Sender<Status>,
    breakers: Vec<Breaker>,
    current: usize,
    advised: VecDeque<String>,
    token: Option<String>,
    last_error: Option<String>,
    /// The endpoint of the live connection (or the last one).
    connected_to: Option<String>,
    subs: HashMap<String, Sub>,
    waiting: HashMap<u64, Waiting>,
    throttle: Option<Throttle>,
    next_id: u64,
}

impl Actor {
    pub(super) fn new(opts: ClientOptions, cmds: mpsc::Receiver<Cmd>, status: broadcast::Sender<Status>) -> Self {
        let breakers = opts.endpoints.iter().map(|_| Breaker::new(opts.breaker)).collect();
        Self {
            token: opts.token.clone(),
            last_error: None,
            connected_to: None,
            opts,
            cmds,
            status,
            breakers,
            current: 0,
            advised: VecDeque::new(),
            subs: HashMap::new(),
            waiting: HashMap::new(),
            throttle: None,
            next_id: 1,
        }
    }

    fn emit(&self, s: Status) {
        let _ = self.status.send(s);
    }

    async fn fresh_token(&mut self) -> Result<(), ClientError> {
        if let Some(p) = self.opts.token_provider.clone() {
            self.token = Some(p().await.map_err(ClientError::Token)?);
        }
        Ok(())
    }

    pub(super) async fn run(mut self, ready: oneshot::Sender<Result<(), ClientError>>) {
        let mut ready = Some(ready);
        let stop = self.serve_forever(&mut ready).await;
        if let Some(r) = ready.take() {
            let _ = r.send(Err(stop.clone().unwrap_or(ClientError::Closed)));
        }
        for (_, w) in self.waiting.drain() {
            fail(w, stop.clone().unwrap_or(ClientError::Closed));
        }
        self.subs.clear();
        self.emit(Status::Closed { error: stop.map(|e| e.to_string()) });
    }

    /// Connects, serves, reconnects, until a permanent end; returns its error (`None`: closed by
    /// the application).
    async fn serve_forever(
        &mut self,
        ready: &mut Option<oneshot::Sender<Result<(), ClientError>>>,
    ) -> Option<ClientError> {
        if self.token.is_none() {
            if let Err(e) = self.fresh_token().await {
                return Some(e);
            }
        }
        let mut attempt: u32 = 0;
        let mut auth_retried = false;
        loop {
            // None: closed by the application while waiting.
            let endpoint = self.pick_endpoint().await?;
            self.emit(Status::Connecting { endpoint: endpoint.clone() });
            let connected = self.connect_once(&endpoint).await;
            if matches!(connected, Err(ConnectError::Silent(_))) && self.opts.token_provider.is_some() {
                // Perhaps the token was refused: the next attempt takes a fresh one.
                if let Err(e) = self.fresh_token().await {
                    return Some(e);
                }
            }
            match connected {
                Ok((ws, conn_id)) => {
                    self.record(&endpoint, true);
                    attempt = 0;
                    auth_retried = false;
                    self.emit(Status::Connected { endpoint: endpoint.clone(), conn_id });
                    self.connected_to = Some(endpoint.clone());
                    if let Some(r) = ready.take() {
                        let _ = r.send(Ok(()));
                    }
                    match self.session(ws).await {
                        End::Stop(e) => return e,
                        End::Lost(advice) => self.advised.extend(advice),
                        End::TokenExpired => {
                            if let Err(e) = self.fresh_token().await {
                                return Some(e);
                            }
                        }
                    }
                    self.fail_requests();
                }
                Err(ConnectError::Ended(e)) => return Some(e),
                Err(ConnectError::Auth(m)) => {
                    if auth_retried || self.opts.token_provider.is_none() {
                        return Some(ClientError::Unauthenticated(m));
                    }
                    auth_retried = true;
                    if let Err(e) = self.fresh_token().await {
                        return Some(e);
                    }
                    continue;
                }
                Err(ConnectError::Transient(m) | ConnectError::Silent(m)) => {
                    self.last_error = Some(m.clone());
                    self.record(&endpoint, false);
                    self.rotate(&endpoint);
                    attempt += 1;
                    if ready.is_some() && attempt >= self.opts.initial_attempts {
                        return Some(ClientError::Connect(m));
                    }
                }
            }
            let delay = self.opts.backoff.delay(attempt.saturating_sub(1), rand::random::<f64>());
            self.emit(Status::Reconnecting { attempt: attempt.max(1), delay });
            if !self.idle(delay).await {
                return None;
            }
        }
    }

    /// The next URL to try: advised ones first, then the endpoints from the current one on,
    /// skipping open circuits (waiting for the first to half-open when all are open).
    async fn pick_endpoint(&mut self) -> Option<String> {
        if let Some(u) = self.advised.pop_front() {
            return Some(u);
        }
        loop {
            let now = Instant::now();
            let n = self.breakers.len();
            for k in 0..n {
                let i = (self.current + k) % n;
                if self.breakers[i].allows(now) {
                    if i != self.current {
                        let (from, to) = (self.opts.endpoints[self.current].clone(), self.opts.endpoints[i].clone());
                        self.emit(Status::FailedOver { from, to });
                        self.current = i;
                    }
                    if self.breakers[i].state(now) == CircuitState::HalfOpen {
                        self.emit(Status::Circuit {
                            endpoint: self.opts.endpoints[i].clone(),
                            state: CircuitState::HalfOpen,
                        });
                    }
                    return Some(self.opts.endpoints[i].clone());
                }
            }
            let until = self.breakers.iter().filter_map(Breaker::open_until).min().unwrap_or(now);
            if !self.idle(until.saturating_duration_since(now)).await {
                return None;
            }
        }
    }

    fn record(&mut self, endpoint: &str, ok: bool) {
        let Some(i) = self.opts.endpoints.iter().position(|e| e == endpoint) else { return };
        if let Some(state) = self.breakers[i].record(Instant::now(), ok) {
            self.emit(Status::Circuit { endpoint: endpoint.to_owned(), state });
        }
    }

    /// After a failed attempt, the next endpoint is tried next time.
    fn rotate(&mut self, endpoint: &str) {
        if self.opts.endpoints.get(self.current).is_some_and(|e| e == endpoint) && self.opts.endpoints.len() > 1 {
            let next = (self.current + 1) % self.opts.endpoints.len();
            self.emit(Status::FailedOver { from: endpoint.to_owned(), to: self.opts.endpoints[next].clone() });
            self.current = next;
        }
    }

    /// Waits `d` while answering requests (nothing is connected); false when closed.
    async fn idle(&mut self, d: Duration) -> bool {
        let sleep = tokio::time::sleep(d);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => return true,
                cmd = self.cmds.recv() => match cmd {
                    None => return false,
                    Some(Cmd::Close(done)) => {
                        let _ = done.send(());
                        return false;
                    }
                    Some(cmd) => self.offline(cmd),
                },
            }
        }
    }

    /// A request while not connected: subscriptions are kept and made on reconnect; the rest
    /// fail (`Disconnected`: nothing was sent).
    fn offline(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Subscribe { reply, .. } => {
                let _ = reply.send(Err(ClientError::Disconnected));
            }
            Cmd::Unsubscribe { topic, reply } => {
                let found = self.subs.remove(&topic).is_some();
                let _ = reply.send(if found { Ok(()) } else { Err(not_subscribed(&topic)) });
            }
            Cmd::Publish { reply, .. } => {
                let _ = reply.send(Err(ClientError::Disconnected));
            }
            Cmd::Close(done) => {
                let _ = done.send(());
            }
            Cmd::Health(reply) => self.health(reply),
        }
    }

    fn health(&mut self, reply: oneshot::Sender<(String, CircuitState, Option<String>)>) {
        let endpoint = self.connected_to.clone().unwrap_or_else(|| self.opts.endpoints[self.current].clone());
        let state = match self.opts.endpoints.iter().position(|e| *e == endpoint) {
            Some(i) => self.breakers[i].state(Instant::now()),
            None => CircuitState::Closed,
        };
        let _ = reply.send((endpoint, state, self.last_error.clone()));
    }

    async fn connect_once(&mut self, endpoint: &str) -> Result<(Link, u64), ConnectError> {
        let timeout = self.opts.connect_timeout;
        match tokio::time::timeout(timeout, self.handshake(endpoint)).await {
            Ok(r) => r,
            Err(_) => Err(ConnectError::Transient(format!("{endpoint}: no welcome within {timeout:?}"))),
        }
    }

    async fn handshake(&mut self, endpoint: &str) -> Result<(Link, u64), ConnectError> {
        let transient = |e: String| ConnectError::Transient(format!("{endpoint}: {e}"));
        let token = self.token.clone().unwrap_or_default();
        let client_id = self.opts.client_id.as_deref();
        let mut link = match Link::open(endpoint, &self.opts.tls_ca_files, self.opts.transport, &token, client_id).await
        {
            Ok(l) => l,
            Err(OpenError::Unauthenticated(m)) => return Err(ConnectError::Auth(m)),
            Err(OpenError::Failed(m)) => return Err(ConnectError::Transient(m)),
        };
        // Over raw TCP the link has sent the token (the Token datagram): a refused one closes the
        // connection without a word, which reads like any drop; the message says so.
        let closed = if link.wants_connect_op() {
            let mut connect = json!({"op": "connect", "id": 0, "token": token});
            if let Some(id) = &self.opts.client_id {
                connect["client_id"] = json!(id);
            }
            link.send(Frame::Text(connect.to_string()))
                .await
                .map_err(|()| transient("closed before welcome".into()))?;
            "closed before welcome"
        } else {
            "the hub closed the connection before `welcome` (over raw TCP, this is how it refuses a token: \
             invalid, expired or missing)"
        };
        loop {
            let Some(m) = link.recv().await else {
                let m = format!("{endpoint}: {closed}");
                return Err(if link.wants_connect_op() { ConnectError::Transient(m) } else { ConnectError::Silent(m) });
            };
            let Some(Frame::Text(text)) = m else { continue };
            match serde_json::from_str::<ServerMsg>(&text) {
                Ok(ServerMsg::Welcome { conn_id, .. }) => return Ok((link, conn_id)),
                Ok(ServerMsg::Error { code: ErrorCode::Unauthenticated, message, .. }) => {
                    return Err(ConnectError::Auth(message));
                }
                Ok(ServerMsg::Error { code, message, limit, .. }) => {
                    return Err(ConnectError::Transient(format!(
                        "{endpoint}: {:?}",
                        ClientError::refused(code, message, limit, None)
                    )));
                }
                Ok(ServerMsg::Bye { reason, message, reconnect, .. }) => {
                    self.advised.extend(reconnect.iter().cloned());
                    self.emit(Status::Bye { reason, message: message.clone(), reconnect });
                    return Err(match reason {
                        CloseReason::Unauthenticated => ConnectError::Auth(message),
                        r if permanent(r) => ConnectError::Ended(ClientError::Ended { reason: r, message }),
                        _ => transient(message),
                    });
                }
                _ => {}
            }
        }
    }

    /// Serves one connection until it ends.
    async fn session(&mut self, mut link: Link) -> End {
        // Resubscribe everything, each from where it stands.
        let topics: Vec<String> = self.subs.keys().cloned().collect();
        for topic in topics {
            let sub = &self.subs[&topic];
            let (offset, epoch) = match sub.pos.resume_point() {
                Some((o, e)) => (Some(o), Some(e)),
                None => start(sub.from),
            };
            let id = self.id();
            self.waiting.insert(id, Waiting::Resubscribe { topic: topic.clone(), asked: offset });
            if link.send(Frame::Text(subscribe_op(id, &topic, offset, epoch))).await.is_err() {
                return End::Lost(Vec::new());
            }
        }
        let mut refresh: Option<futures_util::future::BoxFuture<'static, Result<String, String>>> = None;
        // Keep-alive: a `ping` after `keepalive_interval` of silence; dead after
        // `keepalive_timeout` more.
        let (interval, timeout) = (self.opts.keepalive_interval, self.opts.keepalive_timeout);
        let mut last_rx = tokio::time::Instant::now();
        let mut pinged = false;
        // One timer, moved on only when it fires early (traffic came meanwhile): not a new timer
        // per message.
        let alarm = tokio::time::sleep_until(last_rx + interval);
        tokio::pin!(alarm);
        loop {
            let resend =
                self.throttle.as_ref().filter(|t| t.in_flight.is_none() && !t.held.is_empty()).map(|t| t.until);
            tokio::select! {
                () = tokio::time::sleep_until(resend.unwrap_or(last_rx)), if resend.is_some() => {
                    if let Some(frame) = self.next_held() {
                        if link.send(frame).await.is_err() {
                            return End::Lost(Vec::new());
                        }
                    }
                }
                cmd = self.cmds.recv() => {
                    let Some(cmd) = cmd else { return self.goodbye(&mut link).await };
                    if let Cmd::Close(done) = cmd {
                        let end = self.goodbye(&mut link).await;
                        let _ = done.send(());
                        return end;
                    }
                    if let Some(frame) = self.request(cmd) {
                        if link.send(frame).await.is_err() {
                            return End::Lost(Vec::new());
                        }
                    }
                }
                () = &mut alarm => {
                    let due = last_rx + if pinged { interval + timeout } else { interval };
                    if tokio::time::Instant::now() < due {
                        alarm.as_mut().reset(due);
                        continue;
                    }
                    if pinged {
                        self.last_error = Some(format!("nothing received for {:?} after a ping", timeout));
                        tracing::debug!("keep-alive: the connection is dead; reconnecting");
                        return End::Lost(Vec::new());
                    }
                    pinged = true;
                    alarm.as_mut().reset(last_rx + interval + timeout);
                    let id = self.id();
                    if link.send(Frame::Text(json!({"op": "ping", "id": id}).to_string())).await.is_err() {
                        return End::Lost(Vec::new());
                    }
                }
                token = async { refresh.as_mut().expect("guarded").await }, if refresh.is_some() => {
                    refresh = None;
                    if let Ok(t) = token {
                        self.token = Some(t.clone());
                        let id = self.id();
                        self.waiting.insert(id, Waiting::Refresh);
                        let op = json!({"op": "refresh", "id": id, "token": t}).to_string();
                        if link.send(Frame::Text(op)).await.is_err() {
                            return End::Lost(Vec::new());
                        }
                    }
                }
                m = link.recv() => {
                    let Some(m) = m else { return End::Lost(Vec::new()) };
                    last_rx = tokio::time::Instant::now();
                    pinged = false;
                    match m {
                        Some(Frame::Text(text)) => {
                            let Ok(msg) = serde_json::from_str::<ServerMsg>(&text) else { continue };
                            if matches!(msg, ServerMsg::TokenExpiring { .. }) && refresh.is_none() {
                                refresh = self.opts.token_provider.as_ref().map(|p| p());
                                continue;
                            }
                            if let Some(end) = self.control(msg).await {
                                return end;
                            }
                        }
                        Some(Frame::Binary(buf)) => self.records(&buf).await,
                        None => {}
                    }
                }
            }
        }
    }

    /// Says `bye` and waits (a little) for the hub's `closed`, so that the `bye` is not lost
    /// with the connection.
    async fn goodbye(&mut self, link: &mut Link) -> End {
        if link.send(Frame::Text(json!({"op": "bye", "id": 0}).to_string())).await.is_ok() {
            let closed = async {
                while let Some(m) = link.recv().await {
                    if let Some(Frame::Text(t)) = m {
                        if let Ok(ServerMsg::Closed { .. }) = serde_json::from_str::<ServerMsg>(&t) {
                            return;
                        }
                    }
                }
            };
            let _ = tokio::time::timeout(BYE_WAIT, closed).await;
        }
        link.close().await;
        End::Stop(None)
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A request while connected: registers the wait and returns the frame to send.
    fn request(&mut self, cmd: Cmd) -> Option<Frame> {
        let id = self.id();
        match cmd {
            Cmd::Subscribe { topic, from, events, reply } => {
                if self.subs.contains_key(&topic) {
                    let _ = reply.send(Err(ClientError::Refused {
                        code: ErrorCode::FailedPrecondition,
                        message: format!("already subscribed to {topic}"),
                        limit: None,
                        retry_after: None,
                    }));
                    return None;
                }
                let (offset, epoch) = start(from);
                self.subs.insert(
                    topic.clone(),
                    Sub { topic: topic.as_str().into(), events, pos: Position::default(), from },
                );
                let frame = subscribe_op(id, &topic, offset, epoch);
                self.waiting.insert(id, Waiting::Subscribe { topic, asked: offset, reply });
                Some(Frame::Text(frame))
            }
            Cmd::Unsubscribe { topic, reply } => {
                if self.subs.remove(&topic).is_none() {
                    let _ = reply.send(Err(not_subscribed(&topic)));
                    return None;
                }
                self.waiting.insert(id, Waiting::Unsubscribe(reply));
                Some(Frame::Text(json!({"op": "unsubscribe", "id": id, "topic": topic}).to_string()))
            }
            Cmd::Publish { topic, payload, json, reply } => {
                let Ok(request_id) = u32::try_from(id) else {
                    let _ = reply.send(Err(ClientError::Disconnected));
                    return None;
                };
                let flags = if json { FLAG_JSON } else { 0 };
                let frame = Bytes::from(encode_publish(&topic, request_id, flags, &payload));
                self.waiting.insert(id, Waiting::Publish { reply, frame: frame.clone(), attempts: 0 });
                if let Some(t) = &mut self.throttle {
                    t.held.insert(id);
                    return None;
                }
                Some(Frame::Binary(frame))
            }
            Cmd::Close(done) => {
                let _ = done.send(());
                None
            }
            Cmd::Health(reply) => {
                self.health(reply);
                None
            }
        }
    }

    /// A control message; `Some` when it ends the session.
    async fn control(&mut self, msg: ServerMsg) -> Option<End> {
        match msg {
            ServerMsg::Subscribed { id: Some(id), sub } => match self.waiting.remove(&id) {
                Some(Waiting::Subscribe { topic, asked, reply }) => {
                    self.subscribed(&topic, &sub, asked).await;
                    let _ = reply.send(Ok(sub));
                }
                Some(Waiting::Resubscribe { topic, asked }) => self.subscribed(&topic, &sub, asked).await,
                Some(w) => fail(w, ClientError::Disconnected),
                None => {}
            },
            ServerMsg::Published { id: Some(id), offset, epoch, .. } => {
                if let Some(Waiting::Publish { reply, .. }) = self.waiting.remove(&id) {
                    let _ = reply.send(Ok(Published { offset, epoch }));
                }
                self.answered(id);
            }
            ServerMsg::Refreshed { id: Some(id), .. } => {
                self.waiting.remove(&id);
            }
            ServerMsg::Unsubscribed { id: Some(id), .. } => {
                if let Some(Waiting::Unsubscribe(reply)) = self.waiting.remove(&id) {
                    let _ = reply.send(Ok(()));
                }
            }
            ServerMsg::Error { id: Some(id), code, message, limit, retry_after_ms, .. } => {
                match self.waiting.remove(&id) {
                    Some(Waiting::Publish { reply, frame, attempts })
                        if code == ErrorCode::RateLimited && attempts < MAX_RATE_RETRIES && !reply.is_closed() =>
                    {
                        // Not published: send it again once the hub says it would take it.
                        let wait = Duration::from_millis(retry_after_ms.unwrap_or(0).max(1));
                        let until = tokio::time::Instant::now() + wait;
                        let t = self.throttle.get_or_insert(Throttle { until, held: BTreeSet::new(), in_flight: None });
                        t.until = t.until.max(until);
                        if t.in_flight == Some(id) {
                            t.in_flight = None;
                        }
                        t.held.insert(id);
                        self.waiting.insert(id, Waiting::Publish { reply, frame, attempts: attempts + 1 });
                    }
                    Some(Waiting::Subscribe { topic, reply, .. }) => {
                        self.subs.remove(&topic);
                        let _ = reply.send(Err(ClientError::refused(code, message, limit, retry_after_ms)));
                    }
                    Some(Waiting::Resubscribe { topic, .. }) => {
                        // The hub will not have it back (permission, limits): the subscription ends.
                        tracing::warn!(%topic, ?code, %message, "resubscribe refused; the subscription ends");
                        self.subs.remove(&topic);
                    }
                    Some(w) => {
                        fail(w, ClientError::refused(code, message, limit, retry_after_ms));
                        self.answered(id);
                    }
                    None => {}
                }
            }
            ServerMsg::Bye { reason, message, reconnect, .. } => {
                self.emit(Status::Bye { reason, message: message.clone(), reconnect: reconnect.clone() });
                return Some(match reason {
                    CloseReason::TokenExpired => End::TokenExpired,
                    CloseReason::Unauthenticated => End::Stop(Some(ClientError::Unauthenticated(message))),
                    r if permanent(r) => End::Stop(Some(ClientError::Ended { reason: r, message })),
                    _ => End::Lost(reconnect),
                });
            }
            _ => {}
        }
        None
    }

    async fn subscribed(&mut self, topic: &str, info: &SubscriptionInfo, asked: Option<u64>) {
        let Some(sub) = self.subs.get_mut(topic) else { return };
        if let Some(gap) = sub.pos.on_subscribed(info, asked) {
            let _ = sub.events.send(Event::Gap(gap)).await;
        }
    }

    /// Routes a binary message's records to their subscriptions (waiting while one is full:
    /// the socket is then not read, and the hub applies the topic's policy).
    async fn records(&mut self, buf: &Bytes) {
        for r in decode_records(buf) {
            let Ok(r) = r else {
                tracing::warn!("the hub sent a malformed record; skipping the rest of the message");
                return;
            };
            let Some(sub) = self.subs.get_mut(r.topic) else { continue };
            let message = || message(&sub.topic, buf, &r);
            match sub.pos.on_record(r.topic, r.offset, r.epoch) {
                Verdict::Duplicate => {}
                Verdict::Deliver => {
                    let _ = sub.events.send(Event::Message(message())).await;
                }
                Verdict::DeliverAfter(gap) => {
                    let _ = sub.events.send(Event::Gap(gap)).await;
                    let _ = sub.events.send(Event::Message(message())).await;
                }
            }
        }
    }

    /// Publish `id` got its final answer: the next held one may go.
    fn answered(&mut self, id: u64) {
        if let Some(t) = &mut self.throttle {
            if t.in_flight == Some(id) {
                t.in_flight = None;
            }
            if t.in_flight.is_none() && t.held.is_empty() {
                self.throttle = None;
            }
        }
    }

    /// The oldest held publish still wanted, now in flight; `None` when none is left.
    fn next_held(&mut self) -> Option<Frame> {
        let t = self.throttle.as_mut()?;
        while let Some(id) = t.held.pop_first() {
            match self.waiting.get(&id) {
                Some(Waiting::Publish { reply, frame, .. }) if !reply.is_closed() => {
                    t.in_flight = Some(id);
                    return Some(Frame::Binary(frame.clone()));
                }
                // Its caller gave up (request timeout): it is not sent again.
                _ => {
                    self.waiting.remove(&id);
                }
            }
        }
        self.throttle = None;
        None
    }

    /// The connection dropped: what waited for an answer gets none; subscriptions stay and
    /// are made again on reconnect.
    fn fail_requests(&mut self) {
        self.throttle = None;
        for (_, w) in self.waiting.drain() {
            if let Waiting::Subscribe { topic, reply, .. } = w {
                // Not answered: the application is told; it may subscribe again.
                self.subs.remove(&topic);
                let _ = reply.send(Err(ClientError::Disconnected));
            } else {
                fail(w, ClientError::Disconnected);
            }
        }
    }
}

/// Reasons after which reconnecting is pointless (the hub or an operator ended this client).
/// The message a subscription yields for record `r` of data message `buf`: payload and metadata
/// are slices of `buf` (the metadata block is split off the payload by the decoder, whatever the
/// transport brought `buf`: WebSocket, TCP or reassembled WebRTC chunks).
fn message(topic: &std::sync::Arc<str>, buf: &Bytes, r: &RecordRef<'_>) -> Message {
    Message {
        topic: topic.clone(),
        offset: r.offset,
        epoch: r.epoch,
        timestamp_us: r.timestamp_us,
        flags: r.flags,
        payload: buf.slice_ref(r.payload),
        meta: r.meta.map(|m| buf.slice_ref(m.as_bytes())),
    }
}

fn permanent(r: CloseReason) -> bool {
    matches!(r, CloseReason::Kicked | CloseReason::Replaced | CloseReason::Violation)
}

fn fail(w: Waiting, e: ClientError) {
    match w {
        Waiting::Subscribe { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Waiting::Unsubscribe(reply) => {
            let _ = reply.send(Err(e));
        }
        Waiting::Publish { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Waiting::Resubscribe { .. } | Waiting::Refresh => {}
    }
}

fn not_subscribed(topic: &str) -> ClientError {
    ClientError::Refused {
        code: ErrorCode::FailedPrecondition,
        message: format!("not subscribed to {topic}"),
        limit: None,
        retry_after: None,
    }
}

/// The `(offset, epoch)` a first subscribe asks for.
fn start(from: From) -> (Option<u64>, Option<u64>) {
    match from {
        From::Live => (None, None),
        From::Oldest => (Some(0), None),
        From::Offset { offset, epoch } => (Some(offset), epoch),
    }
}

fn subscribe_op(id: u64, topic: &str, offset: Option<u64>, epoch: Option<u64>) -> String {
    let mut op = json!({"op": "subscribe", "id": id, "topic": topic});
    if let Some(o) = offset {
        op["offset"] = json!(o);
    }
    if let Some(e) = epoch {
        op["epoch"] = json!(e);
    }
    op.to_string()
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::protocol::frame::{encode_record, put_meta_payload, RecordHeader, FLAG_META};

    fn record(flags: u8, offset: u64, field: &[u8]) -> Bytes {
        encode_record(&RecordHeader { flags, offset, epoch: 3, timestamp_us: 9, topic: "src/t" }, field).unwrap()
    }

    #[test]
    fn a_record_with_metadata_yields_the_payload_without_the_block_and_the_metadata() {
        let meta = r#"{"source":"fleet","upstream":"orders","partition":"orders","position":"1-0"}"#;
        let mut field = BytesMut::new();
        put_meta_payload(&mut field, meta.as_bytes(), br#"{"n":1}"#).unwrap();
        // One data message: a record with metadata, then one without (as the hub batches them).
        let mut batch = BytesMut::new();
        batch.extend_from_slice(&record(FLAG_META | FLAG_JSON, 1, &field));
        batch.extend_from_slice(&record(FLAG_JSON, 2, br#"{"n":2}"#));
        let buf = batch.freeze();
        let topic: std::sync::Arc<str> = "src/t".into();
        let got: Vec<Message> = decode_records(&buf).map(|r| message(&topic, &buf, &r.unwrap())).collect();

        assert_eq!(&got[0].payload[..], br#"{"n":1}"#, "the payload excludes the metadata block");
        assert!(got[0].is_json());
        assert_eq!(got[0].meta_str(), Some(meta));
        let parsed = got[0].meta_json().unwrap();
        assert_eq!((parsed["source"].as_str(), parsed["position"].as_str()), (Some("fleet"), Some("1-0")));
        assert_eq!((got[0].offset, got[0].epoch, got[0].timestamp_us), (1, 3, 9));

        assert_eq!((&got[1].payload[..], got[1].meta.as_ref()), (&br#"{"n":2}"#[..], None));
        assert_eq!((got[1].meta_str(), got[1].meta_json()), (None, None));
    }
}
