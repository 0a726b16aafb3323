//! The transport-neutral half of a client connection: authentication (`connect`), the
//! `fanhub.v1` control ops, publishing (with backpressure waits), time sync and token expiry.
//!
//! A transport feeds it decoded inbound messages and timer ticks; it answers through the
//! connection's outbound queue and tells the transport when to close. It never touches a socket.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;

use super::{now, unix_ms, unix_us, HubContext};
use crate::broker::{Prepared, SubscribeItem};
use crate::hub::{
    AuthFailure, ConnId, ConnState, Connection, ConnectionManager, PublishError, PublishReport, SubscribeError,
    SubscribeOptions, TopicName,
};
use crate::protocol::control::{parse_client_op, ClientOp, ConnectionDetails, ServerMsg, SessionInfo};
use crate::protocol::frame::{decode_publish, FLAG_JSON};
use crate::protocol::{CloseReason, ErrorCode, SUBPROTOCOL};

/// What the transport should do after an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    /// Keep going.
    Continue,
    /// Close with this reason (a `bye` has been queued if appropriate).
    Close(CloseReason, String),
}

/// One client's protocol state.
pub struct ClientSession {
    ctx: Arc<HubContext>,
    conn: Arc<dyn Connection>,
    /// Token verified at the upgrade (header or query), used by a `connect` without a token.
    upgrade_token: Option<String>,
    /// The token the connection authenticated with (or refreshed to): WebRTC sessions created
    /// over this connection use it.
    token: Option<String>,
    registered: bool,
    expiry_warned: bool,
    sync_seq: u64,
}

impl ClientSession {
    /// A session for `conn`, not yet authenticated.
    pub fn new(ctx: Arc<HubContext>, conn: Arc<dyn Connection>, upgrade_token: Option<String>) -> Self {
        conn.core().set_state(ConnState::Authenticating);
        Self { ctx, conn, upgrade_token, token: None, registered: false, expiry_warned: false, sync_seq: 0 }
    }

    /// Whether `connect` succeeded.
    pub fn is_registered(&self) -> bool {
        self.registered
    }

    /// The connection.
    pub fn conn(&self) -> &Arc<dyn Connection> {
        &self.conn
    }

    fn id(&self) -> ConnId {
        self.conn.id()
    }

    fn reply(&self, msg: &ServerMsg) -> Flow {
        if self.conn.send_control(msg) || self.conn.core().outbound.closing().is_some() {
            Flow::Continue
        } else {
            // The control lane is full: the client sends requests but does not read replies.
            Flow::Close(CloseReason::SlowConsumer, "control replies are not being read".into())
        }
    }

    fn error(&self, id: Option<u64>, code: ErrorCode, message: impl Into<String>) -> Flow {
        self.reply(&ServerMsg::error(id, code, message))
    }

    fn error_full(
        &self,
        id: Option<u64>,
        code: ErrorCode,
        message: String,
        topic: Option<String>,
        limit: Option<&str>,
    ) -> Flow {
        self.reply(&ServerMsg::Error { id, code, message, topic, limit: limit.map(str::to_owned) })
    }

    /// Fails authentication: counts it, tells the client, asks the transport to close.
    fn auth_failed(&self, id: Option<u64>, reason: AuthFailure, detail: &str) -> Flow {
        self.ctx.manager.counters().record_auth_failure(reason);
        let message = format!("{}: {detail}", reason.as_str());
        let _ = self.conn.send_control(&ServerMsg::error(id, ErrorCode::Unauthenticated, message.clone()));
        Flow::Close(CloseReason::Unauthenticated, message)
    }

    /// Checks a token that came with the upgrade request, before any message. A bad one ends
    /// the connection at once.
    pub fn check_upgrade_token(&mut self) -> Flow {
        if let Some(t) = &self.upgrade_token {
            if let Err(e) = self.ctx.sessions.verify(t) {
                return self.auth_failed(None, e.reason, &e.detail);
            }
        }
        Flow::Continue
    }

    /// Handles a JSON control message.
    pub async fn handle_text(&mut self, text: &[u8]) -> Flow {
        let op = match parse_client_op(text) {
            Ok(op) => op,
            Err(e) if !self.registered => {
                return self.auth_failed(
                    e.id,
                    AuthFailure::NoConnect,
                    &format!("the first message must be a valid connect: {}", e.message),
                );
            }
            Err(e) => return self.error(e.id, e.code, e.message),
        };
        if !self.registered {
            return match op {
                ClientOp::Connect { id, token, details, client_id, .. } => {
                    self.connect(id, token, details, client_id).await
                }
                other => self.auth_failed(
                    other.id(),
                    AuthFailure::NoConnect,
                    &format!("the first message must be connect, not {}", other.name()),
                ),
            };
        }
        self.handle_op(op).await
    }

    /// Handles a binary publish frame.
    pub async fn handle_binary(&mut self, frame: Bytes) -> Flow {
        if !self.registered {
            return self.auth_failed(
                None,
                AuthFailure::NoConnect,
                "the first message must be connect, not a binary frame",
            );
        }
        let p = match decode_publish(&frame) {
            Ok(p) => p,
            Err(e) => return self.error(None, ErrorCode::InvalidArgument, format!("bad binary frame: {e}")),
        };
        let id = (p.request_id != 0).then_some(u64::from(p.request_id));
        self.publish(id, &p.topic, &p.payload, p.flags & FLAG_JSON).await
    }

    async fn connect(
        &mut self,
        id: Option<u64>,
        token: Option<String>,
        details: Option<ConnectionDetails>,
        client_id: Option<String>,
    ) -> Flow {
        let token = match token.or_else(|| self.upgrade_token.clone()) {
            Some(t) => t,
            None => {
                return self.auth_failed(
                    id,
                    AuthFailure::Missing,
                    "no token in connect, Authorization header or token parameter",
                )
            }
        };
        let identity = match self.ctx.sessions.verify(&token) {
            Ok(i) => i,
            Err(e) => return self.auth_failed(id, e.reason, &e.detail),
        };
        let session = SessionInfo { subject: identity.subject.clone(), expires_at: identity.expires_at };
        self.conn.core().set_identity(identity);
        if let Err(e) = self.ctx.manager.register_client(self.conn.clone(), client_id) {
            let _ = self.conn.send_control(&ServerMsg::Error {
                id,
                code: ErrorCode::ResourceExhausted,
                message: e.to_string(),
                topic: None,
                limit: e.limit_name().map(str::to_owned),
            });
            return Flow::Close(CloseReason::ResourceExhausted, e.to_string());
        }
        let mut subscriptions = Vec::new();
        if let Some(d) = details.filter(|d| !d.is_empty()) {
            let prepared = match ConnectionManager::stream_topics(&d) {
                Ok(plan) => self.prepare(plan.into_iter().map(|(t, o)| (t, o, None)).collect()).await,
                Err(_) => Ok(None), // open_streams answers the error
            };
            let opened = prepared.and_then(|_guard| self.ctx.manager.open_streams(self.id(), &d, now()));
            match opened {
                Ok(infos) => subscriptions = infos,
                Err(e) => {
                    // Authenticated but the details are unusable: stay unregistered so the
                    // client can correct them with another connect.
                    self.ctx.manager.unregister_client(self.id());
                    self.conn.core().set_state(ConnState::Authenticating);
                    return self.error_full(id, e.code(), e.to_string(), None, e.limit());
                }
            }
        }
        self.registered = true;
        self.token = Some(token);
        let ws = &self.ctx.config.websocket;
        self.reply(&ServerMsg::Welcome {
            id,
            conn_id: self.id().0,
            protocol: SUBPROTOCOL.into(),
            node_id: self.ctx.node_id.clone(),
            server_time_us: unix_us(),
            session,
            ping_interval_ms: ws.ping_interval_ms,
            idle_timeout_ms: ws.idle_timeout_ms,
            max_message_size: self.ctx.manager.limits().max_message_size,
            subscriptions,
        })
    }

    async fn handle_op(&mut self, op: ClientOp) -> Flow {
        let m = self.ctx.manager.clone();
        match op {
            ClientOp::Connect { id, .. } => self.error(id, ErrorCode::FailedPrecondition, "already connected"),
            ClientOp::Subscribe { id, topic, offset, epoch } => {
                let name = match TopicName::new(&topic) {
                    Ok(n) => n,
                    Err(e) => {
                        return self.error_full(
                            id,
                            ErrorCode::InvalidArgument,
                            format!("invalid topic: {e}"),
                            Some(topic),
                            None,
                        )
                    }
                };
                let subscribed = match self.prepare(vec![(name.clone(), offset, epoch)]).await {
                    Ok(_guard) => m.subscribe(self.id(), &name, SubscribeOptions { offset, epoch }, now()),
                    Err(e) => Err(e),
                };
                match subscribed {
                    Ok(sub) => self.reply(&ServerMsg::Subscribed { id, sub }),
                    Err(e) => self.error_full(id, e.code(), e.to_string(), Some(topic), e.limit()),
                }
            }
            ClientOp::Unsubscribe { id, topic } => {
                let name = match TopicName::new(&topic) {
                    Ok(n) => n,
                    Err(e) => {
                        return self.error_full(
                            id,
                            ErrorCode::InvalidArgument,
                            format!("invalid topic: {e}"),
                            Some(topic),
                            None,
                        )
                    }
                };
                match m.unsubscribe(self.id(), &name) {
                    Ok(()) => self.reply(&ServerMsg::Unsubscribed { id, topic }),
                    Err(e) => self.error_full(id, e.code(), e.to_string(), Some(topic), e.limit()),
                }
            }
            ClientOp::Publish { id, topic, data, data_b64 } => {
                let (payload, flags) = match (data, data_b64) {
                    (Some(v), None) => (serde_json::to_vec(&v).expect("JSON value serializes"), FLAG_JSON),
                    (None, Some(b)) => match base64::engine::general_purpose::STANDARD.decode(b.as_bytes()) {
                        Ok(p) => (p, 0),
                        Err(e) => {
                            return self.error(
                                id,
                                ErrorCode::InvalidArgument,
                                format!("data_b64 is not valid base64: {e}"),
                            )
                        }
                    },
                    _ => {
                        return self.error(
                            id,
                            ErrorCode::InvalidArgument,
                            "publish needs exactly one of `data` and `data_b64`",
                        )
                    }
                };
                self.publish(id, &topic, &payload, flags).await
            }
            ClientOp::AddStreams { id, streams, stream_offsets } => {
                let prepared = match m.added_stream_topics(self.id(), &streams, &stream_offsets) {
                    Ok(plan) => self.prepare(plan.into_iter().map(|(t, o)| (t, o, None)).collect()).await,
                    Err(_) => Ok(None), // add_streams answers the error
                };
                let added = prepared.and_then(|_guard| m.add_streams(self.id(), &streams, &stream_offsets, now()));
                match added {
                    Ok(subscriptions) => self.reply(&ServerMsg::StreamsAdded { id, subscriptions }),
                    Err(e) => self.error_full(id, e.code(), e.to_string(), None, e.limit()),
                }
            }
            ClientOp::RemoveStreams { id, streams } => match m.remove_streams(self.id(), &streams) {
                Ok(topics) => self
                    .reply(&ServerMsg::StreamsRemoved { id, topics: topics.iter().map(ToString::to_string).collect() }),
                Err(e) => self.error_full(id, e.code(), e.to_string(), None, e.limit()),
            },
            ClientOp::GetConnection { id } => {
                let details = m.connection_details(self.id()).unwrap_or_default();
                let mut topics: Vec<String> = m.topics_of(self.id()).iter().map(ToString::to_string).collect();
                topics.sort();
                self.reply(&ServerMsg::Connection {
                    id,
                    conn_id: self.id().0,
                    state: self.conn.state().as_str().into(),
                    subject: self.conn.identity().subject.clone(),
                    details,
                    topics,
                })
            }
            ClientOp::Ping { id } => self.reply(&ServerMsg::Pong { id, server_time_us: unix_us() }),
            ClientOp::TimeSync { id, t1 } => {
                let t2 = unix_us();
                self.reply(&ServerMsg::TimeSync { id, t1, t2, t3: unix_us() })
            }
            ClientOp::TimeSyncReply { seq, t1, t2, t3 } => {
                // Server-initiated: t1 server send, t2 client receive, t3 client send, t4 now.
                let t4 = unix_us();
                if seq == self.sync_seq && t1 <= t4 {
                    let rtt = (t4 - t1) - (t3 - t2);
                    let offset = ((t2 - t1) + (t3 - t4)) / 2;
                    self.conn.core().record_time_sync(rtt.max(0), offset);
                }
                Flow::Continue
            }
            ClientOp::Refresh { id, token } => match self.ctx.sessions.verify(&token) {
                Ok(identity) if identity.subject == self.conn.identity().subject => {
                    let expires_at = identity.expires_at;
                    self.conn.core().set_identity(identity);
                    self.token = Some(token);
                    self.expiry_warned = false;
                    self.reply(&ServerMsg::Refreshed { id, expires_at })
                }
                Ok(_) => self.error(id, ErrorCode::PermissionDenied, "a refreshed token must have the same subject"),
                Err(e) => {
                    self.ctx.manager.counters().record_auth_failure(e.reason);
                    self.error(id, ErrorCode::Unauthenticated, e.to_string())
                }
            },
            ClientOp::RtcOffer { id, sdp } => {
                let token = self.token.clone().unwrap_or_default();
                match super::webrtc::accept(&self.ctx, token, self.conn.remote_addr(), &sdp) {
                    Ok((sdp, session)) => self.reply(&ServerMsg::RtcAnswer { id, sdp, session: session.0 }),
                    Err(e) => self.error(id, e.code, e.message),
                }
            }
            ClientOp::RtcCandidate { id, session, candidate } => {
                let subject = self.conn.identity().subject.clone();
                match super::webrtc::add_candidate(&self.ctx, &subject, session, &candidate) {
                    Ok(()) => self.reply(&ServerMsg::RtcCandidateAdded { id, session }),
                    Err(e) => self.error(id, e.code, e.message),
                }
            }
            ClientOp::Bye { id, .. } => {
                let _ = self.conn.send_control(&ServerMsg::Closed { id, success: true });
                Flow::Close(CloseReason::Normal, "client said bye".into())
            }
        }
    }

    async fn publish(&mut self, id: Option<u64>, topic: &str, payload: &[u8], flags: u8) -> Flow {
        let name = match TopicName::new(topic) {
            Ok(n) => n,
            Err(e) => {
                return self.error_full(
                    id,
                    ErrorCode::InvalidArgument,
                    format!("invalid topic: {e}"),
                    Some(topic.into()),
                    None,
                )
            }
        };
        if let Some(c) = self.ctx.broker.cluster() {
            // Cluster mode: queued for Redis in order; the outcome is answered from there, so
            // this connection's next publishes are read meanwhile (one round trip per batch).
            if let Err(e) = self.ctx.manager.authorize_publish(self.conn.id(), &name, payload.len(), now()) {
                return self.error_full(id, e.code(), e.to_string(), Some(topic.into()), e.limit());
            }
            let job = crate::broker::cluster::PublishJob {
                topic: name,
                payload: Bytes::copy_from_slice(payload),
                flags,
                reply: crate::broker::cluster::PublishReply::Connection { conn: self.conn.clone(), id },
            };
            return match c.enqueue(job).await {
                Ok(()) => Flow::Continue,
                Err(e) => self.error_full(id, e.code(), e.to_string(), Some(topic.into()), e.limit()),
            };
        }
        match publish(&self.ctx, Some(self.conn.id()), &name, payload, flags).await {
            Ok(report) => match id {
                Some(_) => self.reply(&ServerMsg::Published { id, topic: topic.into(), offset: report.offset }),
                None => Flow::Continue,
            },
            Err(e) => self.error_full(id, e.code(), e.to_string(), Some(topic.into()), e.limit()),
        }
    }

    /// Cluster mode: readies the topics of a subscribe this connection may make (joins their
    /// channels, stages Redis history); the guard must live until the subscribe attached.
    /// In memory mode, nothing.
    async fn prepare(&self, items: Vec<SubscribeItem>) -> Result<Option<Prepared>, SubscribeError> {
        let Some(c) = self.ctx.broker.cluster() else { return Ok(None) };
        let identity = self.conn.identity();
        let items: Vec<SubscribeItem> = items.into_iter().filter(|(t, _, _)| identity.can_subscribe(t)).collect();
        c.prepare(self.id(), &items).await.map(Some)
    }

    /// Periodic duties: token expiry warning and enforcement, server-initiated time sync.
    pub fn tick(&mut self, time_sync_due: bool) -> Flow {
        if !self.registered {
            return Flow::Continue;
        }
        if let Some(exp) = self.conn.identity().expires_at {
            let now_ms = unix_ms();
            let exp_ms = exp.saturating_mul(1000);
            if now_ms >= exp_ms {
                if !self.expiry_warned {
                    // The warning window passed unseen (a late tick on a loaded machine): the
                    // client is still told, before the bye.
                    self.expiry_warned = true;
                    let _ = self.reply(&ServerMsg::TokenExpiring { expires_at: exp, in_ms: 0 });
                }
                return Flow::Close(CloseReason::TokenExpired, "the token expired and was not refreshed".into());
            }
            let warn_ms = self.ctx.config.auth.expiry_warning_secs * 1000;
            if !self.expiry_warned && exp_ms - now_ms <= warn_ms {
                self.expiry_warned = true;
                return self.reply(&ServerMsg::TokenExpiring { expires_at: exp, in_ms: exp_ms - now_ms });
            }
        }
        if time_sync_due {
            self.sync_seq += 1;
            return self.reply(&ServerMsg::TimeSyncRequest { seq: self.sync_seq, t1: unix_us() });
        }
        Flow::Continue
    }

    /// When the next [`Self::tick`] matters for expiry: time until the warning or the expiry.
    pub fn next_expiry_event(&self) -> Option<Duration> {
        let exp = self.conn.identity().expires_at?;
        let now_ms = unix_ms();
        let exp_ms = exp.saturating_mul(1000);
        let warn_at = exp_ms.saturating_sub(self.ctx.config.auth.expiry_warning_secs * 1000);
        let target = if self.expiry_warned || now_ms >= warn_at { exp_ms } else { warn_at };
        Some(Duration::from_millis(target.saturating_sub(now_ms)))
    }
}

/// Publishes on behalf of connection `source` (its claims, size and rate checked) or of a
/// trusted server-side source (`None`), through the node's broker: in memory, routed here (with
/// backpressure waits); in cluster mode, through Redis.
///
/// # Errors
/// [`PublishError`].
pub async fn publish(
    ctx: &HubContext,
    source: Option<ConnId>,
    topic: &TopicName,
    payload: &[u8],
    flags: u8,
) -> Result<PublishReport, PublishError> {
    match ctx.broker.cluster() {
        None => {
            publish_waiting(ctx, |m| match source {
                Some(id) => m.publish_as(id, topic, payload, flags, now()),
                None => m.route_data(topic, payload, flags, now()),
            })
            .await
        }
        Some(c) => {
            if let Some(id) = source {
                ctx.manager.authorize_publish(id, topic, payload.len(), now())?;
            }
            c.publish(topic, payload, flags).await
        }
    }
}

/// Publishes through `f`, waiting while a `reliable` + `apply_backpressure` subscriber is
/// full, up to the policy's timeout; then the publish fails with `resource_exhausted`.
///
/// # Errors
/// The publish's [`PublishError`], or `BackpressureTimeout`.
pub async fn publish_waiting(
    ctx: &HubContext,
    f: impl Fn(&crate::hub::ConnectionManager) -> Result<PublishReport, PublishError>,
) -> Result<PublishReport, PublishError> {
    let mut deadline = None;
    loop {
        match f(&ctx.manager) {
            Err(PublishError::Backpressure { topic, waiting_for, timeout }) => {
                let deadline = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + timeout);
                if tokio::time::timeout_at(deadline, waiting_for.core().outbound.space_freed()).await.is_err() {
                    return Err(PublishError::BackpressureTimeout(topic));
                }
            }
            other => return other,
        }
    }
}
