//! WebRTC data-channel transport (str0m, sans-IO): every peer is a [`Connection`] like a
//! WebSocket client, registered in the same `ConnectionManager`, under the same policies.
//!
//! **Driver tasks** (`webrtc.drivers`, default one per core) each own one UDP socket (ICE-lite;
//! driver *i* binds `webrtc.udp_listen`'s port + *i*, or any free port for port 0; advertised as
//! `webrtc.public_ip` behind a 1:1 NAT) and the `Rtc`s of the peers placed on it. A new peer
//! goes to the driver holding the fewest and gets that driver's address as its only host
//! candidate, so all its datagrams arrive on that driver's socket: drivers share nothing and run
//! on separate cores. (Rejected: one port with `SO_REUSEPORT` — the kernel picks the socket by
//! the remote address hash, which the server does not know when it places the peer, so datagrams
//! would have to be forwarded between drivers.) Inside a driver, incoming datagrams go to the peer
//! whose `Rtc::accepts` them (then by learned source address). Per peer, a **session task** runs
//! the transport-neutral `fanhub.v1` state machine (`session.rs`) on the control channel's
//! messages, and a **pump** tells the driver when the peer's outbound queue has something.
//!
//! Channels (opened by the peer): `fanhub` (reliable, ordered) carries the JSON control
//! messages and `reliable` topics' records; `fanhub-lossy` (unordered, `maxRetransmits: 0`),
//! when the peer opens it, carries the other records. A record larger than `webrtc.chunk_size`
//! is split into chunks, each a message starting with the chunk header of `docs/protocol.md`;
//! on the lossy channel an incomplete frame is dropped whole by the client.
//!
//! Slow peers: the driver takes records from a peer's outbound queue only while the peer's
//! SCTP send buffer has room for the largest possible record, so a record is always written
//! whole, and a peer that does not keep up is handled by the outbound queue's policy (drop
//! whole frames, coalesce, or disconnect a reliable subscriber) — never by blocking others.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use str0m::change::SdpOffer;
use str0m::channel::{ChannelData, ChannelId};
use str0m::net::{Protocol as NetProtocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::HubContext;
use crate::hub::stats::DropReason;
use crate::hub::{Batch, CloseInfo, ConnCore, ConnId, Connection, Control, Drain, Protocol};
use crate::protocol::{CloseReason, ErrorCode};

/// Label of the reliable, ordered channel (control + reliable records).
pub const CONTROL_LABEL: &str = "fanhub";
/// Label of the optional lossy channel (best-effort and rate-limited records).
pub const LOSSY_LABEL: &str = "fanhub-lossy";
/// Most bytes the lossy channel may have waiting in the SCTP send buffer: a best-effort frame
/// beyond it is dropped whole at once (counted as `queue_full`) instead of waiting seconds
/// behind frames the peer has not taken (a frame larger than this still goes on an empty
/// channel).
pub const LOSSY_BUDGET: usize = 256 * 1024;
/// First byte of a chunk message (a record never starts with it).
pub const CHUNK_MAGIC: u8 = 0xCF;
/// Chunk header length: magic, reserved, chunk index (u16), chunk count (u16), frame id (u32),
/// all big-endian.
pub const CHUNK_HEADER_LEN: usize = 10;

/// A peer's connection as the hub sees it.
#[derive(Debug)]
pub struct RtcConnection {
    core: ConnCore,
    /// The command channel of the driver holding this peer.
    driver: mpsc::UnboundedSender<Command>,
    /// A `Ready` command is queued for this peer and not handled yet.
    scheduled: AtomicBool,
}

impl Connection for RtcConnection {
    fn core(&self) -> &ConnCore {
        &self.core
    }

    /// Schedules the peer on its driver, which drains the queue into the data channels while
    /// SCTP has room (one `Ready` in flight per peer).
    fn wake(&self) {
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            let _ = self.driver.send(Command::Ready(self.core.id()));
        }
    }
}

enum Command {
    Add(Box<Peer>),
    /// The peer's outbound queue has something (or closed).
    Ready(ConnId),
    /// A trickled remote candidate.
    Candidate(ConnId, Candidate),
    /// End the session (`DELETE /v1/rtc/sessions/{id}`).
    Close(ConnId),
}

/// One driver: its command channel, socket and load.
#[derive(Debug)]
struct Shard {
    tx: mpsc::UnboundedSender<Command>,
    /// The address put in the host candidate of the peers placed here.
    advertised: SocketAddr,
    /// The socket's address.
    local: SocketAddr,
    /// Peers this driver holds (a new peer goes to the least loaded driver).
    peers: Arc<AtomicUsize>,
}

/// A live session: the token subject that created it and the driver holding it.
#[derive(Debug)]
struct SessionEntry {
    subject: String,
    shard: usize,
}

/// The handle the signaling uses.
#[derive(Debug, Clone)]
pub struct RtcHandle {
    shards: Arc<[Shard]>,
    sessions: Arc<dashmap::DashMap<ConnId, SessionEntry>>,
}

impl RtcHandle {
    /// Live WebRTC sessions (peers the drivers hold).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The drivers' UDP sockets, one per driver.
    pub fn sockets(&self) -> Vec<SocketAddr> {
        self.shards.iter().map(|s| s.local).collect()
    }

    fn least_loaded(&self) -> usize {
        (0..self.shards.len()).min_by_key(|&i| self.shards[i].peers.load(Ordering::Relaxed)).unwrap_or(0)
    }
}

/// Why a signaling request failed: an HTTP status and a wire error.
#[derive(Debug)]
pub struct SignalingError {
    /// HTTP status.
    pub status: StatusCode,
    /// Wire code.
    pub code: ErrorCode,
    /// Message.
    pub message: String,
}

fn sig(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> SignalingError {
    SignalingError { status, code, message: message.into() }
}

impl IntoResponse for SignalingError {
    fn into_response(self) -> Response {
        error(self.status, self.code, self.message)
    }
}

struct Peer {
    rtc: Rtc,
    conn: Arc<RtcConnection>,
    control: Option<ChannelId>,
    lossy: Option<ChannelId>,
    /// Control-channel messages to the session task.
    to_session: mpsc::Sender<(bool, Bytes)>,
    frame_id: u32,
    retry_at: Option<Instant>,
    /// When the `Rtc` wants `Input::Timeout` next.
    timeout: Instant,
    counters: Arc<crate::hub::Counters>,
    finished: bool,
}

/// How many drivers `webrtc.drivers` asks for (0 = one per core).
pub fn driver_count(configured: usize) -> usize {
    if configured > 0 {
        configured
    } else {
        std::thread::available_parallelism().map_or(1, usize::from)
    }
}

/// Binds one UDP socket per driver (large receive buffers) and starts the drivers.
///
/// # Errors
/// When a socket cannot be bound (port taken, or port + drivers beyond 65535).
pub fn start(ctx: &Arc<HubContext>, cfg: &crate::config::WebRtcConfig) -> std::io::Result<RtcHandle> {
    let n = driver_count(cfg.drivers);
    let sessions = Arc::new(dashmap::DashMap::new());
    let mut shards = Vec::with_capacity(n);
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let socket = bind(cfg.udp_listen, i)?;
        let local = socket.local_addr()?;
        let advertised = SocketAddr::new(cfg.public_ip.unwrap_or(local.ip()), local.port());
        let (tx, rx) = mpsc::unbounded_channel();
        let peers = Arc::new(AtomicUsize::new(0));
        tasks.push((socket, rx, tx.clone(), peers.clone()));
        shards.push(Shard { tx, advertised, local, peers });
    }
    let handle = RtcHandle { shards: shards.into(), sessions: sessions.clone() };
    for (socket, rx, tx, peers) in tasks {
        tokio::spawn(drive(ctx.clone(), socket, rx, tx, sessions.clone(), peers));
    }
    let advertised = handle.shards[0].advertised.ip();
    tracing::info!(sockets = ?handle.sockets(), %advertised, "webrtc listening");
    Ok(handle)
}

/// Driver `i`'s socket: `listen`'s port + `i` (any free port when it is 0).
fn bind(listen: SocketAddr, i: usize) -> std::io::Result<UdpSocket> {
    let mut addr = listen;
    if listen.port() != 0 {
        let port = u16::try_from(usize::from(listen.port()) + i).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "webrtc.udp_listen port + drivers exceeds 65535")
        })?;
        addr.set_port(port);
    }
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::DGRAM, None)?;
    // At the default ~208 KB the socket dropped packets while 200 peers joined; 8 MiB: none.
    let _ = socket.set_recv_buffer_size(8 << 20);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// `POST /v1/rtc/offer` (WHEP style): the body is the peer's SDP offer (`application/sdp`, or
/// JSON `{"type":"offer","sdp":…}`), the token is a bearer token (or `?token=`); the answer is
/// `201` with the SDP answer and `Location: /v1/rtc/sessions/{id}`.
pub async fn offer(ctx: Arc<HubContext>, token: Option<String>, remote: SocketAddr, body: Bytes) -> Response {
    let Some(token) = token else {
        ctx.manager.counters().record_auth_failure(crate::hub::AuthFailure::Missing);
        return error(StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated, "a bearer token is required".into());
    };
    let sdp = match parse_offer(&body) {
        Ok(s) => s,
        Err(m) => return error(StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument, m),
    };
    match accept(&ctx, token, remote, &sdp) {
        Ok((answer, id)) => (
            StatusCode::CREATED,
            [
                (header::CONTENT_TYPE, "application/sdp".to_owned()),
                (header::LOCATION, format!("/v1/rtc/sessions/{}", id.0)),
            ],
            answer,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// Creates a WebRTC peer for an SDP offer authenticated by `token` (HTTP or WebSocket
/// signaling): returns the SDP answer and the new connection's id. The peer then says
/// `connect` on its `fanhub` channel.
///
/// # Errors
/// [`SignalingError`]: unauthenticated, malformed SDP, no data channel, WebRTC off, draining.
pub fn accept(
    ctx: &Arc<HubContext>,
    token: String,
    remote: SocketAddr,
    sdp: &str,
) -> Result<(String, ConnId), SignalingError> {
    let handle = ctx
        .rtc
        .get()
        .cloned()
        .ok_or_else(|| sig(StatusCode::NOT_FOUND, ErrorCode::NotFound, "WebRTC is disabled on this node"))?;
    if ctx.draining.load(Ordering::Relaxed) {
        return Err(sig(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, "this node is draining"));
    }
    let identity = ctx.sessions.verify(&token, ctx.clock.now().unix_secs()).map_err(|e| {
        ctx.manager.counters().record_auth_failure(e.reason);
        sig(StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated, e.to_string())
    })?;
    if !sdp.lines().any(|l| l.starts_with("m=application")) {
        return Err(sig(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidArgument,
            "the offer has no data channel (no m=application section)",
        ));
    }
    let offer = SdpOffer::from_sdp_string(sdp)
        .map_err(|e| sig(StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument, format!("malformed SDP offer: {e}")))?;
    let max = ctx.manager.limits().max_message_size + 64 * 1024;
    let mut rtc = Rtc::builder().set_ice_lite(true).set_sctp_max_buffered_amount(2 * max).build(Instant::now());
    let shard_index = handle.least_loaded();
    let shard = &handle.shards[shard_index];
    let candidate = Candidate::host(shard.advertised, "udp")
        .map_err(|e| sig(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, format!("candidate: {e}")))?;
    rtc.add_local_candidate(candidate);
    let answer = rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(|e| sig(StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument, format!("offer refused: {e}")))?;
    let conn = Arc::new(RtcConnection {
        core: ctx.manager.new_core(Protocol::WebRtc, remote, ctx.clock.now().unix_ms()),
        driver: shard.tx.clone(),
        scheduled: AtomicBool::new(false),
    });
    let id = conn.id();
    let (to_session, from_driver) = mpsc::channel(256);
    handle.sessions.insert(id, SessionEntry { subject: identity.subject, shard: shard_index });
    shard.peers.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(session_task(ctx.clone(), conn.clone(), token, from_driver));
    let peer = Peer {
        rtc,
        conn,
        control: None,
        lossy: None,
        to_session,
        frame_id: 0,
        retry_at: None,
        timeout: Instant::now(),
        counters: ctx.manager.counters().clone(),
        finished: false,
    };
    if shard.tx.send(Command::Add(Box::new(peer))).is_err() {
        handle.sessions.remove(&id);
        shard.peers.fetch_sub(1, Ordering::Relaxed);
        return Err(sig(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable, "WebRTC is shutting down"));
    }
    Ok((answer.to_sdp_string(), id))
}

/// Adds a trickled remote ICE candidate (`candidate:…`, with or without `a=`) to session `id`,
/// which the token's subject must have created.
///
/// # Errors
/// [`SignalingError`]: unknown session (`not_found`), another subject's session
/// (`permission_denied`), a malformed candidate.
pub fn add_candidate(ctx: &HubContext, subject: &str, id: u64, candidate: &str) -> Result<(), SignalingError> {
    let tx = owned_session(ctx, subject, id)?;
    let line = candidate.trim().trim_start_matches("a=");
    let c = Candidate::from_sdp_string(line)
        .map_err(|e| sig(StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument, format!("malformed candidate: {e}")))?;
    let _ = tx.send(Command::Candidate(ConnId(id), c));
    Ok(())
}

/// Ends session `id` (`DELETE /v1/rtc/sessions/{id}`).
///
/// # Errors
/// As [`add_candidate`].
pub fn close_session(ctx: &HubContext, subject: &str, id: u64) -> Result<(), SignalingError> {
    let tx = owned_session(ctx, subject, id)?;
    let _ = tx.send(Command::Close(ConnId(id)));
    Ok(())
}

/// The command channel of the driver holding session `id`, if `subject` owns it.
fn owned_session(ctx: &HubContext, subject: &str, id: u64) -> Result<mpsc::UnboundedSender<Command>, SignalingError> {
    let handle = ctx
        .rtc
        .get()
        .cloned()
        .ok_or_else(|| sig(StatusCode::NOT_FOUND, ErrorCode::NotFound, "WebRTC is disabled on this node"))?;
    let owner = handle.sessions.get(&ConnId(id)).map(|e| (e.subject.clone(), e.shard));
    match owner {
        None => Err(sig(StatusCode::NOT_FOUND, ErrorCode::NotFound, format!("no WebRTC session {id}"))),
        Some((o, _)) if o != subject => Err(sig(
            StatusCode::FORBIDDEN,
            ErrorCode::PermissionDenied,
            format!("session {id} belongs to another subject"),
        )),
        Some((_, shard)) => Ok(handle.shards[shard].tx.clone()),
    }
}

fn parse_offer(body: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the offer is not UTF-8".to_owned())?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        #[derive(serde::Deserialize)]
        struct Json {
            #[serde(rename = "type")]
            kind: Option<String>,
            sdp: String,
        }
        let j: Json = serde_json::from_str(trimmed).map_err(|e| format!("invalid offer JSON: {e}"))?;
        if j.kind.as_deref().is_some_and(|k| k != "offer") {
            return Err(format!("expected an offer, got {:?}", j.kind.unwrap_or_default()));
        }
        return Ok(j.sdp);
    }
    if !trimmed.starts_with("v=") {
        return Err("malformed SDP offer: it must start with v=".into());
    }
    Ok(text.to_owned())
}

fn error(status: StatusCode, code: ErrorCode, message: String) -> Response {
    (status, axum::Json(serde_json::json!({ "code": code, "message": message }))).into_response()
}

/// The bearer token of a signaling request.
pub fn bearer(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        if let Some((scheme, t)) = v.split_once(' ') {
            if scheme.eq_ignore_ascii_case("bearer") {
                return Some(t.trim().to_owned());
            }
        }
    }
    query?.split('&').find_map(|kv| kv.strip_prefix("token=")).map(str::to_owned)
}

/// Hands a datagram to the peer it belongs to; returns that peer.
fn route_datagram(
    peers: &mut HashMap<ConnId, Peer>,
    by_source: &mut HashMap<SocketAddr, ConnId>,
    data: &[u8],
    source: SocketAddr,
    local: SocketAddr,
) -> Option<ConnId> {
    let contents = data.try_into().ok()?;
    let input =
        Input::Receive(Instant::now(), Receive { proto: NetProtocol::Udp, source, destination: local, contents });
    let known = by_source.get(&source).copied().filter(|id| peers.get(id).is_some_and(|p| p.rtc.accepts(&input)));
    let id = match known {
        Some(id) => id,
        None => {
            let id = peers.iter().find(|(_, p)| p.rtc.accepts(&input)).map(|(id, _)| *id)?;
            by_source.insert(source, id);
            id
        }
    };
    let p = peers.get_mut(&id)?;
    if let Err(e) = p.rtc.handle_input(input) {
        tracing::debug!(conn = id.0, error = %e, "webrtc peer failed");
        p.rtc.disconnect();
    }
    Some(id)
}

/// Runs `fanhub.v1` for one peer: control-channel messages in, through the session driver;
/// replies go through the outbound queue, which the peer's driver drains into the channels.
async fn session_task(
    ctx: Arc<HubContext>,
    conn: Arc<RtcConnection>,
    token: String,
    rx: mpsc::Receiver<(bool, Bytes)>,
) {
    let _live = super::LiveGuard::new(ctx.clone());
    // No keep-alive of the session's own: ICE consent (binding requests every few seconds)
    // is WebRTC's liveness check, and its expiry ends the peer in the driver.
    let params = super::driver::session_params(&ctx, conn, false, Some(token));
    let session = crate::session::Session::new(params, ctx.clock.now());
    let gone = CloseInfo { reason: CloseReason::Normal, message: "peer gone".into(), send_close_frame: false };
    super::driver::run(&ctx, session, &mut ChannelInbound(rx), gone).await;
}

/// The peer's `fanhub` channel messages, as the driver hands them over.
struct ChannelInbound(mpsc::Receiver<(bool, Bytes)>);

impl super::driver::Transport for ChannelInbound {
    async fn recv(&mut self) -> super::driver::Recv {
        use crate::session::Input;
        match self.0.recv().await {
            Some((true, data)) => super::driver::Recv::Frame(Input::Binary(data)),
            Some((false, data)) => super::driver::Recv::Frame(Input::Text(data)),
            None => super::driver::Recv::Gone,
        }
    }
}

async fn drive(
    ctx: Arc<HubContext>,
    socket: UdpSocket,
    mut rx: mpsc::UnboundedReceiver<Command>,
    _keep: mpsc::UnboundedSender<Command>,
    sessions: Arc<dashmap::DashMap<ConnId, SessionEntry>>,
    load: Arc<AtomicUsize>,
) {
    let mut peers: HashMap<ConnId, Peer> = HashMap::new();
    // One quinn-udp state for both directions: it turns on UDP GRO, so receiving must go
    // through it too (a GRO buffer holds several datagrams; a plain recv would truncate it).
    let udp = quinn_udp::UdpSocketState::new((&socket).into()).ok();
    let mut out = Sender::new(&socket, udp.as_ref());
    let mut inbox = Inbox::new(udp.as_ref());
    let mut batch = Batch::default();
    let local = socket.local_addr().expect("bound");
    let chunk = ctx.config.webrtc.chunk_size;
    let max_record = ctx.manager.limits().max_message_size + 64 * 1024;
    let mut shutdown = ctx.shutdown.clone();
    let mut stopping: Option<Instant> = None;
    let mut dirty: Vec<ConnId> = Vec::new();
    // Where each peer's datagrams come from, learned from the first one its `Rtc` accepted.
    let mut by_source: HashMap<SocketAddr, ConnId> = HashMap::new();
    loop {
        let now = Instant::now();
        // On shutdown, keep serving until the peers' sessions have said bye (bounded).
        if *shutdown.borrow_and_update() && stopping.is_none() {
            stopping = Some(now + Duration::from_millis(ctx.config.server.shutdown_grace_ms + 500));
        }
        if stopping.is_some_and(|t| now >= t || peers.is_empty()) {
            for p in peers.values_mut() {
                p.rtc.disconnect();
                ctx.manager.unregister_client(p.conn.id());
                sessions.remove(&p.conn.id());
            }
            load.store(0, Ordering::Relaxed);
            return;
        }
        // Only peers that got input, a command or a due timer are polled: O(touched), not
        // O(peers), per wake-up.
        for (id, p) in peers.iter_mut() {
            let mut touched = false;
            if p.retry_at.is_some_and(|t| t <= now) {
                p.retry_at = None;
                p.flush(&mut batch, chunk, max_record);
                touched = true;
            }
            if p.timeout <= now {
                if p.rtc.handle_input(Input::Timeout(now)).is_err() {
                    p.rtc.disconnect();
                }
                touched = true;
            }
            if touched {
                dirty.push(*id);
            }
        }
        dirty.sort_unstable();
        dirty.dedup();
        for id in dirty.drain(..) {
            if let Some(p) = peers.get_mut(&id) {
                p.timeout = p.poll(&mut out, &mut batch, chunk, max_record);
            }
        }
        peers.retain(|_, p| {
            let alive = p.rtc.is_alive() && !p.finished;
            if !alive {
                p.conn.close_with(CloseInfo::new(CloseReason::Normal, "peer gone"), None);
                ctx.manager.unregister_client(p.conn.id());
                sessions.remove(&p.conn.id());
                load.fetch_sub(1, Ordering::Relaxed);
                by_source.retain(|_, id| *id != p.conn.id());
            }
            alive
        });
        let next = peers
            .values()
            .flat_map(|p| [Some(p.timeout), p.retry_at])
            .flatten()
            .min()
            .unwrap_or(now + Duration::from_millis(100))
            .max(now);
        let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(next));
        tokio::select! {
            _ = socket.readable() => {
                // Take what is queued, bounded (8 batches) so timers and commands get their turn.
                for _ in 0..8 {
                    let Ok(n) = inbox.recv(&socket, udp.as_ref()) else { break };
                    for i in 0..n {
                        let (source, data, stride) = inbox.message(i);
                        for datagram in data.chunks(stride) {
                            // str0m wants its output drained after every input: poll right away.
                            if let Some(id) = route_datagram(&mut peers, &mut by_source, datagram, source, local) {
                                if let Some(p) = peers.get_mut(&id) {
                                    p.timeout = p.poll(&mut out, &mut batch, chunk, max_record);
                                }
                            }
                        }
                    }
                }
            }
            cmd = rx.recv() => match cmd {
                Some(Command::Add(p)) => {
                    dirty.push(p.conn.id());
                    peers.insert(p.conn.id(), *p);
                }
                Some(Command::Candidate(id, c)) => {
                    if let Some(p) = peers.get_mut(&id) {
                        p.rtc.add_remote_candidate(c);
                        dirty.push(id);
                    }
                }
                Some(Command::Close(id)) => {
                    if let Some(p) = peers.get_mut(&id) {
                        p.conn.close(CloseReason::Normal, "session ended by the peer", &[]);
                        p.rtc.disconnect();
                        dirty.push(id);
                    }
                }
                Some(Command::Ready(id)) => {
                    if let Some(p) = peers.get_mut(&id) {
                        p.conn.scheduled.store(false, Ordering::Release);
                        p.flush(&mut batch, chunk, max_record);
                        dirty.push(id);
                    }
                }
                None => return,
            },
            () = sleep => {}
            _ = shutdown.changed(), if stopping.is_none() => {}
        }
    }
}

impl Peer {
    /// Runs the `Rtc` until it wants time to pass; returns when.
    fn poll(&mut self, out: &mut Sender<'_>, batch: &mut Batch, chunk: usize, max_record: usize) -> Instant {
        loop {
            if !self.rtc.is_alive() {
                out.flush();
                return Instant::now();
            }
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    out.flush();
                    return t;
                }
                Ok(Output::Transmit(t)) => out.push(t.destination, &t.contents),
                Ok(Output::Event(e)) => self.event(e, batch, chunk, max_record),
                Err(e) => {
                    tracing::debug!(conn = self.conn.id().0, error = %e, "webrtc peer failed");
                    self.rtc.disconnect();
                }
            }
        }
    }

    fn event(&mut self, e: Event, batch: &mut Batch, chunk: usize, max_record: usize) {
        match e {
            Event::ChannelOpen(id, label) => {
                if label == CONTROL_LABEL && self.control.is_none() {
                    self.control = Some(id);
                } else if label == LOSSY_LABEL && self.lossy.is_none() {
                    self.lossy = Some(id);
                }
                self.flush(batch, chunk, max_record);
            }
            Event::ChannelData(ChannelData { id, binary, data }) if Some(id) == self.control => {
                let full = self.to_session.try_send((binary, Bytes::from(data))).is_err();
                if full {
                    // The session does not keep up with this peer's requests.
                    self.conn.close(CloseReason::SlowConsumer, "too many requests in flight", &[]);
                }
            }
            Event::ChannelClose(id) if Some(id) == self.control => self.rtc.disconnect(),
            Event::ChannelBufferedAmountLow(_) => self.flush(batch, chunk, max_record),
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => self.rtc.disconnect(),
            _ => {}
        }
    }

    fn buffered(&mut self) -> usize {
        let mut n = 0;
        for id in [self.control, self.lossy].into_iter().flatten() {
            if let Some(mut ch) = self.rtc.channel(id) {
                n += ch.buffered_amount();
            }
        }
        n
    }

    /// Moves what the outbound queue has into the channels, while they have room for whole
    /// records.
    fn flush(&mut self, batch: &mut Batch, chunk: usize, max_record: usize) {
        let Some(control) = self.control else { return };
        let capacity = 2 * max_record;
        loop {
            let buffered = self.buffered();
            if buffered + max_record > capacity {
                // Wait for ChannelBufferedAmountLow.
                if let Some(mut ch) = self.rtc.channel(control) {
                    ch.set_buffered_amount_low_threshold(max_record / 2);
                }
                return;
            }
            batch.clear();
            match self.conn.core.outbound.drain(batch, 64, capacity - max_record - buffered, Instant::now()) {
                Drain::Ready => {}
                Drain::Idle { retry_at } => {
                    self.retry_at = retry_at;
                    return;
                }
                Drain::Finished(_) => {
                    self.finished = true;
                    return;
                }
            }
            for c in batch.control.drain(..) {
                if let Control::Json(b) = c {
                    if let Some(mut ch) = self.rtc.channel(control) {
                        let _ = ch.write(false, &b);
                    }
                }
            }
            let (mut sent, mut bytes) = (0u64, 0u64);
            for (i, record) in batch.records.iter().enumerate() {
                let reliable = i < batch.reliable_records;
                if let (false, Some(lossy)) = (reliable, self.lossy) {
                    let waiting = self.rtc.channel(lossy).map_or(0, |mut c| c.buffered_amount());
                    if waiting > 0 && waiting + record.len() > LOSSY_BUDGET {
                        // Late video is useless: drop this frame whole rather than queue it
                        // behind what the peer has not taken yet.
                        self.counters.record_drop(DropReason::QueueFull);
                        continue;
                    }
                }
                let cid = if reliable { control } else { self.lossy.unwrap_or(control) };
                self.frame_id = self.frame_id.wrapping_add(1);
                write_record(&mut self.rtc, cid, record, chunk, self.frame_id);
                sent += 1;
                bytes += record.len() as u64;
            }
            self.conn.core.record_sent(sent, bytes);
        }
    }
}

/// A driver's outgoing datagrams. Consecutive datagrams to the same peer of the same size (the
/// last may be shorter) leave as one `sendmsg` with UDP GSO (`quinn-udp`: segmentation offload
/// where the kernel has it, one datagram per call where not): a 64 KiB frame is ~55 full-MTU
/// SCTP packets, and `sendto` per packet was 17–23 % of the driver's CPU.
struct Sender<'a> {
    socket: &'a UdpSocket,
    state: Option<&'a quinn_udp::UdpSocketState>,
    buf: Vec<u8>,
    destination: Option<SocketAddr>,
    segment: usize,
    count: usize,
}

/// Most bytes in one GSO send (a UDP datagram's limit, with room for headers).
const GSO_MAX_BYTES: usize = 65_000;

impl<'a> Sender<'a> {
    fn new(socket: &'a UdpSocket, state: Option<&'a quinn_udp::UdpSocketState>) -> Self {
        Sender { socket, state, buf: Vec::with_capacity(GSO_MAX_BYTES), destination: None, segment: 0, count: 0 }
    }

    /// Datagrams one send may carry (quinn-udp lowers it to 1 if the kernel refuses GSO).
    fn max_segments(&self) -> usize {
        self.state.map_or(1, quinn_udp::UdpSocketState::max_gso_segments).max(1)
    }

    fn push(&mut self, destination: SocketAddr, data: &[u8]) {
        let joins = self.destination == Some(destination)
            && data.len() <= self.segment
            && self.buf.len() % self.segment == 0 // the batch's last datagram is still full-size
            && self.count < self.max_segments()
            && self.buf.len() + data.len() <= GSO_MAX_BYTES;
        if !joins {
            self.flush();
            self.destination = Some(destination);
            self.segment = data.len().max(1);
        }
        self.buf.extend_from_slice(data);
        self.count += 1;
    }

    fn flush(&mut self) {
        let Some(destination) = self.destination.take() else { return };
        // UDP: a full socket buffer loses the packets, as the network would; SCTP resends.
        match self.state {
            Some(state) => {
                let t = quinn_udp::Transmit {
                    destination,
                    ecn: None,
                    contents: &self.buf,
                    segment_size: (self.count > 1).then_some(self.segment),
                    src_ip: None,
                };
                let _ = state.try_send(self.socket.into(), &t);
            }
            None => {
                let _ = self.socket.try_send_to(&self.buf, destination);
            }
        }
        self.buf.clear();
        self.count = 0;
    }
}

/// Messages one `recvmmsg` takes.
const RECV_BATCH: usize = 8;

/// A driver's receive buffers: `RECV_BATCH` messages per `recvmmsg` (quinn-udp), each large
/// enough for a GRO buffer of up to `gro_segments` datagrams, split again by their stride.
struct Inbox {
    buf: Vec<u8>,
    size: usize,
    meta: [quinn_udp::RecvMeta; RECV_BATCH],
}

impl Inbox {
    fn new(state: Option<&quinn_udp::UdpSocketState>) -> Self {
        // A GRO buffer holds up to `gro_segments` datagrams of at most an Ethernet MTU, and a
        // loopback GSO batch up to 64 KiB.
        let size = state.map_or(2048, |s| (1500 * s.gro_segments()).max(65_536));
        let batch = if state.is_some() { RECV_BATCH } else { 1 };
        Inbox { buf: vec![0; size * batch], size, meta: [quinn_udp::RecvMeta::default(); RECV_BATCH] }
    }

    /// Receives what is queued (without waiting); how many messages.
    fn recv(&mut self, socket: &UdpSocket, state: Option<&quinn_udp::UdpSocketState>) -> std::io::Result<usize> {
        let Some(state) = state else {
            // Without quinn-udp's state (it failed to set up, so no GRO): one datagram a call.
            let (n, source) = socket.try_recv_from(&mut self.buf)?;
            (self.meta[0].addr, self.meta[0].len, self.meta[0].stride) = (source, n, n);
            return Ok(1);
        };
        let mut chunks = self.buf.chunks_mut(self.size);
        let mut slices: [std::io::IoSliceMut<'_>; RECV_BATCH] =
            std::array::from_fn(|_| std::io::IoSliceMut::new(chunks.next().unwrap_or_default()));
        let meta = &mut self.meta;
        socket.try_io(tokio::io::Interest::READABLE, || state.recv(socket.into(), &mut slices, meta))
    }

    /// Message `i` of the last `recv`: its source, its bytes and the size of each datagram in it.
    fn message(&self, i: usize) -> (SocketAddr, &[u8], usize) {
        let m = &self.meta[i];
        let start = i * self.size;
        (m.addr, &self.buf[start..start + m.len], m.stride.max(1))
    }
}

/// Writes `record` whole, or as chunks with the chunk header when it is larger than `chunk`.
fn write_record(rtc: &mut Rtc, cid: ChannelId, record: &Bytes, chunk: usize, frame_id: u32) {
    let Some(mut ch) = rtc.channel(cid) else { return };
    if record.len() <= chunk {
        let _ = ch.write(true, record);
        return;
    }
    let body = chunk - CHUNK_HEADER_LEN;
    let count = record.len().div_ceil(body);
    let mut msg = Vec::with_capacity(chunk);
    for (i, part) in record.chunks(body).enumerate() {
        msg.clear();
        msg.push(CHUNK_MAGIC);
        msg.push(0);
        msg.extend_from_slice(&(i as u16).to_be_bytes());
        msg.extend_from_slice(&(count as u16).to_be_bytes());
        msg.extend_from_slice(&frame_id.to_be_bytes());
        msg.extend_from_slice(part);
        if !matches!(ch.write(true, &msg), Ok(true)) {
            return; // Whole or absent: the client drops an incomplete frame.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Datagrams batched for GSO arrive as the same datagrams, in order, with their boundaries:
    /// full-size runs, a short last one, a change of size and of destination.
    #[tokio::test]
    async fn the_sender_batches_datagrams_and_the_receiver_sees_each_one_whole() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (to_a, to_b) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let datagram = |i: usize, len: usize| -> Vec<u8> { (0..len).map(|j| (i * 13 + j) as u8).collect() };
        let plan_a: Vec<(usize, usize)> =
            (0..70).map(|i| (i, 1200)).chain([(70, 300), (71, 1200), (72, 1200), (73, 1300)]).collect();
        let plan_b = [(100, 1200), (101, 1200), (102, 5)];
        let state = quinn_udp::UdpSocketState::new((&server).into()).ok();
        let mut out = Sender::new(&server, state.as_ref());
        for &(i, len) in &plan_a[..10] {
            out.push(to_a, &datagram(i, len));
        }
        for &(i, len) in &plan_b {
            out.push(to_b, &datagram(i, len));
        }
        for &(i, len) in &plan_a[10..] {
            out.push(to_a, &datagram(i, len));
        }
        out.flush();
        let mut buf = vec![0u8; 65_536];
        for (socket, plan) in [(&a, &plan_a[..]), (&b, &plan_b[..])] {
            for &(i, len) in plan {
                let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf)).await.unwrap().unwrap();
                assert_eq!(&buf[..n], &datagram(i, len)[..], "datagram {i} ({len} bytes) arrives whole");
            }
        }
    }

    /// A receiving driver socket has UDP GRO on (quinn-udp turns it on): a GSO batch may arrive
    /// as one buffer of several datagrams, which the inbox splits again by its stride.
    #[tokio::test]
    async fn the_inbox_splits_gro_buffers_back_into_the_datagrams_sent() {
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = receiver.local_addr().unwrap();
        let rx_state = quinn_udp::UdpSocketState::new((&receiver).into()).ok();
        let tx_state = quinn_udp::UdpSocketState::new((&sender).into()).ok();
        let mut inbox = Inbox::new(rx_state.as_ref());
        let mut out = Sender::new(&sender, tx_state.as_ref());
        let datagram = |i: usize, len: usize| -> Vec<u8> { (0..len).map(|j| (i * 7 + j) as u8).collect() };
        let plan: Vec<(usize, usize)> = (0..40).map(|i| (i, 1200)).chain([(40, 77), (41, 1200), (42, 9)]).collect();
        for &(i, len) in &plan {
            out.push(to, &datagram(i, len));
        }
        out.flush();
        let mut got: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while got.len() < plan.len() {
            assert!(tokio::time::Instant::now() < deadline, "only {} of {} datagrams", got.len(), plan.len());
            let _ = tokio::time::timeout(Duration::from_millis(100), receiver.readable()).await;
            let Ok(n) = inbox.recv(&receiver, rx_state.as_ref()) else { continue };
            for i in 0..n {
                let (source, data, stride) = inbox.message(i);
                got.extend(data.chunks(stride).map(|d| (source, d.to_vec())));
            }
        }
        for (k, &(i, len)) in plan.iter().enumerate() {
            assert_eq!(got[k].0, sender.local_addr().unwrap());
            assert_eq!(got[k].1, datagram(i, len), "datagram {i} ({len} bytes) whole and in order");
        }
    }
}
