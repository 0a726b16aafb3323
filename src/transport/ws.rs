//! The WebSocket transport (`GET /ws`, subprotocol `fanhub.v1`).
//!
//! Reading uses tokio-websockets as the frame decoder (masking, fragmentation, UTF-8, size
//! limits, automatic pong and close echo). Writing bypasses it on purpose: the writer task owns
//! the socket's write half and writes server frames itself, because server frames are unmasked
//! and a data frame is just a small per-connection header in front of message records that were
//! encoded once for all subscribers. Each wake-up drains what is queued and writes it with
//! vectored writes (one `writev` for up to 64 slices), so a subscriber that is behind gets many
//! records in one frame and one syscall, and no payload byte is copied per subscriber.
//! Frames tokio-websockets wants to send (pong, close echo) reach the writer through the control
//! lane via `ReadHalfShim`.

use std::collections::HashMap;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, Method, Request, Response, StatusCode};
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_websockets::Limits;

use super::driver::{self, Recv};
use super::HubContext;
use crate::clock::Clock;
use crate::hub::{Batch, CloseInfo, ConnCore, Connection, Control, Drain, Protocol};
use crate::protocol::{CloseReason, ErrorCode, SUBPROTOCOL, SUPPORTED_SUBPROTOCOLS};
use crate::session::{Input, Session};

/// A WebSocket client connection.
#[derive(Debug)]
pub struct WsConnection {
    core: ConnCore,
    /// Wakes the writer task (a permit is kept when it is busy, so no wake-up is lost).
    writer: tokio::sync::Notify,
}

impl Connection for WsConnection {
    fn core(&self) -> &ConnCore {
        &self.core
    }

    fn wake(&self) {
        self.writer.notify_one();
    }
}

/// Largest frame the decoder accepts: room for a JSON or base64 publish of a maximum-size
/// message. Between this and `max_message_size` a publish is refused with an error and the
/// connection stays; above it the connection is closed with 1009.
pub fn frame_limit(max_message_size: usize) -> usize {
    max_message_size / 3 * 4 + 64 * 1024
}

fn json_error(status: StatusCode, code: ErrorCode, message: String) -> Response<Body> {
    let body = serde_json::json!({ "code": code, "message": message });
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("static response parts are valid")
}

/// Refuses a handshake, counted (`handshakes_refused`).
fn refuse(ctx: &HubContext, status: StatusCode, code: ErrorCode, message: String) -> Response<Body> {
    ctx.manager.counters().record_handshake_refused();
    json_error(status, code, message)
}

/// `GET /ws`: validates the upgrade request, negotiates the subprotocol, answers 101 and hands
/// the socket to a connection task.
pub async fn ws_handler(
    State(ctx): State<Arc<HubContext>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Query(query): Query<HashMap<String, String>>,
    mut req: Request<Body>,
) -> Response<Body> {
    let headers = req.headers();
    let has = |name: header::HeaderName, needle: &str| {
        headers.get(&name).and_then(|v| v.to_str().ok()).is_some_and(|v| v.to_ascii_lowercase().contains(needle))
    };
    if req.method() != Method::GET || !has(header::CONNECTION, "upgrade") || !has(header::UPGRADE, "websocket") {
        return refuse(
            &ctx,
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidArgument,
            "expected a WebSocket upgrade request".into(),
        );
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|v| v != "13") {
        return refuse(
            &ctx,
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidArgument,
            "Sec-WebSocket-Version must be 13".into(),
        );
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return refuse(&ctx, StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument, "missing Sec-WebSocket-Key".into());
    };
    let protocol = match negotiate(headers) {
        Ok(p) => p,
        Err(offered) => {
            return refuse(
                &ctx,
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidArgument,
                format!(
                    "unsupported protocol version {offered:?}; this server speaks {}",
                    SUPPORTED_SUBPROTOCOLS.join(", ")
                ),
            )
        }
    };
    if ctx.draining.load(Ordering::Relaxed) {
        return refuse(
            &ctx,
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            format!("this node is draining; reconnect to one of {:?}", ctx.reconnect_urls()),
        );
    }
    let token = super::bearer_header(req.headers()).map(str::to_owned).or_else(|| query.get("token").cloned());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(%remote, error = %e, "websocket upgrade failed");
                return;
            }
        };
        let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                let stream = parts.io.into_inner();
                let _ = stream.set_nodelay(true);
                let (rd, wr) = stream.into_split();
                return serve(ctx, rd, wr, parts.read_buf, remote, token).await;
            }
            Err(upgraded) => upgraded,
        };
        #[cfg(feature = "tls")]
        let upgraded = match upgraded.downcast::<TokioIo<crate::tls::TlsStream<TcpStream>>>() {
            Ok(parts) => {
                let stream = parts.io.into_inner();
                let _ = stream.get_ref().0.set_nodelay(true);
                let (rd, wr) = tokio::io::split(stream);
                return serve(ctx, rd, wr, parts.read_buf, remote, token).await;
            }
            Err(upgraded) => upgraded,
        };
        drop(upgraded);
        tracing::error!(%remote, "websocket upgrade on an unsupported stream type");
    });
    let mut resp = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept_key(key.as_bytes()));
    if protocol {
        resp = resp.header(header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL);
    }
    resp.body(Body::empty()).expect("static response parts are valid")
}

/// `Ok(true)`: select `fanhub.v1`; `Ok(false)`: none offered (v1 implied); `Err`: only unknown
/// versions offered.
fn negotiate(headers: &HeaderMap) -> Result<bool, String> {
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if offered.is_empty() {
        Ok(false)
    } else if offered.iter().any(|p| p == SUBPROTOCOL) {
        Ok(true)
    } else {
        Err(offered.join(", "))
    }
}

fn accept_key(key: &[u8]) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes())
}

/// Bytes hyper read past the upgrade request, copied out of (and releasing) hyper's 8 KiB read buffer,
/// which the returned `Bytes` would otherwise keep alive for the connection's whole life.
fn detach(prefix: Bytes) -> Bytes {
    if prefix.is_empty() {
        Bytes::new()
    } else {
        Bytes::copy_from_slice(&prefix)
    }
}

/// Runs one WebSocket connection to its end: the session through the driver here, the writer
/// in its own task.
async fn serve<R, W>(ctx: Arc<HubContext>, rd: R, wr: W, prefix: Bytes, remote: SocketAddr, token: Option<String>)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let _live = super::LiveGuard::new(ctx.clone());
    let conn = Arc::new(WsConnection {
        core: ctx.manager.new_core(Protocol::WebSocket, remote, ctx.clock.now().unix_ms()),
        writer: tokio::sync::Notify::new(),
    });
    let ws_cfg = &ctx.config.websocket;
    let batch = (ws_cfg.batch_max_records, ws_cfg.batch_max_bytes);
    let mut writer = tokio::spawn(writer_loop(conn.clone(), wr, batch, ctx.metrics.clone(), ctx.clock.clone()));
    let limits = Limits::default().max_payload_len(Some(frame_limit(ctx.manager.limits().max_message_size)));
    let shim = ReadHalfShim { prefix: detach(prefix), rd, conn: conn.clone(), pending: BytesMut::new() };
    let ws = tokio_websockets::server::Builder::new().limits(limits).serve(shim);
    let mut inbound = WsInbound { ws, conn: conn.clone(), peer_closed: false };
    let session = Session::new(driver::session_params(&ctx, conn.clone(), true, token), ctx.clock.now());
    driver::run(&ctx, session, &mut inbound, CloseInfo::new(CloseReason::Normal, "connection lost")).await;
    let cfg = &ctx.config.session;
    let drains = conn.core.outbound.closing().is_some_and(|c| c.reason.drains_queue());
    let grace =
        if drains { ctx.config.server.shutdown_grace_ms.max(cfg.close_timeout_ms) } else { cfg.close_timeout_ms };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(grace);
    if tokio::time::timeout_at(deadline, &mut writer).await.is_err() {
        writer.abort();
        return;
    }
    // Lingering close: our close frame and FIN are out; read and discard until the peer closes
    // (or briefly), because closing a socket with unread input makes the kernel send a reset,
    // and a reset makes the peer drop what it has not read yet (our bye and close frame).
    if !inbound.peer_closed {
        let mut rd = inbound.ws.into_inner().rd;
        let mut buf = vec![0u8; 4096];
        let linger = Duration::from_millis(cfg.close_timeout_ms.min(2000));
        let _ = tokio::time::timeout(linger, async {
            while matches!(tokio::io::AsyncReadExt::read(&mut rd, &mut buf).await, Ok(n) if n > 0) {}
        })
        .await;
    }
}

/// The WebSocket's inbound side, as the session driver reads it.
struct WsInbound<R> {
    ws: tokio_websockets::WebSocketStream<ReadHalfShim<R>>,
    conn: Arc<WsConnection>,
    peer_closed: bool,
}

impl<R: AsyncRead + Unpin + Send> driver::Transport for WsInbound<R> {
    async fn recv(&mut self) -> Recv {
        loop {
            match self.ws.next().await {
                // Poll on: the next poll writes tokio-websockets' close echo, then ends.
                Some(Ok(msg)) if msg.is_close() => self.peer_closed = true,
                Some(Ok(msg)) if msg.is_text() => return Recv::Frame(Input::Text(Bytes::from(msg.into_payload()))),
                Some(Ok(msg)) if msg.is_binary() => return Recv::Frame(Input::Binary(Bytes::from(msg.into_payload()))),
                Some(Ok(_)) => return Recv::Frame(Input::Activity),
                Some(Err(e)) => return decode_error(e),
                None if self.peer_closed => return Recv::Closed,
                None => return Recv::Gone,
            }
        }
    }

    fn keepalive(&mut self) {
        self.conn.send_raw(Bytes::from_static(&[0x89, 0x00]));
    }
}

fn decode_error(e: tokio_websockets::Error) -> Recv {
    use tokio_websockets::proto::ProtocolError;
    let violation =
        |reason, code, message: String, limit| Recv::Frame(Input::Violation { reason, code, message, limit });
    match e {
        tokio_websockets::Error::PayloadTooLong { len, max_len } => violation(
            CloseReason::MessageTooBig,
            ErrorCode::ResourceExhausted,
            format!("frame of {len} bytes exceeds the limit of {max_len}"),
            Some("max_message_size"),
        ),
        tokio_websockets::Error::Protocol(ProtocolError::InvalidUtf8) => violation(
            CloseReason::InvalidUtf8,
            ErrorCode::InvalidArgument,
            "text frame is not valid UTF-8".into(),
            None,
        ),
        tokio_websockets::Error::Protocol(p) => violation(
            CloseReason::ProtocolError,
            ErrorCode::InvalidArgument,
            format!("WebSocket protocol violation: {p}"),
            None,
        ),
        // The socket is gone: nothing to tell anyone.
        _ => Recv::Gone,
    }
}

/// The read half given to tokio-websockets. Reads come from the bytes hyper had already buffered,
/// then the socket; writes (its automatic pong and close echo) are collected and, on flush,
/// queued as one raw frame on the connection's control lane for the writer task.
struct ReadHalfShim<R> {
    prefix: Bytes,
    rd: R,
    conn: Arc<WsConnection>,
    pending: BytesMut,
}

impl<R: AsyncRead + Unpin> AsyncRead for ReadHalfShim<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let chunk = self.prefix.split_to(n);
            buf.put_slice(&chunk);
            if self.prefix.is_empty() {
                // Release the (possibly shared) buffer the prefix came from.
                self.prefix = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.rd).poll_read(cx, buf)
    }
}

impl<R: Unpin> AsyncWrite for ReadHalfShim<R> {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.pending.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !self.pending.is_empty() {
            let frame = self.pending.split().freeze();
            self.conn.send_raw(frame);
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}

const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;

/// Appends an unmasked, final WebSocket frame header to `out`.
pub fn frame_header(opcode: u8, len: usize, out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(len as u8);
    } else if let Ok(l) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&l.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// A piece of the next write: a range of the header scratch, a control item, or a record.
#[derive(Clone, Copy)]
pub(super) enum Seg {
    Scratch(usize, usize),
    Control(usize),
    Record(usize),
}

/// Writes a planned batch: the slices of `segs` (into `scratch` and the batch), vectored.
/// The stream transports share it; each plans its own framing.
pub(super) struct Writer<W> {
    pub(super) wr: W,
    pub(super) scratch: Vec<u8>,
    pub(super) segs: Vec<Seg>,
}

fn seg_slice<'a>(scratch: &'a [u8], batch: &'a Batch, s: Seg) -> &'a [u8] {
    match s {
        Seg::Scratch(a, b) => &scratch[a..b],
        Seg::Control(i) => match &batch.control[i] {
            Control::Json(b) | Control::Raw(b) => b,
        },
        Seg::Record(i) => &batch.records[i],
    }
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    /// Frames the batch: each JSON control message as a text frame, raw control bytes as they
    /// are, then the records as binary frames of up to `max_frame` bytes each.
    fn plan(&mut self, batch: &Batch, max_frame: usize) -> usize {
        self.scratch.clear();
        self.segs.clear();
        let mut total = 0;
        for (i, c) in batch.control.iter().enumerate() {
            if let Control::Json(b) = c {
                let start = self.scratch.len();
                frame_header(OP_TEXT, b.len(), &mut self.scratch);
                self.segs.push(Seg::Scratch(start, self.scratch.len()));
                total += self.scratch.len() - start;
            }
            self.segs.push(Seg::Control(i));
            total += match c {
                Control::Json(b) | Control::Raw(b) => b.len(),
            };
        }
        let mut i = 0;
        while i < batch.records.len() {
            let mut j = i;
            let mut len = 0;
            while j < batch.records.len() && (j == i || len + batch.records[j].len() <= max_frame) {
                len += batch.records[j].len();
                j += 1;
            }
            let start = self.scratch.len();
            frame_header(OP_BINARY, len, &mut self.scratch);
            self.segs.push(Seg::Scratch(start, self.scratch.len()));
            total += self.scratch.len() - start + len;
            self.segs.extend((i..j).map(Seg::Record));
            i = j;
        }
        total
    }

    pub(super) async fn write_all(&mut self, batch: &Batch) -> std::io::Result<()> {
        let (mut idx, mut off) = (0usize, 0usize);
        while idx < self.segs.len() {
            let mut iov = [IoSlice::new(&[]); 64];
            let mut n = 0;
            for (k, s) in self.segs[idx..].iter().take(64).enumerate() {
                let sl = seg_slice(&self.scratch, batch, *s);
                iov[k] = IoSlice::new(if k == 0 { &sl[off..] } else { sl });
                n += 1;
            }
            let mut written = self.wr.write_vectored(&iov[..n]).await?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            while idx < self.segs.len() {
                let rem = seg_slice(&self.scratch, batch, self.segs[idx]).len() - off;
                if written >= rem {
                    written -= rem;
                    idx += 1;
                    off = 0;
                } else {
                    off += written;
                    break;
                }
            }
        }
        // A no-op on TCP; over TLS it pushes out records the TLS layer still buffers.
        self.wr.flush().await
    }

    async fn close(&mut self, info: &CloseInfo) {
        if info.send_close_frame {
            let mut reason = info.message.as_str();
            while reason.len() > 123 {
                let mut cut = 123;
                while !reason.is_char_boundary(cut) {
                    cut -= 1;
                }
                reason = &reason[..cut];
            }
            let mut frame = Vec::with_capacity(4 + 2 + reason.len());
            frame_header(OP_CLOSE, 2 + reason.len(), &mut frame);
            frame.extend_from_slice(&info.reason.close_code().to_be_bytes());
            frame.extend_from_slice(reason.as_bytes());
            let _ = self.wr.write_all(&frame).await;
        }
        let _ = self.wr.shutdown().await;
    }
}

/// Drains the connection's queue into the socket until the connection finishes closing or the
/// socket fails.
async fn writer_loop<W: AsyncWrite + Unpin>(
    conn: Arc<WsConnection>,
    wr: W,
    (max_records, max_bytes): (usize, usize),
    metrics: Arc<crate::metrics::Metrics>,
    clock: Clock,
) {
    let mut w = Writer { wr, scratch: Vec::new(), segs: Vec::new() };
    let mut batch = Batch::default();
    let mut batches = 0u64;
    let mut retry = clock.timer();
    loop {
        batch.clear();
        match conn.core.outbound.drain(&mut batch, max_records, max_bytes, clock.mono()) {
            Drain::Ready => {
                let bytes = w.plan(&batch, max_bytes);
                if w.write_all(&batch).await.is_err() {
                    // The peer is gone; the reader sees it too and cleans up.
                    conn.close_with(CloseInfo::new(CloseReason::Normal, "write failed"), None);
                    return;
                }
                conn.core.record_sent((batch.records.len() + batch.control.len()) as u64, bytes as u64);
                if batches.is_multiple_of(crate::metrics::SAMPLE_EVERY_BATCHES) {
                    sample(&metrics, &batch, conn.core.outbound.depth(), clock.now().unix_us);
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
            Drain::Finished(info) => {
                w.close(&info).await;
                return;
            }
        }
    }
}

/// Records the oldest record's publish-to-write latency and the queue depth at wake-up.
pub(super) fn sample(metrics: &crate::metrics::Metrics, batch: &Batch, left: usize, now_unix_us: i64) {
    let Some(first) = batch.records.first() else { return };
    if let Some(published) = crate::protocol::frame::record_timestamp_us(first) {
        let age_us = (now_unix_us.max(0) as u64).saturating_sub(published);
        metrics.publish_to_write.record(age_us as f64 / 1e6);
    }
    metrics.queue_depth.record((batch.records.len() + left) as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_headers_use_the_shortest_length_form() {
        let mut v = Vec::new();
        frame_header(OP_BINARY, 125, &mut v);
        assert_eq!(v, [0x82, 125]);
        v.clear();
        frame_header(OP_TEXT, 126, &mut v);
        assert_eq!(v, [0x81, 126, 0, 126]);
        v.clear();
        frame_header(OP_BINARY, 70_000, &mut v);
        assert_eq!(v, [0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    }

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }
}
