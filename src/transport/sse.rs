//! The server-sent events transport (`GET /v1/sse?topics=a,b`, `docs/protocol.md` §10c).
//!
//! A one-way transport on the same session driver as WebSocket and WebRTC: the request is
//! checked up front (token, topics, claims, resume position) and refused with a JSON error; then
//! the session is fed the `connect` and one `subscribe` per topic the query asks for, and
//! [`Transport::recv`](super::driver::Transport::recv) yields nothing more until the peer goes
//! away. The writer is the response body: each wake-up drains the connection's bounded queue and
//! formats what it holds as events into one reused buffer — records as `message` events whose id
//! carries every topic's position, the session's notices (`welcome`, `subscribed`, `error`,
//! `bye`, `token_expiring`) as events of their own type — and a comment when it has been quiet
//! for `session.ping_interval_ms`.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Query;
use axum::http::request::Parts;
use axum::http::{header, Response, StatusCode};
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use tokio::sync::watch;

use super::driver::{self, Recv, Transport};
use super::{HttpConnHandle, HubContext};
use crate::clock::Timer;
use crate::hub::{AuthFailure, Batch, CloseInfo, ConnCore, Connection, Drain, Protocol, TopicName};
use crate::protocol::frame::{decode_records, RecordRef, FLAG_JSON};
use crate::protocol::{CloseReason, ErrorCode};
use crate::session::{Input, Session};

/// An SSE client connection.
#[derive(Debug)]
pub struct SseConnection {
    core: ConnCore,
    /// Wakes the response body (a permit is kept when it is busy, so no wake-up is lost).
    writer: tokio::sync::Notify,
    /// Every subscribe the query asks for has been answered: events may flow.
    ready: AtomicBool,
}

impl Connection for SseConnection {
    fn core(&self) -> &ConnCore {
        &self.core
    }

    fn wake(&self) {
        self.writer.notify_one();
    }
}

/// Records are written in batches of at most this many (the WebSocket writer's default).
const BATCH_RECORDS: usize = 256;
/// ... or about this many bytes of records.
const BATCH_BYTES: usize = 256 * 1024;

fn refuse(ctx: &HubContext, code: ErrorCode, message: impl Into<String>) -> Response<Body> {
    ctx.manager.counters().record_handshake_refused();
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::json!({ "code": code, "message": message.into() });
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    resp
}

/// Parses a resume id: one `epoch:offset` per topic, comma-separated, in the order of the
/// query's `topics`.
pub fn parse_event_id(id: &str, topics: usize) -> Result<Vec<(u64, u64)>, String> {
    let positions = id
        .split(',')
        .map(|p| {
            let (e, o) = p.trim().split_once(':')?;
            Some((e.parse().ok()?, o.parse().ok()?))
        })
        .collect::<Option<Vec<(u64, u64)>>>()
        .ok_or_else(|| format!("Last-Event-ID {id:?} is not a list of epoch:offset"))?;
    if positions.len() != topics {
        return Err(format!("Last-Event-ID {id:?} has {} positions for {topics} topics", positions.len()));
    }
    Ok(positions)
}

/// `GET /v1/sse`: checks the request, then streams the topics' records as events.
pub async fn sse_handler(ctx: Arc<HubContext>, remote: SocketAddr, parts: Parts) -> Response<Body> {
    let query = match Query::<HashMap<String, String>>::try_from_uri(&parts.uri) {
        Ok(Query(q)) => q,
        Err(e) => return refuse(&ctx, ErrorCode::InvalidArgument, format!("bad query: {e}")),
    };
    if ctx.draining.load(Ordering::Relaxed) {
        let message = format!("this node is draining; reconnect to one of {:?}", ctx.reconnect_urls());
        return refuse(&ctx, ErrorCode::Unavailable, message);
    }
    let counters = ctx.manager.counters();
    let Some(token) = super::bearer_header(&parts.headers).or(query.get("access_token").map(String::as_str)) else {
        counters.record_auth_failure(AuthFailure::Missing);
        let message = "missing_token: no token in the Authorization header or the access_token parameter";
        return refuse(&ctx, ErrorCode::Unauthenticated, message);
    };
    let identity = match ctx.sessions.verify(token, ctx.clock.now().unix_secs()) {
        Ok(i) => i,
        Err(e) => {
            counters.record_auth_failure(e.reason);
            return refuse(&ctx, ErrorCode::Unauthenticated, e.to_string());
        }
    };
    let list = query.get("topics").map(String::as_str).unwrap_or_default();
    if list.is_empty() {
        return refuse(&ctx, ErrorCode::InvalidArgument, "`topics` is required: a comma-separated list of topics");
    }
    let mut topics: Vec<TopicName> = Vec::new();
    for t in list.split(',') {
        let name = match TopicName::new(t) {
            Ok(n) => n,
            Err(e) => return refuse(&ctx, ErrorCode::InvalidArgument, format!("invalid topic {t:?}: {e}")),
        };
        if topics.contains(&name) {
            return refuse(&ctx, ErrorCode::InvalidArgument, format!("topic {t:?} is listed twice"));
        }
        if !identity.can_subscribe(&name) {
            return refuse(&ctx, ErrorCode::PermissionDenied, format!("the token may not subscribe to {t:?}"));
        }
        topics.push(name);
    }
    let max = ctx.manager.limits().max_subscriptions_per_connection;
    if topics.len() > max {
        let message = format!("{} topics exceed max_subscriptions_per_connection ({max})", topics.len());
        return refuse(&ctx, ErrorCode::ResourceExhausted, message);
    }
    let last_id = parts.headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let resume = match last_id.or(query.get("last_event_id").map(String::as_str)).filter(|s| !s.is_empty()) {
        Some(id) => match parse_event_id(id, topics.len()) {
            Ok(p) => Some(p),
            Err(e) => return refuse(&ctx, ErrorCode::InvalidArgument, e),
        },
        None => None,
    };

    let conn = Arc::new(SseConnection {
        core: ctx.manager.new_core(Protocol::Sse, remote, ctx.clock.now().unix_ms()),
        writer: tokio::sync::Notify::new(),
        ready: AtomicBool::new(false),
    });
    let mut inputs = VecDeque::with_capacity(topics.len() + 1);
    inputs.push_back(Bytes::from_static(br#"{"op":"connect"}"#));
    for (i, t) in topics.iter().enumerate() {
        let mut op = serde_json::json!({ "op": "subscribe", "id": i + 1, "topic": t.as_str() });
        if let Some((epoch, offset)) = resume.as_ref().map(|r| r[i]) {
            op["offset"] = (offset.saturating_add(1)).into();
            op["epoch"] = epoch.into();
        }
        inputs.push_back(Bytes::from(op.to_string()));
    }
    let (alive, gone) = watch::channel(());
    let inbound = SseInbound { inputs, conn: conn.clone(), gone };
    let http = parts.extensions.get::<HttpConnHandle>().cloned();
    tokio::spawn(serve(ctx.clone(), inbound, token.to_owned(), http));
    let keepalive = Duration::from_millis(ctx.config.session.ping_interval_ms);
    let mut quiet = ctx.clock.timer();
    quiet.set(Some(ctx.clock.mono() + keepalive));
    let w = Writer {
        positions: vec![None; topics.len()],
        topics,
        conn,
        batch: Batch::default(),
        buf: BytesMut::new(),
        retry: ctx.clock.timer(),
        quiet,
        keepalive,
        done: false,
        ctx,
        _alive: alive,
    };
    let body = futures_util::stream::unfold(w, |mut w| async move {
        let chunk = w.next().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), w))
    });
    let mut resp = Response::new(Body::from_stream(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache"));
    // One stream per connection: when it ends, so does the connection (see `serve`).
    h.insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    h.insert("x-accel-buffering", header::HeaderValue::from_static("no"));
    resp
}

/// Runs the session to its end, then gives the connection the close timeout to write what is
/// left and close; a peer that does not read that long has its connection dropped.
async fn serve(ctx: Arc<HubContext>, mut inbound: SseInbound, token: String, http: Option<HttpConnHandle>) {
    let _live = super::LiveGuard::new(ctx.clone());
    let conn = inbound.conn.clone();
    let mut params = driver::session_params(&ctx, conn.clone(), false, Some(token));
    // The peer cannot answer time-sync requests.
    params.config.time_sync_interval_ms = 0;
    let session = Session::new(params, ctx.clock.now());
    driver::run(&ctx, session, &mut inbound, CloseInfo::new(CloseReason::Normal, "connection lost")).await;
    let cfg = &ctx.config.session;
    let drains = conn.core.outbound.closing().is_some_and(|c| c.reason.drains_queue());
    let grace =
        if drains { ctx.config.server.shutdown_grace_ms.max(cfg.close_timeout_ms) } else { cfg.close_timeout_ms };
    if let Some(http) = http {
        if tokio::time::timeout(Duration::from_millis(grace), http.closed()).await.is_err() {
            http.abort();
        }
    }
}

/// The inbound side: the `connect` and the subscribes, then nothing until the body is dropped.
struct SseInbound {
    inputs: VecDeque<Bytes>,
    conn: Arc<SseConnection>,
    /// Closed when the response body is dropped (the peer went away, or the stream ended).
    gone: watch::Receiver<()>,
}

impl Transport for SseInbound {
    async fn recv(&mut self) -> Recv {
        if let Some(op) = self.inputs.pop_front() {
            return Recv::Frame(Input::Text(op));
        }
        // The driver asks for more only once the last subscribe was answered.
        if !self.conn.ready.swap(true, Ordering::AcqRel) {
            self.conn.wake();
        }
        while self.gone.changed().await.is_ok() {}
        Recv::Gone
    }
}

/// The fields of a session notice the writer acts on.
#[derive(Deserialize)]
struct Notice {
    #[serde(rename = "type")]
    kind: String,
    id: Option<u64>,
    topic: Option<String>,
    epoch: Option<u64>,
    offset: Option<u64>,
    /// An error's code (a string), or a bye's close code (a number).
    code: Option<serde_json::Value>,
    message: Option<String>,
}

/// The response body: drains the connection's queue into events.
struct Writer {
    ctx: Arc<HubContext>,
    conn: Arc<SseConnection>,
    topics: Vec<TopicName>,
    /// Per topic (query order): the epoch and offset of the last record delivered, or of the
    /// position before the first one to come.
    positions: Vec<Option<(u64, u64)>>,
    batch: Batch,
    buf: BytesMut,
    retry: Timer,
    quiet: Timer,
    keepalive: Duration,
    done: bool,
    /// Dropped with the body: tells the session the peer is gone.
    _alive: watch::Sender<()>,
}

impl Writer {
    /// The next chunk of the stream; `None` once the close has been written.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if self.done {
                return None;
            }
            let outbound = &self.conn.core.outbound;
            let drained = if self.conn.ready.load(Ordering::Acquire) || outbound.closing().is_some() {
                self.batch.clear();
                outbound.drain(&mut self.batch, BATCH_RECORDS, BATCH_BYTES, self.ctx.clock.mono())
            } else {
                Drain::Idle { retry_at: None }
            };
            match drained {
                Drain::Ready => {
                    let events = self.format();
                    if !self.buf.is_empty() {
                        self.conn.core.record_sent(events as u64, self.buf.len() as u64);
                        self.quiet.set(Some(self.ctx.clock.mono() + self.keepalive));
                        return Some(self.buf.split().freeze());
                    }
                }
                Drain::Idle { retry_at } => {
                    self.retry.set(retry_at);
                    tokio::select! {
                        () = self.conn.writer.notified() => {}
                        () = self.retry.fired() => {}
                        () = self.quiet.fired() => {
                            self.quiet.set(Some(self.ctx.clock.mono() + self.keepalive));
                            return Some(Bytes::from_static(b": keep-alive\n\n"));
                        }
                    }
                }
                Drain::Finished(_) => self.done = true,
            }
        }
    }

    /// Formats the drained batch into `buf`; returns how many events it wrote.
    fn format(&mut self) -> usize {
        let mut events = 0;
        let batch = std::mem::take(&mut self.batch);
        let notices: Vec<(&[u8], Option<Notice>)> = batch
            .control
            .iter()
            .filter_map(|c| match c {
                crate::hub::Control::Json(b) => Some((&b[..], serde_json::from_slice::<Notice>(b).ok())),
                crate::hub::Control::Raw(_) => None,
            })
            .collect();
        // Positions first: every `subscribed` event then carries the complete id.
        for n in notices.iter().filter_map(|(_, n)| n.as_ref()).filter(|n| n.kind == "subscribed") {
            if let (Some(i), Some(epoch), Some(offset)) = (self.index(n.topic.as_deref()), n.epoch, n.offset) {
                self.positions[i] = Some((epoch, offset.saturating_sub(1)));
            }
        }
        for (json, notice) in &notices {
            let Some(n) = notice else { continue };
            if !matches!(n.kind.as_str(), "welcome" | "subscribed" | "error" | "bye" | "token_expiring") {
                continue;
            }
            if n.kind == "subscribed" {
                self.put_id();
            }
            let _ = write!(self.buf, "event: {}\ndata: ", n.kind);
            self.buf.put_slice(json);
            self.buf.put_slice(b"\n\n");
            events += 1;
            if n.kind == "error" && n.id.is_some() {
                self.refused(n);
            }
        }
        for record in &batch.records {
            for r in decode_records(record).flatten() {
                self.put_record(&r);
                events += 1;
            }
        }
        self.batch = batch;
        events
    }

    /// A subscribe the query asked for was refused: the stream ends (after the `error`, a
    /// `bye`). At shutdown the session closes it anyway.
    fn refused(&self, n: &Notice) {
        if self.conn.core.outbound.closing().is_some() || *self.ctx.shutdown.borrow() {
            return;
        }
        let reason = match n.code.as_ref().and_then(serde_json::Value::as_str) {
            Some("resource_exhausted") => CloseReason::ResourceExhausted,
            _ => CloseReason::Normal,
        };
        let topic = n.topic.as_deref().unwrap_or_default();
        let message = format!("subscribe to {topic:?} refused: {}", n.message.as_deref().unwrap_or_default());
        self.conn.close(reason, &message, &[]);
    }

    fn index(&self, topic: Option<&str>) -> Option<usize> {
        let topic = topic?;
        self.topics.iter().position(|t| t.as_str() == topic)
    }

    /// `id: e:o,e:o…\n` when every topic's position is known.
    fn put_id(&mut self) {
        if self.positions.iter().any(Option::is_none) {
            return;
        }
        self.buf.put_slice(b"id: ");
        for (i, (epoch, offset)) in self.positions.iter().flatten().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(self.buf, "{sep}{epoch}:{offset}");
        }
        self.buf.put_u8(b'\n');
    }

    /// One record as a `message` event: `{"topic","offset","epoch","ts","meta"?,"encoding","data"}`,
    /// JSON payloads embedded as they are, others in base64.
    fn put_record(&mut self, r: &RecordRef<'_>) {
        if let Some(i) = self.index(Some(r.topic)) {
            self.positions[i] = Some((r.epoch, r.offset));
        }
        self.put_id();
        // The hub refuses a JSON-flagged publish whose payload is not JSON, so the flag is
        // trusted here (no parse per subscriber).
        let json = r.flags & FLAG_JSON != 0;
        let encoding = if json { "json" } else { "base64" };
        let _ = write!(
            self.buf,
            "data: {{\"topic\":\"{}\",\"offset\":{},\"epoch\":{},\"ts\":{},",
            r.topic, r.offset, r.epoch, r.timestamp_us
        );
        if let Some(meta) = r.meta {
            // The hub writes metadata itself, as one line of compact JSON.
            let _ = write!(self.buf, "\"meta\":{meta},");
        }
        let _ = write!(self.buf, "\"encoding\":\"{encoding}\",\"data\":");
        if json {
            // Line breaks in JSON text are whitespace: each line goes in a `data:` line of its
            // own, and the client joins them with `\n`.
            for (k, line) in r.payload.split(|b| *b == b'\n' || *b == b'\r').enumerate() {
                if k > 0 {
                    self.buf.put_slice(b"\ndata: ");
                }
                self.buf.put_slice(line);
            }
        } else {
            let b64 = base64::engine::general_purpose::STANDARD;
            let start = self.buf.len() + 1;
            let len = base64::encoded_len(r.payload.len(), true).unwrap_or(0);
            self.buf.put_u8(b'"');
            self.buf.resize(start + len, 0);
            let n = b64.encode_slice(r.payload, &mut self.buf[start..]).unwrap_or(0);
            self.buf.truncate(start + n);
            self.buf.put_u8(b'"');
        }
        self.buf.put_slice(b"}\n\n");
    }
}

#[cfg(test)]
mod tests {
    use super::parse_event_id;

    #[test]
    fn event_ids_hold_one_position_per_topic() {
        assert_eq!(parse_event_id("7:3", 1), Ok(vec![(7, 3)]));
        assert_eq!(parse_event_id("7:3,9:0", 2), Ok(vec![(7, 3), (9, 0)]));
        assert!(parse_event_id("7:3", 2).is_err());
        assert!(parse_event_id("7-3", 1).is_err());
        assert!(parse_event_id("x:1", 1).is_err());
        assert!(parse_event_id("1:2:3", 1).is_err());
    }
}
