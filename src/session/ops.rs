//! What each `fanhub.v1` op does: parse, check, act on the hub, answer — or emit a
//! [`Command`] and finish the op when its [`Reply`] comes back ([`Session::resume`]).

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;

use super::{Command, Pending, PendingPublish, Reply, Session, SignalError};
use crate::hub::manager::Starts;
use crate::hub::{
    AuthFailure, ConnState, ConnectionManager, Now, PublishError, SubscribeItem, SubscribeOptions, TopicName,
};
use crate::protocol::control::{parse_client_op, ClientOp, ConnectionDetails, ServerMsg, SessionInfo};
use crate::protocol::frame::{decode_publish, FLAG_JSON};
use crate::protocol::{CloseReason, ErrorCode, SUBPROTOCOL};

impl Session {
    /// A JSON control message.
    pub(super) fn handle_text(&mut self, text: &[u8], now: Now) {
        let op = match parse_client_op(text) {
            Ok(op) => op,
            Err(e) if !self.registered => {
                let detail = format!("the first message must be a valid connect: {}", e.message);
                return self.auth_failed(e.id, AuthFailure::NoConnect, &detail);
            }
            Err(e) if e.op.as_deref() == Some("publish") => {
                self.publishes += 1;
                let seq = Some(self.publishes);
                return self.reply(&ServerMsg::Error {
                    id: e.id,
                    code: e.code,
                    message: e.message,
                    topic: None,
                    limit: None,
                    publish_seq: seq,
                    retry_after_ms: None,
                });
            }
            Err(e) => return self.error(e.id, e.code, e.message),
        };
        if !self.registered {
            return match op {
                ClientOp::Connect { id, token, details, client_id, .. } => {
                    self.connect(id, token, details, client_id, now);
                }
                other => {
                    let detail = format!("the first message must be connect, not {}", other.name());
                    self.auth_failed(other.id(), AuthFailure::NoConnect, &detail);
                }
            };
        }
        self.handle_op(op, now);
    }

    /// A binary publish frame.
    pub(super) fn handle_binary(&mut self, frame: Bytes, now: Now) {
        if !self.registered {
            return self.auth_failed(
                None,
                AuthFailure::NoConnect,
                "the first message must be connect, not a binary frame",
            );
        }
        self.publishes += 1;
        let seq = self.publishes;
        let p = match decode_publish(&frame) {
            Ok(p) => p,
            Err(e) => {
                return self.reply(&ServerMsg::Error {
                    id: None,
                    code: ErrorCode::InvalidArgument,
                    message: format!("bad binary frame: {e}"),
                    topic: None,
                    limit: None,
                    publish_seq: Some(seq),
                    retry_after_ms: None,
                })
            }
        };
        let id = (p.request_id != 0).then_some(u64::from(p.request_id));
        // The JSON flag is checked once here, so that no transport re-checks it per subscriber
        // (server-sent events embed JSON payloads as they are).
        if p.flags & FLAG_JSON != 0 && serde_json::from_slice::<serde::de::IgnoredAny>(&p.payload).is_err() {
            return self.reply(&ServerMsg::Error {
                id,
                code: ErrorCode::InvalidArgument,
                message: "the publish frame's JSON flag is set but its payload is not JSON text".into(),
                topic: Some(p.topic.to_string()),
                limit: None,
                publish_seq: Some(seq),
                retry_after_ms: None,
            });
        }
        self.publish(id, seq, &p.topic, p.payload, p.flags & FLAG_JSON, now);
    }

    fn connect(
        &mut self,
        id: Option<u64>,
        token: Option<String>,
        details: Option<ConnectionDetails>,
        client_id: Option<String>,
        now: Now,
    ) {
        let Some(token) = token.or_else(|| self.p.accept_token.clone()) else {
            return self.auth_failed(
                id,
                AuthFailure::Missing,
                "no token in connect, Authorization header or token parameter",
            );
        };
        let identity = match self.p.auth.verify(&token, now.unix_secs()) {
            Ok(i) => i,
            Err(e) => return self.auth_failed(id, e.reason, &e.detail),
        };
        let session = SessionInfo { subject: identity.subject.clone(), expires_at: identity.expires_at };
        self.p.conn.core().set_identity(identity);
        if let Err(e) = self.p.hub.register_client(self.p.conn.clone(), client_id) {
            let _ = self.p.conn.send_control(&ServerMsg::Error {
                id,
                code: ErrorCode::ResourceExhausted,
                message: e.to_string(),
                topic: None,
                limit: e.limit_name().map(str::to_owned),
                publish_seq: None,
                retry_after_ms: None,
            });
            return self.close(CloseReason::ResourceExhausted, e.to_string());
        }
        let details = details.filter(|d| !d.is_empty()).unwrap_or_default();
        if self.p.brokered && !details.is_empty() {
            if let Ok(items) = ConnectionManager::stream_topics(&details) {
                return self.prepare(Pending::Connect { id, token, session, details }, items);
            }
            // Bad details: opening the streams answers the error.
        }
        self.finish_connect(id, token, session, details, now);
    }

    fn finish_connect(
        &mut self,
        id: Option<u64>,
        token: String,
        session: SessionInfo,
        details: ConnectionDetails,
        now: Now,
    ) {
        let conn_id = self.p.conn.id();
        let mut subscriptions = Vec::new();
        if !details.is_empty() {
            match self.p.hub.open_streams(conn_id, &details, now) {
                Ok(infos) => subscriptions = infos,
                Err(e) => {
                    // Authenticated but the details are unusable: stay unregistered so the
                    // client can correct them with another connect.
                    self.p.hub.unregister_client(conn_id);
                    self.p.conn.core().set_state(ConnState::Authenticating);
                    return self.error_full(id, e.code(), e.to_string(), None, e.limit());
                }
            }
        }
        self.registered = true;
        self.expires_at = session.expires_at;
        self.token = Some(token);
        let c = &self.p.config;
        self.next_sync =
            (c.time_sync_interval_ms > 0).then(|| now.mono + Duration::from_millis(c.time_sync_interval_ms));
        let welcome = ServerMsg::Welcome {
            id,
            conn_id: conn_id.0,
            protocol: SUBPROTOCOL.into(),
            node_id: self.p.node_id.clone(),
            server_time_us: now.unix_us,
            session,
            ping_interval_ms: c.ping_interval_ms,
            idle_timeout_ms: c.idle_timeout_ms,
            max_message_size: self.p.hub.limits().max_message_size,
            subscriptions,
        };
        self.reply(&welcome);
    }

    fn topic(&mut self, id: Option<u64>, topic: &str) -> Option<TopicName> {
        match TopicName::new(topic) {
            Ok(n) => Some(n),
            Err(e) => {
                self.error_full(
                    id,
                    ErrorCode::InvalidArgument,
                    format!("invalid topic: {e}"),
                    Some(topic.into()),
                    None,
                );
                None
            }
        }
    }

    fn handle_op(&mut self, op: ClientOp, now: Now) {
        let conn_id = self.p.conn.id();
        match op {
            ClientOp::Connect { id, .. } => self.error(id, ErrorCode::FailedPrecondition, "already connected"),
            ClientOp::Subscribe { id, topic, offset, epoch } => {
                let Some(name) = self.topic(id, &topic) else { return };
                let opts = SubscribeOptions { offset, epoch };
                if self.p.brokered {
                    let items = vec![(name.clone(), offset, epoch)];
                    return self.prepare(Pending::Subscribe { id, topic: name, opts }, items);
                }
                self.subscribe(id, name, opts, now);
            }
            ClientOp::Unsubscribe { id, topic } => {
                let Some(name) = self.topic(id, &topic) else { return };
                match self.p.hub.unsubscribe(conn_id, &name) {
                    Ok(()) => self.reply(&ServerMsg::Unsubscribed { id, topic }),
                    Err(e) => self.error_full(id, e.code(), e.to_string(), Some(topic), e.limit()),
                }
            }
            ClientOp::Publish { id, topic, data, data_b64 } => {
                self.publishes += 1;
                let seq = self.publishes;
                let invalid = |message: String| (ErrorCode::InvalidArgument, message, Some(topic.clone()), None);
                let (payload, flags) = match (data, data_b64) {
                    (Some(v), None) => (Bytes::from(serde_json::to_vec(&v).expect("JSON value serializes")), FLAG_JSON),
                    (None, Some(b)) => match base64::engine::general_purpose::STANDARD.decode(b.as_bytes()) {
                        Ok(p) => (Bytes::from(p), 0),
                        Err(e) => {
                            return self.publish_error(id, seq, invalid(format!("data_b64 is not valid base64: {e}")))
                        }
                    },
                    _ => {
                        let message = "publish needs exactly one of `data` and `data_b64`".to_owned();
                        return self.publish_error(id, seq, invalid(message));
                    }
                };
                self.publish(id, seq, &topic, payload, flags, now);
            }
            ClientOp::AddStreams { id, streams, stream_offsets: offsets, stream_epochs: epochs } => {
                if self.p.brokered {
                    let starts = Starts { offsets: &offsets, epochs: &epochs };
                    if let Ok(items) = self.p.hub.added_stream_topics(conn_id, &streams, starts) {
                        return self.prepare(Pending::AddStreams { id, streams, offsets, epochs }, items);
                    }
                    // Bad streams: adding them answers the error.
                }
                self.add_streams(id, &streams, Starts { offsets: &offsets, epochs: &epochs }, now);
            }
            ClientOp::RemoveStreams { id, streams } => match self.p.hub.remove_streams(conn_id, &streams) {
                Ok(topics) => self
                    .reply(&ServerMsg::StreamsRemoved { id, topics: topics.iter().map(ToString::to_string).collect() }),
                Err(e) => self.error_full(id, e.code(), e.to_string(), None, e.limit()),
            },
            ClientOp::GetConnection { id } => {
                let details = self.p.hub.connection_details(conn_id).unwrap_or_default();
                let mut topics: Vec<String> = self.p.hub.topics_of(conn_id).iter().map(ToString::to_string).collect();
                topics.sort();
                let msg = ServerMsg::Connection {
                    id,
                    conn_id: conn_id.0,
                    state: self.p.conn.state().as_str().into(),
                    subject: self.p.conn.identity().subject.clone(),
                    details,
                    topics,
                };
                self.reply(&msg);
            }
            ClientOp::Ping { id } => self.reply(&ServerMsg::Pong { id, server_time_us: now.unix_us }),
            ClientOp::TimeSync { id, t1 } => {
                self.reply(&ServerMsg::TimeSync { id, t1, t2: now.unix_us, t3: now.unix_us })
            }
            ClientOp::TimeSyncReply { seq, t1, t2, t3 } => {
                // Server-initiated: t1 server send, t2 client receive, t3 client send, t4 now.
                let t4 = now.unix_us;
                if seq == self.sync_seq && t1 <= t4 {
                    let rtt = (t4 - t1) - (t3 - t2);
                    let offset = ((t2 - t1) + (t3 - t4)) / 2;
                    self.p.conn.core().record_time_sync(rtt.max(0), offset);
                    self.enforce_clock_offset(offset, now);
                }
            }
            ClientOp::Refresh { id, token } => match self.p.auth.verify(&token, now.unix_secs()) {
                Ok(identity) if identity.subject == self.p.conn.identity().subject => {
                    let expires_at = identity.expires_at;
                    self.p.conn.core().set_identity(identity);
                    self.token = Some(token);
                    self.expires_at = expires_at;
                    self.expiry_warned = false;
                    self.reply(&ServerMsg::Refreshed { id, expires_at });
                }
                Ok(_) => self.error(id, ErrorCode::PermissionDenied, "a refreshed token must have the same subject"),
                Err(e) => {
                    self.p.hub.counters().record_auth_failure(e.reason);
                    self.error(id, ErrorCode::Unauthenticated, e.to_string());
                }
            },
            ClientOp::RtcOffer { id, sdp } => {
                let token = self.token.clone().unwrap_or_default();
                self.command(Pending::RtcOffer { id }, Command::RtcOffer { sdp, token });
            }
            ClientOp::RtcCandidate { id, session, candidate } => {
                let subject = self.p.conn.identity().subject.clone();
                self.command(
                    Pending::RtcCandidate { id, session },
                    Command::RtcCandidate { session, candidate, subject },
                );
            }
            ClientOp::Bye { id, .. } => {
                let _ = self.p.conn.send_control(&ServerMsg::Closed { id, success: true });
                self.close(CloseReason::Normal, "client said bye".into());
            }
        }
    }

    /// Cluster mode: asks for the topics (those the claims allow) to be readied, then resumes
    /// `pending`.
    fn prepare(&mut self, pending: Pending, items: Vec<SubscribeItem>) {
        let identity = self.p.conn.identity();
        let items = items.into_iter().filter(|(t, _, _)| identity.can_subscribe(t)).collect();
        self.command(pending, Command::Prepare { conn: self.p.conn.id(), items });
    }

    fn subscribe(&mut self, id: Option<u64>, topic: TopicName, opts: SubscribeOptions, now: Now) {
        match self.p.hub.subscribe(self.p.conn.id(), &topic, opts, now) {
            Ok(sub) => self.reply(&ServerMsg::Subscribed { id, sub }),
            Err(e) => self.error_full(id, e.code(), e.to_string(), Some(topic.to_string()), e.limit()),
        }
    }

    fn add_streams(&mut self, id: Option<u64>, streams: &[String], starts: Starts<'_>, now: Now) {
        match self.p.hub.add_streams(self.p.conn.id(), streams, starts, now) {
            Ok(subscriptions) => self.reply(&ServerMsg::StreamsAdded { id, subscriptions }),
            Err(e) => self.error_full(id, e.code(), e.to_string(), None, e.limit()),
        }
    }

    fn publish(&mut self, id: Option<u64>, seq: u64, topic: &str, payload: Bytes, flags: u8, now: Now) {
        let name = match TopicName::new(topic) {
            Ok(n) => n,
            Err(e) => {
                let detail = (ErrorCode::InvalidArgument, format!("invalid topic: {e}"), Some(topic.to_owned()), None);
                return self.publish_error(id, seq, detail);
            }
        };
        let conn_id = self.p.conn.id();
        if let Err(e) = self.p.hub.authorize_publish(conn_id, &name, payload.len(), now) {
            return self.publish_failed(id, &name, seq, &e);
        }
        if let Err(e) = self.check_publish_bytes(payload.len(), now) {
            // Answered before the violation is counted, so that a publish that closes the
            // connection is still answered (before the `bye`).
            self.publish_failed(id, &name, seq, &e);
            self.p.hub.record_violation(conn_id, now);
            return;
        }
        if self.p.brokered {
            if let Err(e) = self.p.hub.check_fits(&name, payload.len()) {
                return self.publish_failed(id, &name, seq, &e);
            }
            // Queued for the broker in order; the broker answers the client, so this
            // connection's next publishes are read meanwhile (one round trip per batch).
            let command = Command::Publish { conn: self.p.conn.clone(), id, topic: name.clone(), payload, flags, seq };
            return self.command(Pending::Enqueue { id, topic: name, seq }, command);
        }
        self.route(PendingPublish { id, seq, topic: name, payload, flags, deadline: now.mono }, true, now);
    }

    /// The publish byte rate (`limits.publish_bytes_per_second`): takes `len` payload bytes at
    /// `now`, or refuses the publish (`rate_limited`; nothing taken). The caller counts the
    /// refusal as a violation, as the message rate does.
    fn check_publish_bytes(&self, len: usize, now: Now) -> Result<(), PublishError> {
        let Some(limit) = &self.publish_bytes else { return Ok(()) };
        let n = u32::try_from(len).unwrap_or(u32::MAX);
        let Err(retry_after) = limit.check_n(n, now.mono) else { return Ok(()) };
        Err(PublishError::BytesRateLimited { per_second: limit.rate().0, size: len, retry_after })
    }

    /// Routes a checked publish; under backpressure, waits for the full subscriber (the first
    /// time, the policy's timeout sets the deadline).
    fn route(&mut self, mut p: PendingPublish, first: bool, now: Now) {
        match self.p.hub.route_data(&p.topic, &p.payload, p.flags, now) {
            Ok(report) => {
                if p.id.is_some() {
                    let topic = p.topic.to_string();
                    self.reply(&ServerMsg::Published { id: p.id, topic, offset: report.offset, epoch: report.epoch });
                }
            }
            Err(PublishError::Backpressure { waiting_for, timeout, .. }) => {
                if first {
                    p.deadline = now.mono + timeout;
                }
                if now.mono >= p.deadline {
                    let e = PublishError::BackpressureTimeout(p.topic.clone());
                    return self.publish_failed(p.id, &p.topic, p.seq, &e);
                }
                self.command(Pending::Publish(p), Command::WaitForSpace(waiting_for));
            }
            Err(e) => self.publish_failed(p.id, &p.topic, p.seq, &e),
        }
    }

    pub(super) fn publish_failed(&mut self, id: Option<u64>, topic: &TopicName, seq: u64, e: &PublishError) {
        self.reply(&e.to_msg(id, topic, seq));
    }

    /// An error about publish number `seq`: (code, message, topic, limit).
    pub(super) fn publish_error(
        &mut self,
        id: Option<u64>,
        seq: u64,
        e: (ErrorCode, String, Option<String>, Option<&str>),
    ) {
        let (code, message, topic, limit) = e;
        let limit = limit.map(str::to_owned);
        self.reply(&ServerMsg::Error { id, code, message, topic, limit, publish_seq: Some(seq), retry_after_ms: None });
    }

    fn signal_failed(&mut self, id: Option<u64>, e: SignalError) {
        self.error(id, e.code, e.message);
    }

    /// Finishes the op that waited for `reply`.
    pub(super) fn resume(&mut self, pending: Pending, reply: Reply, now: Now) {
        match (pending, reply) {
            (Pending::Connect { id, token, session, details }, Reply::Prepared(r)) => match r {
                // The guard keeps the channels joined until the streams attached.
                Ok(_guard) => self.finish_connect(id, token, session, details, now),
                Err(e) => {
                    self.p.hub.unregister_client(self.p.conn.id());
                    self.p.conn.core().set_state(ConnState::Authenticating);
                    self.error_full(id, e.code(), e.to_string(), None, e.limit());
                }
            },
            (Pending::Subscribe { id, topic, opts }, Reply::Prepared(r)) => match r {
                Ok(_guard) => self.subscribe(id, topic, opts, now),
                Err(e) => self.error_full(id, e.code(), e.to_string(), Some(topic.to_string()), e.limit()),
            },
            (Pending::AddStreams { id, streams, offsets, epochs }, Reply::Prepared(r)) => match r {
                Ok(_guard) => self.add_streams(id, &streams, Starts { offsets: &offsets, epochs: &epochs }, now),
                Err(e) => self.error_full(id, e.code(), e.to_string(), None, e.limit()),
            },
            (Pending::Publish(p), Reply::SpaceFreed) => self.route(p, false, now),
            (Pending::Flush, Reply::Flushed) => self.close(CloseReason::Shutdown, "server shutting down".into()),
            (Pending::Enqueue { id, topic, seq }, Reply::Enqueued(r)) => match r {
                Ok(()) => self.enqueued_any = true,
                Err(e) => self.publish_failed(id, &topic, seq, &e),
            },
            (Pending::RtcOffer { id }, Reply::RtcAnswer(r)) => match r {
                Ok((sdp, session)) => self.reply(&ServerMsg::RtcAnswer { id, sdp, session }),
                Err(e) => self.signal_failed(id, e),
            },
            (Pending::RtcCandidate { id, session }, Reply::RtcCandidateAdded(r)) => match r {
                Ok(()) => self.reply(&ServerMsg::RtcCandidateAdded { id, session }),
                Err(e) => self.signal_failed(id, e),
            },
            (pending, reply) => {
                // A driver bug, never the client's: say so and keep the session usable.
                tracing::error!(?pending, ?reply, "a reply that does not answer the pending command");
                self.error(None, ErrorCode::Internal, "internal error: an unexpected reply");
            }
        }
    }
}
