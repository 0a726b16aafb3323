//! WebRTC fan-out load generator: N str0m peers (each with its own loopback UDP socket, all
//! driven by a few tokio tasks) signal over `POST /v1/rtc/offer`, open the `fanhub` and
//! `fanhub-lossy` channels, `connect` and `subscribe` to one topic; then one WebSocket publisher
//! sends F frames/s of SIZE bytes for S seconds. Every peer reassembles the chunked records
//! (`docs/protocol.md` §10b) and notes each frame's latency: receive time − the record's publish
//! time (bytes 24..32 of the record header, server clock; same machine).
//!
//! Prints one markdown row: peers, fps, size, delivered frames/s, MB/s, loss (expected =
//! frames published × peers asked for), p50/p99 latency, server CPU seconds over the run
//! (utime+stime from /proc), server RSS growth per peer (VmRSS before the peers vs after all are
//! subscribed). Details (publisher acks, incomplete frames, UDP drops, load generator CPU, …)
//! go to stderr. Every phase is bounded in time; a watchdog ends the process past a hard cap.
//!
//! `cargo bench --bench rtc_load -- --url http://127.0.0.1:8080 --token T --peers 50 --fps 30
//!  --size 16384 --seconds 10 --policy lossy --server-pid PID` (see `deploy/bench-rtc.sh`)

use std::collections::HashMap;
use std::future::Future;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderValue, Uri};
use bytes::Bytes;
use clap::Parser;
use fanhub::client::rtc::{Offer, PeerOutput, RtcPeer};
use fanhub::protocol::frame::{decode_records, encode_publish};
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_websockets::{Message, WebSocketStream};

#[path = "support/procfs.rs"]
mod procfs;
use procfs::{proc_cpu_secs, proc_rss_kb};

#[derive(Parser, Clone)]
struct Args {
    /// Public listener of the hub, `http://127.0.0.1:PORT` (loopback only): signaling at
    /// `/v1/rtc/offer`, the publisher at `/ws`.
    #[arg(long)]
    url: String,
    /// Bearer token (subscribe and publish rights on the topic).
    #[arg(long)]
    token: String,
    /// WebRTC peers (subscribers).
    #[arg(long, default_value_t = 50)]
    peers: usize,
    /// Frames published per second.
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Payload bytes per frame (at least 16: index and send time are embedded).
    #[arg(long, default_value_t = 16 * 1024)]
    size: usize,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// `lossy`: the topic is best-effort, frames must come on `fanhub-lossy`; `reliable`: the
    /// topic is reliable, frames must come on `fanhub`, none may be lost.
    #[arg(long, default_value = "lossy", value_parser = ["lossy", "reliable"])]
    policy: String,
    /// Topic (default `video/bench` for lossy, `reliable/bench` for reliable).
    #[arg(long)]
    topic: Option<String>,
    /// Server process id, for CPU seconds and RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Label of the result row.
    #[arg(long, default_value = "")]
    label: String,
    /// Runtime worker threads of the load generator.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Tasks driving the peers (each drives peers/groups of them).
    #[arg(long, default_value_t = 4)]
    groups: usize,
    /// Signaling requests in flight while the peers join.
    #[arg(long, default_value_t = 16)]
    connect_concurrency: usize,
    /// Receive buffer of each peer's UDP socket (capped by net.core.rmem_max).
    #[arg(long, default_value_t = 2 << 20)]
    peer_rcvbuf: usize,
    /// Give up on peers not subscribed after this long.
    #[arg(long, default_value_t = 90)]
    setup_secs: u64,
    /// After the last publish, wait at most this long for deliveries still in flight.
    #[arg(long, default_value_t = 5)]
    drain_secs: u64,
    /// ... and stop waiting earlier when nothing arrived for this long.
    #[arg(long, default_value_t = 1500)]
    stall_ms: u64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

impl Args {
    fn lossy(&self) -> bool {
        self.policy == "lossy"
    }

    fn topic(&self) -> String {
        self.topic.clone().unwrap_or_else(|| if self.lossy() { "video/bench" } else { "reliable/bench" }.into())
    }

    fn frames(&self) -> u64 {
        u64::from(self.fps) * u64::from(self.seconds)
    }
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("rtc_load: error: {msg}");
    std::process::exit(1)
}

// ---- /proc ----

/// Busy CPU seconds of the whole machine (`/proc/stat`: all but idle and iowait; 100 ticks/s).
fn machine_busy_secs() -> f64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else { return f64::NAN };
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle) as f64 / 100.0
}

/// Per-socket receive drops of the IPv4 UDP sockets, by local port (`/proc/net/udp`, last column).
fn udp_drops() -> HashMap<u16, u64> {
    let text = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let mut m = HashMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some(port) = f.get(1).and_then(|a| a.rsplit(':').next()).and_then(|p| u16::from_str_radix(p, 16).ok())
        else {
            continue;
        };
        let drops = f.last().and_then(|d| d.parse::<u64>().ok()).unwrap_or(0);
        *m.entry(port).or_insert(0) += drops;
    }
    m
}

/// `Udp: … RcvbufErrors SndbufErrors` of `/proc/net/snmp` (the whole machine).
fn udp_snmp() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("Udp:")).collect();
    if rows.len() < 2 {
        return (0, 0);
    }
    let names: Vec<&str> = rows[0].split_whitespace().collect();
    let vals: Vec<&str> = rows[1].split_whitespace().collect();
    let get = |n: &str| {
        names.iter().position(|x| *x == n).and_then(|i| vals.get(i)).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    (get("RcvbufErrors"), get("SndbufErrors"))
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)] as f64 / 1000.0
}

// ---- shared counters ----

struct Shared {
    topic: String,
    size: usize,
    lossy: bool,
    /// Deliveries per frame index.
    receipts: Vec<AtomicU32>,
    delivered: AtomicU64,
    last_rx_us: AtomicU64,
    /// Records are counted only while this holds (the measurement window).
    counting: AtomicBool,
    subscribed: AtomicUsize,
    failed: AtomicUsize,
    /// Peers that were subscribed and then went away (bye, ICE, …).
    lost: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

impl Shared {
    fn note_error(&self, e: String) {
        let mut v = self.errors.lock().unwrap();
        if v.len() < 12 {
            v.push(e);
        }
    }
}

#[derive(Default)]
struct GroupStats {
    /// Latencies in µs.
    lat: Vec<u32>,
    /// Chunked frames of which some chunks came and others never did.
    incomplete: u64,
    /// Records on the other channel than the topic's policy says.
    wrong_channel: u64,
    /// Records of the topic whose payload is not `size` bytes or whose index is out of range.
    corrupt: u64,
    duplicates: u64,
    /// Records that came after the measurement window.
    late: u64,
    /// `bye` reasons received while subscribed.
    byes: Vec<String>,
}

// ---- a peer ----

#[derive(PartialEq, Eq, Clone, Copy)]
enum State {
    Handshaking,
    /// `connect` sent.
    Connecting,
    /// `subscribe` sent.
    Subscribing,
    Subscribed,
    /// `bye` sent at the end of the run: whatever happens next is no failure.
    Leaving,
    Failed,
}

struct Peer {
    n: usize,
    /// The client's sans-IO peer: both channels, chunk reassembly.
    rtc: RtcPeer,
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    state: State,
    timeout: Instant,
    last_sent: Instant,
    /// Frame indexes received (duplicates show).
    seen: Vec<bool>,
}

impl Peer {
    fn alive(&self) -> bool {
        self.state != State::Failed
    }

    fn fail(&mut self, why: String, shared: &Shared, stats: &mut GroupStats) {
        match self.state {
            State::Failed => return,
            State::Leaving => {
                self.state = State::Failed;
                self.rtc.abort();
                return;
            }
            State::Subscribed => {
                shared.lost.fetch_add(1, Relaxed);
                stats.byes.push(why.clone());
            }
            _ => {
                shared.failed.fetch_add(1, Relaxed);
            }
        }
        shared.note_error(format!("peer {}: {why}", self.n));
        self.state = State::Failed;
        self.rtc.abort();
    }

    fn send(&mut self, msg: &Value) {
        let _ = self.rtc.send_text(&msg.to_string());
        self.last_sent = Instant::now();
    }

    /// Polls the peer until it wants time to pass.
    fn drive(&mut self, shared: &Shared, stats: &mut GroupStats) {
        loop {
            match self.rtc.poll() {
                PeerOutput::Wait(t) => {
                    self.timeout = t;
                    return;
                }
                PeerOutput::Transmit { to, bytes } => {
                    assert!(to.ip().is_loopback(), "only loopback traffic");
                    // UDP: a full socket buffer loses the datagram, as a network would.
                    let _ = self.socket.try_send_to(&bytes, to);
                }
                PeerOutput::Open => {
                    if self.state == State::Handshaking {
                        self.state = State::Connecting;
                        self.send(&json!({"op": "connect", "id": 1}));
                    }
                }
                PeerOutput::Control(text) => match serde_json::from_slice::<Value>(&text) {
                    Ok(v) => self.control_msg(v, shared, stats),
                    Err(e) => shared.note_error(format!("peer {}: control message not JSON: {e}", self.n)),
                },
                PeerOutput::Records { lossy, bytes } => self.records(!lossy, &bytes, shared, stats),
                PeerOutput::Corrupt(_) => stats.corrupt += 1,
                PeerOutput::Closed(why) => {
                    self.fail(why, shared, stats);
                    self.timeout = Instant::now() + Duration::from_secs(3600);
                    return;
                }
            }
        }
    }

    /// Reads what the socket has (bounded, for fairness between peers).
    fn read(&mut self, buf: &mut [u8], shared: &Shared, stats: &mut GroupStats) {
        for _ in 0..256 {
            if !self.alive() {
                return;
            }
            match self.socket.try_recv_from(buf) {
                Ok((n, source)) => {
                    if let Err(e) = self.rtc.receive(Instant::now(), source, self.local, &buf[..n]) {
                        self.fail(format!("rtc input: {e}"), shared, stats);
                        return;
                    }
                    self.drive(shared, stats);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    self.fail(format!("recv: {e}"), shared, stats);
                    return;
                }
            }
        }
    }

    fn control_msg(&mut self, v: Value, shared: &Shared, stats: &mut GroupStats) {
        match v["type"].as_str().unwrap_or("") {
            "welcome" if self.state == State::Connecting => {
                self.state = State::Subscribing;
                self.send(&json!({"op": "subscribe", "id": 2, "topic": shared.topic}));
            }
            "subscribed" if self.state == State::Subscribing => {
                self.state = State::Subscribed;
                shared.subscribed.fetch_add(1, Relaxed);
            }
            "time_sync_request" => {
                let t = now_us();
                self.send(&json!({"op": "time_sync_reply", "seq": v["seq"], "t1": v["t1"], "t2": t, "t3": t}));
            }
            "error" if self.state != State::Subscribed => self.fail(format!("setup failed: {v}"), shared, stats),
            "error" => shared.note_error(format!("peer {}: {v}", self.n)),
            "bye" => self.fail(format!("bye {}: {}", v["reason"], v["message"]), shared, stats),
            _ => {}
        }
    }

    fn records(&mut self, on_control: bool, bytes: &[u8], shared: &Shared, stats: &mut GroupStats) {
        let at = now_us();
        for r in decode_records(bytes) {
            let Ok(r) = r else {
                stats.corrupt += 1;
                return;
            };
            if r.topic != shared.topic {
                continue;
            }
            if !shared.counting.load(Relaxed) {
                stats.late += 1;
                continue;
            }
            let idx = r.payload.get(..8).map(|b| u64::from_be_bytes(b.try_into().unwrap()) as usize);
            let Some(idx) = idx.filter(|&i| r.payload.len() == shared.size && i < shared.receipts.len()) else {
                stats.corrupt += 1;
                continue;
            };
            if on_control == shared.lossy {
                stats.wrong_channel += 1;
            }
            if std::mem::replace(&mut self.seen[idx], true) {
                stats.duplicates += 1;
                continue;
            }
            shared.receipts[idx].fetch_add(1, Relaxed);
            stats.lat.push(at.saturating_sub(r.timestamp_us).min(u64::from(u32::MAX)) as u32);
            shared.delivered.fetch_add(1, Relaxed);
            shared.last_rx_us.fetch_max(at, Relaxed);
        }
    }
}

/// A peer that has made its offer, bound to its own loopback socket.
async fn join(args: &Args, addr: SocketAddr, n: usize) -> Result<(Peer, Option<u16>), String> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).map_err(|e| e.to_string())?;
    let _ = sock.set_recv_buffer_size(args.peer_rcvbuf);
    sock.set_nonblocking(true).map_err(|e| e.to_string())?;
    sock.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0).into()).map_err(|e| format!("bind: {e}"))?;
    let socket = UdpSocket::from_std(sock.into()).map_err(|e| e.to_string())?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let (offer, sdp) = Offer::new(local, Instant::now()).map_err(|e| e.to_string())?;
    let answer = post_offer(addr, &args.token, &sdp).await?;
    let server_port = answer
        .lines()
        .find(|l| l.contains("typ host"))
        .and_then(|l| l.split_whitespace().nth(5))
        .and_then(|p| p.parse().ok());
    let rtc = offer.accept(&answer).map_err(|e| e.to_string())?;
    let now = Instant::now();
    let peer = Peer {
        n,
        rtc,
        socket: Arc::new(socket),
        local,
        state: State::Handshaking,
        timeout: now,
        last_sent: now,
        seen: vec![false; args.frames() as usize],
    };
    Ok((peer, server_port))
}

/// `POST /v1/rtc/offer` over a fresh HTTP/1.1 connection; returns the SDP answer.
async fn post_offer(addr: SocketAddr, token: &str, sdp: &str) -> Result<String, String> {
    let exchange = async {
        let mut tcp = TcpStream::connect(addr).await.map_err(|e| format!("signaling connect: {e}"))?;
        let req = format!(
            "POST /v1/rtc/offer HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        tcp.write_all(req.as_bytes()).await.map_err(|e| format!("signaling write: {e}"))?;
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).await.map_err(|e| format!("signaling read: {e}"))?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").ok_or("signaling: no HTTP response")?;
        let status = head.split_whitespace().nth(1).unwrap_or("?");
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            dechunk(body)
        } else {
            body.to_owned()
        };
        if status != "201" {
            return Err(format!("POST /v1/rtc/offer answered {status}: {body}"));
        }
        Ok(body)
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .unwrap_or_else(|_| Err("POST /v1/rtc/offer: no answer in 10 s".into()))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

// ---- the tasks driving the peers ----

enum Cmd {
    Add(Box<Peer>),
    /// Say `bye` on every peer.
    Bye,
    /// Close every peer and return the stats.
    Close,
}

type Ready = Pin<Box<dyn Future<Output = usize> + Send>>;

fn readable(s: Arc<UdpSocket>, i: usize) -> Ready {
    Box::pin(async move {
        let _ = s.readable().await;
        i
    })
}

/// Drives its peers: socket readiness, str0m timeouts, setup (connect → subscribe), records.
async fn group(mut rx: mpsc::UnboundedReceiver<Cmd>, shared: Arc<Shared>) -> GroupStats {
    let mut peers: Vec<Peer> = Vec::new();
    let mut ready: FuturesUnordered<Ready> = FuturesUnordered::new();
    let mut buf = vec![0u8; 65536];
    let mut stats = GroupStats::default();
    let mut closing: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let mut next = now + Duration::from_millis(250);
        for p in peers.iter_mut().filter(|p| p.alive()) {
            if p.timeout <= now {
                if let Err(e) = p.rtc.advance(now) {
                    p.fail(format!("rtc timeout: {e}"), &shared, &mut stats);
                    continue;
                }
                p.drive(&shared, &mut stats);
            }
            // Keep the session from idling out (60 s by default) during long setups.
            if p.state == State::Subscribed && closing.is_none() && now.duration_since(p.last_sent).as_secs() >= 15 {
                p.send(&json!({"op": "ping", "id": 3}));
                p.drive(&shared, &mut stats);
            }
            next = next.min(p.timeout);
        }
        if closing.is_some_and(|t| now >= t || peers.iter().all(|p| !p.rtc.is_alive())) {
            break;
        }
        tokio::select! {
            Some(i) = ready.next() => {
                let p = &mut peers[i];
                p.read(&mut buf, &shared, &mut stats);
                if p.alive() {
                    ready.push(readable(p.socket.clone(), i));
                }
            }
            cmd = rx.recv(), if closing.is_none() => match cmd {
                Some(Cmd::Add(p)) => {
                    ready.push(readable(p.socket.clone(), peers.len()));
                    peers.push(*p);
                }
                Some(Cmd::Bye) => {
                    for p in peers.iter_mut().filter(|p| p.state == State::Subscribed) {
                        p.send(&json!({"op": "bye", "id": 9}));
                        p.state = State::Leaving;
                        p.drive(&shared, &mut stats);
                    }
                }
                Some(Cmd::Close) | None => {
                    for p in &mut peers {
                        // Not a failure any more: the run is over.
                        p.state = State::Failed;
                        p.rtc.close();
                        p.timeout = now;
                    }
                    closing = Some(now + Duration::from_millis(500));
                }
            },
            () = tokio::time::sleep_until(next.into()) => {}
        }
        if closing.is_some() {
            // Closing peers are Failed: drive them here until their close has gone out.
            for p in peers.iter_mut().filter(|p| p.rtc.is_alive()) {
                loop {
                    match p.rtc.poll() {
                        PeerOutput::Transmit { to, bytes } => {
                            let _ = p.socket.try_send_to(&bytes, to);
                        }
                        PeerOutput::Wait(_) | PeerOutput::Closed(_) => break,
                        _ => {}
                    }
                }
            }
        }
    }
    for p in &peers {
        stats.incomplete += p.rtc.incomplete_frames() + p.rtc.pending_frames() as u64;
    }
    stats
}

// ---- the publisher ----

type Ws = WebSocketStream<TcpStream>;

#[derive(Default)]
struct PubStats {
    published: u64,
    acked: u64,
    errors: Vec<String>,
    max_lag: Duration,
}

impl PubStats {
    fn on_reply(&mut self, m: Option<Result<Message, tokio_websockets::Error>>) -> bool {
        match m {
            Some(Ok(m)) => {
                if let Some(t) = m.as_text() {
                    let v: Value = serde_json::from_str(t).unwrap_or(Value::Null);
                    match v["type"].as_str() {
                        Some("published") => self.acked += 1,
                        Some("error") | Some("bye") if self.errors.len() < 10 => self.errors.push(v.to_string()),
                        _ => {}
                    }
                }
                true
            }
            Some(Err(e)) => {
                self.errors.push(format!("publisher connection: {e}"));
                false
            }
            None => {
                self.errors.push("publisher connection closed".into());
                false
            }
        }
    }
}

async fn publisher_connect(addr: SocketAddr, token: &str) -> Result<Ws, String> {
    let go = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| format!("publisher connect: {e}"))?;
        tcp.set_nodelay(true).unwrap();
        let uri: Uri = format!("ws://{addr}/ws").parse().unwrap();
        let (mut ws, _) = tokio_websockets::ClientBuilder::from_uri(uri)
            .add_header(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("fanhub.v1"))
            .unwrap()
            .connect_on(tcp)
            .await
            .map_err(|e| format!("publisher handshake: {e}"))?;
        ws.send(Message::text(json!({"op": "connect", "id": 1, "token": token}).to_string()))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let m = ws.next().await.ok_or("publisher closed before welcome")?.map_err(|e| e.to_string())?;
            if let Some(t) = m.as_text() {
                let v: Value = serde_json::from_str(t).map_err(|e| e.to_string())?;
                if v["type"] == "welcome" {
                    return Ok(ws);
                }
                return Err(format!("publisher connect answered {v}"));
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), go)
        .await
        .unwrap_or_else(|_| Err("publisher: no welcome in 10 s".into()))
}

fn publish_frame(topic: &str, size: usize, idx: u64) -> Bytes {
    let mut payload = vec![0u8; size];
    for (j, b) in payload.iter_mut().enumerate().skip(16) {
        *b = (j as u64 * 31 + idx * 7) as u8;
    }
    payload[0..8].copy_from_slice(&idx.to_be_bytes());
    payload[8..16].copy_from_slice(&now_us().to_be_bytes());
    // Request id idx+1: every publish is acknowledged, so a refused one shows.
    Bytes::from(encode_publish(topic, (idx + 1) as u32, 0, &payload))
}

/// Publishes `frames` frames at `fps`, on schedule (a late frame goes at once, never skipped).
async fn publish(ws: &mut Ws, args: &Args, topic: &str, st: &mut PubStats) {
    let period = Duration::from_secs_f64(1.0 / f64::from(args.fps));
    let start = tokio::time::Instant::now();
    for i in 0..args.frames() {
        let due = start + period.mul_f64(i as f64);
        loop {
            tokio::select! {
                biased;
                () = tokio::time::sleep_until(due) => break,
                m = ws.next() => if !st.on_reply(m) { return },
            }
        }
        st.max_lag = st.max_lag.max(tokio::time::Instant::now().saturating_duration_since(due));
        let frame = publish_frame(topic, args.size, i);
        match tokio::time::timeout(Duration::from_secs(5), ws.send(Message::binary(frame))).await {
            Ok(Ok(())) => st.published += 1,
            Ok(Err(e)) => {
                st.errors.push(format!("publish {i}: {e}"));
                return;
            }
            Err(_) => {
                st.errors.push(format!("publish {i}: the server did not take the frame in 5 s"));
                return;
            }
        }
    }
}

// ---- the run ----

async fn run(args: Arc<Args>) {
    let uri: Uri = args.url.parse().unwrap_or_else(|e| fail(format!("--url {}: {e}", args.url)));
    let host: Ipv4Addr = uri
        .host()
        .and_then(|h| h.parse().ok())
        .unwrap_or_else(|| fail("--url must be http://127.0.0.1:PORT (a loopback IPv4 address)"));
    if !host.is_loopback() {
        fail("the load generator only targets loopback");
    }
    let addr = SocketAddr::new(IpAddr::V4(host), uri.port_u16().unwrap_or(80));
    if args.size < 16 {
        fail("--size must be at least 16");
    }
    let topic = args.topic();
    let pid = args.server_pid;
    let spid = pid.map(|p| p.to_string());
    let server_cpu = || spid.as_deref().map(proc_cpu_secs).unwrap_or(f64::NAN);
    let self_cpu = || proc_cpu_secs("self");
    let rss = || pid.map(proc_rss_kb).unwrap_or(0);

    let shared = Arc::new(Shared {
        topic: topic.clone(),
        size: args.size,
        lossy: args.lossy(),
        receipts: (0..args.frames()).map(|_| AtomicU32::new(0)).collect(),
        delivered: AtomicU64::new(0),
        last_rx_us: AtomicU64::new(0),
        counting: AtomicBool::new(false),
        subscribed: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        lost: AtomicUsize::new(0),
        errors: Mutex::new(Vec::new()),
    });

    // Setup: every peer signals, handshakes, connects and subscribes.
    let rss_before = rss();
    let setup_cpu0 = server_cpu();
    let setup_t0 = Instant::now();
    let groups: Vec<_> = (0..args.groups.max(1))
        .map(|_| {
            let (tx, rx) = mpsc::unbounded_channel();
            (tx, tokio::spawn(group(rx, shared.clone())))
        })
        .collect();
    let sem = Arc::new(tokio::sync::Semaphore::new(args.connect_concurrency.max(1)));
    let ports = Arc::new(Mutex::new((None::<u16>, Vec::new())));
    let mut joins = Vec::with_capacity(args.peers);
    for n in 0..args.peers {
        let (args, sem, shared, ports) = (args.clone(), sem.clone(), shared.clone(), ports.clone());
        let tx = groups[n % groups.len()].0.clone();
        joins.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            match join(&args, addr, n).await {
                Ok((peer, server_port)) => {
                    let mut p = ports.lock().unwrap();
                    p.0 = p.0.or(server_port);
                    p.1.push(peer.local.port());
                    drop(p);
                    let _ = tx.send(Cmd::Add(Box::new(peer)));
                }
                Err(e) => {
                    shared.failed.fetch_add(1, Relaxed);
                    shared.note_error(format!("peer {n}: {e}"));
                }
            }
        }));
    }
    let setup_deadline = Instant::now() + Duration::from_secs(args.setup_secs);
    let mut report = Instant::now();
    loop {
        let (up, failed) = (shared.subscribed.load(Relaxed), shared.failed.load(Relaxed));
        if up + failed >= args.peers {
            break;
        }
        if Instant::now() >= setup_deadline {
            eprintln!(
                "rtc_load: error: after {} s only {up} of {} peers are subscribed ({failed} failed, {} still joining)",
                args.setup_secs,
                args.peers,
                args.peers - up - failed
            );
            break;
        }
        if report.elapsed() >= Duration::from_secs(5) {
            eprintln!("rtc_load: joining: {up} subscribed, {failed} failed of {}", args.peers);
            report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for j in joins {
        j.abort();
    }
    let setup_secs = setup_t0.elapsed().as_secs_f64();
    let setup_cpu = server_cpu() - setup_cpu0;
    let up = shared.subscribed.load(Relaxed);
    let setup_errors = {
        let errors = shared.errors.lock().unwrap();
        for e in errors.iter() {
            eprintln!("rtc_load: {e}");
        }
        errors.len()
    };
    if up == 0 {
        fail(format!("no peer subscribed ({} failed)", shared.failed.load(Relaxed)));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss();
    let (server_port, client_ports) = ports.lock().unwrap().clone();
    eprintln!(
        "rtc_load: {up}/{} peers subscribed to {topic} in {setup_secs:.1} s (server CPU {setup_cpu:.2} s); \
         publishing {} × {} B at {} fps",
        args.peers,
        args.frames(),
        args.size,
        args.fps
    );

    // The run: publish, then wait for what is still in flight.
    let mut ws = publisher_connect(addr, &args.token).await.unwrap_or_else(|e| fail(e));
    let drops0 = udp_drops();
    let snmp0 = udp_snmp();
    let (cpu0, gen0, busy0) = (server_cpu(), self_cpu(), machine_busy_secs());
    shared.counting.store(true, Relaxed);
    let t0 = Instant::now();
    let t0_us = now_us();
    let mut st = PubStats::default();
    publish(&mut ws, &args, &topic, &mut st).await;
    let published_at = t0.elapsed();
    let target = st.published * up as u64;
    let drain_deadline = Instant::now() + Duration::from_secs(args.drain_secs);
    let (mut seen, mut progress) = (shared.delivered.load(Relaxed), Instant::now());
    loop {
        let d = shared.delivered.load(Relaxed);
        if d != seen {
            (seen, progress) = (d, Instant::now());
        }
        if d >= target || Instant::now() >= drain_deadline || progress.elapsed() >= Duration::from_millis(args.stall_ms)
        {
            break;
        }
        tokio::select! {
            m = ws.next() => if !st.on_reply(m) { break },
            () = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
    shared.counting.store(false, Relaxed);
    let wall = t0.elapsed().as_secs_f64();
    let (cpu, gen_cpu, busy) = (server_cpu() - cpu0, self_cpu() - gen0, machine_busy_secs() - busy0);
    let drops1 = udp_drops();
    let snmp1 = udp_snmp();
    let rss_end = rss();
    // Acks still in flight.
    while st.acked < st.published {
        let Ok(m) = tokio::time::timeout(Duration::from_millis(300), ws.next()).await else { break };
        if !st.on_reply(m) {
            break;
        }
    }

    // Goodbye: bye on every peer, then close them; collect the stats (bounded).
    for (tx, _) in &groups {
        let _ = tx.send(Cmd::Bye);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut stats = GroupStats::default();
    for (tx, handle) in groups {
        let _ = tx.send(Cmd::Close);
        match tokio::time::timeout(Duration::from_secs(5), handle).await {
            Ok(Ok(g)) => {
                stats.lat.extend(g.lat);
                stats.incomplete += g.incomplete;
                stats.wrong_channel += g.wrong_channel;
                stats.corrupt += g.corrupt;
                stats.duplicates += g.duplicates;
                stats.late += g.late;
                stats.byes.extend(g.byes);
            }
            _ => eprintln!("rtc_load: a peer group did not stop in 5 s; its latencies are missing"),
        }
    }
    let _ = ws.send(Message::text(json!({"op": "bye", "id": 99}).to_string())).await;

    let delivered = shared.delivered.load(Relaxed);
    let expected = st.published * args.peers as u64;
    let loss =
        if expected > 0 { 100.0 * (expected - delivered.min(expected)) as f64 / expected as f64 } else { f64::NAN };
    let span = (shared.last_rx_us.load(Relaxed).saturating_sub(t0_us) as f64 / 1e6)
        .max(published_at.as_secs_f64())
        .max(st.published as f64 / f64::from(args.fps));
    let rate = delivered as f64 / span;
    let mbps = rate * args.size as f64 / 1e6;
    let complete_frames = shared.receipts.iter().filter(|r| r.load(Relaxed) >= up as u32).count();
    let mut lat = stats.lat;
    lat.sort_unstable();
    let rss_per_peer = rss_after.saturating_sub(rss_before) as f64 / up as f64;
    let server_drops = server_port.map(|p| drops1.get(&p).unwrap_or(&0) - drops0.get(&p).unwrap_or(&0));
    let client_drops: u64 =
        client_ports.iter().map(|p| drops1.get(p).unwrap_or(&0).saturating_sub(*drops0.get(p).unwrap_or(&0))).sum();

    let peers_col = if up == args.peers { format!("{up}") } else { format!("{up} of {} up", args.peers) };
    println!(
        "| {} | {} | {} | {} KiB | {} | {:.0} of {} | {:.1} | {:.2} % | {:.1} | {:.1} | {:.2} s ({:.0} %) | {:.1} | {:.2} s ({:.0} %) |",
        args.label,
        peers_col,
        args.fps,
        args.size as f64 / 1024.0,
        args.policy,
        rate,
        up as u64 * u64::from(args.fps),
        mbps,
        loss,
        pct(&lat, 0.50),
        pct(&lat, 0.99),
        cpu,
        100.0 * cpu / wall,
        rss_per_peer,
        gen_cpu,
        100.0 * gen_cpu / wall,
    );
    eprintln!(
        "rtc_load: [{}] published {}/{} (acked {}, publisher max lag {:.1} ms); delivered {delivered}/{expected} \
         ({complete_frames} of {} frames reached every subscribed peer); p999 {:.1} ms, max {:.1} ms; \
         chunked frames left incomplete {}; wrong channel {}; corrupt {}; duplicates {}; after the window {}; \
         peers lost during the run {} {:?}; UDP receive drops: server socket {}, peer sockets {}, kernel \
         RcvbufErrors +{} SndbufErrors +{}; server RSS {:.1} → {:.1} MiB (subscribed) → {:.1} MiB (after the run); \
         window {:.2} s: machine busy {:.1} of {:.1} core-s (server {:.1}, load generator {:.1}, other processes and \
         softirq {:.1})",
        args.label,
        st.published,
        args.frames(),
        st.acked,
        st.max_lag.as_secs_f64() * 1000.0,
        st.published,
        pct(&lat, 0.999),
        lat.last().map_or(f64::NAN, |&m| m as f64 / 1000.0),
        stats.incomplete,
        stats.wrong_channel,
        stats.corrupt,
        stats.duplicates,
        stats.late,
        shared.lost.load(Relaxed),
        stats.byes.iter().take(5).collect::<Vec<_>>(),
        server_drops.map_or("?".into(), |d| d.to_string()),
        client_drops,
        snmp1.0.saturating_sub(snmp0.0),
        snmp1.1.saturating_sub(snmp0.1),
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        wall,
        busy,
        wall * std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
        cpu,
        gen_cpu,
        busy - cpu - gen_cpu,
    );
    for e in &st.errors {
        eprintln!("rtc_load: publisher: {e}");
    }
    for e in shared.errors.lock().unwrap().iter().skip(setup_errors) {
        eprintln!("rtc_load: during the run: {e}");
    }
}

fn main() {
    let args = Arc::new(Args::parse());
    // Hard cap: whatever happens, the process ends.
    let cap = Duration::from_secs(args.setup_secs + u64::from(args.seconds) + args.drain_secs + 40);
    std::thread::spawn(move || {
        std::thread::sleep(cap);
        eprintln!("rtc_load: error: hard time cap of {} s reached; aborting", cap.as_secs());
        std::process::exit(2);
    });
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(args));
}
