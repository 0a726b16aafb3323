//! The raw TCP transport (`tcp.listen`, `docs/protocol.md` §10d): a TCP (or TLS) stream that
//! starts with the client's version byte and then carries length-prefixed datagrams
//! ([`crate::protocol::tcp`]).
//!
//! It is framing only. The Token datagram becomes the session's `connect`, Control datagrams
//! its JSON ops, Publish datagrams its binary publish frames. The writer task sends the
//! session's replies as Control datagrams, its `bye` as a Bye datagram (after a Reconnect one
//! when it advises reconnecting) and record batches as Data datagrams: a 5-byte header in front
//! of the encoded records every subscriber shares, written vectored, never copied. Before the
//! `welcome` the writer sends nothing, so a missing, invalid or expired token ends the
//! connection without a word: the client must create a new session. The one refusal it does
//! write is of an invalid client id (the Token datagram's optional second field), answered as a
//! WebSocket `connect` with that `client_id` is.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use super::driver::{self, Recv, Transport};
use super::ws::{self, Seg};
use super::HubContext;
use super::ListenerTls;
use crate::clock::Clock;
use crate::hub::{Batch, CloseInfo, ConnCore, Connection, Control, Drain, Protocol};
use crate::protocol::control::check_client_id;
use crate::protocol::tcp::{encode, header, Datagram, Decoder, FrameError, Kind, VERSION};
use crate::protocol::{CloseReason, ErrorCode};
use crate::session::{Input, Session};

/// A raw TCP client connection.
#[derive(Debug)]
pub struct TcpConnection {
    core: ConnCore,
    /// Wakes the writer task (a permit is kept when it is busy, so no wake-up is lost).
    writer: tokio::sync::Notify,
    /// The Token datagram carried an invalid client id: the refusal before the `welcome` is
    /// written (an `error` and a Bye), not silent as for a token, which may well be valid.
    refused_aloud: AtomicBool,
}

impl Connection for TcpConnection {
    fn core(&self) -> &ConnCore {
        &self.core
    }

    fn wake(&self) {
        self.writer.notify_one();
    }
}

/// Accepts connections on `listener` (through the TLS handshake when `tls` is set) until the
/// server shuts down; each runs in its own task.
pub async fn serve(listener: TcpListener, ctx: Arc<HubContext>, tls: ListenerTls) {
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = async { let _ = shutdown.wait_for(|v| *v).await; } => return,
        };
        let _ = tcp.set_nodelay(true);
        let ctx = ctx.clone();
        match &tls {
            None => {
                let (rd, wr) = tcp.into_split();
                tokio::spawn(connection(ctx, rd, wr, remote));
            }
            #[cfg(feature = "tls")]
            Some(tls) => {
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(super::TLS_HANDSHAKE_TIMEOUT, tls.acceptor().accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let (rd, wr) = tokio::io::split(stream);
                            connection(ctx, rd, wr, remote).await;
                        }
                        _ => tls.record_handshake_failure(),
                    }
                });
            }
            #[cfg(not(feature = "tls"))]
            Some(never) => match *never {},
        }
    }
}

/// One connection: the version byte, then the session through the driver (the writer in its
/// own task), then a lingering close.
async fn connection<R, W>(ctx: Arc<HubContext>, mut rd: R, mut wr: W, remote: SocketAddr)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let _live = super::LiveGuard::new(ctx.clone());
    let cfg = &ctx.config.session;
    let linger = Duration::from_millis(cfg.close_timeout_ms.min(2000));
    let mut buf = BytesMut::with_capacity(4096);
    let version = Duration::from_millis(ctx.config.tcp.version_timeout_ms);
    if !matches!(tokio::time::timeout(version, rd.read_buf(&mut buf)).await, Ok(Ok(n)) if n > 0) {
        tracing::debug!(%remote, "tcp: no version byte in time");
        return;
    }
    if buf[0] != VERSION {
        ctx.manager.counters().record_handshake_refused();
        let message = format!("unsupported protocol version 0x{:02x}; this server speaks 0x{VERSION:02x}", buf[0]);
        let bye = serde_json::json!({ "reason": "unsupported_version", "message": message });
        refuse(&mut rd, &mut wr, &[encode(Kind::Bye, bye.to_string().as_bytes())], linger).await;
        return;
    }
    if ctx.draining.load(std::sync::atomic::Ordering::Relaxed) {
        // As `/ws` answers 503 while draining: where to go, then why not here.
        ctx.manager.counters().record_handshake_refused();
        let urls = ctx.reconnect_urls();
        let reconnect = serde_json::json!({ "urls": urls });
        let message = format!("this node is draining; reconnect to one of {urls:?}");
        let bye = serde_json::json!({ "reason": "maintenance", "message": message });
        let datagrams =
            [encode(Kind::Reconnect, reconnect.to_string().as_bytes()), encode(Kind::Bye, bye.to_string().as_bytes())];
        refuse(&mut rd, &mut wr, &datagrams, linger).await;
        return;
    }
    buf.advance(1);
    let conn = Arc::new(TcpConnection {
        core: ctx.manager.new_core(Protocol::Tcp, remote, ctx.clock.now().unix_ms()),
        writer: tokio::sync::Notify::new(),
        refused_aloud: AtomicBool::new(false),
    });
    let batch = (ctx.config.websocket.batch_max_records, ctx.config.websocket.batch_max_bytes);
    let mut writer = tokio::spawn(writer_loop(conn.clone(), wr, batch, ctx.metrics.clone(), ctx.clock.clone()));
    // The same room as a WebSocket frame: a publish between `max_message_size` and this is
    // refused with an error and the connection stays.
    let max = ws::frame_limit(ctx.manager.limits().max_message_size) + 1;
    let mut inbound =
        Inbound { rd, buf, decoder: Decoder::new(max), conn: conn.clone(), connected: false, failed: false };
    let session = Session::new(driver::session_params(&ctx, conn.clone(), true, None), ctx.clock.now());
    driver::run(&ctx, session, &mut inbound, CloseInfo::new(CloseReason::Normal, "connection lost")).await;
    let drains = conn.core.outbound.closing().is_some_and(|c| c.reason.drains_queue());
    let grace =
        if drains { ctx.config.server.shutdown_grace_ms.max(cfg.close_timeout_ms) } else { cfg.close_timeout_ms };
    if tokio::time::timeout(Duration::from_millis(grace), &mut writer).await.is_err() {
        writer.abort();
        return;
    }
    // Our last datagram and FIN are out: read until the peer closes (or briefly), because
    // closing with unread input resets the connection and the peer would lose the bye.
    let _ = tokio::time::timeout(linger, drain_input(&mut inbound.rd)).await;
}

/// Writes `datagrams`, closes, and reads what the peer still sends (up to `linger`).
async fn refuse<R, W>(rd: &mut R, wr: &mut W, datagrams: &[Bytes], linger: Duration)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let _ = tokio::time::timeout(linger, async {
        for d in datagrams {
            let _ = wr.write_all(d).await;
        }
        let _ = wr.shutdown().await;
        drain_input(rd).await;
    })
    .await;
}

async fn drain_input<R: AsyncRead + Unpin>(rd: &mut R) {
    let mut sink = [0u8; 4096];
    while matches!(rd.read(&mut sink).await, Ok(n) if n > 0) {}
}

/// The inbound side, as the session driver reads it.
struct Inbound<R> {
    rd: R,
    buf: BytesMut,
    decoder: Decoder,
    conn: Arc<TcpConnection>,
    /// The Token datagram has been read (or refused).
    connected: bool,
    /// A framing error was reported: nothing more is read.
    failed: bool,
}

impl<R: AsyncRead + Unpin + Send> Transport for Inbound<R> {
    async fn recv(&mut self) -> Recv {
        loop {
            if self.failed {
                return Recv::Gone;
            }
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(d)) => return Recv::Frame(self.input(d)),
                Ok(None) => {}
                Err(e) => {
                    self.failed = true;
                    return Recv::Frame(framing_error(&e));
                }
            }
            if self.buf.capacity() - self.buf.len() < 1024 {
                self.buf.reserve(8192);
            }
            match self.rd.read_buf(&mut self.buf).await {
                Ok(0) if self.buf.is_empty() => return Recv::Gone,
                Ok(0) => {
                    self.failed = true;
                    return Recv::Frame(violation(
                        CloseReason::ProtocolError,
                        "the stream ended inside a datagram".into(),
                    ));
                }
                Ok(_) => {}
                Err(_) => return Recv::Gone,
            }
        }
    }

    fn keepalive(&mut self) {
        self.conn.send_raw(encode(Kind::Ping, &[]));
    }
}

impl<R> Inbound<R> {
    fn input(&mut self, d: Datagram) -> Input {
        if !std::mem::replace(&mut self.connected, true) {
            if d.kind != Kind::Token {
                let message = format!("expected the Token datagram, got {:?}", d.kind);
                return violation(CloseReason::Unauthenticated, message);
            }
            return self.token(&d.payload);
        }
        match d.kind {
            Kind::Control => Input::Text(d.payload),
            Kind::Publish => Input::Binary(d.payload),
            Kind::Ping => {
                self.conn.send_raw(encode(Kind::Pong, &[]));
                Input::Activity
            }
            Kind::Pong => Input::Activity,
            Kind::Bye => Input::Text(Bytes::from_static(br#"{"op":"bye"}"#)),
            k @ (Kind::Token | Kind::Data | Kind::Reconnect) => {
                violation(CloseReason::ProtocolError, format!("a {k:?} datagram is not expected from a client here"))
            }
        }
    }
}

impl<R> Inbound<R> {
    /// The Token datagram — the token, then optionally a 0x00 byte and the client id — as the
    /// session's `connect`. A bad token is refused by the session without a word; a bad client
    /// id is refused by the session as on a WebSocket (`client_id` in a `connect` that is not
    /// valid), and this connection's writer says so.
    fn token(&self, payload: &[u8]) -> Input {
        let (token, client_id) = match payload.iter().position(|b| *b == 0) {
            Some(i) => (&payload[..i], Some(&payload[i + 1..])),
            None => (payload, None),
        };
        let Ok(token) = std::str::from_utf8(token) else {
            return violation(CloseReason::Unauthenticated, "the token is not UTF-8".into());
        };
        let mut connect = serde_json::json!({ "op": "connect", "token": token });
        if let Some(id) = client_id {
            let Ok(id) = std::str::from_utf8(id) else {
                self.conn.refused_aloud.store(true, Relaxed);
                let message = "no_connect: the first message must be a valid connect: the client id in the Token \
                               datagram is not UTF-8";
                return violation(CloseReason::Unauthenticated, message.into());
            };
            if check_client_id(id).is_err() {
                self.conn.refused_aloud.store(true, Relaxed);
            }
            connect["client_id"] = id.into();
        }
        Input::Text(Bytes::from(connect.to_string()))
    }
}

fn violation(reason: CloseReason, message: String) -> Input {
    let code =
        if reason == CloseReason::Unauthenticated { ErrorCode::Unauthenticated } else { ErrorCode::InvalidArgument };
    Input::Violation { reason, code, message, limit: None }
}

fn framing_error(e: &FrameError) -> Input {
    match e {
        FrameError::TooLarge { .. } => Input::Violation {
            reason: CloseReason::MessageTooBig,
            code: ErrorCode::ResourceExhausted,
            message: e.to_string(),
            limit: Some("max_message_size"),
        },
        _ => violation(CloseReason::ProtocolError, e.to_string()),
    }
}

/// How the session's messages this writer treats specially begin (`ServerMsg` is tagged by
/// `type`, written first).
const WELCOME: &[u8] = br#"{"type":"welcome""#;
const BYE: &[u8] = br#"{"type":"bye""#;

/// The fields of the session's `bye` a Bye datagram carries.
#[derive(Deserialize)]
struct Bye {
    reason: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    reconnect: Vec<String>,
}

/// Frames the batch into `w`: control messages as Control datagrams (the `bye` as Reconnect
/// and Bye datagrams), records as Data datagrams of up to `max_frame` bytes. Before the
/// `welcome`, everything is dropped. Returns the bytes planned.
fn plan<W>(w: &mut ws::Writer<W>, batch: &Batch, max_frame: usize, welcomed: &mut bool) -> usize {
    w.scratch.clear();
    w.segs.clear();
    let mut shared = 0;
    for (i, c) in batch.control.iter().enumerate() {
        match c {
            Control::Json(b) if b.starts_with(BYE) && *welcomed => {
                let start = w.scratch.len();
                let bye = serde_json::from_slice::<Bye>(b).unwrap_or_else(|_| Bye {
                    reason: "normal".into(),
                    message: String::new(),
                    reconnect: Vec::new(),
                });
                if !bye.reconnect.is_empty() {
                    let urls = serde_json::json!({ "urls": bye.reconnect }).to_string();
                    w.scratch.extend_from_slice(&encode(Kind::Reconnect, urls.as_bytes()));
                }
                let payload = serde_json::json!({ "reason": bye.reason, "message": bye.message }).to_string();
                w.scratch.extend_from_slice(&encode(Kind::Bye, payload.as_bytes()));
                w.segs.push(Seg::Scratch(start, w.scratch.len()));
            }
            Control::Json(b) if *welcomed || b.starts_with(WELCOME) => {
                *welcomed = true;
                let start = w.scratch.len();
                w.scratch.extend_from_slice(&header(Kind::Control, b.len()));
                w.segs.push(Seg::Scratch(start, w.scratch.len()));
                w.segs.push(Seg::Control(i));
                shared += b.len();
            }
            Control::Raw(b) if *welcomed => {
                w.segs.push(Seg::Control(i));
                shared += b.len();
            }
            // Before the welcome, the session only ever refuses the connection: closing
            // without a word is the TCP answer (unless the client id was the problem).
            _ => {}
        }
    }
    let mut total = w.scratch.len() + shared;
    if !*welcomed {
        return total;
    }
    let mut i = 0;
    while i < batch.records.len() {
        let (mut j, mut len) = (i, 0);
        while j < batch.records.len() && (j == i || len + batch.records[j].len() <= max_frame) {
            len += batch.records[j].len();
            j += 1;
        }
        let start = w.scratch.len();
        w.scratch.extend_from_slice(&header(Kind::Data, len));
        w.segs.push(Seg::Scratch(start, w.scratch.len()));
        total += crate::protocol::tcp::HEADER_LEN + len;
        w.segs.extend((i..j).map(Seg::Record));
        i = j;
    }
    total
}

/// Drains the connection's queue into the socket until the connection finishes closing or the
/// socket fails.
async fn writer_loop<W: AsyncWrite + Unpin>(
    conn: Arc<TcpConnection>,
    wr: W,
    (max_records, max_bytes): (usize, usize),
    metrics: Arc<crate::metrics::Metrics>,
    clock: Clock,
) {
    let mut w = ws::Writer { wr, scratch: Vec::new(), segs: Vec::new() };
    let mut batch = Batch::default();
    // The welcome was written (or the transport refuses the Token datagram aloud): from here on
    // everything queued is written.
    let mut welcomed = false;
    let mut batches = 0u64;
    let mut retry = clock.timer();
    loop {
        batch.clear();
        match conn.core.outbound.drain(&mut batch, max_records, max_bytes, clock.mono()) {
            Drain::Ready => {
                welcomed |= conn.refused_aloud.load(Relaxed);
                let bytes = plan(&mut w, &batch, max_bytes, &mut welcomed);
                if w.segs.is_empty() {
                    continue;
                }
                if w.write_all(&batch).await.is_err() {
                    // The peer is gone; the reader sees it too and cleans up.
                    conn.close_with(CloseInfo::new(CloseReason::Normal, "write failed"), None);
                    return;
                }
                conn.core.record_sent((batch.records.len() + batch.control.len()) as u64, bytes as u64);
                if batches.is_multiple_of(crate::metrics::SAMPLE_EVERY_BATCHES) {
                    ws::sample(&metrics, &batch, conn.core.outbound.depth(), clock.now().unix_us);
                }
                batches += 1;
            }
            Drain::Idle { retry_at: Some(t) } => {
                retry.set(Some(t));
                tokio::select! {
                    () = conn.writer.notified() => {}
                    () = retry.fired() => {}
                }
            }
            Drain::Idle { retry_at: None } => conn.writer.notified().await,
            Drain::Finished(_) => {
                let _ = w.wr.shutdown().await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::control::ServerMsg;

    #[test]
    fn the_writer_recognises_the_sessions_bye() {
        let bye = ServerMsg::Bye {
            reason: CloseReason::Shutdown,
            code: 1001,
            message: "bye".into(),
            reconnect: vec!["ws://b/ws".into()],
        };
        let json = bye.to_bytes();
        assert!(json.starts_with(BYE), "{json:?}");
        let parsed: Bye = serde_json::from_slice(&json).unwrap();
        assert_eq!((parsed.reason.as_str(), parsed.reconnect.len()), ("shutdown", 1));
    }
}
